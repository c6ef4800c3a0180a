//! Configuration: defaults, then `$XDG_CONFIG_HOME/piauthd/config.toml`, then
//! environment variables, then command-line flags, each overriding the last.
//!
//! Resolution is a pure function of its inputs ([`resolve`]) so every
//! precedence rule is unit-tested; only [`load_file`] touches the disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The issuer used unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "https://auth.openai.com";
/// The Codex backend used unless configured otherwise.
pub const DEFAULT_CODEX_BASE_URL: &str = "https://chatgpt.com/backend-api";
/// Where the login callback listener binds unless configured otherwise.
pub const DEFAULT_CALLBACK_ADDR: &str = "127.0.0.1:1455";
/// Where it binds when the first address is busy: the only other port on
/// the issuer's redirect allow-list.
pub const DEFAULT_CALLBACK_FALLBACK_ADDR: &str = "127.0.0.1:1457";
/// `originator` in the authorize URL unless configured otherwise.
pub const DEFAULT_ORIGINATOR: &str = "pi";
/// How long a completion stream may go without an event (as Codex CLI).
pub const DEFAULT_STREAM_IDLE_SECS: u64 = 300;
/// How long a gRPC connection with no open call stays unless configured
/// otherwise: 5 minutes.
pub const DEFAULT_CONNECTION_IDLE_SECS: u64 = crate::rpc::IDLE_TIMEOUT.as_secs();
/// How long a login may take unless configured otherwise.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 600;
/// How far ahead of expiry a token is refreshed unless configured
/// otherwise: 35 minutes, before pi 1.x's `pi auth print-bearer-token`
/// (which refreshes by itself with less than 30 minutes left).
pub const DEFAULT_REFRESH_LEAD_SECS: u64 = 35 * 60;
/// The longest refresh lead accepted: a day.
pub const MAX_REFRESH_LEAD_SECS: u64 = 86_400;

/// Values given on the command line or in the environment. `None` means
/// "not given here"; clap merges flags over environment variables.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub agent_dir: Option<String>,
    pub issuer: Option<String>,
    pub codex_base_url: Option<String>,
    pub callback_addr: Option<SocketAddr>,
    pub callback_fallback_addr: Option<SocketAddr>,
    pub originator: Option<String>,
    pub login_timeout_secs: Option<u64>,
    pub stream_idle_secs: Option<u64>,
    pub connection_idle_secs: Option<u64>,
    pub refresh_lead_secs: Option<u64>,
    pub store: Option<StoreKind>,
}

/// Where credentials are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// pi's auth.json (pi-compatible; the default).
    #[default]
    File,
    /// The OS keyring (Keychain, Secret Service, Credential Manager).
    Keyring,
}

/// The config file's contents. Unknown keys are an error, so a typo is not
/// silently ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub socket: Option<PathBuf>,
    pub agent_dir: Option<String>,
    pub issuer: Option<String>,
    pub codex_base_url: Option<String>,
    pub callback_addr: Option<SocketAddr>,
    pub callback_fallback_addr: Option<SocketAddr>,
    pub originator: Option<String>,
    pub login_timeout_secs: Option<u64>,
    pub stream_idle_secs: Option<u64>,
    pub connection_idle_secs: Option<u64>,
    pub refresh_lead_secs: Option<u64>,
    pub store: Option<StoreKind>,
    /// Models added to (or replacing) the built-in list.
    #[serde(default)]
    pub models: Vec<crate::codex::models::Model>,
    /// The file this was read from; `None` when there was none.
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
}

/// The facts of the environment that defaults depend on.
#[derive(Debug, Clone)]
pub struct Environment {
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub uid: u32,
}

impl Environment {
    pub fn current() -> Environment {
        Environment {
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            // SAFETY: getuid has no preconditions and cannot fail.
            uid: unsafe { libc::getuid() },
        }
    }
}

