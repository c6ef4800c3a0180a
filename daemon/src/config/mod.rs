//! Configuration: defaults, then `$XDG_CONFIG_HOME/piauthd/config.toml`, then
//! environment variables, then command-line flags, each overriding the last.
//!
//! Every setting is declared once, in [`Settings`]; flags and environment
//! variables are one layer (clap), the file another (serde), combined by
//! [`Settings::merge`]. Resolution is a pure function of its inputs
//! ([`resolve`]) so every precedence rule is unit-tested; only
//! [`load_file`] touches the disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::base_url::as_base;
pub use crate::base_url::shown;
use crate::paths::BaseDirs;

mod file;
mod follow;
mod settings;

pub use file::{default_config_path, load_file};
pub use follow::{FollowTarget, SshTarget};
pub use settings::Settings;

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
pub const DEFAULT_CONNECTION_IDLE_SECS: u64 = 300;
/// How long a login may take unless configured otherwise.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 600;
/// How far ahead of expiry a token is refreshed unless configured
/// otherwise: 35 minutes, before pi 1.x's `pi auth print-bearer-token`
/// (which refreshes by itself with less than 30 minutes left).
pub const DEFAULT_REFRESH_LEAD_SECS: u64 = 35 * 60;
/// The longest refresh lead accepted: a day.
pub const MAX_REFRESH_LEAD_SECS: u64 = 86_400;

/// A model the config file adds to (or changes in) the list `ListModels`
/// reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub id: String,
    pub context_window: u64,
    pub max_output_tokens: u64,
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

/// How completions go to the Codex backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CodexTransport {
    /// The WebSocket with continuation; SSE for a session whose WebSocket
    /// failed before its first event, as pi 1.6.0 does (the default).
    #[default]
    Auto,
    /// Server-Sent Events only.
    Sse,
}

/// The facts of the environment that defaults depend on.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `HOME` and the XDG directories.
    pub dirs: BaseDirs,
    pub uid: u32,
}

impl Environment {
    pub fn current() -> Environment {
        Environment {
            dirs: BaseDirs::from_env(),
            uid: rustix::process::getuid().as_raw(),
        }
    }

    /// `HOME` as pi reads it (Node's `os.homedir()`): any non-empty value,
    /// relative or not, so that `~` and the default agent directory are
    /// the ones pi uses. The XDG directories are stricter ([`BaseDirs`]).
    fn pi_home(&self) -> Option<&Path> {
        self.dirs
            .home
            .as_deref()
            .filter(|h| !h.as_os_str().is_empty())
    }
}

/// The daemon's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The Unix socket the daemon serves on.
    pub socket: PathBuf,
    /// pi's `auth.json`.
    pub auth_file: PathBuf,
    /// The issuer's base URL; its path ends in `/`, so [`Url::join`]
    /// appends an endpoint to it ([`shown`] prints it as given).
    pub issuer: Url,
    /// The Codex backend's base URL; its path ends in `/` too.
    pub codex_base_url: Url,
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
    pub models: Vec<Model>,
    pub store: StoreKind,
    pub codex_transport: CodexTransport,
    /// The owner this daemon follows; `None`: this daemon owns its login.
    pub follow: Option<FollowTarget>,
    /// The `ssh` a follower runs: `$PIAUTHD_SSH` split on whitespace
    /// ([`ssh_words`]), the program first.
    pub ssh: Vec<String>,
    /// piauthd's state directory (`$XDG_STATE_HOME/piauthd`, else
    /// `~/.local/state/piauthd`): the in-flight refresh record and the
    /// serving lock. `None` without an absolute `HOME` or `XDG_STATE_HOME`.
    pub state_dir: Option<PathBuf>,
    /// Where the ChatGPT accounts other than the one in `auth.json` are
    /// kept, one file each (`$XDG_DATA_HOME/piauthd/accounts`, else
    /// `~/.local/share/piauthd/accounts`). `None` without an absolute
    /// `HOME` or `XDG_DATA_HOME`: then only one account is kept.
    pub accounts_dir: Option<PathBuf>,
    /// How this daemon was started (its settings from the environment, and
    /// its flags), left beside the socket for a client's "start it again"
    /// hint (`piauth_proto::restart`); `None` leaves nothing.
    pub started_as: Option<String>,
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
    #[error("cannot read the config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file does not parse or has a bad value. `line` (1-based) and
    /// `key` locate it, when the parser says where.
    #[error("{}", file::parse_message(path, *line, key.as_deref(), message))]
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
        "{what} {value:?} has a query or a fragment; give the base URL only, piauthd adds the paths"
    )]
    NotABase { what: &'static str, value: String },
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
    #[error(transparent)]
    Follow(follow::BadTarget),
}

/// `$PIAUTHD_SSH` as words: the program, then its options, split on
/// whitespace; `ssh` when it is unset or blank.
pub fn ssh_words(value: Option<&str>) -> Vec<String> {
    let words: Vec<String> = value
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if words.is_empty() {
        vec!["ssh".to_owned()]
    } else {
        words
    }
}

