//! Refusing to run in another user's files, as gpg-agent refuses a foreign
//! home directory.
//!
//! `sudo -E pi-authctl refresh` keeps the user's `HOME` and starts a root
//! daemon. Left alone, that daemon would write `auth.json` by rename (the new
//! file is root's), create the lock and socket directories as root, and lock
//! the user, their daemon and pi itself out of their own login. piauthd
//! never changes a file's owner to repair this (no `chown` anywhere); it
//! refuses to start and says which uid it should run as instead.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A path that belongs to another uid than the daemon's.
#[derive(Debug, thiserror::Error)]
#[error("{path} belongs to uid {owner}, but piauthd runs as uid {euid}; {hint}", hint = owner_hint(*.owner, *.euid, path))]
pub struct ForeignOwner {
    pub path: PathBuf,
    pub owner: u32,
    pub euid: u32,
}

/// What to do about a path of uid `owner` met by a daemon running as
/// `euid`, for people.
pub fn owner_hint(owner: u32, euid: u32, path: &Path) -> String {
    if euid == 0 {
        format!(
            "run piauthd and pi-authctl as uid {owner}, not as root (not via sudo -E); \
             piauthd never changes a file's owner"
        )
    } else if owner == 0 {
        format!(
            "a root process (sudo?) left it behind: give it back with \
             `sudo chown -R {euid} {}`, then start piauthd as uid {euid}",
            path.display()
        )
    } else {
        format!(
            "run piauthd as uid {owner}, or point PI_CODING_AGENT_DIR (or --socket) at a \
             directory of your own"
        )
    }
}

/// Why the store's files cannot be checked or are not ours.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(transparent)]
    Foreign(#[from] ForeignOwner),
    #[error("cannot inspect {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// Whether a directory of `owner` may hold a directory the daemon (as
/// `euid`) creates: its own, or a system one (root's: `/tmp`, `/run/user`
/// is per-user, `/home` is root's). Another user's directory never.
pub fn may_create_in(owner: u32, euid: u32) -> bool {
    owner == euid || owner == 0
}

/// The metadata of `path` (following symlinks); `None` when it is missing.
fn stat(path: &Path) -> Result<Option<std::fs::Metadata>, OwnerError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OwnerError::Io {
            path: path.to_owned(),
            cause: source,
        }),
    }
}

/// Checks that a directory the daemon will use (and create if missing) is
/// its own: an existing `dir` must belong to `euid`; a missing one may be
/// created only inside a directory of `euid` or root.
pub fn check_dir(dir: &Path, euid: u32) -> Result<(), OwnerError> {
    let foreign = |path: &Path, owner: u32| ForeignOwner {
        path: path.to_owned(),
        owner,
        euid,
    };
    if let Some(meta) = stat(dir)? {
        return match meta.uid() {
            owner if owner == euid => Ok(()),
            owner => Err(foreign(dir, owner).into()),
        };
    }
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        if let Some(meta) = stat(ancestor)? {
            return match meta.uid() {
                owner if may_create_in(owner, euid) => Ok(()),
                owner => Err(foreign(ancestor, owner).into()),
            };
        }
    }
    Ok(())
}

/// Checks pi's agent directory and `auth_file` (when it exists) belong to
/// `euid`. Blocking: call it off the runtime.
pub fn check_store(auth_file: &Path, euid: u32) -> Result<(), OwnerError> {
    if let Some(dir) = auth_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_dir(dir, euid)?;
    }
    if let Some(meta) = stat(auth_file)?
        && meta.uid() != euid
    {
        return Err(ForeignOwner {
            path: auth_file.to_owned(),
            owner: meta.uid(),
            euid,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn hints_name_the_uid_to_run_as() {
        let p = Path::new("/home/u/.pi/agent");
        let root = owner_hint(1000, 0, p);
        assert!(
            root.contains("as uid 1000") && root.contains("sudo -E"),
            "{root}"
        );
        let left = owner_hint(0, 1000, p);
        assert!(
            left.contains("sudo chown -R 1000 /home/u/.pi/agent"),
            "{left}"
        );
        let other = owner_hint(1001, 1000, p);
        assert!(other.contains("uid 1001"), "{other}");
        let e = ForeignOwner {
            path: p.into(),
            owner: 1000,
            euid: 0,
        };
        assert!(
            e.to_string()
                .starts_with("/home/u/.pi/agent belongs to uid 1000, but piauthd runs as uid 0;"),
            "{e}"
        );
    }

    #[test]
    fn only_own_or_system_directories_take_new_ones() {
        assert!(may_create_in(1000, 1000));
        assert!(may_create_in(0, 1000));
        assert!(may_create_in(0, 0));
        assert!(!may_create_in(1000, 0));
        assert!(!may_create_in(1001, 1000));
    }

    #[test]
    fn own_files_pass_and_a_foreign_uid_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let auth = tmp.path().join("agent/auth.json");
        // Missing agent dir inside our own temp dir: fine.
        check_store(&auth, euid()).unwrap();
        std::fs::create_dir(auth.parent().unwrap()).unwrap();
        std::fs::write(&auth, b"{}").unwrap();
        check_store(&auth, euid()).unwrap();
        // As another uid, the same files are foreign.
        let other = euid().wrapping_add(4242);
        match check_store(&auth, other) {
            Err(OwnerError::Foreign(f)) => {
                assert_eq!((f.owner, f.euid), (euid(), other));
                assert_eq!(f.path, auth.parent().unwrap());
            }
            r => panic!("{r:?}"),
        }
        // A missing directory inside a foreign one is refused too: as root,
        // inside a directory given to uid 4242; else inside ours, as another.
        let (parent, me) = if euid() == 0 {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
            (theirs, 0)
        } else {
            (tmp.path().to_owned(), other)
        };
        assert!(matches!(
            check_dir(&parent.join("new/agent"), me),
            Err(OwnerError::Foreign(f)) if f.path == parent
        ));
    }
}
