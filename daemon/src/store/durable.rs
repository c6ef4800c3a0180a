//! Crash-safe reads and writes of the credential file.
//!
//! A rotated refresh token exists nowhere else once the issuer has spent the
//! old one, so a write must either land whole or not at all. The file is
//! written to a temporary sibling, fsync'd, renamed over the target, and the
//! directory fsync'd so the rename itself survives a power cut. When
//! `auth.json` is a symlink (dotfile managers do this) the rename would
//! replace the link, so the target is written in place instead, as pi does.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// File mode of `auth.json`.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directory that holds it.
pub const DIR_MODE: u32 = 0o700;

/// The largest `auth.json` piauthd reads. pi's file is a few kilobytes; a
/// bigger one is a mistake or an attack, and reading it whole would cost
/// the daemon its size in memory.
pub const MAX_READ_BYTES: u64 = 1024 * 1024;

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A FIFO, device, socket or directory: reading it could block forever
    /// or never end.
    #[error("is a {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    #[error("is {size} bytes")]
    TooLarge { size: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the file; `Ok(None)` when it does not exist.
///
/// Only a regular file is read: it is opened with `O_NONBLOCK` (so a FIFO
/// does not block the open waiting for a writer), then checked with
/// `fstat` on the open descriptor, so nothing can be swapped in between the
/// check and the read. At most [`MAX_READ_BYTES`] are read, even if the
/// file grows meanwhile. Symlinks are followed, as pi follows them.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, ReadError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(ReadError::TooLarge { size: meta.len() });
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    let read = file.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes);
    if let Err(e) = read {
        zeroize::Zeroize::zeroize(&mut bytes);
        return Err(e.into());
    }
    if bytes.len() as u64 > MAX_READ_BYTES {
        zeroize::Zeroize::zeroize(&mut bytes);
        return Err(ReadError::TooLarge {
            size: MAX_READ_BYTES + 1,
        });
    }
    Ok(Some(bytes))
}

/// A file type, for people.
fn kind_of(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Creates `dir` (and its parents) with mode 0700 if it is missing.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the contents of `path` with `bytes`, durably, with mode 0600.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let is_symlink = fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if is_symlink {
        return write_in_place(path, bytes);
    }
    match write_by_rename(path, bytes) {
        // The directory refuses new files but the file itself may still be
        // writable: a non-atomic write beats keeping a rotated token only
        // in memory.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) && path.exists() =>
        {
            write_in_place(path, bytes).map_err(|_| e)
        }
        other => other,
    }
}

fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_by_rename(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".piauthd-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        // A leftover from a crashed write of ours is safe to discard: the
        // real file was never replaced by it.
        let _ = fs::remove_file(&tmp);
        // create_new (O_EXCL) never follows a symlink planted at the temp
        // name; O_NOFOLLOW says so again for any reader of this code.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The umask may have narrowed the mode further; never widened it.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_replaces_whole_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        fs::write(&path, b"old contents that are longer").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_symlink_is_written_through_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        let link = dir.path().join("auth.json");
        fs::write(&target, b"{\"a\":1}").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(&link, b"{}").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), b"{}");
    }

    #[test]
    fn read_reports_a_missing_file_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("nope")).unwrap(), None);
    }

    #[test]
    fn read_refuses_a_fifo_without_blocking_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("auth.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read(&fifo),
            Err(ReadError::NotRegular {
                kind: "FIFO (named pipe)"
            })
        ));
        assert!(matches!(
            read(dir.path()),
            Err(ReadError::NotRegular { kind: "directory" })
        ));
    }

    #[test]
    fn read_caps_the_size_at_one_mib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_READ_BYTES + 1).unwrap();
        assert!(matches!(
            read(&path),
            Err(ReadError::TooLarge { size }) if size == MAX_READ_BYTES + 1
        ));
        file.set_len(MAX_READ_BYTES).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len() as u64, MAX_READ_BYTES);
    }

    #[test]
    fn the_temp_file_is_never_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let tmp = dir
            .path()
            .join(format!("auth.json.piauthd-{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write(&path, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&path).unwrap(), b"{}");
    }

    #[test]
    fn ensure_dir_creates_0700() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("a/b");
        ensure_dir(&agent).unwrap();
        ensure_dir(&agent).unwrap();
        assert_eq!(fs::metadata(&agent).unwrap().mode() & 0o777, 0o700);
    }
}
