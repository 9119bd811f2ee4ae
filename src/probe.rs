//! A probe's life on the wire, shared by both engines: the socket it is born
//! with, the questions asked of the kernel when it may be finished, and how it
//! is closed. The engines differ only in how they wait between those steps.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::classify::{Reason, Report};

/// One result: which target, what it is, how long it took to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Position of the target in the scan's index space.
    pub index: u64,
    /// The address and port probed.
    pub target: SocketAddr,
    /// What the answer (or its absence) means.
    pub reason: Reason,
    /// Connect latency of the attempt that answered, in microseconds; `None`
    /// when nothing answered.
    pub rtt_us: Option<u32>,
    /// With `-sV` or `--banners`: what the open port's service is or said
    /// (`None` otherwise: a plain scan allocates nothing for it).
    pub service: Option<Box<crate::service::record::ServiceRecord>>,
    /// The router whose ICMP error answered (nmap's `reason_ip`), when the
    /// socket's error queue named it.
    pub reason_ip: Option<std::net::IpAddr>,
}

/// Creates the probe's socket: TCP, non-blocking and close-on-exec in the
/// `socket` call itself (no extra `fcntl`), with ICMP errors queued
/// (`IP_RECVERR`) so that an unreachable names its router ([`error_report`]).
/// A loopback target has no router between it and this host: its socket
/// skips that `setsockopt`, one system call of the five a closed loopback
/// port costs (socket, setsockopt, connect, getsockopt, close).
pub fn new_socket(target: &SocketAddr, nonblocking: bool) -> io::Result<Socket> {
    let domain = Domain::for_address(*target);
    let ty = if nonblocking {
        Type::STREAM.nonblocking().cloexec()
    } else {
        Type::STREAM.cloexec()
    };
    let socket = Socket::new(domain, ty, Some(Protocol::TCP))?;
    if !target.ip().is_loopback() {
        // Best effort: without it an unreachable only lacks its router.
        let _ = crate::sys::set_recv_icmp_errors(&socket, target.is_ipv6());
    }
    Ok(socket)
}

/// The report for a connect that failed with `errno`: for an ICMP
/// unreachable, with its sender read from the socket's error queue.
pub fn error_report(socket: &Socket, errno: i32) -> Report {
    if crate::classify::from_icmp(errno) {
        if let Some(from) = crate::sys::icmp_offender(socket) {
            return Report::Unreachable { errno, from };
        }
    }
    Report::Error(errno)
}

/// Starts a non-blocking connect and says what the kernel answered at once:
/// usually `EINPROGRESS`, but a `prohibit` or `unreachable` route, or an
/// exhausted local port range, answer synchronously.
pub fn start_connect(socket: &Socket, target: &SocketAddr) -> Report {
    match socket.connect(&SockAddr::from(*target)) {
        Ok(()) => Report::InProgress, // confirmed by `check` like any other
        Err(e) => Report::Error(errno(&e)),
    }
}

/// Asks the kernel where a connect attempt stands: `SO_ERROR` first, then the
/// peer address (mio's recipe for confirming a non-blocking connect), then
/// the local address so a self-connect can be told from an open port.
pub fn check(socket: &Socket) -> Report {
    match socket.take_error() {
        Ok(Some(e)) => return error_report(socket, errno(&e)),
        Ok(None) => {}
        Err(e) => return Report::Error(errno(&e)),
    }
    let peer = match socket.peer_addr() {
        Ok(peer) => peer,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Report::InProgress,
        Err(e) => return Report::Error(errno(&e)),
    };
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(e) => return Report::Error(errno(&e)),
    };
    match (local.as_socket(), peer.as_socket()) {
        (Some(local), Some(peer)) => Report::Connected { local, peer },
        _ => Report::Error(libc::EAFNOSUPPORT),
    }
}

/// Closes a finished probe. A connected socket is closed with `SO_LINGER` 0,
/// which sends RST at once: no `TIME_WAIT` piles up on our side and the
/// target's accept queue is released.
pub fn close(socket: Socket, reason: Reason) {
    if reason == Reason::SynAck || reason == Reason::SelfConnect {
        // Failing to set linger only costs a TIME_WAIT entry: not worth a report.
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    drop(socket);
}

/// The errno behind an I/O error (`EIO` when there is none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Microseconds, saturating at `u32::MAX` (71 minutes).
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Verdict, classify};
    use std::net::TcpListener;

    /// Waits (bounded) for a non-blocking connect to leave InProgress.
    fn settle(socket: &Socket) -> Report {
        for _ in 0..2000 {
            let r = check(socket);
            if r != Report::InProgress {
                return r;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Report::InProgress
    }

    #[test]
    fn open_port_reports_connected() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let socket = new_socket(&target, true).unwrap();
        assert_eq!(
            classify(start_connect(&socket, &target)),
            Verdict::Pending,
            "a non-blocking connect starts in progress"
        );
        let report = settle(&socket);
        assert_eq!(classify(report), Verdict::Done(Reason::SynAck));
        match report {
            Report::Connected { peer, .. } => assert_eq!(peer, target),
            other => panic!("{other:?}"),
        }
        close(socket, Reason::SynAck);
    }

    #[test]
    fn closed_port_reports_refused() {
        // Bind then drop to find a port that is very likely closed.
        let target = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let socket = new_socket(&target, true).unwrap();
        let first = start_connect(&socket, &target);
        let report = if classify(first) == Verdict::Pending {
            settle(&socket)
        } else {
            first
        };
        assert_eq!(classify(report), Verdict::Done(Reason::ConnRefused));
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros(Duration::from_micros(53)), 53);
        assert_eq!(micros(Duration::from_secs(1 << 40)), u32::MAX);
    }
}
