//! What every probe of a world must find: port states, reasons, and the
//! ground truth table that scoring compares scanner output with.
//!
//! The reasons are FastPort's vocabulary (which is also nmap's for `-sT`).
//! Which reason each world mechanism produces was measured, not assumed: see
//! [`classify_connect`] and `world.rs`.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use fastport_reasons::Reason as Shared;
use serde::{Deserialize, Serialize};

use crate::targets::{AddrRange, PortSet};

/// The state of a port, as a connect scan can tell it: FastPort's own
/// (`fastport-reasons`, shared with the scanner and netsim; the lab still
/// does not depend on the scanner crate).
pub use fastport_reasons::State;

/// Why a probe ended in its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The handshake completed (`connect` succeeded).
    SynAck,
    /// A reset came back (`ECONNREFUSED`).
    ConnRefused,
    /// The kernel picked the destination as the source port and the socket
    /// connected to itself (TCP simultaneous open): the port is closed.
    SelfConnect,
    /// Nothing came back before the timeout.
    NoResponse,
    /// `EHOSTUNREACH`: an ICMP host-unreachable (or admin-prohibited, which
    /// Linux reports the same way), or an `unreachable` route.
    HostUnreach,
    /// `ENETUNREACH`: no route, or an ICMP net-unreachable.
    NetUnreach,
    /// `EACCES`/`EPERM`: a `prohibit` route refused the connect locally.
    AdminProhibited,
    /// A reason outside this vocabulary, as a scanner spelled it.
    Other(String),
}

impl Reason {
    /// The shared name's value, for the reasons the lab's worlds produce.
    fn known(&self) -> Option<Shared> {
        Some(match self {
            Reason::SynAck => Shared::SynAck,
            Reason::ConnRefused => Shared::ConnRefused,
            Reason::SelfConnect => Shared::SelfConnect,
            Reason::NoResponse => Shared::NoResponse,
            Reason::HostUnreach => Shared::HostUnreach,
            Reason::NetUnreach => Shared::NetUnreach,
            Reason::AdminProhibited => Shared::AdminProhibited,
            Reason::Other(_) => return None,
        })
    }

    /// The name used in FastPort's and nmap's output (spelled once, in
    /// `fastport-reasons`).
    pub fn as_str(&self) -> &str {
        match (self, self.known()) {
            (_, Some(r)) => r.as_str(),
            (Reason::Other(s), None) => s,
            (_, None) => unreachable!("only Other has no shared name"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        match Shared::from_str_name(s) {
            Some(r) => Reason::from(r),
            None => Reason::Other(s.to_string()),
        }
    }
}

impl From<Shared> for Reason {
    /// The lab's reason for a shared one; `reset` and `error`, which no
    /// world produces, stay as named [`Reason::Other`]s.
    fn from(r: Shared) -> Reason {
        match r {
            Shared::SynAck => Reason::SynAck,
            Shared::ConnRefused => Reason::ConnRefused,
            Shared::SelfConnect => Reason::SelfConnect,
            Shared::NoResponse => Reason::NoResponse,
            Shared::HostUnreach => Reason::HostUnreach,
            Shared::NetUnreach => Reason::NetUnreach,
            Shared::AdminProhibited => Reason::AdminProhibited,
            Shared::Reset | Shared::Error => Reason::Other(r.as_str().to_string()),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Reason::from(s.as_str()))
    }
}

/// What a probe of one (address, port) must report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Expect {
    /// The true state.
    pub state: State,
    /// The reason the kernel gives a connect scanner.
    pub reason: Reason,
}

impl Expect {
    /// `open/syn-ack`.
    pub const OPEN: Expect = Expect {
        state: State::Open,
        reason: Reason::SynAck,
    };
    /// `closed/conn-refused`.
    pub const CLOSED: Expect = Expect {
        state: State::Closed,
        reason: Reason::ConnRefused,
    };

    /// A filtered expectation with this reason.
    pub const fn filtered(reason: Reason) -> Expect {
        Expect {
            state: State::Filtered,
            reason,
        }
    }

    /// Whether a report of `state` with `reason` (if the scanner gives one)
    /// matches this truth. A closed port may also be reported
    /// `closed/self-connect`: whether the kernel picks the destination port as
    /// the source is up to it, and both spellings are correct.
    pub fn accepts(&self, state: State, reason: Option<&Reason>) -> bool {
        if state != self.state {
            return false;
        }
        match reason {
            None => true,
            Some(r) if *r == self.reason => true,
            Some(Reason::SelfConnect) => self.reason == Reason::ConnRefused,
            Some(_) => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.state, self.reason)
    }
}

/// What a blocking `connect(2)` returned, reduced to what classification needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectResult {
    /// `connect` returned 0; `self_connect` when the local and peer
    /// addresses are the same socket address.
    Connected {
        /// The socket connected to itself.
        self_connect: bool,
    },
    /// `connect` failed with this errno.
    Failed(i32),
}

