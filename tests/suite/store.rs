use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use piauth_tests::Sandbox;
use piauthd::{
    Credential, CredentialStore, LockError, OAuthCredential, Secret, StoreError, lock_path,
};

/// What pi 0.73.1 writes: other providers and fields piauthd does not know.
const PI_FILE: &str = r#"{
  "anthropic": {
    "type": "oauth",
    "refresh": "sk-ant-ort01-x",
    "access": "sk-ant-oat01-y",
    "expires": 1767225600000
  },
  "openai-codex": {
    "type": "oauth",
    "access": "old.access.tok",
    "refresh": "rt_old",
    "expires": 1767225600000,
    "accountId": "acc-1",
    "lastUsedBy": "pi 0.73.1"
  },
  "openai": {
    "type": "api_key",
    "key": "sk-proj-z"
  }
}"#;

fn new_cred() -> OAuthCredential {
    OAuthCredential {
        access: Secret::from("new.access.tok"),
        refresh: Secret::from("rt_new"),
        expires_ms: 1_800_000_000_000,
        account_id: Some("acc-1".into()),
    }
}

#[tokio::test]
async fn a_pi_file_round_trips_with_other_providers_and_fields_intact() {
    let sb = Sandbox::new();
    sb.write_auth(PI_FILE);
    let store = CredentialStore::file(sb.auth_file());
    store
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap();

    let written = std::fs::read_to_string(sb.auth_file()).unwrap();
    let expected = PI_FILE
        .replace("old.access.tok", "new.access.tok")
        .replace("rt_old", "rt_new")
        .replacen(
            "1767225600000,\n    \"accountId\"",
            "1800000000000,\n    \"accountId\"",
            1,
        );
    assert_eq!(written, expected, "only the three owned fields changed");
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(sb.auth_file()).unwrap());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !lock_path(&sb.auth_file()).unwrap().exists(),
        "the lock is released"
    );

    let doc = store.load().await.unwrap().unwrap();
    assert!(matches!(
        doc.credential("openai"),
        Some(Credential::ApiKey(_))
    ));
    assert!(matches!(
        doc.credential("anthropic"),
        Some(Credential::OAuth(_))
    ));
}

#[tokio::test]
async fn a_corrupt_file_is_refused_and_left_untouched() {
    let sb = Sandbox::new();
    sb.write_auth("{\"openai-codex\": {\"type\": \"oauth\", \"acc");
    let store = CredentialStore::file(sb.auth_file());
    let err = store
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("will not overwrite"));
    assert_eq!(
        std::fs::read_to_string(sb.auth_file()).unwrap(),
        "{\"openai-codex\": {\"type\": \"oauth\", \"acc"
    );
    assert!(matches!(
        store.load().await,
        Err(StoreError::Corrupt { .. })
    ));
}

/// Another process holds pi's lock directory for 1.5 s; the write waits
/// for it and then lands.
#[tokio::test]
async fn a_lock_held_by_another_process_is_waited_for() {
    let sb = Sandbox::new();
    sb.write_auth(PI_FILE);
    let lock = lock_path(&sb.auth_file()).unwrap();
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkdir '{0}' && echo held && sleep 1.5 && rmdir '{0}'",
            lock.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");

    let started = Instant::now();
    CredentialStore::file(sb.auth_file())
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "waited only {waited:?}"
    );
    assert!(
        holder.wait().unwrap().success(),
        "the holder released its own lock"
    );
    assert!(
        std::fs::read_to_string(sb.auth_file())
            .unwrap()
            .contains("rt_new")
    );
}

fn set_mtime_ago(path: &std::path::Path, secs: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(secs);
    let dir = std::fs::File::open(path).unwrap();
    dir.set_times(std::fs::FileTimes::new().set_modified(when))
        .unwrap();
}

