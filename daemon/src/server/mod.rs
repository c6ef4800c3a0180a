//! Start-up, serving and shutdown.
//!
//! Shutdown is a [`CancellationToken`] handed in by the caller (signals in
//! `main`, a test harness elsewhere). On cancel the server stops accepting,
//! in-flight calls get [`DRAIN_LIMIT`] to finish, and the socket file is
//! removed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, Shelf};
use crate::broker::inflight::InFlight;
use crate::broker::{Broker, Clock, Duties};
use crate::codex::Codex;
use crate::config::Config;
use crate::config::StoreKind;
use crate::login::{LoginSettings, Logins};
use crate::paths::StoreId;
use crate::rpc::CompletionsService;
use crate::socket::{self, SocketError};
use crate::store::{self, CredentialStore, KeyringStore, off_runtime};
use crate::supervisor;
use crate::upstream::Issuer;
use crate::usage::UsageBook;

mod follower;

/// How long in-flight calls may run after shutdown begins.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long before [`DRAIN_LIMIT`] a completion still streaming is cut
/// with a status that says so, which then has time to reach its client.
const CUT_BEFORE_DRAIN: Duration = Duration::from_secs(1);

/// How long shutdown waits for a refresh in flight to finish and be saved.
/// Longer than the worst case of one refresh (40 s for pi's lock, about
/// 11 s of connection retries, 60 s for the request): abandoning a refresh
/// may lose the rotated token.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(130);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot create pi's agent directory {path}: {cause}")]
    AgentDir {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot watch {path} for changes: {cause}")]
    Watch {
        path: std::path::PathBuf,
        cause: notify::Error,
    },
    #[error(
        "the OS keyring is not usable ({0}); piauthd will not run without a place to keep \
         credentials. Unlock or start the keyring (Secret Service on Linux), or use --store file"
    )]
    Keyring(std::io::Error),
    #[error(transparent)]
    Http(#[from] crate::upstream::ClientError),
    #[error("the gRPC server failed: {}", crate::causes::line(.0))]
    Serve(tonic::transport::Error),
    #[error(transparent)]
    Owner(#[from] store::OwnerError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}; start piauthd again when the move is done")]
    Serving(crate::serving::ServingError),
    #[error(
        "the follow target {} is this daemon's own socket; give the owner's socket, or ssh://host",
        .0.display()
    )]
    FollowSelf(std::path::PathBuf),
    #[error("piauthd will not follow: {0}")]
    CopiedLogin(String),
}

// By hand, not `#[from]`: these messages print their cause, so it is not
// exposed again as `source()` (see `crate::causes`).
impl From<tonic::transport::Error> for RunError {
    fn from(e: tonic::transport::Error) -> Self {
        RunError::Serve(e)
    }
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Thread(e)
    }
}

impl From<crate::serving::ServingError> for RunError {
    fn from(e: crate::serving::ServingError) -> Self {
        RunError::Serving(e)
    }
}

/// Where the daemon's socket comes from.
#[derive(Debug)]
pub enum Listen {
    /// Bind `config.socket` ourselves.
    Bind,
    /// Use a socket passed by systemd (socket activation).
    Activated(std::os::unix::net::UnixListener, std::path::PathBuf),
}

/// Runs the daemon until `shutdown` is cancelled, binding its own socket.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(config, Listen::Bind, shutdown).await
}

