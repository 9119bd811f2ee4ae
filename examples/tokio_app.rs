//! A scan inside a tokio application, on a single-threaded runtime, that
//! never blocks it: the scan runs on tokio's blocking pool
//! (`spawn_blocking`), its results reach the async side through a tokio
//! channel (`blocking_send` on one end, `recv().await` on the other), and a
//! ticker task keeps running all the while. The application cancels the
//! scan with its [`Stop`] handle once it has seen the open port it was
//! looking for.
//!
//! FastPort itself has no async runtime and does not depend on tokio
//! (tokio is only a dev-dependency, for this example).
//!
//! **Run it only inside a private network namespace** (it scans all ports
//! of `127.0.0.1`): `/work/shared/netns-run cargo run --example tokio_app`
//! in FastPort's checkout, or `unshare --net --map-root-user sh -c 'ip link
//! set lo up && target/debug/examples/tokio_app'`.

use std::time::Duration;

use fastport::scanner::{Error, Scanner, State, Stop};
use tokio::sync::mpsc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Something to find.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let wanted = listener.local_addr().expect("its address").port();

    let scanner = Scanner::builder()
        .targets(["127.0.0.1"])?
        .ports("-")?
        .timeout(Duration::from_millis(300))
        .build()?;
    let stop: Stop = scanner.stop_handle();

    // The scan, off the runtime's only thread.
    let (tx, mut rx) = mpsc::channel(1024);
    let scan = tokio::task::spawn_blocking(move || {
        let mut scan = scanner.scan()?;
        for result in &mut scan {
            if tx.blocking_send(result).is_err() {
                break; // the receiver is gone: finish() stops the scan
            }
        }
        scan.finish()
    });

    // Other work on the same thread: it only runs if nothing blocks.
    let ticker = tokio::spawn(async {
        let mut ticks = 0u32;
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        loop {
            interval.tick().await;
            ticks += 1;
            if ticks % 25 == 0 {
                println!("tick {ticks}: the runtime is free");
            }
        }
    });

    let mut seen = 0u64;
    while let Some(result) = rx.recv().await {
        seen += 1;
        if result.state == State::Open && result.port == wanted {
            println!("found {result} after {seen} results; cancelling");
            stop.stop();
        }
    }
    let summary = scan.await.expect("the scan task")?;
    ticker.abort();
    println!(
        "{} results of {} planned, interrupted: {}",
        summary.stats.results(),
        summary.planned,
        summary.interrupted
    );
    drop(listener);
    Ok(())
}
