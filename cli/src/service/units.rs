//! The service's files: which there are for each service manager, where
//! they go, and their text with this machine's paths.

use std::path::{Path, PathBuf};

use super::ServiceError;
use crate::paths::{PathError, home, systemd_dir};

const SERVICE_UNIT: &str = include_str!("../../../systemd/piauthd.service");
const SOCKET_UNIT: &str = include_str!("../../../systemd/piauthd.socket");
const PLIST: &str = include_str!("../../../launchd/dev.piauthd.plist");
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

    /// The files this service manager needs, in the order they are written.
    fn units(self) -> &'static [Unit] {
        match self {
            Platform::Systemd => &[Unit::Service, Unit::Socket],
            Platform::Launchd => &[Unit::Plist],
        }
    }

    /// Where the service manager looks for them.
    fn default_dir(self) -> Result<PathBuf, PathError> {
        match self {
            Platform::Systemd => systemd_dir(),
            Platform::Launchd => Ok(home()?.join("Library").join("LaunchAgents")),
        }
    }
}

/// One file of a service.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Service,
    Socket,
    Plist,
}

impl Unit {
    fn file_name(self) -> &'static str {
        match self {
            Unit::Service => "piauthd.service",
            Unit::Socket => "piauthd.socket",
            Unit::Plist => "dev.piauthd.plist",
        }
    }

    /// The file's text with `bin` (already checked for white space) as the
    /// daemon; the plist also gets the real log path.
    fn render(self, bin: &str) -> Result<String, ServiceError> {
        Ok(match self {
            Unit::Service => SERVICE_UNIT.replace(
                "ExecStart=/usr/local/bin/piauthd",
                &format!("ExecStart={bin}"),
            ),
            Unit::Socket => SOCKET_UNIT.to_owned(),
            Unit::Plist => {
                let log = home()?.join("Library").join("Logs").join("piauthd.log");
                PLIST
                    .replace(
                        "<string>/usr/local/bin/piauthd</string>",
                        &format!("<string>{}</string>", xml(bin)),
                    )
                    .replace(
                        "/Users/USER/Library/Logs/piauthd.log",
                        &xml(&log.display().to_string()),
                    )
            }
        })
    }
}

/// A file to write.
#[derive(Debug)]
pub struct Planned {
    pub path: PathBuf,
    pub contents: String,
}

/// Where the service's files are (or would go): `dir`, else the service
/// manager's own directory. Knowing them needs no piauthd binary, so
/// `status`, `uninstall` and the autostart check use this alone.
pub fn unit_paths(platform: Platform, dir: Option<&Path>) -> Result<Vec<PathBuf>, ServiceError> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => platform.default_dir()?,
    };
    Ok(platform
        .units()
        .iter()
        .map(|u| dir.join(u.file_name()))
        .collect())
}

/// The files `install` writes, with real paths filled in.
pub fn plan(
    platform: Platform,
    dir: Option<&Path>,
    piauthd: &Path,
) -> Result<Vec<Planned>, ServiceError> {
    let bin = piauthd.display().to_string();
    if bin.contains(char::is_whitespace) {
        return Err(ServiceError::WhiteSpace {
            path: piauthd.to_owned(),
        });
    }
    let paths = unit_paths(platform, dir)?;
    platform
        .units()
        .iter()
        .zip(paths)
        .map(|(unit, path)| {
            Ok(Planned {
                path,
                contents: unit.render(&bin)?,
            })
        })
        .collect()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
        let spaced = plan(Platform::Systemd, None, Path::new("/a b/piauthd")).unwrap_err();
        assert_eq!(
            spaced.to_string(),
            "the piauthd path \"/a b/piauthd\" contains white space; move it to a simpler path"
        );
    }

    #[test]
    fn unit_paths_need_no_binary_and_match_the_plan() {
        let dir = Path::new("/u");
        assert_eq!(
            unit_paths(Platform::Systemd, Some(dir)).unwrap(),
            [dir.join("piauthd.service"), dir.join("piauthd.socket")]
        );
        assert_eq!(
            unit_paths(Platform::Launchd, Some(dir)).unwrap(),
            [dir.join("dev.piauthd.plist")]
        );
        for platform in [Platform::Systemd, Platform::Launchd] {
            let planned: Vec<_> = plan(platform, Some(dir), Path::new("/opt/piauthd"))
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect();
            assert_eq!(planned, unit_paths(platform, Some(dir)).unwrap());
        }
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
}