/// Everything set up before the daemon serves.
struct Started {
    broker: std::sync::Arc<Broker>,
    accounts: std::sync::Arc<Accounts>,
    logins: std::sync::Arc<Logins>,
    completions: CompletionsService,
    listener: tokio::net::UnixListener,
    bound: socket::SocketGuard,
    /// Keeps the OS watch alive (file store only).
    _watcher: Option<store::FileWatcher>,
    /// Says "this store is served" to a store move, until the daemon exits.
    _serving: Option<crate::serving::Serving>,
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run_with(
    config: Config,
    listen: Listen,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if let Some(target) = config.follow.clone() {
        return follower::run(config, target, listen, shutdown).await;
    }
    // Start-up touches the store (a hung home can stall it): a SIGTERM
    // meanwhile ends the daemon at once, since nothing is served yet.
    let started = tokio::select! {
        started = start(&config, listen) => started?,
        () = shutdown.cancelled() => {
            tracing::info!("stopped before serving");
            return Ok(());
        }
    };
    serve(config, started, shutdown).await
}

/// Checks ownership, opens the store, binds the socket and loads the
/// credentials, in that order.
async fn start(config: &Config, listen: Listen) -> Result<Started, RunError> {
    let uid = rustix::process::geteuid().as_raw();
    let auth_file = config.auth_file.clone();
    off_runtime("piauthd-start", move || prepare_store(&auth_file, uid)).await??;
    let store = match config.store {
        StoreKind::File => CredentialStore::file(&config.auth_file),
        StoreKind::Keyring => {
            let keyring = KeyringStore::default();
            keyring.self_test().await.map_err(RunError::Keyring)?;
            tracing::info!("the OS keyring works; credentials are kept there");
            CredentialStore::keyring(config.keyring_lock(), keyring)
        }
    };
    // Bind before anything else touches the store: a second instance must
    // fail first. (The keyring check above only probes its own item.)
    let (listener, bound) = listen_on(config, listen, uid)?;

    // One identity for the in-flight record and the serving lock, however
    // the store's path is spelled (a symlink, a relative path, `/./`).
    let identity = {
        let store = store.clone();
        off_runtime("piauthd-store-identity", move || store.identity()).await?
    };
    let serving = mark_serving(config.state_dir.as_deref(), &identity, bound.path()).await?;

    let auth_file = config.auth_file.clone();
    match off_runtime("piauthd-recover", move || store::recover_orphan(&auth_file)).await {
        Ok(Ok(true)) => {
            tracing::info!("removed an auth.json lock orphaned by a previous piauthd")
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, "could not check for an orphaned auth.json lock")
        }
    }
    let issuer = Issuer::at(config.issuer.clone()).map_err(RunError::Http)?;
    let lead_ms = lead_ms(config);
    // No home: the record goes beside the store, under a name of
    // piauthd's own.
    let record_dir = config.state_dir.clone().unwrap_or_else(|| {
        config
            .auth_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    });
    let inflight = InFlight::new(&record_dir, &identity).with_legacy(&store.describe());
    // Watch before the first read: a change made in between would otherwise
    // go unnoticed until the next one.
    // (The keyring has no change notifications; a refresh re-reads it.)
    let (watcher, changes) = match config.store {
        StoreKind::File => {
            let path = config.auth_file.clone();
            let (w, rx) = off_runtime("piauthd-watch", move || store::watch_file(&path))
                .await?
                .map_err(|source| RunError::Watch {
                    path: config.auth_file.clone(),
                    cause: source,
                })?;
            (Some(w), Some(rx))
        }
        StoreKind::Keyring => (None, None),
    };
    let broker = Broker::with_parts(
        store,
        Arc::new(issuer.clone()),
        lead_ms,
        inflight,
        Clock::system(),
        Duties {
            schedule: true,
            changes,
        },
    );
    broker.reload().await;
    let (accounts, logins, completions) =
        services(config, broker.clone(), issuer, record_dir).await?;
    Ok(Started {
        broker,
        accounts,
        logins,
        completions,
        listener,
        bound,
        _watcher: watcher,
        _serving: serving,
    })
}

/// The socket to serve: bound here (leaving how this daemon was started
/// beside it), or passed by systemd.
fn listen_on(
    config: &Config,
    listen: Listen,
    uid: u32,
) -> Result<(tokio::net::UnixListener, socket::SocketGuard), RunError> {
    Ok(match listen {
        Listen::Bind => {
            let bound = socket::bind(&config.socket, uid)?;
            if let Some(command) = &config.started_as {
                socket::leave_start_command(bound.1.path(), command);
            }
            bound
        }
        Listen::Activated(listener, path) => {
            tracing::info!(socket = %path.display(), "using the socket passed by systemd");
            socket::adopt(listener, &path)?
        }
    })
}

