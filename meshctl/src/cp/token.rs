//! `meshctl token create`: a one-time join token for a proxy.

use clap::Args;
use serde_json::json;

use super::{Remote, print_structured, relative, text};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The SPIFFE ID the token lets a proxy obtain
    /// (spiffe://<trust-domain>/ns/<namespace>/sa/<service>).
    #[arg(long, value_name = "ID")]
    spiffe_id: String,
    /// How long the token stays redeemable (s, m, h, d).
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse, value_name = "DURATION")]
    ttl: std::time::Duration,
    #[command(flatten)]
    remote: Remote,
}

/// Prints only the token in the table format, so `TOKEN=$(meshctl token create …)` works.
pub(crate) fn create(args: &CreateArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.post(
        "/v1/tokens",
        &json!({ "spiffe_id": args.spiffe_id, "ttl_seconds": args.ttl.as_secs() }),
    )?;
    if !print_structured(args.remote.output, &value)? {
        println!("{}", text(&value, "token"));
        eprintln!(
            "join token for {}, single use, expires {}",
            text(&value, "spiffe_id"),
            relative(value.get("expires_at").unwrap_or(&serde_json::Value::Null))
        );
    }
    Ok(Outcome::Success)
}
