//! What an attempt's result was, and whether a route's policy retries it.
//!
//! A request that never left (no connection, or HTTP/2 REFUSED_STREAM) is safe to send again
//! whatever its method. Once it was sent, only the policy's methods (the idempotent ones by
//! default) are retried, so a POST that reached the app is never sent twice. gRPC statuses
//! are read from a trailers-only answer (the status arrives with the headers, nothing was
//! streamed yet) and retried for any gRPC call: every call is a POST, and the policy names
//! codes that mean the call was not done.

use signet_traffic::doc::{Retry, RetryOn};

use super::outlier::Health;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer, with its gRPC status when it came with the headers.
    Answered {
        /// The HTTP status.
        status: u16,
        /// `grpc-status` in the headers.
        grpc: Option<u32>,
        /// Made up by the endpoint's proxy (`x-signet-error: injected`): a fault injected
        /// to test callers, which says nothing about the endpoint's health.
        injected: bool,
    },
    /// No connection: refused, unreachable, handshake failed. The request never left.
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM: the endpoint did not process the request.
    RefusedStream,
    /// The connection broke after the request was sent.
    Reset,
    /// The attempt ran out of its per-try timeout.
    TimedOut,
}

impl Outcome {
    /// The label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered { injected: true, .. } => "injected",
            Outcome::Answered { status, .. } if status >= 500 => "5xx",
            Outcome::Answered { status, .. } if status >= 400 => "4xx",
            Outcome::Answered { grpc: Some(c), .. } if c != 0 => "grpc-error",
            Outcome::Answered { .. } => "success",
            Outcome::ConnectFailure => "connect-failure",
            Outcome::RefusedStream => "refused-stream",
            Outcome::Reset => "reset",
            Outcome::TimedOut => "timeout",
        }
    }

    /// What it says about the endpoint's health, for outlier detection.
    pub fn health(self) -> Health {
        match self {
            Outcome::Answered { injected: true, .. } => Health::Success,
            Outcome::Answered {
                status: 502..=504, ..
            }
            | Outcome::ConnectFailure
            | Outcome::Reset
            | Outcome::TimedOut => Health::GatewayError,
            Outcome::Answered { status, .. } if status >= 500 => Health::ServerError,
            Outcome::Answered { .. } | Outcome::RefusedStream => Health::Success,
        }
    }
}

/// Whether `retry` sends a request with `method` (a gRPC call when `grpc`) again after
/// `outcome`.
pub fn retries(retry: &Retry, outcome: Outcome, method: &http::Method, grpc: bool) -> bool {
    let on = |what| retry.on.contains(&what);
    let sent_retryable = || retry.methods.iter().any(|m| m == method.as_str());
    match outcome {
        Outcome::ConnectFailure => on(RetryOn::ConnectFailure),
        Outcome::RefusedStream => on(RetryOn::RefusedStream),
        Outcome::Reset | Outcome::TimedOut => on(RetryOn::Reset) && sent_retryable(),
        Outcome::Answered {
            status, grpc: code, ..
        } => {
            if let Some(code) = code.filter(|_| grpc)
                && retry.grpc.iter().any(|c| c.code() == code)
            {
                return true;
            }
            sent_retryable()
                && ((on(RetryOn::GatewayError) && (502..=504).contains(&status))
                    || (on(RetryOn::ServerError) && status >= 500)
                    || retry.statuses.contains(&status))
        }
    }
}

