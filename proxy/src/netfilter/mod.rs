//! The rules `signet-proxy init` installs in a workload's network namespace so that its
//! TCP goes through the proxy without the app knowing: connections arriving for the app
//! are redirected to the inbound (mTLS) listener, connections the app makes to the
//! interception listener, which reads where they were going (`SO_ORIGINAL_DST`).
//!
//! A [`Plan`] says what to redirect and what to leave alone; [`nft`] and [`iptables`] turn it
//! into each backend's rules, installed in one transaction (a table or chains of Signet's
//! own, replaced whole on a second run, so nothing half-applied is ever left) and removed
//! the same way.

pub mod cidr;
pub mod init;
pub mod iptables;
pub mod nft;

use std::net::SocketAddr;

pub use cidr::Cidr;

/// What to redirect, and what to leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Connections arriving for the workload go to this port (the inbound listener); none:
    /// inbound traffic is left alone.
    pub inbound_port: Option<u16>,
    /// Connections the workload makes go to this port (the interception listener); none:
    /// outbound traffic is left alone.
    pub outbound_port: Option<u16>,
    /// The proxy's own user: its connections (to upstreams, the control plane, passthrough
    /// destinations) must never come back to it.
    pub proxy_uid: u32,
    /// The proxy's group, also left alone when given.
    pub proxy_gid: Option<u32>,
    /// Ports on the workload that are reached directly (ssh, a metrics port).
    pub exclude_inbound_ports: Vec<u16>,
    /// Destination ports the workload reaches directly.
    pub exclude_outbound_ports: Vec<u16>,
    /// Destination networks the workload reaches directly.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Destinations reached directly (the control plane, for `meshctl` in the workload).
    pub exclude_outbound_destinations: Vec<SocketAddr>,
    /// Also IPv6 (`ip6` table, `ip6tables`).
    pub ipv6: bool,
}

impl Plan {
    /// Checks what the types cannot; one line per problem.
    pub fn check(&self) -> Result<(), String> {
        if self.inbound_port.is_none() && self.outbound_port.is_none() {
            return Err("nothing to redirect: neither inbound nor outbound".to_owned());
        }
        for (what, port) in [
            ("inbound port", self.inbound_port),
            ("outbound port", self.outbound_port),
        ] {
            if port == Some(0) {
                return Err(format!(
                    "the {what} is 0: the rules need the listener's fixed port"
                ));
            }
        }
        if let Some(port) = self.inbound_port
            && self.exclude_inbound_ports.contains(&port)
        {
            return Err(format!(
                "the inbound port {port} is also an excluded inbound port"
            ));
        }
        Ok(())
    }

    /// The inbound ports left alone: the excluded ones and the inbound listener's own
    /// (a peer dialing it directly is already where it should be).
    fn inbound_passed(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .exclude_inbound_ports
            .iter()
            .copied()
            .chain(self.inbound_port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The excluded networks of one family, with that family's loopback first.
    fn outbound_passed_cidrs(&self, v6: bool) -> Vec<Cidr> {
        let loopback = if v6 {
            Cidr::new(std::net::Ipv6Addr::LOCALHOST.into(), 128)
        } else {
            Cidr::new(std::net::Ipv4Addr::new(127, 0, 0, 0).into(), 8)
        };
        std::iter::once(loopback)
            .chain(
                self.exclude_outbound_cidrs
                    .iter()
                    .copied()
                    .filter(|c| c.is_v6() == v6),
            )
            .collect()
    }

    /// The excluded destinations of one family.
    fn outbound_passed_destinations(&self, v6: bool) -> Vec<SocketAddr> {
        self.exclude_outbound_destinations
            .iter()
            .copied()
            .filter(|d| d.is_ipv6() == v6)
            .collect()
    }

    /// The families the rules cover.
    fn families(&self) -> &'static [bool] {
        if self.ipv6 { &[false, true] } else { &[false] }
    }
}

/// Which tool installs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `nft`: one table per family (`ip signet`, `ip6 signet`), replaced and deleted whole.
    Nftables,
    /// `iptables-restore`/`ip6tables-restore`: chains `SIGNET_INBOUND` and `SIGNET_OUTPUT`
    /// in the nat table, jumped to from `PREROUTING` and `OUTPUT`.
    Iptables,
}

/// Comma-separated ports, as the flags take them.
pub fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("`{p}` is not a port (1-65535)")),
            Ok(port) => Ok(port),
        })
        .collect()
}

#[cfg(test)]
mod tests;
