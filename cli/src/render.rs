//! Turning daemon replies into text for people and JSON for programs.

use piauth_client::proto::v1 as pb;
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

fn state_name(state: i32) -> &'static str {
    match pb::ProviderState::try_from(state).unwrap_or_default() {
        pb::ProviderState::Unspecified => "unusable",
        pb::ProviderState::NotLoggedIn => "not logged in",
        pb::ProviderState::Valid => "valid",
        pb::ProviderState::Expired => "expired",
        pb::ProviderState::Refreshing => "refreshing",
        pb::ProviderState::NeedsLogin => "needs login",
        pb::ProviderState::Degraded => "degraded",
        pb::ProviderState::Static => "api key",
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
                "refreshed {} ({} times by this daemon)",
                relative(p.last_refresh_ms - s.now_ms),
                p.refresh_count
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
    out
}

/// The `status --json` output: stable snake_case names, no secrets.
pub fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    let store = s.store.clone().unwrap_or_default();
    json!({
        "daemon_version": s.daemon_version,
        "pid": s.pid,
        "socket": s.socket_path,
        "now_ms": s.now_ms,
        "store": {
            "path": store.path,
            "health": health_name(store.health).to_lowercase(),
            "detail": store.detail,
        },
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

/// The `token --json` output.
pub fn token_json(t: &pb::Token) -> serde_json::Value {
    json!({
        "provider": t.provider,
        "access_token": t.access_token,
        "expires_at_ms": t.expires_at_ms,
        "account_id": t.account_id,
    })
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
        };
        let t = status_table(&s);
        assert!(t.contains("store    /h/auth.json (ok)"), "{t}");
        assert!(t.contains("openai-codex  not logged in"), "{t}");
        assert!(t.contains("openai-codex: run `pi-authctl login`"), "{t}");
        let j = status_json(&s);
        assert_eq!(j["providers"][0]["state"], "not_logged_in");
    }
}
