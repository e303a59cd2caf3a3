//! Delivering export batches over HTTPS: Splunk's HTTP Event Collector and Elasticsearch's
//! bulk API. A batch counts as delivered only when the receiver says so (HEC `code` 0; bulk
//! items 200/201, or 409 for a document already there from an earlier, interrupted run), so
//! the cursor never moves past a record that was not accepted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Largest receiver answer read.
const MAX_ANSWER: usize = 16 << 20;
/// Time allowed for one batch to be delivered.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Which API the receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// Splunk HEC: `Authorization: Splunk <token>`, `/services/collector/event`.
    SplunkHec,
    /// Elasticsearch bulk: `Authorization: ApiKey <key>`, `/_bulk`, NDJSON.
    ElasticBulk,
}

/// An HTTPS receiver.
pub(crate) struct Https {
    api: Api,
    address: String,
    host: String,
    path: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Runtime,
    /// Bulk items refused as already present (409) so far.
    pub(crate) duplicates: u64,
}

impl Https {
    /// `url` is `https://HOST:PORT[/path]`; the default path is the API's.
    pub(crate) fn new(
        api: Api,
        url: &str,
        token: Option<String>,
        tls: rustls::ClientConfig,
    ) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("--to `{url}`: must be https://HOST:PORT[/PATH]"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("--to `{url}`: no host");
        }
        let address = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        };
        let path = match (path, api) {
            ("" | "/", Api::SplunkHec) => "/services/collector/event".to_owned(),
            ("" | "/", Api::ElasticBulk) => "/_bulk".to_owned(),
            (p, _) => p.to_owned(),
        };
        if api == Api::SplunkHec && token.is_none() {
            bail!("Splunk HEC needs --token (the HEC token)");
        }
        let host = address
            .rsplit_once(':')
            .map_or(address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            api,
            address,
            host,
            path,
            token,
            tls: Arc::new(tls),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            duplicates: 0,
        })
    }

    /// Sends one batch (the rendered lines); returns once the receiver accepted all of it.
    pub(crate) fn send(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let (status, answer) = self
            .runtime
            .block_on(async {
                tokio::time::timeout(TIMEOUT, self.post(body))
                    .await
                    .map_err(|_| anyhow!("no answer within {}s", TIMEOUT.as_secs()))?
            })
            .with_context(|| format!("POST https://{}{}", self.address, self.path))?;
        let value: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        match self.api {
            Api::SplunkHec => hec_outcome(status, &value),
            Api::ElasticBulk => {
                self.duplicates += bulk_outcome(status, &value)?;
                Ok(())
            }
        }
    }

    async fn post(&self, body: &[u8]) -> anyhow::Result<(u16, bytes::Bytes)> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .with_context(|| format!("connecting to {}", self.address))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| anyhow!("`{}`: {e}", self.host))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {}", self.address))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut request = Request::post(&self.path)
            .header("host", &self.host)
            .header("accept", "application/json");
        request = match self.api {
            Api::SplunkHec => request.header("content-type", "application/json"),
            Api::ElasticBulk => request.header("content-type", "application/x-ndjson"),
        };
        if let Some(token) = &self.token {
            let scheme = match self.api {
                Api::SplunkHec => "Splunk",
                Api::ElasticBulk => "ApiKey",
            };
            request = request.header("authorization", format!("{scheme} {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(bytes::Bytes::copy_from_slice(body)))?)
            .await?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// HEC answers `{"text": "Success", "code": 0}`; anything else names why.
fn hec_outcome(status: u16, answer: &Value) -> anyhow::Result<()> {
    let code = answer.get("code").and_then(Value::as_i64);
    if status == 200 && code == Some(0) {
        return Ok(());
    }
    let text = answer
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("no explanation");
    bail!(
        "Splunk HEC answered {status}: {text}{}",
        code.map(|c| format!(" (code {c})")).unwrap_or_default()
    )
}

/// A bulk answer: every item must be created (201/200) or already there (409). Returns how
/// many were already there.
fn bulk_outcome(status: u16, answer: &Value) -> anyhow::Result<u64> {
    if status != 200 {
        let reason = answer
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or("no explanation");
        bail!("Elasticsearch answered {status}: {reason}");
    }
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("Elasticsearch's answer has no `items`"))?;
    let mut duplicates = 0;
    let mut failed = Vec::new();
    for item in items {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .ok_or_else(|| anyhow!("Elasticsearch's answer has a malformed item"))?;
        match result.get("status").and_then(Value::as_u64) {
            Some(200 | 201) => {}
            Some(409) => duplicates += 1,
            other => failed.push(format!(
                "{} ({}): {}",
                result.get("_id").and_then(Value::as_str).unwrap_or("?"),
                other.map_or("no status".to_owned(), |s| s.to_string()),
                result
                    .pointer("/error/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason")
            )),
        }
    }
    if let Some(first) = failed.first() {
        bail!(
            "Elasticsearch refused {} of {} documents, first {first}",
            failed.len(),
            items.len()
        );
    }
    Ok(duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hec_answers() {
        assert!(hec_outcome(200, &json!({"text": "Success", "code": 0})).is_ok());
        let e = hec_outcome(403, &json!({"text": "Invalid token", "code": 4})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Splunk HEC answered 403: Invalid token (code 4)"
        );
    }

    #[test]
    fn bulk_answers_count_duplicates_and_name_refusals() {
        let ok = json!({"errors": true, "items": [
            {"create": {"_id": "a", "status": 201}},
            {"create": {"_id": "b", "status": 409, "error": {"type": "version_conflict_engine_exception"}}},
        ]});
        assert_eq!(bulk_outcome(200, &ok).unwrap(), 1);
        let bad = json!({"errors": true, "items": [
            {"create": {"_id": "a", "status": 201}},
            {"create": {"_id": "c", "status": 400, "error": {"reason": "failed to parse field [source.port]"}}},
        ]});
        let e = bulk_outcome(200, &bad).unwrap_err().to_string();
        assert!(
            e.contains("refused 1 of 2") && e.contains("source.port"),
            "{e}"
        );
        assert!(
            bulk_outcome(401, &json!({"error": {"reason": "missing authentication"}})).is_err()
        );
    }

    #[test]
    fn urls_take_the_api_default_path() {
        let tls = rustls::ClientConfig::builder_with_provider(signet_spiffe::tls::provider())
            .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let h = Https::new(
            Api::SplunkHec,
            "https://splunk:8088",
            Some("t".into()),
            tls.clone(),
        )
        .unwrap();
        assert_eq!(
            (h.address.as_str(), h.path.as_str()),
            ("splunk:8088", "/services/collector/event")
        );
        let e = Https::new(
            Api::ElasticBulk,
            "https://es.example/x/_bulk",
            None,
            tls.clone(),
        )
        .unwrap();
        assert_eq!(
            (e.address.as_str(), e.path.as_str()),
            ("es.example:443", "/x/_bulk")
        );
        assert!(Https::new(Api::SplunkHec, "https://splunk:8088", None, tls.clone()).is_err());
        assert!(Https::new(Api::ElasticBulk, "http://es:9200", None, tls).is_err());
    }
}
