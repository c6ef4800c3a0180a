//! Where things are: HOME, the XDG base directories, the piauthd binary
//! and the log of a daemon the CLI starts.

use std::ffi::OsString;
use std::path::PathBuf;

/// A path the CLI needs could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("HOME is not set")]
    NoHome,
    #[error("cannot find the piauthd binary beside pi-authctl or on PATH")]
    NoDaemon,
}

/// `$HOME`; an empty one counts as unset rather than as the working
/// directory.
pub fn home() -> Result<PathBuf, PathError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(PathError::NoHome)
}

/// An XDG base directory variable's value, when it is usable: the spec
/// says a relative path is invalid and must be ignored (an empty one is
/// not absolute either). Pure.
fn xdg_base(value: Option<OsString>) -> Option<PathBuf> {
    value.map(PathBuf::from).filter(|d| d.is_absolute())
}

/// `$var` when usable, else `~/fallback`.
fn xdg_dir(var: &str, fallback: &[&str]) -> Result<PathBuf, PathError> {
    match xdg_base(std::env::var_os(var)) {
        Some(dir) => Ok(dir),
        None => Ok(fallback.iter().fold(home()?, |dir, part| dir.join(part))),
    }
}

/// Where an autostarted daemon logs: `$XDG_STATE_HOME/piauthd/piauthd.log`
/// (`~/.local/state/...`), or `~/Library/Logs/piauthd.log` on macOS.
pub fn log_path() -> Result<PathBuf, PathError> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join("Library").join("Logs").join("piauthd.log"));
    }
    let state = xdg_dir("XDG_STATE_HOME", &[".local", "state"])?;
    Ok(state.join("piauthd").join("piauthd.log"))
}

/// Where the unit files go: `$XDG_CONFIG_HOME/systemd/user`.
pub fn systemd_dir() -> Result<PathBuf, PathError> {
    let config = xdg_dir("XDG_CONFIG_HOME", &[".config"])?;
    Ok(config.join("systemd").join("user"))
}

/// The piauthd binary: beside this pi-authctl, else on PATH.
pub fn piauthd_path() -> Result<PathBuf, PathError> {
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
        .ok_or(PathError::NoDaemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_or_empty_xdg_directory_is_ignored() {
        assert_eq!(
            xdg_base(Some("/home/me/.state".into())),
            Some(PathBuf::from("/home/me/.state"))
        );
        assert_eq!(xdg_base(Some("state".into())), None);
        assert_eq!(xdg_base(Some("./state".into())), None);
        assert_eq!(xdg_base(Some("".into())), None);
        assert_eq!(xdg_base(None), None);
    }
}
