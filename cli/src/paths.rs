//! Where things are: HOME, the XDG base directories, the piauthd binary
//! and the log of a daemon the CLI starts.

use std::path::PathBuf;

use piauth_client::proto::paths::BaseDirs;

/// A path the CLI needs could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("HOME is not set, or not an absolute path")]
    NoHome,
    #[error("cannot find the piauthd binary beside pi-authctl or on PATH")]
    NoDaemon,
}

/// `$HOME`, when it is an absolute path (the rule every crate shares:
/// [`BaseDirs`]).
pub fn home() -> Result<PathBuf, PathError> {
    BaseDirs::from_env().home().ok_or(PathError::NoHome)
}

/// Where an autostarted daemon logs: `$XDG_STATE_HOME/piauthd/piauthd.log`
/// (`~/.local/state/...`), or `~/Library/Logs/piauthd.log` on macOS.
pub fn log_path() -> Result<PathBuf, PathError> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join("Library").join("Logs").join("piauthd.log"));
    }
    let state = BaseDirs::from_env()
        .piauthd_state_dir()
        .ok_or(PathError::NoHome)?;
    Ok(state.join("piauthd.log"))
}

/// Where the unit files go: `$XDG_CONFIG_HOME/systemd/user`.
pub fn systemd_dir() -> Result<PathBuf, PathError> {
    let config = BaseDirs::from_env()
        .config_home()
        .ok_or(PathError::NoHome)?;
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