/// Fills in the defaults for what `settings` (every layer, merged) leaves
/// out, and checks every value. `config_file` is the file that was read,
/// for `status`.
pub fn resolve(
    settings: Settings,
    config_file: Option<PathBuf>,
    env: &Environment,
) -> Result<Config, ConfigError> {
    let Settings {
        socket,
        agent_dir,
        issuer,
        codex_base_url,
        callback_addr,
        callback_fallback_addr,
        originator,
        login_timeout_secs,
        stream_idle_secs,
        connection_idle_secs,
        refresh_lead_secs,
        store,
        codex_transport,
        follow,
        models,
    } = settings;
    let follow = follow
        .map(|f| follow::parse(&f))
        .transpose()
        .map_err(ConfigError::Follow)?;
    let socket = socket.unwrap_or_else(|| crate::shared::default_socket_for(&env.dirs, env.uid));
    let agent_dir = resolve_agent_dir(agent_dir, env)?;
    let issuer = check_url("the issuer", issuer.as_deref().unwrap_or(DEFAULT_ISSUER))?;
    let codex_base_url = check_url(
        "the Codex base URL",
        codex_base_url.as_deref().unwrap_or(DEFAULT_CODEX_BASE_URL),
    )?;
    let (callback_addr, callback_fallback_addr) =
        resolve_callback(callback_addr, callback_fallback_addr)?;
    let originator = originator.unwrap_or_else(|| DEFAULT_ORIGINATOR.into());
    if originator.is_empty()
        || originator.len() > 64
        || !originator.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::BadOriginator);
    }
    let refresh_lead_secs = refresh_lead_secs.unwrap_or(DEFAULT_REFRESH_LEAD_SECS);
    if !(1..=MAX_REFRESH_LEAD_SECS).contains(&refresh_lead_secs) {
        return Err(ConfigError::BadRefreshLead(refresh_lead_secs));
    }
    Ok(Config {
        socket,
        auth_file: agent_dir.join("auth.json"),
        issuer,
        codex_base_url,
        callback_addr,
        callback_fallback_addr,
        originator,
        login_timeout_secs: login_timeout_secs
            .unwrap_or(DEFAULT_LOGIN_TIMEOUT_SECS)
            .max(1),
        stream_idle_secs: stream_idle_secs.unwrap_or(DEFAULT_STREAM_IDLE_SECS).max(1),
        connection_idle_secs: connection_idle_secs
            .unwrap_or(DEFAULT_CONNECTION_IDLE_SECS)
            .max(1),
        refresh_lead_secs,
        models: models.unwrap_or_default(),
        store: store.unwrap_or_default(),
        codex_transport: codex_transport.unwrap_or_default(),
        follow,
        ssh: ssh_words(None),
        config_file,
        state_dir: env.dirs.piauthd_state_dir(),
        accounts_dir: env.dirs.piauthd_data_dir().map(|d| d.join("accounts")),
        started_as: None,
    })
}

/// pi's agent directory: the one given (with `~` expanded as pi does), else
/// `~/.pi/agent`.
fn resolve_agent_dir(given: Option<String>, env: &Environment) -> Result<PathBuf, ConfigError> {
    match given {
        Some(d) => expand_tilde(&d, env.pi_home()).ok_or(ConfigError::NoHome {
            what: "a `~` agent directory",
            hint: "an absolute PI_CODING_AGENT_DIR",
        }),
        None => env
            .pi_home()
            .map(|h| h.join(".pi").join("agent"))
            .ok_or(ConfigError::NoHome {
                what: "pi's agent directory",
                hint: "PI_CODING_AGENT_DIR",
            }),
    }
}

/// The callback address and its fallback, both loopback. The fallback
/// defaults to 1457 only beside the default 1455: a custom port has no
/// second port on the issuer's allow-list to fall back to.
fn resolve_callback(
    addr: Option<SocketAddr>,
    fallback: Option<SocketAddr>,
) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let addr = addr.unwrap_or_else(|| DEFAULT_CALLBACK_ADDR.parse().expect("a valid constant"));
    let fallback = fallback
        .or_else(|| {
            let default: SocketAddr = DEFAULT_CALLBACK_FALLBACK_ADDR
                .parse()
                .expect("a valid constant");
            (addr.port() == 1455).then(|| SocketAddr::new(addr.ip(), default.port()))
        })
        // The same address twice is dropped, but not port 0: each bind of
        // it picks a port of its own, so two are two tries, not one port.
        .filter(|a| *a != addr || a.port() == 0);
    for a in std::iter::once(addr).chain(fallback) {
        if !a.ip().is_loopback() {
            return Err(ConfigError::NotLoopback(a));
        }
    }
    Ok((addr, fallback))
}

/// Parses a base URL, accepting `https://` anywhere and `http://` only to a
/// loopback host (127.0.0.0/8, `::1`, `localhost`): tokens and prompts
/// travel in these requests, so plain text may not leave the machine.
///
/// The result's path ends in exactly one `/`, so that [`Url::join`] appends
/// an endpoint to it rather than replacing its last segment
/// (`https://h/backend-api` joined with `codex/responses` would otherwise
/// lose `backend-api`). A query or a fragment would not survive a join, so
/// it is refused rather than silently dropped.
pub fn check_url(what: &'static str, value: &str) -> Result<Url, ConfigError> {
    let bad = || ConfigError::BadUrl {
        what,
        value: value.to_owned(),
    };
    let url = Url::parse(value).map_err(|_| bad())?;
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => {}
        ("http", Some(url::Host::Ipv4(ip))) if ip.is_loopback() => {}
        ("http", Some(url::Host::Ipv6(ip))) if ip.is_loopback() => {}
        ("http", Some(url::Host::Domain(d))) if d.eq_ignore_ascii_case("localhost") => {}
        ("http", Some(_)) => {
            return Err(ConfigError::PlainHttp {
                what,
                value: value.to_owned(),
            });
        }
        _ => return Err(bad()),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::NotABase {
            what,
            value: value.to_owned(),
        });
    }
    Ok(as_base(url))
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
mod tests;
