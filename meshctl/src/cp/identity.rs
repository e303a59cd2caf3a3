//! `meshctl identity inspect <service|spiffe-id>`: the identity's certificate, its issuer
//! chain, the proxies holding it, and what the applied policies let it do.

use clap::Args;
use serde_json::Value;
use signet_cp::model;

use super::{Remote, print_structured, print_table, read_as, relative, text, time_of};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A service name (as registered) or a SPIFFE ID.
    #[arg(value_name = "SERVICE|SPIFFE-ID")]
    target: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The SPIFFE ID the token was created for (e.g. spiffe://signet.local/signet/operator/alice).
    #[arg(long, value_name = "ID")]
    spiffe_id: String,
    /// The one-time join token (`meshctl token create`), or @FILE holding it.
    #[arg(long, env = "SIGNET_JOIN_TOKEN", value_name = "TOKEN|@FILE")]
    join_token: String,
    /// Where to write `<name>.crt` (chain), `<name>.key` (0600) and `bundle.pem`.
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// File name stem.
    #[arg(long, default_value = "operator", value_name = "NAME")]
    name: String,
    #[command(flatten)]
    remote: Remote,
}

/// Makes a key here, sends only its CSR with the token, and writes the SVID: an operator's
/// client certificate for `--cert`/`--key` (or `SIGNET_CERT`/`SIGNET_KEY`).
pub(crate) fn issue(args: &IssueArgs) -> anyhow::Result<Outcome> {
    use anyhow::Context as _;
    let id: signet_spiffe::SpiffeId = args
        .spiffe_id
        .parse()
        .map_err(|e| anyhow::anyhow!("--spiffe-id `{}`: {e}", args.spiffe_id))?;
    let in_argv = std::env::args().any(|a| a == "--join-token" || a.starts_with("--join-token="));
    if in_argv && !args.join_token.starts_with('@') {
        eprintln!(
            "meshctl: warning: a join token on the command line is visible to other local \
             users (ps, /proc): pass --join-token @FILE or set SIGNET_JOIN_TOKEN"
        );
    }
    let token = match args.join_token.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading `{file}`"))?
            .trim()
            .to_owned(),
        None => args.join_token.trim().to_owned(),
    };
    let key = signet_spiffe::WorkloadKey::generate()?;
    let csr = key.csr(&id)?;
    let client = args.remote.anonymous()?;
    let value = client.post(
        "/v1/svid",
        &serde_json::json!({ "join_token": token, "csr": signet_spiffe::pem_block("CERTIFICATE REQUEST", csr.as_ref()) }),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating `{}`", args.out.display()))?;
    let cert_path = args.out.join(format!("{}.crt", args.name));
    let key_path = args.out.join(format!("{}.key", args.name));
    signet_spiffe::write_private(&key_path, key.to_pkcs8_pem().as_bytes())
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&cert_path, text(&value, "chain"))
        .with_context(|| format!("writing `{}`", cert_path.display()))?;
    std::fs::write(args.out.join("bundle.pem"), text(&value, "bundle"))
        .with_context(|| format!("writing `{}`", args.out.display()))?;
    if !print_structured(
        args.remote.output,
        &serde_json::json!({
            "spiffe_id": text(&value, "spiffe_id"),
            "cert": cert_path.display().to_string(),
            "key": key_path.display().to_string(),
            "not_after": value.get("not_after"),
        }),
    )? {
        println!("{}", text(&value, "spiffe_id"));
        println!("  certificate  {}", cert_path.display());
        println!("  key          {} (0600)", key_path.display());
        println!(
            "  expires      {}",
            time_of(value.get("not_after").unwrap_or(&Value::Null))
        );
        println!(
            "use it: meshctl --cert {} --key {} … (or SIGNET_CERT / SIGNET_KEY)",
            cert_path.display(),
            key_path.display()
        );
    }
    Ok(Outcome::Success)
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true))]
pub(crate) struct DenyArgs {
    /// Refuse every certificate of this SPIFFE ID.
    #[arg(long, value_name = "ID", group = "what")]
    spiffe_id: Option<String>,
    /// Refuse the certificate with this serial (hex).
    #[arg(long, value_name = "HEX", group = "what")]
    serial: Option<String>,
    /// Why, for the record.
    #[arg(long, default_value = "", value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

/// Adds to the deny-list every proxy enforces at the handshake; live connections of the
/// denied peer are closed.
pub(crate) fn deny(args: &DenyArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.post(
        "/v1/deny",
        &serde_json::json!({
            "spiffe_id": args.spiffe_id,
            "serial": args.serial,
            "reason": args.reason,
            "wait_seconds": args.wait.wait.as_secs(),
        }),
    )?;
    let table = !print_structured(args.remote.output, &value)?;
    let denied: model::Denied = read_as(&value, "/v1/deny")?;
    let what = format!("{} {}", denied.denied.kind, denied.denied.value);
    let enforced = super::enforced(Some(&denied.enforcement), &format!("the denial of {what}"))?;
    if table {
        println!("denied {what}: {enforced}, which refuse it from now on");
    }
    Ok(Outcome::Success)
}

fn when(v: &Value, key: &str) -> String {
    let t = v.get(key).unwrap_or(&Value::Null);
    format!("{} ({})", time_of(t), relative(t))
}

pub(crate) fn inspect(args: &InspectArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!(
        "/v1/identities?id={}",
        crate::cp::query_value(&args.target)
    ))?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    println!("SPIFFE ID      {}", text(&value, "spiffe_id"));
    if let Some(service) = value.get("service").filter(|s| !s.is_null()) {
        println!(
            "service        {} (namespace {})",
            text(service, "name"),
            text(service, "namespace")
        );
    }
    match value.get("certificate").filter(|c| !c.is_null()) {
        Some(cert) => {
            println!("serial         {}", text(cert, "serial"));
            println!("not before     {}", when(cert, "not_before"));
            println!("not after      {}", when(cert, "not_after"));
            println!("refresh at     {}", when(cert, "refresh_at"));
            let how = if text(cert, "kind") == "renew" {
                "renewal over mTLS"
            } else {
                "join token"
            };
            println!("obtained by    {how}");
            println!("issuer chain");
            for (depth, issuer) in cert
                .get("issuer_chain")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                println!(
                    "  {}{}  (expires {})",
                    "  ".repeat(depth),
                    text(issuer, "subject"),
                    time_of(issuer.get("not_after").unwrap_or(&Value::Null))
                );
            }
        }
        None => println!("certificate    none issued"),
    }
    let federated: Vec<String> = value
        .get("federated_bundles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} ({} roots, {} JWT keys, sequence {})",
                text(f, "trust_domain"),
                text(f, "roots"),
                text(f, "jwt_keys"),
                text(f, "sequence")
            )
        })
        .collect();
    println!(
        "trusts         its own domain{}",
        if federated.is_empty() {
            String::new()
        } else {
            format!(" and, federated, {}", federated.join("; "))
        }
    );
    match value.get("workload_selectors").filter(|s| !s.is_null()) {
        Some(s) => println!(
            "workload api   answers processes matching {} (set by {})",
            s.get("selectors")
                .and_then(Value::as_array)
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" and "))
                .unwrap_or_default(),
            text(s, "author")
        ),
        None => println!(
            "workload api   its proxies' own selectors (meshctl workload attest sets them here)"
        ),
    }
    if let Some(jwt) = value.get("jwt").filter(|j| !j.is_null()) {
        println!(
            "jwt-svids      ES256 by key {}, lifetime {}s, from its proxy's Workload API",
            jwt.get("signing_kid")
                .and_then(Value::as_str)
                .unwrap_or("(none active)"),
            text(jwt, "svid_ttl_seconds")
        );
    }
    let proxies = value
        .get("proxies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!();
    if proxies.is_empty() {
        println!("held by no registered proxy");
    } else {
        let rows: Vec<Vec<String>> = proxies
            .iter()
            .map(|p| {
                vec![
                    text(p, "instance"),
                    text(p, "endpoint"),
                    text(p, "serial"),
                    relative(p.get("last_renewed").unwrap_or(&Value::Null)),
                    relative(p.get("last_heartbeat").unwrap_or(&Value::Null)),
                ]
            })
            .collect();
        print_table(
            &["PROXY", "ENDPOINT", "SERIAL", "RENEWED", "HEARTBEAT"],
            &rows,
        );
    }
    let authz = value.get("authorization").cloned().unwrap_or(Value::Null);
    println!();
    println!(
        "effective authorization (policy version {}):",
        text(&authz, "policy_version")
    );
    if authz.get("registered").and_then(Value::as_bool) == Some(false) {
        println!("  (not registered: as a caller it has no service and no labels)");
    }
    let rows_of = |list: &str, name: &str| -> Vec<Vec<String>> {
        authz
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|e| {
                let who = text(e, name);
                e.get("actions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| {
                        vec![
                            who.clone(),
                            text(&a, "action"),
                            text(&a, "decision").to_uppercase(),
                            access_detail(&a),
                        ]
                    })
            })
            .collect()
    };
    let inbound = rows_of("inbound", "spiffe_id");
    let outbound = rows_of("outbound", "service");
    if inbound.is_empty() {
        println!("  who may call it: no other registered workload");
    } else {
        println!("  who may call it:");
        print_table(
            &["  CALLER", "ACTION", "DECISION", "POLICIES"],
            &indent(inbound),
        );
    }
    if outbound.is_empty() {
        println!("  what it may call: no other registered service");
    } else {
        println!("  what it may call:");
        print_table(
            &["  SERVICE", "ACTION", "DECISION", "POLICIES"],
            &indent(outbound),
        );
    }
    Ok(Outcome::Success)
}

/// The deciding policies of an allow or deny; for an answer that depends on the request,
/// what it reads and which path classes go which way.
fn access_detail(a: &Value) -> String {
    let policies = |v: &Value| -> String {
        let list: Vec<&str> = v
            .get("policies")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if list.is_empty() {
            "default-deny".to_owned()
        } else {
            list.join(",")
        }
    };
    if text(a, "decision") != "depends" {
        return policies(a);
    }
    let samples = |key: &str| -> String {
        a.get(key)
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|s| format!("{} ({})", text(s, "path"), policies(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let reads: Vec<&str> = a
        .get("reads")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut parts = vec![format!("on {}", reads.join(", "))];
    let (allowed, denied) = (samples("allowed"), samples("denied"));
    if !allowed.is_empty() {
        parts.push(format!("allowed: {allowed}"));
    }
    if !denied.is_empty() {
        parts.push(format!("denied: {denied}"));
    }
    parts.join("; ")
}

fn indent(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            if let Some(first) = r.first_mut() {
                *first = format!("  {first}");
            }
            r
        })
        .collect()
}
