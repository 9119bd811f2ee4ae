//! `floor`: the least work a TCP connect probe can cost, as a reference for
//! how fast a connect scanner could possibly go on this machine.
//!
//! One thread per core, each in a tight loop over its share of (address,
//! port): blocking `socket(SOCK_CLOEXEC)`, `connect`, `close`. No event loop,
//! no timers: a silent port is bounded only by `SO_SNDTIMEO` (`--timeout-ms`,
//! which blocks the thread, so worlds with many silent ports give the floor
//! many threads). Open ports are printed as FastPort JSON lines, so the lab
//! scores the floor like any scanner.
//!
//! ```text
//! floor -p 1-65535 127.0.0.1
//! floor -p 22,80 --threads 500 --timeout-ms 200 --show all 127.0.0.0/24 198.18.1.1-9
//! ```

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use fastport_lab::sys::connect_probe;
use fastport_lab::targets::{AddrRange, PortSet};
use fastport_lab::truth::{Expect, State, classify_connect};

#[derive(Parser)]
#[command(
    args_override_self = true,
    name = "floor",
    version,
    about = "The syscall floor of a TCP connect scan: socket, connect, close in a tight loop"
)]
struct Args {
    /// Ports: 22,80,1000-2000, - for all.
    #[arg(short, long, value_name = "SPEC")]
    ports: PortSet,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// SO_SNDTIMEO bounding a silent port, in milliseconds; 0 sets none.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    timeout_ms: u64,
    /// Which results to print.
    #[arg(long, value_enum, default_value_t = Show::Open)]
    show: Show,
    /// Targets: addresses, CIDR blocks, A-B ranges.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<AddrRange>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Show {
    Open,
    All,
}

/// Indices claimed per atomic increment: enough to make the counter cheap,
/// few enough to balance threads that block on silent ports.
const CHUNK: u64 = 16;
/// Retries of a probe that failed for a local reason (no ephemeral port free...).
const LOCAL_RETRIES: u32 = 1000;
/// Most addresses the floor expands.
const MAX_HOSTS: u64 = 1 << 24;

struct Plan {
    hosts: Vec<Ipv4Addr>,
    ports: Vec<u16>,
    timeout: Option<Duration>,
    show: Show,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let host_count: u64 = args.targets.iter().map(AddrRange::len).sum();
    if host_count > MAX_HOSTS {
        eprintln!("floor: {host_count} addresses; at most {MAX_HOSTS}");
        return ExitCode::from(2);
    }
    let plan = Plan {
        hosts: args.targets.iter().flat_map(AddrRange::iter).collect(),
        ports: args.ports.iter().collect(),
        timeout: (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms)),
        show: args.show,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let total = plan.hosts.len() as u64 * plan.ports.len() as u64;
    let next = AtomicU64::new(0);

    let results: Vec<io::Result<(Vec<u8>, u64)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn_scoped(scope, || worker(&plan, &next, total))
                    .expect("spawn a floor thread")
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("floor thread panicked"))
            .collect()
    });

    let mut out = io::stdout().lock();
    let mut failed = 0u64;
    for r in results {
        match r {
            Ok((lines, errors)) => {
                failed += errors;
                if let Err(e) = out.write_all(&lines) {
                    return write_error(e);
                }
            }
            Err(e) => {
                eprintln!("floor: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = out.flush() {
        return write_error(e);
    }
    if failed > 0 {
        eprintln!("floor: {failed} probes failed for local reasons");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_error(e: io::Error) -> ExitCode {
    if e.kind() == io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        eprintln!("floor: writing results: {e}");
        ExitCode::FAILURE
    }
}

/// Probes claimed chunks until none are left; returns the JSON lines to print
/// and how many probes failed for local reasons.
fn worker(plan: &Plan, next: &AtomicU64, total: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut lines = Vec::new();
    let mut errors = 0u64;
    let nports = plan.ports.len() as u64;
    loop {
        let start = next.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= total {
            return Ok((lines, errors));
        }
        for i in start..(start + CHUNK).min(total) {
            let addr = plan.hosts[(i / nports) as usize];
            let port = plan.ports[(i % nports) as usize];
            let target = SocketAddrV4::new(addr, port);
            match probe(target, plan.timeout)? {
                Some(e) if e.state == State::Open || plan.show == Show::All => {
                    writeln!(
                        lines,
                        r#"{{"addr":"{addr}","port":{port},"state":"{}","reason":"{}","rtt_us":null}}"#,
                        e.state, e.reason
                    )?;
                }
                Some(_) => {}
                None => errors += 1,
            }
        }
    }
}

/// One probe, retried while it fails for local reasons (ephemeral ports or
/// descriptors exhausted for a moment). `None` when it never succeeds.
fn probe(target: SocketAddrV4, timeout: Option<Duration>) -> io::Result<Option<Expect>> {
    for _ in 0..LOCAL_RETRIES {
        match connect_probe(target, timeout) {
            Ok(r) => {
                if let Some(e) = classify_connect(r) {
                    return Ok(Some(e));
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) => {}
            Err(e) => return Err(e),
        }
        std::thread::yield_now();
    }
    eprintln!("floor: {target}: gave up after {LOCAL_RETRIES} local failures");
    Ok(None)
}
