//! What a user pastes when the browser cannot reach the callback: the
//! redirect URL from the address bar, `code#state`, a query string, or a
//! bare code (docs/PROTOCOL.md §1).

use crate::secret::Secret;

/// A code (and maybe a state) taken from a paste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pasted {
    pub code: Secret<String>,
    pub state: Option<String>,
}

/// Why a paste was refused. Messages never repeat the paste.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    #[error("nothing was pasted; paste the whole URL from the browser's address bar, or the code")]
    Empty,
    #[error("the pasted text has no code; paste the whole URL from the browser's address bar")]
    NoCode,
    #[error("the sign-in was refused: {0}")]
    Denied(String),
    #[error(
        "State mismatch: this URL belongs to a different login attempt; paste the URL from the current one"
    )]
    StateMismatch,
}

/// Parses a paste, then checks its state (if any) against `expected`.
pub fn parse_paste(input: &str, expected_state: &str) -> Result<Pasted, PasteError> {
    let pasted = parse(input)?;
    match &pasted.state {
        Some(state) if state != expected_state => Err(PasteError::StateMismatch),
        _ => Ok(pasted),
    }
}

fn parse(input: &str) -> Result<Pasted, PasteError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(PasteError::Empty);
    }
    // 1. A full URL: take code and state from its query.
    if let Ok(url) = url::Url::parse(text)
        && matches!(url.scheme(), "http" | "https")
    {
        return from_query(url.query().unwrap_or(""));
    }
    // 3. A query string, with or without a leading `?`.
    let query = text.strip_prefix('?').unwrap_or(text);
    if query.contains("code=") || query.contains("error=") || query.contains("state=") {
        return from_query(query);
    }
    // 2. code#state.
    if let Some((code, state)) = text.split_once('#') {
        if code.is_empty() {
            return Err(PasteError::NoCode);
        }
        return Ok(Pasted {
            code: Secret::from(code),
            state: (!state.is_empty()).then(|| state.to_owned()),
        });
    }
    // 4. A bare code.
    if text.chars().any(char::is_whitespace) {
        return Err(PasteError::NoCode);
    }
    Ok(Pasted {
        code: Secret::from(text),
        state: None,
    })
}

fn from_query(query: &str) -> Result<Pasted, PasteError> {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "code" if !v.is_empty() => code = Some(v.into_owned()),
            "state" if !v.is_empty() => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(error) = error {
        return Err(PasteError::Denied(description.unwrap_or(error)));
    }
    let code = code.ok_or(PasteError::NoCode)?;
    Ok(Pasted {
        code: Secret::new(code),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ST: &str = "0123456789abcdef0123456789abcdef";

    fn code(p: Result<Pasted, PasteError>) -> (String, Option<String>) {
        let p = p.unwrap();
        (p.code.expose().clone(), p.state)
    }

    #[test]
    fn accepts_every_form() {
        let url = format!("http://localhost:1455/auth/callback?code=abc&state={ST}");
        assert_eq!(code(parse_paste(&url, ST)), ("abc".into(), Some(ST.into())));
        assert_eq!(code(parse_paste(&format!("  {url}\n"), ST)).0, "abc");
        assert_eq!(
            code(parse_paste(&format!("abc#{ST}"), ST)),
            ("abc".into(), Some(ST.into()))
        );
        assert_eq!(
            code(parse_paste(&format!("code=abc&state={ST}"), ST)).0,
            "abc"
        );
        assert_eq!(
            code(parse_paste(&format!("?code=abc&state={ST}"), ST)).0,
            "abc"
        );
        assert_eq!(code(parse_paste("abc", ST)), ("abc".into(), None));
        assert_eq!(code(parse_paste("ac_x-Y.z", ST)).0, "ac_x-Y.z");
    }

    #[test]
    fn decodes_percent_encoding_in_queries() {
        let p = parse_paste(&format!("https://x/cb?code=a%2Bb%3D&state={ST}"), ST).unwrap();
        assert_eq!(p.code.expose(), "a+b=");
    }

    #[test]
    fn refuses_a_foreign_state() {
        let other = "ffffffffffffffffffffffffffffffff";
        for input in [
            format!("http://localhost:1455/auth/callback?code=abc&state={other}"),
            format!("abc#{other}"),
            format!("code=abc&state={other}"),
        ] {
            assert_eq!(
                parse_paste(&input, ST),
                Err(PasteError::StateMismatch),
                "{input}"
            );
        }
        assert!(
            PasteError::StateMismatch
                .to_string()
                .starts_with("State mismatch")
        );
    }

    #[test]
    fn refuses_empty_and_codeless_pastes() {
        assert_eq!(parse_paste("", ST), Err(PasteError::Empty));
        assert_eq!(parse_paste(" \n\t", ST), Err(PasteError::Empty));
        assert_eq!(
            parse_paste("http://localhost:1455/auth/callback", ST),
            Err(PasteError::NoCode)
        );
        assert_eq!(
            parse_paste(&format!("state={ST}"), ST),
            Err(PasteError::NoCode)
        );
        assert_eq!(parse_paste("#state", ST), Err(PasteError::NoCode));
        assert_eq!(parse_paste("two words", ST), Err(PasteError::NoCode));
    }

    #[test]
    fn reports_a_denial() {
        let e = parse_paste("http://localhost:1455/auth/callback?error=access_denied&error_description=User+said+no", ST)
            .unwrap_err();
        assert_eq!(e, PasteError::Denied("User said no".into()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any input: no panic, and an accepted paste never carries a
        /// foreign state.
        #[test]
        fn any_paste_is_judged_safely(input in "\\PC{0,200}") {
            if let Ok(p) = parse_paste(&input, ST) {
                proptest::prop_assert!(p.state.is_none() || p.state.as_deref() == Some(ST));
                proptest::prop_assert!(!p.code.expose().is_empty());
            }
        }

        /// URL-shaped input with arbitrary query values.
        #[test]
        fn redirect_urls_round_trip(code in "[A-Za-z0-9_.~-]{1,40}", wrong in any::<bool>()) {
            let state = if wrong { "ffffffffffffffffffffffffffffffff" } else { ST };
            let r = parse_paste(&format!("http://localhost:1455/auth/callback?code={code}&state={state}"), ST);
            if wrong {
                proptest::prop_assert_eq!(r, Err(PasteError::StateMismatch));
            } else {
                let got = r.unwrap();
                proptest::prop_assert_eq!(got.code.expose(), &code);
            }
        }
    }

    use proptest::prelude::any;

    #[test]
    fn errors_never_repeat_the_code() {
        let e = parse_paste("http://x/?code=secretcode&state=wrong", ST).unwrap_err();
        assert!(!e.to_string().contains("secretcode"));
    }
}
