//! `meshctl ca setup | status | rotate`: what signs the mesh's identities, and changing it
//! without downtime.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use signet_cp::model;

use super::{Remote, print_structured, read_as, relative_to, time_at};
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum Ca {
    /// Check a Vault/OpenBao PKI mount step by step, then rotate the mesh's CA to it.
    Setup(Box<SetupArgs>),
    /// Backend, chains and expiry, trust bundle, Vault token, next renewal, rotation, warnings.
    Status(StatusArgs),
    /// Rotate to a new root (built-in) or intermediate (Vault) with no downtime.
    Rotate(RotateArgs),
}

/// How Signet uses the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Vault's root signs Signet's intermediate; Signet signs SVIDs (works while Vault is down).
    Intermediate,
    /// Vault signs every SVID; no CA key in Signet.
    Sign,
}

#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    /// Vault's address (https; http only for a loopback dev server).
    #[arg(long, value_name = "URL")]
    vault_addr: String,
    /// PEM file of the CA that signed Vault's TLS certificate.
    #[arg(long, value_name = "FILE")]
    vault_ca_cert: Option<PathBuf>,
    /// A Vault token [env: VAULT_TOKEN]; not used when --vault-role-id is given.
    #[arg(
        long,
        env = "VAULT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    vault_token: Option<String>,
    /// AppRole role id (with --vault-secret-id).
    #[arg(long, value_name = "ID", requires = "vault_secret_id")]
    vault_role_id: Option<String>,
    /// AppRole secret id [env: VAULT_SECRET_ID].
    #[arg(
        long,
        env = "VAULT_SECRET_ID",
        hide_env_values = true,
        value_name = "ID",
        requires = "vault_role_id"
    )]
    vault_secret_id: Option<String>,
    /// Where the AppRole auth method is mounted.
    #[arg(long, default_value = "approle", value_name = "PATH")]
    vault_approle_mount: String,
    /// The PKI secrets engine's path.
    #[arg(long, value_name = "PATH")]
    vault_mount: String,
    /// The PKI role SVIDs are signed under (required with --mode sign).
    #[arg(long, value_name = "NAME")]
    vault_role: Option<String>,
    /// How Signet uses the mount.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Lifetime asked for Signet's intermediate (--mode intermediate).
    #[arg(long, default_value = "30d", value_parser = crate::duration::parse, value_name = "DURATION")]
    intermediate_ttl: Duration,
    /// Run the checks and stop.
    #[arg(long)]
    check_only: bool,
    #[command(flatten)]
    wait: Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct Wait {
    /// Return only once issuance has moved to the new CA.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse, value_name = "DURATION")]
    wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    wait: Wait,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn run(cmd: &Ca) -> anyhow::Result<Outcome> {
    match cmd {
        Ca::Setup(args) => setup(args),
        Ca::Status(args) => status(args),
        Ca::Rotate(args) => rotate(args),
    }
}

fn setup(args: &SetupArgs) -> anyhow::Result<Outcome> {
    let auth = match (
        &args.vault_token,
        &args.vault_role_id,
        &args.vault_secret_id,
    ) {
        (_, Some(role_id), Some(secret_id)) => json!({
            "method": "approle",
            "role_id": role_id,
            "secret_id": secret_id,
            "mount": args.vault_approle_mount,
        }),
        (Some(token), None, _) => json!({ "method": "token", "token": token }),
        _ => bail!(
            "authenticate to Vault with --vault-token (or VAULT_TOKEN), or --vault-role-id and --vault-secret-id"
        ),
    };
    if args.mode == Mode::Sign && args.vault_role.is_none() {
        bail!("--mode sign needs --vault-role");
    }
    let ca_cert_pem = match &args.vault_ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--vault-ca-cert `{}`", path.display()))?,
        ),
        None => None,
    };
    let body = json!({
        "address": args.vault_addr,
        "ca_cert_pem": ca_cert_pem,
        "auth": auth,
        "mount": args.vault_mount,
        "role": args.vault_role,
        "mode": match args.mode { Mode::Intermediate => "intermediate", Mode::Sign => "sign" },
        "intermediate_ttl_secs": args.intermediate_ttl.as_secs(),
        "check_only": args.check_only,
    });
    let client = args.remote.client()?;
    let (status, answer) = client.post_answer("/v1/ca/setup", &body)?;
    let structured = print_structured(args.remote.output, &answer)?;
    if !(200..300).contains(&status) {
        // A failed check explains itself check by check; any other refusal in its error.
        if let Ok(refused) = serde_json::from_value::<model::CaSetupRefused>(answer.clone()) {
            if !structured {
                print_checks(&refused.checks);
            }
            bail!("{}", refused.error);
        }
        return Err(super::client::refusal(status, &answer));
    }
    let setup: model::CaSetup = read_as(&answer, "/v1/ca/setup")?;
    if !structured {
        print_checks(&setup.checks);
    }
    if args.check_only {
        if !structured {
            println!("every check passed; nothing was changed (--check-only)");
        }
        return Ok(Outcome::Success);
    }
    if !structured && let Some(ca) = &setup.ca {
        print_staged(ca);
    }
    if args.wait.wait {
        wait_for_promotion(&args.remote, args.wait.wait_timeout, structured)?;
    }
    Ok(Outcome::Success)
}

