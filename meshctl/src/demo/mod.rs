//! `meshctl demo`: a whole mesh on this machine. A control plane on its embedded defaults
//! (SQLite, built-in CA), the apps (frontend, cart over HTTP/1.1 in two versions with a v2
//! canary, payments over gRPC) each behind its own `signet-proxy` that joined with a one-time
//! token, the demo policies and traffic settings applied, and traffic that is allowed and
//! denied, split between the cart's versions and with a fault injected, summarized with the
//! deciding policies.
//!
//! Nothing is downloaded: `signet-cp` and `signet-proxy` are found beside `meshctl` or on
//! PATH. Ctrl-C (or `--duration`) stops every process; a temporary data dir is removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::Value;

use crate::Outcome;
use crate::cp::Client;

mod apps;
mod process;
mod traffic;

use process::Process;
use traffic::{Flow, Tally};

/// The demo's policies (also written to the data dir for editing).
const POLICIES: &str = include_str!("../../../deploy/examples/demo/shop.cedar");
/// The demo's traffic settings: the cart's v2 canary and an injected fault.
const TRAFFIC: &str = include_str!("../../../deploy/examples/demo/traffic.yaml");
const TRUST_DOMAIN: &str = "signet.local";
const NAMESPACE: &str = "shop";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep everything here (default: a temporary directory, removed on exit).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Stop after this long and check that every flow was decided as the policies say
    /// (default: run until Ctrl-C).
    #[arg(long, value_parser = crate::duration::parse, value_name = "DURATION")]
    duration: Option<Duration>,
}

/// Where `name` is: beside this executable, else on PATH.
fn find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    beside.or_else(on_path).ok_or_else(|| {
        anyhow!("`{name}` is not beside meshctl or on PATH; build everything first: cargo build --release")
    })
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let cp_bin = find_binary("signet-cp")?;
    let proxy_bin = find_binary("signet-proxy")?;
    let (dir, _temp) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating `{}`", d.display()))?;
            (std::fs::canonicalize(d)?, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("signet-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        runtime.spawn(async move {
            stop_signal().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut mesh = Mesh {
        dir,
        processes: Vec::new(),
    };
    let result = mesh.run(&cp_bin, &proxy_bin, &runtime, &stop, args.duration);
    mesh.stop();
    let result = result?;
    // Every proxy signed its last records on the way out: the whole trail verifies.
    let (ok, reports) = crate::audit::verify::verify_tree(&mesh.dir)?;
    let records: u64 = reports
        .iter()
        .flat_map(|(_, r)| r.chains.values())
        .map(|c| c.records)
        .sum();
    if !ok {
        for (spool, report) in &reports {
            for f in report.findings.iter().filter(|f| f.kind.is_failure()) {
                println!("  {spool}: {f}");
            }
        }
        return Err(anyhow!("the demo's audit trail does not verify"));
    }
    println!(
        "audit: {records} records in {} chains (the proxies' decisions, the control plane's issuance, policy and operator events; and the control plane's copies of the proxies' chains) hash-chained, signed and verified (meshctl audit verify --data-dir {})",
        reports.len(),
        mesh.dir.display()
    );
    Ok(result)
}

/// Ctrl-C, or SIGTERM or SIGHUP (a supervisor, `timeout`, a closed terminal): each stops
/// the demo the same way, its processes in order. The children run in their own process
/// group, so without this a SIGTERM to `meshctl` alone would leave them running.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

/// The demo's processes; stopped (SIGTERM, then kill) when the demo ends, however it ends.
struct Mesh {
    dir: PathBuf,
    processes: Vec<Process>,
}

/// What a proxy needs to join the demo's control plane.
struct Join<'a> {
    proxy_bin: &'a Path,
    client: &'a Client,
    grpc: &'a str,
    ca: &'a Path,
}

/// One demo service's proxy.
#[derive(Clone, Copy)]
struct ProxySpec<'a> {
    /// Its name here (its directory and log); one service may have several proxies.
    name: &'a str,
    service: &'a str,
    /// Its endpoint's labels (a TOML inline table), what traffic subsets select by.
    labels: &'a str,
    app: std::net::SocketAddr,
    app_protocol: &'a str,
    upstreams: &'a [&'a str],
}

