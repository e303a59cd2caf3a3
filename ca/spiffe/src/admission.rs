//! Admission before authentication: how many TLS handshakes a listener runs at once, in all
//! and per source address.
//!
//! Until a handshake completes a peer is nobody, so what it may hold must be small and
//! separate from what authenticated peers use: a flood of connections that never finish a
//! handshake then fills this budget (and, from one address, only that address's share of it)
//! instead of the connection slots the mesh's real traffic needs. Used by the proxy's
//! inbound listener and both control-plane listeners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The budget of one listener.
#[derive(Debug)]
pub struct Admission {
    total: usize,
    per_source: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_progress: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every handshake slot is taken.
    #[error("too many handshakes in progress")]
    Full,
    /// This source's share is taken.
    #[error("too many handshakes in progress from this address")]
    SourceFull,
}

impl Refusal {
    /// A short, stable label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Full => "handshake-limit",
            Self::SourceFull => "source-handshake-limit",
        }
    }
}

/// A handshake slot, given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self
            .admission
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.in_progress = state.in_progress.saturating_sub(1);
        if let Some(n) = state.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.by_source.remove(&self.source);
            }
        }
    }
}

impl Admission {
    /// At most `total` handshakes at once, `per_source` of them from one address (IPv6
    /// sources count by their /64, which one host usually holds whole).
    pub fn new(total: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            total: total.max(1),
            per_source: per_source.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// A slot for a handshake from `source`, or why there is none.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Ticket, Refusal> {
        let source = prefix_of(source);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.in_progress >= self.total {
            return Err(Refusal::Full);
        }
        let mine = state.by_source.entry(source).or_default();
        if *mine >= self.per_source {
            return Err(Refusal::SourceFull);
        }
        *mine += 1;
        state.in_progress += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            source,
        })
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_progress
    }
}

/// The key a source is counted under: the address, or for IPv6 its /64.
fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_gets_its_share_and_others_still_get_in() {
        let admission = Admission::new(10, 3);
        let flood: Vec<Ticket> = (0..3)
            .map(|_| admission.admit(ip("10.0.0.9")).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip("10.0.0.9")).unwrap_err(),
            Refusal::SourceFull
        );
        let other = admission.admit(ip("10.0.0.7")).unwrap();
        assert_eq!(admission.in_progress(), 4);
        drop(flood);
        assert_eq!(admission.in_progress(), 1);
        assert!(admission.admit(ip("10.0.0.9")).is_ok());
        drop(other);
    }

    #[test]
    fn the_total_is_a_hard_cap() {
        let admission = Admission::new(4, 4);
        let held: Vec<Ticket> = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .map(|s| admission.admit(ip(s)).unwrap())
            .collect();
        assert_eq!(admission.admit(ip("10.0.0.5")).unwrap_err(), Refusal::Full);
        drop(held);
        assert_eq!(admission.in_progress(), 0);
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let admission = Admission::new(10, 2);
        let _a = admission.admit(ip("2001:db8::1")).unwrap();
        let _b = admission.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::ffff")).unwrap_err(),
            Refusal::SourceFull
        );
        assert!(admission.admit(ip("2001:db8:0:1::1")).is_ok());
        // An IPv4-mapped address is its IPv4 address.
        let _c = admission.admit(ip("10.0.0.1")).unwrap();
        let _d = admission.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(admission.admit(ip("10.0.0.1")).is_err());
    }
}
