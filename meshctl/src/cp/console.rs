//! `meshctl console`: a one-time link that signs a browser into the control plane's web
//! console as the operator running this command (token or client certificate).

use anyhow::anyhow;
use clap::Args;
use serde_json::json;

use super::{Client, Connection};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    #[command(flatten)]
    connection: Connection,
}

/// The sign-in link for `client`'s operator: good once, for the time the control plane
/// says.
pub(crate) fn sign_in_link(client: &Client) -> anyhow::Result<(String, u64)> {
    let answer = client.post("/v1/console/sign-in-codes", &json!({}))?;
    let code: signet_cp::model::SignInCode = super::read_as(&answer, "/v1/console/sign-in-codes")?;
    if !code.path.starts_with("/ui/") {
        return Err(anyhow!("the control plane sent no sign-in path"));
    }
    Ok((
        format!("{}{}", client.base(), code.path),
        code.expires_in_seconds,
    ))
}

pub(crate) fn run(args: &ConsoleArgs) -> anyhow::Result<Outcome> {
    let client = args.connection.client()?;
    let (link, seconds) = sign_in_link(&client)?;
    println!("{link}");
    eprintln!(
        "Open it within {seconds}s; it works once. The console's certificate chains to SIGNET_CA."
    );
    Ok(Outcome::Success)
}