/// The refresh lead in milliseconds.
fn lead_ms(config: &Config) -> i64 {
    i64::try_from(config.refresh_lead_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The accounts around the active `broker`, and the login and completion
/// services that use them.
async fn services(
    config: &Config,
    broker: Arc<Broker>,
    issuer: Issuer,
    record_dir: std::path::PathBuf,
) -> Result<(Arc<Accounts>, Arc<Logins>, CompletionsService), RunError> {
    // In keyring mode the other accounts would need keyring items of their
    // own; until then only the one account is kept.
    let (accounts_dir, without) = match config.store {
        StoreKind::File => (
            config.accounts_dir.clone(),
            "set HOME or XDG_DATA_HOME for a place to keep a second account",
        ),
        StoreKind::Keyring => (None, "the keyring store keeps one account"),
    };
    let shelf = Shelf::new(
        accounts_dir,
        without,
        record_dir,
        Arc::new(issuer.clone()),
        lead_ms(config),
        Clock::system(),
    );
    // What the relay learns of every account's limits, which the choice of
    // account and the Usage RPC read.
    let book = Arc::new(UsageBook::default());
    let accounts = Accounts::open(broker, shelf, book.clone()).await;
    let logins = Logins::new(
        accounts.clone(),
        issuer,
        LoginSettings {
            callback_addrs: std::iter::once(config.callback_addr)
                .chain(config.callback_fallback_addr)
                .collect(),
            originator: config.originator.clone(),
            default_timeout: Duration::from_secs(config.login_timeout_secs),
        },
    );
    let codex = Codex::new(
        &config.codex_base_url,
        &config.originator,
        Duration::from_secs(config.stream_idle_secs),
        book,
    )
    .map_err(RunError::Http)?
    .with_transport(config.codex_transport);
    let completions = CompletionsService::new(accounts.clone(), codex, config.models.clone());
    Ok((accounts, logins, completions))
}

/// Marks `store` as served (see [`crate::serving`]), after the socket is
/// bound (a second instance on the same socket fails there first) and
/// before the store is read. Without a state directory there is nowhere
/// to mark it, and a store move cannot tell either: it refuses to run.
async fn mark_serving(
    state_dir: Option<&Path>,
    store: &StoreId,
    socket: &Path,
) -> Result<Option<crate::serving::Serving>, RunError> {
    let Some(dir) = state_dir.map(Path::to_owned) else {
        tracing::warn!(
            "neither XDG_STATE_HOME nor HOME is set: a store move cannot see this daemon"
        );
        return Ok(None);
    };
    let (store, socket) = (store.clone(), socket.to_owned());
    let held = off_runtime("piauthd-serving", move || {
        crate::serving::serve(&dir, &store, &socket)
    })
    .await??;
    Ok(Some(held))
}

/// The store's directory and file must be ours; the directory is created
/// (0700) if missing. Blocking: runs off the runtime.
fn prepare_store(auth_file: &Path, euid: u32) -> Result<(), RunError> {
    store::check_store(auth_file, euid)?;
    if let Some(dir) = auth_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        store::ensure_dir(dir).map_err(|source| RunError::AgentDir {
            path: dir.to_owned(),
            cause: source,
        })?;
    }
    Ok(())
}

/// Serves until `shutdown`, then drains calls and saves what is unsaved.
async fn serve(
    config: Config,
    started: Started,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Started {
        broker,
        accounts,
        logins,
        completions,
        listener,
        bound,
        _watcher,
        _serving,
    } = started;
    tracing::info!(
        socket = %bound.path().display(),
        store = %broker.store_describe(),
        issuer = crate::base_url::shown(&config.issuer),
        "piauthd is serving"
    );
    // Ready: the socket listens and the credentials are loaded.
    supervisor::notify(&format!(
        "READY=1\n{}",
        supervisor::status_line(&ready_status(&broker, bound.path()))
    ));
    let uid = rustix::process::geteuid().as_raw();
    let completions = completions.cut_when_stopping(
        shutdown.clone(),
        DRAIN_LIMIT.saturating_sub(CUT_BEFORE_DRAIN),
    );
    let serve = crate::rpc::serve(
        listener,
        accounts.clone(),
        logins,
        completions,
        crate::rpc::Serving {
            about: crate::rpc::About {
                socket_path: bound.path().display().to_string(),
                issuer: crate::base_url::shown(&config.issuer).to_owned(),
                codex_base_url: crate::base_url::shown(&config.codex_base_url).to_owned(),
                config_file: config
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            },
            own_uid: uid,
            idle_timeout: Duration::from_secs(config.connection_idle_secs),
        },
        shutdown.clone(),
    );
    tokio::pin!(serve);
    let result = tokio::select! {
        r = &mut serve => r,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => {
            tracing::warn!("in-flight calls did not finish within {DRAIN_LIMIT:?}; stopping anyway");
            Ok(())
        }
    };
    supervisor::notify("STOPPING=1\nSTATUS=stopping: finishing in-flight work");
    // A refresh in flight finishes and is saved before we exit; a hung
    // read of the store is abandoned for the final save.
    let quiesce = async { tokio::join!(broker.quiesce(), accounts.quiesce_shelf()) };
    match tokio::time::timeout(QUIESCE_LIMIT, quiesce).await {
        Ok(((), ())) => {}
        Err(_) => tracing::error!("a refresh did not finish within {QUIESCE_LIMIT:?} of shutdown"),
    }
    bound.remove();
    tracing::info!("piauthd stopped");
    result.map_err(RunError::from)
}

/// What `systemctl status` shows: where we serve and the login's state.
fn ready_status(broker: &Broker, socket: &std::path::Path) -> String {
    let view = broker.view();
    let login = match view.codex() {
        Some(c) if c.expires_ms > broker.now_ms() => "openai-codex logged in",
        Some(_) => "openai-codex token expired (refreshing)",
        None => "not logged in: run pi-authctl login",
    };
    format!("serving on {}; {login}", socket.display())
}
