//! `pi-authctl service`: install piauthd as a user service (systemd on
//! Linux, launchd on macOS), or say exactly what to run.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::out::{self, Failed};

const SERVICE_UNIT: &str = include_str!("../../systemd/piauthd.service");
const SOCKET_UNIT: &str = include_str!("../../systemd/piauthd.socket");
const PLIST: &str = include_str!("../../launchd/dev.piauthd.plist");
/// The launchd label.
pub const LABEL: &str = "dev.piauthd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// systemd user units
    Systemd,
    /// a launchd LaunchAgent
    Launchd,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }
}

/// A file to write.
pub struct Planned {
    pub path: PathBuf,
    pub contents: String,
}

fn home() -> Result<PathBuf, String> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "HOME is not set".to_owned())
}

/// Where an autostarted daemon logs: `$XDG_STATE_HOME/piauthd/piauthd.log`
/// (`~/.local/state/...`), or `~/Library/Logs/piauthd.log` on macOS.
pub fn log_path() -> Result<PathBuf, String> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join("Library").join("Logs").join("piauthd.log"));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .map_or_else(|| home().map(|h| h.join(".local").join("state")), Ok)?;
    Ok(state.join("piauthd").join("piauthd.log"))
}

/// Where the unit files go: `$XDG_CONFIG_HOME/systemd/user`.
pub fn systemd_dir() -> Result<PathBuf, String> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .map_or_else(|| home().map(|h| h.join(".config")), Ok)?;
    Ok(config.join("systemd").join("user"))
}

/// The piauthd binary: beside this pi-authctl, else on PATH.
pub fn piauthd_path() -> Result<PathBuf, String> {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let beside = dir.join("piauthd");
        if beside.is_file() {
            return Ok(std::fs::canonicalize(&beside).unwrap_or(beside));
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("piauthd"))
        .find(|p| p.is_file())
        .ok_or_else(|| "cannot find the piauthd binary beside pi-authctl or on PATH".to_owned())
}

