//! What the tests that run the real pi share: finding each pi line and its
//! Node, the command lines of their clients (tests/pi-interop/pi-client.mjs
//! and tests/pi-current/pi-client.mjs), running them, reading their JSON
//! lines, and watching `auth.json` while they run.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) const PROVIDER: &str = "openai-codex";

/// A directory of the tests crate (`pi-interop`, `pi-current`).
pub(crate) fn suite_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The Node that runs pi 0.73.1, after checking that pi is installed.
pub(crate) fn legacy_node() -> OsString {
    let dir = suite_dir("pi-interop");
    assert!(
        dir.join("node_modules/@mariozechner/pi-coding-agent")
            .exists(),
        "pi is not installed: run the suite with `tests/run` (it runs `npm ci` in {})",
        dir.display()
    );
    std::env::var_os("PIAUTHD_TEST_NODE").unwrap_or_else(|| "node".into())
}

/// The Node 22 that runs pi 1.6.0, after checking that both are installed.
pub(crate) fn current_node() -> PathBuf {
    let dir = suite_dir("pi-current");
    let node = std::env::var_os("PIAUTHD_TEST_NODE22")
        .map(PathBuf::from)
        .expect("PIAUTHD_TEST_NODE22 is not set: run the suite with `tests/run`, which installs pi 1.6.0 and Node 22");
    assert!(
        node.exists()
            && dir
                .join("node_modules/@earendil-works/pi-coding-agent")
                .exists(),
        "pi 1.6.0 or Node 22 is not installed: run the suite with `tests/run` (it runs `npm ci` in {})",
        dir.display()
    );
    node
}

/// pi 0.73.1's client: `run_ms` of calls `interval_ms` apart (at least
/// one call, so `run_ms` 0 is a single cold start). pi's hard-coded
/// issuer is sent to `issuer`.
pub(crate) fn legacy_client(
    node: &OsString,
    agent_dir: &Path,
    issuer: &str,
    run_ms: u64,
    interval_ms: u64,
) -> Command {
    let mut c = Command::new(node);
    c.current_dir(suite_dir("pi-interop"))
        .arg("pi-client.mjs")
        .arg(agent_dir)
        .arg(issuer)
        .arg(run_ms.to_string())
        .arg(interval_ms.to_string());
    c
}

/// pi 1.6.0's client, like [`legacy_client`]. pi's HTTP goes through
/// `proxy` (a [`piauth_tests::proxy::RefusingProxy`]), so a refresh by pi
/// itself fails and is seen.
pub(crate) fn current_client(
    node: &Path,
    agent_dir: &Path,
    proxy: &str,
    run_ms: u64,
    interval_ms: u64,
) -> Command {
    let mut c = Command::new(node);
    c.current_dir(suite_dir("pi-current"))
        .arg("pi-client.mjs")
        .arg(agent_dir)
        .arg(run_ms.to_string())
        .arg(interval_ms.to_string())
        .env("HTTPS_PROXY", proxy)
        .env("HTTP_PROXY", proxy)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PI_OFFLINE", "1");
    c
}

/// Reads `auth.json` every 2 ms until stopped; counts reads that do not
/// parse as a file with a codex refresh token.
pub(crate) struct FileWatch {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FileWatch {
    pub(crate) fn start(path: PathBuf) -> FileWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (stop, reads, bad) = (stop.clone(), reads.clone(), bad.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .is_some_and(|v| v[PROVIDER]["refresh"].is_string());
                    reads.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        FileWatch {
            stop,
            reads,
            bad,
            thread: Some(thread),
        }
    }

    /// Stops watching; returns (reads, reads that did not parse).
    pub(crate) fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.reads.load(Ordering::Relaxed),
            self.bad.load(Ordering::Relaxed),
        )
    }
}

/// Starts `n` copies of `cmd()` and waits for all of them off the runtime.
pub(crate) async fn run_all(n: usize, cmd: impl Fn() -> Command) -> Vec<Output> {
    wait_all((0..n).map(|_| spawn_piped(cmd())).collect()).await
}

/// Starts `c` with its output captured.
pub(crate) fn spawn_piped(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Waits for every child off the runtime; their outputs in order.
pub(crate) async fn wait_all(children: Vec<Child>) -> Vec<Output> {
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    })
    .await
    .unwrap()
}

/// The JSON lines of one client's output.
pub(crate) fn parse_lines(out: &Output) -> Vec<serde_json::Value> {
    BufReader::new(&out.stdout[..])
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

/// The JSON lines of every client, after checking each exited cleanly.
pub(crate) fn lines(outputs: &[Output]) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for out in outputs {
        assert!(
            out.status.success(),
            "pi client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        all.extend(parse_lines(out));
    }
    all
}

/// The value at fraction `p` (0 to 1) of sorted figures; 0 if there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}
