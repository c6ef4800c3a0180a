//! Pure OAuth logic for the `openai-codex` provider: reading JWT claims now;
//! PKCE, authorize URLs and paste parsing join it with login.
//!
//! Nothing here performs I/O, so every rule is unit-tested beside its code.

mod jwt;

pub use jwt::{Claims, ClaimsError, read_claims};
