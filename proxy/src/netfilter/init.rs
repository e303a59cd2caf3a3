//! `signet-proxy init`: installs (or with `--remove`, removes) the redirection rules in the
//! current network namespace. The ports and exclusions come from the proxy's configuration
//! (inbound listener, interception listener, admin port, control plane), flags add to or
//! override them. `--dry-run` prints the rules instead.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Backend, Cidr, Plan, iptables, nft, parse_ports};
use crate::config::Config;

/// `signet-proxy init`'s arguments.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The proxy's configuration: the inbound and interception ports, the admin port and the
    /// control plane are taken from it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The user the proxy runs as; its own connections are never redirected. Required to
    /// install: the app must run as another user.
    #[arg(long, value_name = "UID")]
    pub proxy_uid: Option<u32>,
    /// The proxy's group, also never redirected.
    #[arg(long, value_name = "GID")]
    pub proxy_gid: Option<u32>,
    /// Where inbound connections go (default: `inbound.listen`'s port).
    #[arg(long, value_name = "PORT")]
    pub inbound_port: Option<u16>,
    /// Where the app's outbound connections go (default: `interception.listen`'s port).
    #[arg(long, value_name = "PORT")]
    pub outbound_port: Option<u16>,
    /// Leave inbound connections alone.
    #[arg(long)]
    pub no_inbound: bool,
    /// Leave the app's outbound connections alone.
    #[arg(long)]
    pub no_outbound: bool,
    /// Ports on the workload reached directly, comma-separated (the admin port always is).
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub exclude_inbound_ports: String,
    /// Destination ports the app reaches directly, comma-separated.
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub exclude_outbound_ports: String,
    /// Destination networks the app reaches directly, comma-separated (`10.1.0.0/16`).
    #[arg(long, value_name = "CIDRS", default_value = "")]
    pub exclude_outbound_cidrs: String,
    /// Which tool installs the rules.
    #[arg(long, value_enum, default_value = "nftables")]
    pub backend: Backend,
    /// IPv4 only (no `ip6` table, no ip6tables).
    #[arg(long)]
    pub no_ipv6: bool,
    /// Remove the rules instead (nothing else is needed).
    #[arg(long)]
    pub remove: bool,
    /// Print the rules instead of installing (or removing) them.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_cidrs(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::parse)
        .collect()
}

