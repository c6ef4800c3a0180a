//! A pi 1.6.0 home for the suite: Node 22 and pi's CLI as `tests/run`
//! installs them, the package installed as a user installs it
//! (`pi install ./client/pi`), and a proxy that records every request pi
//! tries to send elsewhere than the mock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use piauth_tests::mock::MockOpenAi;
use piauth_tests::proxy::RefusingProxy;
use piauth_tests::sandbox::bin_path;
use piauth_tests::{Daemon, Sandbox};

/// What the mock's Codex backend answers.
pub(crate) const REPLY: &str = "Hello from the mock Codex backend.";

/// Node 22 and pi 1.6.0's CLI, as `tests/run` installs them.
pub(crate) fn pi16() -> (PathBuf, PathBuf) {
    let get = |var: &str| {
        let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
            panic!("{var} is not set: run the suite with `tests/run`, which installs pi 1.6.0 and Node 22")
        });
        assert!(path.exists(), "{var}={} does not exist", path.display());
        path
    };
    (get("PIAUTHD_TEST_NODE22"), get("PIAUTHD_TEST_PI16"))
}

pub(crate) fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../client/pi")
        .canonicalize()
        .expect("client/pi")
}

/// A pi home: the package installed, and nothing else (no `models.json`).
pub(crate) struct PiHome<'a> {
    sb: &'a Sandbox,
    node: PathBuf,
    cli: PathBuf,
    proxy: RefusingProxy,
    pub(crate) env: Vec<(String, String)>,
}

