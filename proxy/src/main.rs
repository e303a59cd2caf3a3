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
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Parser;
use tokio::net::TcpListener;

use signet_proxy::config::Config;
use signet_proxy::state::Proxy;
use signet_proxy::{admin, control, identity, inbound, outbound, reload};

#[derive(Debug, Parser)]
#[command(name = "signet-proxy", version, about = "Signet's sidecar proxy")]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, env = "SIGNET_PROXY_CONFIG", value_name = "FILE")]
    config: PathBuf,
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
    let args = match Args::try_parse() {
        Ok(args) => args,
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
    let mut config = Config::load(&args.config).map_err(|e| e.to_string())?;
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
        });
    }
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
}

/// Where identity and policies come from.
enum Source {
    Files {
        identity: signet_proxy::config::IdentityConfig,
        policy_dir: PathBuf,
        shadow_dir: Option<PathBuf>,
        traffic: Option<PathBuf>,
    },
    ControlPlane {
        config: signet_proxy::config::ControlPlaneConfig,
        trust_domain: signet_spiffe::TrustDomain,
        saved: Option<Box<signet_cp::api::v1::ProxyConfig>>,
    },
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = effective_config(&args)?;
    let (identity, bundle, source, signer) =
        match (&config.control_plane, &config.identity, &config.policy) {
            (Some(cp), _, _) => {
                let td = signet_spiffe::TrustDomain::new(&cp.trust_domain)
                    .map_err(|e| format!("control_plane.trust_domain: {e}"))?;
                let (credentials, key) = control::obtain_identity(cp, &td, &config.service).await?;
                let signer = signet_proxy::audit::signer(&credentials.svid, &key)?;
                let identity = identity::Identity::new(credentials, &key)?;
                let saved = control::saved_config(&cp.state_dir).map(Box::new);
                let source = Source::ControlPlane {
                    config: cp.clone(),
                    trust_domain: td,
                    saved,
                };
                (
                    identity,
                    signet_policy::PolicyBundle::empty(),
                    source,
                    signer,
                )
            }
            (None, Some(files), Some(policy)) => {
                let (credentials, key) = identity::load(files)?;
                let signer = signet_proxy::audit::signer(&credentials.svid, &key)?;
                let identity = identity::Identity::new(credentials, &key)?;
                if let Some(path) = &files.deny_list {
                    let (ids, serials) = identity::load_deny_list(path)?;
                    identity.deny(ids, serials);
                }
                let bundle = reload::load_policies(&policy.dir, 1)
                    .map_err(|e| format!("policy.dir: {e}"))?;
                let source = Source::Files {
                    identity: files.clone(),
                    policy_dir: policy.dir.clone(),
                    shadow_dir: policy.shadow_dir.clone(),
                    traffic: config.traffic.as_ref().map(|t| t.file.clone()),
                };
                (identity, bundle, source, signer)
            }
            _ => {
                return Err(
                    "no source of identity: give [control_plane], or [identity] and [policy]"
                        .to_owned(),
                );
            }
        };
    let inbound_listener = bind("inbound.listen", config.inbound.listen).await?;
    let admin_listener = bind("admin.listen", config.admin.listen).await?;
    let mut outbound_listeners = Vec::new();
    for (n, o) in config.outbound.iter().enumerate() {
        outbound_listeners.push(bind(&format!("outbound[{n}].listen"), o.listen).await?);
    }
    // From here on the configuration names the addresses actually bound (port 0 resolved),
    // so policies reading `resource.port` and `/config` see the real ones.
    let bound = |l: &TcpListener, configured: SocketAddr| l.local_addr().unwrap_or(configured);
    config.inbound.listen = bound(&inbound_listener, config.inbound.listen);
    config.admin.listen = bound(&admin_listener, config.admin.listen);
    for (o, l) in config.outbound.iter_mut().zip(&outbound_listeners) {
        o.listen = bound(l, o.listen);
    }
    let audit = match config.audit_dir() {
        Some(dir) => Some(
            signet_proxy::audit::Audit::start(dir.clone(), config.audit.sample_allows, signer)
                .map_err(|e| format!("audit.dir `{}`: {e}", dir.display()))?,
        ),
        None => None,
    };
    let proxy = Arc::new(Proxy::new(config, identity, &bundle, audit)?);
    let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut outbound_addrs = serde_json::Map::new();
    let mut tasks = Vec::new();
    let mut upstreams = Vec::new();
    for o in &proxy.config.outbound {
        upstreams.push(Arc::new(outbound::Upstream::new(o.clone(), &proxy)?));
    }
    let _ = proxy.upstreams.set(upstreams.clone());
    match source {
        Source::Files {
            identity,
            policy_dir,
            shadow_dir,
            traffic,
        } => {
            if let Some(dir) = &shadow_dir {
                reload::load_shadow(&proxy, dir, 1)
                    .map_err(|e| format!("policy.shadow_dir: {e}"))?;
            }
            if let Some(path) = &traffic {
                reload::load_traffic(&proxy, path, 1).map_err(|e| format!("traffic.file: {e}"))?;
            }
            tasks.push(tokio::spawn(reload::watch(
                Arc::clone(&proxy),
                identity,
                reload::PolicyDirs {
                    enforced: policy_dir,
                    shadow: shadow_dir,
                },
                traffic,
                1,
            )));
        }
        Source::ControlPlane {
            config,
            trust_domain,
            saved,
        } => {
            let link =
                control::Link::new(config, trust_domain, Arc::clone(&proxy), upstreams.clone())?;
            // A configuration kept by the last run serves until the control plane answers.
            let patience = if let Some(saved) = &saved {
                link.apply(saved);
                std::time::Duration::from_secs(2)
            } else {
                std::time::Duration::from_secs(10)
            };
            let (first, applied) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(Arc::clone(&link).watch(first)));
            let (first_trust, trusted) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(Arc::clone(&link).watch_trust(first_trust)));
            let both = async {
                let _ = tokio::join!(applied, trusted);
            };
            if tokio::time::timeout(patience, both).await.is_err() {
                tracing::warn!(
                    "no configuration from the control plane yet; starting with what is kept"
                );
            }
            tasks.push(tokio::spawn(Arc::clone(&link).register()));
            if let Some(dir) = proxy.config.audit_dir().filter(|_| proxy.audit.is_some()) {
                tasks.push(tokio::spawn(Arc::clone(&link).ship(dir)));
            }
            tasks.push(tokio::spawn(link.renew()));
        }
    }
    for ((o, listener), upstream) in proxy
        .config
        .outbound
        .iter()
        .zip(outbound_listeners)
        .zip(upstreams)
    {
        outbound_addrs.insert(o.service.clone(), local(&listener).into());
        tasks.push(tokio::spawn(outbound::run(
            listener,
            upstream,
            Arc::clone(&proxy),
        )));
    }
    println!(
        "{}",
        serde_json::json!({
            "listening": {
                "inbound": local(&inbound_listener),
                "admin": local(&admin_listener),
                "outbound": outbound_addrs,
            },
            "spiffe_id": proxy.identity.current.borrow().svid.id().as_str(),
        })
    );
    tracing::info!(
        service = %proxy.config.service.name,
        spiffe_id = %proxy.identity.current.borrow().svid.id(),
        policies = proxy.policies.current().bundle().len(),
        "signet-proxy started"
    );
    tasks.push(tokio::spawn(admin::run(admin_listener, Arc::clone(&proxy))));
    tasks.push(tokio::spawn(signet_proxy::health::run(Arc::clone(&proxy))));
    let inbound = tokio::spawn(inbound::run(inbound_listener, Arc::clone(&proxy)));
    shutdown_signal().await;
    tracing::info!("draining");
    proxy.shutdown.send_replace(true);
    let deadline = tokio::time::Instant::now() + proxy.config.limits.drain_timeout;
    while proxy.metrics.inbound_open.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    inbound.abort();
    for task in tasks {
        task.abort();
    }
    if let Some(audit) = &proxy.audit {
        // The last records are written and signed before the process ends.
        audit.close().await;
    }
    tracing::info!("stopped");
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