impl InitArgs {
    /// The plan the configuration and flags describe.
    pub fn plan(&self) -> Result<Plan, String> {
        let flag = |name: &'static str| move |e: String| format!("--{name}: {e}");
        let mut exclude_inbound_ports =
            parse_ports(&self.exclude_inbound_ports).map_err(flag("exclude-inbound-ports"))?;
        let exclude_outbound_ports =
            parse_ports(&self.exclude_outbound_ports).map_err(flag("exclude-outbound-ports"))?;
        let exclude_outbound_cidrs =
            parse_cidrs(&self.exclude_outbound_cidrs).map_err(flag("exclude-outbound-cidrs"))?;
        let config = match &self.config {
            Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let proxy_uid = self.proxy_uid.ok_or(
            "--proxy-uid is required: the proxy's own connections must not be redirected back to it",
        )?;
        let inbound_port = if self.no_inbound {
            None
        } else {
            Some(
                self.inbound_port
                    .or_else(|| config.as_ref().map(|c| c.inbound.listen.port()))
                    .ok_or("give --inbound-port or --config (or --no-inbound)")?,
            )
        };
        let outbound_port = if self.no_outbound {
            None
        } else {
            match (self.outbound_port, &config) {
                (Some(port), _) => Some(port),
                (None, Some(c)) => {
                    Some(c.interception.as_ref().map(|i| i.listen.port()).ok_or(
                        "the configuration has no [interception]: add it (or --no-outbound)",
                    )?)
                }
                (None, None) => {
                    return Err("give --outbound-port or --config (or --no-outbound)".to_owned());
                }
            }
        };
        let mut exclude_outbound_destinations = Vec::new();
        if let Some(c) = &config {
            // Scrapes and health checks reach the admin listener directly.
            if !c.admin.listen.ip().is_loopback() && c.admin.listen.port() != 0 {
                exclude_inbound_ports.push(c.admin.listen.port());
            }
            if let Some(cp) = &c.control_plane {
                exclude_outbound_destinations.extend(resolve(&cp.address)?);
            }
        }
        let plan = Plan {
            inbound_port,
            outbound_port,
            proxy_uid,
            proxy_gid: self.proxy_gid,
            exclude_inbound_ports,
            exclude_outbound_ports,
            exclude_outbound_cidrs,
            exclude_outbound_destinations,
            ipv6: !self.no_ipv6,
        };
        plan.check()?;
        Ok(plan)
    }

    /// Runs the command; what it did is one line on stdout, a problem one line in the error.
    pub fn run(&self) -> Result<(), String> {
        if self.remove {
            return self.run_remove();
        }
        let plan = self.plan()?;
        match self.backend {
            Backend::Nftables => {
                let script = nft::install_script(&plan);
                if self.dry_run {
                    print!("{script}");
                    return Ok(());
                }
                run_with_input("nft", &["-f", "-"], &script)?;
            }
            Backend::Iptables => {
                for &v6 in plan.families() {
                    let (tool, restore) = iptables::tools(v6);
                    let missing: Vec<&str> = iptables::JUMPS
                        .iter()
                        .filter(|(hook, chain)| {
                            self.dry_run || !succeeds(tool, &iptables::jump("-C", hook, chain))
                        })
                        .map(|(hook, _)| *hook)
                        .collect();
                    let input = iptables::restore_input(&plan, v6, &missing);
                    if self.dry_run {
                        print!("# {restore} --noflush\n{input}");
                        continue;
                    }
                    run_with_input(restore, &["--noflush"], &input)?;
                }
                if self.dry_run {
                    return Ok(());
                }
            }
        }
        println!("{}", summary(&plan, self.backend));
        Ok(())
    }

    fn run_remove(&self) -> Result<(), String> {
        let ipv6 = !self.no_ipv6;
        match self.backend {
            Backend::Nftables => {
                let script = nft::remove_script(ipv6);
                if self.dry_run {
                    print!("{script}");
                    return Ok(());
                }
                run_with_input("nft", &["-f", "-"], &script)?;
            }
            Backend::Iptables => {
                let families: &[bool] = if ipv6 { &[false, true] } else { &[false] };
                for &v6 in families {
                    let (tool, _) = iptables::tools(v6);
                    for (hook, chain) in iptables::JUMPS {
                        let delete = iptables::jump("-D", hook, chain);
                        if self.dry_run {
                            println!("{tool} {}", delete.join(" "));
                            println!("{tool} -t nat -F {chain}\n{tool} -t nat -X {chain}");
                            continue;
                        }
                        // Every copy of the jump, however many runs added one.
                        while succeeds(tool, &delete) {}
                        if succeeds(tool, &["-t", "nat", "-S", chain].map(str::to_owned)) {
                            run(tool, &["-t", "nat", "-F", chain])?;
                            run(tool, &["-t", "nat", "-X", chain])?;
                        }
                    }
                }
                if self.dry_run {
                    return Ok(());
                }
            }
        }
        println!(
            "signet-proxy init: interception rules removed ({}); traffic flows directly again",
            backend_name(self.backend)
        );
        Ok(())
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Nftables => "nftables",
        Backend::Iptables => "iptables",
    }
}

/// One line saying what is redirected where and what is left alone.
fn summary(plan: &Plan, backend: Backend) -> String {
    let mut parts = Vec::new();
    if let Some(port) = plan.inbound_port {
        parts.push(format!("inbound TCP -> :{port}"));
    }
    if let Some(port) = plan.outbound_port {
        parts.push(format!(
            "outbound TCP -> :{port} (except uid {})",
            plan.proxy_uid
        ));
    }
    format!(
        "signet-proxy init: interception rules installed ({}{}): {}",
        backend_name(backend),
        if plan.ipv6 {
            ", IPv4 and IPv6"
        } else {
            ", IPv4"
        },
        parts.join(", ")
    )
}

/// The control plane's addresses (its `host:port` may be a name).
fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    address
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| format!("control_plane.address `{address}`: {e}"))
}

fn succeeds(tool: &str, args: &[String]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(tool: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| not_found(tool, &e))?;
    check(tool, &output)
}

fn run_with_input(tool: &str, args: &[&str], input: &str) -> Result<(), String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| not_found(tool, &e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{tool}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{tool}: {e}"))?;
    check(tool, &output)
}

fn not_found(tool: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("`{tool}` is not installed (apt-get install nftables, or iptables)")
    } else {
        format!("{tool}: {e}")
    }
}

fn check(tool: &str, output: &std::process::Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    Err(format!("{tool}: {}", first.trim()))
}
