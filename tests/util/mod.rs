//! Fixtures shared by the integration tests.

pub mod netns;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The `fastport` binary under test, run from the temporary directory so
/// that files it leaves by default (a resume file) stay out of the tree.
pub fn fastport() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastport"));
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Runs fastport with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    fastport().args(args).output().expect("run fastport")
}

/// A fresh, empty temporary directory for one test.
///
/// The first call in a test binary also removes the directories that earlier
/// runs left behind (their process is gone): an at-scale test writes hundreds
/// of megabytes, and runs must not fill the disk one after another.
pub fn temp_dir(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale_temp_dirs);
    let dir = std::env::temp_dir().join(format!("fastport-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Removes `fastport-test-PID-*` directories whose process no longer runs.
fn sweep_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("fastport-test-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One line of `-oJ` output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Line {
    pub addr: String,
    pub port: u16,
    pub state: String,
    pub reason: String,
    pub rtt_us: Option<u32>,
}

/// Reads a JSON-lines file into (addr, port) → (state/reason), failing on
/// any port reported twice.
pub fn read_jsonl(path: &Path) -> BTreeMap<(String, u16), String> {
    let text = std::fs::read_to_string(path).expect("read -oJ output");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let l: Line =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        if l.state == "filtered" && l.reason == "no-response" {
            assert_eq!(l.rtt_us, None, "{line}");
        } else {
            assert!(l.rtt_us.is_some(), "{line}");
        }
        let key = (l.addr.clone(), l.port);
        let prev = map.insert(key, format!("{}/{}", l.state, l.reason));
        assert!(prev.is_none(), "reported twice: {line}");
    }
    map
}

/// Binds `n` listeners on `ip`, on ports picked by the kernel (so some land
/// in the ephemeral range) plus any fixed `ports`; keeps them accepting.
pub fn listeners(ip: &str, fixed: &[u16], n: usize) -> Vec<TcpListener> {
    let mut out = Vec::new();
    for &port in fixed {
        out.push(TcpListener::bind((ip, port)).expect("bind fixed port"));
    }
    for _ in 0..n {
        out.push(TcpListener::bind((ip, 0)).expect("bind"));
    }
    for l in &out {
        l.set_nonblocking(true).expect("nonblocking");
    }
    out
}

pub fn addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Reads a `--stats` JSON file.
pub fn read_stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read --stats")).expect("stats JSON")
}

/// Makes the namespace drop every packet matching each nftables expression
/// (e.g. `ip daddr 127.0.0.1 tcp dport 7010-7019`) on its way out: those
/// probes get no answer.
pub fn drop_packets(matches: &[&str]) {
    let mut cmd = String::from(
        "nft add table inet fastport_test \
         && nft add chain inet fastport_test out '{ type filter hook output priority 0; }'",
    );
    for m in matches {
        cmd.push_str(&format!(" && nft add rule inet fastport_test out {m} drop"));
    }
    sh(&cmd);
}

/// Runs a shell command inside the namespace, failing loudly.
pub fn sh(cmd: &str) {
    let status = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .expect("run sh");
    assert!(status.success(), "command failed: {cmd}");
}

/// Sends `sig` once the run has caught it (its handler is in place: on a
/// loaded machine a debug build can take longer than `after` to get there)
/// and has then had `after` to start writing. `KILL` cannot be caught: it
/// waits for the run's `INT` handler instead.
pub fn signal_after(child: Child, sig: &str, after: Duration) -> Output {
    let number = match sig {
        "HUP" => 1,
        "INT" | "KILL" => 2,
        "TERM" => 15,
        other => panic!("signal {other}: add its number"),
    };
    let started = Instant::now();
    while !catches(child.id(), number) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(after);
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
    child.wait_with_output().unwrap()
}

/// Whether process `pid` has a handler for signal `number` (`SigCgt` in
/// `/proc/PID/status`, a hexadecimal mask whose bit `number - 1` is it).
fn catches(pid: u32, number: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (number - 1)) != 0)
}
