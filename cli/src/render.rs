//! Turning daemon replies into text for people and JSON for programs, and
//! model output into text that is safe to show on a terminal.

use piauth_client::proto::v1 as pb;

use crate::state::state_name;
use serde_json::json;

/// "in 3h 12m", "5m ago": a duration relative to now, for people.
pub fn relative(delta_ms: i64) -> String {
    let secs = delta_ms.abs() / 1000;
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let span = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    };
    if delta_ms >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn health_name(health: i32) -> &'static str {
    match pb::StoreHealth::try_from(health).unwrap_or_default() {
        pb::StoreHealth::Unspecified => "unknown",
        pb::StoreHealth::Ok => "ok",
        pb::StoreHealth::Missing => "missing",
        pb::StoreHealth::Corrupt => "CORRUPT",
        pb::StoreHealth::Unreadable => "UNREADABLE",
        pb::StoreHealth::Degraded => "DEGRADED",
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none (defaults)" } else { s }
}

/// "1 time", "3 times".
fn times(n: u32) -> String {
    if n == 1 {
        "1 time".to_owned()
    } else {
        format!("{n} times")
    }
}

/// How `provider` stands when it cannot give a token until someone logs
/// in ("not logged in", "needs login"); `None` when it can. Pure.
pub fn logged_out(s: &pb::StatusResponse, provider: &str) -> Option<&'static str> {
    let state = s
        .providers
        .iter()
        .find(|p| p.provider == provider)
        .map_or(pb::ProviderState::NotLoggedIn as i32, |p| p.state);
    let out = matches!(
        pb::ProviderState::try_from(state),
        Ok(pb::ProviderState::NotLoggedIn | pb::ProviderState::NeedsLogin)
    );
    out.then(|| state_name(state))
}

/// The `models` table.
pub fn models_table(models: &[pb::Model]) -> String {
    let mut out = format!("{:<24} {:>10} {:>10}\n", "MODEL", "CONTEXT", "MAX OUT");
    for m in models {
        out += &format!(
            "{:<24} {:>10} {:>10}\n",
            m.id, m.context_window, m.max_output_tokens
        );
    }
    out
}

/// The `models --json` output.
pub fn models_json(models: &[pb::Model]) -> serde_json::Value {
    models
        .iter()
        .map(|m| json!({"id": m.id, "context_window": m.context_window, "max_output_tokens": m.max_output_tokens}))
        .collect()
}

/// The human-readable `status` output.
pub fn status_table(s: &pb::StatusResponse) -> String {
    let mut out = format!(
        "piauthd {} (pid {}) on {}\n",
        s.daemon_version, s.pid, s.socket_path
    );
    if let Some(store) = &s.store {
        out += &format!("store    {} ({})\n", store.path, health_name(store.health));
        if !store.detail.is_empty() {
            out += &format!("         {}\n", store.detail);
        }
    }
    if let Some(f) = &s.follow {
        out += &follow_lines(f, s.now_ms);
    }
    // Older daemons do not say; then the lines are left out.
    if !s.issuer.is_empty() {
        out += &format!("issuer   {}\n", s.issuer);
        out += &format!("backend  {}\n", s.codex_base_url);
        out += &format!("config   {}\n", or_none(&s.config_file));
    }
    let rows: Vec<[String; 6]> = s
        .providers
        .iter()
        .map(|p| {
            let expires = if p.expires_at_ms == 0 {
                "-".to_owned()
            } else {
                relative(p.expires_at_ms - s.now_ms)
            };
            [
                p.provider.clone(),
                state_name(p.state).to_owned(),
                or_dash(&p.account_id).to_owned(),
                or_dash(&p.plan).to_owned(),
                expires,
                or_dash(&p.email).to_owned(),
            ]
        })
        .collect();
    let header = ["PROVIDER", "STATE", "ACCOUNT", "PLAN", "EXPIRES", "EMAIL"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::from("\n");
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l += cell;
            } else {
                l += &format!("{cell:<w$}  ", w = widths[i]);
            }
        }
        l.trim_end().to_owned()
    };
    out += &line(&header);
    for row in &rows {
        out += &line(&row.each_ref().map(String::as_str));
    }
    out.push('\n');
    for p in &s.providers {
        let mut facts = Vec::new();
        if p.refresh_count > 0 {
            facts.push(format!(
                "refreshed {} ({} by this daemon)",
                relative(p.last_refresh_ms - s.now_ms),
                times(p.refresh_count)
            ));
        }
        if p.next_refresh_ms > 0 {
            facts.push(format!(
                "next refresh {}",
                relative(p.next_refresh_ms - s.now_ms)
            ));
        }
        if !p.last_error.is_empty() {
            facts.push(format!("last error: {}", p.last_error));
        }
        if !facts.is_empty() {
            out += &format!("{}: {}\n", p.provider, facts.join("; "));
        }
        if !p.hint.is_empty() {
            out += &format!("{}: {}\n", p.provider, p.hint);
        }
    }
    if s.accounts.len() > 1 {
        out += "\nChatGPT accounts:\n";
        out += &crate::accounts::accounts_text(&pb::AccountsResponse {
            accounts: s.accounts.clone(),
        });
    }
    out
}

