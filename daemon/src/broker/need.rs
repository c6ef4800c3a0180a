//! What a caller of a refresh wants to be true afterwards, and whether it
//! is. Pure.

use super::View;

/// What a caller of the flight wants to be true afterwards.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// The token stays valid at least this long.
    ValidFor(i64),
    /// The scheduled time has come: satisfied if someone refreshed since.
    Scheduled,
    /// A token newer than this generation (a 401 on a token that looked
    /// valid).
    Newer(u64),
    /// A token newer than this generation, on the user's word (the Refresh
    /// RPC): an earlier attempt's failure is not shared, it is tried again.
    Forced(u64),
}

impl Need {
    pub fn satisfied(self, view: &View, now: i64) -> bool {
        let Some(cred) = view.codex() else {
            return false;
        };
        match self {
            Need::ValidFor(ms) => cred.expires_ms - now > ms.max(0),
            Need::Scheduled => view.next_refresh_ms().is_none_or(|at| at > now),
            Need::Newer(generation) | Need::Forced(generation) => view.generation > generation,
        }
    }
}
