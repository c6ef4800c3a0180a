//! The GetToken decision and the grants it hands out: pure functions of a
//! snapshot ([`View`]) and the time.

use super::{
    Credential, DEFAULT_PROVIDER, Grant, MAX_MIN_VALID_MS, Phase, StoreHealth, TokenError, View,
    effective_min_valid_ms,
};
use crate::oauth::Claims;
use crate::store::OAuthCredential;

/// What GetToken should do for the default provider, as a pure function.
#[derive(Debug)]
pub enum Decision {
    Serve(Grant),
    Refresh { wanted_ms: i64 },
    Fail(TokenError),
}

pub fn decide(view: &View, min_valid_secs: u32, now: i64) -> Decision {
    let Some(cred) = view.codex() else {
        return Decision::Fail(
            grant_static(view, DEFAULT_PROVIDER, min_valid_secs, now)
                .err()
                .unwrap_or(TokenError::NotLoggedIn {
                    provider: DEFAULT_PROVIDER.into(),
                }),
        );
    };
    if let Phase::NeedsLogin { reason, .. } = &view.refresh.phase {
        return Decision::Fail(TokenError::NeedsLogin {
            provider: DEFAULT_PROVIDER.into(),
            reason: reason.clone(),
        });
    }
    let remaining = cred.expires_ms - now;
    let wanted = effective_min_valid_ms(min_valid_secs, view.refresh.lifetime_ms);
    let grant = grant_codex(view, now);
    if remaining > 0 && remaining >= wanted {
        return grant.map_or_else(|| Decision::Refresh { wanted_ms: wanted }, Decision::Serve);
    }
    // Too short. A refresh is futile while its outcome is unknown or while
    // backing off; serve what is still valid, else say why not.
    let blocked = match &view.refresh.phase {
        Phase::OutcomeUnknown { reason, .. } => Some(reason.clone()),
        _ if view.refresh.retry_at_ms.is_some_and(|t| t > now) => {
            Some(view.refresh.last_error.clone())
        }
        _ => None,
    };
    match (blocked, grant) {
        (None, _) => Decision::Refresh { wanted_ms: wanted },
        (Some(_), Some(g)) if remaining > 0 => Decision::Serve(g),
        (Some(reason), _) => match view.refresh.phase {
            Phase::OutcomeUnknown { .. } => Decision::Fail(TokenError::NeedsLogin {
                provider: DEFAULT_PROVIDER.into(),
                reason,
            }),
            _ => Decision::Fail(unavailable(view, now, &reason)),
        },
    }
}

/// Whether GetToken can be answered from `view` as it is: always while the
/// store reads fine; with a corrupt or unreadable store only when a token
/// kept from the last good read can be served. Pure.
pub(super) fn answers_from_snapshot(
    view: &View,
    provider: &str,
    min_valid_secs: u32,
    now: i64,
) -> bool {
    if !matches!(view.health, StoreHealth::Corrupt | StoreHealth::Unreadable) {
        return true;
    }
    if provider == DEFAULT_PROVIDER {
        matches!(decide(view, min_valid_secs, now), Decision::Serve(_))
    } else {
        grant_static(view, provider, min_valid_secs, now).is_ok()
    }
}

pub(super) fn unavailable(view: &View, now: i64, reason: &str) -> TokenError {
    let remaining = view.codex().map_or(0, |c| c.expires_ms - now);
    TokenError::Unavailable {
        provider: DEFAULT_PROVIDER.into(),
        when: describe_remaining(remaining),
        reason: reason.to_owned(),
    }
}

pub(super) fn describe_remaining(remaining_ms: i64) -> String {
    if remaining_ms <= 0 {
        format!("expired {}s ago", (-remaining_ms) / 1000)
    } else {
        format!("expires in {}s", remaining_ms / 1000)
    }
}

pub(super) fn grant_codex(view: &View, _now: i64) -> Option<Grant> {
    let entry = view.entry(DEFAULT_PROVIDER)?;
    let Credential::OAuth(c) = &entry.credential else {
        return None;
    };
    Some(Grant {
        provider: DEFAULT_PROVIDER.into(),
        access: c.access.clone(),
        expires_at_ms: c.expires_ms,
        account_id: account_id(c, entry.claims.as_ref()),
        generation: view.generation,
    })
}

fn account_id(c: &OAuthCredential, claims: Option<&Claims>) -> String {
    c.account_id
        .clone()
        .or_else(|| claims.and_then(|cl| cl.account_id.clone()))
        .unwrap_or_default()
}

/// GetToken for providers piauthd serves but does not refresh: the stored
/// token while it is valid long enough.
pub fn grant_static(
    view: &View,
    provider: &str,
    min_valid_secs: u32,
    now_ms: i64,
) -> Result<Grant, TokenError> {
    let Some(entry) = view.entry(provider) else {
        return Err(match view.health {
            StoreHealth::Corrupt => TokenError::StoreCorrupt {
                detail: view.detail.clone(),
            },
            StoreHealth::Unreadable => TokenError::StoreUnavailable {
                detail: view.detail.clone(),
            },
            _ => TokenError::NotLoggedIn {
                provider: provider.to_owned(),
            },
        });
    };
    match &entry.credential {
        Credential::OAuth(c) => {
            let wanted_ms = i64::from(min_valid_secs) * 1000;
            let remaining_ms = c.expires_ms - now_ms;
            if remaining_ms <= wanted_ms.min(MAX_MIN_VALID_MS) {
                return Err(TokenError::Expiring {
                    provider: provider.to_owned(),
                    when: if remaining_ms > 0 {
                        format!("expires in {}s, sooner than asked", remaining_ms / 1000)
                    } else {
                        describe_remaining(remaining_ms)
                    },
                });
            }
            Ok(Grant {
                provider: provider.to_owned(),
                access: c.access.clone(),
                expires_at_ms: c.expires_ms,
                account_id: account_id(c, entry.claims.as_ref()),
                generation: view.generation,
            })
        }
        Credential::ApiKey(key) => Ok(Grant {
            provider: provider.to_owned(),
            access: key.clone(),
            expires_at_ms: 0,
            account_id: String::new(),
            generation: view.generation,
        }),
        Credential::Unusable { reason } => Err(TokenError::Unusable {
            provider: provider.to_owned(),
            reason: reason.clone(),
        }),
    }
}

/// The token a watcher should see now, without refreshing: `Ok(None)` when
/// there is none yet (not logged in, or expired and being refreshed).
pub fn current_grant(view: &View, provider: &str, now: i64) -> Result<Option<Grant>, TokenError> {
    if provider != DEFAULT_PROVIDER {
        return Ok(grant_static(view, provider, 0, now).ok());
    }
    if let Phase::NeedsLogin { reason, .. } = &view.refresh.phase {
        return Err(TokenError::NeedsLogin {
            provider: DEFAULT_PROVIDER.into(),
            reason: reason.clone(),
        });
    }
    Ok(grant_codex(view, now).filter(|g| g.expires_at_ms > now))
}
