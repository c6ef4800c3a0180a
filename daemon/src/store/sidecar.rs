//! piauthd's lock sidecar: the file beside pi's lock directory that records
//! which directory a live piauthd holds (see [`super::lock`]).
//!
//! It is the one file the lock code writes, and it sits in a directory other
//! processes of the user can write to, so it is opened without following
//! symlinks and used only when it is a regular file of our own.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The sidecar of a lock directory.
pub(super) fn sidecar_path(lock_dir: &Path) -> PathBuf {
    let mut s = lock_dir.as_os_str().to_owned();
    s.push(".piauthd-owner");
    PathBuf::from(s)
}

/// Opens the sidecar for reading and writing, creating it (0600) when
/// `create`. It is never opened through a symlink (`O_NOFOLLOW`: a planted
/// link would have us truncate its target), never blocks (`O_NONBLOCK`: a
/// planted FIFO), and is used only when `fstat` shows a regular file owned
/// by our euid.
pub(super) fn open_sidecar(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("{} is a symlink; refusing to follow it", path.display()),
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    let euid = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_file() || meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file of uid {euid} (owner uid {}); remove it",
                path.display(),
                meta.uid()
            ),
        ));
    }
    Ok(file)
}

/// Device, inode and birth time (ns since the epoch; 0 where the platform
/// does not report it) of a lock directory.
pub(super) type Identity = (u64, u64, u128);

pub(super) fn identity_of(meta: &fs::Metadata) -> Identity {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.dev(), meta.ino(), born)
}

/// Whether a sidecar record names exactly this directory. Without a birth
/// time the answer is always no: inode numbers alone are reused.
pub(super) fn is_ours(record: Option<Identity>, meta: &fs::Metadata) -> bool {
    meta.is_dir() && record.is_some_and(|r| r.2 != 0 && r == identity_of(meta))
}

pub(super) fn write_record(sidecar: &mut File, identity: Option<Identity>) -> io::Result<()> {
    sidecar.set_len(0)?;
    sidecar.rewind()?;
    if let Some((dev, ino, born)) = identity {
        write!(
            sidecar,
            "pid {}\ndev {dev}\nino {ino}\nborn {born}\n",
            std::process::id()
        )?;
    }
    sidecar.sync_data()
}

pub(super) fn read_record(sidecar: &mut File) -> io::Result<Option<Identity>> {
    let mut text = String::new();
    sidecar.rewind()?;
    sidecar.read_to_string(&mut text)?;
    Ok(parse_record(&text))
}

/// Parses the sidecar's `dev`, `ino` and `born` lines.
fn parse_record(text: &str) -> Option<Identity> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u128>()
                .ok()
        })
    };
    Some((
        u64::try_from(field("dev")?).ok()?,
        u64::try_from(field("ino")?).ok()?,
        field("born")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        assert_eq!(
            parse_record("pid 4\ndev 10\nino 99\nborn 7\n"),
            Some((10, 99, 7))
        );
        assert_eq!(
            parse_record("pid 4\ndev 10\nino 99\n"),
            None,
            "older records lack a birth time"
        );
        assert_eq!(parse_record(""), None);
        assert_eq!(parse_record("dev x\nino 1"), None);
    }
}
