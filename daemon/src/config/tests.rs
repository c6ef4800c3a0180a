use super::*;

fn env() -> Environment {
    Environment {
        dirs: BaseDirs {
            home: Some("/home/u".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..BaseDirs::default()
        },
        uid: 1000,
    }
}

fn settings() -> Settings {
    Settings::default()
}

fn resolved(s: Settings) -> Result<Config, ConfigError> {
    resolve(s, None, &env())
}

#[test]
fn defaults() {
    let c = resolved(settings()).unwrap();
    assert_eq!(
        c.socket,
        PathBuf::from("/run/user/1000/piauthd/piauthd.sock")
    );
    assert_eq!(c.auth_file, PathBuf::from("/home/u/.pi/agent/auth.json"));
    assert_eq!(shown(&c.issuer), DEFAULT_ISSUER);
    assert_eq!(shown(&c.codex_base_url), DEFAULT_CODEX_BASE_URL);
    assert_eq!(c.callback_addr.to_string(), DEFAULT_CALLBACK_ADDR);
    assert_eq!(
        c.callback_fallback_addr.unwrap().to_string(),
        DEFAULT_CALLBACK_FALLBACK_ADDR
    );
    assert_eq!(c.originator, "pi");
    assert_eq!(c.login_timeout_secs, 600);
    assert_eq!(c.stream_idle_secs, 300);
    assert_eq!(c.connection_idle_secs, 300);
    assert_eq!(c.refresh_lead_secs, 2100);
    assert_eq!(c.store, StoreKind::File);
    assert_eq!(c.config_file, None);
}

#[test]
fn the_refresh_lead_is_layered_and_bounded() {
    let file = Settings {
        refresh_lead_secs: Some(3000),
        ..settings()
    };
    let c = resolved(settings().merge(file.clone())).unwrap();
    assert_eq!(c.refresh_lead_secs, 3000);
    let flags = Settings {
        refresh_lead_secs: Some(60),
        ..settings()
    };
    let c = resolved(flags.merge(file)).unwrap();
    assert_eq!(c.refresh_lead_secs, 60);
    for bad in [0, MAX_REFRESH_LEAD_SECS + 1, u64::MAX] {
        let err = resolved(Settings {
            refresh_lead_secs: Some(bad),
            ..settings()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::BadRefreshLead(v) if v == bad));
        assert!(err.to_string().contains("refresh_lead_secs"), "{err}");
    }
    let c = resolved(Settings {
        refresh_lead_secs: Some(MAX_REFRESH_LEAD_SECS),
        ..settings()
    })
    .unwrap();
    assert_eq!(c.refresh_lead_secs, MAX_REFRESH_LEAD_SECS);
}

#[test]
fn callback_addresses_must_be_loopback() {
    let err = resolved(Settings {
        callback_addr: Some("0.0.0.0:1455".parse().unwrap()),
        ..settings()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::NotLoopback(_)), "{err}");
    let err = resolved(Settings {
        callback_fallback_addr: Some("192.0.2.1:1457".parse().unwrap()),
        ..settings()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::NotLoopback(_)), "{err}");
    let c = resolved(Settings {
        callback_addr: Some("127.0.0.1:5000".parse().unwrap()),
        ..settings()
    })
    .unwrap();
    assert_eq!(
        c.callback_fallback_addr, None,
        "no fallback beside a custom port"
    );
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let file = Settings {
        issuer: Some("https://file/".into()),
        agent_dir: Some("~/pi".into()),
        socket: Some("/f.sock".into()),
        store: Some(StoreKind::Keyring),
        ..settings()
    };
    let flags = Settings {
        socket: Some("/o.sock".into()),
        ..settings()
    };
    let c = resolve(flags.merge(file), Some("/cfg.toml".into()), &env()).unwrap();
    assert_eq!(c.socket, PathBuf::from("/o.sock"));
    assert_eq!(shown(&c.issuer), "https://file");
    assert_eq!(c.auth_file, PathBuf::from("/home/u/pi/auth.json"));
    assert_eq!(c.store, StoreKind::Keyring);
    assert_eq!(c.login_timeout_secs, DEFAULT_LOGIN_TIMEOUT_SECS);
    assert_eq!(c.config_file, Some("/cfg.toml".into()));
}

#[test]
fn rejects_a_non_http_issuer_and_missing_home() {
    let err = resolved(Settings {
        issuer: Some("auth.openai.com".into()),
        ..settings()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::BadUrl { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the issuer must be an http(s) URL, got \"auth.openai.com\""
    );
    let no_home = Environment {
        dirs: BaseDirs {
            home: None,
            ..env().dirs
        },
        ..env()
    };
    assert!(matches!(
        resolve(settings(), None, &no_home),
        Err(ConfigError::NoHome { .. })
    ));
}

#[test]
fn plain_http_only_to_loopback() {
    for ok in [
        "https://auth.openai.com",
        "http://127.0.0.1:9",
        "http://127.8.9.10/x",
        "http://[::1]:4000/backend-api",
        "http://localhost:8080",
        "http://LOCALHOST",
    ] {
        assert!(check_url("the issuer", ok).is_ok(), "{ok}");
    }
    for plain in [
        "http://auth.openai.com",
        "http://10.0.0.1",
        "http://[::2]",
        "http://localhost.evil.example",
        "http://0.0.0.0:80",
    ] {
        let err = check_url("the issuer", plain).unwrap_err();
        assert!(matches!(err, ConfigError::PlainHttp { .. }), "{plain}");
        assert!(err.to_string().contains("https://"), "{err}");
    }
    for bad in [
        "ftp://x",
        "https://",
        "auth.openai.com",
        "http://",
        "file:///etc/passwd",
        "unix:/run/x.sock",
        "data:text/plain,x",
    ] {
        let err = check_url("the issuer", bad).unwrap_err();
        assert!(matches!(err, ConfigError::BadUrl { .. }), "{bad}");
        assert!(err.to_string().contains("must be an http(s) URL"), "{err}");
    }
    let err = resolved(Settings {
        codex_base_url: Some("http://chatgpt.com/backend-api".into()),
        ..settings()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::PlainHttp {
            what: "the Codex base URL",
            ..
        }
    ));
}

#[test]
fn a_base_url_joins_below_its_path_and_shows_as_given() {
    for (given, shown_as) in [
        ("https://auth.openai.com", "https://auth.openai.com"),
        ("https://auth.openai.com/", "https://auth.openai.com"),
        ("https://h/backend-api", "https://h/backend-api"),
        ("https://h/backend-api//", "https://h/backend-api"),
        (
            "http://127.0.0.1:8787/prefix/",
            "http://127.0.0.1:8787/prefix",
        ),
    ] {
        let url = check_url("the issuer", given).unwrap();
        assert_eq!(shown(&url), shown_as, "{given}");
        let joined = url.join("oauth/token").unwrap();
        assert_eq!(
            joined.as_str(),
            format!("{shown_as}/oauth/token"),
            "{given}"
        );
    }
    for with_more in ["https://h/?x=1", "https://h/base#frag"] {
        let err = check_url("the Codex base URL", with_more).unwrap_err();
        assert!(matches!(err, ConfigError::NotABase { .. }), "{with_more}");
        assert!(err.to_string().contains("query or a fragment"), "{err}");
    }
}

#[test]
fn a_relative_home_is_pis_home_but_not_an_xdg_base() {
    let relative = Environment {
        dirs: BaseDirs {
            home: Some("rel".into()),
            ..BaseDirs::default()
        },
        uid: 1000,
    };
    let c = resolve(settings(), None, &relative).unwrap();
    assert_eq!(c.auth_file, PathBuf::from("rel/.pi/agent/auth.json"));
    assert_eq!(default_config_path(&relative), None);
}

#[test]
fn tilde_expansion_matches_pi() {
    let home = Some(Path::new("/h"));
    assert_eq!(expand_tilde("~", home), Some("/h".into()));
    assert_eq!(expand_tilde("~/x", home), Some("/h/x".into()));
    assert_eq!(expand_tilde("/abs/~", home), Some("/abs/~".into()));
    assert_eq!(expand_tilde("~other", home), Some("~other".into()));
    assert_eq!(expand_tilde("~/x", None), None);
}

#[test]
fn port_zero_is_kept_for_both_callback_addresses() {
    let addrs = |primary: &str, fallback: &str| {
        let c = resolved(Settings {
            callback_addr: Some(primary.parse().unwrap()),
            callback_fallback_addr: Some(fallback.parse().unwrap()),
            ..settings()
        })
        .unwrap();
        (c.callback_addr, c.callback_fallback_addr)
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert_eq!(addrs("127.0.0.1:0", "127.0.0.1:0"), (any, Some(any)));
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    assert_eq!(addrs("[::1]:0", "127.0.0.1:0"), (v6, Some(any)));
    // A fixed port named twice is one port: the fallback is dropped.
    let fixed: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    assert_eq!(addrs("127.0.0.1:5000", "127.0.0.1:5000"), (fixed, None));
}
