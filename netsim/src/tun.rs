//! A TUN device: the simulated network's wire. The kernel routes packets
//! for 198.18.0.0/15 into it; each `read` is one IPv4 packet, each `write`
//! hands one back to the kernel as if it had arrived from the network.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::error::NetsimError;
use crate::sys;

/// An open, non-blocking TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name`. Needs `CAP_NET_ADMIN`
    /// in the network namespace, which [`crate::netns`] arranges.
    pub fn open(name: &str) -> Result<Tun, NetsimError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| NetsimError::io("opening /dev/net/tun", e))?;
        let name = sys::tun_set_iff(file.as_fd(), name)
            .map_err(|e| NetsimError::io(format!("creating TUN device {name}"), e))?;
        Ok(Tun { file, name })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(packet)?;
        if n == packet.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TUN took {n} of {} bytes", packet.len()),
            ))
        }
    }
}

impl mio::event::Source for Tun {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.file.as_raw_fd()).deregister(registry)
    }
}
