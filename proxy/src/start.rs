//! Start-up as a library call: [`start`] takes a checked [`Config`], obtains the identity
//! (from files, or from the control plane), binds every listener, loads the policies and
//! traffic settings, and runs the proxy's tasks; [`Running::shutdown`] drains it. The
//! `signet-proxy` binary keeps only flags, logging and signals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, ControlPlaneConfig, IdentityConfig};
use crate::state::Proxy;
use crate::{admin, control, health, identity, inbound, outbound, reload};

/// Where identity, policies and traffic settings come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Files on disk, re-read when they change.
    Files {
        /// The SVID, key, bundle and deny-list files.
        identity: IdentityConfig,
        /// The enforced policies.
        policy_dir: PathBuf,
        /// A shadow candidate's policies.
        shadow_dir: Option<PathBuf>,
        /// The traffic document.
        traffic: Option<PathBuf>,
    },
    /// A control plane, joined with a token or a kept SVID.
    ControlPlane(ControlPlaneConfig),
}

impl Source {
    /// The source `config` names (it was checked: exactly one is complete).
    pub fn of(config: &Config) -> Result<Self, String> {
        match (&config.control_plane, &config.identity, &config.policy) {
            (Some(cp), _, _) => Ok(Source::ControlPlane(cp.clone())),
            (None, Some(identity), Some(policy)) => Ok(Source::Files {
                identity: identity.clone(),
                policy_dir: policy.dir.clone(),
                shadow_dir: policy.shadow_dir.clone(),
                traffic: config.traffic.as_ref().map(|t| t.file.clone()),
            }),
            _ => Err(
                "no source of identity: give [control_plane], or [identity] and [policy]"
                    .to_owned(),
            ),
        }
    }
}

/// The addresses a started proxy listens on (any port 0 resolved).
#[derive(Debug, Clone)]
pub struct Listening {
    /// The mTLS listener in front of the app.
    pub inbound: SocketAddr,
    /// `/live`, `/ready`, `/metrics`, ...
    pub admin: SocketAddr,
    /// The local port of each upstream service that has one.
    pub outbound: BTreeMap<String, SocketAddr>,
    /// Where intercepted outbound connections arrive, with `[interception]`.
    pub interception: Option<SocketAddr>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Running {
    /// Its shared state.
    pub proxy: Arc<Proxy>,
    /// Where it listens.
    pub listening: Listening,
    inbound: JoinHandle<Result<(), String>>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
}

/// Starts the proxy `config` describes; every problem is one line.
pub async fn start(mut config: Config) -> Result<Running, String> {
    let source = Source::of(&config)?;
    let (identity, bundle, signer) = match &source {
        Source::ControlPlane(cp) => {
            let td = signet_spiffe::TrustDomain::new(&cp.trust_domain)
                .map_err(|e| format!("control_plane.trust_domain: {e}"))?;
            let (credentials, key) = control::obtain_identity(cp, &td, &config.service).await?;
            let signer = crate::audit::signer(&credentials.svid, &key)?;
            let identity = identity::Identity::new(credentials, &key)?;
            (identity, signet_policy::PolicyBundle::empty(), signer)
        }
        Source::Files {
            identity: files,
            policy_dir,
            ..
        } => {
            let (credentials, key) = identity::load(files)?;
            let signer = crate::audit::signer(&credentials.svid, &key)?;
            let identity = identity::Identity::new(credentials, &key)?;
            if let Some(path) = &files.deny_list {
                let (ids, serials) = identity::load_deny_list(path)?;
                identity.deny(ids, serials);
            }
            let bundle =
                reload::load_policies(policy_dir, 1).map_err(|e| format!("policy.dir: {e}"))?;
            (identity, bundle, signer)
        }
    };
    let inbound_listener = bind("inbound.listen", config.inbound.listen).await?;
    let admin_listener = bind("admin.listen", config.admin.listen).await?;
    let mut outbound_listeners = Vec::new();
    for (n, o) in config.outbound.iter().enumerate() {
        outbound_listeners.push(match o.listen {
            Some(listen) => Some(bind(&format!("outbound[{n}].listen"), listen).await?),
            None => None,
        });
    }
    let interception_listener = match &config.interception {
        Some(i) => Some(bind("interception.listen", i.listen).await?),
        None => None,
    };
    let workload_api = match &config.workload_api {
        Some(api) => Some((crate::workload_api::bind(&api.socket)?, api.parsed()?)),
        None => None,
    };
    // From here on the configuration names the addresses actually bound (port 0 resolved),
    // so policies reading `resource.port` and `/config` see the real ones.
    let bound = |l: &TcpListener, configured: SocketAddr| l.local_addr().unwrap_or(configured);
    config.inbound.listen = bound(&inbound_listener, config.inbound.listen);
    config.admin.listen = bound(&admin_listener, config.admin.listen);
    for (o, l) in config.outbound.iter_mut().zip(&outbound_listeners) {
        if let (Some(listen), Some(l)) = (o.listen.as_mut(), l) {
            *listen = bound(l, *listen);
        }
    }
    if let (Some(i), Some(l)) = (config.interception.as_mut(), &interception_listener) {
        i.listen = bound(l, i.listen);
    }
    let audit = match config.audit_dir() {
        Some(dir) => Some(
            crate::audit::Audit::start(dir.clone(), config.audit.sample_allows, signer)
                .map_err(|e| format!("audit.dir `{}`: {e}", dir.display()))?,
        ),
        None => None,
    };
    let proxy = Arc::new(Proxy::new(config, identity, &bundle, audit)?);
    let mut upstreams = Vec::new();
    for o in &proxy.config.outbound {
        upstreams.push(Arc::new(outbound::Upstream::new(o.clone(), &proxy)?));
    }
    let _ = proxy.upstreams.set(upstreams.clone());
    let mut tasks = Vec::new();
    let mut jwt_source: Option<Arc<dyn crate::workload_api::jwt::JwtSource>> = None;
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
        Source::ControlPlane(cp) => {
            let (link, following) = follow_control_plane(&proxy, cp, upstreams.clone()).await?;
            tasks.extend(following);
            jwt_source = Some(link);
        }
    }
    let mut outbound = BTreeMap::new();
    for ((o, listener), upstream) in proxy
        .config
        .outbound
        .iter()
        .zip(outbound_listeners)
        .zip(&upstreams)
    {
        let (Some(listen), Some(listener)) = (o.listen, listener) else {
            continue;
        };
        outbound.insert(o.service.clone(), listen);
        tasks.push(tokio::spawn(outbound::run(
            listener,
            Arc::clone(upstream),
            Arc::clone(&proxy),
        )));
    }
    if let Some(listener) = interception_listener {
        tasks.push(tokio::spawn(crate::intercept::run(
            listener,
            upstreams,
            Arc::clone(&proxy),
        )));
    }
    let listening = Listening {
        inbound: proxy.config.inbound.listen,
        admin: proxy.config.admin.listen,
        outbound,
        interception: proxy.config.interception.as_ref().map(|i| i.listen),
    };
    if let Some((listener, selectors)) = workload_api {
        tasks.push(tokio::spawn(crate::workload_api::run(
            listener,
            crate::workload_api::WorkloadApi::new(Arc::clone(&proxy), selectors, jwt_source),
        )));
    }
    tasks.push(tokio::spawn(admin::run(admin_listener, Arc::clone(&proxy))));
    tasks.push(tokio::spawn(health::run(Arc::clone(&proxy))));
    let inbound = tokio::spawn(inbound::run(inbound_listener, Arc::clone(&proxy)));
    tracing::info!(
        service = %proxy.config.service.name,
        spiffe_id = %proxy.identity.current.borrow().svid.id(),
        policies = proxy.policies.current().bundle().len(),
        "signet-proxy started"
    );
    Ok(Running {
        proxy,
        listening,
        inbound,
        tasks,
    })
}

