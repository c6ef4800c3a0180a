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
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A private directory, as the daemon makes it (tempfile's may be 0755).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("--no-autostart")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("piauthd is not running"), "{err}");
    assert!(err.contains("start it with `piauthd`"), "{err}");
}

#[test]
fn a_socket_directory_open_to_others_is_refused_before_connecting() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .arg("--socket")
        .arg(&sock)
        .args(["--no-autostart", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is open to other users (mode 777); it must be 0700"),
        "{err}"
    );
    assert!(err.contains("chmod 700"), "{err}");
    // It never even connected.
    assert!(
        listener.accept().is_err(),
        "no connection reached the socket"
    );
}