struct ProxyInfo {
    admin: String,
    outbound: Value,
}

impl Mesh {
    fn stop(&mut self) {
        for p in self.processes.iter_mut().rev() {
            p.terminate();
        }
    }

    /// Starts a proxy; [`Mesh::announced`] waits for it to listen (so they start together).
    fn start_proxy(&mut self, join: &Join<'_>, spec: &ProxySpec<'_>) -> anyhow::Result<usize> {
        let ProxySpec {
            name,
            service,
            labels,
            app,
            app_protocol,
            upstreams,
        } = *spec;
        let (client, grpc, ca) = (join.client, join.grpc, join.ca);
        let home = self.dir.join(name);
        std::fs::create_dir_all(&home)?;
        let id = format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service}");
        let token = client.post(
            "/v1/tokens",
            &signet_cp::model::TokenRequest {
                spiffe_id: id.clone(),
                ttl_seconds: Some(300),
            },
        )?;
        let token: signet_cp::model::TokenCreated = crate::cp::read_as(&token, "/v1/tokens")?;
        let token_file = home.join("join-token");
        std::fs::write(&token_file, &token.token)?;
        let mut toml = format!(
            "# signet-proxy beside the demo's {service} app.\n\
             [service]\nname = \"{service}\"\nnamespace = \"{NAMESPACE}\"\n\n\
             [control_plane]\naddress = \"{grpc}\"\nca = \"{}\"\ntrust_domain = \"{TRUST_DOMAIN}\"\n\
             join_token = \"@{}\"\nstate_dir = \"state\"\nendpoint_labels = {labels}\n\n\
             [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"{app}\"\napp_protocol = \"{app_protocol}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            ca.display(),
            token_file.display()
        );
        for upstream in upstreams {
            toml.push_str(&format!(
                "\n[[outbound]]\nservice = \"{upstream}\"\nlisten = \"127.0.0.1:0\"\n"
            ));
        }
        let config = home.join("proxy.toml");
        std::fs::write(&config, toml)?;
        let process = Process::start(
            join.proxy_bin,
            &["--config".as_ref(), config.as_os_str()],
            &self.dir.join("logs").join(format!("{name}-proxy.log")),
        )?;
        self.processes.push(process);
        Ok(self.processes.len() - 1)
    }

    /// What the proxy started as `index` listens on, once it does.
    fn announced(&mut self, index: usize, name: &str) -> anyhow::Result<ProxyInfo> {
        let line = self.processes[index]
            .first_line(Duration::from_secs(30))
            .with_context(|| format!("starting the {name} proxy"))?;
        let listening = line.get("listening").cloned().unwrap_or(Value::Null);
        Ok(ProxyInfo {
            admin: crate::cp::text(&listening, "admin"),
            outbound: listening.get("outbound").cloned().unwrap_or(Value::Null),
        })
    }

    fn run(
        &mut self,
        cp_bin: &Path,
        proxy_bin: &Path,
        runtime: &tokio::runtime::Runtime,
        stop: &AtomicBool,
        duration: Option<Duration>,
    ) -> anyhow::Result<Outcome> {
        let dir = self.dir.clone();
        std::fs::create_dir_all(dir.join("logs"))?;
        println!("Signet demo mesh in {}", dir.display());

        // The control plane, on its embedded defaults.
        let cp_dir = dir.join("cp");
        let mut cp = Process::start(
            cp_bin,
            &[
                "--data-dir".as_ref(),
                cp_dir.as_os_str(),
                "--grpc-listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--api-listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--metrics-listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--heartbeat-interval".as_ref(),
                "2s".as_ref(),
            ],
            &dir.join("logs").join("signet-cp.log"),
        )?;
        let started = cp.first_line(Duration::from_secs(30));
        self.processes.push(cp);
        let started = started.context("starting signet-cp")?;
        let grpc = crate::cp::text(&started, "grpc");
        let env_file = PathBuf::from(crate::cp::text(&started, "env"));
        let env = std::fs::read_to_string(&env_file)
            .with_context(|| format!("reading `{}`", env_file.display()))?;
        let setting = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("`{}` has no {key}", env_file.display()))
        };
        let ca = PathBuf::from(setting("SIGNET_CA")?);
        let client = Client::new(
            &setting("SIGNET_CP")?,
            Some(setting("SIGNET_TOKEN")?),
            std::fs::read_to_string(&ca)?,
        )?;
        let cp_metrics = crate::cp::text(&started, "metrics");
        println!(
            "  control plane   grpc {grpc}, api {}, metrics http://{cp_metrics}/metrics",
            setting("SIGNET_CP")?
        );

        let (console, code_seconds) = crate::cp::console::sign_in_link(&client)?;
        println!(
            "  console         {console}\n                  (signs you in once, within {code_seconds}s; later: meshctl console)"
        );

        // The demo policies, applied as version 1 (and kept for editing).
        std::fs::create_dir_all(dir.join("policies"))?;
        let policy_file = dir.join("policies").join("shop.cedar");
        std::fs::write(&policy_file, POLICIES)?;
        let applied = client.post(
            "/v1/policies",
            &signet_cp::model::PolicyApplyRequest {
                files: vec![signet_cp::model::PolicyFile {
                    name: "shop.cedar".to_owned(),
                    text: POLICIES.to_owned(),
                }],
                message: "meshctl demo".to_owned(),
                expected_version: None,
                dry_run: false,
                // From nothing allowed to the demo's access: a widening the demo's own
                // operator (the admin) accepts.
                allow_widening: true,
                wait_seconds: None,
            },
        )?;
        let applied: signet_cp::model::Applied = crate::cp::read_as(&applied, "/v1/policies")?;
        println!(
            "  policies        version {}: {} policies from {}",
            applied.version,
            applied.policies,
            policy_file.display()
        );

        // The traffic settings, as version 1 (and kept for editing), applied on a client
        // of its own while the proxies start: they take it with their first configuration
        // or as an update, and the first flow waits for the frontend to have it.
        let traffic_file = dir.join("policies").join("traffic.yaml");
        std::fs::write(&traffic_file, TRAFFIC)?;
        let traffic_client = Client::new(
            &setting("SIGNET_CP")?,
            Some(setting("SIGNET_TOKEN")?),
            std::fs::read_to_string(&ca)?,
        )?;
        let traffic_applied = std::thread::spawn(move || {
            traffic_client.post(
                "/v1/traffic",
                &signet_cp::model::TrafficApplyRequest {
                    document: TRAFFIC.to_owned(),
                    file: Some("traffic.yaml".to_owned()),
                    dry_run: false,
                    wait_seconds: Some(0),
                },
            )
        });

        // The apps, then a proxy beside each, all starting at once.
        let apps = runtime.block_on(apps::start())?;
        let join = Join {
            proxy_bin,
            client: &client,
            grpc: &grpc,
            ca: &ca,
        };
        let specs = [
            ProxySpec {
                name: "payments",
                service: "payments",
                labels: "{}",
                app: apps.payments,
                app_protocol: "http2",
                upstreams: &[],
            },
            ProxySpec {
                name: "cart",
                service: "cart",
                labels: "{ version = \"v1\" }",
                app: apps.cart,
                app_protocol: "http1",
                upstreams: &["payments"],
            },
            ProxySpec {
                name: "cart-v2",
                service: "cart",
                labels: "{ version = \"v2\" }",
                app: apps.cart_v2,
                app_protocol: "http1",
                upstreams: &["payments"],
            },
            ProxySpec {
                name: "frontend",
                service: "frontend",
                labels: "{}",
                app: apps.frontend,
                app_protocol: "http1",
                upstreams: &["cart", "payments"],
            },
        ];
        let started: Vec<usize> = specs
            .iter()
            .map(|spec| self.start_proxy(&join, spec))
            .collect::<anyhow::Result<_>>()?;
        let traffic = traffic_applied
            .join()
            .map_err(|_| anyhow!("applying the traffic settings panicked"))??;
        let traffic_version =
            crate::cp::read_as::<signet_cp::model::TrafficApplied>(&traffic, "/v1/traffic")?
                .version;
        println!(
            "  traffic         version {traffic_version}: cart v2 canary at 10 %, a fault injected on the frontend's checkouts, from {}",
            traffic_file.display()
        );
        let mut proxies = Vec::new();
        for (spec, index) in specs.iter().zip(started) {
            proxies.push(self.announced(index, spec.name)?);
        }
        let [payments, cart, cart_v2, frontend] = <[ProxyInfo; 4]>::try_from(proxies)
            .map_err(|_| anyhow!("the demo starts four proxies"))?;
        for (name, p, app) in [
            ("frontend", &frontend, apps.frontend),
            ("cart v1", &cart, apps.cart),
            ("cart v2", &cart_v2, apps.cart_v2),
            ("payments (gRPC)", &payments, apps.payments),
        ] {
            println!("  {name:<15} app {app}, proxy admin http://{}", p.admin);
        }
        let outbound = |p: &ProxyInfo, svc: &str| -> anyhow::Result<String> {
            p.outbound
                .get(svc)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the proxy has no outbound port for {svc}"))
        };
        let flows = vec![
            Flow::http(
                "frontend -> cart",
                outbound(&frontend, "cart")?,
                "/api/cart",
                &cart.admin,
            )
            .rounds_of(10),
            Flow::http(
                "frontend -> cart checkout",
                outbound(&frontend, "cart")?,
                "/api/checkout",
                &cart.admin,
            )
            .rounds_of(10)
            .with_faults(),
            Flow::grpc(
                "cart -> payments (gRPC)",
                outbound(&cart, "payments")?,
                "/demo.Payments/Charge",
                &payments.admin,
            ),
            Flow::http(
                "frontend -> payments",
                outbound(&frontend, "payments")?,
                "/api/charge",
                &payments.admin,
            ),
        ];

        // Endpoints reach the callers' proxies once every proxy registered.
        runtime.block_on(traffic::wait_for_traffic_version(
            &frontend.admin,
            traffic_version,
            Duration::from_secs(20),
        ))?;
        runtime.block_on(traffic::wait_for_endpoints(&flows, Duration::from_secs(20)))?;
        println!();
        println!("Try, in another terminal, while this runs:");
        println!("  set -a; . {}; set +a", env_file.display());
        println!("  meshctl identity inspect cart");
        println!("  meshctl proxies list");
        println!(
            "  meshctl authz apply -f {}   # after editing it",
            policy_file.display()
        );
        println!("  meshctl stats --edges --watch          # live golden signals per edge");
        println!(
            "  meshctl traffic split cart             # the canary's share, configured and observed"
        );
        println!(
            "  meshctl traffic apply -f {}   # shift the canary, drop the fault",
            traffic_file.display()
        );
        println!("  curl -s http://{}/metrics | grep authz", payments.admin);
        println!(
            "  curl -s http://{}/metrics | grep http_request_duration",
            payments.admin
        );
        println!("  curl -s http://{cp_metrics}/metrics   # the control plane's own");
        println!("  docs/observability.md: tracing (OTLP), access logs, dashboards");
        println!("Ctrl-C stops everything.");
        println!();

        let mut tallies: Vec<Tally> = flows.iter().map(|_| Tally::default()).collect();
        let begun = Instant::now();
        let mut last_print = Instant::now();
        loop {
            for (flow, tally) in flows.iter().zip(tallies.iter_mut()) {
                for _ in 0..flow.per_round {
                    let result = runtime.block_on(flow.send());
                    tally.record(result);
                }
            }
            let done =
                stop.load(Ordering::SeqCst) || duration.is_some_and(|d| begun.elapsed() >= d);
            if done || last_print.elapsed() >= Duration::from_secs(5) {
                let allows: Vec<Vec<String>> = flows
                    .iter()
                    .map(|f| runtime.block_on(f.allow_policies()))
                    .collect();
                traffic::print_summary(&flows, &tallies, &allows, begun.elapsed());
                last_print = Instant::now();
            }
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if duration.is_some() {
            traffic::check(&flows, &tallies)?;
            println!("demo: every flow was decided as the policies say");
        }
        if stop.load(Ordering::SeqCst) {
            println!("stopping");
        }
        Ok(Outcome::Success)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_traffic_settings_are_a_valid_document_with_a_canary_and_a_fault() {
        let doc = signet_traffic::load(super::TRAFFIC, "traffic.yaml")
            .unwrap_or_else(|e| panic!("{:?}", e.problems));
        let json = doc.to_json();
        assert!(json.contains("\"v2\""), "{json}");
        assert!(json.contains("\"abort\""), "{json}");
    }
}
