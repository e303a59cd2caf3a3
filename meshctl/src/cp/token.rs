//! `meshctl token create`: a one-time join token for a proxy.

use clap::Args;

use super::{Remote, print_structured, read_as, relative_to};
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
        &signet_cp::model::TokenRequest {
            spiffe_id: args.spiffe_id.clone(),
            ttl_seconds: Some(args.ttl.as_secs()),
        },
    )?;
    if !print_structured(args.remote.output, &value)? {
        let created: signet_cp::model::TokenCreated = read_as(&value, "/v1/tokens")?;
        println!("{}", created.token);
        eprintln!(
            "join token for {}, single use, expires {}",
            created.spiffe_id,
            relative_to(created.expires_at)
        );
    }
    Ok(Outcome::Success)
}
