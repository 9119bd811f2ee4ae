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

use fastport::scanner::{Engine, Error, Scanner, State};

fn main() -> ExitCode {
    let ports = std::env::args().nth(1).unwrap_or_else(|| "1-1024".into());
    match scan(&ports) {
        Ok(()) => ExitCode::SUCCESS,
        // Bad input is named: `invalid port "70000" in "-p 22,70000": ...`.
        Err(e @ Error::Targets(_)) => {
            eprintln!("one_host: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("one_host: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scan(ports: &str) -> Result<(), Error> {
    let scanner = Scanner::builder()
        .targets(["127.0.0.1"])?
        .ports(ports)?
        .timeout(Duration::from_millis(500))
        .engine(Engine::Mio)
        .build()?;
    let summary = scanner.run(|result| {
        if result.state == State::Open {
            println!("{result}");
        }
    })?;
    let count = |state| summary.stats.state_count(state);
    println!(
        "{} ports: {} open, {} closed, {} filtered in {:.2?}",
        summary.stats.results(),
        count(State::Open),
        count(State::Closed),
        count(State::Filtered),
        summary.elapsed
    );
    Ok(())
}
