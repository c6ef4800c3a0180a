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

/// `--check-config`'s line for `key` (e.g. "issuer").
fn shown(out: &std::process::Output, key: &str) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} line in:\n{stdout}"))
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "issuer = \"https://file.example\"\ncodex_base_url = \"https://file.example/b\"\n",
    )
    .unwrap();
    let check = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = piauthd();
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--agent-dir")
            .arg(dir.path())
            .arg("--check-config");
        if let Some(v) = env {
            cmd.env("PIAUTHD_ISSUER", v);
        }
        if let Some(v) = flag {
            cmd.args(["--issuer", v]);
        }
        cmd.output().unwrap()
    };
    let out = check(None, None);
    assert_eq!(shown(&out, "issuer"), "https://file.example");
    assert_eq!(shown(&out, "backend"), "https://file.example/b");
    assert_eq!(shown(&out, "config file"), cfg.display().to_string());
    let out = check(Some("https://env.example/"), None);
    assert_eq!(shown(&out, "issuer"), "https://env.example");
    assert_eq!(shown(&out, "backend"), "https://file.example/b");
    let out = check(Some("https://env.example"), Some("http://127.0.0.1:9"));
    assert_eq!(shown(&out, "issuer"), "http://127.0.0.1:9");
}

#[test]
fn a_relative_xdg_config_home_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let in_home = home.join(".config/piauthd/config.toml");
    let relative = dir.path().join("rel/piauthd/config.toml");
    for (file, issuer) in [
        (&in_home, "https://home.example"),
        (&relative, "https://relative.example"),
    ] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, format!("issuer = \"{issuer}\"\n")).unwrap();
    }
    let out = piauthd()
        .current_dir(dir.path())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", "rel")
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(shown(&out, "issuer"), "https://home.example");
    assert_eq!(shown(&out, "config file"), in_home.display().to_string());
}

#[test]
fn an_issuer_with_a_query_is_refused() {
    let out = piauthd()
        .args([
            "--issuer",
            "https://auth.example/?x=1",
            "--agent-dir",
            "/tmp/x",
        ])
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("has a query or a fragment"), "{err}");
}
