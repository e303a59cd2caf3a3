//! `signet-cp`, the control plane: issues identities, stores and distributes policies, keeps
//! the service registry, and serves operators.
//!
//! On start it prints one JSON line on stdout with the bound addresses (so port 0 works),
//! then the `set -a; . <dir>/meshctl.env` hint on stderr, then logs to stderr. Bad arguments
//! or an unusable data directory: one line on stderr and exit 1. SIGTERM/SIGINT: exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signet_cp::server::{Options, start};

#[derive(Debug, Parser)]
#[command(
    name = "signet-cp",
    version,
    about = "Signet's control plane",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory (CA, store, operator credentials). Default: $XDG_DATA_HOME/signet or
    /// ~/.local/share/signet.
    #[arg(long, env = "SIGNET_CP_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Trust domain of a new data directory (default signet.local); an existing one keeps its own.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// gRPC listener for proxies.
    #[arg(long, default_value = "127.0.0.1:15010", value_name = "ADDR")]
    grpc_listen: SocketAddr,
    /// REST listener for operators.
    #[arg(long, default_value = "127.0.0.1:15011", value_name = "ADDR")]
    api_listen: SocketAddr,
    /// Plain-HTTP listener for Prometheus (`/metrics`); `off` for none. Nothing on it is
    /// secret, and nothing authenticates: keep it on loopback or a scrape network.
    #[arg(long, default_value = "127.0.0.1:15012", value_name = "ADDR|off")]
    metrics_listen: String,
    /// Send spans of API calls, gRPC calls and SVID issuance to this OTLP collector
    /// (`http://host:port`).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    #[arg(
        long,
        default_value = "grpc",
        value_name = "PROTOCOL",
        requires = "otlp_endpoint"
    )]
    otlp_protocol: String,
    /// Share of new traces recorded (0 to 1); calls that arrive in a trace follow it.
    #[arg(
        long,
        default_value_t = 0.01,
        value_name = "RATIO",
        requires = "otlp_endpoint"
    )]
    trace_sample_ratio: f64,
    /// Store URL (default: sqlite file signet.db in the data dir). From the environment, a
    /// password in it stays off the command line (`ps`, `systemctl show`).
    #[arg(
        long,
        env = "SIGNET_CP_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,
    /// The key-encryption key sealing the CA in the store (32 bytes, or 64 hex digits;
    /// 0600): the same file on every replica of a shared database. Default: the systemd
    /// credential `signet-ca-kek`, or `<data>/ca.kek` (made on first start) with SQLite.
    #[arg(long, env = "SIGNET_CA_KEK_FILE", value_name = "FILE")]
    ca_kek_file: Option<PathBuf>,
    /// Default SVID lifetime (e.g. 1h, 30m, 20s).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    svid_ttl: Duration,
    /// Serve this trust domain's bundle to federated domains here (`https_spiffe` with the
    /// control plane's SVID; with --bundle-endpoint-cert/-key, `https_web`). Default: off.
    #[arg(long, value_name = "ADDR")]
    bundle_endpoint_listen: Option<SocketAddr>,
    /// A WebPKI certificate chain (PEM) for the bundle endpoint (`https_web`).
    #[arg(long, value_name = "FILE", requires_all = ["bundle_endpoint_key", "bundle_endpoint_listen"])]
    bundle_endpoint_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "bundle_endpoint_cert")]
    bundle_endpoint_key: Option<PathBuf>,
    /// How often federated domains should fetch the bundle again (`spiffe_refresh_hint`).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    bundle_refresh_hint: Duration,
    /// JWT-SVID lifetime: a request's default and the longest granted (e.g. 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    jwt_svid_ttl: Duration,
    /// How long a JWT-SVID signing key signs before its successor is staged.
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    jwt_key_lifetime: Duration,
    /// Proxy heartbeat interval; three missed heartbeats remove an endpoint.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    heartbeat_interval: Duration,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy a control plane's store (stopped) into an empty PostgreSQL database, then check
    /// the copy against it; replicas on the new database need the KEK that sealed its CA.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The store to copy: `sqlite:PATH`, a SQLite file, or a data directory (its
    /// `signet.db`).
    #[arg(long, value_name = "URL|FILE|DIR")]
    from: String,
    /// The empty PostgreSQL database to copy into (`postgres://...`).
    #[arg(long, value_name = "URL")]
    to: String,
}

