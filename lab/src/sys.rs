//! Every system call the lab makes that std does not wrap: `wait4` for a
//! scanner's resource usage, `kill`, `setrlimit`, listeners with a chosen
//! backlog, and the floor's blocking probe. This is the crate's only module
//! allowed `unsafe`; each block says why it is sound.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::truth::ConnectResult;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitStatus {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
}

impl WaitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// The resource usage of a reaped child (and of the children it reaped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rusage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel.
    pub system: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// Voluntary context switches (blocked waiting).
    pub nvcsw: u64,
    /// Involuntary context switches (preempted).
    pub nivcsw: u64,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}

/// Waits for child `pid` to end and returns how, with its resource usage.
pub fn wait4(pid: u32) -> io::Result<(WaitStatus, Rusage)> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals of the types wait4 expects.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let ws = if libc::WIFEXITED(status) {
        WaitStatus {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    } else if libc::WIFSIGNALED(status) {
        WaitStatus {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    } else {
        WaitStatus {
            code: None,
            signal: None,
        }
    };
    Ok((
        ws,
        Rusage {
            user: timeval(usage.ru_utime),
            system: timeval(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss.max(0) as u64,
            nvcsw: usage.ru_nvcsw.max(0) as u64,
            nivcsw: usage.ru_nivcsw.max(0) as u64,
        },
    ))
}

/// Sends SIGKILL to process `pid`.
pub fn kill_hard(pid: u32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a valid rlimit that setrlimit only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_IN_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn tcp_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes plain integers.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket, is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T whose size is passed along with it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A non-blocking listener on `addr` with SO_REUSEADDR and the given backlog
/// (std's `TcpListener::bind` does not let the caller choose it).
pub fn listen_tcp(addr: SocketAddrV4, backlog: i32) -> io::Result<TcpListener> {
    let fd = tcp_socket(libc::SOCK_NONBLOCK)?;
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &(1 as libc::c_int),
    )?;
    let sa = sockaddr(addr);
    // SAFETY: sa is a live sockaddr_in and its exact length is passed.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    })?;
    // SAFETY: listen takes plain integers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(TcpListener::from(fd))
}

/// The floor's probe: a blocking `socket` + `connect` + `close`, with
/// `SO_SNDTIMEO` bounding the wait for an answer when `send_timeout` is given
/// (Linux then fails the connect with `EINPROGRESS`, and the probe reads
/// `SO_ERROR` for an ICMP error that came in meanwhile). A successful connect
/// also reads `getsockname` to tell a self-connect from an open port.
/// Errors of `socket` itself (out of descriptors...) are `Err`.
pub fn connect_probe(
    addr: SocketAddrV4,
    send_timeout: Option<Duration>,
) -> io::Result<ConnectResult> {
    let fd = tcp_socket(0)?;
    if let Some(t) = send_timeout {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)?;
    }
    let sa = sockaddr(addr);
    // SAFETY: sa is a live sockaddr_in and its exact length is passed.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    };
    if r == 0 {
        return Ok(ConnectResult::Connected {
            self_connect: local_addr(&fd)? == addr,
        });
    }
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match errno {
        // An interrupted blocking connect goes on in the background; wait for it.
        libc::EINTR => finish_interrupted(&fd, addr),
        // SO_SNDTIMEO fired. An ICMP error that arrived while connect() held
        // the socket lock (always so on loopback: the reject is processed
        // inside the SYN's own transmit) was parked in sk_err_soft; SO_ERROR
        // hands it back.
        libc::EINPROGRESS | libc::EAGAIN => {
            let soft = so_error(&fd)?;
            Ok(ConnectResult::Failed(if soft != 0 { soft } else { errno }))
        }
        _ => Ok(ConnectResult::Failed(errno)),
    }
}

fn finish_interrupted(fd: &OwnedFd, addr: SocketAddrV4) -> io::Result<ConnectResult> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: pfd is one live pollfd, and 1 is the array length.
    cvt(unsafe { libc::poll(&mut pfd, 1, -1) })?;
    let err = so_error(fd)?;
    if err != 0 {
        return Ok(ConnectResult::Failed(err));
    }
    Ok(ConnectResult::Connected {
        self_connect: local_addr(fd)? == addr,
    })
}

/// Reads and clears the socket's pending error (falling back, in Linux, to
/// the soft error an ICMP message left).
fn so_error(fd: &OwnedFd) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err and len are live and len holds err's size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(err)
}

fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV4> {
    let mut sa = sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut len = SOCKADDR_IN_LEN;
    // SAFETY: sa is a live, writable sockaddr_in and len holds its size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    })?;
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait4_reports_exit_codes_and_usage() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let (status, usage) = wait4(child.id()).unwrap();
        drop(child); // reaped above, by wait4
        assert_eq!(status.code, Some(3));
        assert!(usage.max_rss_kib > 0);
    }
    // connect_probe and listen_tcp are exercised inside a lab namespace by
    // tests/lab.rs: no test connects to this machine's own loopback.
}
