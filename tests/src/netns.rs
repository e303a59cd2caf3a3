//! Hosts on one LAN, made of network namespaces: each host a namespace with `eth0` at
//! `10.77.0.<n>/24`, all cabled (veth pairs) to a bridge in a hub namespace of their own, so
//! nothing touches the machine's own network. Namespaces are isolated, so every test's LAN
//! may use the same addresses and fixed ports. Needs root and iproute2; the interception
//! tests also need nftables and iptables (the test command installs them).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A LAN of hosts, torn down on drop (stop what runs on it first).
#[derive(Debug)]
pub struct Lan {
    hub: String,
    hosts: Vec<String>,
}

/// One host of a [`Lan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host(usize);

impl Host {
    /// Its address.
    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, u8::try_from(self.0 + 1).expect("a few hosts"))
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static LANS: AtomicU32 = AtomicU32::new(0);

impl Lan {
    /// A LAN of `n` hosts: `Host(0)` is 10.77.0.1, and so on.
    pub fn new(n: usize) -> (Self, Vec<Host>) {
        let id = format!(
            "sg{}x{}",
            std::process::id(),
            LANS.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{id}hub");
        ip(&["netns", "add", &hub]);
        let mut lan = Self {
            hub,
            hosts: Vec::new(),
        };
        ip(&["-n", &lan.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan.hub, "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for i in 0..n {
            let name = format!("{id}h{i}");
            ip(&["netns", "add", &name]);
            lan.hosts.push(name.clone());
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port,
                "netns", &lan.hub,
            ]);
            ip(&["-n", &lan.hub, "link", "set", &port, "master", "br0", "up"]);
            let host = Host(i);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/24", host.ip()),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            hosts.push(host);
        }
        (lan, hosts)
    }

    /// The namespace's name.
    pub fn netns(&self, host: Host) -> &str {
        &self.hosts[host.0]
    }

    /// `program` to be run on `host`.
    pub fn command(&self, host: Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.netns(host)])
            .arg(program);
        command
    }

    /// Runs `program args` on `host` as an unprivileged user (nobody), as an app would run.
    pub fn run_as_app(&self, host: Host, program: &str, args: &[&str]) -> Output {
        self.command(host, "setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
            .args(args)
            .output()
            .expect("run setpriv")
    }

    /// Runs `program args` on `host` as root.
    pub fn run(&self, host: Host, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.command(host, program)
            .args(args)
            .output()
            .expect("run a command in a namespace")
    }

    /// Names `host` resolves (its `/etc/hosts`, which `ip netns exec` mounts from
    /// `/etc/netns/<name>/hosts`).
    pub fn resolve(&self, host: Host, names: &[(&str, Host)]) {
        let dir = self.etc(host);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<name>");
        let mut hosts = "127.0.0.1 localhost\n".to_owned();
        for (name, at) in names {
            hosts.push_str(&format!("{} {name}\n", at.ip()));
        }
        std::fs::write(dir.join("hosts"), hosts).expect("write the namespace's hosts file");
    }

    fn etc(&self, host: Host) -> PathBuf {
        PathBuf::from("/etc/netns").join(self.netns(host))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (i, name) in self.hosts.iter().enumerate() {
            let _ = std::fs::remove_dir_all(self.etc(Host(i)));
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .status();
    }
}

/// Whether this machine can make a LAN (root, iproute2, network namespaces); the reason if
/// not.
pub fn unavailable() -> Option<String> {
    let probe = format!(
        "sgprobe{}x{}",
        std::process::id(),
        LANS.fetch_add(1, Ordering::Relaxed)
    );
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("ip: {e}")),
    }
}