/// Whether `retry` may send a request again after an attempt that consumed it (it reached
/// the endpoint, or HTTP/2 took it before refusing the stream), so a copy must be kept
/// before each attempt. A request that never left comes back from the pool and needs none:
/// the defaults (`connect-failure`, and `refused-stream` only over HTTP/1.1 where there are
/// no streams) copy nothing.
pub fn needs_copy(retry: &Retry, h2: bool) -> bool {
    !retry.statuses.is_empty()
        || !retry.grpc.is_empty()
        || retry.on.iter().any(|on| match on {
            RetryOn::ConnectFailure => false,
            RetryOn::RefusedStream => h2,
            RetryOn::Reset | RetryOn::GatewayError | RetryOn::ServerError => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use signet_traffic::doc::GrpcCode;

    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            grpc: None,
            injected: false,
        }
    }

    #[test]
    fn requests_that_never_left_are_retried_for_any_method() {
        let r = Retry::default();
        assert!(retries(&r, Outcome::ConnectFailure, &Method::POST, false));
        assert!(retries(&r, Outcome::RefusedStream, &Method::POST, false));
        // The defaults retry nothing that was sent.
        assert!(!retries(&r, Outcome::Reset, &Method::GET, false));
        assert!(!retries(&r, answered(503), &Method::GET, false));
    }

    #[test]
    fn a_copy_is_kept_only_when_a_consumed_request_may_be_sent_again() {
        let defaults = Retry::default();
        assert!(!needs_copy(&defaults, false));
        // HTTP/2 may take the request and then refuse the stream.
        assert!(needs_copy(&defaults, true));
        for r in [
            Retry {
                on: vec![RetryOn::ConnectFailure, RetryOn::GatewayError],
                ..Retry::default()
            },
            Retry {
                statuses: vec![429],
                ..Retry::default()
            },
            Retry {
                grpc: vec![GrpcCode::Unavailable],
                ..Retry::default()
            },
        ] {
            assert!(needs_copy(&r, false), "{r:?}");
        }
    }

    #[test]
    fn sent_requests_are_retried_only_for_the_policys_methods() {
        let r = Retry {
            on: vec![RetryOn::GatewayError, RetryOn::Reset],
            statuses: vec![409],
            ..Retry::default()
        };
        assert!(retries(&r, answered(503), &Method::GET, false));
        assert!(retries(&r, answered(409), &Method::PUT, false));
        assert!(retries(&r, Outcome::TimedOut, &Method::GET, false));
        assert!(!retries(&r, answered(500), &Method::GET, false));
        assert!(!retries(&r, answered(200), &Method::GET, false));
        assert!(
            !retries(&r, answered(503), &Method::POST, false),
            "a POST that was sent"
        );
        assert!(!retries(&r, Outcome::Reset, &Method::POST, false));
        let all = Retry {
            on: vec![RetryOn::ServerError],
            ..Retry::default()
        };
        assert!(retries(&all, answered(500), &Method::DELETE, false));
    }

    #[test]
    fn an_injected_fault_never_counts_against_the_endpoint_but_is_retried_as_asked() {
        let injected = Outcome::Answered {
            status: 503,
            grpc: None,
            injected: true,
        };
        assert_eq!(injected.health(), Health::Success);
        assert_eq!(answered(503).health(), Health::GatewayError);
        assert_eq!(injected.name(), "injected");
        // A route that retries 503s is being tested for exactly that.
        let r = Retry {
            on: vec![RetryOn::GatewayError],
            ..Retry::default()
        };
        assert!(retries(&r, injected, &Method::GET, false));
    }

    #[test]
    fn grpc_codes_are_retried_for_grpc_calls() {
        let r = Retry {
            grpc: vec![GrpcCode::Unavailable],
            ..Retry::default()
        };
        let unavailable = Outcome::Answered {
            status: 200,
            grpc: Some(14),
            injected: false,
        };
        assert!(retries(&r, unavailable, &Method::POST, true));
        assert!(!retries(
            &r,
            Outcome::Answered {
                status: 200,
                grpc: Some(13),
                injected: false,
            },
            &Method::POST,
            true
        ));
        assert!(
            !retries(&r, unavailable, &Method::POST, false),
            "not a gRPC call"
        );
    }

    #[test]
    fn outcomes_tell_outlier_detection_about_health() {
        assert_eq!(answered(503).health(), Health::GatewayError);
        assert_eq!(answered(500).health(), Health::ServerError);
        assert_eq!(answered(404).health(), Health::Success);
        assert_eq!(Outcome::ConnectFailure.health(), Health::GatewayError);
        assert_eq!(Outcome::TimedOut.name(), "timeout");
    }
}