/// The `status --json` output: stable snake_case names, no secrets.
pub fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    let store = s.store.clone().unwrap_or_default();
    let follow = s.follow.as_ref().map(|f| {
        json!({
            "target": f.target,
            "reachable": f.reachable,
            "since_ms": f.since_ms,
            "detail": f.detail,
            "owner_account_id": f.owner_account_id,
            "owner_email": f.owner_email,
            "owner_socket": f.owner_socket,
        })
    });
    json!({
        "follow": follow,
        "daemon_version": s.daemon_version,
        "pid": s.pid,
        "socket": s.socket_path,
        "issuer": s.issuer,
        "codex_base_url": s.codex_base_url,
        "config_file": s.config_file,
        "now_ms": s.now_ms,
        "store": {
            "path": store.path,
            "health": health_name(store.health).to_lowercase(),
            "detail": store.detail,
        },
        "accounts": crate::accounts::accounts_json(&pb::AccountsResponse {
            accounts: s.accounts.clone(),
        })["accounts"],
        "providers": s.providers.iter().map(|p| json!({
            "provider": p.provider,
            "state": state_name(p.state).replace(' ', "_"),
            "account_id": p.account_id,
            "email": p.email,
            "plan": p.plan,
            "expires_at_ms": p.expires_at_ms,
            "last_refresh_ms": p.last_refresh_ms,
            "refresh_count": p.refresh_count,
            "next_refresh_ms": p.next_refresh_ms,
            "last_error": p.last_error,
            "hint": p.hint,
        })).collect::<Vec<_>>(),
    })
}

/// A follower's lines of `status`: whom it follows, and how that goes.
fn follow_lines(f: &pb::FollowStatus, now_ms: i64) -> String {
    let span = relative(now_ms - f.since_ms);
    let span = span.trim_start_matches("in ");
    let state = if f.reachable {
        format!("reachable for {span}")
    } else {
        format!("NOT reachable for {span}: {}", f.detail)
    };
    let mut out = format!("follows  {} ({state})\n", f.target);
    out += &format!("         through {}\n", f.owner_socket);
    if !f.owner_account_id.is_empty() {
        out += &format!(
            "owner    account {}{}\n",
            f.owner_account_id,
            if f.owner_email.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.owner_email)
            }
        );
    }
    out
}

/// The one line `status` adds when a follower cannot reach its owner.
pub fn owner_unreachable(f: &pb::FollowStatus) -> String {
    format!(
        "this piauthd follows {} and cannot reach it: {}. It serves its last token while that is \
         valid and reconnects by itself; check the owner's piauthd and the link to it",
        f.target, f.detail
    )
}

/// The `token --json` output.
pub fn token_json(t: &pb::Token) -> serde_json::Value {
    json!({
        "provider": t.provider,
        "access_token": t.access_token,
        "expires_at_ms": t.expires_at_ms,
        "account_id": t.account_id,
    })
}