/// The files `install` writes, with real paths filled in.
pub fn plan(
    platform: Platform,
    dir: Option<&Path>,
    piauthd: &Path,
) -> Result<Vec<Planned>, String> {
    let bin = piauthd.display().to_string();
    if bin.contains(char::is_whitespace) {
        return Err(format!(
            "the piauthd path {bin:?} contains white space; move it to a simpler path"
        ));
    }
    match platform {
        Platform::Systemd => {
            let dir = match dir {
                Some(d) => d.to_owned(),
                None => systemd_dir()?,
            };
            Ok(vec![
                Planned {
                    path: dir.join("piauthd.service"),
                    contents: SERVICE_UNIT.replace(
                        "ExecStart=/usr/local/bin/piauthd",
                        &format!("ExecStart={bin}"),
                    ),
                },
                Planned {
                    path: dir.join("piauthd.socket"),
                    contents: SOCKET_UNIT.to_owned(),
                },
            ])
        }
        Platform::Launchd => {
            let home = home()?;
            let dir = match dir {
                Some(d) => d.to_owned(),
                None => home.join("Library").join("LaunchAgents"),
            };
            let log = home.join("Library").join("Logs").join("piauthd.log");
            let contents = PLIST
                .replace(
                    "<string>/usr/local/bin/piauthd</string>",
                    &format!("<string>{}</string>", xml(&bin)),
                )
                .replace(
                    "/Users/USER/Library/Logs/piauthd.log",
                    &xml(&log.display().to_string()),
                );
            Ok(vec![Planned {
                path: dir.join(format!("{LABEL}.plist")),
                contents,
            }])
        }
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The commands that enable and start what `plan` wrote.
pub fn start_commands(platform: Platform, files: &[Planned]) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match platform {
        Platform::Systemd => vec![
            s(&["systemctl", "--user", "daemon-reload"]),
            s(&["systemctl", "--user", "enable", "--now", "piauthd.socket"]),
        ],
        Platform::Launchd => vec![vec![
            "launchctl".into(),
            "bootstrap".into(),
            format!("gui/{}", uid()),
            files[0].path.display().to_string(),
        ]],
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

fn run_all(cmds: &[Vec<String>]) -> Result<(), String> {
    for cmd in cmds {
        let status = Command::new(&cmd[0])
            .args(&cmd[1..])
            .status()
            .map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
        if !status.success() {
            return Err(format!("`{}` failed ({status})", cmd.join(" ")));
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
    plan(platform, None, Path::new("/x"))
        .map(|files| files.iter().any(|f| f.path.exists()))
        .unwrap_or(false)
}

pub fn install(
    platform: Platform,
    dir: Option<&Path>,
    dry_run: bool,
    no_start: bool,
) -> Result<(), Failed> {
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
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
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
fn write_no_follow(path: &Path, contents: &str) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "{} is a symbolic link; refusing to write through it. Remove it (and check where it points), then install again",
                path.display()
            ));
        }
        Ok(m) if !m.is_file() => {
            return Err(format!(
                "{} exists and is not a regular file; remove it, then install again",
                path.display()
            ));
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
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn headless() -> bool {
    std::env::var_os("SSH_CONNECTION").is_some()
        || (std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none())
}

pub fn uninstall(platform: Platform, dir: Option<&Path>, dry_run: bool) -> Result<(), Failed> {
    let files = plan(platform, dir, Path::new("/x"))?;
    let stop = stop_commands(platform);
    if dry_run {
        out::line(&format!("# would run:\n{}", show(&stop)))?;
        for f in &files {
            out::line(&format!("# would remove {}", f.path.display()))?;
        }
        return Ok(());
    }
    if dir.is_none() && manager_available(platform) {
        // Stopping may fail when it was never started; removal goes on.
        let _ = run_all(&stop[..1]);
    }
    for f in &files {
        match std::fs::remove_file(&f.path) {
            Ok(()) => say!("removed {}", f.path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", f.path.display()).into()),
        }
    }
    if dir.is_none() && manager_available(platform) {
        let _ = run_all(&stop[1..]);
    }
    Ok(())
}

pub fn status(platform: Platform) -> Result<(), Failed> {
    let files = plan(platform, None, Path::new("/x"))?;
    for f in &files {
        let state = if f.path.exists() {
            "installed"
        } else {
            "not installed"
        };
        out::line(&format!("{:<60} {state}", f.path.display()))?;
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
    fn units_get_the_real_binary() {
        let files = plan(
            Platform::Systemd,
            Some(Path::new("/u")),
            Path::new("/opt/bin/piauthd"),
        )
        .unwrap();
        assert!(files[0].contents.contains("\nExecStart=/opt/bin/piauthd\n"));
        assert!(!files[0].contents.contains("/usr/local/bin"));
        assert_eq!(files[1].path, Path::new("/u/piauthd.socket"));
        assert!(plan(Platform::Systemd, None, Path::new("/a b/piauthd")).is_err());
    }

    #[test]
    fn the_plist_gets_real_paths() {
        let files = plan(
            Platform::Launchd,
            Some(Path::new("/la")),
            Path::new("/opt/bin/piauthd"),
        )
        .unwrap();
        assert!(
            files[0]
                .contents
                .contains("<string>/opt/bin/piauthd</string>")
        );
        assert!(files[0].contents.contains("/Library/Logs/piauthd.log"));
        assert!(!files[0].contents.contains("/Users/USER"));
        assert_eq!(files[0].path, Path::new("/la/dev.piauthd.plist"));
    }

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let unit = dir.path().join("piauthd.service");
        std::os::unix::fs::symlink(&target, &unit).unwrap();
        let err = write_no_follow(&unit, "[Unit]\n").unwrap_err();
        assert!(err.contains("is a symbolic link"), "{err}");
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
