//! The private network namespace and the simulated network's plumbing in it.
//!
//! `fastport-netsim run` re-executes itself under `unshare --net` (adding
//! `--user --map-root-user` when not root), marking the child with
//! [`INSIDE_ENV`], exactly as `fastport-lab` does. Inside, [`setup`] makes
//! what the kernel needs to send 198.18.0.0/15 into the simulator:
//!
//! ```text
//! ip link set lo up
//! ip addr replace 198.19.255.254/32 dev lo            # a source address
//! (open /dev/net/tun, TUNSETIFF fpsim0 IFF_TUN|IFF_NO_PI)
//! ip link set fpsim0 txqueuelen 10000 up
//! ip route replace 198.18.0.0/15 dev fpsim0 src 198.19.255.254
//! ```
//!
//! Without a local address of the right kind the kernel has no source for
//! the route: connects then go out from 0.0.0.0 and no answer can come
//! back. The source is the last address of the benchmark range (kept out of
//! every simulated host block), on `lo` so it exists before the device does.
//! Nothing here runs outside a namespace of our own: [`setup`] refuses to.

use std::ffi::OsString;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use crate::config::{BENCHMARK_RANGE, Cidr};
use crate::error::NetsimError;
use crate::tun::Tun;

/// Set (to `1`) in the re-executed child that runs inside the namespace.
pub const INSIDE_ENV: &str = "FASTPORT_NETSIM_NETNS";
/// The lab's marker: a namespace the lab made is private too.
pub const LAB_INSIDE_ENV: &str = "FASTPORT_LAB_NETNS";
/// Overrides the `unshare` program (tests point it at `false` to exercise
/// the paths taken where no namespace can be made).
pub const UNSHARE_ENV: &str = "FASTPORT_NETSIM_UNSHARE";

/// Where the simulated network is plugged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The TUN device's name.
    pub device: String,
    /// The scanner's source address (put on `lo`).
    pub source: Ipv4Addr,
    /// The block routed into the device.
    pub route: Cidr,
    /// The device's transmit queue, in packets: what the kernel holds for
    /// the responder to read. Linux's default (500) overflows under a fast
    /// scan's bursts, and what overflows is silently dropped; the record's
    /// `device_drops` counts it.
    pub queue_len: u32,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            device: "fpsim0".into(),
            source: Ipv4Addr::new(198, 19, 255, 254),
            route: BENCHMARK_RANGE,
            queue_len: 10_000,
        }
    }
}

/// How a tool re-executes itself inside a fresh network namespace: the
/// marker its child gets, and the variable that overrides the `unshare`
/// program (tests point it at `false` to exercise the paths taken where no
/// namespace can be made). The lab uses it too, with its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unshare {
    /// Set (to `1`) in the re-executed child.
    pub inside_env: &'static str,
    /// Overrides the `unshare` program: a path, or a name looked up on PATH.
    pub program_env: &'static str,
}

/// netsim's own re-execution.
pub const NETSIM: Unshare = Unshare {
    inside_env: INSIDE_ENV,
    program_env: UNSHARE_ENV,
};

impl Unshare {
    /// The `unshare` program, if installed (or overridden).
    pub fn program(&self) -> Option<PathBuf> {
        match std::env::var_os(self.program_env) {
            Some(p) if !p.is_empty() => {
                let p = PathBuf::from(p);
                if p.components().count() > 1 {
                    Some(p)
                } else {
                    find_tool(p.to_str()?)
                }
            }
            _ => find_tool("unshare"),
        }
    }

    /// Whether this process is the re-executed child.
    pub fn inside(&self) -> bool {
        std::env::var_os(self.inside_env).is_some_and(|v| v == "1")
    }

    /// Runs `command` in a throwaway namespace: `Err` says why it could not.
    pub fn probe(&self, command: &[&str]) -> Result<(), String> {
        let unshare = self.program().ok_or("unshare is not installed")?;
        let out = Command::new(unshare)
            .args(unshare_args())
            .args(command)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(if msg.is_empty() {
                format!("unshare {}", out.status)
            } else {
                msg
            })
        }
    }

    /// Runs this executable again with `args`, inside a fresh namespace,
    /// marked with [`Unshare::inside_env`].
    pub fn reexec(&self, args: &[OsString]) -> Result<ExitStatus, ReexecError> {
        let unshare = self.program().ok_or(ReexecError::NoUnshare)?;
        let exe =
            std::env::current_exe().map_err(|e| ReexecError::Io("locating this program", e))?;
        Command::new(unshare)
            .args(unshare_args())
            .arg(exe)
            .args(args)
            .env(self.inside_env, "1")
            .status()
            .map_err(|e| ReexecError::Io("running unshare", e))
    }
}

