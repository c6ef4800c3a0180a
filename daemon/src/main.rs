//! `piauthd`: parse flags, set up logging and signals, run the daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use piauthd::{Environment, StoreKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Owns pi's OpenAI Codex (ChatGPT) login for this user, refreshes it in one
/// place, and serves access tokens over a private gRPC Unix socket.
///
/// Settings come from, lowest to highest: built-in defaults,
/// $XDG_CONFIG_HOME/piauthd/config.toml, environment variables, flags.
/// `pi-authctl status` shows the issuer, backend and config file in use.
#[derive(Debug, Parser)]
#[command(version, about, long_about, after_help = AFTER_HELP)]
struct Args {
    /// Every setting (the flag, its environment variable and its config
    /// key, from one declaration).
    #[command(flatten)]
    settings: piauthd::Settings,

    /// Move the openai-codex login to this store, under the locks, then exit.
    /// Refused while a daemon serves either store: stop it first, and
    /// restart it with the new --store.
    #[arg(long, value_enum, value_name = "STORE")]
    migrate_store_to: Option<StoreKind>,

    /// Config file [default: $XDG_CONFIG_HOME/piauthd/config.toml, else
    /// ~/.config/piauthd/config.toml; a missing default file is fine, a
    /// missing --config file is an error]
    #[arg(long, env = "PIAUTHD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the configuration (config file, environment, flags), print
    /// what it resolves to, and exit: 0 when it is valid, 1 when not.
    #[arg(long)]
    check_config: bool,

    /// More logging: -v for piauthd's debug, -vv for its trace, -vvv for
    /// every library's trace too (HTTP/2 frames). RUST_LOG, when set, wins.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

const AFTER_HELP: &str = "\
Docs: README.md (quick start, configuration, running it as a service) and
docs/PROTOCOL.md (what piauthd relies on from the issuer, pi and Codex).";

fn main() -> ExitCode {
    // First thing: other processes of this user may not ptrace us or read
    // our memory (and no core dump will hold a token).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let args = Args::parse();
    init_logging(args.verbose);
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the message, then each cause; the daemon's errors
            // print their cause instead of exposing it, so none repeats.
            eprintln!("piauthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    // Libraries stay at info below -vvv: h2 and tonic log every connection
    // at debug, which a flood of connections would turn into megabytes.
    let default = match verbose {
        0 => "info",
        1 => "info,piauthd=debug",
        2 => "info,piauthd=trace",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Whatever RUST_LOG says, no library event that prints a secret.
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        !piauthd::library_event_leaks(meta.target(), *meta.level())
    });
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(no_secrets);
    // The level filter is global, so what it turns off costs nothing: a
    // callsite below it is never asked again, and the libraries' `log`
    // records below it are not even built. As a filter of the output
    // alone, every trace of the WebSocket and HTTP/2 libraries would be
    // built and weighed, per frame.
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
}

fn start(args: Args) -> anyhow::Result<()> {
    let env = Environment::current();
    // A --config file must exist; the default one may be missing.
    let (path, required) = match args.config {
        Some(path) => (Some(path), true),
        None => (piauthd::default_config_path(&env), false),
    };
    let file = match &path {
        Some(path) => piauthd::load_config_file(path, required)?,
        None => None,
    };
    let loaded_from = path.filter(|_| file.is_some());
    let settings = args.settings.merge(file.unwrap_or_default());
    let mut config = piauthd::resolve_config(settings, loaded_from, &env)?;
    config.started_as = Some(started_as());
    config.ssh = piauthd::ssh_words(std::env::var("PIAUTHD_SSH").ok().as_deref());
    if args.check_config {
        println!("{}", describe(&config));
        return Ok(());
    }
    if let Some(to) = args.migrate_store_to {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let direction = match to {
            StoreKind::Keyring => piauthd::Direction::ToKeyring,
            StoreKind::File => piauthd::Direction::ToFile,
        };
        runtime.block_on(piauthd::migrate_store(
            &config.auth_file,
            &config.keyring_lock(),
            config.state_dir.as_deref(),
            direction,
        ))?;
        eprintln!(
            "piauthd: moved the openai-codex login to the {to:?} store; start piauthd with --store {}",
            match to {
                StoreKind::Keyring => "keyring",
                StoreKind::File => "file",
            }
        );
        return Ok(());
    }
    // SAFETY: no thread has been started yet: the runtime is built below,
    // and the migrate path above, which builds one, returns before this.
    // Logging writes to stderr from this thread only. Descriptor 3, when
    // LISTEN_FDS says it was passed, is owned by nothing else: piauthd opens
    // no file before this point that it keeps (the config file is read and
    // closed), and an fd 3 opened by chance is refused unless it is a
    // listening Unix stream socket.
    let taken = unsafe { piauthd::take_listener() };
    let listen = match taken.context("cannot use the socket passed by systemd")? {
        Some((listener, path)) => piauthd::Listen::Activated(listener, path),
        None => piauthd::Listen::Bind,
    };

    raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("piauthd")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        piauthd::run_with(config, listen, shutdown).await
    });
    // Everything that must finish (a refresh and its save) has finished by
    // now; do not wait for a blocking call stuck in the kernel.
    runtime.shutdown_timeout(EXIT_WAIT);
    result?;
    Ok(())
}

/// This process's start command: the settings it read from the environment,
/// then its arguments (see `piauthd::restart`).
fn started_as() -> String {
    let env: Vec<(String, String)> = piauthd::restart::SETTINGS
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    piauthd::restart::command(&env, &args)
}

/// How long exit waits for blocking work still running after shutdown.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Raises the soft limit on open descriptors to the hard limit, so that a
/// burst of clients meets the daemon's own connection cap long before the
/// kernel's EMFILE.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = piauthd::nofile_target(lim.rlim_cur, lim.rlim_max);
    if want <= lim.rlim_cur {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::debug!(
            from = lim.rlim_cur,
            to = want,
            "raised the descriptor limit"
        );
    } else {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise the descriptor limit");
    }
}

/// What `--check-config` prints: the settings a user most often needs to
/// confirm.
fn describe(config: &piauthd::Config) -> String {
    let file = config
        .config_file
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    format!(
        "piauthd: the configuration is valid\n\
         config file  {file}\n\
         socket       {}\n\
         store        {}\n\
         issuer       {}\n\
         backend      {}",
        config.socket.display(),
        match config.store {
            StoreKind::File => config.auth_file.display().to_string(),
            StoreKind::Keyring => "the OS keyring".to_owned(),
        },
        piauthd::shown_url(&config.issuer),
        piauthd::shown_url(&config.codex_base_url)
    ) + &match &config.follow {
        Some(target) => format!(
            "\nfollows      {target} (ssh: {}); this daemon keeps no login and never refreshes",
            config.ssh.join(" ")
        ),
        None => String::new(),
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop piauthd with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    shutdown.cancel();
}