impl<'a> PiHome<'a> {
    pub(crate) fn new(sb: &'a Sandbox) -> PiHome<'a> {
        let (node, cli) = pi16();
        let home = PiHome {
            sb,
            node,
            cli,
            proxy: RefusingProxy::start(),
            env: Vec::new(),
        };
        let out = home
            .pi(&["install", &package_dir().display().to_string()])
            .output()
            .expect("pi install");
        assert!(
            out.status.success(),
            "pi install failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let settings =
            std::fs::read_to_string(sb.agent_dir().join("settings.json")).expect("settings.json");
        assert!(
            settings.contains("client/pi"),
            "pi recorded the package: {settings}"
        );
        home
    }

    pub(crate) fn pi(&self, args: &[&str]) -> Command {
        let proxy = self.proxy.url();
        let bin_dir = bin_path("piauthd").parent().expect("bin dir").to_owned();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&self.node);
        cmd.arg(&self.cli)
            .args(args)
            .current_dir(self.sb.dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.sb.dir.path())
            .env("PI_CODING_AGENT_DIR", self.sb.agent_dir())
            .env("PIAUTHD_SOCKET", self.sb.socket())
            .env("PIAUTHD_NO_AUTOSTART", "1")
            .env("PI_SKIP_VERSION_CHECK", "1")
            .env("HTTPS_PROXY", &proxy)
            .env("HTTP_PROXY", &proxy)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `n` prompts at once; returns each one's output.
    pub(crate) fn round(&self, n: usize) -> Vec<Output> {
        let children: Vec<_> = (0..n).map(|i| self.session(i)).collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("pi output"))
            .collect()
    }

    /// Runs rounds of `n` prompts at once for at least `span` and two
    /// rounds, asserting that every prompt was answered; returns how many
    /// prompts and rounds ran.
    pub(crate) fn rounds_for(&self, n: usize, span: Duration) -> (usize, usize) {
        let start = Instant::now();
        let (mut prompts, mut rounds) = (0, 0);
        while start.elapsed() < span || rounds < 2 {
            let outs = self.round(n);
            assert!(
                outs.iter().all(answered),
                "round {rounds}: unanswered prompts:\n{}",
                describe(&outs)
            );
            prompts += outs.len();
            rounds += 1;
        }
        (prompts, rounds)
    }

    /// Starts `pi -p "prompt i"` on the codex provider.
    pub(crate) fn session(&self, i: usize) -> std::process::Child {
        self.pi(&[
            "-p",
            &format!("prompt {i}"),
            "--provider",
            "openai-codex",
            "--model",
            "gpt-6.2-sol",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pi")
    }

    /// Like `round`, and calls `during` once the sessions are started;
    /// returns each session's output with the moment it exited.
    pub(crate) fn round_while(&self, n: usize, during: impl FnOnce()) -> Vec<(Output, Instant)> {
        let waits: Vec<_> = (0..n)
            .map(|i| {
                let child = self.session(i);
                std::thread::spawn(move || {
                    let out = child.wait_with_output().expect("pi output");
                    (out, Instant::now())
                })
            })
            .collect();
        during();
        waits
            .into_iter()
            .map(|w| w.join().expect("a waiting thread"))
            .collect()
    }

    /// pi never tried to reach OpenAI by itself: not its issuer, and not
    /// its Codex backend (every token went to the mock only).
    pub(crate) fn assert_pi_never_called_its_issuer(&self) {
        let targets = self.proxy.requests();
        assert!(
            !targets
                .iter()
                .any(|t| t.contains("auth.openai.com") || t.contains("chatgpt.com")),
            "pi tried to reach OpenAI: {targets:?}"
        );
    }
}

pub(crate) fn answered(o: &Output) -> bool {
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains(REPLY)
}

pub(crate) fn describe(outs: &[Output]) -> String {
    outs.iter()
        .filter(|o| !answered(o))
        .map(|o| {
            format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn file_daemon(sb: &Sandbox, mock: &MockOpenAi) -> Daemon {
    let (issuer, base) = (mock.issuer(), mock.codex_base());
    Daemon::start_with(sb, move |cmd| {
        cmd.env("PIAUTHD_ISSUER", &issuer)
            .env("PIAUTHD_CODEX_BASE_URL", &base);
    })
}

/// Two accounts on a daemon of the file store: B logged in last by device
/// code, then A made the active one.
pub(crate) async fn two_account_daemon() -> (MockOpenAi, Sandbox, Daemon) {
    use piauth_tests::accounts::{device_login, two_accounts};
    let (mock, sb) = two_accounts(piauth_tests::mock::MockConfig::default()).await;
    let d = file_daemon(&sb, &mock);
    assert_eq!(device_login(&sb.socket()).await.account_id, "acc-b");
    let mut c = piauth_client::Client::connect(sb.socket()).await.unwrap();
    c.use_account("acc-a").await.unwrap();
    (mock, sb, d)
}

/// A limit mid-run, as the pi sessions of `home` meet it on
/// [`two_account_daemon`]'s accounts: a round of four prompts on A, then
/// A's 5-hour window fills (the daemon is not told), then two more rounds.
/// Every prompt is answered, A answers none after its limit and B all
/// eight, and pi never calls its issuer. Returns how many turns A refused.
pub(crate) fn limit_mid_run(home: &PiHome<'_>, mock: &MockOpenAi) -> u64 {
    let outs = home.round(4);
    assert!(
        outs.iter().all(answered),
        "before the limit:\n{}",
        describe(&outs)
    );
    let (a0, b0) = (mock.state.charged("acc-a"), mock.state.charged("acc-b"));
    assert_eq!((a0.served, b0.served), (4, 0), "A served the first round");
    let now_s = piauth_tests::fixtures::now_ms() / 1000;
    piauth_tests::accounts::exhaust_a(mock, now_s + 3_600);
    for round in 1..=2 {
        let outs = home.round(4);
        assert!(
            outs.iter().all(answered),
            "round {round}, after the limit:\n{}",
            describe(&outs)
        );
    }
    let (a1, b1) = (mock.state.charged("acc-a"), mock.state.charged("acc-b"));
    assert_eq!(a1.served, a0.served, "A answered nothing after its limit");
    assert_eq!(b1.served, 8, "B answered every prompt after the limit");
    home.assert_pi_never_called_its_issuer();
    a1.refused
}
