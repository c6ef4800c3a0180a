//! Pure OAuth logic for the `openai-codex` provider: JWT claims, token
//! responses and error classification; PKCE, authorize URLs and paste
//! parsing join it with login.
//!
//! Nothing here performs I/O, so every rule is unit-tested beside its code.

mod jwt;
mod paste;
mod pkce;
mod token;

pub use jwt::{Claims, ClaimsError, read_claims};
pub use paste::{PasteError, parse_paste};
pub use pkce::{Pkce, authorize_url, new_state, redirect_uri, start_uri};
pub use token::{
    Failure, TokenResponse, classify, error_fields, parse_token_response, retry_after_ms,
};
