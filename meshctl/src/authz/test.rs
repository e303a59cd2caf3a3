//! `meshctl authz test --principal <id> --action <connect|GET|…> --resource <service> …`

use clap::Args;
use signet_policy::Decision;

use super::Format;
use super::request::{Ask, RequestArgs};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    request: RequestArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
}

pub(crate) fn run(args: &TestArgs) -> anyhow::Result<Outcome> {
    let decision = args
        .request
        .run(|authorizer, caller, target, ask| match ask {
            Ask::Connect(ip) => authorizer.connect(caller, target, ip),
            Ask::Http(request) => authorizer.request(caller, target, request),
        })?;
    print(&decision, args.output);
    Ok(Outcome::of(&decision))
}

fn print(decision: &Decision, format: Format) {
    match format {
        Format::Table => {
            let effect = if decision.is_allowed() {
                "ALLOW"
            } else {
                "DENY"
            };
            println!("{effect}  {}", decision.reason());
            for e in &decision.errors {
                println!("  error: {e}");
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "decision": if decision.is_allowed() { "allow" } else { "deny" },
                "policies": decision.policies,
                "errors": decision.errors,
            })
        ),
    }
}