/// Classifies a connect result into the state and reason a scanner should
/// report; `None` for errors that say nothing about the target (out of
/// ephemeral ports, out of memory...), which the caller retries or reports.
///
/// Measured inside a lab namespace (Linux 6.x, non-blocking and blocking connect):
/// - listener: success; nothing: `ECONNREFUSED`; nft `reject with tcp reset`: `ECONNREFUSED`.
/// - nft `drop`, or a route out of a veth end with ARP off: no answer (a
///   non-blocking connect stays `EINPROGRESS`; a blocking one with
///   `SO_SNDTIMEO` returns `EINPROGRESS` when the timer fires).
/// - nft `reject with icmp type host-unreachable` and, surprisingly, `... type
///   admin-prohibited`: `EHOSTUNREACH` (Linux maps ICMP code 13 to it).
/// - nft `reject with icmp type net-unreachable`: `ENETUNREACH`.
/// - ICMP errors are rate-limited by the kernel (`icmp_msgs_per_sec` 1000,
///   burst 50), nft rejects included: a fast scan then sees most rejected
///   ports as silent. The lab lifts those per-namespace limits in every world
///   (see `netns.rs`); with them lifted a non-blocking connect gets the error
///   at once (200 of 200 tries).
/// - A *blocking* connect still does not: on loopback the reject is processed
///   inside the SYN's own transmit, while `connect` holds the socket lock, so
///   `tcp_v4_err` parks the error in `sk_err_soft`, and the connect fails only
///   when the SYN retransmit (1 s RTO) draws a second ICMP. `SO_ERROR` returns
///   the soft error, so the floor reads it when `SO_SNDTIMEO` fires.
/// - `unreachable` route: `EHOSTUNREACH` at once; `prohibit` route: `EACCES`
///   at once; no route at all (or the 127.255.255.255 broadcast): `ENETUNREACH` at once.
/// - `blackhole` route: `EINVAL` at once, so the lab does not use it.
pub fn classify_connect(result: ConnectResult) -> Option<Expect> {
    Some(match result {
        ConnectResult::Connected {
            self_connect: false,
        } => Expect::OPEN,
        ConnectResult::Connected { self_connect: true } => Expect {
            state: State::Closed,
            reason: Reason::SelfConnect,
        },
        ConnectResult::Failed(errno) => match errno {
            libc::ECONNREFUSED => Expect::CLOSED,
            libc::EINPROGRESS | libc::ETIMEDOUT | libc::EAGAIN => {
                Expect::filtered(Reason::NoResponse)
            }
            libc::EHOSTUNREACH | libc::EHOSTDOWN => Expect::filtered(Reason::HostUnreach),
            libc::ENETUNREACH | libc::ENETDOWN => Expect::filtered(Reason::NetUnreach),
            libc::EACCES | libc::EPERM => Expect::filtered(Reason::AdminProhibited),
            _ => return None,
        },
    })
}

/// How the hosts of a world answer on ports nothing else is said about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClass {
    /// The addresses.
    pub range: AddrRange,
    /// What every port of them gives, unless an exception says otherwise.
    pub default: Expect,
}

/// The ground truth of a world: the scan space (hosts × ports) and what each
/// (address, port) in it must report.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// The hosts the scanners are pointed at.
    pub hosts: Vec<AddrRange>,
    /// The ports the scanners are pointed at.
    pub ports: PortSet,
    /// Per-host defaults; later entries take precedence. Addresses no class
    /// covers are closed.
    pub classes: Vec<HostClass>,
    /// Every (address, port) whose truth differs from its host's default.
    pub exceptions: HashMap<SocketAddrV4, Expect>,
}

impl Truth {
    /// Number of (address, port) pairs a scan of the world probes.
    pub fn probes(&self) -> u64 {
        self.host_count() * self.ports.len() as u64
    }

    /// Number of hosts in the scan.
    pub fn host_count(&self) -> u64 {
        self.hosts.iter().map(AddrRange::len).sum()
    }

    /// Whether (addr, port) is part of the scan.
    pub fn in_scan(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.ports.contains(port) && self.hosts.iter().any(|h| h.contains(addr))
    }

