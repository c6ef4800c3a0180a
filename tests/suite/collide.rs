//! auth.json passed as `--socket`: refused by the client and the daemon
//! before anything is created beside it, so pi's `auth.json.lock` stays
//! free and auth.json is untouched.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Output, Stdio};

use piauth_tests::Sandbox;
use piauth_tests::fixtures::auth_json;

fn listing(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

fn sandbox_with_login() -> (Sandbox, Vec<u8>) {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.agent_dir()).unwrap();
    let json = auth_json("access-1", "refresh-1", 4_102_444_800_000, "acc-1");
    std::fs::write(sb.auth_file(), &json).unwrap();
    (sb, json.into_bytes())
}

fn assert_refused(sb: &Sandbox, before_auth: &[u8], before: &BTreeSet<OsString>, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(err.contains("not a socket"), "{err}");
    assert!(err.contains("--socket"), "{err}");
    let after = listing(&sb.agent_dir());
    assert_eq!(&after, before, "files appeared beside auth.json: {err}");
    assert!(!sb.agent_dir().join("auth.json.lock").exists());
    assert_eq!(std::fs::read(sb.auth_file()).unwrap(), before_auth);
}

#[test]
fn authctl_with_auth_json_as_socket_creates_nothing() {
    let (sb, bytes) = sandbox_with_login();
    let before = listing(&sb.agent_dir());
    let auth = sb.auth_file();
    let auth = auth.to_str().unwrap();
    let out = sb.authctl(&["--socket", auth, "status"]);
    assert_refused(&sb, &bytes, &before, &out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a regular file, not a socket"));
    // With autostart allowed too.
    let out = sb
        .command("pi-authctl")
        .env_remove("PIAUTHD_NO_AUTOSTART")
        .env("PIAUTHD_SOCKET", sb.auth_file())
        .arg("status")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_refused(&sb, &bytes, &before, &out);
}

#[test]
fn piauthd_with_auth_json_as_socket_creates_nothing() {
    let (sb, bytes) = sandbox_with_login();
    let before = listing(&sb.agent_dir());
    let out = sb
        .command("piauthd")
        .arg("--socket")
        .arg(sb.auth_file())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_refused(&sb, &bytes, &before, &out);
}
