//! pi's `auth.json` as a document: parse, read credentials, edit, serialize.
//!
//! The file is shared with pi and may hold providers and fields piauthd does
//! not know. So it is kept as an ordered JSON object and edited in place:
//! only the fields piauthd owns (`type`, `access`, `refresh`, `expires`,
//! `accountId`) of the one provider it writes ever change. Serialization
//! matches pi's `JSON.stringify(data, null, 2)`: two-space indent, no
//! trailing newline.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::secret::Secret;

/// Why the bytes of `auth.json` are not a credential document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not valid JSON (line {line}, column {column}: {kind})")]
    Syntax {
        line: usize,
        column: usize,
        kind: &'static str,
    },
    #[error("the file is JSON but not an object keyed by provider id")]
    NotAnObject,
}

/// An OAuth credential as pi stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCredential {
    pub access: Secret<String>,
    pub refresh: Secret<String>,
    /// Expiry of `access`, in milliseconds since the epoch.
    pub expires_ms: i64,
    /// The ChatGPT account id; pi writes it for `openai-codex` only.
    pub account_id: Option<String>,
}

/// One provider's entry in `auth.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    OAuth(OAuthCredential),
    ApiKey(Secret<String>),
    /// An entry piauthd cannot use (unknown `type`, missing fields). It is
    /// preserved untouched; `reason` says what is wrong, for Status.
    Unusable {
        reason: String,
    },
}

/// The parsed contents of `auth.json`.
#[derive(Clone, Default, PartialEq)]
pub struct Document {
    root: Map<String, Value>,
}

impl fmt::Debug for Document {
    /// Lists provider ids only: entries hold tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("providers", &self.root.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for Document {
    /// Wipes every string value (tokens, keys) before the memory is freed.
    fn drop(&mut self) {
        for value in self.root.values_mut() {
            wipe(value);
        }
    }
}

/// Overwrites the strings inside `value` with zeros, in place.
fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(fields) => fields.values_mut().for_each(wipe),
        _ => {}
    }
}

impl Document {
    /// Parses `auth.json`, tolerating a UTF-8 byte-order mark.
    pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Syntax {
            line: e.line(),
            column: e.column(),
            kind: match e.classify() {
                serde_json::error::Category::Eof => "unexpected end of file",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "invalid data",
                serde_json::error::Category::Io => "read error",
            },
        })?;
        match value {
            Value::Object(root) => Ok(Document { root }),
            mut other => {
                wipe(&mut other);
                Err(ParseError::NotAnObject)
            }
        }
    }

    /// The bytes pi would write: two-space indented JSON, no trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a Map of Values cannot fail.
        serde_json::to_vec_pretty(&self.root).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// Provider ids, in file order.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.root.keys().map(String::as_str)
    }

    /// The credential stored for `provider`, if any.
    pub fn credential(&self, provider: &str) -> Option<Credential> {
        self.root.get(provider).map(credential_from_value)
    }

    /// Stores an OAuth credential, keeping every other field of the entry and
    /// every other provider as they were.
    pub fn set_oauth(&mut self, provider: &str, cred: &OAuthCredential) {
        let entry = self
            .root
            .entry(provider.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(fields) = entry {
            fields.insert("type".into(), "oauth".into());
            for (key, secret) in [("access", &cred.access), ("refresh", &cred.refresh)] {
                if let Some(mut old) = fields.insert(key.into(), secret.expose().clone().into()) {
                    wipe(&mut old);
                }
            }
            fields.insert("expires".into(), cred.expires_ms.into());
            match &cred.account_id {
                Some(id) => {
                    fields.insert("accountId".into(), id.clone().into());
                }
                None => {
                    fields.remove("accountId");
                }
            }
        }
    }

    /// Removes a provider's entry. Returns whether there was one.
    pub fn remove(&mut self, provider: &str) -> bool {
        match self.root.shift_remove(provider) {
            Some(mut entry) => {
                wipe(&mut entry);
                true
            }
            None => false,
        }
    }
}

fn credential_from_value(value: &Value) -> Credential {
    let unusable = |reason: &str| Credential::Unusable {
        reason: reason.to_owned(),
    };
    let Some(fields) = value.as_object() else {
        return unusable("the entry is not a JSON object");
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("oauth") => {
            let text = |k: &str| fields.get(k).and_then(Value::as_str);
            let (Some(access), Some(refresh)) = (text("access"), text("refresh")) else {
                return unusable("the oauth entry lacks `access` or `refresh`");
            };
            let Some(expires_ms) = fields.get("expires").and_then(json_millis) else {
                return unusable("the oauth entry lacks a numeric `expires` in range");
            };
            Credential::OAuth(OAuthCredential {
                access: Secret::from(access),
                refresh: Secret::from(refresh),
                expires_ms,
                account_id: text("accountId").map(str::to_owned),
            })
        }
        Some("api_key") => match fields.get("key").and_then(Value::as_str) {
            Some(key) => Credential::ApiKey(Secret::from(key)),
            None => unusable("the api_key entry lacks `key`"),
        },
        Some(other) => Credential::Unusable {
            reason: format!("unknown credential type `{other}`"),
        },
        None => unusable("the entry has no `type`"),
    }
}

/// The latest expiry accepted: year 5138. Anything larger is corrupt, and
/// would overflow time arithmetic.
const MAX_EXPIRES_MS: i64 = 100_000_000_000_000;

/// `expires` is written by JavaScript, so it may be a float (`1.7e12`).
/// Unlike a peer's answer, pi's file never holds it as a string: pi would
/// not read one as a time, so neither does piauthd.
fn json_millis(v: &Value) -> Option<i64> {
    if !v.is_number() {
        return None;
    }
    crate::wire::Number::deserialize(v)
        .ok()?
        .whole()
        .filter(|ms| (0..=MAX_EXPIRES_MS).contains(ms))
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
