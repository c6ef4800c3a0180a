//! Which account serves a session. Pure.
//!
//! * A session keeps its account (its pin) while that account has room,
//!   which keeps the backend's prompt cache warm.
//! * Otherwise the preferred account (`pi-authctl accounts use`) serves,
//!   while it has room.
//! * Otherwise the account with the most headroom, keeping a reserve: one
//!   at or above the reserve threshold is used only when no other is below
//!   it. Ties go to the earlier account (the active one is first).
//! * A limited account is skipped until its reset, pinned or preferred.
//! * When every usable account is limited, the earliest reset is the
//!   answer.

/// What is known of one account when choosing.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    /// Logged in, and its refresh token is not dead or in doubt.
    pub usable: bool,
    /// Limited until this time (epoch seconds); `None`: it has room.
    pub limited_until: Option<i64>,
    /// The fullest window's use in percent; `None` when unknown (taken
    /// as unused).
    pub used_percent: Option<f64>,
}

/// The default reserve: an account at 95 % of either window is used only
/// when no other has room.
pub const DEFAULT_RESERVE_PERCENT: f64 = 95.0;

/// The outcome of a choice.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Account(String),
    /// Every usable account is limited; the earliest reset, if known.
    AllLimited {
        resets_at: Option<i64>,
    },
    /// No account is usable (not logged in, or every login must be
    /// renewed): the active account's own error says what to do.
    NoneUsable,
}

/// Chooses among `candidates` (the active one first).
pub fn choose(
    candidates: &[Candidate<'_>],
    pinned: Option<&str>,
    preferred: Option<&str>,
    reserve_percent: f64,
) -> Choice {
    let usable: Vec<&Candidate<'_>> = candidates.iter().filter(|c| c.usable).collect();
    if usable.is_empty() {
        return Choice::NoneUsable;
    }
    let open: Vec<&Candidate<'_>> = usable
        .iter()
        .copied()
        .filter(|c| c.limited_until.is_none())
        .collect();
    if open.is_empty() {
        return Choice::AllLimited {
            resets_at: usable.iter().filter_map(|c| c.limited_until).min(),
        };
    }
    let named = |id: Option<&str>| id.and_then(|id| open.iter().find(|c| c.id == id));
    if let Some(c) = named(pinned).or_else(|| named(preferred)) {
        return Choice::Account(c.id.to_owned());
    }
    let used = |c: &Candidate<'_>| c.used_percent.unwrap_or(0.0);
    let below: Vec<&Candidate<'_>> = open
        .iter()
        .copied()
        .filter(|c| used(c) < reserve_percent)
        .collect();
    let pool = if below.is_empty() { &open } else { &below };
    let best = pool
        .iter()
        .copied()
        .reduce(|best, c| if used(c) < used(best) { c } else { best });
    match best {
        Some(c) => Choice::Account(c.id.to_owned()),
        None => Choice::NoneUsable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, used: Option<f64>, limited_until: Option<i64>) -> Candidate<'_> {
        Candidate {
            id,
            usable: true,
            limited_until,
            used_percent: used,
        }
    }

    fn pick(cands: &[Candidate<'_>], pinned: Option<&str>, preferred: Option<&str>) -> Choice {
        choose(cands, pinned, preferred, DEFAULT_RESERVE_PERCENT)
    }

    fn account(id: &str) -> Choice {
        Choice::Account(id.into())
    }

    #[test]
    fn a_new_session_gets_the_most_headroom_and_ties_go_to_the_active_one() {
        let cands = [c("a", Some(60.0), None), c("b", Some(20.0), None)];
        assert_eq!(pick(&cands, None, None), account("b"));
        let unknown = [c("a", None, None), c("b", None, None)];
        assert_eq!(pick(&unknown, None, None), account("a"));
    }

    #[test]
    fn the_reserve_is_used_only_when_nothing_else_has_room() {
        let cands = [c("a", Some(96.0), None), c("b", Some(97.0), None)];
        assert_eq!(pick(&cands, None, None), account("a"), "both in reserve");
        let cands = [c("a", Some(96.0), None), c("b", Some(94.0), None)];
        assert_eq!(pick(&cands, None, None), account("b"));
    }

    #[test]
    fn a_pin_holds_while_its_account_has_room_even_past_the_reserve() {
        let cands = [c("a", Some(10.0), None), c("b", Some(97.0), None)];
        assert_eq!(pick(&cands, Some("b"), None), account("b"));
        let limited = [c("a", Some(10.0), None), c("b", Some(100.0), Some(900))];
        assert_eq!(pick(&limited, Some("b"), None), account("a"), "moved");
    }

    #[test]
    fn the_preference_wins_over_headroom_until_its_account_is_limited() {
        let cands = [c("a", Some(10.0), None), c("b", Some(80.0), None)];
        assert_eq!(pick(&cands, None, Some("b")), account("b"));
        assert_eq!(
            pick(&cands, Some("a"), Some("b")),
            account("a"),
            "a pin first"
        );
        let limited = [c("a", Some(10.0), None), c("b", Some(80.0), Some(5))];
        assert_eq!(pick(&limited, None, Some("b")), account("a"));
        assert_eq!(pick(&cands, None, Some("gone")), account("a"));
    }

    #[test]
    fn all_limited_says_the_earliest_reset_and_unusable_ones_never_serve() {
        let cands = [c("a", None, Some(700)), c("b", None, Some(500))];
        assert_eq!(
            pick(&cands, None, None),
            Choice::AllLimited {
                resets_at: Some(500)
            }
        );
        let mut dead = c("b", Some(0.0), None);
        dead.usable = false;
        assert_eq!(
            pick(&[c("a", Some(99.0), Some(700)), dead.clone()], None, None),
            Choice::AllLimited {
                resets_at: Some(700)
            }
        );
        assert_eq!(pick(&[dead], None, Some("b")), Choice::NoneUsable);
        assert_eq!(pick(&[], None, None), Choice::NoneUsable);
    }
}
