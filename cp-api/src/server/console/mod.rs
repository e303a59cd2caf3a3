//! The web console at `/ui`, on the operator API's listener: server-rendered HTML, a small
//! stylesheet and one script, embedded in the binary.
//!
//! It is the API seen through a browser, with no powers of its own: a page is an operator
//! reading a collection, and a button is an operator action, each authorized by the same
//! Cedar operator policies and recorded in the same audit chain as the REST call it
//! mirrors (both run the same code). What changes in a browser is how the operator is
//! known: sign-in (a bearer token, the TLS client certificate, or a one-time code from
//! `meshctl console`) opens a session whose cookie is `HttpOnly`, `Secure`,
//! `SameSite=Strict`, and short-lived; every form carries the session's CSRF token; every
//! response forbids framing and inline script.

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq as _;

use crate::server::operators::Act;
use crate::server::rest::{Api, ApiError, Operator};

mod assets;
mod audit_page;
mod ca_page;
mod diff;
mod explain_page;
mod html;
mod overview;
mod policies_page;
mod services_page;
pub mod session;
mod sign_in;
mod topology;

pub use sign_in::mint_code;

/// The session cookie. `__Host-` makes browsers refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`: no other host or path can set or shadow it.
const SESSION_COOKIE: &str = "__Host-signet-session";
/// Largest form body the console reads.
const MAX_FORM: usize = 64 * 1024;

/// What every console response carries: no inline or foreign script or style, no framing,
/// no caching, no referrer beyond this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (merged into the API's router, whose fallback answers any other
/// path).
pub fn router() -> Router<Api> {
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(overview::page))
        .route("/ui/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/ui/sign-out", post(sign_in::sign_out))
        .route("/ui/topology", get(topology::page))
        .route("/ui/services", get(services_page::list))
        .route("/ui/services/{namespace}/{name}", get(services_page::one))
        .route("/ui/policies", get(policies_page::history))
        .route("/ui/policies/diff", get(policies_page::diff))
        .route("/ui/policies/explain", get(explain_page::page))
        .route("/ui/policies/rollback", post(policies_page::rollback))
        .route("/ui/audit", get(audit_page::page))
        .route("/ui/audit/rows", get(audit_page::rows))
        .route("/ui/audit/export", get(audit_page::export))
        .route("/ui/ca", get(ca_page::page))
        .route("/ui/assets/{file}", get(assets::serve))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with a form's POST, and the
    // origin check below could not tell the console's own forms from anyone's.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// An HTML response.
struct Page;

impl Page {
    fn ok(markup: String) -> Response {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup).into_response()
    }

    fn error(status: StatusCode, message: &str) -> Response {
        let body = format!(
            "<p class=\"error\" role=\"alert\" data-testid=\"error\">{}</p>\
             <p><a href=\"/ui\">Back to the overview</a></p>",
            html::esc(message)
        );
        let title = status.canonical_reason().unwrap_or("Error");
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html::page(title, html::Nav::None, None, &body),
        )
            .into_response()
    }
}

/// A request refused or failed, shown as an error page with its status.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Page::error(self.status, &self.message)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        let mut message = e.message;
        for p in &e.problems {
            message.push_str("\n- ");
            message.push_str(p);
        }
        Self {
            status: e.status,
            message,
        }
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        Refusal::from(e).into_response()
    }
}

/// A page's outcome: markup, or an error shown as a page with its status.
type PageResult = Result<Response, Refusal>;

/// A signed-in operator, from the session cookie. A browser without a live session is sent
/// to sign in (GET) or refused (anything else).
#[derive(Debug)]
struct Signed {
    op: Operator,
    session: session::Session,
    /// The request's URI (its authority is this host, under HTTP/2).
    uri: Uri,
}

impl Signed {
    fn viewer<'a>(&'a self, api: &'a Api) -> html::Viewer<'a> {
        html::Viewer {
            operator: &self.op.id,
            csrf: &self.session.csrf,
            trust_domain: api.hub.trust_domain.as_str(),
        }
    }

    /// Authorizes and records this operator reading `collection`, as the API does.
    async fn read(&self, api: &Api, collection: &str) -> Result<(), Refusal> {
        api.authorize(&self.op, Act::Read { collection })
            .await
            .map_err(Refusal::from)
    }

    /// Whether the operator policies would allow `act`: decides which controls a page
    /// shows, and is neither recorded nor trusted (the action itself is authorized again).
    fn may(&self, api: &Api, act: &Act<'_>) -> bool {
        api.operators.decide(&self.op.id, act).allowed
    }

    /// Refuses a state change without this session's CSRF token, or sent from another site.
    fn check_form(&self, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
        same_origin(headers, &self.uri)?;
        if bool::from(csrf.as_bytes().ct_eq(self.session.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong; reload the page and try again",
            ))
        }
    }
}

/// Refuses a request a browser marked as sent from another site (`Sec-Fetch-Site`), or
/// whose `Origin` is not this host (HTTP/2's `:authority`, else `Host`).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    let refused = || {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "a request from another site was refused",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(refused());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .ok_or_else(refused)?;
        if origin.to_str().ok() != Some(&format!("https://{host}")) {
            return Err(refused());
        }
    }
    Ok(())
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

impl FromRequestParts<Api> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Response> {
        let found = cookie(&parts.headers, SESSION_COOKIE).and_then(|c| api.console.get(c));
        match found {
            Some(session) => Ok(Self {
                op: Operator {
                    id: session.operator.clone(),
                },
                session,
                uri: parts.uri.clone(),
            }),
            None if parts.method == Method::GET => {
                Err((StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/sign-in")]).into_response())
            }
            None => Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "sign in first (the session has ended or never began)",
            )
            .into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let path = Uri::from_static("/ui/sign-in");
        let h2 = Uri::from_static("https://127.0.0.1:8443/ui/sign-in");
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), &path).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")]), &path).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")]), &path).is_err());
        let host = ("host", "127.0.0.1:8443");
        let good = ("origin", "https://127.0.0.1:8443");
        assert!(same_origin(&headers(&[host, good]), &path).is_ok());
        // HTTP/2: the authority is in the URI, and there is no Host header.
        assert!(same_origin(&headers(&[good]), &h2).is_ok());
        assert!(same_origin(&headers(&[("origin", "https://evil.example")]), &h2).is_err());
        assert!(same_origin(&headers(&[host, ("origin", "https://evil.example")]), &path).is_err());
        assert!(same_origin(&headers(&[host, ("origin", "null")]), &path).is_err());
        assert!(same_origin(&headers(&[good]), &path).is_err());
        // Neither header (a non-browser client): the CSRF token alone decides.
        assert!(same_origin(&headers(&[host]), &path).is_ok());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = headers(&[(
            "cookie",
            "a=1; __Host-signet-session=abc; x__Host-signet-session=no",
        )]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
