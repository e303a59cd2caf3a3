//! `meshctl ca setup | status | rotate`: what signs the mesh's identities, and changing it
//! without downtime.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::{Remote, print_structured, relative, text, time_of};
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
    if !structured {
        for check in answer
            .get("checks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ok = check.get("ok").and_then(Value::as_bool).unwrap_or(false);
            println!(
                "  {:<6} {:<16} {}",
                if ok { "ok" } else { "FAILED" },
                text(check, "name"),
                text(check, "detail")
            );
        }
    }
    if !(200..300).contains(&status) {
        let message = answer.get("error").and_then(Value::as_str).map_or_else(
            || format!("the control plane answered {status}"),
            str::to_owned,
        );
        bail!("{message}");
    }
    if args.check_only {
        if !structured {
            println!("every check passed; nothing was changed (--check-only)");
        }
        return Ok(Outcome::Success);
    }
    if !structured {
        print_staged(answer.get("ca").unwrap_or(&Value::Null));
    }
    if args.wait.wait {
        wait_for_promotion(&args.remote, args.wait.wait_timeout, structured)?;
    }
    Ok(Outcome::Success)
}

fn print_staged(ca: &Value) {
    let rotation = ca.get("rotation").unwrap_or(&Value::Null);
    println!(
        "staged: {}'s roots are in the trust bundle (sequence {}), on their way to every proxy;",
        text(rotation, "to"),
        text(ca, "bundle_sequence")
    );
    println!(
        "issuance moves to it once every proxy has them (at the latest {}); old roots leave",
        relative(rotation.get("promote_by").unwrap_or(&Value::Null))
    );
    println!("the bundle after every SVID they signed has expired. Follow it: meshctl ca status");
}

/// The JWT-SVID signing keys (`jwt` of `GET /v1/ca`).
fn print_jwt_keys(jwt: &Value) {
    if jwt.is_null() {
        return;
    }
    let when = |v: &Value| format!("{} ({})", time_of(v), relative(v));
    println!(
        "jwt-svids      ES256, lifetime {}s; signing keys rotate every {}s",
        text(jwt, "svid_ttl_seconds"),
        text(jwt, "key_lifetime_seconds")
    );
    for k in jwt
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let retire = k
            .get("retire_at")
            .filter(|v| !v.is_null())
            .map(|v| format!(", removed {}", when(v)))
            .unwrap_or_default();
        println!(
            "  {:<12} kid {}  created {}{}",
            text(k, "state"),
            text(k, "kid"),
            time_of(k.get("created").unwrap_or(&Value::Null)),
            retire
        );
    }
    if let Some(r) = jwt.get("rotation").filter(|v| !v.is_null()) {
        let waiting = r
            .get("waiting_for")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        println!(
            "  the staged key signs once every proxy has it (at the latest {}){}",
            relative(r.get("promote_by").unwrap_or(&Value::Null)),
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
    if !structured {
        print_staged(answer.get("ca").unwrap_or(&Value::Null));
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
        let ca = remote.client()?.get("/v1/ca")?;
        if ca.get("rotation").is_none_or(Value::is_null) {
            if !quiet {
                println!("promoted: new SVIDs are signed by {}", text(&ca, "backend"));
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
    let ca = client.get("/v1/ca")?;
    if print_structured(args.remote.output, &ca)? {
        return Ok(Outcome::Success);
    }
    let when = |v: &Value| format!("{} ({})", time_of(v), relative(v));
    println!(
        "backend        {} (trust domain {}, SVID lifetime {}s)",
        text(&ca, "backend"),
        text(&ca, "trust_domain"),
        text(&ca, "svid_ttl_seconds")
    );
    for (i, c) in ca
        .get("chain")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        println!(
            "{:<14} {:<12} {}  expires {}",
            if i == 0 { "chain" } else { "" },
            text(c, "role"),
            text(c, "subject"),
            when(c.get("not_after").unwrap_or(&Value::Null))
        );
    }
    println!("trust bundle   sequence {}", text(&ca, "bundle_sequence"));
    for r in ca
        .get("roots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let retire = r
            .get("retire_at")
            .filter(|v| !v.is_null())
            .map(|v| format!(", removed {}", when(v)))
            .unwrap_or_default();
        println!(
            "  {:<12} {}  sha256 {}…{}",
            text(r, "state"),
            text(r, "subject"),
            text(r, "sha256").get(..16).unwrap_or_default(),
            retire
        );
    }
    if let Some(v) = ca.get("vault").filter(|v| !v.is_null()) {
        let ttl = v
            .get("token_ttl")
            .and_then(Value::as_u64)
            .map_or("never expires".to_owned(), |t| format!("expires in {t}s"));
        println!(
            "vault          {} mount {}{}, {} auth, token {ttl} ({}), {} logins, {} renewals",
            text(v, "address"),
            text(v, "mount"),
            v.get("role")
                .and_then(Value::as_str)
                .map(|r| format!(" role {r}"))
                .unwrap_or_default(),
            text(v, "auth"),
            if v.get("token_renewable").and_then(Value::as_bool) == Some(true) {
                "renewable"
            } else {
                "not renewable"
            },
            text(v, "logins"),
            text(v, "renewals"),
        );
    }
    if let Some(n) = ca.get("next_renewal").filter(|v| !v.is_null()) {
        println!("next renewal   {}", when(n));
    }
    print_jwt_keys(ca.get("jwt").unwrap_or(&Value::Null));
    match ca.get("rotation").filter(|v| !v.is_null()) {
        Some(r) => {
            let waiting: Vec<&str> = r
                .get("waiting_for")
                .and_then(Value::as_array)
                .map(|w| w.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "rotation       staged to {} since {}; promoted once every proxy has the new bundle (at the latest {}){}",
                text(r, "to"),
                time_of(r.get("since").unwrap_or(&Value::Null)),
                relative(r.get("promote_by").unwrap_or(&Value::Null)),
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!("; waiting for {}", waiting.join(", "))
                }
            );
        }
        None => println!("rotation       none in progress"),
    }
    for w in ca
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        println!("warning        {w}");
    }
    Ok(Outcome::Success)
}