    /// What a probe of `addr` must find on a port without an exception.
    pub fn host_default(&self, addr: Ipv4Addr) -> &Expect {
        self.classes
            .iter()
            .rev()
            .find(|c| c.range.contains(addr))
            .map_or(&Expect::CLOSED, |c| &c.default)
    }

    /// What a probe of (addr, port) must find.
    pub fn expect(&self, addr: Ipv4Addr, port: u16) -> &Expect {
        self.exceptions
            .get(&SocketAddrV4::new(addr, port))
            .unwrap_or_else(|| self.host_default(addr))
    }

    /// Every probe of the scan with its truth, hosts in the order given, ports ascending.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddrV4, &Expect)> + '_ {
        self.hosts.iter().flat_map(move |h| {
            h.iter().flat_map(move |addr| {
                let default = self.host_default(addr);
                self.ports.iter().map(move |port| {
                    let sa = SocketAddrV4::new(addr, port);
                    (sa, self.exceptions.get(&sa).unwrap_or(default))
                })
            })
        })
    }

    /// The open (address, port) pairs, sorted.
    pub fn open(&self) -> Vec<SocketAddrV4> {
        let mut v: Vec<SocketAddrV4> = self
            .exceptions
            .iter()
            .filter(|(_, e)| e.state == State::Open)
            .map(|(sa, _)| *sa)
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether any probe of the scan gets no answer at all (each costs a timeout).
    pub fn has_silent_probes(&self) -> bool {
        let silent = Expect::filtered(Reason::NoResponse);
        self.classes
            .iter()
            .any(|c| c.default == silent && self.hosts.iter().any(|h| h.overlaps(&c.range)))
            || self.exceptions.values().any(|e| *e == silent)
    }

    /// How many probes expect each state/reason, sorted by expectation.
    pub fn tally(&self) -> Vec<(Expect, u64)> {
        let mut counts: HashMap<&Expect, u64> = HashMap::new();
        for h in &self.hosts {
            for addr in h.iter() {
                let default = self.host_default(addr);
                let mut excepted = 0u64;
                for port in self.ports.iter() {
                    if let Some(e) = self.exceptions.get(&SocketAddrV4::new(addr, port)) {
                        *counts.entry(e).or_default() += 1;
                        excepted += 1;
                    }
                }
                *counts.entry(default).or_default() += self.ports.len() as u64 - excepted;
            }
        }
        let mut v: Vec<(Expect, u64)> = counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(e, n)| (e.clone(), n))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errno_the_worlds_produce_is_classified() {
        use ConnectResult::*;
        let r = |e| classify_connect(Failed(e)).unwrap();
        assert_eq!(r(libc::ECONNREFUSED), Expect::CLOSED);
        assert_eq!(r(libc::EINPROGRESS), Expect::filtered(Reason::NoResponse));
        assert_eq!(r(libc::EHOSTUNREACH), Expect::filtered(Reason::HostUnreach));
        assert_eq!(r(libc::ENETUNREACH), Expect::filtered(Reason::NetUnreach));
        assert_eq!(r(libc::EACCES), Expect::filtered(Reason::AdminProhibited));
        assert_eq!(classify_connect(Failed(libc::EADDRNOTAVAIL)), None);
        assert_eq!(classify_connect(Failed(libc::EINVAL)), None);
        assert_eq!(
            classify_connect(Connected {
                self_connect: false
            }),
            Some(Expect::OPEN)
        );
        assert_eq!(
            classify_connect(Connected { self_connect: true })
                .unwrap()
                .reason,
            Reason::SelfConnect
        );
    }

    #[test]
    fn closed_accepts_self_connect_but_nothing_else() {
        assert!(Expect::CLOSED.accepts(State::Closed, None));
        assert!(Expect::CLOSED.accepts(State::Closed, Some(&Reason::SelfConnect)));
        assert!(!Expect::CLOSED.accepts(State::Closed, Some(&Reason::NoResponse)));
        assert!(!Expect::CLOSED.accepts(State::Open, None));
        let hu = Expect::filtered(Reason::HostUnreach);
        assert!(!hu.accepts(State::Filtered, Some(&Reason::SelfConnect)));
        assert!(hu.accepts(State::Filtered, Some(&Reason::HostUnreach)));
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for name in [
            "syn-ack",
            "conn-refused",
            "self-connect",
            "no-response",
            "host-unreach",
            "net-unreach",
            "admin-prohibited",
            "reset",
        ] {
            assert_eq!(Reason::from(name).as_str(), name);
        }
        assert_eq!(Reason::from("reset"), Reason::Other("reset".into()));
    }
}
