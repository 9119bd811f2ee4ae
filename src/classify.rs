//! What a finished connect attempt means: the port states and nmap's reason
//! names, and the one pure function that turns what a socket reported into
//! them.
//!
//! Both engines (the event loop and the thread pool) end every attempt by
//! asking the kernel the same questions (mio's recipe for confirming a
//! non-blocking connect: `SO_ERROR`, then the peer and local addresses), and
//! feed the answers to [`classify`]. Keeping that step pure means every errno
//! the kernel can hand back is covered by a unit test, not by a network.

use std::fmt;
use std::net::SocketAddr;

/// The port states and reason names, defined once for the scanner, the lab
/// and netsim in the `fastport-reasons` crate.
pub use fastport_reasons::{Reason, State};

/// A failure of this machine, not an answer from the target: the probe is
/// reissued later and never reported as a port state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LocalError {
    /// `EMFILE`: this process is out of file descriptors.
    Emfile,
    /// `ENFILE`: the system is out of file descriptors.
    Enfile,
    /// `EADDRNOTAVAIL`: no free local (ephemeral) port for this destination.
    AddrNotAvail,
    /// `ENOBUFS` / `ENOMEM`: the kernel is out of buffers.
    NoBufs,
    /// `EAGAIN` from connect: on Linux also "no free local port".
    Again,
}

impl LocalError {
    /// Every local error, in the order summaries list them.
    pub const ALL: [LocalError; 5] = [
        LocalError::Emfile,
        LocalError::Enfile,
        LocalError::AddrNotAvail,
        LocalError::NoBufs,
        LocalError::Again,
    ];
    /// How many kinds there are (the size of per-kind tables).
    pub const COUNT: usize = Self::ALL.len();

    /// The local error an errno means, if it is one.
    pub fn from_errno(errno: i32) -> Option<LocalError> {
        match errno {
            libc::EMFILE => Some(LocalError::Emfile),
            libc::ENFILE => Some(LocalError::Enfile),
            libc::EADDRNOTAVAIL => Some(LocalError::AddrNotAvail),
            libc::ENOBUFS | libc::ENOMEM => Some(LocalError::NoBufs),
            libc::EAGAIN => Some(LocalError::Again),
            _ => None,
        }
    }

    /// The errno's name (`EMFILE`, ...), as summaries print it.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalError::Emfile => "EMFILE",
            LocalError::Enfile => "ENFILE",
            LocalError::AddrNotAvail => "EADDRNOTAVAIL",
            LocalError::NoBufs => "ENOBUFS",
            LocalError::Again => "EAGAIN",
        }
    }

    /// Dense index, for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the kernel said about a connect attempt, gathered by an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `connect()` itself or `SO_ERROR` returned this errno.
    Error(i32),
    /// `SO_ERROR` returned this errno for an ICMP error, and the socket's
    /// error queue named the router that sent it (nmap's `reason_ip`).
    Unreachable {
        /// What `SO_ERROR` said (`EHOSTUNREACH`, `ENETUNREACH`, `EACCES`, ...).
        errno: i32,
        /// The ICMP message's sender.
        from: std::net::IpAddr,
    },
    /// No error, and the socket has a peer: it is connected from `local`.
    Connected {
        /// Our end of the connection.
        local: SocketAddr,
        /// The target's end.
        peer: SocketAddr,
    },
    /// No error yet and no peer (`getpeername` said `ENOTCONN`): the SYN is
    /// still unanswered.
    InProgress,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The port's state is known.
    Done(Reason),
    /// Still waiting for an answer.
    Pending,
    /// Our own resources ran out: back off and reissue the same probe.
    Local(LocalError),
}

/// Turns what the socket reported into a verdict. Pure: no I/O.
pub fn classify(report: Report) -> Verdict {
    match report {
        Report::InProgress => Verdict::Pending,
        Report::Connected { local, peer } if local == peer => Verdict::Done(Reason::SelfConnect),
        Report::Connected { .. } => Verdict::Done(Reason::SynAck),
        Report::Error(errno) | Report::Unreachable { errno, .. } => classify_errno(errno),
    }
}