/// The daemon's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The Unix socket the daemon serves on.
    pub socket: PathBuf,
    /// pi's `auth.json`.
    pub auth_file: PathBuf,
    pub issuer: String,
    pub codex_base_url: String,
    pub callback_addr: SocketAddr,
    /// Tried when `callback_addr` is busy; `None` when there is none.
    pub callback_fallback_addr: Option<SocketAddr>,
    pub originator: String,
    pub login_timeout_secs: u64,
    /// A completion stream with no event for this long fails.
    pub stream_idle_secs: u64,
    /// A gRPC connection with no open call (a WatchToken stream is one) is
    /// closed after this long.
    pub connection_idle_secs: u64,
    /// Tokens are refreshed this long before expiry (at most half their
    /// lifetime).
    pub refresh_lead_secs: u64,
    pub models: Vec<crate::codex::models::Model>,
    pub store: StoreKind,
    /// The config file that was read, for `status`; `None` when none was.
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// The lock that keyring-mode daemons take (beside `auth.json`).
    pub fn keyring_lock(&self) -> PathBuf {
        self.auth_file.with_file_name("piauthd-keyring")
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse or has a bad value. `line` (1-based) and
    /// `key` locate it, when the parser says where.
    #[error("{}", parse_message(path, *line, key.as_deref(), message))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
    #[error("HOME is not set, so {what} has no default; set {hint}")]
    NoHome {
        what: &'static str,
        hint: &'static str,
    },
    #[error("{what} must be an http(s) URL, got {value:?}")]
    BadUrl { what: &'static str, value: String },
    #[error(
        "{what} {value:?} is plain http to a host that is not loopback; tokens would cross the \
         network unencrypted. Use https:// (plain http is only for 127.0.0.1, ::1 or localhost)"
    )]
    PlainHttp { what: &'static str, value: String },
    #[error(
        "the callback address {0} is not a loopback address; the login callback must never be reachable from the network"
    )]
    NotLoopback(SocketAddr),
    #[error("the originator must be 1-64 printable ASCII characters")]
    BadOriginator,
    #[error(
        "refresh_lead_secs (--refresh-lead-secs, PIAUTHD_REFRESH_LEAD_SECS) must be between 1 and {max} seconds, got {0}",
        max = MAX_REFRESH_LEAD_SECS
    )]
    BadRefreshLead(u64),
}

/// Where the config file lives: `$XDG_CONFIG_HOME/piauthd/config.toml`, or
/// `~/.config/piauthd/config.toml`.
pub fn default_config_path(env: &Environment) -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".config")))
        .map(|d| d.join("piauthd").join("config.toml"))
}

/// Reads a config file. A missing file is an empty config unless `required`.
pub fn load_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default());
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
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
    file.loaded_from = Some(path.to_owned());
    Ok(file)
}

/// "the config file F is invalid at line 3, key `login_timeout_secs`: ...".
fn parse_message(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
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

/// Combines defaults, the file and the overrides.
pub fn resolve(
    over: Overrides,
    file: FileConfig,
    env: &Environment,
) -> Result<Config, ConfigError> {
    let socket = match over.socket.or(file.socket) {
        Some(p) => p,
        None => piauth_proto::socket::default_path_for(env.xdg_runtime_dir.as_deref(), env.uid),
    };
    let agent_dir = match over.agent_dir.or(file.agent_dir) {
        Some(d) => expand_tilde(&d, env.home.as_deref()).ok_or(ConfigError::NoHome {
            what: "a `~` agent directory",
            hint: "an absolute PI_CODING_AGENT_DIR",
        })?,
        None => env
            .home
            .as_ref()
            .map(|h| h.join(".pi").join("agent"))
            .ok_or(ConfigError::NoHome {
                what: "pi's agent directory",
                hint: "PI_CODING_AGENT_DIR",
            })?,
    };
    let issuer = over
        .issuer
        .or(file.issuer)
        .unwrap_or_else(|| DEFAULT_ISSUER.into());
    let codex_base_url = over
        .codex_base_url
        .or(file.codex_base_url)
        .unwrap_or_else(|| DEFAULT_CODEX_BASE_URL.into());
    for (what, value) in [
        ("the issuer", &issuer),
        ("the Codex base URL", &codex_base_url),
    ] {
        check_url(what, value)?;
    }
    let callback_addr = over
        .callback_addr
        .or(file.callback_addr)
        .unwrap_or_else(|| DEFAULT_CALLBACK_ADDR.parse().expect("valid constant"));
    // The fallback defaults to 1457 only beside the default 1455: a custom
    // port has no second port on the issuer's allow-list to fall back to.
    let callback_fallback_addr = over
        .callback_fallback_addr
        .or(file.callback_fallback_addr)
        .or_else(|| {
            (callback_addr.port() == 1455).then(|| SocketAddr::new(callback_addr.ip(), 1457))
        })
        // The same address twice is dropped, but not port 0: each bind of
        // it picks a port of its own, so two are two tries, not one port.
        .filter(|a| *a != callback_addr || a.port() == 0);
    for addr in std::iter::once(callback_addr).chain(callback_fallback_addr) {
        if !addr.ip().is_loopback() {
            return Err(ConfigError::NotLoopback(addr));
        }
    }
    let originator = over
        .originator
        .or(file.originator)
        .unwrap_or_else(|| DEFAULT_ORIGINATOR.into());
    if originator.is_empty()
        || originator.len() > 64
        || !originator.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::BadOriginator);
    }
    let login_timeout_secs = over
        .login_timeout_secs
        .or(file.login_timeout_secs)
        .unwrap_or(DEFAULT_LOGIN_TIMEOUT_SECS)
        .max(1);
    let stream_idle_secs = over
        .stream_idle_secs
        .or(file.stream_idle_secs)
        .unwrap_or(DEFAULT_STREAM_IDLE_SECS)
        .max(1);
    let connection_idle_secs = over
        .connection_idle_secs
        .or(file.connection_idle_secs)
        .unwrap_or(DEFAULT_CONNECTION_IDLE_SECS)
        .max(1);
    let refresh_lead_secs = over
        .refresh_lead_secs
        .or(file.refresh_lead_secs)
        .unwrap_or(DEFAULT_REFRESH_LEAD_SECS);
    if !(1..=MAX_REFRESH_LEAD_SECS).contains(&refresh_lead_secs) {
        return Err(ConfigError::BadRefreshLead(refresh_lead_secs));
    }
    Ok(Config {
        stream_idle_secs,
        connection_idle_secs,
        refresh_lead_secs,
        models: file.models,
        config_file: file.loaded_from,
        store: over.store.or(file.store).unwrap_or_default(),
        callback_fallback_addr,
        originator,
        login_timeout_secs,
        socket,
        auth_file: agent_dir.join("auth.json"),
        issuer: issuer.trim_end_matches('/').to_owned(),
        codex_base_url: codex_base_url.trim_end_matches('/').to_owned(),
        callback_addr,
    })
}

