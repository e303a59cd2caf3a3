//! The control plane's outbound HTTPS GETs (JWT providers' keys, federated trust domains'
//! bundles): a client that goes nowhere but HTTPS and follows no redirect, and a body read
//! against a size limit.

use std::time::Duration;

/// A client builder for HTTPS GETs within `timeout`, redirects refused.
pub fn https_client(timeout: Duration) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
}

/// GETs `url` as JSON; the body as text, refused past `max` bytes (`what` names it in
/// errors).
pub async fn get_json_text(
    client: &reqwest::Client,
    url: &str,
    max: usize,
    what: &str,
) -> Result<String, String> {
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {}", full_error(&e)))?;
    if !response.status().is_success() {
        return Err(format!("fetching {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {}", full_error(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("{url}: the {what} is over {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| format!("{url}: the {what} is not UTF-8"))
}

/// An error with its sources: reqwest's top-level message alone says little.
fn full_error(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