/// Why [`Unshare::reexec`] could not run the child.
#[derive(Debug)]
pub enum ReexecError {
    /// No `unshare` program (nor an override).
    NoUnshare,
    /// An I/O error, and what was being done.
    Io(&'static str, io::Error),
}

/// Whether this process is netsim's child inside its namespace, or runs in
/// one the lab made.
pub fn inside() -> bool {
    NETSIM.inside() || std::env::var_os(LAB_INSIDE_ENV).is_some_and(|v| v == "1")
}

/// Whether `CI=true`: then a namespace or TUN device that cannot be made is
/// an error, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the effective uid is 0 (read from /proc/self/status: no unsafe).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The `unshare` arguments for this user (`--user --map-root-user` unless root).
pub fn unshare_args() -> Vec<&'static str> {
    if is_root() {
        vec!["--net", "--"]
    } else {
        vec!["--user", "--map-root-user", "--net", "--"]
    }
}

/// Finds `program` on PATH (and in /usr/sbin, /sbin, which a user's PATH may lack).
pub fn find_tool(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Tries to make a namespace with a TUN device in it (running `ip tuntap`
/// there); `Err` says why not.
pub fn probe() -> Result<(), String> {
    NETSIM.program().ok_or("unshare is not installed")?;
    if find_tool("ip").is_none() {
        return Err("ip (iproute2) is not installed".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun does not exist".into());
    }
    NETSIM.probe(&["ip", "tuntap", "add", "dev", "fpprobe0", "mode", "tun"])
}

/// Runs this executable again with `args`, inside a fresh network namespace.
pub fn reexec(args: &[OsString]) -> Result<ExitStatus, NetsimError> {
    NETSIM.reexec(args).map_err(|e| match e {
        ReexecError::NoUnshare => NetsimError::Namespace("unshare is not installed".into()),
        ReexecError::Io(what, e) => NetsimError::io(what, e),
    })
}

/// Refuses to touch the network unless this is a namespace of our own (or the lab's).
pub fn ensure_private() -> Result<(), NetsimError> {
    match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(me), Ok(init)) if me == init => Err(NetsimError::Namespace(
            "this is the machine's own network namespace: refusing to change it".into(),
        )),
        (Ok(_), Ok(_)) => Ok(()),
        // Not root: /proc/1 is out of reach, so trust the marker of whoever made the namespace.
        _ if inside() => Ok(()),
        _ => Err(NetsimError::Namespace(format!(
            "cannot tell whether this network namespace is private, and {INSIDE_ENV} is unset: \
             refusing to change it"
        ))),
    }
}

fn ip(args: &[&str]) -> Result<(), NetsimError> {
    let path = find_tool("ip")
        .ok_or_else(|| NetsimError::Setup("ip (iproute2) is not installed".into()))?;
    let out = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetsimError::io("running ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetsimError::Setup(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates the TUN device, the source address and the route in this
/// (private) namespace, and returns the device to serve.
pub fn setup(net: &NetConfig) -> Result<Tun, NetsimError> {
    ensure_private()?;
    if !net.route.contains(net.source) {
        // Keeps the source inside the benchmark range: nothing else is ours to use.
        return Err(NetsimError::Setup(format!(
            "the source address {} is not in the routed block {}",
            net.source, net.route
        )));
    }
    if !BENCHMARK_RANGE.covers(&net.route) {
        return Err(NetsimError::Setup(format!(
            "the routed block {} is not inside {BENCHMARK_RANGE}",
            net.route
        )));
    }
    ip(&["link", "set", "lo", "up"])?;
    let source = format!("{}/32", net.source);
    // `replace`, not `add`: the address outlives the device, and a caller
    // may serve several simulations one after another in one namespace (the
    // lab starts a fresh one for each scanner run).
    ip(&["addr", "replace", &source, "dev", "lo"])?;
    let tun = Tun::open(&net.device)?;
    // No IPv6 on the device: spares the responder router solicitations.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", tun.name()),
        "1",
    );
    let queue_len = net.queue_len.to_string();
    ip(&["link", "set", tun.name(), "txqueuelen", &queue_len, "up"])?;
    let route = net.route.to_string();
    let src = net.source.to_string();
    ip(&["route", "replace", &route, "dev", tun.name(), "src", &src])?;
    Ok(tun)
}

/// Packets the kernel dropped on their way into `device` because its queue
/// was full (the transmit-drop column of `/proc/self/net/dev`, which, unlike
/// /sys/class/net, follows this process's namespace).
pub fn device_drops(device: &str) -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    let line = dev
        .lines()
        .find(|l| l.split(':').next().is_some_and(|n| n.trim() == device))?;
    // After the name: 8 receive columns, then tx bytes, packets, errs, drop.
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .nth(11)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_drops_reads_this_namespaces_devices() {
        assert!(device_drops("lo").is_some());
        assert_eq!(device_drops("no-such-device0"), None);
    }

    #[test]
    fn the_default_plumbing_stays_in_the_benchmark_range() {
        let net = NetConfig::default();
        assert!(net.route.contains(net.source));
        assert!(BENCHMARK_RANGE.covers(&net.route));
    }
}
