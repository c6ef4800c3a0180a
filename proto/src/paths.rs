//! The XDG base directories every piauthd crate uses, in one place, so the
//! daemon, the client and the CLI agree on where its files are.
//!
//! The XDG Base Directory spec says a relative `$XDG_*` value is invalid and
//! must be ignored: a relative path would resolve against whatever directory
//! the process happened to start in, so two processes of one user could
//! disagree on where the state is. An empty value is relative too, so "set
//! but empty" falls back exactly like "unset". `HOME` must be absolute for
//! the same reason.
//!
//! Each directory is a pure function of [`BaseDirs`]; only
//! [`BaseDirs::from_env`] reads the process environment.

use std::path::{Path, PathBuf};

/// The environment values the base directories depend on. `None` and
/// relative values mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseDirs {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_data_home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
}

impl BaseDirs {
    /// Reads `HOME` and the `XDG_*` variables of this process.
    pub fn from_env() -> BaseDirs {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        BaseDirs {
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
        }
    }

    /// The home directory, when it is absolute.
    pub fn home(&self) -> Option<PathBuf> {
        absolute(self.home.as_deref())
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn config_home(&self) -> Option<PathBuf> {
        absolute(self.xdg_config_home.as_deref()).or_else(|| self.under_home(".config"))
    }

    /// `$XDG_STATE_HOME`, else `~/.local/state`.
    pub fn state_home(&self) -> Option<PathBuf> {
        absolute(self.xdg_state_home.as_deref())
            .or_else(|| self.under_home(Path::new(".local").join("state")))
    }

    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    pub fn data_home(&self) -> Option<PathBuf> {
        absolute(self.xdg_data_home.as_deref())
            .or_else(|| self.under_home(Path::new(".local").join("share")))
    }

    /// piauthd's own data directory: `data_home()/piauthd`. The accounts
    /// other than the one in pi's `auth.json` live here.
    pub fn piauthd_data_dir(&self) -> Option<PathBuf> {
        self.data_home().map(|d| d.join(PIAUTHD))
    }

    /// `$XDG_RUNTIME_DIR`. The spec gives it no fallback: a replacement
    /// would lack its guarantees (owned by the user, 0700, removed at
    /// logout), so each caller picks its own.
    pub fn runtime_dir(&self) -> Option<PathBuf> {
        absolute(self.xdg_runtime_dir.as_deref())
    }

    /// piauthd's own state directory: `state_home()/piauthd`.
    pub fn piauthd_state_dir(&self) -> Option<PathBuf> {
        self.state_home().map(|d| d.join(PIAUTHD))
    }

    fn under_home(&self, rel: impl AsRef<Path>) -> Option<PathBuf> {
        self.home().map(|h| h.join(rel))
    }
}

/// The directory name piauthd uses under each base directory.
pub const PIAUTHD: &str = "piauthd";

fn absolute(p: Option<&Path>) -> Option<PathBuf> {
    p.filter(|p| p.is_absolute()).map(Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_only() -> BaseDirs {
        BaseDirs {
            home: Some("/home/u".into()),
            ..BaseDirs::default()
        }
    }

    #[test]
    fn absolute_xdg_values_win() {
        let dirs = BaseDirs {
            xdg_config_home: Some("/c".into()),
            xdg_state_home: Some("/s".into()),
            xdg_runtime_dir: Some("/run/user/7".into()),
            ..home_only()
        };
        assert_eq!(dirs.config_home(), Some("/c".into()));
        assert_eq!(dirs.state_home(), Some("/s".into()));
        assert_eq!(dirs.runtime_dir(), Some("/run/user/7".into()));
        assert_eq!(dirs.piauthd_state_dir(), Some("/s/piauthd".into()));
        let data = BaseDirs {
            xdg_data_home: Some("/d".into()),
            ..home_only()
        };
        assert_eq!(data.piauthd_data_dir(), Some("/d/piauthd".into()));
        assert_eq!(
            home_only().piauthd_data_dir(),
            Some("/home/u/.local/share/piauthd".into())
        );
    }

    #[test]
    fn unset_values_fall_back_under_home() {
        let dirs = home_only();
        assert_eq!(dirs.config_home(), Some("/home/u/.config".into()));
        assert_eq!(dirs.state_home(), Some("/home/u/.local/state".into()));
        assert_eq!(dirs.runtime_dir(), None, "the runtime dir has no fallback");
        assert_eq!(
            dirs.piauthd_state_dir(),
            Some("/home/u/.local/state/piauthd".into())
        );
    }

    #[test]
    fn relative_and_empty_values_are_ignored() {
        for bad in ["", "rel", "./x", "x/../y"] {
            let dirs = BaseDirs {
                xdg_config_home: Some(bad.into()),
                xdg_state_home: Some(bad.into()),
                xdg_runtime_dir: Some(bad.into()),
                ..home_only()
            };
            assert_eq!(
                dirs.config_home(),
                Some("/home/u/.config".into()),
                "{bad:?}"
            );
            assert_eq!(
                dirs.state_home(),
                Some("/home/u/.local/state".into()),
                "{bad:?}"
            );
            assert_eq!(dirs.runtime_dir(), None, "{bad:?}");
        }
    }

    #[test]
    fn a_relative_or_missing_home_gives_no_fallback() {
        for home in [None, Some(PathBuf::from("")), Some(PathBuf::from("home/u"))] {
            let dirs = BaseDirs {
                home,
                ..BaseDirs::default()
            };
            assert_eq!(dirs.home(), None);
            assert_eq!(dirs.config_home(), None);
            assert_eq!(dirs.state_home(), None);
            assert_eq!(dirs.piauthd_state_dir(), None);
        }
        let xdg_only = BaseDirs {
            xdg_state_home: Some("/s".into()),
            ..BaseDirs::default()
        };
        assert_eq!(xdg_only.state_home(), Some("/s".into()), "no home needed");
    }
}
