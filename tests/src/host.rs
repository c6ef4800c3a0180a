//! What this machine offers a test: root, a free port, an installed tool.
//! Outside CI a missing tool skips the test that needs it, and says so; in
//! CI it is a failure.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Fails unless the tests run as root. Every root-only test is
/// `#[ignore = "needs root: ..."]`, so a plain `cargo test` as another user
/// lists it as ignored; `tests/run` passes `--include-ignored` when it runs
/// as root (CI does), and a run with `--include-ignored` as another user
/// fails here instead of passing having done nothing.
pub fn assert_root() {
    let euid = rustix::process::geteuid().as_raw();
    assert_eq!(
        euid, 0,
        "this test needs root (it is ignored unless run with --include-ignored): run it as root, as CI does"
    );
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Lets a test skip because this host lacks `what`: outside CI it says so
/// on stderr; in CI (`CI` set, as `.ci/run` does) it fails, so a skip can
/// never pass as "ok" there.
///
/// The harness hides a passing test's stderr, so the skip is also written
/// to the file `PIAUTHD_TEST_SKIPS` names (`tests/run` sets it), one line
/// per skipped test, and the run's closing summary counts and lists them.
pub fn skip_outside_ci(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {what}: a test needing it would be skipped"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipped: {test}: {what} is missing here (CI provides it)");
    if let Some(path) = std::env::var_os("PIAUTHD_TEST_SKIPS") {
        use std::io::Write;
        let line = format!("{test}: {what} is missing here (CI provides it)\n");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "cannot record the skip in {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// Whether `tool` is installed. Outside CI a missing tool skips the test
/// that needs it (saying so); in CI (`CI` set) it is a failure.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip_outside_ci(tool);
    }
    found
}
