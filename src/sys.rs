//! The one module allowed `unsafe`: process limits and socket options the
//! standard library and socket2 do not wrap. Every block carries a
//! `SAFETY:` line.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// The open-file limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
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

/// How many times the kernel retransmitted this TCP socket's segments
/// (`TCP_INFO`'s `tcpi_total_retrans`): for a connect, the SYN's
/// retransmissions. Karn's rule takes no RTT sample when it is above 0.
pub fn tcp_retransmits(socket: &impl AsRawFd) -> io::Result<u32> {
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
    Ok(info.tcpi_total_retrans)
}

/// Grows this process's descriptor table, in one step, to hold descriptors
/// up to `highest` (clamped below the soft open-file limit). Call it while
/// the process still has one thread: the kernel doubles the table as
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

/// Descriptors this process has open now (`/proc/self/fd`), `None` when it
/// cannot be read.
pub fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing's own descriptor is in it.
    Some((dir.count() as u64).saturating_sub(1))
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
        let before = open_fds().unwrap();
        assert!(before >= 3, "stdio at least: {before}");
        let file = std::fs::File::open("/dev/null").unwrap();
        // Other test threads open files too: at least one more.
        assert!(open_fds().unwrap() >= 1);
        drop(file);
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
