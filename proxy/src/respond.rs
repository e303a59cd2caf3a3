//! Every answer the proxy makes itself, in one place: refusals (denied, unauthenticated) and
//! errors ([`ProxyError`]). A gRPC caller gets a trailers-only answer (HTTP 200 with
//! `grpc-status` and `grpc-message`), anyone else the HTTP status with the message as text;
//! an error also carries `x-signet-error` with a short reason, so an app (or an operator
//! reading an access log) can tell the proxy's answers from the upstream's.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::pool::Body;
use crate::traffic::breaker::Limit;

/// The header that says why the proxy, not the upstream, answered with an error.
pub const PROXY_ERROR: &str = "x-signet-error";

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The upstream has no endpoints.
    #[error("no endpoints")]
    NoEndpoints,
    /// No attempt reached an endpoint, or the connection broke.
    #[error("upstream unavailable")]
    Unavailable,
    /// The upstream's TLS handshake failed (its identity was refused, say).
    #[error("upstream handshake failed: {reason}")]
    Handshake {
        /// Why, as in `signet_proxy_handshake_failures_total`.
        reason: &'static str,
    },
    /// The request's timeout (the route's, or the caller's `grpc-timeout`) ran out.
    #[error("upstream did not answer in time")]
    Timeout,
    /// A circuit-breaker limit was full.
    #[error("too many {} in flight to the upstream", .limit.name())]
    Overflow {
        /// Which one.
        limit: Limit,
    },
    /// The request could not be read or was malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request body is over the limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// The local app refused the connection or broke it.
    #[error("the app is unavailable")]
    AppUnavailable,
    /// The local app did not answer within the request timeout.
    #[error("the app did not answer in time")]
    AppTimeout,
}

impl ProxyError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoEndpoints | ProxyError::Overflow { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Unavailable | ProxyError::Handshake { .. } | ProxyError::AppUnavailable => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout | ProxyError::AppTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The gRPC status code for the same failure.
    pub fn grpc_status(&self) -> &'static str {
        match self {
            ProxyError::Timeout | ProxyError::AppTimeout => "4",
            ProxyError::BadRequest(_) => "3",
            ProxyError::BodyTooLarge => "8",
            ProxyError::NoEndpoints
            | ProxyError::Unavailable
            | ProxyError::Handshake { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::AppUnavailable => "14",
        }
    }

    /// The `x-signet-error` value: one word per kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::NoEndpoints => "no-endpoints",
            ProxyError::Unavailable => "unavailable",
            ProxyError::Handshake { .. } => "upstream-tls",
            ProxyError::Timeout | ProxyError::AppTimeout => "timeout",
            ProxyError::Overflow { .. } => "overflow",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::BodyTooLarge => "too-large",
            ProxyError::AppUnavailable => "app-unavailable",
        }
    }

    /// The answer to send.
    pub fn respond(&self, grpc: bool) -> Response<Body> {
        let mut r = refusal(grpc, (self.status(), self.grpc_status()), &self.to_string());
        r.headers_mut()
            .insert(PROXY_ERROR, HeaderValue::from_static(self.reason()));
        r
    }
}

/// The `grpc-status` text of `code` (0 to 16; anything else is UNKNOWN, 2).
pub fn grpc_code(code: u32) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| CODES.get(c))
        .copied()
        .unwrap_or("2")
}

/// A refusal: for gRPC, `grpc-status` `code.1` with `message`; otherwise status `code.0`
/// with `message` as plain text.
pub fn refusal(grpc: bool, code: (StatusCode, &'static str), message: &str) -> Response<Body> {
    let mut r = if grpc {
        Response::new(full(Bytes::new()))
    } else {
        let mut r = Response::new(full(format!("{message}\n")));
        *r.status_mut() = code.0;
        r
    };
    let headers = r.headers_mut();
    if grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(code.1));
        headers.insert("grpc-message", visible(message));
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

/// A header value made only of visible ASCII.
pub fn visible(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("unprintable"))
}

/// A whole body.
pub fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Whether a request is a gRPC call (its answer must carry `grpc-status`).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_answer_http_and_grpc_callers_in_their_terms() {
        let e = ProxyError::Timeout;
        let http = e.respond(false);
        assert_eq!(http.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(http.headers()[PROXY_ERROR], "timeout");
        let grpc = e.respond(true);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "4");
        assert_eq!(grpc.headers()[PROXY_ERROR], "timeout");
        let overflow = ProxyError::Overflow {
            limit: Limit::Requests,
        };
        assert_eq!(
            overflow.respond(false).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(overflow.respond(true).headers()["grpc-status"], "14");
        assert_eq!(
            overflow.to_string(),
            "too many requests in flight to the upstream"
        );
        assert_eq!(visible("a\nb").to_str().unwrap(), "a?b");
    }
}
