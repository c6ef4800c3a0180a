//! `pi-authctl`: the command line for piauthd.
//!
//! A thin binary: parse with clap ([`args`]), call the client library,
//! print. It never links the daemon; everything goes over the socket.
//! Nothing it prints can panic ([`out`]).
//!
//! Each subcommand is a function that returns an `anyhow::Result`; the
//! exit status is worked out in one place, [`exit_code`], from the typed
//! errors in the chain, so the README's table has a single home in code.

#[macro_use]
mod out;
mod accounts;
mod args;
mod complete;
mod connect;
mod login;
mod paths;
mod render;
mod service;
mod state;
mod usage;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use piauth_client::Client;

use crate::args::{
    AccountsAction, Cli, Command, CompleteArgs, DaemonArgs, ServiceAction, StoreAction,
};
use crate::service::{Platform, ServiceError};

/// Exit status 130: cancelled with Ctrl-C (128 + SIGINT, as shells do).
const CANCELLED: u8 = 130;
/// Exit status 4: not logged in, or the login must be renewed.
const NOT_LOGGED_IN: u8 = 4;

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
        Err(e) => {
            let code = exit_code(&e);
            // 0: the reader of stdout went away, which is not a failure.
            if code != 0 {
                say!("pi-authctl: {}", message(&e, provider.as_deref()));
            }
            ExitCode::from(code)
        }
    }
}

/// Runs one command; each arm is the subcommand's own function.
async fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { daemon, command } = cli;
    match command {
        Command::Status { json } => status(&mut connect(daemon).await?, json).await,
        Command::Token {
            provider,
            min_valid,
            json,
        } => token(&mut connect(daemon).await?, &provider, min_valid, json).await,
        Command::Refresh { provider } => refresh(&mut connect(daemon).await?, &provider).await,
        Command::Login {
            provider,
            device,
            no_browser,
            timeout,
        } => {
            let mut client = connect(daemon).await?;
            login(&mut client, &provider, device, no_browser, timeout).await
        }
        Command::Logout { provider } => logout(&mut connect(daemon).await?, &provider).await,
        Command::Complete(args) => complete(daemon, args).await,
        Command::Accounts { action, json } => {
            accounts(&mut connect(daemon).await?, action, json).await
        }
        Command::Models { json } => models(&mut connect(daemon).await?, json).await,
        Command::Usage { json, fresh } => usage(&mut connect(daemon).await?, json, fresh).await,
        Command::Watch {
            provider,
            json,
            wait,
        } => watch(&mut connect(daemon).await?, &provider, json, wait).await,
        Command::Service { action } => service_command(&action),
        Command::Store {
            action: StoreAction::Migrate { to },
        } => migrate(&to),
    }
}

/// The daemon the global flags name, started when the rules allow.
async fn connect(daemon: DaemonArgs) -> Result<Client, connect::ConnectError> {
    connect::connect(connect::socket(daemon.socket), daemon.no_autostart).await
}

/// The exit status for `e` (the table in `--help` and the README): the
/// first typed error in its chain that decides.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(w) = cause.downcast_ref::<out::WriteError>() {
            return if w.reader_gone() { 0 } else { 1 };
        }
        if let Some(c) = cause.downcast_ref::<connect::ConnectError>()
            && c.not_started()
        {
            return 3;
        }
        if let Some(c) = cause.downcast_ref::<piauth_client::Error>() {
            return connect::exit_code(c);
        }
    }
    1
}

/// What to say about `e`: its own words, unless the client error in it
/// reads better reworded for `provider` ([`connect::reword`]).
fn message(e: &anyhow::Error, provider: Option<&str>) -> String {
    e.chain()
        .find_map(|c| c.downcast_ref::<piauth_client::Error>())
        .and_then(|c| connect::reword(c, provider))
        .unwrap_or_else(|| e.to_string())
}

