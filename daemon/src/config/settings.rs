//! Every setting, declared once: its flag, its environment variable, its
//! config-file key and its help text all come from the one field below.
//!
//! The same struct is parsed twice: by clap (flags, with the environment
//! under them through `env = "..."`) and by serde (the config file). The
//! two layers are then combined by [`Settings::merge`], and
//! [`super::resolve`] fills in the defaults and checks the values.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{CodexTransport, StoreKind};

/// The settings of one layer (flags and environment, or the config file).
/// `None` means "not given in this layer".
///
/// Unknown config-file keys are an error, so a typo is not silently
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Unix socket to serve on [default: $XDG_RUNTIME_DIR/piauthd/piauthd.sock,
    /// else ~/.local/state/piauthd/piauthd.sock (on macOS the per-user
    /// temporary directory)]
    #[arg(long, env = "PIAUTHD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// pi's agent directory, holding auth.json [default: ~/.pi/agent]
    #[arg(long, env = "PI_CODING_AGENT_DIR", value_name = "DIR")]
    pub agent_dir: Option<String>,

    /// OAuth issuer [default: https://auth.openai.com]
    #[arg(long, env = "PIAUTHD_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,

    /// Codex backend base URL [default: https://chatgpt.com/backend-api]
    #[arg(long, env = "PIAUTHD_CODEX_BASE_URL", value_name = "URL")]
    pub codex_base_url: Option<String>,

    /// Address of the login callback listener [default: 127.0.0.1:1455]
    #[arg(long, env = "PIAUTHD_CALLBACK_ADDR", value_name = "ADDR")]
    pub callback_addr: Option<SocketAddr>,

    /// Login callback address tried when the first is busy [default:
    /// 127.0.0.1:1457 beside the default 1455, else none]
    #[arg(long, env = "PIAUTHD_CALLBACK_FALLBACK_ADDR", value_name = "ADDR")]
    pub callback_fallback_addr: Option<SocketAddr>,

    /// `originator` sent in the authorize URL [default: pi]
    #[arg(long, env = "PIAUTHD_ORIGINATOR", value_name = "NAME")]
    pub originator: Option<String>,

    /// How long a login may take, in seconds [default: 600]
    #[arg(long, env = "PIAUTHD_LOGIN_TIMEOUT_SECS", value_name = "SECS")]
    pub login_timeout_secs: Option<u64>,

    /// A completion stream with no event for this many seconds fails [default: 300]
    #[arg(long, env = "PIAUTHD_STREAM_IDLE_SECS", value_name = "SECS")]
    pub stream_idle_secs: Option<u64>,

    /// A client connection with no open call (a WatchToken stream counts as
    /// one) is closed after this many seconds [default: 300]
    #[arg(long, env = "PIAUTHD_CONNECTION_IDLE_SECS", value_name = "SECS")]
    pub connection_idle_secs: Option<u64>,

    /// Refresh tokens this many seconds before they expire, or at half their
    /// lifetime if that is sooner; 1 to 86400 [default: 2100, 35 minutes,
    /// before pi's own refresh at 30 minutes]
    #[arg(long, env = "PIAUTHD_REFRESH_LEAD_SECS", value_name = "SECS")]
    pub refresh_lead_secs: Option<u64>,

    /// Where credentials are kept [default: file, pi's auth.json]
    #[arg(long, env = "PIAUTHD_STORE", value_enum)]
    pub store: Option<StoreKind>,

    /// How completions reach the Codex backend: auto (a WebSocket per pi
    /// session, continuing its last turn; SSE where the WebSocket fails)
    /// or sse [default: auto]
    #[arg(long, env = "PIAUTHD_CODEX_TRANSPORT", value_enum)]
    pub codex_transport: Option<CodexTransport>,

    /// Follow another piauthd, the owner of the login, instead of keeping
    /// one here: ssh://[user@]host[:port][/remote/socket] (piauthd runs ssh
    /// itself, as $PIAUTHD_SSH, default `ssh`), or the absolute path of the
    /// owner's socket already forwarded to this machine. A follower never
    /// refreshes and keeps no refresh token
    #[arg(long, env = "PIAUTHD_FOLLOW", value_name = "TARGET")]
    pub follow: Option<String>,

    /// Models added to (or replacing) the built-in list. Only the config
    /// file has them: a list of tables does not fit a flag.
    #[arg(skip)]
    pub models: Option<Vec<super::Model>>,
}

