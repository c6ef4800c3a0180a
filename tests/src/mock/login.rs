//! The login side of the mock issuer: authorize, the authorization-code
//! grant with PKCE, and the device-code endpoints.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, Identity, MockState};

/// An authorization code waiting to be exchanged.
#[derive(Debug, Clone)]
pub struct PendingCode {
    challenge: String,
    redirect_uri: String,
    /// Who signed in, when the authorize request named someone other than
    /// the configured identity (`login_hint`).
    identity: Option<Identity>,
}

/// The account a `login_hint` signs in as: a second user of the same
/// issuer, e.g. another local user in their own browser.
fn hinted(email: &str) -> Option<Identity> {
    let local = email.split('@').next().filter(|l| !l.is_empty())?;
    Some(Identity {
        account_id: format!("acc-{local}"),
        email: email.to_owned(),
        plan: "free".into(),
    })
}

/// A device login in progress.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    user_code: String,
    polls: u32,
}

fn bad_request(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether the issuer would redirect there: `http://localhost:<port>/auth/callback`.
/// (The real allow-list holds only ports 1455 and 1457; tests use free ports.)
fn allowed_redirect(uri: &str) -> bool {
    uri.strip_prefix("http://localhost:")
        .and_then(|rest| rest.strip_suffix("/auth/callback"))
        .is_some_and(|port| port.parse::<u16>().is_ok())
}

/// `GET /oauth/authorize`: approves at once, as a signed-in user would. An
/// optional `login_hint` (an email) signs in as that user instead.
pub async fn authorize(
    State(state): State<Arc<MockState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID {
        return bad_request("invalid_client", "unknown client_id");
    }
    if get("response_type") != "code" || get("code_challenge_method") != "S256" {
        return bad_request(
            "invalid_request",
            "response_type=code and S256 are required",
        );
    }
    if !get("scope").split(' ').any(|s| s == "offline_access") {
        return bad_request("invalid_scope", "offline_access is required");
    }
    let redirect_uri = get("redirect_uri");
    if !allowed_redirect(redirect_uri) {
        return bad_request("invalid_request", "redirect_uri is not on the allow-list");
    }
    let (challenge, st) = (get("code_challenge"), get("state"));
    if challenge.len() != 43 || st.is_empty() {
        return bad_request("invalid_request", "code_challenge and state are required");
    }
    let encode = |pairs: &[(&str, &str)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    if !state.config().approve {
        let query = encode(&[
            ("error", "access_denied"),
            ("error_description", "The user denied access."),
            ("state", st),
        ]);
        return Redirect::to(&format!("{redirect_uri}?{query}")).into_response();
    }
    let code = format!("ac_{}", super::jwt::nonce());
    state.ledger().codes.insert(
        code.clone(),
        PendingCode {
            challenge: challenge.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            identity: q.get("login_hint").and_then(|h| hinted(h)),
        },
    );
    let query = encode(&[("code", &code), ("state", st)]);
    Redirect::to(&format!("{redirect_uri}?{query}")).into_response()
}

/// The authorization-code grant of `/oauth/token`.
pub fn exchange(state: &MockState, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let refused = |why: &str| {
        state.exchanges_refused.fetch_add(1, Ordering::SeqCst);
        bad_request("invalid_grant", why)
    };
    let mut ledger = state.ledger();
    // A code is single-use, whatever happens next.
    let Some(pending) = ledger.codes.remove(get("code")) else {
        return refused("unknown or already used authorization code");
    };
    if get("redirect_uri") != pending.redirect_uri {
        return refused("redirect_uri does not match the authorization request");
    }
    if s256(get("code_verifier")) != pending.challenge {
        return refused("code_verifier does not match the code_challenge");
    }
    let who = pending
        .identity
        .unwrap_or_else(|| state.config().login_identity);
    let set = state.new_family(&mut ledger, &who.account_id, &who.email, &who.plan);
    state.exchanges.fetch_add(1, Ordering::SeqCst);
    set.reply()
}

/// `POST /api/accounts/deviceauth/usercode`.
pub async fn device_usercode(
    State(state): State<Arc<MockState>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if !state.config().device_enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if body.get("client_id").and_then(|v| v.as_str()) != Some(CLIENT_ID) {
        return bad_request("invalid_client", "unknown client_id");
    }
    let id = format!("dev_{}", super::jwt::nonce());
    let n = super::jwt::nonce().to_uppercase();
    let user_code = format!("{}-{}", &n[..4], &n[4..8]);
    state.ledger().devices.insert(
        id.clone(),
        DeviceAuth {
            user_code: user_code.clone(),
            polls: 0,
        },
    );
    // The real issuer sends the interval as a numeric string.
    Json(json!({ "device_auth_id": id, "user_code": user_code, "interval": "1" })).into_response()
}

/// `POST /api/accounts/deviceauth/token`.
pub async fn device_token(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    if !state.config().device_enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    state.device_polls.fetch_add(1, Ordering::SeqCst);
    let cfg = state.config();
    let text = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut ledger = state.ledger();
    let Some(device) = ledger.devices.get_mut(&text("device_auth_id")) else {
        return bad_request("invalid_request", "unknown device_auth_id");
    };
    if device.user_code != text("user_code") {
        return bad_request("invalid_request", "user_code does not match");
    }
    let poll = device.polls;
    device.polls += 1;
    if cfg.device_slow_down_at == Some(poll) {
        return bad_request("slow_down", "polling too fast");
    }
    if poll < cfg.device_pending_polls {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": "deviceauth_authorization_pending", "message": "pending"}})),
        )
            .into_response();
    }
    ledger.devices.remove(&text("device_auth_id"));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let verifier = format!(
        "{}{}{}{}",
        super::jwt::nonce(),
        super::jwt::nonce(),
        super::jwt::nonce(),
        super::jwt::nonce()
    );
    let code = format!("ac_{}", super::jwt::nonce());
    ledger.codes.insert(
        code.clone(),
        PendingCode {
            challenge: s256(&verifier),
            redirect_uri: format!("http://{host}/deviceauth/callback"),
            identity: None,
        },
    );
    Json(json!({
        "authorization_code": code,
        "code_verifier": verifier,
        "code_challenge": s256(&verifier),
    }))
    .into_response()
}