/// Removes terminal control sequences from streamed model output.
///
/// A model's reply is text from outside: printed raw on a terminal, an
/// `OSC 52` sequence writes the clipboard, others clear the screen, set the
/// title, remap keys or hide what follows. This keeps only printable text,
/// `\n` and `\t`, and drops: ESC sequences, CSI (`ESC [` or U+009B) up to
/// its final byte, string sequences (OSC `ESC ]`, DCS `ESC P`, SOS `ESC X`,
/// PM `ESC ^`, APC `ESC _`, and their C1 forms) up to BEL or ST, every
/// other C0 control (including CR and BEL) and DEL, and every C1 control.
///
/// Output arrives in deltas and a sequence may be split across two, so the
/// filter keeps its state between [`TerminalText::push`] calls.
#[derive(Debug, Default)]
pub struct TerminalText {
    state: Escape,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Plain text.
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// After ESC and intermediate bytes (0x20-0x2F), before the final byte.
    EscIntermediate,
    /// Inside a CSI, before its final byte (0x40-0x7E).
    Csi,
    /// Inside a string sequence (OSC, DCS, SOS, PM, APC), before BEL or ST.
    Str,
    /// ESC inside a string: `\` ends it (ST), anything else starts anew.
    StrEsc,
}

impl TerminalText {
    /// The printable part of `text`, given what came before it.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            self.step(c, &mut out);
        }
        out
    }

    fn step(&mut self, c: char, out: &mut String) {
        use Escape::*;
        let code = c as u32;
        self.state = match self.state {
            Ground => match c {
                '\n' | '\t' => {
                    out.push(c);
                    Ground
                }
                '\u{1b}' => Esc,
                '\u{9b}' => Csi,
                '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => Str,
                _ if c.is_control() => Ground,
                _ => {
                    out.push(c);
                    Ground
                }
            },
            Esc | EscIntermediate => match c {
                '[' if self.state == Esc => Csi,
                ']' | 'P' | 'X' | '^' | '_' if self.state == Esc => Str,
                '\u{1b}' => Esc,
                _ if (0x20..=0x2f).contains(&code) => EscIntermediate,
                // The final byte (or anything else) ends the sequence.
                _ => Ground,
            },
            Csi => match code {
                0x40..=0x7e => Ground,
                0x1b => Esc,
                // Parameters, intermediates and stray controls are swallowed.
                0x20..=0x3f => Csi,
                _ if c.is_control() => Csi,
                // Not a CSI after all: abandon it and keep the text.
                _ => {
                    out.push(c);
                    Ground
                }
            },
            Str => match c {
                '\u{7}' | '\u{9c}' => Ground,
                '\u{1b}' => StrEsc,
                _ => Str,
            },
            StrEsc => match c {
                '\\' => Ground,
                '\u{1b}' => StrEsc,
                _ => {
                    // ESC ended the string and began a new sequence.
                    self.state = Esc;
                    return self.step(c, out);
                }
            },
        };
    }
}

