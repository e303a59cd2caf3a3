//! `meshctl workload attest --service NAME [-n NS] --selector S...` (or `--clear`): who may
//! take a service's identity from its proxies' SPIFFE Workload API; `meshctl workload list`
//! shows what is set. Selectors operators set here replace those in the proxies' own
//! configuration; every one must match the calling process.

use std::str::FromStr;

use anyhow::Context as _;
use clap::Args;
use signet_cp::model;
use signet_spiffe::selector::Selector;

use super::{Remote, print_structured, print_table, read_as, relative_to};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct AttestArgs {
    /// The service whose workloads the selectors describe.
    #[arg(long, value_name = "SERVICE")]
    service: String,
    /// The service's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// `unix:uid:N`, `unix:gid:N` or `unix:path:/ABSOLUTE/EXECUTABLE`; repeat it: every one
    /// must match. Replaces what was set before.
    #[arg(
        long = "selector",
        value_name = "SELECTOR",
        required_unless_present = "clear"
    )]
    selectors: Vec<String>,
    /// Remove the selectors set here: the proxies' own configuration applies again.
    #[arg(long, conflicts_with = "selectors")]
    clear: bool,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn attest(args: &AttestArgs) -> anyhow::Result<Outcome> {
    // Checked here first, so a typo is one line before anything is sent.
    for s in &args.selectors {
        Selector::from_str(s).map_err(anyhow::Error::msg)?;
    }
    let client = args.remote.client()?;
    let result = client
        .post(
            "/v1/workloads/attestation",
            &model::AttestRequest {
                service: args.service.clone(),
                namespace: args.namespace.clone(),
                selectors: if args.clear {
                    Vec::new()
                } else {
                    args.selectors.clone()
                },
                wait_seconds: Some(args.wait.wait.as_secs()),
            },
        )
        .context("setting the selectors")?;
    let table = !print_structured(args.remote.output, &result)?;
    let set: model::AttestationSet = read_as(&result, "/v1/workloads/attestation")?;
    if table {
        if set.selectors.is_empty() {
            println!(
                "{}.{}: no selectors set here; its proxies' own configuration decides who is answered",
                set.service, set.namespace
            );
        } else {
            println!(
                "{}.{}: the Workload API answers processes matching {}",
                set.service,
                set.namespace,
                set.selectors.join(" and ")
            );
        }
    }
    let enforced = super::enforced(Some(&set.enforcement), "the selectors")?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

pub(crate) fn list(args: &ListArgs) -> anyhow::Result<Outcome> {
    let result = args.remote.client()?.get("/v1/workloads/attestation")?;
    if print_structured(args.remote.output, &result)? {
        return Ok(Outcome::Success);
    }
    let list: model::WorkloadSelectorsList = read_as(&result, "/v1/workloads/attestation")?;
    if list.services.is_empty() {
        println!(
            "no selectors set; each proxy's configuration decides who its Workload API answers"
        );
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.namespace.clone(),
                s.selectors.join(" "),
                s.author.clone(),
                relative_to(s.updated_at),
            ]
        })
        .collect();
    print_table(
        &["SERVICE", "NAMESPACE", "SELECTORS", "SET BY", "SET"],
        &rows,
    );
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        attest: super::AttestArgs,
    }

    #[test]
    fn selectors_or_clear_are_required_and_exclusive() {
        assert!(Cli::try_parse_from(["x", "--service", "cart"]).is_err());
        assert!(
            Cli::try_parse_from([
                "x",
                "--service",
                "cart",
                "--clear",
                "--selector",
                "unix:uid:1"
            ])
            .is_err()
        );
        let ok = Cli::try_parse_from([
            "x",
            "--service",
            "cart",
            "--selector",
            "unix:uid:1",
            "--selector",
            "unix:path:/bin/cart",
        ])
        .unwrap();
        assert_eq!(ok.attest.selectors.len(), 2);
    }
}
