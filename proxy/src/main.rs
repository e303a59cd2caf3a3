//! `signet-proxy`, the sidecar: mTLS in front of the local app (inbound), a local plain-text
//! port per upstream service (outbound), Cedar on every connection and request.
//!
//! It runs from one TOML file (see `deploy/examples/proxy/`); flags override the common
//! settings. Bad configuration is one line on stderr and exit 1. Once every listener is bound
//! it prints one JSON line on stdout with their addresses (so port 0 can be used), then logs
//! to stderr. SIGTERM or SIGINT drains: listeners close, connections in flight get
//! `limits.drain_timeout` to finish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use signet_proxy::config::Config;
use signet_proxy::start::start;

#[derive(Debug, Parser)]
#[command(
    name = "signet-proxy",
    version,
    about = "Signet's sidecar proxy",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Install the rules that send the workload's TCP through the proxy (transparent
    /// interception), in the current network namespace; `--remove` takes them out.
    Init(signet_proxy::netfilter::init::InitArgs),
}

#[derive(Debug, clap::Args)]
struct Args {
    /// The configuration file (TOML).
    #[arg(
        long,
        env = "SIGNET_PROXY_CONFIG",
        value_name = "FILE",
        required = true
    )]
    config: Option<PathBuf>,
    /// Overrides `inbound.listen`.
    #[arg(long, value_name = "ADDR")]
    inbound_listen: Option<SocketAddr>,
    /// Overrides `inbound.app`.
    #[arg(long, value_name = "ADDR")]
    app: Option<SocketAddr>,
    /// Overrides `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Overrides `policy.dir`.
    #[arg(long, value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    /// The control plane's gRPC address; sets or overrides `control_plane.address`.
    #[arg(long, env = "SIGNET_PROXY_CP", value_name = "ADDR")]
    cp: Option<String>,
    /// A one-time join token, or @FILE holding one (`control_plane.join_token`).
    #[arg(long, env = "SIGNET_JOIN_TOKEN", value_name = "TOKEN|@FILE")]
    join_token: Option<String>,
    /// Roots the control plane's certificate chains to (`control_plane.ca`).
    #[arg(long, env = "SIGNET_CA", value_name = "FILE")]
    cp_ca: Option<PathBuf>,
    /// The mesh's trust domain (`control_plane.trust_domain`, default signet.local).
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// Where the SVID, key and last configuration are kept (`control_plane.state_dir`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long, env = "SIGNET_PROXY_WORKERS", value_name = "N")]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("signet-proxy: {first}");
            return ExitCode::from(1);
        }
    };
    let args = match cli.command {
        Some(Command::Init(init)) => {
            return match init.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("signet-proxy init: error: {e}");
                    ExitCode::from(1)
                }
            };
        }
        None => cli.run,
    };
    init_logging(args.log_json);
    if secret_in_argv(std::env::args(), "--join-token") {
        tracing::warn!(
            "a join token given on the command line is visible to other local users (ps, \
             /proc): pass --join-token @FILE or set SIGNET_JOIN_TOKEN instead"
        );
    }
    // One worker: a current-thread runtime, so a request's hops (connection tasks, pools)
    // never cross threads.
    let mut builder = match args.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = args.workers.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signet-proxy: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet-proxy: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether `flag` was given a literal value (not `@FILE`) among the process's arguments.
fn secret_in_argv(args: impl Iterator<Item = String>, flag: &str) -> bool {
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let value = if arg == flag {
            args.peek().cloned()
        } else {
            arg.strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        };
        if value.is_some_and(|v| !v.starts_with('@')) {
            return true;
        }
    }
    false
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn effective_config(args: &Args) -> Result<Config, String> {
    let path = args.config.as_ref().ok_or("--config is required")?;
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    if let Some(addr) = args.inbound_listen {
        config.inbound.listen = addr;
    }
    if let Some(addr) = args.app {
        config.inbound.app = addr;
    }
    if let Some(addr) = args.admin_listen {
        config.admin.listen = addr;
    }
    if let Some(dir) = &args.policy_dir {
        match config.policy.as_mut() {
            Some(policy) => policy.dir.clone_from(dir),
            None => {
                config.policy = Some(signet_proxy::config::PolicyConfig {
                    dir: dir.clone(),
                    shadow_dir: None,
                });
            }
        }
    }
    let cp_flags = args.cp.is_some()
        || args.join_token.is_some()
        || args.state_dir.is_some()
        || args.trust_domain.is_some();
    if cp_flags || config.control_plane.is_some() {
        let existing = config.control_plane.take();
        let address = args
            .cp
            .clone()
            .or_else(|| existing.as_ref().map(|c| c.address.clone()))
            .ok_or("--join-token, --state-dir and --trust-domain need --cp or [control_plane]")?;
        let ca = args
            .cp_ca
            .clone()
            .or_else(|| existing.as_ref().map(|c| c.ca.clone()))
            .ok_or("--cp needs --cp-ca (the control plane's bundle.pem)")?;
        let state_dir = args
            .state_dir
            .clone()
            .or_else(|| existing.as_ref().map(|c| c.state_dir.clone()))
            .ok_or("--cp needs --state-dir (where the SVID and last configuration are kept)")?;
        config.control_plane = Some(signet_proxy::config::ControlPlaneConfig {
            address,
            ca,
            trust_domain: args
                .trust_domain
                .clone()
                .or_else(|| existing.as_ref().map(|c| c.trust_domain.clone()))
                .unwrap_or_else(|| "signet.local".to_owned()),
            join_token: args
                .join_token
                .clone()
                .or_else(|| existing.as_ref().and_then(|c| c.join_token.clone())),
            state_dir,
            advertise: existing.as_ref().and_then(|c| c.advertise),
            endpoint_labels: existing
                .as_ref()
                .map(|c| c.endpoint_labels.clone())
                .unwrap_or_default(),
            weight: existing
                .as_ref()
                .map_or(signet_traffic::weight::DEFAULT, |c| c.weight),
            service_address: existing.as_ref().and_then(|c| c.service_address),
        });
    }
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn run(args: Args) -> Result<(), String> {
    let config = effective_config(&args)?;
    let running = start(config).await?;
    let listening = &running.listening;
    println!(
        "{}",
        serde_json::json!({
            "listening": {
                "inbound": listening.inbound.to_string(),
                "admin": listening.admin.to_string(),
                "outbound": listening
                    .outbound
                    .iter()
                    .map(|(service, addr)| (service.clone(), addr.to_string().into()))
                    .collect::<serde_json::Map<_, _>>(),
                "interception": listening.interception.map(|a| a.to_string()),
            },
            "spiffe_id": running.proxy.identity.current.borrow().svid.id().as_str(),
        })
    );
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::secret_in_argv;

    fn argv(args: &[&str]) -> impl Iterator<Item = String> {
        args.iter()
            .map(|a| (*a).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn a_literal_join_token_in_argv_is_noticed_and_a_file_reference_is_not() {
        let flag = "--join-token";
        assert!(secret_in_argv(
            argv(&["p", "--join-token", "abc.def"]),
            flag
        ));
        assert!(secret_in_argv(argv(&["p", "--join-token=abc.def"]), flag));
        assert!(!secret_in_argv(
            argv(&["p", "--join-token", "@/run/t"]),
            flag
        ));
        assert!(!secret_in_argv(argv(&["p", "--join-token=@/run/t"]), flag));
        assert!(!secret_in_argv(argv(&["p", "--config", "x.toml"]), flag));
    }
}
