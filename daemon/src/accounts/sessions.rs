//! Which account each session is pinned to, bounded: a session is a
//! client's word (pi's session id), so the map never grows without end.

use std::collections::HashMap;

/// How many sessions are remembered; the least recently served goes
/// first.
pub const MAX_SESSIONS: usize = 4096;

/// Session id to account id, with a use counter for eviction.
#[derive(Debug, Default)]
pub struct Pins {
    map: HashMap<String, (String, u64)>,
    tick: u64,
}

impl Pins {
    /// The account `session` is pinned to.
    pub fn get(&mut self, session: &str) -> Option<String> {
        self.tick += 1;
        let tick = self.tick;
        let (account, used) = self.map.get_mut(session)?;
        *used = tick;
        Some(account.clone())
    }

    /// Pins `session` to `account`.
    pub fn set(&mut self, session: &str, account: &str) {
        self.tick += 1;
        if self.map.len() >= MAX_SESSIONS && !self.map.contains_key(session) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(s, _)| s.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map
            .insert(session.to_owned(), (account.to_owned(), self.tick));
    }

    /// Forgets every pin to `account` (it was removed).
    pub fn forget(&mut self, account: &str) {
        self.map.retain(|_, (a, _)| a != account);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_bounded_and_the_least_recent_goes_first() {
        let mut pins = Pins::default();
        for i in 0..MAX_SESSIONS {
            pins.set(&format!("s{i}"), "a");
        }
        assert_eq!(pins.get("s0").as_deref(), Some("a"), "s0 was just used");
        pins.set("new", "b");
        assert_eq!(pins.len(), MAX_SESSIONS);
        assert_eq!(pins.get("s1"), None, "the least recent went");
        assert_eq!(pins.get("s0").as_deref(), Some("a"));
        assert_eq!(pins.get("new").as_deref(), Some("b"));
        pins.forget("a");
        assert_eq!(pins.len(), 1);
    }
}