impl Settings {
    /// `self` over `lower`: each setting `self` gives wins, the rest come
    /// from `lower`. The destructuring is exhaustive, so a new field that is
    /// not merged does not compile.
    pub fn merge(self, lower: Settings) -> Settings {
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
        } = self;
        Settings {
            socket: socket.or(lower.socket),
            agent_dir: agent_dir.or(lower.agent_dir),
            issuer: issuer.or(lower.issuer),
            codex_base_url: codex_base_url.or(lower.codex_base_url),
            callback_addr: callback_addr.or(lower.callback_addr),
            callback_fallback_addr: callback_fallback_addr.or(lower.callback_fallback_addr),
            originator: originator.or(lower.originator),
            login_timeout_secs: login_timeout_secs.or(lower.login_timeout_secs),
            stream_idle_secs: stream_idle_secs.or(lower.stream_idle_secs),
            connection_idle_secs: connection_idle_secs.or(lower.connection_idle_secs),
            refresh_lead_secs: refresh_lead_secs.or(lower.refresh_lead_secs),
            store: store.or(lower.store),
            codex_transport: codex_transport.or(lower.codex_transport),
            follow: follow.or(lower.follow),
            models: models.or(lower.models),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The settings as the binary parses them, from arguments and an
    /// explicit environment instead of the process's.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn merge_keeps_the_higher_layer_and_fills_in_from_the_lower() {
        let high = Settings {
            socket: Some("/high.sock".into()),
            refresh_lead_secs: Some(60),
            ..Settings::default()
        };
        let low = Settings {
            socket: Some("/low.sock".into()),
            issuer: Some("https://low".into()),
            store: Some(StoreKind::Keyring),
            refresh_lead_secs: Some(3000),
            ..Settings::default()
        };
        let merged = high.merge(low);
        assert_eq!(merged.socket, Some("/high.sock".into()));
        assert_eq!(merged.refresh_lead_secs, Some(60));
        assert_eq!(merged.issuer.as_deref(), Some("https://low"));
        assert_eq!(merged.store, Some(StoreKind::Keyring));
        assert_eq!(merged.login_timeout_secs, None, "neither layer gave it");
    }

    #[test]
    fn merge_with_an_empty_layer_changes_nothing() {
        let full = Settings {
            socket: Some("/s".into()),
            agent_dir: Some("~/a".into()),
            issuer: Some("https://i".into()),
            codex_base_url: Some("https://c".into()),
            callback_addr: Some("127.0.0.1:1".parse().unwrap()),
            callback_fallback_addr: Some("127.0.0.1:2".parse().unwrap()),
            originator: Some("o".into()),
            login_timeout_secs: Some(1),
            stream_idle_secs: Some(2),
            connection_idle_secs: Some(3),
            refresh_lead_secs: Some(4),
            store: Some(StoreKind::Keyring),
            codex_transport: Some(CodexTransport::Sse),
            follow: Some("ssh://devbox".into()),
            models: Some(Vec::new()),
        };
        assert_eq!(full.clone().merge(Settings::default()), full);
        assert_eq!(Settings::default().merge(full.clone()), full);
    }

