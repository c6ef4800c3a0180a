//! Malformed requests get statuses that say so.
//!
//! tonic answers a request body that is not valid protobuf with INTERNAL,
//! and one over the size limit with OUT_OF_RANGE. Neither tells a client
//! what happened: the first is the client's fault (INVALID_ARGUMENT), the
//! second a size limit (RESOURCE_EXHAUSTED). This layer rewrites exactly
//! those two answers, which tonic sends as trailers-only responses, so the
//! status sits in the response headers.

use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::Map;
use http::HeaderValue;
use tower::{Layer, Service};

/// Rewrites tonic's codec errors (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CodecErrorsLayer;

impl<S> Layer<S> for CodecErrorsLayer {
    type Service = CodecErrors<S>;

    fn layer(&self, inner: S) -> CodecErrors<S> {
        CodecErrors { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CodecErrors<S> {
    inner: S,
}

type Resp = http::Response<tonic::body::Body>;

/// The new `(grpc-status, grpc-message)` for a codec error, if it is one.
pub fn rewrite(status: &str, message: &str) -> Option<(&'static str, &'static str)> {
    let message = percent_decode(message);
    match status {
        "13" if message.starts_with("failed to decode Protobuf message") => {
            Some(("3", "the request is not a valid piauth.v1 message"))
        }
        "11" if message.starts_with("Error, decoded message length too large") => Some((
            "8",
            "the request is larger than the daemon accepts (16 MiB)",
        )),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.replace('+', "%2B").as_bytes())
        .next()
        .map(|(k, v)| {
            if v.is_empty() {
                k.into_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .unwrap_or_default()
}

fn fix<E>(result: Result<Resp, E>) -> Result<Resp, E> {
    result.map(|mut resp| {
        let headers = resp.headers_mut();
        let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some((code, text)) = status.and_then(|s| rewrite(s, message)) {
            headers.insert("grpc-status", HeaderValue::from_static(code));
            headers.insert("grpc-message", HeaderValue::from_static(text));
        }
        resp
    })
}

impl<S, B> Service<http::Request<B>> for CodecErrors<S>
where
    S: Service<http::Request<B>, Response = Resp>,
{
    type Response = Resp;
    type Error = S::Error;
    type Future = Map<S::Future, fn(Result<Resp, S::Error>) -> Result<Resp, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.inner.call(req).map(fix::<S::Error>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codec_errors_are_rewritten() {
        assert_eq!(
            rewrite("13", "failed%20to%20decode%20Protobuf%20message:%20x").map(|r| r.0),
            Some("3")
        );
        assert_eq!(
            rewrite(
                "11",
                "Error, decoded message length too large: found 1 bytes"
            )
            .map(|r| r.0),
            Some("8")
        );
        assert_eq!(rewrite("13", "something else"), None);
        assert_eq!(rewrite("11", "the token expires"), None);
        assert_eq!(rewrite("3", "failed to decode Protobuf message"), None);
    }
}