/// Starts following the control plane: the config and trust streams (waiting a little for
/// their first messages), registration and heartbeats, audit shipping, renewal.
async fn follow_control_plane(
    proxy: &Arc<Proxy>,
    cp: ControlPlaneConfig,
    upstreams: Vec<Arc<outbound::Upstream>>,
) -> Result<(Arc<control::Link>, Vec<JoinHandle<()>>), String> {
    let mut tasks = Vec::new();
    let td = signet_spiffe::TrustDomain::new(&cp.trust_domain)
        .map_err(|e| format!("control_plane.trust_domain: {e}"))?;
    let saved = control::saved_config(&cp.state_dir);
    let link = control::Link::new(cp, td, Arc::clone(proxy), upstreams)?;
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
        tracing::warn!("no configuration from the control plane yet; starting with what is kept");
    }
    tasks.push(tokio::spawn(Arc::clone(&link).register()));
    if let Some(dir) = proxy.config.audit_dir().filter(|_| proxy.audit.is_some()) {
        tasks.push(tokio::spawn(Arc::clone(&link).ship(dir)));
    }
    tasks.push(tokio::spawn(Arc::clone(&link).renew()));
    Ok((link, tasks))
}

impl Running {
    /// Drains: listeners close, connections in flight get `limits.drain_timeout` to finish,
    /// and the audit trail's last records are written and signed.
    pub async fn shutdown(self) {
        tracing::info!("draining");
        let proxy = self.proxy;
        proxy.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + proxy.config.limits.drain_timeout;
        while proxy.metrics.inbound_open.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.inbound.abort();
        for task in self.tasks {
            task.abort();
        }
        if let Some(audit) = &proxy.audit {
            audit.close().await;
        }
        tracing::info!("stopped");
    }
}