/// [`TerminalText`] over one whole string.
#[cfg(test)]
fn strip_controls(text: &str) -> String {
    TerminalText::default().push(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(90_000), "in 1m 30s");
        assert_eq!(relative(-5_000), "5s ago");
        assert_eq!(relative(3 * 86_400_000 + 7_200_000), "in 3d 2h");
        assert_eq!(relative(3_660_000), "in 1h 1m");
    }

    #[test]
    fn a_follower_says_whom_it_follows_and_how_that_goes() {
        let mut f = pb::FollowStatus {
            target: "ssh://devbox".into(),
            reachable: true,
            since_ms: 1_000,
            owner_account_id: "acc".into(),
            owner_email: "me@example.com".into(),
            owner_socket: "/run/p.sock.owner".into(),
            ..Default::default()
        };
        let t = follow_lines(&f, 91_000);
        assert!(
            t.contains("follows  ssh://devbox (reachable for 1m 30s)\n"),
            "{t}"
        );
        assert!(t.contains("owner    account acc (me@example.com)\n"), "{t}");
        f.reachable = false;
        f.detail = "ssh: Connection refused".into();
        let t = follow_lines(&f, 3_000);
        assert!(
            t.contains("(NOT reachable for 2s: ssh: Connection refused)"),
            "{t}"
        );
        let line = owner_unreachable(&f);
        assert!(
            line.starts_with(
                "this piauthd follows ssh://devbox and cannot reach it: ssh: Connection refused."
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn one_refresh_is_one_time() {
        assert_eq!(times(1), "1 time");
        assert_eq!(times(3), "3 times");
        assert_eq!(times(0), "0 times");
    }

    #[test]
    fn table_lists_providers_and_hints() {
        let s = pb::StatusResponse {
            daemon_version: "0.1.0".into(),
            pid: 7,
            now_ms: 1_000,
            socket_path: "/run/x.sock".into(),
            store: Some(pb::StoreStatus {
                kind: 1,
                path: "/h/auth.json".into(),
                health: pb::StoreHealth::Ok as i32,
                detail: String::new(),
            }),
            providers: vec![pb::ProviderStatus {
                provider: "openai-codex".into(),
                state: pb::ProviderState::NotLoggedIn as i32,
                hint: "run `pi-authctl login`".into(),
                ..Default::default()
            }],
            issuer: "http://127.0.0.1:8787".into(),
            codex_base_url: "http://127.0.0.1:8787/backend-api".into(),
            config_file: String::new(),
            accounts: Vec::new(),
            follow: None,
        };
        let t = status_table(&s);
        assert!(!t.contains("follows"), "{t}");
        assert!(t.contains("store    /h/auth.json (ok)"), "{t}");
        assert!(t.contains("issuer   http://127.0.0.1:8787\n"), "{t}");
        assert!(
            t.contains("backend  http://127.0.0.1:8787/backend-api\n"),
            "{t}"
        );
        assert!(t.contains("config   none (defaults)\n"), "{t}");
        assert_eq!(logged_out(&s, "openai-codex"), Some("not logged in"));
        assert_eq!(logged_out(&s, "absent"), Some("not logged in"));
        assert!(t.contains("openai-codex  not logged in"), "{t}");
        assert!(t.contains("openai-codex: run `pi-authctl login`"), "{t}");
        let j = status_json(&s);
        assert_eq!(j["providers"][0]["state"], "not_logged_in");
    }

    #[test]
    fn plain_text_newlines_and_tabs_pass_unchanged() {
        let text = "Hello, wörld ✓\n\tindented — 日本語\n";
        assert_eq!(strip_controls(text), text);
    }

    #[test]
    fn osc_52_and_other_sequences_are_removed() {
        let cases = [
            // OSC 52 clipboard write, BEL- and ST-terminated.
            ("a\x1b]52;c;ZWNobyBwd25lZA==\x07b", "ab"),
            ("a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b", "ab"),
            // C1 OSC and ST.
            ("a\u{9d}52;c;eA==\u{9c}b", "ab"),
            // Window title.
            ("\x1b]0;pwned\x07title", "title"),
            // Clear screen, cursor home, colours.
            ("\x1b[2J\x1b[H\x1b[1;31mred\x1b[0m", "red"),
            // C1 CSI.
            ("x\u{9b}2Jy", "xy"),
            // Private-mode CSI with intermediates.
            ("\x1b[?1049hz", "z"),
            // DCS, APC, PM, SOS strings.
            (
                "1\x1bPq#0;2;0;0;0\x1b\\2\x1b_apc\x07 3\x1b^pm\x1b\\4\x1bXsos\x1b\\5",
                "12 345",
            ),
            // Two-byte escapes: reset, keypad, charset designation.
            ("\x1bc\x1b=\x1b(0ok", "ok"),
            // Other C0 controls, DEL and C1 controls.
            ("b\x07e\x08l\rl\x7f\x00\u{85}!", "bell!"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_controls(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_sequence_split_across_deltas_is_still_removed() {
        let mut t = TerminalText::default();
        let pieces = [
            "before \x1b",
            "]52;c;",
            "ZXZpbA==",
            "\x1b",
            "\\ after",
            " \x1b[",
            "31",
            "m!",
        ];
        let out: String = pieces.iter().map(|p| t.push(p)).collect();
        assert_eq!(out, "before  after !");
    }

    #[test]
    fn an_esc_inside_a_string_starts_a_new_sequence() {
        // An OSC cut short by a CSI: both go.
        assert_eq!(strip_controls("\x1b]0;t\x1b[2Jnext"), "next");
    }
}
