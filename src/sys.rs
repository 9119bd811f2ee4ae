//! The one module allowed `unsafe`: process limits and socket options the
//! standard library and socket2 do not wrap. Every block carries a
//! `SAFETY:` line.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// The open-file limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit: what is enforced now.
    pub soft: u64,
    /// The hard limit: how far the soft one can be raised.
    pub hard: u64,
}

/// Reads `RLIMIT_NOFILE`.
pub fn fd_limit() -> io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Raises the soft open-file limit to the hard limit (never lowers it) and
/// returns the limits now in force. Needs no privilege.
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let now = fd_limit()?;
    if now.soft >= now.hard {
        return Ok(now);
    }
    let lim = libc::rlimit {
        rlim_cur: now.hard,
        rlim_max: now.hard,
    };
    // SAFETY: `lim` is a valid rlimit read by the call; no pointer is kept.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    fd_limit()
}

/// The socket's `TCP_INFO`.
fn tcp_info(socket: &impl AsRawFd) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes and outlives the call; the
    // kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// How many times the kernel retransmitted this TCP socket's segments
/// (`TCP_INFO`'s `tcpi_total_retrans`): for a connect, the SYN's
/// retransmissions. Karn's rule takes no RTT sample when it is above 0.
pub fn tcp_retransmits(socket: &impl AsRawFd) -> io::Result<u32> {
    Ok(tcp_info(socket)?.tcpi_total_retrans)
}

/// The handshake's round trip as the kernel measured it, for a socket
/// that is connected: `TCP_INFO`'s `tcpi_rtt` after the SYN-ACK, timed in
/// the kernel from the SYN's transmission to the SYN-ACK's arrival, so
/// free of the time the answer waited to be read. The kernel takes the
/// sample only where Karn's rule allows it (a SYN not resent, or the
/// SYN-ACK's timestamp echo says which SYN it answers); `None` when it took
/// none (`tcpi_rtt` is 0) or the socket is not established.
pub fn tcp_handshake_rtt(socket: &impl AsRawFd) -> Option<std::time::Duration> {
    /// `TCP_ESTABLISHED` in the kernel's `tcp_states.h`.
    const TCP_ESTABLISHED: u8 = 1;
    let info = tcp_info(socket).ok()?;
    (info.tcpi_state == TCP_ESTABLISHED && info.tcpi_rtt > 0)
        .then(|| std::time::Duration::from_micros(u64::from(info.tcpi_rtt)))
}

/// Asks the kernel to queue ICMP errors on this socket's error queue
/// (`IP_RECVERR`, `IPV6_RECVERR` for an IPv6 socket), so that a connect
/// refused by a router tells which router: see [`icmp_offender`]. No
/// privilege needed.
pub fn set_recv_icmp_errors(socket: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int read by the call for the given length;
    // no pointer is kept.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The sender of the ICMP error queued on this socket (see
/// [`set_recv_icmp_errors`]): the router that answered a SYN with a
/// destination unreachable, nmap's `reason_ip`. Reads one entry of the
/// socket's error queue (`MSG_ERRQUEUE`) into buffers on the stack; `None`
/// when the queue holds no ICMP error (a local route's error is not queued
/// for TCP).
pub fn icmp_offender(socket: &impl AsRawFd) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    // Aligned for cmsghdr; room for a sock_extended_err and a sockaddr_in6
    // and more besides.
    let mut control = [0u64; 32];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `control`, writable for `msg_controllen`
    // bytes and alive across the call; no iovec (the payload, the SYN's
    // headers, is not wanted and is truncated).
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return None;
    }
    // SAFETY: the kernel filled `msg`; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
    // `msg_controllen` bytes of `control`, which is alive.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and within `control` (above).
        let hdr = unsafe { &*cmsg };
        let queued = (hdr.cmsg_level == libc::IPPROTO_IP && hdr.cmsg_type == libc::IP_RECVERR)
            || (hdr.cmsg_level == libc::IPPROTO_IPV6 && hdr.cmsg_type == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let data_len =
            (hdr.cmsg_len as usize).saturating_sub(unsafe { libc::CMSG_LEN(0) } as usize);
        let ee_len = std::mem::size_of::<libc::sock_extended_err>();
        let fits = |sockaddr: usize| data_len >= ee_len + sockaddr;
        if queued && fits(std::mem::size_of::<libc::sa_family_t>()) {
            // SAFETY: the kernel put a sock_extended_err at CMSG_DATA, and
            // the offender's sockaddr right after it (SO_EE_OFFENDER), both
            // inside `control`; read_unaligned needs no alignment.
            let (ee, family, addr) = unsafe {
                let ee = libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>();
                let offender = libc::SO_EE_OFFENDER(ee);
                let family = std::ptr::read_unaligned(offender.cast::<libc::sa_family_t>());
                let addr = match i32::from(family) {
                    libc::AF_INET if fits(std::mem::size_of::<libc::sockaddr_in>()) => {
                        let sin = std::ptr::read_unaligned(offender.cast::<libc::sockaddr_in>());
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))))
                    }
                    libc::AF_INET6 if fits(std::mem::size_of::<libc::sockaddr_in6>()) => {
                        let sin6 = std::ptr::read_unaligned(offender.cast::<libc::sockaddr_in6>());
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                };
                (std::ptr::read_unaligned(ee), family, addr)
            };
            let icmp =
                ee.ee_origin == libc::SO_EE_ORIGIN_ICMP || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
            if icmp && family != 0 {
                return addr;
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    None
}