async fn status(client: &mut Client, json: bool) -> Result<ExitCode> {
    let status = client.status().await?;
    if json {
        out::line(&render::status_json(&status).to_string())?;
    } else {
        out::print(&render::status_table(&status))?;
    }
    // A follower that cannot reach its owner serves nothing new: a script
    // checking `status` must see that.
    if let Some(follow) = status.follow.as_ref().filter(|f| !f.reachable) {
        say!("pi-authctl: {}", render::owner_unreachable(follow));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(
    client: &mut Client,
    provider: &str,
    min_valid: u32,
    json: bool,
) -> Result<ExitCode> {
    let token = client.get_token(provider, min_valid).await?;
    if json {
        out::line(&render::token_json(&token).to_string())?;
    } else {
        out::line(&token.access_token)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn refresh(client: &mut Client, provider: &str) -> Result<ExitCode> {
    let token = client.refresh(provider).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    say!(
        "refreshed {}; the new token expires {}",
        token.provider,
        render::relative(token.expires_at_ms - now)
    );
    Ok(ExitCode::SUCCESS)
}

async fn login(
    client: &mut Client,
    provider: &str,
    device: bool,
    no_browser: bool,
    timeout: Option<u32>,
) -> Result<ExitCode> {
    // 0 asks the daemon for its own login_timeout_secs.
    let timeout = timeout.unwrap_or(0);
    Ok(
        match login::run(client, provider, device, no_browser, timeout).await? {
            login::Outcome::Success => ExitCode::SUCCESS,
            login::Outcome::Failure => ExitCode::FAILURE,
            login::Outcome::Cancelled => ExitCode::from(CANCELLED),
        },
    )
}

async fn logout(client: &mut Client, provider: &str) -> Result<ExitCode> {
    if client.logout(provider).await? {
        say!("Logged out of {provider}.");
    } else {
        say!("{provider} was not logged in.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `complete`: the prompt is read before connecting, so a prompt piped in
/// is never lost to an autostart that fails.
async fn complete(daemon: DaemonArgs, mut args: CompleteArgs) -> Result<ExitCode> {
    args.prompt = complete::read_prompt(&args.prompt)?;
    let mut client = connect(daemon).await?;
    Ok(if complete::run(&mut client, args).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CANCELLED)
    })
}

async fn usage(client: &mut Client, json: bool, fresh: bool) -> Result<ExitCode> {
    let report = client.usage(fresh).await?;
    if json {
        out::line(&usage::usage_json(&report).to_string())?;
    } else {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        out::print(&usage::usage_text(&report, now_s))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn accounts(
    client: &mut Client,
    action: Option<AccountsAction>,
    json: bool,
) -> Result<ExitCode> {
    let list = match &action {
        None => client.accounts().await?,
        Some(AccountsAction::Use { account_id }) => client.use_account(account_id).await?,
        Some(AccountsAction::Remove { account_id }) => client.remove_account(account_id).await?,
        Some(AccountsAction::Auto) => client.automatic_account().await?,
    };
    if json {
        out::line(&accounts::accounts_json(&list).to_string())?;
    } else {
        match &action {
            Some(AccountsAction::Use { account_id }) => {
                out::line(&format!("{account_id} is now the active account."))?
            }
            Some(AccountsAction::Remove { account_id }) => {
                out::line(&format!("Removed {account_id}."))?
            }
            Some(AccountsAction::Auto) => {
                out::line("Each new session gets the account with the most room.")?
            }
            None => {}
        }
        out::print(&accounts::accounts_text(&list))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn models(client: &mut Client, json: bool) -> Result<ExitCode> {
    let models = client.list_models().await?;
    if json {
        out::line(&render::models_json(&models).to_string())?;
    } else {
        out::print(&render::models_table(&models))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `watch`: the token now and each new one. Logged out, it says so and
/// exits 4 (as `token` does), or with `--wait` says that it waits.
async fn watch(client: &mut Client, provider: &str, json: bool, wait: bool) -> Result<ExitCode> {
    let status = client.status().await?;
    if let Some(state) = render::logged_out(&status, provider) {
        if !wait {
            say!(
                "pi-authctl: {provider} is {state}: run `pi-authctl login` \
                 (or `pi-authctl watch --wait` to wait for a login)"
            );
            return Ok(ExitCode::from(NOT_LOGGED_IN));
        }
        say!("pi-authctl: {provider} is {state}; waiting for a login (`pi-authctl login`)");
    }
    let mut stream = client.watch_token(provider).await?;
    let gone = out::reader_gone();
    tokio::pin!(gone);
    loop {
        // A reader that went away ends the watch at once, not at the next
        // token (which may be days away).
        let token = tokio::select! {
            next = stream.next() => next?,
            () = &mut gone => return Ok(ExitCode::SUCCESS),
        };
        let Some(token) = token else { break };
        if json {
            out::line(&render::token_json(&token).to_string())?;
        } else {
            out::line(&token.access_token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `service ...`, with the platform resolved once for every action.
fn service_command(action: &ServiceAction) -> Result<ExitCode> {
    let platform = action.platform().unwrap_or_else(Platform::current);
    match action {
        ServiceAction::Install {
            dry_run,
            no_start,
            dir,
            ..
        } => service::install(platform, dir.as_deref(), *dry_run, *no_start)?,
        ServiceAction::Uninstall { dry_run, dir, .. } => {
            service::uninstall(platform, dir.as_deref(), *dry_run)?;
        }
        ServiceAction::Status { .. } => service::status(platform)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `store migrate`: the daemon binary does the move, so pi-authctl never
/// touches a store itself. piauthd says what it did or why not on the
/// stderr it shares with us; a failure is status 1.
fn migrate(to: &str) -> Result<ExitCode> {
    let daemon = paths::piauthd_path()?;
    let status = std::process::Command::new(&daemon)
        .args(["--migrate-store-to", to])
        .status()
        .map_err(|source| ServiceError::Run {
            program: daemon.display().to_string(),
            source,
        })?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use piauth_client::{Error, Reason, StartError};

    fn not_running() -> Error {
        Error::NotRunning {
            socket: "/s/piauthd.sock".into(),
            default: "/s/piauthd.sock".into(),
            restart: None,
            source: std::io::ErrorKind::NotFound.into(),
        }
    }

    #[test]
    fn row_0_a_reader_that_went_away_is_success_and_said_nothing() {
        let gone = out::WriteError(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(exit_code(&gone.into()), 0);
        // Also when a module's error wraps it.
        let gone = out::WriteError(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(exit_code(&ServiceError::from(gone).into()), 0);
        let full = out::WriteError(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(exit_code(&full.into()), 1);
    }

    #[test]
    fn row_1_errors_and_refusals() {
        let refused = Error::InvalidArgument {
            message: "bad".into(),
        };
        assert_eq!(exit_code(&refused.into()), 1);
        let lock = StartError::LockBusy {
            path: "/s/piauthd.sock.autostart".into(),
            holder: "pid 7".into(),
        };
        assert_eq!(exit_code(&Error::from(lock).into()), 1);
        let wrapped = connect::ConnectError::Client(Error::Untrusted {
            socket: "/s/piauthd.sock".into(),
            problem: piauth_client::Untrusted::NotADirectory { dir: "/s".into() },
        });
        assert_eq!(exit_code(&wrapped.into()), 1);
        assert_eq!(exit_code(&paths::PathError::NoHome.into()), 1);
    }

    #[test]
    fn row_3_not_running_and_not_started() {
        assert_eq!(exit_code(&not_running().into()), 3);
        let via_connect = connect::ConnectError::Client(not_running());
        assert_eq!(exit_code(&via_connect.into()), 3);
        let config = StartError::Config {
            first: "bad key".into(),
        };
        assert_eq!(exit_code(&Error::from(config).into()), 3);
        let no_daemon = connect::ConnectError::NoDaemon {
            not_running: not_running(),
            source: paths::PathError::NoDaemon,
        };
        assert_eq!(exit_code(&no_daemon.into()), 3);
        let stopped = connect::ConnectError::ServiceStopped {
            not_running: not_running(),
            platform: Platform::Systemd,
        };
        assert_eq!(exit_code(&stopped.into()), 3);
    }

    #[test]
    fn row_4_not_logged_in_or_expiring() {
        let out = Error::Unauthenticated {
            reason: Reason::NotLoggedIn,
            message: "not logged in".into(),
        };
        assert_eq!(exit_code(&login::LoginError::from(out).into()), 4);
        let expiring = Error::FailedPrecondition {
            reason: Reason::TokenExpiring,
            message: "expiring".into(),
        };
        assert_eq!(exit_code(&expiring.into()), 4);
        let corrupt = Error::FailedPrecondition {
            reason: Reason::StoreCorrupt,
            message: "corrupt".into(),
        };
        assert_eq!(exit_code(&corrupt.into()), 1);
    }

    #[test]
    fn another_providers_missing_login_is_reworded_through_the_chain() {
        let e: anyhow::Error = complete::CompleteError::from(Error::Unauthenticated {
            reason: Reason::NotLoggedIn,
            message: "not logged in: run `pi-authctl login`".into(),
        })
        .into();
        assert_eq!(
            message(&e, Some("openai-codex")),
            "not logged in: run `pi-authctl login`"
        );
        assert!(message(&e, Some("anthropic")).contains("with pi itself"));
    }
}