/// `signet-cp migrate`: what was copied and checked, or one line of why not.
async fn migrate(args: MigrateArgs) -> Result<(), String> {
    use signet_cp::server::store::{SqlStore, migrate};
    let from_path = args.from.strip_prefix("sqlite:").unwrap_or(&args.from);
    let path = std::path::Path::new(from_path.trim_start_matches("//"));
    let (file, kek_hint) = if path.is_dir() {
        (path.join("signet.db"), Some(path.join("ca.kek")))
    } else {
        (path.to_path_buf(), path.parent().map(|d| d.join("ca.kek")))
    };
    if !file.is_file() {
        return Err(format!("--from: `{}` is not a store", file.display()));
    }
    let from = SqlStore::open(&file)
        .await
        .map_err(|e| format!("--from: {e}"))?;
    if !args.to.starts_with("postgres://") && !args.to.starts_with("postgresql://") {
        return Err("--to: a postgres:// URL".to_owned());
    }
    let to = SqlStore::open_url(&args.to)
        .await
        .map_err(|e| format!("--to: {e}"))?;
    let copied = migrate::copy(&from, &to).await?;
    let checked = migrate::check(&from, &to, &copied)
        .await
        .map_err(|e| format!("the copy does not match its source: {e}"))?;
    for c in &copied {
        println!("copied  {:<20} {} rows", c.table, c.rows);
    }
    println!(
        "checked {} policy versions, {} registrations, the sealed CA, {} audit records of {} \
         chains (exact lines, linked): the copy matches",
        checked.policy_versions, checked.members, checked.audit_records, checked.audit_writers
    );
    if let Some(kek) = kek_hint.filter(|k| k.is_file()) {
        println!(
            "start the replicas with --store on the new database and --ca-kek-file {} (the \
             key that sealed this CA)",
            kek.display()
        );
    }
    Ok(())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 10m, 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}` is not a duration like 30s, 10m, 1h")),
    };
    if secs == 0 {
        return Err("a duration must be more than zero".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

fn default_data_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("signet"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or("no --data-dir given and neither XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/signet"))
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!(
                "signet-cp: {}",
                text.lines().next().unwrap_or("bad arguments")
            );
            return ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // PostgreSQL's notices (e.g. "relation already exists, skipping" at each start) are
        // not the operator's business.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signet-cp: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet-cp: error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(Command::Migrate(migrate_args)) = args.command {
        return migrate(migrate_args).await;
    }
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    let metrics_listen = match args.metrics_listen.as_str() {
        "off" => None,
        addr => Some(
            addr.parse::<SocketAddr>()
                .map_err(|_| format!("--metrics-listen: `{addr}` is not ADDR:PORT or `off`"))?,
        ),
    };
    let tracing = match args.otlp_endpoint {
        Some(endpoint) => {
            let protocol = match args.otlp_protocol.as_str() {
                "grpc" => signet_otel::config::OtlpProtocol::Grpc,
                "http/protobuf" | "http" => signet_otel::config::OtlpProtocol::HttpProtobuf,
                other => {
                    return Err(format!(
                        "--otlp-protocol: `{other}` is neither `grpc` nor `http/protobuf`"
                    ));
                }
            };
            let config = signet_otel::config::TracingConfig::new(
                endpoint,
                protocol,
                args.trace_sample_ratio,
            );
            config.check().map_err(|e| {
                e.replace("tracing.otlp_endpoint", "--otlp-endpoint")
                    .replace("tracing.sample_ratio", "--trace-sample-ratio")
            })?;
            Some(config)
        }
        None => None,
    };
    let running = start(Options {
        tracing,
        metrics_listen,
        data_dir,
        trust_domain: args.trust_domain,
        grpc_listen: args.grpc_listen,
        api_listen: args.api_listen,
        store: args.store,
        ca_kek_file: args.ca_kek_file,
        svid_ttl: args.svid_ttl,
        jwt: signet_cp::server::jwt_keys::JwtProfile {
            ttl: args.jwt_svid_ttl,
            key_lifetime: args.jwt_key_lifetime,
        },
        heartbeat_interval: args.heartbeat_interval,
        bundle_endpoint: args.bundle_endpoint_listen.map(|listen| {
            signet_cp::server::BundleEndpointOptions {
                listen,
                web_certificate: args.bundle_endpoint_cert.zip(args.bundle_endpoint_key),
            }
        }),
        bundle_refresh_hint: args.bundle_refresh_hint,
    })
    .await?;
    println!(
        "{}",
        serde_json::json!({
            "grpc": running.grpc.to_string(),
            "api": running.api.to_string(),
            "metrics": running.metrics.map(|m| m.to_string()),
            "bundle_endpoint": running.bundle_endpoint.map(|m| m.to_string()),
            "data_dir": running.data_dir.display().to_string(),
            "trust_domain": running.trust_domain,
            "env": running.env_file.display().to_string(),
        })
    );
    eprintln!(
        "signet-cp: to point meshctl here: set -a; . {}",
        running.env_file.display()
    );
    tracing::info!(grpc = %running.grpc, api = %running.api, "signet-cp started");
    shutdown_signal().await;
    running.shutdown();
    running.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
