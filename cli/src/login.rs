//! `pi-authctl login`: follow the daemon's login, open the browser, and
//! pass on what the user pastes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use piauth_client::Client;
use piauth_client::proto::v1 as pb;
use piauth_client::proto::v1::login_event::Event;

use crate::out::{self, SignalError, WriteError};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Why a login could not be followed to its end. (A login that the issuer
/// or the user ends is an [`Outcome`], not an error.)
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Client(#[from] piauth_client::Error),
    #[error("{0}")]
    Stdout(#[from] WriteError),
    #[error("{0}")]
    Signal(#[from] SignalError),
}

/// How a login ended, for the exit status.
pub enum Outcome {
    Success,
    Failure,
    Cancelled,
}

/// Prints above the spinner (or plainly when there is none).
struct Ui {
    spinner: Option<ProgressBar>,
}

impl Ui {
    fn new() -> Ui {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Ui { spinner }
    }

    fn say(&self, text: &str) {
        match &self.spinner {
            Some(bar) => bar.println(text),
            None => say!("{text}"),
        }
    }

    fn status(&self, text: &str) {
        match &self.spinner {
            Some(bar) => bar.set_message(text.to_owned()),
            None => say!("{text}"),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}

/// Whether a browser can be opened here: a local graphical session.
fn can_open_browser() -> bool {
    let remote =
        std::env::var_os("SSH_CONNECTION").is_some() || std::env::var_os("SSH_TTY").is_some();
    if remote {
        return false;
    }
    if cfg!(target_os = "macos") {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Whether `url` may be handed to the browser opener. Its argv is readable
/// by every user (`/proc/<pid>/cmdline`, `ps`), so only the daemon's
/// one-time local start URL qualifies, never the issuer's URL with `state`.
fn safe_to_open(url: &str) -> bool {
    url.strip_prefix("http://localhost:")
        .and_then(|rest| rest.split_once("/start/"))
        .is_some_and(|(port, nonce)| {
            port.parse::<u16>().is_ok()
                && !nonce.is_empty()
                && nonce.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Opens `url` in the user's browser (`$BROWSER`, the desktop's default,
/// WSL's Windows browser, macOS's `open`), if it is the one-time start URL.
/// The opener may wait for a text browser to exit, so it runs off the
/// runtime's thread.
async fn open_browser(url: &str) -> bool {
    if !safe_to_open(url) {
        return false;
    }
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || webbrowser::open(&url).is_ok())
        .await
        .unwrap_or(false)
}

/// Shows where to sign in, and opens the local start URL when a browser
/// can be opened here.
async fn show_authorize(ui: &Ui, a: &pb::AuthorizeUrl, open: bool) {
    let listening = !a.callback_addr.is_empty() && safe_to_open(&a.url);
    if !listening {
        ui.say(&format!(
            "Sign in to ChatGPT in your browser:\n\n  {}\n\nthen paste the URL it ends on \
             (it will not load) here and press Enter.",
            if a.issuer_url.is_empty() {
                &a.url
            } else {
                &a.issuer_url
            }
        ));
        return;
    }
    ui.say(&format!(
        "Sign in to ChatGPT in a browser on this machine:\n\n  {}\n",
        a.url
    ));
    if open && open_browser(&a.url).await {
        ui.say("(opened in your browser)");
    }
    if !a.issuer_url.is_empty() {
        ui.say(&format!(
            "Browser on another machine? Open this link there instead:\n\n  {}\n\n\
             and paste the URL it ends on (it will not load) here, then press Enter.",
            a.issuer_url
        ));
    }
}

pub async fn run(
    client: &mut Client,
    provider: &str,
    device: bool,
    no_browser: bool,
    timeout_secs: u32,
) -> Result<Outcome, LoginError> {
    let method = if device {
        pb::LoginMethod::DeviceCode
    } else {
        pb::LoginMethod::Browser
    };
    // Ctrl-C is caught from here on, before the URL is shown: a handler
    // installed later (at the first poll) would let an early Ctrl-C kill
    // the process instead of cancelling the login.
    let mut interrupt = crate::out::interrupts()?;
    let mut events = client.login(provider, method, timeout_secs).await?;
    let mut paster = client.clone();
    let ui = Ui::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = !device;
    let outcome = loop {
        tokio::select! {
            event = events.next() => match event? {
                None => {
                    ui.say("pi-authctl: the daemon ended the login without a result");
                    break Outcome::Failure;
                }
                Some(Event::AuthorizeUrl(a)) => show_authorize(&ui, &a, !no_browser && can_open_browser()).await,
                Some(Event::Waiting(w)) => ui.status(&w.message),
                Some(Event::DeviceCode(d)) => {
                    ui.say(&format!(
                        "On any device, open\n\n  {}\n\nand enter the code\n\n  {}\n",
                        d.verification_url, d.user_code
                    ));
                }
                Some(Event::CallbackUnavailable(c)) => ui.say(&format!("note: {}", c.message)),
                Some(Event::Success(s)) => {
                    ui.done();
                    let who = if s.email.is_empty() { s.account_id.clone() } else { s.email.clone() };
                    let plan = if s.plan.is_empty() { String::new() } else { format!(", plan {}", s.plan) };
                    out::line(&format!("Logged in to {} as {who} (account {}{plan}).", s.provider, s.account_id))?;
                    if !s.kept.is_empty() {
                        out::line(&format!(
                            "It is now the active account; {} is kept beside it (`pi-authctl accounts` lists both).",
                            s.kept
                        ))?;
                    }
                    break Outcome::Success;
                }
                Some(Event::Failure(f)) => {
                    ui.done();
                    say!("pi-authctl: login failed: {}", f.message);
                    break Outcome::Failure;
                }
                Some(Event::Cancelled(c)) => {
                    ui.done();
                    say!("pi-authctl: login cancelled: {}", c.message);
                    break Outcome::Cancelled;
                }
            },
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(text)) if !text.trim().is_empty() => {
                    ui.status("checking the pasted code");
                    match paster.submit_code(provider, text.trim()).await {
                        Ok(()) => ui.status("code accepted; finishing the sign-in"),
                        Err(e) => ui.say(&format!("{e}")),
                    }
                }
                Ok(Some(_)) => {}
                _ => stdin_open = false,
            },
            _ = interrupt.recv() => {
                ui.done();
                say!("pi-authctl: login cancelled");
                break Outcome::Cancelled;
            }
        }
    };
    // Dropping the stream tells the daemon to end the login and close its
    // callback port.
    drop(events);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_local_start_url_reaches_the_opener() {
        assert!(safe_to_open(
            "http://localhost:1455/start/0123456789abcdef0123456789abcdef"
        ));
        for url in [
            "https://auth.openai.com/oauth/authorize?state=abc&code_challenge=x",
            "http://localhost:1455/auth/callback?code=c&state=s",
            "http://localhost:1455/start/",
            "http://localhost:1455/start/abc?state=s",
            "http://localhost:x/start/abc",
            "http://127.0.0.1:1455/start/abc",
            "http://localhost:1455@evil.example/start/abc",
        ] {
            assert!(!safe_to_open(url), "{url}");
        }
    }
}
