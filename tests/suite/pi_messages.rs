//! What a pi 1.6.0 user reads from the package when no token can be had:
//! piauthd named, what happened, and what to type next in pi's own words.
//! Never pi's "API key auth failed" (there is no API key), and never a
//! menu item pi does not show.

use std::process::Output;

use piauth_tests::Sandbox;
use piauth_tests::mock::{MockConfig, MockOpenAi};

use crate::pi_home::{PiHome, file_daemon};

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn prompt(home: &PiHome<'_>, with_model: bool) -> Output {
    let mut args = vec!["-p", "hello"];
    if with_model {
        args.extend(["--provider", "openai-codex", "--model", "gpt-6.2-sol"]);
    }
    home.pi(&args).output().expect("pi runs")
}

fn assert_never_misleads(text: &str) {
    for old in [
        "API key auth failed",
        "No API key found",
        "choose ChatGPT",
        "OAuth auth derivation failed",
    ] {
        assert!(!text.contains(old), "{old:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_pi_says_piauthd_is_not_logged_in_and_to_run_login() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let _d = file_daemon(&sb, &mock);
    let home = PiHome::new(&sb);
    let out = prompt(&home, true);
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("piauthd: not logged in")
            && text.contains("In pi, run /login and choose OpenAI Codex."),
        "{text}"
    );
    assert_never_misleads(&text);
    eprintln!("logged out, pi says: {}", text.trim());
    assert_eq!(mock.stats().responses_requests, 0, "nothing was sent");
    home.assert_pi_never_called_its_issuer();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_absent_and_autostart_off_pi_names_piauthd() {
    let mock = MockOpenAi::start(MockConfig::default()).await.unwrap();
    let sb = Sandbox::new();
    let home = PiHome::new(&sb);
    for with_model in [true, false] {
        let out = prompt(&home, with_model);
        let text = said(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("piauthd is not running"),
            "with_model={with_model}:\n{text}"
        );
        assert_never_misleads(&text);
        eprintln!(
            "daemon absent (model given: {with_model}), pi says: {}",
            text.trim()
        );
    }
    assert_eq!(mock.stats().responses_requests, 0);
    home.assert_pi_never_called_its_issuer();
}
