//! The one module allowed `unsafe`: process limits the standard library and
//! socket2 do not wrap. Every block carries a `SAFETY:` line.
#![allow(unsafe_code)]

use std::io;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers() {
        let before = fd_limit().unwrap();
        let after = raise_fd_limit().unwrap();
        assert!(after.soft >= before.soft);
        assert_eq!(after.soft, after.hard);
    }
}
