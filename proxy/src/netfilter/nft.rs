//! The nftables rules: one table per family, `ip signet` and `ip6 signet`. A script declares
//! the table, deletes it and defines it again, so `nft -f` replaces a previous run's rules
//! in the same transaction, or changes nothing if any rule is refused.

use std::fmt::Write as _;

use super::Plan;

/// The table's name in each family.
pub const TABLE: &str = "signet";

fn family(v6: bool) -> &'static str {
    if v6 { "ip6" } else { "ip" }
}

/// A set (`{ a, b }`) or a single value, as nft takes them.
fn set<T: std::fmt::Display>(items: &[T]) -> String {
    match items {
        [one] => one.to_string(),
        _ => format!(
            "{{ {} }}",
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The script that installs `plan`'s rules, replacing any earlier ones.
pub fn install_script(plan: &Plan) -> String {
    let mut s = String::new();
    for &v6 in plan.families() {
        let family = family(v6);
        let daddr = if v6 { "ip6 daddr" } else { "ip daddr" };
        let _ = writeln!(
            s,
            "table {family} {TABLE}\ndelete table {family} {TABLE}\ntable {family} {TABLE} {{"
        );
        if let Some(port) = plan.outbound_port {
            let _ = writeln!(
                s,
                "  chain output {{\n    type nat hook output priority -100; policy accept;\n    \
                 meta l4proto != tcp return\n    oifname \"lo\" return\n    meta skuid {} return",
                plan.proxy_uid
            );
            if let Some(gid) = plan.proxy_gid {
                let _ = writeln!(s, "    meta skgid {gid} return");
            }
            let _ = writeln!(
                s,
                "    {daddr} {} return",
                set(&plan.outbound_passed_cidrs(v6))
            );
            if !plan.exclude_outbound_ports.is_empty() {
                let _ = writeln!(
                    s,
                    "    tcp dport {} return",
                    set(&plan.exclude_outbound_ports)
                );
            }
            for d in plan.outbound_passed_destinations(v6) {
                let _ = writeln!(s, "    {daddr} {} tcp dport {} return", d.ip(), d.port());
            }
            let _ = writeln!(s, "    meta l4proto tcp redirect to :{port}\n  }}");
        }
        if let Some(port) = plan.inbound_port {
            let _ = writeln!(
                s,
                "  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n    \
                 meta l4proto != tcp return\n    iifname \"lo\" return\n    tcp dport {} return\n    \
                 meta l4proto tcp redirect to :{port}\n  }}",
                set(&plan.inbound_passed())
            );
        }
        s.push_str("}\n");
    }
    s
}

/// The script that removes the rules: declaring each table first makes deleting it succeed
/// whether or not it was there.
pub fn remove_script(ipv6: bool) -> String {
    let families: &[bool] = if ipv6 { &[false, true] } else { &[false] };
    families
        .iter()
        .map(|&v6| {
            let family = family(v6);
            format!("table {family} {TABLE}\ndelete table {family} {TABLE}\n")
        })
        .collect()
}
