//! The crate's only module allowed `unsafe`: the `TUNSETIFF` ioctl that
//! turns an open `/dev/net/tun` into a named TUN device, and `pidfd_open`,
//! which lets the event loop wait for the scanner's exit like any other
//! event. Each block says why it is sound.

use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Makes the open `/dev/net/tun` descriptor a TUN device (layer 3, no
/// packet-information prefix: reads and writes are bare IP packets) named
/// `name`, and returns the name the kernel gave it.
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name (1 to 15 bytes)"),
        ));
    }
    // SAFETY: ifreq is plain old data (a byte array and a union of plain
    // fields), for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: fd is a live descriptor borrowed for the call, and TUNSETIFF
    // reads and writes exactly one ifreq, which is a live, writable local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = ifr
        .ifr_name
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(ifr.ifr_name.len());
    Ok(ifr.ifr_name[..len]
        .iter()
        .map(|&c| c as u8 as char)
        .collect())
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A monotonic timerfd (non-blocking, close-on-exec): the event loop's
/// alarm clock. mio's poll timeout has millisecond granularity, rounded up;
/// a timerfd wakes within the kernel's timer slack (50 µs), so a "fixed
/// 250 ms" host answers in 250.05 ms, not up to 251.
pub(crate) fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes its arguments by value and touches no memory of ours.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms the timerfd to fire once, `after` from now (a zero `after` is
/// raised to 1 ns, since zero would disarm it).
pub(crate) fn timerfd_arm(fd: BorrowedFd<'_>, after: std::time::Duration) -> io::Result<()> {
    let after = after.max(std::time::Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: fd is a live timerfd borrowed for the call; spec is a live local the
    // kernel only reads, and the old-value pointer may be null.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
