//! `pi-authctl service`: install piauthd as a user service (systemd on
//! Linux, launchd on macOS), or say exactly what to run.

mod units;

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::out::{self, WriteError};
use crate::paths::{PathError, piauthd_path};
pub use units::{LABEL, Planned, Platform, plan, unit_paths};

/// Why a service command failed. Each variant names the path or command
/// it is about, so the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Path(#[from] PathError),
    /// The units' `ExecStart=` and the plist split on white space.
    #[error("the piauthd path {path:?} contains white space; move it to a simpler path")]
    WhiteSpace { path: PathBuf },
    #[error(
        "{} is a symbolic link; refusing to write through it. Remove it (and check where it points), then install again",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "{} exists and is not a regular file; remove it, then install again",
        path.display()
    )]
    NotAFile { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Run {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: ExitStatus },
    #[error("{0}")]
    Stdout(#[from] WriteError),
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The commands that enable and start what `plan` wrote.
pub fn start_commands(platform: Platform, files: &[Planned]) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match platform {
        Platform::Systemd => vec![
            s(&["systemctl", "--user", "daemon-reload"]),
            s(&["systemctl", "--user", "enable", "--now", "piauthd.socket"]),
        ],
        Platform::Launchd => vec![
            [
                "launchctl".to_owned(),
                "bootstrap".to_owned(),
                format!("gui/{}", uid()),
            ]
            .into_iter()
            .chain(files.iter().map(|f| f.path.display().to_string()))
            .collect(),
        ],
    }
}

fn stop_commands(platform: Platform) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match platform {
        Platform::Systemd => vec![
            s(&[
                "systemctl",
                "--user",
                "disable",
                "--now",
                "piauthd.socket",
                "piauthd.service",
            ]),
            s(&["systemctl", "--user", "daemon-reload"]),
        ],
        Platform::Launchd => vec![vec![
            "launchctl".into(),
            "bootout".into(),
            format!("gui/{}/{LABEL}", uid()),
        ]],
    }
}

/// Whether the service manager can be driven from here.
fn manager_available(platform: Platform) -> bool {
    let probe = match platform {
        Platform::Systemd => Command::new("systemctl")
            .args(["--user", "show-environment"])
            .output(),
        Platform::Launchd => Command::new("launchctl").arg("version").output(),
    };
    probe.is_ok_and(|o| o.status.success())
}

fn run_all(cmds: &[Vec<String>]) -> Result<(), ServiceError> {
    for cmd in cmds {
        let Some((program, args)) = cmd.split_first() else {
            continue;
        };
        let status = Command::new(program)
            .args(args)
            .status()
            .map_err(|source| ServiceError::Run {
                program: program.clone(),
                source,
            })?;
        if !status.success() {
            return Err(ServiceError::Failed {
                command: cmd.join(" "),
                status,
            });
        }
    }
    Ok(())
}

fn show(cmds: &[Vec<String>]) -> String {
    cmds.iter()
        .map(|c| format!("  {}\n", c.join(" ")))
        .collect()
}

/// Whether a service is installed (its files exist).
pub fn installed(platform: Platform) -> bool {
    unit_paths(platform, None).is_ok_and(|paths| paths.iter().any(|p| p.exists()))
}

pub fn install(
    platform: Platform,
    dir: Option<&Path>,
    dry_run: bool,
    no_start: bool,
) -> Result<(), ServiceError> {
    let files = plan(platform, dir, &piauthd_path()?)?;
    let start = start_commands(platform, &files);
    if dry_run {
        for f in &files {
            out::line(&format!("# {}\n{}", f.path.display(), f.contents))?;
        }
        out::line(&format!("# then:\n{}", show(&start)))?;
        return Ok(());
    }
    for f in &files {
        if let Some(parent) = f.path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ServiceError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        write_no_follow(&f.path, &f.contents)?;
        say!("wrote {}", f.path.display());
    }
    if no_start || dir.is_some() {
        say!("To start it:\n{}", show(&start));
    } else if manager_available(platform) {
        run_all(&start)?;
        say!("piauthd is installed and starts on demand.");
    } else {
        say!(
            "The service manager is not reachable from here. Run:\n{}",
            show(&start)
        );
    }
    if platform == Platform::Systemd && headless() {
        say!(
            "This looks like a headless host: to keep piauthd running while you are logged out, run\n  loginctl enable-linger $USER"
        );
    }
    Ok(())
}

