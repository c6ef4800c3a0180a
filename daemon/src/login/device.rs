//! The device-code flow (docs/PROTOCOL.md §1): a user code to enter on any
//! device, polled until it is approved, refused, or expires.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{DEVICE_LIMIT, FailureKind, LoginEvent, Logins, send};
use crate::upstream::{DevicePoll, LoginHttpError};

impl Logins {
    /// The device-code flow. Returns the final event.
    pub(super) async fn device(
        self: &Arc<Self>,
        events: &mpsc::Sender<LoginEvent>,
    ) -> Option<LoginEvent> {
        let code = match self.issuer.device_user_code().await {
            Ok(code) => code,
            Err(e @ LoginHttpError::DeviceLoginDisabled) => {
                return Some(LoginEvent::Failure {
                    kind: FailureKind::DeviceCodeUnavailable,
                    message: format!("{e}; use the browser login (with paste over SSH) instead"),
                });
            }
            Err(e) => {
                return Some(LoginEvent::Failure {
                    kind: FailureKind::DeviceCodeUnavailable,
                    message: e.to_string(),
                });
            }
        };
        let base = self.issuer.base();
        let limit_ms = i64::try_from(DEVICE_LIMIT.as_millis()).unwrap_or(i64::MAX);
        let deadline_ms = self.accounts.active().now_ms().saturating_add(limit_ms);
        send(
            events,
            LoginEvent::DeviceCode {
                verification_url: format!("{base}/codex/device"),
                user_code: code.user_code.clone(),
                expires_at_ms: self.accounts.active().now_ms() + limit_ms,
            },
        )
        .await;
        send(
            events,
            LoginEvent::Waiting("waiting for the code to be entered".into()),
        )
        .await;
        let mut interval = Duration::from_secs(code.interval_secs.max(1));
        loop {
            let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            if self.accounts.active().now_ms().saturating_add(interval_ms) > deadline_ms {
                return Some(LoginEvent::Failure {
                    kind: FailureKind::Timeout,
                    message: "the device code expired after 15 minutes; run `pi-authctl login --device` again".into(),
                });
            }
            tokio::time::sleep(interval).await;
            match self.issuer.device_poll(&code).await {
                Ok(DevicePoll::Pending) => {}
                Ok(DevicePoll::SlowDown) => interval += Duration::from_secs(5),
                Ok(DevicePoll::Approved {
                    authorization_code,
                    code_verifier,
                }) => {
                    let redirect = format!("{base}/deviceauth/callback");
                    return Some(
                        match self
                            .exchange(&authorization_code, &code_verifier, &redirect)
                            .await
                        {
                            Ok(done) => done,
                            Err(e) => e.into_failure(),
                        },
                    );
                }
                Err(LoginHttpError::Network(e)) => {
                    tracing::warn!(error = %e, "device login poll failed; retrying");
                }
                Err(e) => {
                    return Some(LoginEvent::Failure {
                        kind: FailureKind::ExchangeFailed,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}