impl Report {
    /// The router whose ICMP error ended the attempt, when known.
    pub fn offender(&self) -> Option<std::net::IpAddr> {
        match self {
            Report::Unreachable { from, .. } => Some(*from),
            _ => None,
        }
    }
}

/// Fewest ports a host must have been probed on before "every one open"
/// says more about the path than about the host.
pub const MIDDLEBOX_MIN_PORTS: u64 = 20;

/// Whether a host's results (counts per [`Reason`], by `Reason::index`)
/// look like a middlebox answering SYN-ACK for it on every port (a
/// firewall's SYN proxy, a tarpit, a load balancer): at least
/// [`MIDDLEBOX_MIN_PORTS`] results, not one port closed, and at least 90 %
/// open (the rest may be answers lost on the way). A real host almost never
/// has 20 probed ports all listening; reporting them as open services
/// without a word would mislead.
pub fn answers_every_port(reasons: &[u64]) -> bool {
    let total: u64 = reasons.iter().sum();
    total >= MIDDLEBOX_MIN_PORTS
        && in_state(reasons, State::Closed) == 0
        && in_state(reasons, State::Open) * 10 >= total * 9
}

/// How many of `reasons` (counts per [`Reason`], by `Reason::index`) are
/// in `state`.
pub fn in_state(reasons: &[u64], state: State) -> u64 {
    Reason::ALL
        .into_iter()
        .filter(|r| r.state() == state)
        .map(|r| reasons.get(r.index()).copied().unwrap_or(0))
        .sum()
}

/// Whether `errno` is what an ICMP destination unreachable from a router
/// makes of a connect (host, net, or administratively prohibited): the
/// errors whose sender is worth asking the socket's error queue for.
pub fn from_icmp(errno: i32) -> bool {
    matches!(
        classify_errno(errno),
        Verdict::Done(Reason::HostUnreach | Reason::NetUnreach | Reason::AdminProhibited)
    )
}

