//! The broker owns the credentials in memory and answers for them.
//!
//! GetToken is the hot path: it reads an immutable snapshot ([`View`]) from a
//! `watch` channel, with no file I/O and no JSON parsing per call. The
//! snapshot is rebuilt only when the store changes: at start-up, when the
//! file watcher reports a change by another process, and (later) after a
//! refresh or login. The broker is the only writer of the store.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::oauth::{self, Claims};
use crate::secret::Secret;
use crate::store::{Credential, Document, FileStore, StoreError};

/// The provider piauthd manages by default.
pub const DEFAULT_PROVIDER: &str = piauth_proto::DEFAULT_PROVIDER;

/// The longest validity a caller may demand. Access tokens live for days, so
/// an hour is plenty, and a larger demand must not force needless refreshes.
pub const MAX_MIN_VALID_SECS: u32 = 3600;

/// How the store looked at the last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    Ok,
    /// No `auth.json` yet.
    Missing,
    /// `auth.json` does not parse; it is left untouched.
    Corrupt,
    /// `auth.json` cannot be read.
    Unreadable,
}

/// One provider's credential as last read, with its JWT claims.
#[derive(Debug, Clone)]
pub struct Entry {
    pub credential: Credential,
    /// Claims of an OAuth access token, when it is a readable JWT.
    pub claims: Option<Claims>,
}

/// An immutable snapshot of everything the broker knows.
#[derive(Debug, Clone)]
pub struct View {
    pub health: StoreHealth,
    /// Why the store is not OK, for people. Never contains a token.
    pub detail: String,
    /// Providers in file order. Kept from the last good read while the
    /// file is corrupt or unreadable, so a bad edit does not log anyone out.
    pub entries: Vec<(String, Entry)>,
}

impl View {
    fn entry(&self, provider: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find_map(|(p, e)| (p == provider).then_some(e))
    }
}

/// A token handed to a client.
#[derive(Debug, Clone)]
pub struct Grant {
    pub provider: String,
    pub access: Secret<String>,
    /// 0 for credentials without expiry.
    pub expires_at_ms: i64,
    pub account_id: String,
}

/// Why no token can be served. Messages are for people and never contain a
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not logged in to {provider}: run `pi-authctl login`")]
    NotLoggedIn { provider: String },
    #[error("{detail}")]
    StoreCorrupt { detail: String },
    #[error("{detail}")]
    StoreUnavailable { detail: String },
    #[error(
        "the {provider} access token {when}, and the daemon cannot refresh it yet; \
         run pi so it refreshes, or `pi-authctl login`"
    )]
    Expiring { provider: String, when: String },
    #[error("the {provider} entry in auth.json is unusable: {reason}")]
    Unusable { provider: String, reason: String },
}

/// Owns the credentials for every provider in the store.
#[derive(Debug)]
pub struct Broker {
    store: FileStore,
    view: watch::Sender<Arc<View>>,
}

impl Broker {
    /// Creates a broker with an empty view; call [`Broker::reload`] to fill it.
    pub fn new(store: FileStore) -> Broker {
        let empty = View {
            health: StoreHealth::Missing,
            detail: String::new(),
            entries: Vec::new(),
        };
        Broker {
            store,
            view: watch::Sender::new(Arc::new(empty)),
        }
    }

    pub fn store(&self) -> &FileStore {
        &self.store
    }

    /// The current snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Re-reads the store and publishes a new snapshot.
    pub async fn reload(&self) {
        let loaded = self.store.load().await;
        let previous = self.view();
        let next = match loaded {
            Ok(Some(doc)) => view_of(&doc, StoreHealth::Ok, String::new()),
            Ok(None) => View {
                health: StoreHealth::Missing,
                detail: format!(
                    "{} does not exist yet: run `pi-authctl login`",
                    self.store.path().display()
                ),
                entries: Vec::new(),
            },
            Err(e) => {
                let health = match e {
                    StoreError::Corrupt { .. } => StoreHealth::Corrupt,
                    _ => StoreHealth::Unreadable,
                };
                tracing::warn!(error = %e, "cannot use the credential store; keeping the last good credentials");
                View {
                    health,
                    detail: e.to_string(),
                    entries: previous.entries.clone(),
                }
            }
        };
        tracing::debug!(
            health = ?next.health,
            providers = next.entries.len(),
            "credential store loaded"
        );
        self.view.send_replace(Arc::new(next));
    }

    /// A token for `provider` valid for at least `min_valid_secs` (capped at
    /// [`MAX_MIN_VALID_SECS`]). Reads memory only.
    pub fn get_token(&self, provider: &str, min_valid_secs: u32) -> Result<Grant, TokenError> {
        let view = self.view.borrow();
        grant_from(&view, provider, min_valid_secs, now_ms())
    }
}

/// Builds a snapshot of a parsed document.
pub fn view_of(doc: &Document, health: StoreHealth, detail: String) -> View {
    let entries = doc
        .providers()
        .filter_map(|p| {
            let credential = doc.credential(p)?;
            let claims = match &credential {
                Credential::OAuth(c) => oauth::read_claims(c.access.expose()).ok(),
                _ => None,
            };
            Some((p.to_owned(), Entry { credential, claims }))
        })
        .collect();
    View {
        health,
        detail,
        entries,
    }
}

/// The GetToken decision, as a pure function of a snapshot and the time.
pub fn grant_from(
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
            StoreHealth::Ok | StoreHealth::Missing => TokenError::NotLoggedIn {
                provider: provider.to_owned(),
            },
        });
    };
    match &entry.credential {
        Credential::OAuth(c) => {
            let wanted_ms = i64::from(min_valid_secs.min(MAX_MIN_VALID_SECS)) * 1000;
            let remaining_ms = c.expires_ms - now_ms;
            if remaining_ms <= wanted_ms {
                let when = if remaining_ms <= 0 {
                    format!("expired {}s ago", (-remaining_ms) / 1000)
                } else {
                    format!(
                        "expires in {}s, sooner than the {}s asked",
                        remaining_ms / 1000,
                        wanted_ms / 1000
                    )
                };
                return Err(TokenError::Expiring {
                    provider: provider.to_owned(),
                    when,
                });
            }
            let account_id = c
                .account_id
                .clone()
                .or_else(|| entry.claims.as_ref().and_then(|cl| cl.account_id.clone()))
                .unwrap_or_default();
            Ok(Grant {
                provider: provider.to_owned(),
                access: c.access.clone(),
                expires_at_ms: c.expires_ms,
                account_id,
            })
        }
        Credential::ApiKey(key) => Ok(Grant {
            provider: provider.to_owned(),
            access: key.clone(),
            expires_at_ms: 0,
            account_id: String::new(),
        }),
        Credential::Unusable { reason } => Err(TokenError::Unusable {
            provider: provider.to_owned(),
            reason: reason.clone(),
        }),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod report;

pub use report::{CredentialKind, ProviderReport, ProviderState, report};

#[cfg(test)]
mod tests;
