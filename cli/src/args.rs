//! The command line's grammar: every subcommand, flag and help text.
//!
//! Kept apart from `main.rs`, which only dispatches, so the help text a
//! user reads and the code that acts on it are each read in one piece.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::service::Platform;

const EXIT_HELP: &str = "\
When nothing serves the default socket and no service is installed,
pi-authctl starts piauthd in the background (its log:
~/.local/state/piauthd/piauthd.log, or ~/Library/Logs/piauthd.log on macOS);
--no-autostart or PIAUTHD_NO_AUTOSTART=1 turns that off. A --socket or
PIAUTHD_SOCKET other than the default is never started: start piauthd there
yourself (`piauthd --socket PATH`).

Exit status:
  0    success (also when the reader of stdout went away)
  1    error (the login failed, a socket or the autostart lock was refused,
       the daemon refused the call, `status` of a follower that cannot
       reach its owner)
  2    bad usage (an unknown command, flag or value)
  3    piauthd is not running and was not started (autostart off or failed,
       or a --socket that nothing serves)
  4    not logged in, or the login must be renewed: run `pi-authctl login`
  130  cancelled (Ctrl-C)

Docs: README.md and docs/PROTOCOL.md in the piauthd repository.";

const LOGIN_HELP: &str = "\
Over SSH, the browser on your own machine cannot reach the daemon's callback
on the remote host. Either:
  * forward the port, then open the printed URL locally:
      ssh -L 1455:127.0.0.1:1455 remote-host
  * or sign in anyway and paste the URL your browser ends on (the page will
    not load; its address holds the code) into this prompt;
  * or use a device code: pi-authctl login --device";

