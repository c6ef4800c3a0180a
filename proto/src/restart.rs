//! How a daemon was started, left beside its socket, so a client that finds
//! nothing serving that socket can say how to start the same daemon again:
//! with its settings (issuer, backend, agent dir, store), not a bare
//! `piauthd` that would serve another store against OpenAI's issuer.
//!
//! The daemon writes `<socket>.start` (0600, in its private socket
//! directory) at start-up: one line, the command as a POSIX shell reads it,
//! its `PIAUTHD_*` and `PI_CODING_AGENT_DIR` settings first. It holds no
//! secret: settings are URLs, paths and numbers.

use std::path::{Path, PathBuf};

/// The environment settings a daemon reads (besides its flags).
pub const SETTINGS: &[&str] = &[
    "PI_CODING_AGENT_DIR",
    "PIAUTHD_SOCKET",
    "PIAUTHD_ISSUER",
    "PIAUTHD_CODEX_BASE_URL",
    "PIAUTHD_STORE",
    "PIAUTHD_CODEX_TRANSPORT",
    "PIAUTHD_CALLBACK_ADDR",
    "PIAUTHD_CALLBACK_FALLBACK_ADDR",
    "PIAUTHD_ORIGINATOR",
    "PIAUTHD_LOGIN_TIMEOUT_SECS",
    "PIAUTHD_STREAM_IDLE_SECS",
    "PIAUTHD_CONNECTION_IDLE_SECS",
    "PIAUTHD_REFRESH_LEAD_SECS",
    "PIAUTHD_FOLLOW",
];

/// The longest command line kept; a longer one is not a start command.
pub const MAX_BYTES: usize = 4096;

/// Where the start command of the daemon on `socket` is kept.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".start");
    PathBuf::from(name)
}

/// The command line that starts a daemon with `env` (name, value) and
/// `args` (its arguments), each word quoted for a POSIX shell. Pure.
pub fn command(env: &[(String, String)], args: &[String]) -> String {
    let mut words: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{name}={}", shell_word(value)))
        .collect();
    words.push("piauthd".to_owned());
    words.extend(args.iter().map(|a| shell_word(a)));
    words.join(" ")
}

/// `word` quoted for a POSIX shell when it needs it, so a hint can be
/// pasted. Pure.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Whether `line` can be a start command: one printable line that starts
/// piauthd. Pure.
pub fn plausible(line: &str) -> bool {
    line.len() <= MAX_BYTES
        && !line.chars().any(char::is_control)
        && line.split(' ').any(|w| w == "piauthd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_quotes_every_word_and_puts_settings_first() {
        let env = vec![(
            "PIAUTHD_ISSUER".to_owned(),
            "http://127.0.0.1:8787".to_owned(),
        )];
        let args = vec![
            "--socket".to_owned(),
            "/tmp/my dir/it's.sock".to_owned(),
            "--agent-dir".to_owned(),
            "/d/agent".to_owned(),
        ];
        assert_eq!(
            command(&env, &args),
            "PIAUTHD_ISSUER=http://127.0.0.1:8787 piauthd --socket '/tmp/my dir/it'\\''s.sock' --agent-dir /d/agent"
        );
        assert_eq!(command(&[], &[]), "piauthd");
        assert!(plausible(&command(&env, &args)));
        assert!(!plausible("rm -rf /"));
        assert!(!plausible("piauthd\nrm -rf /"));
        assert_eq!(
            path_for(Path::new("/run/user/1/piauthd/piauthd.sock")),
            PathBuf::from("/run/user/1/piauthd/piauthd.sock.start")
        );
    }
}
