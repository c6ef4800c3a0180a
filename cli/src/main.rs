//! `pi-authctl`: the command line for piauthd.
//!
//! A thin binary: parse with clap, call the client library, print. It never
//! links the daemon; everything goes over the socket. Nothing it prints can
//! panic ([`out`]).

#[macro_use]
mod out;
mod complete;
mod connect;
mod login;
mod render;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::out::Failed;
use clap::{Parser, Subcommand};

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
       the daemon refused the call)
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
struct Cli {
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
    socket: Option<PathBuf>,

    /// Never start piauthd; exit 3 when it is not running (also
    /// PIAUTHD_NO_AUTOSTART=1)
    #[arg(long, global = true, help_heading = "Global options")]
    no_autostart: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Complete {
        /// The prompt, or `-` to read it from stdin.
        prompt: String,
        /// Model id (see `pi-authctl models`).
        #[arg(long, default_value = "gpt-5.1-codex-mini")]
        model: String,
        /// Reasoning effort [default: the model's].
        #[arg(long, value_parser = ["minimal", "low", "medium", "high", "xhigh"])]
        effort: Option<String>,
        /// The system prompt (instructions).
        #[arg(long, default_value = "You are a helpful assistant.")]
        system: String,
        /// Session id, for prompt caching across calls.
        #[arg(long)]
        session: Option<String>,
        /// Print one raw event per line, as JSON.
        #[arg(long)]
        json: bool,
        /// Print the model's text byte for byte. Without it, control
        /// sequences (escape codes, OSC 52 clipboard writes, other control
        /// characters but newline and tab) are removed when stdout is a
        /// terminal.
        #[arg(long)]
        raw: bool,
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

#[derive(Debug, Subcommand)]
enum StoreAction {
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
enum ServiceAction {
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
        platform: Option<service::Platform>,
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
        platform: Option<service::Platform>,
    },
    /// Show whether the service is installed and running.
    Status {
        /// Which service manager to ask [default: this OS's].
        #[arg(long, value_enum)]
        platform: Option<service::Platform>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("pi-authctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let provider = cli.command.provider().map(str::to_owned);
    let result = runtime.block_on(run(cli));
    // A read of stdin may still be pending; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(Failed::Stdout(e)) if out::reader_gone(&e) => ExitCode::SUCCESS,
        Err(Failed::Stdout(e)) => {
            say!("pi-authctl: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
        Err(Failed::Message(m)) => {
            say!("pi-authctl: {m}");
            ExitCode::FAILURE
        }
        Err(Failed::Client(e)) => {
            say!("pi-authctl: {}", connect::explain(&e, provider.as_deref()));
            ExitCode::from(connect::exit_code(&e))
        }
    }
}

impl Command {
    /// The `--provider` of the commands that take one.
    fn provider(&self) -> Option<&str> {
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

/// `store migrate`: the daemon binary does the move, so pi-authctl never
/// touches a store itself.
fn migrate(to: &str) -> Result<ExitCode, Failed> {
    let daemon = service::piauthd_path()?;
    let status = std::process::Command::new(daemon)
        .args(["--migrate-store-to", to])
        .status()
        .map_err(|e| format!("cannot run piauthd: {e}"))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn service_command(action: &ServiceAction) -> Result<ExitCode, Failed> {
    let current = service::Platform::current;
    match action {
        ServiceAction::Install {
            dry_run,
            no_start,
            dir,
            platform,
        } => service::install(
            platform.unwrap_or_else(current),
            dir.as_deref(),
            *dry_run,
            *no_start,
        )?,
        ServiceAction::Uninstall {
            dry_run,
            dir,
            platform,
        } => service::uninstall(platform.unwrap_or_else(current), dir.as_deref(), *dry_run)?,
        ServiceAction::Status { platform } => service::status(platform.unwrap_or_else(current))?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode, Failed> {
    match &cli.command {
        Command::Store {
            action: StoreAction::Migrate { to },
        } => return migrate(to),
        Command::Service { action } => return service_command(action),
        _ => {}
    }
    let socket = connect::socket(cli.socket);
    let mut client = connect::connect(socket, cli.no_autostart).await?;
    match cli.command {
        Command::Status { json } => {
            let status = client.status().await?;
            if json {
                out::line(&render::status_json(&status).to_string())?;
            } else {
                out::print(&render::status_table(&status))?;
            }
        }
        Command::Token {
            provider,
            min_valid,
            json,
        } => {
            let token = client.get_token(&provider, min_valid).await?;
            if json {
                out::line(&render::token_json(&token).to_string())?;
            } else {
                out::line(&token.access_token)?;
            }
        }
        Command::Refresh { provider } => {
            let token = client.refresh(&provider).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            say!(
                "refreshed {}; the new token expires {}",
                token.provider,
                render::relative(token.expires_at_ms - now)
            );
        }
        Command::Login {
            provider,
            device,
            no_browser,
            timeout,
        } => {
            let timeout = timeout.unwrap_or(0);
            return Ok(
                match login::run(&mut client, &provider, device, no_browser, timeout).await? {
                    login::Outcome::Success => ExitCode::SUCCESS,
                    login::Outcome::Failure => ExitCode::FAILURE,
                    login::Outcome::Cancelled => ExitCode::from(130),
                },
            );
        }
        Command::Complete {
            prompt,
            model,
            effort,
            system,
            session,
            json,
            raw,
        } => {
            let prompt = complete::read_prompt(&prompt)
                .map_err(|e| format!("cannot read the prompt from stdin: {e}"))?;
            let p = complete::Prompt {
                prompt,
                model,
                effort,
                system,
                session,
                json,
                raw,
            };
            if !complete::run(&mut client, p).await? {
                return Ok(ExitCode::from(130));
            }
        }
        Command::Models { json } => {
            let models = client.list_models().await?;
            if json {
                out::line(&render::models_json(&models).to_string())?;
            } else {
                out::print(&render::models_table(&models))?;
            }
        }
        Command::Service { .. } | Command::Store { .. } => {}
        Command::Logout { provider } => {
            if client.logout(&provider).await? {
                say!("Logged out of {provider}.");
            } else {
                say!("{provider} was not logged in.");
            }
        }
        Command::Watch {
            provider,
            json,
            wait,
        } => return watch(&mut client, &provider, json, wait).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `watch`: the token now and each new one. Logged out, it says so and
/// exits 4 (as `token` does), or with `--wait` says that it waits.
async fn watch(
    client: &mut piauth_client::Client,
    provider: &str,
    json: bool,
    wait: bool,
) -> Result<ExitCode, Failed> {
    let status = client.status().await?;
    if let Some(state) = render::logged_out(&status, provider) {
        if !wait {
            say!(
                "pi-authctl: {provider} is {state}: run `pi-authctl login` \
                 (or `pi-authctl watch --wait` to wait for a login)"
            );
            return Ok(ExitCode::from(4));
        }
        say!("pi-authctl: {provider} is {state}; waiting for a login (`pi-authctl login`)");
    }
    let mut stream = client.watch_token(provider).await?;
    while let Some(token) = stream.next().await? {
        if json {
            out::line(&render::token_json(&token).to_string())?;
        } else {
            out::line(&token.access_token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
