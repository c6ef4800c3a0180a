//! Drives the daemon from Python grpcio, an independent gRPC implementation.
//!
//! The interpreter comes from `$PIAUTHD_TEST_PYTHON` (set by `tests/run`,
//! which prepares a virtualenv with grpcio), else `python3`.

use std::process::Command;

use piauth_tests::fixtures::write_codex_login;
use piauth_tests::mock::{MockConfig, MockOpenAi};
use piauth_tests::{Daemon, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_gets_tokens_status_and_a_streamed_completion() {
    let python = std::env::var("PIAUTHD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let set = mock.state.seed_login("acc-py", "py@example.com", "plus");
    write_codex_login(&sb.auth_file(), &set).unwrap();
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    let _d = Daemon::start_with(&sb, |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    });

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut cmd = Command::new(&python);
    cmd.arg(format!("{root}/tests/python/grpc_client_check.py"))
        .arg(sb.socket())
        .arg(format!("{root}/proto"))
        .arg(sb.dir.path().join("pygen"))
        .env("EXPECT_ACCESS", &set.access_token)
        .env("EXPECT_TEXT", "Hello from the mock Codex backend.");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run the Python client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed. If grpcio is missing, run the suite with `tests/run`.\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for check in [
        "OK get_token",
        "OK status",
        "OK errors",
        "OK stream",
        "OK codec",
    ] {
        assert!(stdout.contains(check), "{check} missing:\n{stdout}");
    }
    eprintln!(
        "{}",
        stdout
            .lines()
            .find(|l| l.starts_with("default authority"))
            .unwrap_or("")
    );
}
