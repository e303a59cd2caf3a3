//! The iptables rules: chains `SIGNET_INBOUND` and `SIGNET_OUTPUT` in the nat table, jumped
//! to from `PREROUTING` and `OUTPUT`. Both chains are declared (so created or emptied) and
//! filled in one `iptables-restore --noflush` commit; the jumps are added only where they are
//! missing, so a second run replaces the rules rather than stacking them.

use std::fmt::Write as _;

use super::Plan;

/// The chain inbound connections go through.
pub const INBOUND: &str = "SIGNET_INBOUND";
/// The chain the workload's own connections go through.
pub const OUTPUT: &str = "SIGNET_OUTPUT";

/// Each chain with the built-in chain that jumps to it.
pub const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND), ("OUTPUT", OUTPUT)];

/// The tools of one family.
pub fn tools(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("ip6tables", "ip6tables-restore")
    } else {
        ("iptables", "iptables-restore")
    }
}

/// The arguments that check (`-C`), add (`-A`) or delete (`-D`) the rule in `hook` that
/// jumps to `chain`.
pub fn jump(op: &str, hook: &str, chain: &str) -> Vec<String> {
    ["-t", "nat", op, hook, "-p", "tcp", "-j", chain]
        .map(str::to_owned)
        .to_vec()
}

/// The `iptables-restore --noflush` input that installs `plan`'s rules for one family;
/// `missing_jumps` are the built-in chains that do not jump to Signet's yet.
pub fn restore_input(plan: &Plan, v6: bool, missing_jumps: &[&str]) -> String {
    let mut s = format!("*nat\n:{INBOUND} - [0:0]\n:{OUTPUT} - [0:0]\n-F {INBOUND}\n-F {OUTPUT}\n");
    if let Some(port) = plan.outbound_port {
        let _ = writeln!(s, "-A {OUTPUT} -o lo -j RETURN");
        let _ = writeln!(
            s,
            "-A {OUTPUT} -m owner --uid-owner {} -j RETURN",
            plan.proxy_uid
        );
        if let Some(gid) = plan.proxy_gid {
            let _ = writeln!(s, "-A {OUTPUT} -m owner --gid-owner {gid} -j RETURN");
        }
        for cidr in plan.outbound_passed_cidrs(v6) {
            let _ = writeln!(s, "-A {OUTPUT} -d {cidr} -j RETURN");
        }
        for p in &plan.exclude_outbound_ports {
            let _ = writeln!(s, "-A {OUTPUT} -p tcp --dport {p} -j RETURN");
        }
        for d in plan.outbound_passed_destinations(v6) {
            let _ = writeln!(
                s,
                "-A {OUTPUT} -d {} -p tcp --dport {} -j RETURN",
                d.ip(),
                d.port()
            );
        }
        let _ = writeln!(s, "-A {OUTPUT} -p tcp -j REDIRECT --to-ports {port}");
    }
    if let Some(port) = plan.inbound_port {
        let _ = writeln!(s, "-A {INBOUND} -i lo -j RETURN");
        for p in plan.inbound_passed() {
            let _ = writeln!(s, "-A {INBOUND} -p tcp --dport {p} -j RETURN");
        }
        let _ = writeln!(s, "-A {INBOUND} -p tcp -j REDIRECT --to-ports {port}");
    }
    for (hook, chain) in JUMPS {
        if missing_jumps.contains(&hook) {
            let _ = writeln!(s, "-A {hook} -p tcp -j {chain}");
        }
    }
    s.push_str("COMMIT\n");
    s
}
