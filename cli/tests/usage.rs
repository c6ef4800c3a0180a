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

/// A private runtime directory, so the default socket is
/// `<it>/piauthd/piauthd.sock` and nothing serves it.
fn runtime_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A private directory, as the daemon makes it (tempfile's may be 0755).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn no_daemon_on_the_default_socket_says_how_to_start_one() {
    let dir = runtime_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .env_remove("PIAUTHD_SOCKET")
        .env("XDG_RUNTIME_DIR", dir.path())
        .args(["--no-autostart", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(3), "{err}");
    let default = dir.path().join("piauthd/piauthd.sock");
    assert!(
        err.contains(&format!(
            "piauthd is not running (nothing is listening on {})",
            default.display()
        )),
        "{err}"
    );
    assert!(err.contains("start it with `piauthd`"), "{err}");
}

/// A mistyped `--socket` (or `PIAUTHD_SOCKET`) is never autostarted and no
/// directory is made for it; the message gives both paths and the command
/// that would serve the one asked for. Autostart is on here.
#[test]
fn a_socket_nothing_serves_is_not_autostarted_and_nothing_is_created() {
    let dir = runtime_dir();
    let guess = dir.path().join("typo/piauthd.scok");
    let default = dir.path().join("piauthd/piauthd.sock");
    for how in ["flag", "env"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pi-authctl"));
        cmd.env_remove("PIAUTHD_NO_AUTOSTART")
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"));
        if how == "flag" {
            cmd.env_remove("PIAUTHD_SOCKET").arg("--socket").arg(&guess);
        } else {
            cmd.env("PIAUTHD_SOCKET", &guess);
        }
        let out = cmd.arg("status").output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(3), "{how}: {err}");
        assert!(
            err.contains(&format!(
                "nothing serves {}; the default is {}; start one with `piauthd --socket {}`",
                guess.display(),
                default.display(),
                guess.display()
            )),
            "{how}: {err}"
        );
        assert!(!err.contains("started piauthd"), "{how}: {err}");
    }
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(made.is_empty(), "created for a guess: {made:?}");
}

/// Output into a pipe that is already closed ends quietly: no panic, no
/// message, status 0.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::process::Stdio;
    // `install` names the piauthd it finds; beside pi-authctl, else on PATH.
    let bin = runtime_dir();
    std::fs::write(bin.path().join("piauthd"), "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
        .args(["service", "install", "--dry-run", "--platform", "systemd"])
        .env("PATH", bin.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before it writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn usage_errors_are_status_2() {
    for args in [
        &["complete", "hi", "--effort", "huge"][..],
        &["status", "--bogus"],
        &["frobnicate"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pi-authctl"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
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
        err.contains("is shared with other users (mode 777): no piauthd serves a socket there"),
        "{err}"
    );
    assert!(
        !err.contains("chmod"),
        "never a chmod of a shared directory: {err}"
    );
    // It never even connected.
    assert!(
        listener.accept().is_err(),
        "no connection reached the socket"
    );
}
