//! The library API ([`fastport::scanner`]) against listeners the test opens,
//! inside a private network namespace: exact results through the callback
//! and the iterator, with both engines; an iterator dropped early stops its
//! scan; bad input fails in the builder, before any probe; and the
//! `one_host` example, run in the namespace, reports what is listening.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fastport::scanner::{
    Engine, Error, ProbeOrder, Reason, ScanResult, Scanner, ScannerBuilder, State, TargetErrorKind,
};

use crate::in_netns;
use crate::util::{addrs, listeners};

/// Three listeners and the ports around them: a port list with known
/// answers. Returns the listeners (keep them alive), the open ports and the
/// port spec.
fn fixture() -> (Vec<std::net::TcpListener>, Vec<u16>, String) {
    let ls = listeners("127.0.0.1", &[], 3);
    let open: Vec<u16> = addrs(&ls).iter().map(SocketAddr::port).collect();
    let mut ports: Vec<u16> = open.clone();
    ports.extend([1, 2, 3, 1000]);
    let spec = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    (ls, open, spec)
}

fn builder(spec: &str) -> ScannerBuilder {
    Scanner::builder()
        .targets(["127.0.0.1"])
        .unwrap()
        .ports(spec)
        .unwrap()
        .timeout(Duration::from_secs(2))
}

/// Every port exactly once, with its exact state and reason.
fn assert_exact(results: &[ScanResult], open: &[u16]) {
    let mut by_port = BTreeMap::new();
    for r in results {
        assert_eq!(r.addr, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(r.state, r.reason.state());
        assert!(by_port.insert(r.port, *r).is_none(), "reported twice: {r}");
    }
    assert_eq!(by_port.len(), open.len() + 4, "{by_port:?}");
    for (port, r) in by_port {
        if open.contains(&port) {
            assert_eq!((r.state, r.reason), (State::Open, Reason::SynAck), "{r}");
            assert!(r.rtt.is_some(), "an answered probe has its rtt: {r}");
        } else {
            assert_eq!(r.state, State::Closed, "{r}");
            assert!(matches!(
                r.reason,
                Reason::ConnRefused | Reason::SelfConnect
            ));
        }
    }
}

#[test]
fn the_callback_reports_every_port_exactly() {
    if !in_netns!(the_callback_reports_every_port_exactly) {
        return;
    }
    let (_ls, open, spec) = fixture();
    for engine in [Engine::Mio, Engine::Threads] {
        let mut results = Vec::new();
        let scanner = builder(&spec).engine(engine).build().unwrap();
        assert_eq!(scanner.len(), 7);
        let summary = scanner.run(|r| results.push(r)).unwrap();
        assert_exact(&results, &open);
        assert_eq!(summary.stats.results(), 7);
        assert_eq!(summary.stats.state_count(State::Open), 3);
        assert_eq!(summary.stats.state_count(State::Closed), 4);
        assert_eq!(summary.engine, engine.as_str());
        assert!(!summary.interrupted);
    }
}

#[test]
fn the_iterator_reports_every_port_exactly() {
    if !in_netns!(the_iterator_reports_every_port_exactly) {
        return;
    }
    let (_ls, open, spec) = fixture();
    for engine in [Engine::Mio, Engine::Threads] {
        let mut scan = builder(&spec)
            .engine(engine)
            .order(ProbeOrder::Sequential)
            .build()
            .unwrap()
            .scan()
            .unwrap();
        let results: Vec<ScanResult> = scan.by_ref().collect();
        assert_exact(&results, &open);
        let summary = scan.finish().unwrap();
        assert_eq!(summary.stats.results(), 7);
        assert!(!summary.interrupted);
    }
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Dropping the iterator after a few results stops the scan: the drop
/// returns (at 20 connects per second the whole scan would take an hour)
/// and the scan's threads are gone when it has.
#[test]
fn dropping_the_iterator_stops_the_scan() {
    if !in_netns!(dropping_the_iterator_stops_the_scan) {
        return;
    }
    let before = threads_of_this_process();
    let scanner = builder("-").rate(20.0).threads(2).build().unwrap();
    let stop = scanner.stop_handle();
    let mut scan = scanner.scan().unwrap();
    let first: Vec<ScanResult> = scan.by_ref().take(3).collect();
    assert_eq!(first.len(), 3);
    assert!(
        threads_of_this_process() > before,
        "the scan runs on threads"
    );
    drop(scan);
    assert!(stop.is_stopped(), "dropping the iterator stopped the scan");
    assert_eq!(
        threads_of_this_process(),
        before,
        "the scan's threads ended"
    );
}

/// `finish` before the end stops the scan too, and the summary says it was
/// interrupted and how far it got.
#[test]
fn finishing_early_returns_an_interrupted_summary() {
    if !in_netns!(finishing_early_returns_an_interrupted_summary) {
        return;
    }
    let mut scan = builder("-").rate(20.0).build().unwrap().scan().unwrap();
    assert!(scan.next().is_some());
    let summary = scan.finish().unwrap();
    assert!(summary.interrupted);
    assert!(summary.stats.results() >= 1);
    assert!(summary.stats.results() < 65535);
    assert_eq!(summary.planned, 65535);
}

/// A stop handle stopped before the scan runs: nothing is probed.
#[test]
fn a_stop_before_the_run_probes_nothing() {
    if !in_netns!(a_stop_before_the_run_probes_nothing) {
        return;
    }
    let scanner = builder("1-100").build().unwrap();
    scanner.stop_handle().stop();
    let mut results = 0;
    let summary = scanner.run(|_| results += 1).unwrap();
    assert_eq!(results, 0);
    assert_eq!(summary.stats.attempts, 0);
    assert!(summary.interrupted);
}

/// Bad input fails in the builder, naming what was wrong (nothing here
/// sends a probe: no namespace needed).
#[test]
fn bad_input_is_a_typed_error_naming_it() {
    let e = Scanner::builder().ports("22,70000").unwrap_err();
    let Error::Targets(t) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(t.kind(), TargetErrorKind::InvalidPort), "{t:?}");
    assert!(e.to_string().contains("70000"), "{e}");

    let e = Scanner::builder().targets(["198.18.0.0/33"]).unwrap_err();
    assert!(e.to_string().contains("198.18.0.0/33"), "{e}");
    let Error::Targets(t) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(t.kind(), TargetErrorKind::InvalidCidr { .. }));

    // A hostname waits for build, which resolves it (or not, with -n).
    let b = Scanner::builder().targets(["example.invalid"]).unwrap();
    let e = b.resolve(false).build().unwrap_err();
    assert!(e.to_string().contains("example.invalid"), "{e}");

    let e = Scanner::builder().concurrency(0).build().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Setting {
                setting: "concurrency",
                ..
            }
        ),
        "{e}"
    );
    let e = Scanner::builder().rate(0.0).build().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Setting {
                setting: "rate",
                ..
            }
        ),
        "{e}"
    );
    let e = Scanner::builder()
        .timeout(Duration::from_secs(1))
        .timing(fastport::scanner::Template::Aggressive)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::FixedAndAdaptive), "{e}");
}

