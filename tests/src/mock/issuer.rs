//! `POST /oauth/token`: the refresh grant with rotating, single-use tokens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::server::ResetHandle;
use super::{CLIENT_ID, Fault, MockState};

/// The exact answer the real issuer gives to a reused refresh token.
pub const REUSED_BODY: &str = r#"{"error":{"message":"Your refresh token has already been used to generate a new access token. Please try signing in again.","type":"invalid_request_error","param":null,"code":"refresh_token_reused"}}"#;

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

/// Reads a form-encoded (pi) or JSON (Codex CLI) body into fields.
fn fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        Some(
            obj.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect(),
        )
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        Some(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    } else {
        None
    }
}

/// `POST /oauth/token`. The work runs in a task of its own, as a real
/// issuer's does: a client that goes away mid-request (a daemon killed
/// during the round trip) does not stop the issuer from rotating the token.
pub async fn token(
    State(state): State<Arc<MockState>>,
    reset: Option<axum::Extension<ResetHandle>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    tokio::spawn(async move {
        let answer = handle_token(state.clone(), reset, headers, body).await;
        state.token_answers.fetch_add(1, Ordering::SeqCst);
        answer
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn handle_token(
    state: Arc<MockState>,
    reset: Option<axum::Extension<ResetHandle>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let fault = state.ledger().faults.pop_front();
    let delay = state.config().token_delay;
    let mut reset_after = false;
    let mut gateway_after = None;
    match fault {
        Some(Fault::Status { code }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                Json(json!({"error": {"code": "server_error", "message": "injected fault", "type": "server_error"}})),
            )
                .into_response();
        }
        Some(Fault::Delay { ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(Fault::ResetBefore) => {
            if let Some(axum::Extension(r)) = reset {
                return r.reset().await;
            }
        }
        Some(Fault::ResetAfter) => reset_after = true,
        Some(Fault::Gateway { code }) => return gateway_page(code),
        Some(Fault::GatewayAfterRotate { code }) => gateway_after = Some(code),
        Some(Fault::InvalidGrant) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "injected invalid_grant",
            );
        }
        Some(Fault::Terminal { code }) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": code, "message": "injected terminal error", "type": "invalid_request_error"}})),
            )
                .into_response();
        }
        None => {}
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let Some(f) = fields(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be application/x-www-form-urlencoded or application/json",
        );
    };
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        );
    }
    let response = match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => refresh(&state, f.get("refresh_token").map(String::as_str)),
        Some("authorization_code") => super::login::exchange(&state, &f),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
        None => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    };
    if reset_after && let Some(axum::Extension(r)) = reset {
        return r.reset().await;
    }
    if let Some(code) = gateway_after {
        return gateway_page(code);
    }
    response
}

/// A gateway's error page: HTML, not the issuer's JSON.
fn gateway_page(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/html")],
        format!("<html><head><title>{code}</title></head><body><h1>{code} Gateway Error</h1></body></html>"),
    )
        .into_response()
}

fn refresh(state: &MockState, presented: Option<&str>) -> Response {
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let mut ledger = state.ledger();
    let Some(&(family, spent)) = ledger.refresh_tokens.get(presented) else {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown refresh token",
        );
    };
    if spent {
        state.reuse_attempts.fetch_add(1, Ordering::SeqCst);
        if !ledger.families[family].revoked {
            ledger.families[family].revoked = true;
            state.revocations.fetch_add(1, Ordering::SeqCst);
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            super::issuer::REUSED_BODY,
        )
            .into_response();
    }
    if ledger.families[family].revoked {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "refresh_token_invalidated", "message": "Your refresh token has been invalidated. Please try signing in again.", "type": "invalid_request_error"}})),
        )
            .into_response();
    }
    ledger
        .refresh_tokens
        .insert(presented.to_owned(), (family, true));
    let set = state.issue(&mut ledger, family);
    state.refreshes.fetch_add(1, Ordering::SeqCst);
    set.reply()
}

pub async fn stats(State(state): State<Arc<MockState>>) -> Response {
    Json(state.stats()).into_response()
}

/// What each responses request carried (see `codex::SeenRequest`).
pub async fn responses_seen(State(state): State<Arc<MockState>>) -> Response {
    Json(state.responses_seen()).into_response()
}

pub async fn push_faults(
    State(state): State<Arc<MockState>>,
    Json(faults): Json<Vec<Fault>>,
) -> Response {
    // Say what was queued, so `curl` shows that the request took.
    let queued = faults.len();
    state.push_faults(faults);
    Json(serde_json::json!({ "queued": queued })).into_response()
}

/// `POST /_mock/reply`: sets what later replies look like.
pub async fn set_reply(
    State(state): State<Arc<MockState>>,
    Json(req): Json<super::ReplyRequest>,
) -> Response {
    state.set_reply(req.shape());
    Json(serde_json::json!({ "ok": true })).into_response()
}

#[derive(serde::Deserialize)]
pub struct SeedRequest {
    account_id: Option<String>,
    email: Option<String>,
    plan: Option<String>,
}

pub async fn seed(State(state): State<Arc<MockState>>, Json(req): Json<SeedRequest>) -> Response {
    let set = state.seed_login(
        req.account_id.as_deref().unwrap_or("acc-mock"),
        req.email.as_deref().unwrap_or("user@example.com"),
        req.plan.as_deref().unwrap_or("plus"),
    );
    Json(set).into_response()
}