/// Control piauthd, the daemon that owns pi's OpenAI Codex login.
#[derive(Debug, Parser)]
#[command(version, after_help = EXIT_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub daemon: DaemonArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Which daemon to talk to, and whether it may be started.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The daemon's socket, used only when its directory is yours and 0700
    /// [default: $XDG_RUNTIME_DIR/piauthd/piauthd.sock, else
    /// ~/.local/state/piauthd/piauthd.sock]
    #[arg(
        long,
        global = true,
        env = "PIAUTHD_SOCKET",
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,

    /// Never start piauthd; exit 3 when it is not running (also
    /// PIAUTHD_NO_AUTOSTART=1)
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_autostart: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the daemon (socket, issuer, backend, config file), the store and
    /// each provider's login.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an access token, alone on a line, for scripts.
    Token {
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
        /// The token must stay valid at least this many seconds (capped at 3600).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        min_valid: u32,
        /// Print JSON with the expiry and account id.
        #[arg(long)]
        json: bool,
    },
    /// Log in to ChatGPT (OpenAI Codex) through the daemon.
    ///
    /// Prints the sign-in URL and opens the browser when this machine has a
    /// display. Meanwhile it accepts the redirected URL, or the code, pasted
    /// on stdin.
    #[command(after_help = LOGIN_HELP)]
    Login {
        /// Provider id (piauthd logs in only to openai-codex).
        #[arg(long, default_value = "openai-codex")]
        provider: String,
        /// Use a device code instead of the browser callback (headless).
        #[arg(long)]
        device: bool,
        /// Do not open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// Give up after this many seconds [default: the daemon's
        /// login_timeout_secs, 600].
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
    },
    /// Log out: remove the provider's credential (others are untouched).
    Logout {
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
    },
    /// Stream a completion from the Codex backend, through the daemon.
    ///
    /// The text goes to stdout as it arrives; usage goes to stderr at the
    /// end. The token never leaves the daemon.
    Complete(CompleteArgs),
    /// Show the plan's usage limits: for each account, the 5-hour and the
    /// weekly window (percent used, time to reset) and credits.
    ///
    /// The daemon reads the backend's usage endpoint at most once a minute
    /// per account, and learns newer numbers from every response it
    /// relays. A window the backend does not report is shown as such,
    /// never as 0 %.
    Usage {
        /// Print JSON: {"accounts": [{"account_id", "email", "plan",
        /// "primary", "secondary", "limit_reached", "source",
        /// "fetched_at"}]}, times in epoch seconds.
        #[arg(long)]
        json: bool,
        /// Ask the backend now, even when the daemon read it less than a
        /// minute ago.
        #[arg(long)]
        fresh: bool,
    },
    /// List the ChatGPT accounts the daemon keeps, or change them.
    ///
    /// `pi-authctl login` as another ChatGPT account adds it and makes it
    /// active; the active account is the one in pi's auth.json, the others
    /// are kept by piauthd (0600, under $XDG_DATA_HOME/piauthd/accounts).
    Accounts {
        #[command(subcommand)]
        action: Option<AccountsAction>,
        /// Print JSON: {"accounts": [{"account_id", "email", "plan",
        /// "active", "state"}]}.
        #[arg(long)]
        json: bool,
    },
    /// List the models the daemon relays, with their limits.
    Models {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install, remove or inspect piauthd as a user service (systemd on
    /// Linux, launchd on macOS).
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Manage where the daemon keeps credentials.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Refresh the token now; the daemon does it, once, for every client.
    ///
    /// Also the way to retry after a refresh whose outcome was unknown
    /// (status says so); that retry may log you out if the issuer had in
    /// fact used the token.
    Refresh {
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
    },
    /// Print the token now and again each time it changes, one per line.
    ///
    /// When the provider is not logged in it says so and exits 4, unless
    /// --wait is given.
    Watch {
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
        /// Print JSON lines with the expiry and account id.
        #[arg(long)]
        json: bool,
        /// When not logged in, wait for a login instead of exiting.
        #[arg(long)]
        wait: bool,
    },
}

/// What `complete` asks, and how it prints the answer.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The prompt, or `-` to read it from stdin.
    pub prompt: String,
    /// Model id (see `pi-authctl models`).
    #[arg(long, default_value = "gpt-6.2-sol")]
    pub model: String,
    /// Reasoning effort [default: the model's].
    #[arg(long, value_parser = ["minimal", "low", "medium", "high", "xhigh"])]
    pub effort: Option<String>,
    /// The system prompt (instructions).
    #[arg(long, default_value = "You are a helpful assistant.")]
    pub system: String,
    /// Session id, for prompt caching across calls.
    #[arg(long)]
    pub session: Option<String>,
    /// Print one raw event per line, as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the model's text byte for byte. Without it, control
    /// sequences (escape codes, OSC 52 clipboard writes, other control
    /// characters but newline and tab) are removed when stdout is a
    /// terminal.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountsAction {
    /// Make ACCOUNT_ID the active account: it moves into pi's auth.json,
    /// and the one there is kept beside it.
    Use {
        /// The account id, as `pi-authctl accounts` lists it.
        account_id: String,
    },
    /// Choose the account by headroom again (undo `use`): each new session
    /// gets the account with the most room, and a limited one is skipped.
    Auto,
    /// Remove ACCOUNT_ID and its tokens. Removing the active account makes
    /// the first other usable account active, or logs out.
    Remove {
        /// The account id, as `pi-authctl accounts` lists it.
        account_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Move the openai-codex login between pi's auth.json and the OS
    /// keyring, under the locks; other providers stay in auth.json.
    ///
    /// Stop the daemon first, then start it again with `--store keyring`
    /// (or `store = "keyring"` in its config). In keyring mode pi cannot read
    /// the token from auth.json; pi 1.6 or later gets it through the pi
    /// package in client/pi.
    Migrate {
        /// Where the login goes.
        #[arg(long, value_name = "STORE", value_parser = ["keyring", "file"])]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the units (or plist) with this machine's paths, then enable and
    /// start them, or print exactly what to run.
    Install {
        /// Print what would be written and run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the files but do not enable or start anything.
        #[arg(long)]
        no_start: bool,
        /// Write into this directory instead of the service manager's.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Which service manager to write for [default: this OS's].
        #[arg(long, value_enum)]
        platform: Option<Platform>,
    },
    /// Stop the service and remove its files.
    Uninstall {
        /// Print what would be stopped and removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove from this directory instead of the service manager's.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Which service manager's files to remove [default: this OS's].
        #[arg(long, value_enum)]
        platform: Option<Platform>,
    },
    /// Show whether the service is installed and running.
    Status {
        /// Which service manager to ask [default: this OS's].
        #[arg(long, value_enum)]
        platform: Option<Platform>,
    },
}

impl Command {
    /// The `--provider` of the commands that take one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Command::Token { provider, .. }
            | Command::Login { provider, .. }
            | Command::Logout { provider }
            | Command::Refresh { provider }
            | Command::Watch { provider, .. } => Some(provider),
            _ => None,
        }
    }
}

impl ServiceAction {
    /// The `--platform` given, if any: every action takes one.
    pub fn platform(&self) -> Option<Platform> {
        match self {
            ServiceAction::Install { platform, .. }
            | ServiceAction::Uninstall { platform, .. }
            | ServiceAction::Status { platform } => *platform,
        }
    }
}
