//! `meshctl services label NAME [-n NS] key=value... key-...`: set and remove a service's
//! labels. Every proxy receives them: policies read them as the tags of the service's
//! workloads when they call (`principal.getTag("team")`) and of the service when it is
//! called (`resource.getTag("tier")`).

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use signet_cp::model;

use super::{Remote, print_structured, read_as};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct LabelArgs {
    /// The service.
    #[arg(value_name = "SERVICE")]
    service: String,
    /// `key=value` sets a label, `key-` removes one (kubectl's syntax).
    #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
    changes: Vec<String>,
    /// The service's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

/// The labels to set and the keys to remove.
fn parse_changes(changes: &[String]) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for change in changes {
        match (change.split_once('='), change.strip_suffix('-')) {
            (Some((key, value)), _) if !key.is_empty() => {
                set.insert(key.to_owned(), value.to_owned());
            }
            (None, Some(key)) if !key.is_empty() => remove.push(key.to_owned()),
            _ => bail!("`{change}` is neither key=value nor key-"),
        }
    }
    Ok((set, remove))
}

pub(crate) fn label(args: &LabelArgs) -> anyhow::Result<Outcome> {
    let (set, remove) = parse_changes(&args.changes)?;
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/services/labels",
        &model::LabelsRequest {
            service: args.service.clone(),
            namespace: args.namespace.clone(),
            set,
            remove,
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
    )?;
    let table = !print_structured(args.remote.output, &result)?;
    let set: model::ServiceLabels = read_as(&result, "/v1/services/labels")?;
    if table {
        let labels: Vec<String> = set.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{}.{} labels: {}",
            set.service,
            set.namespace,
            if labels.is_empty() {
                "(none)".to_owned()
            } else {
                labels.join(", ")
            }
        );
    }
    let enforced = super::enforced(Some(&set.enforcement), "the labels")?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_removals_parse_and_nonsense_is_refused() {
        let (set, remove) =
            parse_changes(&["tier=web".into(), "team-".into(), "note=a=b".into()]).expect("ok");
        assert_eq!(set.get("tier").map(String::as_str), Some("web"));
        assert_eq!(set.get("note").map(String::as_str), Some("a=b"));
        assert_eq!(remove, ["team"]);
        assert!(parse_changes(&["tier".into()]).is_err());
        assert!(parse_changes(&["=x".into()]).is_err());
        assert!(parse_changes(&["-".into()]).is_err());
    }
}
