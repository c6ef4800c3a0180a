//! `Auth.Accounts`, `Auth.UseAccount` and `Auth.RemoveAccount`: the set of
//! ChatGPT accounts, proto out. Never a token.

use piauth_proto::v1 as pb;
use tonic::{Code, Status};

use super::error::{Reason, status};
use crate::accounts::{AccountInfo, Accounts, AccountsError};
use crate::broker::ProviderState;

/// Every account, the active one first.
pub fn list(accounts: &Accounts) -> pb::AccountsResponse {
    pb::AccountsResponse {
        accounts: accounts.list().into_iter().map(account).collect(),
    }
}

fn account(a: AccountInfo) -> pb::Account {
    pb::Account {
        account_id: a.account_id,
        email: a.email,
        plan: a.plan,
        active: a.active,
        state: state(a.state) as i32,
    }
}

/// A provider's state as the wire says it.
pub fn state(s: ProviderState) -> pb::ProviderState {
    match s {
        ProviderState::NotLoggedIn => pb::ProviderState::NotLoggedIn,
        ProviderState::Valid => pb::ProviderState::Valid,
        ProviderState::Expired => pb::ProviderState::Expired,
        ProviderState::Static => pb::ProviderState::Static,
        ProviderState::Unusable => pb::ProviderState::Unspecified,
        ProviderState::Refreshing => pb::ProviderState::Refreshing,
        ProviderState::NeedsLogin => pb::ProviderState::NeedsLogin,
        ProviderState::Degraded => pb::ProviderState::Degraded,
    }
}

/// The account id a request names; empty is a bad argument.
pub fn account_arg(id: &str) -> Result<&str, Status> {
    let id = id.trim();
    if id.is_empty() {
        return Err(status(
            Code::InvalidArgument,
            Reason::InvalidArgument,
            "name an account id: `pi-authctl accounts` lists them",
        ));
    }
    Ok(id)
}

/// Why a change of accounts was refused, as a status.
pub fn refused(e: AccountsError) -> Status {
    let (code, reason) = match &e {
        AccountsError::Unknown { .. } => (Code::NotFound, Reason::UnknownAccount),
        AccountsError::Unusable { .. } => (Code::FailedPrecondition, Reason::NeedsLogin),
        AccountsError::Shelf(_) => (Code::FailedPrecondition, Reason::StoreUnavailable),
        e if e.store_corrupt() => (Code::FailedPrecondition, Reason::StoreCorrupt),
        AccountsError::Account(_) | AccountsError::Logout { .. } => {
            (Code::Unavailable, Reason::StoreUnavailable)
        }
    };
    status(code, reason, e.to_string())
}