fn print_checks(checks: &[model::CaCheck]) {
    for check in checks {
        println!(
            "  {:<6} {:<16} {}",
            if check.ok { "ok" } else { "FAILED" },
            check.name,
            check.detail
        );
    }
}

fn print_staged(ca: &model::CaStatus) {
    let (to, promote_by) = ca
        .rotation
        .as_ref()
        .map_or(("-", None), |r| (r.to.as_str(), Some(r.promote_by)));
    println!(
        "staged: {to}'s roots are in the trust bundle (sequence {}), on their way to every proxy;",
        ca.bundle_sequence
    );
    println!(
        "issuance moves to it once every proxy has them (at the latest {}); old roots leave",
        promote_by.map_or_else(|| "-".to_owned(), relative_to)
    );
    println!("the bundle after every SVID they signed has expired. Follow it: meshctl ca status");
}

fn when(ms: i64) -> String {
    format!("{} ({})", time_at(ms), relative_to(ms))
}

/// The JWT-SVID signing keys (`jwt` of `GET /v1/ca`).
fn print_jwt_keys(jwt: &model::JwtStatus) {
    println!(
        "jwt-svids      ES256, lifetime {}s; signing keys rotate every {}s",
        jwt.svid_ttl_seconds, jwt.key_lifetime_seconds
    );
    for k in &jwt.keys {
        let retire = k
            .retire_at
            .map(|at| format!(", removed {}", when(at)))
            .unwrap_or_default();
        println!(
            "  {:<12} kid {}  created {}{}",
            k.state.as_str(),
            k.kid,
            time_at(k.created),
            retire
        );
    }
    if let Some(r) = &jwt.rotation {
        let waiting = r.waiting_for.len();
        println!(
            "  the staged key signs once every proxy has it (at the latest {}){}",
            relative_to(r.promote_by),
            if waiting == 0 {
                String::new()
            } else {
                format!("; waiting for {waiting} proxies")
            }
        );
    }
}

fn rotate(args: &RotateArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let answer = client.post("/v1/ca/rotate", &json!({}))?;
    let structured = print_structured(args.remote.output, &answer)?;
    let rotated: model::CaRotated = read_as(&answer, "/v1/ca/rotate")?;
    if !structured {
        print_staged(&rotated.ca);
    }
    if args.wait.wait {
        wait_for_promotion(&args.remote, args.wait.wait_timeout, structured)?;
    }
    Ok(Outcome::Success)
}

/// Polls until the staged rotation is promoted. Each poll reads `SIGNET_CA` again: the
/// control plane rewrites it with the new roots, and presents a certificate from the new CA
/// once promoted.
fn wait_for_promotion(remote: &Remote, timeout: Duration, quiet: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ca: model::CaStatus = remote.client()?.get_as("/v1/ca")?;
        if ca.rotation.is_none() {
            if !quiet {
                println!("promoted: new SVIDs are signed by {}", ca.backend);
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the rotation is still waiting after {}s (meshctl ca status says for what)",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn status(args: &StatusArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get("/v1/ca")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let ca: model::CaStatus = read_as(&value, "/v1/ca")?;
    println!(
        "backend        {} (trust domain {}, SVID lifetime {}s)",
        ca.backend, ca.trust_domain, ca.svid_ttl_seconds
    );
    for (i, c) in ca.chain.iter().enumerate() {
        println!(
            "{:<14} {:<12} {}  expires {}",
            if i == 0 { "chain" } else { "" },
            c.role,
            c.subject,
            when(c.not_after)
        );
    }
    println!("trust bundle   sequence {}", ca.bundle_sequence);
    for r in &ca.roots {
        let retire = r
            .retire_at
            .map(|at| format!(", removed {}", when(at)))
            .unwrap_or_default();
        println!(
            "  {:<12} {}  sha256 {}…{}",
            r.state.as_str(),
            r.subject,
            r.sha256.get(..16).unwrap_or_default(),
            retire
        );
    }
    if let Some(v) = &ca.vault {
        let ttl = v
            .token_ttl_seconds
            .map_or("never expires".to_owned(), |t| format!("expires in {t}s"));
        println!(
            "vault          {} mount {}{}, {} auth, token {ttl} ({}), {} logins, {} renewals",
            v.address,
            v.mount,
            v.role
                .as_ref()
                .map(|r| format!(" role {r}"))
                .unwrap_or_default(),
            match v.auth {
                model::VaultAuthMethod::Token => "token",
                model::VaultAuthMethod::AppRole => "approle",
            },
            if v.token_renewable {
                "renewable"
            } else {
                "not renewable"
            },
            v.logins,
            v.renewals,
        );
    }
    if let Some(n) = ca.next_renewal {
        println!("next renewal   {}", when(n));
    }
    print_jwt_keys(&ca.jwt);
    match &ca.rotation {
        Some(r) => {
            println!(
                "rotation       staged to {} since {}; promoted once every proxy has the new bundle (at the latest {}){}",
                r.to,
                time_at(r.since),
                relative_to(r.promote_by),
                if r.waiting_for.is_empty() {
                    String::new()
                } else {
                    format!("; waiting for {}", r.waiting_for.join(", "))
                }
            );
        }
        None => println!("rotation       none in progress"),
    }
    for w in &ca.warnings {
        println!("warning        {w}");
    }
    Ok(Outcome::Success)
}
