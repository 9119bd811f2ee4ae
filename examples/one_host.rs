//! Scans one host, `127.0.0.1`, with the library API and prints its open
//! ports and the summary: the smallest complete use of
//! [`fastport::scanner::Scanner`].
//!
//! ```text
//! cargo run --example one_host -- 22,80,8000-8100
//! ```
//!
//! **Run it only inside a private network namespace** (it scans loopback,
//! but a scanner is never pointed at a machine by accident): in FastPort's
//! checkout, `/work/shared/netns-run cargo run --example one_host`, or
//! anywhere `unshare --net --map-root-user sh -c 'ip link set lo up &&
//! target/debug/examples/one_host'`. The integration test that runs it
//! (`tests/api.rs`) does so in a namespace of its own.

use std::process::ExitCode;
use std::time::Duration;

use fastport::scanner::{Engine, Scanner, State};

fn main() -> ExitCode {
    let ports = std::env::args().nth(1).unwrap_or_else(|| "1-1024".into());
    let scanner = match Scanner::builder()
        .targets(["127.0.0.1"])
        .and_then(|b| b.ports(&ports))
        .and_then(|b| {
            b.timeout(Duration::from_millis(500))
                .engine(Engine::Mio)
                .build()
        }) {
        Ok(scanner) => scanner,
        Err(e) => {
            eprintln!("one_host: {e}");
            return ExitCode::from(2);
        }
    };
    let summary = scanner.run(|result| {
        if result.state == State::Open {
            println!("{result}");
        }
    });
    match summary {
        Ok(s) => {
            println!(
                "{} ports: {} open, {} closed, {} filtered in {:.2?}",
                s.stats.results(),
                s.stats.state_count(State::Open),
                s.stats.state_count(State::Closed),
                s.stats.state_count(State::Filtered),
                s.elapsed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("one_host: {e}");
            ExitCode::FAILURE
        }
    }
}