/// Grows this process's descriptor table, in one step, to hold descriptors
/// up to `highest` (clamped below the soft open-file limit). Call it while
/// no other thread shares the table (a helper thread started earlier gives
/// itself its own: [`unshare_fd_table`]), or this growth itself waits for
/// a grace period: the kernel doubles the table as
/// descriptors are opened, and in a process whose threads share it every
/// doubling waits for an RCU grace period (`expand_fdtable` calls
/// `synchronize_rcu`), which stalls every thread for 10-20 ms; a scan that
/// opens 8 000 sockets would meet that six times. Best effort: a failure
/// only means the table grows the usual way.
pub fn reserve_fd_table(highest: u64) {
    let soft = fd_limit().map_or(0, |l| l.soft);
    let Ok(target) = libc::c_int::try_from(highest.min(soft.saturating_sub(1))) else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC reads no memory; `null` is open for the call.
    let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by fcntl and is owned by no one else.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
}

/// Gives the calling thread a descriptor table of its own (`unshare
/// (CLONE_FILES)`), a copy of the process's at this moment. For a helper
/// thread that opens nothing (the signal watchdog): while it shares the
/// table, the table is shared, and every growth of it ([`reserve_fd_table`]
/// included) waits for an RCU grace period (9-15 ms measured on a 2-core
/// machine, 3-5 % of a 65 535-port loopback scan). Best effort: on an
/// error the thread keeps sharing.
pub fn unshare_fd_table() -> io::Result<()> {
    // SAFETY: unshare reads no memory; CLONE_FILES only affects this
    // thread's own descriptor table.
    if unsafe { libc::unshare(libc::CLONE_FILES) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The address-space limit (`RLIMIT_AS`, `ulimit -v`) in bytes, `None`
/// when unlimited or unreadable.
pub fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The address space this process maps now, in bytes (`/proc/self/statm`).
pub fn address_space_used() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(pages * 4096)
}

/// Keeps glibc's malloc to its main arena. Each thread that allocates may
/// otherwise get an arena of its own, and each reserves 64 MiB of address
/// space (128 MiB while it is being aligned): under `ulimit -v` that, not
/// the memory used, is what runs out. Called only when such a limit is set.
pub fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and touches only malloc's settings.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Descriptors this process has open now (`/proc/self/fd`). When the
/// listing itself cannot be opened because every descriptor the limit
/// allows is taken, that is the answer: `limit`. `None` when it cannot be
/// told.
pub fn open_fds(limit: u64) -> Option<u64> {
    match std::fs::read_dir("/proc/self/fd") {
        // The listing's own descriptor is in it.
        Ok(dir) => Some((dir.count() as u64).saturating_sub(1)),
        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => Some(limit),
        Err(_) => None,
    }
}

/// How many threads this process can start with room to spare: each thread
/// takes about four memory mappings (stack, its guard page, the signal stack
/// and its guard), and `vm.max_map_count` caps mappings per process (65530
/// by default, so a little over 16 000 threads); `kernel.threads-max` caps
/// threads system-wide. `None` when neither can be read.
pub fn thread_budget() -> Option<u64> {
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let by_maps = read("/proc/sys/vm/max_map_count").map(|n| n / 5);
    let by_threads = read("/proc/sys/kernel/threads-max").map(|n| n / 2);
    match (by_maps, by_threads) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Takes an exclusive advisory lock (`flock`) on `file` without waiting:
/// `Ok(false)` when another process holds it. The lock lasts as long as
/// the open file (std's `File::try_lock` is newer than this crate's MSRV).
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock reads no memory; the descriptor is open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_fds_counts_a_new_descriptor() {
        let before = open_fds(u64::MAX).unwrap();
        assert!(before >= 3, "stdio at least: {before}");
        let file = std::fs::File::open("/dev/null").unwrap();
        // Other test threads open files too: at least one more.
        assert!(open_fds(u64::MAX).unwrap() >= 1);
        drop(file);
    }

    /// A socket with no ICMP error queued has no offender, and asking does
    /// not block or fail.
    #[test]
    fn an_empty_error_queue_names_no_router() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(addr) else {
                continue; // no IPv6 here
            };
            let v6 = listener.local_addr().unwrap().is_ipv6();
            let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            set_recv_icmp_errors(&socket, v6).unwrap();
            assert_eq!(icmp_offender(&socket), None);
        }
    }

    #[test]
    fn raising_never_lowers() {
        let before = fd_limit().unwrap();
        let after = raise_fd_limit().unwrap();
        assert!(after.soft >= before.soft);
        assert_eq!(after.soft, after.hard);
    }

    #[test]
    fn reserving_grows_the_table_and_leaves_no_descriptor_open() {
        let fd_size = || -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
            line["FDSize:".len()..].trim().parse().unwrap()
        };
        let highest = 3000.min(fd_limit().unwrap().soft - 1);
        reserve_fd_table(highest);
        assert!(fd_size() > highest, "FDSize {} <= {highest}", fd_size());
        assert!(!std::path::Path::new(&format!("/proc/self/fd/{highest}")).exists());
    }

    #[test]
    fn a_fresh_connection_has_no_retransmits() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(tcp_retransmits(&stream).unwrap(), 0);
    }
}
