//! The `piauthd` binary's command line: help text and configuration errors.
//! (Also makes `cargo test --workspace` build the binary the end-to-end
//! suite in `tests/` runs.)

use std::process::Command;

fn piauthd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_piauthd"));
    cmd.env_clear().env("HOME", "/nonexistent-home");
    cmd
}

#[test]
fn help_names_every_setting_and_its_variable() {
    let out = piauthd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "PIAUTHD_SOCKET",
        "PI_CODING_AGENT_DIR",
        "PIAUTHD_ISSUER",
        "PIAUTHD_CODEX_BASE_URL",
        "PIAUTHD_CALLBACK_ADDR",
        "config.toml",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "socket = 5\n").unwrap();
    let out = piauthd().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("piauthd: the config file"), "{err}");
}

#[test]
fn a_non_url_issuer_is_refused() {
    let out = piauthd()
        .args(["--issuer", "auth.openai.com", "--agent-dir", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("must be an http(s) URL"), "{err}");
}
