//! `meshctl identity inspect <service|spiffe-id>`: the identity's certificate, its issuer
//! chain, the proxies holding it, and what the applied policies let it do.

use clap::Args;
use signet_cp::model;

use super::{Remote, print_structured, print_table, read_as, relative_to, time_at};
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
        &model::SvidRequest {
            join_token: token,
            csr: signet_spiffe::pem_block("CERTIFICATE REQUEST", csr.as_ref()),
            ttl_seconds: None,
        },
    )?;
    let issued: model::SvidIssued = read_as(&value, "/v1/svid")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating `{}`", args.out.display()))?;
    let cert_path = args.out.join(format!("{}.crt", args.name));
    let key_path = args.out.join(format!("{}.key", args.name));
    signet_spiffe::write_private(&key_path, key.to_pkcs8_pem().as_bytes())
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&cert_path, &issued.chain)
        .with_context(|| format!("writing `{}`", cert_path.display()))?;
    std::fs::write(args.out.join("bundle.pem"), &issued.bundle)
        .with_context(|| format!("writing `{}`", args.out.display()))?;
    if !print_structured(
        args.remote.output,
        &serde_json::json!({
            "spiffe_id": issued.spiffe_id,
            "cert": cert_path.display().to_string(),
            "key": key_path.display().to_string(),
            "not_after": issued.not_after,
        }),
    )? {
        println!("{}", issued.spiffe_id);
        println!("  certificate  {}", cert_path.display());
        println!("  key          {} (0600)", key_path.display());
        println!("  expires      {}", time_at(issued.not_after));
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
        &model::DenyRequest {
            spiffe_id: args.spiffe_id.clone(),
            serial: args.serial.clone(),
            reason: args.reason.clone(),
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
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

pub(crate) fn inspect(args: &InspectArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!(
        "/v1/identities?id={}",
        crate::cp::query_value(&args.target)
    ))?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let report: model::IdentityReport = read_as(&value, "/v1/identities")?;
    println!("SPIFFE ID      {}", report.spiffe_id);
    if let Some(service) = &report.service {
        println!(
            "service        {} (namespace {})",
            service.name, service.namespace
        );
    }
    let when = |ms: i64| format!("{} ({})", time_at(ms), relative_to(ms));
    match &report.certificate {
        Some(cert) => {
            println!("serial         {}", cert.serial);
            println!("not before     {}", when(cert.not_before));
            println!("not after      {}", when(cert.not_after));
            println!("refresh at     {}", when(cert.refresh_at));
            let how = match cert.kind {
                model::IssueKind::Renew => "renewal over mTLS",
                model::IssueKind::Issue => "join token",
            };
            println!("obtained by    {how}");
            println!("issuer chain");
            for (depth, issuer) in cert.issuer_chain.iter().enumerate() {
                println!(
                    "  {}{}  (expires {})",
                    "  ".repeat(depth),
                    issuer.subject,
                    time_at(issuer.not_after)
                );
            }
        }
        None => println!("certificate    none issued"),
    }
    let federated: Vec<String> = report
        .federated_bundles
        .iter()
        .map(|f| {
            format!(
                "{} ({} roots, {} JWT keys, sequence {})",
                f.trust_domain, f.roots, f.jwt_keys, f.sequence
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
    match &report.workload_selectors {
        Some(s) => println!(
            "workload api   answers processes matching {} (set by {})",
            s.selectors.join(" and "),
            s.author
        ),
        None => println!(
            "workload api   its proxies' own selectors (meshctl workload attest sets them here)"
        ),
    }
    println!(
        "jwt-svids      ES256 by key {}, lifetime {}s, from its proxy's Workload API",
        report.jwt.signing_kid.as_deref().unwrap_or("(none active)"),
        report.jwt.svid_ttl_seconds
    );
    println!();
    if report.proxies.is_empty() {
        println!("held by no registered proxy");
    } else {
        let rows: Vec<Vec<String>> = report
            .proxies
            .iter()
            .map(|h| {
                vec![
                    h.proxy.instance.clone(),
                    h.proxy.endpoint.clone(),
                    h.proxy.serial.clone(),
                    h.last_renewed.map_or_else(|| "-".to_owned(), relative_to),
                    relative_to(h.proxy.last_heartbeat),
                ]
            })
            .collect();
        print_table(
            &["PROXY", "ENDPOINT", "SERIAL", "RENEWED", "HEARTBEAT"],
            &rows,
        );
    }
    let authz = &report.authorization;
    println!();
    println!(
        "effective authorization (policy version {}):",
        authz.policy_version
    );
    if !authz.registered {
        println!("  (not registered: as a caller it has no service and no labels)");
    }
    let rows_of = |who: &str, actions: &[model::ActionAccess]| -> Vec<Vec<String>> {
        actions
            .iter()
            .map(|a| {
                vec![
                    who.to_owned(),
                    a.action.clone(),
                    decision_name(&a.access).to_uppercase(),
                    access_detail(&a.access),
                ]
            })
            .collect()
    };
    let inbound: Vec<Vec<String>> = authz
        .inbound
        .iter()
        .flat_map(|c| rows_of(&c.spiffe_id, &c.actions))
        .collect();
    let outbound: Vec<Vec<String>> = authz
        .outbound
        .iter()
        .flat_map(|s| rows_of(&s.service, &s.actions))
        .collect();
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

fn decision_name(a: &model::Access) -> &'static str {
    match a {
        model::Access::Allow { .. } => "allow",
        model::Access::Deny { .. } => "deny",
        model::Access::Depends { .. } => "depends",
    }
}

/// The deciding policies of an allow or deny; for an answer that depends on the request,
/// what it reads and which path classes go which way.
fn access_detail(a: &model::Access) -> String {
    let policies = |list: &[String]| -> String {
        if list.is_empty() {
            "default-deny".to_owned()
        } else {
            list.join(",")
        }
    };
    let (reads, allowed, denied) = match a {
        model::Access::Allow { policies: p } | model::Access::Deny { policies: p } => {
            return policies(p);
        }
        model::Access::Depends {
            reads,
            allowed,
            denied,
        } => (reads, allowed, denied),
    };
    let samples = |list: &[model::PathAccess]| -> String {
        list.iter()
            .map(|s| format!("{} ({})", s.path, policies(&s.policies)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = vec![format!("on {}", reads.join(", "))];
    let (allowed, denied) = (samples(allowed), samples(denied));
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
