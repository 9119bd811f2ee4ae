//! Running a scanner as a measured child: wall time from spawn to reap, and
//! its CPU time, peak RSS and context switches from `wait4`.
//!
//! Peak RSS needs care. On `execve` Linux folds the high-water RSS of the
//! address space being replaced into the new program's `maxrss`; with
//! `posix_spawn` (vfork) that address space is the *parent's*, so a scanner
//! spawned by the lab would report at least the lab's own peak RSS (which
//! grows as it parses outputs). The lab therefore spawns each scanner through
//! a small launcher, `fastport-lab measure`, whose fresh image is what gets
//! folded in (about 2 MiB), and reads the launcher's report.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::{self, Rusage, WaitStatus};

/// What one scanner process cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// From spawn to reap.
    pub wall: Duration,
    /// Its resource usage.
    pub usage: Rusage,
    /// How it ended.
    pub status: WaitStatus,
    /// Killed for running past the time limit.
    pub timed_out: bool,
}

/// Spawns `cmd`, waits for it with `wait4` and kills it after `limit`.
pub fn run_measured(cmd: &mut Command, limit: Duration) -> io::Result<Measurement> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // The watchdog kills only while the child is unreaped: it is told as soon
    // as wait4 returns (a pid is not reused within that instant in practice).
    let watchdog = std::thread::spawn(move || match done_rx.recv_timeout(limit) {
        Err(mpsc::RecvTimeoutError::Timeout) => sys::kill_hard(pid).is_ok(),
        _ => false,
    });
    // The child is reaped here, not through `child`: std never waits on it.
    let waited = sys::wait4(pid);
    let wall = start.elapsed();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    drop(child);
    let (status, usage) = waited?;
    Ok(Measurement {
        wall,
        usage,
        status,
        timed_out,
    })
}

/// Runs `program args` through `launcher measure` (see the module docs) with
/// standard output and error sent to the given files.
pub fn run_launched(
    launcher: &Path,
    program: &Path,
    args: &[OsString],
    stdout: File,
    stderr: File,
    limit: Duration,
    report: &Path,
) -> io::Result<Measurement> {
    let status = Command::new(launcher)
        .arg("measure")
        .arg("--time-limit-ms")
        .arg(limit.as_millis().to_string())
        .arg("--report")
        .arg(report)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()?;
    let text = std::fs::read_to_string(report).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "launcher {status} wrote no report {}: {e}",
                report.display()
            ),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The launcher's side: runs `argv` (program first) with this process's
/// standard streams, and writes its [`Measurement`] as JSON to `report`.
pub fn launch_and_report(argv: &[OsString], limit: Duration, report: &Path) -> io::Result<()> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no program to measure"))?;
    let m = run_measured(Command::new(program).args(args), limit)?;
    let json = serde_json::to_string(&m).map_err(io::Error::other)?;
    std::fs::write(report, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_enforces_the_limit() {
        let m = run_measured(Command::new("true").arg("x"), Duration::from_secs(10)).unwrap();
        assert!(m.status.success() && !m.timed_out);
        let m = run_measured(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap();
        assert!(m.timed_out);
        assert_eq!(m.status.signal, Some(libc::SIGKILL));
        assert!(m.wall < Duration::from_secs(4));
    }

    #[test]
    fn the_report_round_trips() {
        let dir = std::env::temp_dir().join(format!("fastport-lab-measure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("m.json");
        launch_and_report(
            &["sh".into(), "-c".into(), "exit 2".into()],
            Duration::from_secs(10),
            &report,
        )
        .unwrap();
        let m: Measurement =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(m.status.code, Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