/// Writes `contents` to `path` without ever writing through a symbolic
/// link: a link (or anything but a regular file) already at `path` is
/// refused, and the data goes to a new temporary file beside it (created
/// exclusively, `O_NOFOLLOW`) that is then renamed over `path`. A rename
/// replaces a link swapped in after the check instead of following it, so
/// the file a planted link points at is never touched.
fn write_no_follow(path: &Path, contents: &str) -> Result<(), ServiceError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(ServiceError::Symlink {
                path: path.to_owned(),
            });
        }
        Ok(m) if !m.is_file() => {
            return Err(ServiceError::NotAFile {
                path: path.to_owned(),
            });
        }
        _ => {}
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ServiceError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

fn headless() -> bool {
    std::env::var_os("SSH_CONNECTION").is_some()
        || (std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none())
}

pub fn uninstall(
    platform: Platform,
    dir: Option<&Path>,
    dry_run: bool,
) -> Result<(), ServiceError> {
    let paths = unit_paths(platform, dir)?;
    let stop = stop_commands(platform);
    if dry_run {
        out::line(&format!("# would run:\n{}", show(&stop)))?;
        for path in &paths {
            out::line(&format!("# would remove {}", path.display()))?;
        }
        return Ok(());
    }
    if dir.is_none() && manager_available(platform) {
        // Stopping may fail when it was never started; removal goes on.
        let _ = run_all(&stop[..1]);
    }
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => say!("removed {}", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ServiceError::Remove { path, source }),
        }
    }
    if dir.is_none() && manager_available(platform) {
        let _ = run_all(&stop[1..]);
    }
    Ok(())
}

pub fn status(platform: Platform) -> Result<(), ServiceError> {
    for path in unit_paths(platform, None)? {
        let state = if path.exists() {
            "installed"
        } else {
            "not installed"
        };
        out::line(&format!("{:<60} {state}", path.display()))?;
    }
    if manager_available(platform) {
        let cmd = match platform {
            Platform::Systemd => vec![
                "systemctl",
                "--user",
                "--no-pager",
                "status",
                "piauthd.socket",
                "piauthd.service",
            ],
            Platform::Launchd => vec!["launchctl", "list", LABEL],
        };
        let _ = Command::new(cmd[0]).args(&cmd[1..]).status();
    } else {
        out::line("(the service manager is not reachable from here)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_name_the_path_or_command() {
        use std::os::unix::process::ExitStatusExt;
        let failed = ServiceError::Failed {
            command: "systemctl --user daemon-reload".into(),
            status: ExitStatus::from_raw(1 << 8),
        };
        assert_eq!(
            failed.to_string(),
            "`systemctl --user daemon-reload` failed (exit status: 1)"
        );
        let missing = run_all(&[vec!["/nonexistent/systemctl".into()]]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot run /nonexistent/systemctl: "),
            "{missing}"
        );
        assert!(std::error::Error::source(&missing).is_some());
        let removed = ServiceError::Remove {
            path: "/u/piauthd.socket".into(),
            source: io::ErrorKind::PermissionDenied.into(),
        };
        assert!(
            removed
                .to_string()
                .starts_with("cannot remove /u/piauthd.socket: "),
            "{removed}"
        );
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let unit = dir.path().join("piauthd.service");
        std::os::unix::fs::symlink(&target, &unit).unwrap();
        let err = write_no_follow(&unit, "[Unit]\n").unwrap_err();
        assert!(
            matches!(&err, ServiceError::Symlink { path } if *path == unit),
            "{err}"
        );
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling link is refused too: nothing is created at its target.
        let dangling = dir.path().join("piauthd.socket");
        std::os::unix::fs::symlink(dir.path().join("new"), &dangling).unwrap();
        assert!(write_no_follow(&dangling, "x").is_err());
        assert!(!dir.path().join("new").exists());
        // A plain file is replaced, and no temporary file is left behind.
        let plain = dir.path().join("dev.piauthd.plist");
        std::fs::write(&plain, "old").unwrap();
        write_no_follow(&plain, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }
}
