//! The OpenSSH forward of a follower: `ssh -N -L local.sock:remote.sock`,
//! run, watched and restarted by the daemon.
//!
//! The owner's socket is forwarded to a socket of this daemon's own (beside
//! its socket, so in its 0700 directory). OpenSSH authenticates the user,
//! encrypts the link and connects to the owner's socket as the remote user,
//! so the owner's peer-uid check sees its own user. Nothing here prompts
//! (`BatchMode`), and a forward that cannot be set up ends `ssh`
//! (`ExitOnForwardFailure`), which is then restarted with a backoff until
//! shutdown.
//!
//! The commands are built by plain functions ([`forward_command`],
//! [`discovery_command`]) and the remote default socket is read by one
//! ([`remote_default_socket`]); only [`run`] starts processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::SshTarget;
use crate::shared::{BaseDirs, MAX_PATH_BYTES, SocketInputs, choose_socket};

/// The first pause before `ssh` is started again; it doubles up to
/// [`MAX_PAUSE`]. Short, so a dropped link is back within seconds.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often the forwarded socket is looked for while `ssh` sets up.
const LOOK_EVERY: Duration = Duration::from_millis(20);
/// A forward that is not set up in this long is given up and retried.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

/// What the forward is doing, for the link and for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// `ssh` is starting; nothing was tried yet.
    Starting,
    /// The forwarded socket is there, since this time (ms since the epoch).
    Up { since_ms: i64 },
    /// The last try failed, since this time, for this reason (ssh's own
    /// last line, or how it ended).
    Down { since_ms: i64, why: String },
}

/// How the forward is run.
#[derive(Debug, Clone)]
pub struct ForwardSpec {
    /// `$PIAUTHD_SSH` split on whitespace: the program, then options.
    pub ssh: Vec<String>,
    pub target: SshTarget,
    /// The socket `ssh` listens on, on this machine.
    pub local: PathBuf,
}

/// The options every `ssh` this daemon runs takes: no prompt, no shared
/// connection of the user's (its life is not ours to end), only errors on
/// stderr, and a dead link noticed within about 30 s.
fn common_options() -> Vec<String> {
    [
        "BatchMode=yes",
        "ControlPath=none",
        "LogLevel=ERROR",
        "ServerAliveInterval=10",
        "ServerAliveCountMax=3",
    ]
    .iter()
    .flat_map(|o| ["-o".to_owned(), (*o).to_owned()])
    .collect()
}

fn destination_args(target: &SshTarget) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(port) = target.port {
        args.extend(["-p".to_owned(), port.to_string()]);
    }
    args.extend(["--".to_owned(), target.destination()]);
    args
}

/// The `ssh` command line that forwards `remote` to `spec.local` (pure).
pub fn forward_command(spec: &ForwardSpec, remote: &Path) -> Vec<String> {
    let mut args = spec.ssh.clone();
    args.push("-N".into());
    args.extend(common_options());
    for o in ["ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes"] {
        args.extend(["-o".to_owned(), o.to_owned()]);
    }
    args.push("-L".into());
    args.push(format!("{}:{}", spec.local.display(), remote.display()));
    args.extend(destination_args(&spec.target));
    args
}

/// What the remote shell prints for [`remote_default_socket`], one value a
/// line: the remote user's `PIAUTHD_SOCKET`, `XDG_RUNTIME_DIR`,
/// `XDG_STATE_HOME`, `HOME`, uid and macOS per-user temporary directory.
const DISCOVERY_SCRIPT: &str = "printf '%s\\n' \"${PIAUTHD_SOCKET-}\" \"${XDG_RUNTIME_DIR-}\" \
     \"${XDG_STATE_HOME-}\" \"${HOME-}\" \"$(id -u)\" \"$(getconf DARWIN_USER_TEMP_DIR 2>/dev/null)\"";

