//! A provider's state by name, for people ("needs login") and, with `_`
//! for spaces, for JSON. Pure.

use piauth_client::proto::v1 as pb;

/// The name of a `ProviderState`.
pub fn state_name(state: i32) -> &'static str {
    match pb::ProviderState::try_from(state).unwrap_or_default() {
        pb::ProviderState::Unspecified => "unusable",
        pb::ProviderState::NotLoggedIn => "not logged in",
        pb::ProviderState::Valid => "valid",
        pb::ProviderState::Expired => "expired",
        pb::ProviderState::Refreshing => "refreshing",
        pb::ProviderState::NeedsLogin => "needs login",
        pb::ProviderState::Degraded => "degraded",
        pb::ProviderState::Static => "api key",
    }
}
