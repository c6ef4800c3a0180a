//! `pi-authctl` without a daemon: help text and the not-running path.
//! (Also makes `cargo test --workspace` build the binary the end-to-end
//! suite in `tests/` runs.)

use std::process::Command;

#[test]
fn help_explains_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("piauthd is not running"), "{help}");
    assert!(help.contains("130  cancelled"), "{help}");
    assert!(help.contains("status") && help.contains("token"), "{help}");
}

#[test]
fn no_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("--no-autostart")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("piauthd is not running"), "{err}");
    assert!(err.contains("start it with `piauthd`"), "{err}");
}