/// The `ssh` command line that asks the remote machine where its user's
/// piauthd listens by default (pure).
pub fn discovery_command(spec: &ForwardSpec) -> Vec<String> {
    let mut args = spec.ssh.clone();
    args.extend(common_options());
    args.extend(destination_args(&spec.target));
    args.push(DISCOVERY_SCRIPT.into());
    args
}

/// The remote user's default socket, from what [`DISCOVERY_SCRIPT`]
/// printed, by the rule every piauthd uses (pure).
pub fn remote_default_socket(printed: &str) -> Result<PathBuf, String> {
    let lines: Vec<&str> = printed.lines().collect();
    let [socket, runtime, state, home, uid, darwin, ..] = lines[..] else {
        return Err(format!(
            "the remote shell did not answer where its piauthd listens (it printed {:?})",
            printed.chars().take(200).collect::<String>()
        ));
    };
    if socket.starts_with('/') {
        return Ok(PathBuf::from(socket));
    }
    let uid: u32 = uid
        .trim()
        .parse()
        .map_err(|_| format!("the remote `id -u` printed {uid:?}, not a uid"))?;
    let dir = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let inputs = SocketInputs {
        dirs: BaseDirs {
            home: dir(home),
            xdg_runtime_dir: dir(runtime),
            xdg_state_home: dir(state),
            ..BaseDirs::default()
        },
        darwin_user_temp_dir: dir(darwin),
        uid,
    };
    Ok(choose_socket(&inputs, MAX_PATH_BYTES).path)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the forward until `shutdown`, restarting `ssh` whenever it ends,
/// and says what it is doing on `state`. At shutdown `ssh` is ended and the
/// forwarded socket removed.
pub async fn run(
    spec: ForwardSpec,
    state: watch::Sender<ForwardState>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    let mut remote = spec.target.remote_socket.clone();
    loop {
        let outcome = match &remote {
            Some(path) => once(&spec, path, &state, &shutdown).await,
            None => match discover(&spec, &shutdown).await {
                Ok(path) => {
                    tracing::info!(remote = %path.display(), "the owner's default socket");
                    remote = Some(path);
                    continue;
                }
                Err(why) => Err(why),
            },
        };
        let _ = std::fs::remove_file(&spec.local);
        if shutdown.is_cancelled() {
            return;
        }
        let pause = match outcome {
            Ok(()) => {
                backoff.reset();
                backoff.fail()
            }
            Err(why) => {
                tracing::warn!(target = %spec.target.destination(), %why, "the forward to the owner failed");
                state.send_replace(ForwardState::Down {
                    since_ms: now_ms(),
                    why,
                });
                backoff.fail()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Asks the remote machine for its user's default socket.
async fn discover(spec: &ForwardSpec, shutdown: &CancellationToken) -> Result<PathBuf, String> {
    let args = discovery_command(spec);
    let mut cmd = tokio::process::Command::new(&args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::select! {
        out = tokio::time::timeout(SETUP_LIMIT, cmd.output()) => out,
        () = shutdown.cancelled() => return Err("shutting down".into()),
    };
    let out = out
        .map_err(|_| format!("ssh did not connect within {} s", SETUP_LIMIT.as_secs()))?
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(last_line(&String::from_utf8_lossy(&out.stderr))
            .unwrap_or_else(|| format!("ssh ended ({})", out.status)));
    }
    remote_default_socket(&String::from_utf8_lossy(&out.stdout))
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

/// One `ssh`: started, watched until its socket is there (then the state is
/// Up), and waited for. `Ok` when it was up and ended; `Err` with why when
/// it never came up.
async fn once(
    spec: &ForwardSpec,
    remote: &Path,
    state: &watch::Sender<ForwardState>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    // A socket left by an earlier ssh would look like a forward that is up.
    let _ = std::fs::remove_file(&spec.local);
    let args = forward_command(spec, remote);
    let mut child = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    let said = Arc::new(Mutex::new(None::<String>));
    if let Some(stderr) = child.stderr.take() {
        let said = said.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(line) = last_line(&line) {
                    tracing::debug!(%line, "ssh");
                    if let Ok(mut s) = said.lock() {
                        *s = Some(line);
                    }
                }
            }
        });
    }
    let why = |status: std::process::ExitStatus| {
        said.lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| format!("ssh ended ({status})"))
    };
    let deadline = tokio::time::Instant::now() + SETUP_LIMIT;
    loop {
        if spec.local.exists() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "ssh set up no forward within {} s",
                SETUP_LIMIT.as_secs()
            ));
        }
        tokio::select! {
            status = child.wait() => {
                // Let the stderr reader take ssh's last words.
                tokio::time::sleep(LOOK_EVERY).await;
                return Err(status.map_or_else(|e| e.to_string(), why));
            }
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
    tracing::info!(target = %spec.target.destination(), local = %spec.local.display(), "the forward to the owner is up");
    state.send_replace(ForwardState::Up { since_ms: now_ms() });
    tokio::select! {
        status = child.wait() => {
            tokio::time::sleep(LOOK_EVERY).await;
            let why = status.map_or_else(|e| e.to_string(), why);
            tracing::warn!(%why, "the forward to the owner ended");
            state.send_replace(ForwardState::Down { since_ms: now_ms(), why });
            Ok(())
        }
        () = shutdown.cancelled() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ForwardSpec {
        ForwardSpec {
            ssh: vec!["ssh".into(), "-i".into(), "/k".into()],
            target: SshTarget {
                user: Some("me".into()),
                host: "devbox".into(),
                port: Some(2222),
                remote_socket: None,
            },
            local: "/run/user/1/piauthd/piauthd.sock.owner".into(),
        }
    }

    #[test]
    fn the_forward_is_batch_mode_and_ends_when_it_cannot_forward() {
        let cmd = forward_command(&spec(), Path::new("/run/user/2/piauthd/piauthd.sock")).join(" ");
        for part in [
            "ssh -i /k -N",
            "-o BatchMode=yes",
            "-o ExitOnForwardFailure=yes",
            "-o StreamLocalBindUnlink=yes",
            "-o ControlPath=none",
            "-L /run/user/1/piauthd/piauthd.sock.owner:/run/user/2/piauthd/piauthd.sock",
        ] {
            assert!(cmd.contains(part), "{part} in {cmd}");
        }
        assert!(cmd.ends_with("-p 2222 -- me@devbox"), "{cmd}");
    }

    #[test]
    fn discovery_runs_one_remote_command_after_the_destination() {
        let cmd = discovery_command(&spec());
        assert_eq!(cmd[cmd.len() - 2], "me@devbox");
        assert!(cmd[cmd.len() - 1].starts_with("printf "));
        assert!(!cmd.contains(&"-N".to_owned()));
    }

    #[test]
    fn the_remote_default_follows_the_shared_rule() {
        let printed = "\n/run/user/1000\n\n/home/me\n1000\n\n";
        assert_eq!(
            remote_default_socket(printed).unwrap(),
            PathBuf::from("/run/user/1000/piauthd/piauthd.sock")
        );
        let no_runtime = "\n\n\n/home/me\n1000\n\n";
        assert_eq!(
            remote_default_socket(no_runtime).unwrap(),
            PathBuf::from("/home/me/.local/state/piauthd/piauthd.sock")
        );
        let set = "/srv/p.sock\n/run/user/1000\n\n/home/me\n1000\n\n";
        assert_eq!(
            remote_default_socket(set).unwrap(),
            PathBuf::from("/srv/p.sock")
        );
    }

    #[test]
    fn a_remote_that_says_something_else_is_a_clear_error() {
        let err = remote_default_socket("Welcome to devbox!\n").unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
        let err = remote_default_socket("\n\n\n/h\nroot\n\n").unwrap_err();
        assert!(err.contains("not a uid"), "{err}");
    }
}
