//! Credentials shaped exactly as pi writes them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An unsigned JWT carrying the claims of docs/PROTOCOL.md §1. `nonce` makes each
/// token unique, so a test can grep logs for it.
pub fn access_token(account: &str, email: &str, plan: &str, exp_secs: i64, nonce: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = serde_json::json!({
        "exp": exp_secs,
        "email": email,
        "nonce": nonce,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": account,
            "chatgpt_plan_type": plan,
        },
    });
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{payload}.sig-{nonce}")
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// pi's `auth.json` text with one `openai-codex` entry and the given extras
/// (already formatted `"key": value` members at two-space indent), in pi's
/// format: two-space indent, no trailing newline.
pub fn auth_json(access: &str, refresh: &str, expires_ms: i64, account: &str) -> String {
    format!(
        "{{\n  \"openai-codex\": {{\n    \"type\": \"oauth\",\n    \"access\": \"{access}\",\n    \"refresh\": \"{refresh}\",\n    \"expires\": {expires_ms},\n    \"accountId\": \"{account}\"\n  }}\n}}"
    )
}

/// Writes `set` as the `openai-codex` entry of the pi `auth.json` at `path`,
/// keeping other providers, as pi's login would.
pub fn write_codex_login(
    path: &std::path::Path,
    set: &crate::mock::TokenSet,
) -> std::io::Result<()> {
    let mut doc: serde_json::Map<String, serde_json::Value> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e),
    };
    doc.insert(
        "openai-codex".into(),
        serde_json::json!({
            "type": "oauth",
            "access": set.access_token,
            "refresh": set.refresh_token,
            "expires": set.issued_at_ms + set.expires_in as i64 * 1000,
            "accountId": set.account_id,
        }),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