#[tokio::test]
async fn a_stale_lock_is_taken_but_a_young_one_is_not() {
    let sb = Sandbox::new();
    sb.write_auth(PI_FILE);
    let lock = lock_path(&sb.auth_file()).unwrap();

    // 15 s old: pi's reader limit has passed, its refresher limit has not.
    std::fs::create_dir(&lock).unwrap();
    set_mtime_ago(&lock, 15);
    let store = CredentialStore::file(sb.auth_file()).with_lock_wait(Duration::from_millis(500));
    let err = store.update(|_| ()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Lock(LockError::Timeout { .. })),
        "{err}"
    );
    assert!(lock.exists());

    // 31 s old: stale by pi's rules.
    set_mtime_ago(&lock, 31);
    let started = Instant::now();
    store
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(!lock.exists());
}

/// A piauthd killed while holding the lock leaves the directory behind; the
/// sidecar's free flock lets the next one take it at once, not after 30 s.
#[tokio::test]
async fn a_lock_orphaned_by_a_killed_piauthd_is_recovered_at_once() {
    let sb = Sandbox::new();
    sb.write_auth(PI_FILE);
    let lock = lock_path(&sb.auth_file()).unwrap();
    let mut holder = spawn_lock_holder(&sb);

    // While the holder lives, its heartbeat keeps the lock fresh and ours waits.
    set_mtime_ago(&lock, 60);
    // The holder's next heartbeat moves the mtime: wait for that change.
    let touched = piauth_tests::wait::eventually(Duration::from_secs(5), || {
        std::fs::metadata(&lock)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(30))
    });
    assert!(touched, "the holder's heartbeat touched the lock");
    let age = std::fs::metadata(&lock)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed()
        .unwrap();
    assert!(
        age < Duration::from_secs(2),
        "heartbeat refreshed the mtime ({age:?})"
    );
    let store = CredentialStore::file(sb.auth_file()).with_lock_wait(Duration::from_millis(300));
    assert!(
        store.update(|_| ()).await.is_err(),
        "a live holder is respected"
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(lock.exists(), "SIGKILL leaves the lock directory");
    let started = Instant::now();
    let store = CredentialStore::file(sb.auth_file()).with_lock_wait(Duration::from_secs(5));
    store
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "recovered without waiting 30 s"
    );
    assert!(!lock.exists());
}

#[tokio::test]
async fn a_symlinked_auth_json_is_written_through() {
    let sb = Sandbox::new();
    let real = sb.dir.path().join("dotfiles-auth.json");
    std::fs::write(&real, PI_FILE).unwrap();
    std::os::unix::fs::symlink(&real, sb.auth_file()).unwrap();
    CredentialStore::file(sb.auth_file())
        .update(|doc| doc.set_oauth("openai-codex", &new_cred()))
        .await
        .unwrap();
    assert!(
        std::fs::symlink_metadata(sb.auth_file())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read_to_string(&real).unwrap().contains("rt_new"));
}

/// After a piauthd died holding the lock, pi removed the stale directory
/// and took the lock itself (the new directory may reuse the inode). The
/// dead piauthd's record must not make us remove pi's live lock.
#[tokio::test]
async fn a_pi_lock_that_replaced_an_orphan_is_respected() {
    let sb = Sandbox::new();
    sb.write_auth(PI_FILE);
    let lock = lock_path(&sb.auth_file()).unwrap();
    let mut holder = spawn_lock_holder(&sb);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // pi treats it as stale, removes it, and takes its own lock.
    std::fs::remove_dir(&lock).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::create_dir(&lock).unwrap();

    assert!(!piauthd::recover_orphan(&sb.auth_file()).unwrap());
    let store = CredentialStore::file(sb.auth_file()).with_lock_wait(Duration::from_millis(400));
    let err = store.update(|_| ()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Lock(LockError::Timeout { .. })),
        "{err}"
    );
    assert!(lock.exists(), "pi's lock was left alone");
}

/// A piauthd lock guard in a process of its own (`lock-holder`), holding
/// the lock on `auth.json` once this returns.
fn spawn_lock_holder(sb: &Sandbox) -> std::process::Child {
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lock-holder"))
        .arg(sb.auth_file())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("locked"), "{line}");
    holder
}
