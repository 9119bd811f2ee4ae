//! The lab's scenarios at a small size with a fixed seed: FastPort must
//! reproduce the world's truth exactly — every (address, port) reported
//! once, with the true state and reason — with either engine. The lab builds
//! each world in its own network namespace (skipped with a reason where none
//! can be made, a failure under `CI=true`). The netsim worlds also need a
//! TUN device (`/dev/net/tun`) in that namespace.

use fastport_lab::{Outcome, RunSpec, run};

const SEED: u64 = 20261129;

fn exact(test: &str, scenario: &str, scanner: &str, extra: &[&str]) {
    let spec = RunSpec {
        scenario: scenario.into(),
        seed: SEED,
        scale: "small".into(),
        scanner: scanner.into(),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        fastport_bin: Some(env!("CARGO_BIN_EXE_fastport").into()),
        ..RunSpec::default()
    };
    match run(&spec).unwrap_or_else(|e| panic!("{test}: {e}")) {
        Outcome::Skipped(why) => eprintln!("{test}: skipped: {why}"),
        Outcome::Scored(report) => report.assert_exact(),
    }
}

/// Both engines on every scenario: the same truth, so the same results.
macro_rules! scenario_tests {
    ($($name:ident: $scenario:literal, $extra:expr;)*) => {$(
        mod $name {
            #[test]
            fn mio_engine_is_exact() {
                super::exact(concat!(stringify!($name), "/mio"), $scenario, "fastport", $extra);
            }
            #[test]
            fn threads_engine_is_exact() {
                super::exact(concat!(stringify!($name), "/threads"), $scenario, "fastport-threads", $extra);
            }
        }
    )*};
}

scenario_tests! {
    loopback_65k: "loopback-65k", &[];
    wide_16: "wide-16", &[];
    filtered_mix: "filtered-mix", &["--timeout", "250ms", "--retries", "1"];
    ephemeral_trap: "ephemeral-trap", &[];
    routes_mix: "routes-mix", &["--timeout", "250ms", "--retries", "1"];
    // Served by netsim: latency up to ~0.5 s and ICMP codes 1 and 13, no loss
    // at this scale; 2 s outlasts every host (with the kernel's 1 s SYN
    // retransmission inside it), so no retry is needed for the exact truth.
    netsim_internet_like: "netsim-internet-like", &["--timeout", "2s", "--retries", "0"];
}

/// Several seeds of the trap world: a self-connect must never be open.
#[test]
fn ephemeral_trap_across_seeds() {
    for seed in 1..=3 {
        let spec = RunSpec {
            scenario: "ephemeral-trap".into(),
            seed,
            scale: "small".into(),
            scanner: "fastport".into(),
            fastport_bin: Some(env!("CARGO_BIN_EXE_fastport").into()),
            ..RunSpec::default()
        };
        match run(&spec).expect("lab run") {
            Outcome::Skipped(why) => return eprintln!("skipped: {why}"),
            Outcome::Scored(report) => report.assert_exact(),
        }
    }
}