/// The example's binary, built here if `cargo test` did not build it (as
/// with `--test integration`), in the profile of this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--offline", "--example", name])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo");
    assert!(status.success(), "cannot build example {name}");
    profile_dir.join("examples").join(name)
}

/// `examples/one_host.rs` scans 127.0.0.1: only ever in a namespace.
#[test]
fn the_one_host_example_reports_the_open_ports() {
    if !in_netns!(the_one_host_example_reports_the_open_ports) {
        return;
    }
    let (_ls, open, spec) = fixture();
    let out = Command::new(example("one_host"))
        .arg(&spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    let last = lines.pop().unwrap();
    assert_eq!(
        last.split(" in ").next().unwrap(),
        "7 ports: 3 open, 4 closed, 0 filtered"
    );
    lines.sort_unstable();
    let mut want: Vec<String> = open
        .iter()
        .map(|p| format!("127.0.0.1:{p} open syn-ack"))
        .collect();
    want.sort_unstable();
    assert_eq!(lines, want);
}

/// A callback that panicked unwound into the engine, whose workers then
/// probed to the end of the scan with nobody reading (at 20 connects per
/// second, an hour): the panic stops the scan, then goes on.
#[test]
fn a_panicking_callback_stops_the_scan() {
    if !in_netns!(a_panicking_callback_stops_the_scan) {
        return;
    }
    let before = threads_of_this_process();
    let scanner = builder("-").rate(20.0).build().unwrap();
    let stop = scanner.stop_handle();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scanner.run(|r| panic!("the caller's bug at {r}"))
    }));
    let payload = panicked.expect_err("the panic goes on to the caller");
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("the caller's bug at 127.0.0.1:"),
        "{message}"
    );
    assert!(stop.is_stopped());
    assert_eq!(
        threads_of_this_process(),
        before,
        "the scan's threads ended"
    );
}

/// `examples/embedded.rs` and `examples/tokio_app.rs` scan every port of
/// 127.0.0.1 for a listener they open, and cancel when they find it: only
/// ever in a namespace.
#[test]
fn the_embedding_examples_find_their_listener_and_cancel() {
    if !in_netns!(the_embedding_examples_find_their_listener_and_cancel) {
        return;
    }
    for name in ["embedded", "tokio_app"] {
        let out = Command::new(example(name)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let found = stdout
            .lines()
            .find(|l| l.starts_with("found "))
            .unwrap_or_else(|| panic!("{name} found nothing: {stdout}"));
        assert!(
            found.starts_with("found 127.0.0.1:") && found.contains(" open syn-ack after "),
            "{name}: {found}"
        );
    }
}

/// A name that does not resolve beside one that does is skipped and listed;
/// alone, it is the error. In a namespace: the resolver's query cannot
/// leave it (`.invalid` never resolves anyway, RFC 6761).
#[test]
fn an_unresolved_name_is_listed_not_scanned() {
    if !in_netns!(an_unresolved_name_is_listed_not_scanned) {
        return;
    }
    let s = Scanner::builder()
        .targets(["127.0.0.1", "nothing.invalid"])
        .unwrap()
        .ports("22")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s.unresolved().len(), 1);
    assert_eq!(s.unresolved()[0].token(), "nothing.invalid");
    let alone = Scanner::builder().targets(["nothing.invalid"]).unwrap();
    let Err(Error::Targets(e)) = alone.build() else {
        panic!("nothing left to scan")
    };
    assert_eq!(e.token(), "nothing.invalid");
}
