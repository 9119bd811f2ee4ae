//! Embedding a scan in an application that must stay responsive: the scan
//! streams its results from its own thread, the application's loop keeps
//! doing its work (here: a heartbeat every 100 ms) while it consumes them,
//! and it cancels the scan when it has what it wanted (the first open port)
//! or a deadline passes.
//!
//! The library needs no async runtime. In a tokio application the same
//! shape is:
//!
//! ```text
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let scanner = Scanner::builder().targets(["127.0.0.1"])?.ports("-")?.build()?;
//! let stop = scanner.stop_handle();
//! let task = tokio::task::spawn_blocking(move || {
//!     let mut scan = scanner.scan()?;
//!     for result in &mut scan {
//!         if tx.blocking_send(result).is_err() { break } // receiver gone: stop
//!     }
//!     scan.finish() // the summary; stops the scan if the loop broke early
//! });
//! while let Some(result) = rx.recv().await { /* ... */ stop.stop(); }
//! let summary = task.await??;
//! ```
//!
//! The runtime's worker threads never block: the scan and its blocking
//! sends live on the blocking pool, and `recv().await` yields.
//!
//! **Run it only inside a private network namespace** (it scans all ports
//! of `127.0.0.1`): `/work/shared/netns-run cargo run --example embedded`
//! in FastPort's checkout, or `unshare --net --map-root-user sh -c 'ip link
//! set lo up && target/debug/examples/embedded'`.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use fastport::scanner::{ProbeOrder, ScanResult, Scanner, State};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embedded: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), fastport::scanner::Error> {
    // Something to find: a listener of our own, on a port the kernel picks.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();

    let scanner = Scanner::builder()
        .targets(["127.0.0.1"])?
        .ports("-")?
        .order(ProbeOrder::Random)
        .timeout(Duration::from_millis(300))
        .build()?;
    let stop = scanner.stop_handle();

    // The scan's thread: results into the application's channel.
    let (tx, rx) = mpsc::sync_channel::<ScanResult>(1024);
    let worker = std::thread::spawn(move || {
        let mut scan = scanner.scan()?;
        for result in &mut scan {
            if tx.send(result).is_err() {
                break; // the application hung up: finish() stops the scan
            }
        }
        scan.finish()
    });

    // The application's loop: never blocked by the scan for long.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0u64;
    let mut heartbeats = 0u32;
    // How long the loop ever went between two turns: what "responsive" means.
    let mut longest_turn = Duration::ZERO;
    let mut last_turn = Instant::now();
    loop {
        longest_turn = longest_turn.max(last_turn.elapsed());
        last_turn = Instant::now();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(result) => {
                seen += 1;
                if result.state == State::Open {
                    println!("found {result} after {seen} results; cancelling");
                    stop.stop();
                }
            }
            Err(RecvTimeoutError::Timeout) => heartbeats += 1,
            Err(RecvTimeoutError::Disconnected) => break, // the scan ended
        }
        if Instant::now() > deadline {
            println!("deadline passed; cancelling");
            stop.stop();
        }
    }
    let summary = worker.join().expect("the scan thread")?;
    println!(
        "listener on {port}; {} results of {} planned, interrupted: {}",
        summary.stats.results(),
        summary.planned,
        summary.interrupted
    );
    println!(
        "the application's loop: {heartbeats} idle heartbeats, never more than {longest_turn:.1?} between turns"
    );
    Ok(())
}
