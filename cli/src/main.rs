//! `pi-authctl`: the command line for piauthd.
//!
//! A thin binary: parse with clap, call the client library, print. It never
//! links the daemon; everything goes over the socket.

mod complete;
mod login;
mod render;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use piauth_client::{Client, Error, Reason};

const EXIT_HELP: &str = "\
When piauthd is not running and no service is installed, pi-authctl starts it
in the background (its log: ~/.local/state/piauthd/piauthd.log, or
~/Library/Logs/piauthd.log on macOS); --no-autostart turns that off.

Exit status:
  0    success
  1    error (or the login failed)
  2    bad usage
  3    piauthd is not running
  4    not logged in, or the login must be renewed: run `pi-authctl login`
  130  cancelled (Ctrl-C)";

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
#[command(version, about, after_help = EXIT_HELP)]
struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/piauthd/piauthd.sock,
    /// else ~/.local/state/piauthd/piauthd.sock (on macOS the per-user
    /// temporary directory); it is used only if its directory is yours and
    /// 0700 and the daemon runs as you]
    #[arg(long, global = true, env = "PIAUTHD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Do not start piauthd when it is not running (also PIAUTHD_NO_AUTOSTART=1).
    #[arg(long, global = true)]
    no_autostart: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the daemon, the credential store and each provider's login.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an access token, alone on a line, for scripts.
    ///
    /// pi can take its key from this command: set
    /// `"apiKey": "!pi-authctl token"` in pi's model settings.
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
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
        /// Use a device code instead of the browser callback (headless).
        #[arg(long)]
        device: bool,
        /// Do not open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// Give up after this many seconds [default: the daemon's, 600].
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        timeout: u32,
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
        /// Reasoning effort: minimal, low, medium, high or xhigh.
        #[arg(long)]
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
    /// Refresh the token now, through the daemon (never directly).
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
    Watch {
        /// Provider id.
        #[arg(long, default_value = "openai-codex")]
        provider: String,
        /// Print JSON lines with the expiry and account id.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StoreAction {
    /// Move the openai-codex login between pi's auth.json and the OS
    /// keyring, under the locks; other providers stay in auth.json.
    ///
    /// Stop the daemon first, then start it again with `--store keyring`
    /// (or `store = "keyring"` in its config). In keyring mode pi cannot read
    /// the token from auth.json: give pi `"apiKey": "!pi-authctl token"`.
    Migrate {
        /// Where the login goes.
        #[arg(long, value_parser = ["keyring", "file"])]
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
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long, value_enum)]
        platform: Option<service::Platform>,
    },
    /// Show whether the service is installed and running.
    Status {
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
            eprintln!("pi-authctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A read of stdin may still be pending; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pi-authctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Command::Store {
        action: StoreAction::Migrate { to },
    } = &cli.command
    {
        let daemon = match service::piauthd_path() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("pi-authctl: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
        // The daemon binary does the move: pi-authctl never touches stores.
        let status = std::process::Command::new(daemon)
            .args(["--migrate-store-to", to])
            .status();
        return Ok(match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("pi-authctl: cannot run piauthd: {e}");
                ExitCode::FAILURE
            }
        });
    }
    if let Command::Service { action } = &cli.command {
        let result = match action {
            ServiceAction::Install {
                dry_run,
                no_start,
                dir,
                platform,
            } => service::install(
                platform.unwrap_or_else(service::Platform::current),
                dir.as_deref(),
                *dry_run,
                *no_start,
            ),
            ServiceAction::Uninstall {
                dry_run,
                dir,
                platform,
            } => service::uninstall(
                platform.unwrap_or_else(service::Platform::current),
                dir.as_deref(),
                *dry_run,
            ),
            ServiceAction::Status { platform } => {
                service::status(platform.unwrap_or_else(service::Platform::current))
            }
        };
        return Ok(match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pi-authctl: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let mut client = connect(&cli).await?;
    match cli.command {
        Command::Status { json } => {
            let status = client.status().await?;
            if json {
                println!("{}", render::status_json(&status));
            } else {
                print!("{}", render::status_table(&status));
            }
        }
        Command::Token {
            provider,
            min_valid,
            json,
        } => {
            let token = client.get_token(&provider, min_valid).await?;
            if json {
                println!("{}", render::token_json(&token));
            } else {
                println!("{}", token.access_token);
            }
        }
        Command::Refresh { provider } => {
            let token = client.refresh(&provider).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            eprintln!(
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
            let prompt = match complete::read_prompt(&prompt) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("pi-authctl: cannot read the prompt from stdin: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
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
                let list: Vec<_> = models
                    .iter()
                    .map(|m| serde_json::json!({"id": m.id, "context_window": m.context_window, "max_output_tokens": m.max_output_tokens}))
                    .collect();
                println!("{}", serde_json::Value::from(list));
            } else {
                println!("{:<24} {:>10} {:>10}", "MODEL", "CONTEXT", "MAX OUT");
                for m in models {
                    println!(
                        "{:<24} {:>10} {:>10}",
                        m.id, m.context_window, m.max_output_tokens
                    );
                }
            }
        }
        Command::Service { .. } | Command::Store { .. } => {}
        Command::Logout { provider } => {
            if client.logout(&provider).await? {
                eprintln!("Logged out of {provider}.");
            } else {
                eprintln!("{provider} was not logged in.");
            }
        }
        Command::Watch { provider, json } => {
            let mut stream = client.watch_token(&provider).await?;
            while let Some(token) = stream.next().await? {
                if json {
                    println!("{}", render::token_json(&token));
                } else {
                    println!("{}", token.access_token);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the daemon, starting it in the background when nothing
/// answers, no service is installed, and autostart is not turned off.
async fn connect(cli: &Cli) -> Result<Client, Error> {
    let socket = match &cli.socket {
        Some(s) => s.clone(),
        None => {
            let default = piauth_client::proto::socket::default_socket();
            if let Some(note) = &default.note {
                eprintln!("pi-authctl: {note}");
            }
            default.path
        }
    };
    let err = match Client::connect(&socket).await {
        Ok(c) => return Ok(c),
        Err(e @ Error::NotRunning { .. }) => e,
        Err(e) => return Err(e),
    };
    let platform = service::Platform::current();
    if service::installed(platform) {
        let hint = match platform {
            service::Platform::Systemd => "systemctl --user start piauthd.socket",
            service::Platform::Launchd => "launchctl kickstart gui/$UID/dev.piauthd",
        };
        return Err(Error::Autostart(format!(
            "{err}; the piauthd service is installed but not running: start it with `{hint}`"
        )));
    }
    let disabled =
        cli.no_autostart || std::env::var_os("PIAUTHD_NO_AUTOSTART").is_some_and(|v| v != "0");
    if disabled {
        return Err(err);
    }
    let daemon =
        service::piauthd_path().map_err(|e| Error::Autostart(format!("{err}, and {e}")))?;
    let opts = piauth_client::autostart::StartOptions {
        daemon,
        log: service::log_path().map_err(Error::Autostart)?,
    };
    let (client, started) = piauth_client::autostart::connect_or_start(&socket, &opts).await?;
    if let piauth_client::autostart::Started::Started(pid) = started {
        eprintln!(
            "pi-authctl: started piauthd (pid {pid}) in the background; its log is {}",
            opts.log.display()
        );
    }
    Ok(client)
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotRunning { .. } => 3,
        Error::Unauthenticated { .. } => 4,
        Error::FailedPrecondition { reason, .. } if *reason == Reason::TokenExpiring => 4,
        _ => 1,
    }
}
