use super::*;

fn plan() -> Plan {
    Plan {
        inbound_port: Some(15006),
        outbound_port: Some(15001),
        proxy_uid: 1337,
        proxy_gid: None,
        exclude_inbound_ports: vec![22],
        exclude_outbound_ports: vec![5432, 9090],
        exclude_outbound_cidrs: vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        exclude_outbound_destinations: vec!["10.0.0.3:7443".parse().unwrap()],
        ipv6: true,
    }
}

#[test]
fn networks_parse_with_their_prefix_and_refuse_host_bits() {
    assert_eq!(
        "10.1.0.0/16".parse::<Cidr>().unwrap().to_string(),
        "10.1.0.0/16"
    );
    assert_eq!(
        "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
    assert_eq!(
        "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
        "0.0.0.0/0"
    );
    let err = "10.1.2.3/16".parse::<Cidr>().unwrap_err();
    assert!(
        err.contains("host bits set: the network is 10.1.0.0/16"),
        "{err}"
    );
    for bad in ["10.1.0.0/33", "10.1/16", "cart", "::/129", "10.0.0.0/x"] {
        assert!(
            bad.parse::<Cidr>().unwrap_err().contains("not a network"),
            "{bad}"
        );
    }
}

#[test]
fn port_lists_refuse_what_is_not_a_port() {
    assert_eq!(parse_ports("22, 9090,").unwrap(), vec![22, 9090]);
    assert_eq!(parse_ports("").unwrap(), Vec::<u16>::new());
    for bad in ["0", "65536", "ssh", "-1"] {
        assert!(
            parse_ports(bad).unwrap_err().contains("is not a port"),
            "{bad}"
        );
    }
}

#[test]
fn the_nft_script_replaces_one_table_per_family_and_skips_what_it_must() {
    let script = nft::install_script(&plan());
    // Replaced whole, in one transaction, per family.
    for family in ["ip", "ip6"] {
        assert!(
            script.contains(&format!(
                "table {family} signet\ndelete table {family} signet\ntable {family} signet {{"
            )),
            "{script}"
        );
    }
    let v4 = &script[..script.find("table ip6").unwrap()];
    let v6 = &script[script.find("table ip6").unwrap()..];
    // The proxy's own connections and loopback are never redirected, before anything else.
    let skuid = v4.find("meta skuid 1337 return").unwrap();
    let redirect = v4.find("redirect to :15001").unwrap();
    assert!(skuid < redirect);
    assert!(
        v4.contains("ip daddr { 127.0.0.0/8, 10.1.0.0/16 } return"),
        "{v4}"
    );
    assert!(
        v6.contains("ip6 daddr { ::1/128, fd00::/8 } return"),
        "{v6}"
    );
    assert!(v4.contains("tcp dport { 5432, 9090 } return"));
    assert!(v4.contains("ip daddr 10.0.0.3 tcp dport 7443 return"));
    assert!(
        !v6.contains("10.0.0.3"),
        "an IPv4 destination in the ip6 table: {v6}"
    );
    // Inbound: the listener's own port and the excluded ones pass, the rest goes to it.
    assert!(v4.contains("tcp dport { 22, 15006 } return"), "{v4}");
    assert!(v4.contains("meta l4proto tcp redirect to :15006"));
    assert!(v4.contains("iifname \"lo\" return"));
}

#[test]
fn one_direction_alone_installs_only_its_chain() {
    let inbound_only = Plan {
        outbound_port: None,
        ipv6: false,
        ..plan()
    };
    let script = nft::install_script(&inbound_only);
    assert!(!script.contains("chain output"), "{script}");
    assert!(script.contains("chain prerouting"));
    assert!(!script.contains("ip6"));
    let rules = iptables::restore_input(&inbound_only, false, &["PREROUTING", "OUTPUT"]);
    assert!(!rules.contains("REDIRECT --to-ports 15001"), "{rules}");
    assert!(rules.contains("-A SIGNET_INBOUND -p tcp -j REDIRECT --to-ports 15006"));
}

#[test]
fn iptables_rules_fill_both_chains_in_one_commit_and_add_only_missing_jumps() {
    let rules = iptables::restore_input(&plan(), false, &["OUTPUT"]);
    assert!(rules.starts_with("*nat\n:SIGNET_INBOUND - [0:0]\n:SIGNET_OUTPUT - [0:0]\n-F SIGNET_INBOUND\n-F SIGNET_OUTPUT\n"));
    assert!(rules.ends_with("COMMIT\n"));
    assert!(rules.contains("-A SIGNET_OUTPUT -m owner --uid-owner 1337 -j RETURN"));
    assert!(rules.contains("-A SIGNET_OUTPUT -d 10.1.0.0/16 -j RETURN"));
    assert!(!rules.contains("fd00::/8"));
    assert!(rules.contains("-A SIGNET_OUTPUT -d 10.0.0.3 -p tcp --dport 7443 -j RETURN"));
    assert!(rules.contains("-A SIGNET_INBOUND -p tcp --dport 22 -j RETURN"));
    assert!(rules.contains("-A OUTPUT -p tcp -j SIGNET_OUTPUT"));
    assert!(
        !rules.contains("-A PREROUTING"),
        "the jump is there already: {rules}"
    );
    let owner = rules.find("--uid-owner").unwrap();
    assert!(owner < rules.find("REDIRECT --to-ports 15001").unwrap());
    let v6 = iptables::restore_input(&plan(), true, &[]);
    assert!(v6.contains("-A SIGNET_OUTPUT -d ::1/128 -j RETURN"));
    assert!(v6.contains("-A SIGNET_OUTPUT -d fd00::/8 -j RETURN"));
}

#[test]
fn a_plan_that_redirects_nothing_or_into_a_hole_is_refused() {
    let nothing = Plan {
        inbound_port: None,
        outbound_port: None,
        ..plan()
    };
    assert!(nothing.check().unwrap_err().contains("nothing to redirect"));
    let zero = Plan {
        outbound_port: Some(0),
        ..plan()
    };
    assert!(zero.check().unwrap_err().contains("fixed port"));
    let clash = Plan {
        exclude_inbound_ports: vec![15006],
        ..plan()
    };
    assert!(clash.check().unwrap_err().contains("also an excluded"));
    assert_eq!(plan().check(), Ok(()));
}

#[test]
fn removal_scripts_succeed_whether_or_not_the_rules_are_there() {
    assert_eq!(
        nft::remove_script(true),
        "table ip signet\ndelete table ip signet\ntable ip6 signet\ndelete table ip6 signet\n"
    );
    assert_eq!(
        iptables::jump("-D", "OUTPUT", "SIGNET_OUTPUT").join(" "),
        "-t nat -D OUTPUT -p tcp -j SIGNET_OUTPUT"
    );
}
