//! Drives the daemon from Python grpcio, an independent gRPC implementation.
//!
//! The interpreter comes from `$PIAUTHD_TEST_PYTHON` (set by `tests/run`,
//! which prepares a virtualenv with grpcio), else `python3`.

use std::process::Command;

use piauth_tests::fixtures::{access_token, auth_json, now_ms};
use piauth_tests::{Daemon, Sandbox};

#[test]
fn python_grpcio_reaches_get_token_and_status() {
    let python = std::env::var("PIAUTHD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let sb = Sandbox::new();
    let exp = now_ms() + 3_600_000;
    let access = access_token("acc-py", "py@example.com", "plus", exp / 1000, "python");
    sb.write_auth(&auth_json(&access, "rt_py", exp, "acc-py"));
    let _d = Daemon::start(&sb);

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(&python)
        .arg(format!("{root}/tests/python/grpc_client_check.py"))
        .arg(sb.socket())
        .arg(format!("{root}/proto"))
        .arg(sb.dir.path().join("pygen"))
        .env("EXPECT_ACCESS", &access)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed. If grpcio is missing, run the suite with `tests/run`.\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("OK get_token"), "{stdout}");
    assert!(stdout.contains("OK status"), "{stdout}");
}