/// Accepts `https://` anywhere and `http://` only to a loopback host
/// (127.0.0.0/8, `::1`, `localhost`): tokens and prompts travel in these
/// requests, so plain text may not leave the machine.
pub fn check_url(what: &'static str, value: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadUrl {
        what,
        value: value.to_owned(),
    };
    let parsed = url::Url::parse(value).map_err(|_| bad())?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => Ok(()),
            Some(_) => Err(ConfigError::PlainHttp {
                what,
                value: value.to_owned(),
            }),
            None => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Expands a leading `~` or `~/` as pi does; `None` if HOME is needed but unset.
pub fn expand_tilde(path: &str, home: Option<&Path>) -> Option<PathBuf> {
    if path == "~" {
        return home.map(Path::to_owned);
    }
    match path.strip_prefix("~/") {
        Some(rest) => home.map(|h| h.join(rest)),
        None => Some(PathBuf::from(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            home: Some("/home/u".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            uid: 1000,
        }
    }

    #[test]
    fn defaults() {
        let c = resolve(Overrides::default(), FileConfig::default(), &env()).unwrap();
        assert_eq!(
            c.socket,
            PathBuf::from("/run/user/1000/piauthd/piauthd.sock")
        );
        assert_eq!(c.auth_file, PathBuf::from("/home/u/.pi/agent/auth.json"));
        assert_eq!(c.issuer, DEFAULT_ISSUER);
        assert_eq!(c.codex_base_url, DEFAULT_CODEX_BASE_URL);
        assert_eq!(c.callback_addr.to_string(), "127.0.0.1:1455");
        assert_eq!(
            c.callback_fallback_addr.unwrap().to_string(),
            "127.0.0.1:1457"
        );
        assert_eq!(c.originator, "pi");
        assert_eq!(c.login_timeout_secs, 600);
        assert_eq!(c.connection_idle_secs, 300);
        assert_eq!(c.refresh_lead_secs, 2100);
    }

    #[test]
    fn the_refresh_lead_is_layered_and_bounded() {
        let file = FileConfig {
            refresh_lead_secs: Some(3000),
            ..Default::default()
        };
        let c = resolve(Overrides::default(), file.clone(), &env()).unwrap();
        assert_eq!(c.refresh_lead_secs, 3000);
        let over = Overrides {
            refresh_lead_secs: Some(60),
            ..Default::default()
        };
        let c = resolve(over, file, &env()).unwrap();
        assert_eq!(c.refresh_lead_secs, 60);
        for bad in [0, MAX_REFRESH_LEAD_SECS + 1, u64::MAX] {
            let over = Overrides {
                refresh_lead_secs: Some(bad),
                ..Default::default()
            };
            let err = resolve(over, FileConfig::default(), &env()).unwrap_err();
            assert!(matches!(err, ConfigError::BadRefreshLead(v) if v == bad));
            assert!(err.to_string().contains("refresh_lead_secs"), "{err}");
        }
        let c = resolve(
            Overrides {
                refresh_lead_secs: Some(MAX_REFRESH_LEAD_SECS),
                ..Default::default()
            },
            FileConfig::default(),
            &env(),
        )
        .unwrap();
        assert_eq!(c.refresh_lead_secs, MAX_REFRESH_LEAD_SECS);
    }

    #[test]
    fn callback_addresses_must_be_loopback() {
        let over = Overrides {
            callback_addr: Some("0.0.0.0:1455".parse().unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(over, FileConfig::default(), &env()),
            Err(ConfigError::NotLoopback(_))
        ));
        let over = Overrides {
            callback_addr: Some("127.0.0.1:5000".parse().unwrap()),
            ..Default::default()
        };
        let c = resolve(over, FileConfig::default(), &env()).unwrap();
        assert_eq!(
            c.callback_fallback_addr, None,
            "no fallback beside a custom port"
        );
    }

    #[test]
    fn port_zero_is_kept_for_both_callback_addresses() {
        let addrs = |primary: &str, fallback: &str| {
            let over = Overrides {
                callback_addr: Some(primary.parse().unwrap()),
                callback_fallback_addr: Some(fallback.parse().unwrap()),
                ..Default::default()
            };
            let c = resolve(over, FileConfig::default(), &env()).unwrap();
            (c.callback_addr, c.callback_fallback_addr)
        };
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(addrs("127.0.0.1:0", "127.0.0.1:0"), (any, Some(any)));
        let v6: SocketAddr = "[::1]:0".parse().unwrap();
        assert_eq!(addrs("[::1]:0", "127.0.0.1:0"), (v6, Some(any)));
        // A fixed port named twice is one port: the fallback is dropped.
        let fixed: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(addrs("127.0.0.1:5000", "127.0.0.1:5000"), (fixed, None));
    }

    #[test]
    fn overrides_beat_the_file_which_beats_defaults() {
        let file = FileConfig {
            issuer: Some("https://file/".into()),
            agent_dir: Some("~/pi".into()),
            socket: Some("/f.sock".into()),
            ..Default::default()
        };
        let over = Overrides {
            socket: Some("/o.sock".into()),
            ..Default::default()
        };
        let c = resolve(over, file, &env()).unwrap();
        assert_eq!(c.socket, PathBuf::from("/o.sock"));
        assert_eq!(c.issuer, "https://file");
        assert_eq!(c.auth_file, PathBuf::from("/home/u/pi/auth.json"));
    }

    #[test]
    fn rejects_a_non_http_issuer_and_missing_home() {
        let over = Overrides {
            issuer: Some("auth.openai.com".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(over, FileConfig::default(), &env()),
            Err(ConfigError::BadUrl { .. })
        ));
        let no_home = Environment {
            home: None,
            ..env()
        };
        assert!(matches!(
            resolve(Overrides::default(), FileConfig::default(), &no_home),
            Err(ConfigError::NoHome { .. })
        ));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://auth.openai.com",
            "http://127.0.0.1:9",
            "http://127.8.9.10/x",
            "http://[::1]:4000/backend-api",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(check_url("the issuer", ok).is_ok(), "{ok}");
        }
        for plain in [
            "http://auth.openai.com",
            "http://10.0.0.1",
            "http://[::2]",
            "http://localhost.evil.example",
            "http://0.0.0.0:80",
        ] {
            let err = check_url("the issuer", plain).unwrap_err();
            assert!(matches!(err, ConfigError::PlainHttp { .. }), "{plain}");
            assert!(err.to_string().contains("https://"), "{err}");
        }
        for bad in ["ftp://x", "https://", "auth.openai.com", "http://"] {
            assert!(
                matches!(
                    check_url("the issuer", bad),
                    Err(ConfigError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
        let over = Overrides {
            codex_base_url: Some("http://chatgpt.com/backend-api".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(over, FileConfig::default(), &env()),
            Err(ConfigError::PlainHttp {
                what: "the Codex base URL",
                ..
            })
        ));
    }

    #[test]
    fn tilde_expansion_matches_pi() {
        let home = Some(Path::new("/h"));
        assert_eq!(expand_tilde("~", home), Some("/h".into()));
        assert_eq!(expand_tilde("~/x", home), Some("/h/x".into()));
        assert_eq!(expand_tilde("/abs/~", home), Some("/abs/~".into()));
        assert_eq!(expand_tilde("~other", home), Some("~other".into()));
        assert_eq!(expand_tilde("~/x", None), None);
    }

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
        let f = load_file(&p, false).unwrap();
        assert_eq!(f.socket, Some("/x".into()));
        assert_eq!(f.refresh_lead_secs, Some(2400));
        assert_eq!(f.loaded_from.as_deref(), Some(p.as_path()));
        let none = load_file(&dir.path().join("none.toml"), false).unwrap();
        assert_eq!(none.loaded_from, None, "no file was read");
        assert!(load_file(&dir.path().join("none.toml"), true).is_err());
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