fn classify_errno(errno: i32) -> Verdict {
    if let Some(local) = LocalError::from_errno(errno) {
        return Verdict::Local(local);
    }
    let reason = match errno {
        libc::EINPROGRESS | libc::EALREADY | libc::EINTR => return Verdict::Pending,
        libc::ECONNREFUSED => Reason::ConnRefused,
        // A reset during a connect that reached ESTABLISHED: a listener
        // answered the SYN (a refusal would be ECONNREFUSED), then closed at
        // once, e.g. accept-and-reset. The port is open.
        libc::ECONNRESET => Reason::SynAck,
        libc::ETIMEDOUT => Reason::NoResponse,
        libc::EHOSTUNREACH | libc::EHOSTDOWN => Reason::HostUnreach,
        libc::ENETUNREACH | libc::ENETDOWN => Reason::NetUnreach,
        libc::EACCES | libc::EPERM => Reason::AdminProhibited,
        _ => Reason::Error,
    };
    Verdict::Done(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connected_is_open_unless_it_met_itself() {
        for (local, peer, reason) in [
            ("127.0.0.1:40000", "127.0.0.1:22", Reason::SynAck),
            ("127.0.0.1:40000", "127.0.0.1:40000", Reason::SelfConnect),
            ("[::1]:50000", "[::1]:50000", Reason::SelfConnect),
            // Same port, other address: a real connection.
            ("127.0.0.2:50000", "127.0.0.1:50000", Reason::SynAck),
        ] {
            let report = Report::Connected {
                local: sa(local),
                peer: sa(peer),
            };
            assert_eq!(classify(report), Verdict::Done(reason), "{local} -> {peer}");
        }
        assert_eq!(Reason::SelfConnect.state(), State::Closed);
    }

    /// An unreachable whose router the error queue named is classified as
    /// its errno alone; only router errnos are worth asking it for.
    #[test]
    fn an_unreachable_keeps_its_router_and_its_errno() {
        let from: std::net::IpAddr = "198.18.12.254".parse().unwrap();
        for errno in [libc::EHOSTUNREACH, libc::ENETUNREACH, libc::EACCES] {
            let report = Report::Unreachable { errno, from };
            assert_eq!(classify(report), classify(Report::Error(errno)));
            assert_eq!(report.offender(), Some(from));
            assert!(from_icmp(errno));
        }
        assert_eq!(Report::Error(libc::EHOSTUNREACH).offender(), None);
        for errno in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EMFILE,
            libc::EINPROGRESS,
        ] {
            assert!(!from_icmp(errno), "{errno}");
        }
    }

    /// A host behind a middlebox answering SYN-ACK everywhere is flagged,
    /// not a host with a few services, nor one with a single closed port.
    #[test]
    fn a_host_open_on_every_one_of_many_ports_is_a_middlebox() {
        let host = |open: u64, closed: u64, filtered: u64| {
            let mut r = [0u64; Reason::COUNT];
            r[Reason::SynAck.index()] = open;
            r[Reason::ConnRefused.index()] = closed;
            r[Reason::NoResponse.index()] = filtered;
            answers_every_port(&r)
        };
        assert!(host(100, 0, 0));
        assert!(host(20, 0, 0));
        assert!(host(95, 0, 5), "a few answers lost on the way");
        assert!(!host(19, 0, 0), "too few ports to tell");
        assert!(!host(99, 1, 0), "a closed port: a real stack");
        assert!(!host(80, 0, 20), "a firewall in front of real services");
        assert!(!host(3, 97, 0));
        assert!(!host(0, 0, 0));
    }

    #[test]
    fn in_progress_is_pending() {
        assert_eq!(classify(Report::InProgress), Verdict::Pending);
        assert_eq!(classify(Report::Error(libc::EINPROGRESS)), Verdict::Pending);
        assert_eq!(classify(Report::Error(libc::EALREADY)), Verdict::Pending);
        assert_eq!(classify(Report::Error(libc::EINTR)), Verdict::Pending);
    }

    #[test]
    fn every_errno_has_one_meaning() {
        use Reason::*;
        let table = [
            (libc::ECONNREFUSED, Verdict::Done(ConnRefused)),
            (libc::ECONNRESET, Verdict::Done(SynAck)),
            (libc::ETIMEDOUT, Verdict::Done(NoResponse)),
            (libc::EHOSTUNREACH, Verdict::Done(HostUnreach)),
            (libc::EHOSTDOWN, Verdict::Done(HostUnreach)),
            (libc::ENETUNREACH, Verdict::Done(NetUnreach)),
            (libc::ENETDOWN, Verdict::Done(NetUnreach)),
            (libc::EACCES, Verdict::Done(AdminProhibited)),
            (libc::EPERM, Verdict::Done(AdminProhibited)),
            (libc::EMFILE, Verdict::Local(LocalError::Emfile)),
            (libc::ENFILE, Verdict::Local(LocalError::Enfile)),
            (
                libc::EADDRNOTAVAIL,
                Verdict::Local(LocalError::AddrNotAvail),
            ),
            (libc::ENOBUFS, Verdict::Local(LocalError::NoBufs)),
            (libc::ENOMEM, Verdict::Local(LocalError::NoBufs)),
            (libc::EAGAIN, Verdict::Local(LocalError::Again)),
            (libc::EINVAL, Verdict::Done(Error)),
            (libc::EPROTO, Verdict::Done(Error)),
        ];
        for (errno, want) in table {
            assert_eq!(classify(Report::Error(errno)), want, "errno {errno}");
        }
        // Every errno the kernel can return maps to something, without panicking.
        for errno in 0..4096 {
            let _ = classify(Report::Error(errno));
        }
    }

    #[test]
    fn reasons_map_to_nmap_states_and_names() {
        let names: Vec<_> = Reason::ALL
            .iter()
            .map(|r| format!("{}/{}", r.state(), r))
            .collect();
        assert_eq!(
            names,
            [
                "open/syn-ack",
                "closed/conn-refused",
                "closed/reset",
                "closed/self-connect",
                "filtered/no-response",
                "filtered/host-unreach",
                "filtered/net-unreach",
                "filtered/admin-prohibited",
                "filtered/error",
            ]
        );
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Reason::from_str_name(r.as_str()), Some(*r));
        }
        for (i, e) in LocalError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
