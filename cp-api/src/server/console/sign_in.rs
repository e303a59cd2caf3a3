//! Signing in and out, and the one-time codes `meshctl console` asks for.
//!
//! Sign-in itself is a state change a hostile page could try to make (signing a victim's
//! browser into the attacker's account), so its form carries a token from a short-lived
//! cookie set with the form (double submit), and cross-site requests are refused.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::html::{self, Nav, esc};
use super::session::{self, Refused};
use super::{SESSION_COOKIE, Signed, cookie, same_origin};
use crate::server::operators::Act;
use crate::server::rest::{Api, ApiError, Operator};
use crate::server::tls::Peer;

/// The sign-in form's own cookie (double submit against login CSRF).
const SIGN_IN_COOKIE: &str = "__Host-signet-sign-in";

fn refused(e: &Refused) -> ApiError {
    let status = match e {
        Refused::Full => StatusCode::SERVICE_UNAVAILABLE,
        Refused::NoRandom => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// `POST /v1/console/sign-in-codes`: a one-time code that signs a browser in as the
/// calling operator (who must be allowed to `read` the `console`).
pub async fn mint_code(
    State(api): State<Api>,
    op: Operator,
) -> Result<Json<crate::model::SignInCode>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "console",
        },
    )
    .await?;
    let code = api
        .console
        .code_for(op.id.clone())
        .map_err(|e| refused(&e))?;
    Ok(Json(crate::model::SignInCode {
        // In the fragment: browsers never send it, so no log or proxy on the way sees it.
        path: format!("/ui/sign-in#code={code}"),
        expires_in_seconds: session::CODE_LIFETIME.as_secs(),
    }))
}

/// `GET /ui/sign-in`.
pub(super) async fn form(State(api): State<Api>, peer: Option<Extension<Peer>>) -> Response {
    match session::random_token() {
        Ok(token) => render(
            &api,
            peer.as_ref().map(|p| &p.0),
            &token,
            None,
            StatusCode::OK,
        ),
        Err(e) => Response::from(refused(&e)),
    }
}

fn render(
    api: &Api,
    peer: Option<&Peer>,
    token: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden = format!(
        "<input type=\"hidden\" name=\"sign_in\" value=\"{}\">",
        esc(token)
    );
    let mut body = String::new();
    if let Some(p) = problem {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\" data-testid=\"error\">{}</p>",
            esc(p)
        ));
    }
    body.push_str(&format!(
        "<p>Sign in to the <strong>{}</strong> control plane as an operator. What you may see and \
         do here is what the operator policies let you do through the API.</p>",
        esc(api.hub.trust_domain.as_str())
    ));
    if let Some(cert) = peer.and_then(|p| p.certificate.as_ref()) {
        body.push_str(&format!(
            "<section><h2>Client certificate</h2><form method=\"post\" action=\"/ui/sign-in\">{hidden}\
             <input type=\"hidden\" name=\"method\" value=\"certificate\">\
             <button type=\"submit\">Continue as {}</button></form></section>",
            esc(cert.id.as_str())
        ));
    }
    body.push_str(&format!(
        "<section><h2>Operator token</h2><form method=\"post\" action=\"/ui/sign-in\" \
         data-testid=\"token-form\">{hidden}<input type=\"hidden\" name=\"method\" value=\"token\">\
         <label for=\"token\">Bearer token (SIGNET_TOKEN)</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
         <button type=\"submit\">Sign in</button></form></section>\
         <section><h2>One-time code</h2><p>Run <code>meshctl console</code> and open the link it \
         prints, or paste its code here.</p>\
         <form method=\"post\" action=\"/ui/sign-in\" id=\"code-form\">{hidden}\
         <input type=\"hidden\" name=\"method\" value=\"code\">\
         <label for=\"code\">Code</label>\
         <input id=\"code\" name=\"code\" type=\"text\" autocomplete=\"off\" required>\
         <button type=\"submit\">Sign in</button></form></section>"
    ));
    let cookie =
        format!("{SIGN_IN_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600");
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
        html::page("Sign in", Nav::None, None, &body),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    method: String,
    #[serde(default)]
    sign_in: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// `POST /ui/sign-in`.
pub(super) async fn submit(
    State(api): State<Api>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    let peer = peer.as_ref().map(|p| &p.0);
    let again = |problem: &str, status: StatusCode| match session::random_token() {
        Ok(token) => render(&api, peer, &token, Some(problem), status),
        Err(e) => Response::from(refused(&e)),
    };
    if let Err(r) = same_origin(&headers, &uri) {
        return r.into_response();
    }
    let Ok(Form(form)) = form else {
        return again("the sign-in form was malformed", StatusCode::BAD_REQUEST);
    };
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.sign_in.as_bytes())) {
        return again(
            "the sign-in form expired or came from elsewhere; sign in again",
            StatusCode::FORBIDDEN,
        );
    }
    let (operator, method) = match form.method.as_str() {
        "token" => {
            let token = form.token.unwrap_or_default();
            let found = match api
                .hub
                .store
                .operator_for_token(crate::server::rest::sha256(token.trim().as_bytes()))
                .await
            {
                Ok(found) => found.and_then(|id| id.parse().ok()),
                Err(e) => return Response::from(ApiError::from(e)),
            };
            (found, "token")
        }
        "certificate" => (
            peer.and_then(|p| p.certificate.as_ref())
                .filter(|c| c.is_current())
                .map(|c| c.id.clone()),
            "certificate",
        ),
        "code" => (
            api.console.redeem(form.code.unwrap_or_default().trim()),
            "code",
        ),
        _ => return again("unknown sign-in method", StatusCode::BAD_REQUEST),
    };
    let Some(id) = operator else {
        tracing::warn!(method, "console sign-in refused: unknown credentials");
        return again(
            match method {
                "token" => "that token is not an operator's",
                "certificate" => "no current client certificate was presented",
                _ => "that code is unknown, used or expired",
            },
            StatusCode::UNAUTHORIZED,
        );
    };
    let op = Operator { id };
    if let Err(e) = api
        .authorize(
            &op,
            Act::Read {
                collection: "console",
            },
        )
        .await
    {
        return Response::from(e);
    }
    let (cookie, _) = match api.console.open(op.id.clone(), method) {
        Ok(opened) => opened,
        Err(e) => return Response::from(refused(&e)),
    };
    tracing::info!(operator = %op.id, method, "console sign-in");
    let max_age = session::LIFETIME.as_secs();
    (
        StatusCode::SEE_OTHER,
        // Appended: two Set-Cookie headers, not one replacing the other.
        AppendHeaders([
            (header::LOCATION, "/ui".to_owned()),
            (
                header::SET_COOKIE,
                format!(
                    "{SESSION_COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
                ),
            ),
            (
                header::SET_COOKIE,
                format!("{SIGN_IN_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
        ]),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/sign-out`: ends the session here (the cookie is worthless from now on).
pub(super) async fn sign_out(
    State(api): State<Api>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(r) = signed.check_form(&headers, &csrf) {
        return r.into_response();
    }
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        api.console.close(c);
    }
    tracing::info!(operator = %signed.op.id, "console sign-out");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/sign-in".to_owned()),
            (
                header::SET_COOKIE,
                format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}
