//! `pi-authctl`: the command line for piauthd.
//!
//! A thin binary: parse with clap, call the client library, print. It never
//! links the daemon; everything goes over the socket.

mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use piauth_client::{Client, Error, Reason};

const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  error
  2  bad usage
  3  piauthd is not running
  4  not logged in, or the login must be renewed: run `pi-authctl login`";

/// Control piauthd, the daemon that owns pi's OpenAI Codex login.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_HELP)]
struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/piauthd/piauthd.sock,
    /// or /tmp/piauthd-<uid>/piauthd.sock]
    #[arg(long, global = true, env = "PIAUTHD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pi-authctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let mut client = match &cli.socket {
        Some(path) => Client::connect(path).await?,
        None => Client::connect_default().await?,
    };
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
    Ok(())
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotRunning { .. } => 3,
        Error::Unauthenticated { .. } => 4,
        Error::FailedPrecondition { reason, .. } if *reason == Reason::TokenExpiring => 4,
        _ => 1,
    }
}