    #[test]
    fn every_flag_and_variable_parses_into_its_field() {
        let cli = Cli::try_parse_from([
            "piauthd",
            "--socket=/s",
            "--agent-dir=~/a",
            "--issuer=https://i",
            "--codex-base-url=https://c",
            "--callback-addr=127.0.0.1:1",
            "--callback-fallback-addr=127.0.0.1:2",
            "--originator=o",
            "--login-timeout-secs=1",
            "--stream-idle-secs=2",
            "--connection-idle-secs=3",
            "--refresh-lead-secs=4",
            "--store=keyring",
            "--codex-transport=sse",
        ])
        .unwrap();
        let s = cli.settings;
        assert_eq!(s.socket, Some("/s".into()));
        assert_eq!(s.agent_dir.as_deref(), Some("~/a"));
        assert_eq!(s.issuer.as_deref(), Some("https://i"));
        assert_eq!(s.codex_base_url.as_deref(), Some("https://c"));
        assert_eq!(s.callback_addr, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(
            s.callback_fallback_addr,
            Some("127.0.0.1:2".parse().unwrap())
        );
        assert_eq!(s.originator.as_deref(), Some("o"));
        assert_eq!(
            (
                s.login_timeout_secs,
                s.stream_idle_secs,
                s.connection_idle_secs,
                s.refresh_lead_secs
            ),
            (Some(1), Some(2), Some(3), Some(4))
        );
        assert_eq!(s.store, Some(StoreKind::Keyring));
        assert_eq!(s.codex_transport, Some(CodexTransport::Sse));
        assert_eq!(s.models, None, "no flag sets models");
    }

    /// The environment variable each flag falls back to, as the README's
    /// table lists them.
    #[test]
    fn each_setting_names_its_environment_variable() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let vars: Vec<(String, String)> = cmd
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                Some((a.get_long()?.to_owned(), env))
            })
            .collect();
        let want = [
            ("socket", "PIAUTHD_SOCKET"),
            ("agent-dir", "PI_CODING_AGENT_DIR"),
            ("issuer", "PIAUTHD_ISSUER"),
            ("codex-base-url", "PIAUTHD_CODEX_BASE_URL"),
            ("callback-addr", "PIAUTHD_CALLBACK_ADDR"),
            ("callback-fallback-addr", "PIAUTHD_CALLBACK_FALLBACK_ADDR"),
            ("originator", "PIAUTHD_ORIGINATOR"),
            ("login-timeout-secs", "PIAUTHD_LOGIN_TIMEOUT_SECS"),
            ("stream-idle-secs", "PIAUTHD_STREAM_IDLE_SECS"),
            ("connection-idle-secs", "PIAUTHD_CONNECTION_IDLE_SECS"),
            ("refresh-lead-secs", "PIAUTHD_REFRESH_LEAD_SECS"),
            ("store", "PIAUTHD_STORE"),
            ("codex-transport", "PIAUTHD_CODEX_TRANSPORT"),
            ("follow", "PIAUTHD_FOLLOW"),
        ]
        .map(|(f, e)| (f.to_owned(), e.to_owned()));
        assert_eq!(vars, want);
    }

    #[test]
    fn the_file_layer_takes_the_same_keys_and_refuses_others() {
        let s: Settings = toml::from_str(
            "socket = \"/s\"\nagent_dir = \"~/a\"\nissuer = \"https://i\"\n\
             codex_base_url = \"https://c\"\ncallback_addr = \"127.0.0.1:1\"\n\
             callback_fallback_addr = \"127.0.0.1:2\"\noriginator = \"o\"\n\
             login_timeout_secs = 1\nstream_idle_secs = 2\nconnection_idle_secs = 3\n\
             refresh_lead_secs = 4\nstore = \"keyring\"\ncodex_transport = \"sse\"\nfollow = \"/f\"\n",
        )
        .unwrap();
        let flags = Cli::try_parse_from([
            "piauthd",
            "--socket=/s",
            "--agent-dir=~/a",
            "--issuer=https://i",
            "--codex-base-url=https://c",
            "--callback-addr=127.0.0.1:1",
            "--callback-fallback-addr=127.0.0.1:2",
            "--originator=o",
            "--login-timeout-secs=1",
            "--stream-idle-secs=2",
            "--connection-idle-secs=3",
            "--refresh-lead-secs=4",
            "--store=keyring",
            "--codex-transport=sse",
            "--follow=/f",
        ])
        .unwrap();
        assert_eq!(s, flags.settings, "one key per flag, same values");
        let err = toml::from_str::<Settings>("sokcet = \"/x\"\n").unwrap_err();
        assert!(err.message().contains("unknown field `sokcet`"), "{err}");
    }
}
