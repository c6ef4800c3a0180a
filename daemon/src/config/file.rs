//! The config file: where it is, reading it, and saying where it is wrong.

use std::path::{Path, PathBuf};

use super::{ConfigError, Environment, Settings};

/// Where the config file lives: `$XDG_CONFIG_HOME/piauthd/config.toml`, or
/// `~/.config/piauthd/config.toml`.
pub fn default_config_path(env: &Environment) -> Option<PathBuf> {
    env.dirs
        .config_home()
        .map(|d| d.join(crate::paths::PIAUTHD).join("config.toml"))
}

/// Reads a config file. A missing file is `None` unless `required`, when
/// it is an error (a `--config` the user named must exist).
pub fn load_file(path: &Path, required: bool) -> Result<Option<Settings>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                cause: source,
            });
        }
    };
    let settings = toml::from_str(&text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => {
                let (line, key) = locate(&text, span.start);
                (Some(line), key)
            }
            None => (None, None),
        };
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            key,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    Ok(Some(settings))
}

/// "the config file F is invalid at line 3, key `login_timeout_secs`: ...".
pub(super) fn parse_message(
    path: &Path,
    line: Option<usize>,
    key: Option<&str>,
    message: &str,
) -> String {
    let at = match (line, key) {
        (Some(l), Some(k)) => format!(" at line {l}, key `{k}`"),
        (Some(l), None) => format!(" at line {l}"),
        (None, _) => String::new(),
    };
    format!(
        "the config file {} is invalid{at}: {message}",
        path.display()
    )
}

/// The 1-based line of byte `offset` in `text`, and the key that line sets
/// (`models.id` inside a `[[models]]` table), for an error message. Pure.
fn locate(text: &str, offset: usize) -> (usize, Option<String>) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_no = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with(['[', '#']));
    let table = before
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']', ' ']).to_owned());
    let key = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (_, k) => k,
    };
    (line_no, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::BaseDirs;

    #[test]
    fn the_file_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "sokcet = \"/x\"\n").unwrap();
        assert!(matches!(
            load_file(&p, false),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(
            &p,
            "socket = \"/x\"\ncallback_addr = \"127.0.0.1:1457\"\nrefresh_lead_secs = 2400\n",
        )
        .unwrap();
        let f = load_file(&p, false).unwrap().expect("the file was read");
        assert_eq!(f.socket, Some("/x".into()));
        assert_eq!(f.refresh_lead_secs, Some(2400));
        let none = load_file(&dir.path().join("none.toml"), false).unwrap();
        assert_eq!(none, None, "no file was read");
        assert!(matches!(
            load_file(&dir.path().join("none.toml"), true),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn a_bad_value_names_the_file_the_key_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "# mine\nissuer = \"http://127.0.0.1:8787\"\nlogin_timeout_secs = \"10\"\n",
        )
        .unwrap();
        let msg = load_file(&p, false).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "the config file {} is invalid at line 3, key `login_timeout_secs`: \
                 invalid type: string \"10\", expected u64",
                p.display()
            )
        );
        std::fs::write(&p, "store = \"file\"\nsokcet = \"/x\"\n").unwrap();
        let msg = load_file(&p, false).unwrap_err().to_string();
        assert!(
            msg.contains("at line 2, key `sokcet`: unknown field `sokcet`"),
            "{msg}"
        );
        std::fs::write(&p, "[[models]]\nid = \"m\"\ncontext_window = \"big\"\n").unwrap();
        let msg = load_file(&p, false).unwrap_err().to_string();
        assert!(
            msg.contains("at line 3, key `models.context_window`"),
            "{msg}"
        );
    }

    #[test]
    fn the_default_path_follows_xdg_config_home_and_ignores_a_relative_one() {
        let env = |xdg: Option<&str>| Environment {
            dirs: BaseDirs {
                home: Some("/home/u".into()),
                xdg_config_home: xdg.map(PathBuf::from),
                ..BaseDirs::default()
            },
            uid: 1000,
        };
        assert_eq!(
            default_config_path(&env(Some("/cfg"))),
            Some("/cfg/piauthd/config.toml".into())
        );
        for ignored in [None, Some(""), Some("cfg")] {
            assert_eq!(
                default_config_path(&env(ignored)),
                Some("/home/u/.config/piauthd/config.toml".into()),
                "{ignored:?}"
            );
        }
    }

    #[test]
    fn locate_finds_the_line_and_key_of_an_offset() {
        let text = "a = 1\n\n[t]\n\"b\" = 2\n";
        assert_eq!(locate(text, 0), (1, Some("a".into())));
        assert_eq!(locate(text, 6), (2, None));
        assert_eq!(
            locate(text, text.find("2").unwrap()),
            (4, Some("t.b".into()))
        );
        assert_eq!(locate(text, 999), (5, None));
        assert_eq!(locate("é = 1", 1), (1, Some("é".into())));
    }
}
