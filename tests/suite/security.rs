//! Process hardening.

use std::os::unix::fs::MetadataExt;

use piauth_tests::{Daemon, Sandbox};

/// The daemon marks itself non-dumpable, so other processes of the same
/// user cannot ptrace it or read its memory: the kernel then hands its
/// /proc files to root instead of to the daemon's user.
#[cfg(target_os = "linux")]
#[test]
fn the_daemon_is_not_dumpable() {
    let sb = Sandbox::unprivileged();
    let d = Daemon::start(&sb);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_ne!(uid, 0, "the daemon runs unprivileged here");
    for file in ["mem", "environ"] {
        let owner = std::fs::metadata(format!("/proc/{}/{file}", d.pid()))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 0,
            "/proc/<pid>/{file} belongs to root, not to uid {uid}"
        );
    }
}
