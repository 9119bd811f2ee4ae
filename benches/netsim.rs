//! Benchmarks on netsim's simulated networks: the lab's
//! `netsim-*` scenarios, served by `fastport-netsim` in the lab's namespace
//! with real latency and loss, at the `bench` scale (a /22 of the preset's
//! /16 × the top 100 ports, to keep a run to minutes). Four parts, each
//! selectable by name (`cargo bench --bench netsim -- sweep`):
//!
//! - `profiles`: every scanner on every profile, each with its default
//!   settings: wall time, probes/s, recall (and, from the same runs,
//!   FastPort's latency percentiles against netsim's record).
//!   Beside it, each run's wall time ÷ netsim's oracle (the wall time a
//!   scanner knowing every latency would need at the launch rate the run
//!   sustained; `netsim-oracle.csv`).
//! - `fidelity`: FastPort's latency percentiles (`--stats`) against what
//!   netsim injected (its record), p50 and p99 within 5 % + 1 ms, at a pace
//!   the simulator keeps up with (`--concurrency 1024 --timeout 1s`).
//! - `sweep`: FastPort's throughput against `--concurrency` on `far` (every
//!   host 250 ms away), beside the concurrency / RTT line.
//! - `recall`: open-port recall on `lossy` (5 % loss each way) as a function
//!   of retries: FastPort `--retries`, nmap `--max-retries`, RustScan `--tries`.
//!
//! CSV and SVG go to `target/bench/netsim-*`; docs/BENCHMARKS.md ("On a simulated network")
//! records a run. Knobs (environment): `FASTPORT_BENCH_NETSIM_SCALE`
//! (default `bench`), `FASTPORT_BENCH_NETSIM_SCANNERS` (default
//! `fastport,fastport-threads,nmap,rustscan`; missing ones are skipped),
//! `FASTPORT_BENCH_REPEAT` (runs per cell, median reported; default 1),
//! `FASTPORT_BENCH_NETSIM_SWEEP` (concurrencies, comma list),
//! `FASTPORT_BENCH_REPLOT=DIR` (run nothing: draw the figures again from
//! DIR's CSV files; docs/data/ holds the recorded runs'). Every figure is
//! drawn from the CSV the bench writes, by `fastport::report::figures`.

mod common;

use common::{csv_rows, env_or, list, num, replot_dir, write};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fastport::report::figures::{self, BarSeries, Line};
use fastport::report::svg::{Axis, Unit};
use fastport_lab::report::{Report, bench_csv, bench_rows, bench_table};
use fastport_lab::{Record, RunSpec, bench};
use serde_json::Value;

const PROFILES: [&str; 3] = ["netsim-internet-like", "netsim-far", "netsim-lossy"];
const SCANNERS: &str = "fastport,fastport-threads,nmap,rustscan";
const SWEEP: &str = "64,256,1024,4096,16384";
const RETRIES: [u32; 4] = [0, 1, 2, 3];
/// The recall series: a label and the lab scanner. FastPort runs twice: with
/// a fixed 1 s timeout (`--retries N` is exactly N more attempts) and with
/// its default timing (which may make `--retries` a cap; see `fastport --help`).
const RECALL_SERIES: [(&str, &str); 4] = [
    ("fastport --timeout 1s", "fastport"),
    ("fastport", "fastport"),
    ("nmap", "nmap"),
    ("rustscan", "rustscan"),
];
const SEED: u64 = 1;
/// The far profile's round trip.
const FAR_RTT_S: f64 = 0.25;
/// The sweep's `--timeout`: each filtered port (3 %) holds its slot this long.
const SWEEP_TIMEOUT_S: f64 = 0.5;
/// The lossy profile's loss, each way.
const LOSSY_LOSS: f64 = 0.05;

struct Bench {
    out: PathBuf,
    fastport: PathBuf,
    scale: String,
    repeat: usize,
    scanners: Vec<String>,
}

fn main() {
    // `cargo bench -- <filter>` passes libtest-style arguments; a filter
    // naming no part of this harness skips it.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    let b = Bench {
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench"),
        fastport: PathBuf::from(env!("CARGO_BIN_EXE_fastport")),
        scale: env_or("FASTPORT_BENCH_NETSIM_SCALE", "bench"),
        repeat: env_or("FASTPORT_BENCH_REPEAT", "1").parse().unwrap_or(1),
        scanners: list(&env_or("FASTPORT_BENCH_NETSIM_SCANNERS", SCANNERS)),
    };
    std::fs::create_dir_all(&b.out).expect("create target/bench");
    if let Some(dir) = replot_dir() {
        replot(&dir, &b.out);
        return;
    }
    if wants("profiles") {
        profiles(&b);
    }
    if wants("fidelity") {
        fidelity(&b);
    }
    if wants("sweep") {
        sweep(&b);
    }
    if wants("recall") {
        recall(&b);
    }
}

fn scored(records: Vec<Record>, what: &str) -> Option<Report> {
    match records.into_iter().next() {
        Some(Record::Scored(r)) => Some(*r),
        Some(Record::Skipped { reason, .. }) => {
            eprintln!("netsim bench: {what}: skipped: {reason}");
            None
        }
        Some(Record::Failed { error, .. }) => {
            eprintln!("netsim bench: {what}: FAILED: {error}");
            None
        }
        None => None,
    }
}

fn stats_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// FastPort's reason → netsim's answer kind. netsim's `icmp-host-unreach`
/// is code 1 only; FastPort's host-unreach also holds code 13, drawn from
/// the same per-host latencies.
const LATENCY_PAIRS: [(&str, &str); 3] = [
    ("open/syn-ack", "syn-ack"),
    ("closed/conn-refused", "rst"),
    ("filtered/host-unreach", "icmp-host-unreach"),
];

struct Fidelity {
    profile: String,
    scanner: String,
    reason: &'static str,
    fp: (u64, u64, u64),
    ns: (u64, u64, u64),
}

impl Fidelity {
    fn within(measured: u64, injected: u64) -> bool {
        measured.abs_diff(injected) as f64 <= 0.05 * injected as f64 + 1000.0
    }
    fn p50_ok(&self) -> bool {
        Fidelity::within(self.fp.1, self.ns.1)
    }
    fn p99_ok(&self) -> bool {
        Fidelity::within(self.fp.2, self.ns.2)
    }
}

/// Part 4 (and 2): every scanner on every profile, then FastPort's latency
/// percentiles against netsim's record of the same run.
fn profiles(b: &Bench) {
    let mut records = Vec::new();
    let mut fidelity = Vec::new();
    let mut oracle = String::from(
        "profile,scanner,wall_s,oracle_s,blind_oracle_s,ratio,blind_ratio,launch_rate,recall,oracle_accuracy\n",
    );
    let mut oracle_rows = Vec::new();
    let mut injected = String::from(
        "profile,scanner,syns,syns_lost,replies_lost,answers,lateness_p99_us,device_drops,syns_per_target\n",
    );
    for profile in PROFILES {
        let stats = |s: &str| b.out.join(format!("netsim-stats-{profile}-{s}.json"));
        let scanner_args = b
            .scanners
            .iter()
            .filter(|s| s.starts_with("fastport"))
            .map(|s| format!("{s}=--stats {}", stats(s).display()))
            .collect();
        let spec = RunSpec {
            scenario: profile.into(),
            seed: SEED,
            scale: b.scale.clone(),
            scanner_args,
            fastport_bin: Some(b.fastport.clone()),
            repeat: b.repeat,
            ..RunSpec::default()
        };
        eprintln!("netsim bench: {profile} × {}", b.scanners.join(", "));
        let rs = match bench(&spec, &b.scanners) {
            Ok(rs) => rs,
            Err(e) => {
                eprintln!("netsim bench: {profile}: {e}");
                continue;
            }
        };
        for r in &rs {
            let Record::Scored(rep) = r else { continue };
            // The last run wrote the stats file.
            let Some(rec) = rep.runs.last().and_then(|r| r.netsim.as_ref()) else {
                continue;
            };
            let per_target: Vec<String> = rec
                .syns_per_target
                .iter()
                .map(|(k, v)| format!("{v}x{k}"))
                .collect();
            let _ = writeln!(
                injected,
                "{profile},{},{},{},{},{},{},{},{}",
                rep.scanner,
                rec.counters.syns,
                rec.counters.syns_lost,
                rec.counters.replies_lost,
                rec.counters.replies(),
                rec.lateness_us.p99,
                rec.counters.device_drops,
                per_target.join(" ")
            );
            if let (Some(o), Some(run)) = (&rec.oracle, rep.runs.last()) {
                let ratio = run.wall_s * 1000.0 / o.lower_bound_ms;
                let blind = run.wall_s * 1000.0 / o.blind_lower_bound_ms;
                let acc = o.accuracy.last().map_or(f64::NAN, |a| a.exact);
                let _ = writeln!(
                    oracle,
                    "{profile},{},{:.3},{:.3},{:.3},{ratio:.2},{blind:.2},{:.0},{:.4},{acc:.5}",
                    rep.scanner,
                    run.wall_s,
                    o.lower_bound_ms / 1000.0,
                    o.blind_lower_bound_ms / 1000.0,
                    o.launch_rate,
                    run.recall,
                );
                oracle_rows.push(format!(
                    "| {profile} | {} | {:.2} | {:.2} / {:.2} | **{ratio:.2}** / {blind:.2} | {:.0} | {:.4} | {} | {acc:.5} |",
                    rep.scanner,
                    run.wall_s,
                    o.lower_bound_ms / 1000.0,
                    o.blind_lower_bound_ms / 1000.0,
                    o.launch_rate,
                    run.recall,
                    o.tries,
                ));
            }
            if rep.scanner.starts_with("fastport") {
                fidelity.extend(compare_latency(profile, rep, &stats(&rep.scanner)));
            }
        }
        records.extend(rs);
    }
    if records.is_empty() {
        return;
    }
    let rows = bench_rows(&records);
    println!(
        "\nnetsim profiles (scale {}, seed {SEED}, median of {}):\n{}",
        b.scale,
        b.repeat,
        bench_table(&rows)
    );
    let profiles_csv = bench_csv(&rows);
    write(&b.out.join("netsim-profiles.csv"), &profiles_csv);
    write(
        &b.out.join("netsim-profiles.json"),
        &serde_json::to_string_pretty(&records).expect("records serialise"),
    );
    write(&b.out.join("netsim-injected.csv"), &injected);
    println!(
        "\nWall time against netsim's oracle (the last run of each cell; the oracle knows \
         every latency, and every loss or not (blind), launches at the run's busiest-second \
         rate, at most `tries` SYNs a target):\n\
         | profile | scanner | wall s | oracle s (informed / blind) | wall ÷ oracle | launch rate /s | recall | tries | oracle accuracy |\n\
         |---|---|---|---|---|---|---|---|---|\n{}",
        oracle_rows.join("\n")
    );
    write(&b.out.join("netsim-oracle.csv"), &oracle);
    write(
        &b.out.join("netsim-profiles.svg"),
        &profile_figure(&profiles_csv),
    );

    print_fidelity(
        "Latency fidelity of these runs (default settings)",
        &fidelity,
        &b.out.join("netsim-fidelity-default.csv"),
    );
}

/// FastPort's latency percentiles (`--stats`) against netsim's record of
/// the same run, per reason.
fn compare_latency(profile: &str, rep: &Report, stats: &Path) -> Vec<Fidelity> {
    let (Some(rec), Some(st)) = (
        rep.runs.last().and_then(|r| r.netsim.as_ref()),
        stats_json(stats),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (reason, kind) in LATENCY_PAIRS {
        let l = &st["latency_us"][reason];
        let Some(n) = rec.latency_us.get(kind) else {
            continue;
        };
        if l.is_null() || n.count == 0 {
            continue;
        }
        let g = |k: &str| l[k].as_u64().unwrap_or(0);
        out.push(Fidelity {
            profile: profile.into(),
            scanner: rep.scanner.clone(),
            reason,
            fp: (g("count"), g("p50"), g("p99")),
            ns: (n.count, n.p50, n.p99),
        });
    }
    out
}

fn print_fidelity(title: &str, rows: &[Fidelity], csv_path: &Path) {
    let mut table = String::from(
        "profile               scanner           reason                 n fastport  n netsim   p50 fastport  p50 netsim  ok   p99 fastport  p99 netsim  ok\n",
    );
    let mut csv = String::from(
        "profile,scanner,reason,count_fastport,count_netsim,p50_fastport_us,p50_netsim_us,p50_within,p99_fastport_us,p99_netsim_us,p99_within\n",
    );
    for f in rows {
        let _ = writeln!(
            table,
            "{:<21} {:<17} {:<21} {:>10} {:>9} {:>13} {:>11}  {:<4} {:>12} {:>11}  {}",
            f.profile,
            f.scanner,
            f.reason,
            f.fp.0,
            f.ns.0,
            f.fp.1,
            f.ns.1,
            yes(f.p50_ok()),
            f.fp.2,
            f.ns.2,
            yes(f.p99_ok())
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            f.profile,
            f.scanner,
            f.reason,
            f.fp.0,
            f.ns.0,
            f.fp.1,
            f.ns.1,
            f.p50_ok(),
            f.fp.2,
            f.ns.2,
            f.p99_ok()
        );
    }
    println!("\n{title} (µs; within 5 % + 1 ms of what netsim injected):\n{table}");
    write(csv_path, &csv);
}

/// Part 2: FastPort's latency histogram against netsim's record, at a pace
/// the simulator keeps up with (`--concurrency 1024`) and with a fixed 1 s
/// timeout (the kernel's first SYN retransmission, at 1 s, then loses the
/// race, so a sample is one SYN's round trip; see docs/NETSIM.md).
fn fidelity(b: &Bench) {
    let engines: Vec<String> = b
        .scanners
        .iter()
        .filter(|s| s.starts_with("fastport"))
        .cloned()
        .collect();
    if engines.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for profile in PROFILES {
        let stats = |s: &str| b.out.join(format!("netsim-fidelity-{profile}-{s}.json"));
        let spec = RunSpec {
            scenario: profile.into(),
            seed: SEED,
            scale: b.scale.clone(),
            extra_args: ["--concurrency", "1024", "--timeout", "1s"]
                .map(String::from)
                .to_vec(),
            scanner_args: engines
                .iter()
                .map(|s| format!("{s}=--stats {}", stats(s).display()))
                .collect(),
            fastport_bin: Some(b.fastport.clone()),
            repeat: b.repeat,
            ..RunSpec::default()
        };
        eprintln!("netsim fidelity: {profile} × {}", engines.join(", "));
        match bench(&spec, &engines) {
            Ok(rs) => {
                for r in &rs {
                    if let Record::Scored(rep) = r {
                        rows.extend(compare_latency(profile, rep, &stats(&rep.scanner)));
                    }
                }
            }
            Err(e) => eprintln!("netsim fidelity: {profile}: {e}"),
        }
    }
    print_fidelity(
        "Latency fidelity at --concurrency 1024 --timeout 1s",
        &rows,
        &b.out.join("netsim-fidelity.csv"),
    );
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// One point of the concurrency sweep.
struct Point {
    requested: usize,
    concurrency: u64,
    probes: u64,
    wall_s: f64,
    probes_per_s: f64,
    engine_probes_per_s: f64,
    cpu_s: f64,
    lateness_p99_ms: f64,
    exact: bool,
}

impl Point {
    /// concurrency / RTT: every slot busy for one round trip.
    fn ideal(&self) -> f64 {
        self.concurrency as f64 / FAR_RTT_S
    }
}

/// Part 1: FastPort (mio engine) on `far` at each concurrency, each world
/// sized to about 25 round trips of that concurrency (a /28 to a /20).
fn sweep(b: &Bench) {
    let mut points = Vec::new();
    for c in list(&env_or("FASTPORT_BENCH_NETSIM_SWEEP", SWEEP)) {
        let Ok(c) = c.parse::<usize>() else { continue };
        let hosts = (c * 25 / 100).next_power_of_two().clamp(16, 4096);
        let prefix = 32 - hosts.trailing_zeros();
        let scenario = b.out.join(format!("netsim-sweep-{c}.toml"));
        write(
            &scenario,
            &format!(
                "name = \"netsim-far-sweep-{c}\"\nhosts = [\"198.18.0.0/{prefix}\"]\nports = \"top100\"\n\n[netsim]\nprofile = \"far\"\n"
            ),
        );
        let stats = b.out.join(format!("netsim-sweep-{c}.json"));
        let extra: Vec<String> = [
            "--concurrency",
            &c.to_string(),
            "--timeout",
            "500ms",
            "--retries",
            "0",
            "--stats",
            &stats.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let spec = RunSpec {
            scenario: scenario.display().to_string(),
            seed: SEED,
            scale: "full".into(),
            scanner: "fastport".into(),
            extra_args: extra,
            fastport_bin: Some(b.fastport.clone()),
            repeat: b.repeat,
            ..RunSpec::default()
        };
        eprintln!("netsim sweep: far, concurrency {c}, {hosts} hosts");
        let rep = match bench(&spec, &["fastport".to_string()]) {
            Ok(rs) => scored(rs, &format!("sweep {c}")),
            Err(e) => {
                eprintln!("netsim sweep: {e}");
                None
            }
        };
        let Some(rep) = rep else { continue };
        let st = stats_json(&stats).unwrap_or(Value::Null);
        let lateness = rep
            .runs
            .last()
            .and_then(|r| r.netsim.as_ref())
            .map_or(0.0, |n| n.lateness_us.p99 as f64 / 1000.0);
        points.push(Point {
            requested: c,
            concurrency: st["concurrency"].as_u64().unwrap_or(c as u64),
            probes: rep.probes,
            wall_s: rep.wall_s,
            probes_per_s: rep.probes_per_s,
            engine_probes_per_s: st["probes_per_s"].as_f64().unwrap_or(0.0),
            cpu_s: rep.cpu_s,
            lateness_p99_ms: lateness,
            exact: rep.exact_all,
        });
    }
    if points.is_empty() {
        return;
    }
    let mut table = String::from(
        "concurrency  in use   probes   wall s  probes/s  engine probes/s  concurrency/RTT  ratio  cpu s  netsim lateness p99 ms  exact\n",
    );
    let mut csv = String::from(
        "concurrency,in_use,probes,wall_s,probes_per_s,engine_probes_per_s,concurrency_over_rtt,ratio,cpu_s,netsim_lateness_p99_ms,exact\n",
    );
    for p in &points {
        let _ = writeln!(
            table,
            "{:>11} {:>7} {:>8} {:>8.2} {:>9.0} {:>16.0} {:>16.0} {:>6.2} {:>6.2} {:>23.1}  {}",
            p.requested,
            p.concurrency,
            p.probes,
            p.wall_s,
            p.probes_per_s,
            p.engine_probes_per_s,
            p.ideal(),
            p.engine_probes_per_s / p.ideal(),
            p.cpu_s,
            p.lateness_p99_ms,
            p.exact
        );
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.0},{:.0},{:.0},{:.3},{:.3},{:.1},{}",
            p.requested,
            p.concurrency,
            p.probes,
            p.wall_s,
            p.probes_per_s,
            p.engine_probes_per_s,
            p.ideal(),
            p.engine_probes_per_s / p.ideal(),
            p.cpu_s,
            p.lateness_p99_ms,
            p.exact
        );
    }
    println!(
        "\nThroughput vs concurrency on far (RTT {FAR_RTT_S} s, --timeout {SWEEP_TIMEOUT_S} s, --retries 0; median of {}):\n{table}",
        b.repeat
    );
    write(&b.out.join("netsim-sweep.csv"), &csv);
    write(&b.out.join("netsim-sweep.svg"), &sweep_figure(&csv));
}

/// One point of the recall-under-loss sweep.
struct RecallPoint {
    scanner: &'static str,
    retries: u32,
    recall: f64,
    wall_s: f64,
    syns: u64,
    exact: bool,
}

/// Part 3: recall on `lossy` against retries, for each scanner family.
fn recall(b: &Bench) {
    let mut points = Vec::new();
    for (label, scanner) in RECALL_SERIES {
        if !b.scanners.iter().any(|s| s == scanner) {
            continue;
        }
        for r in RETRIES {
            let extra = match label {
                "fastport --timeout 1s" => vec![
                    "--timeout".into(),
                    "1s".into(),
                    "--retries".into(),
                    r.to_string(),
                ],
                "fastport" => vec!["--retries".into(), r.to_string()],
                "nmap" => vec!["--max-retries".into(), r.to_string()],
                _ => vec!["--tries".into(), (r + 1).to_string()],
            };
            let spec = RunSpec {
                scenario: "netsim-lossy".into(),
                seed: SEED,
                scale: b.scale.clone(),
                scanner: scanner.into(),
                extra_args: extra,
                fastport_bin: Some(b.fastport.clone()),
                repeat: b.repeat,
                ..RunSpec::default()
            };
            eprintln!("netsim recall: lossy, {label}, {r} retries");
            let rep = match bench(&spec, &[scanner.to_string()]) {
                Ok(rs) => scored(rs, &format!("recall {scanner} {r}")),
                Err(e) => {
                    eprintln!("netsim recall: {e}");
                    None
                }
            };
            let Some(rep) = rep else { continue };
            points.push(RecallPoint {
                scanner: label,
                retries: r,
                recall: rep.score.recall,
                wall_s: rep.wall_s,
                syns: rep
                    .runs
                    .last()
                    .and_then(|r| r.netsim.as_ref())
                    .map_or(0, |n| n.counters.syns),
                exact: rep.exact_all,
            });
        }
    }
    if points.is_empty() {
        return;
    }
    let mut table = String::from(
        "scanner                retries   recall  one SYN per attempt  wall s     SYNs  exact\n",
    );
    let mut csv = String::from("scanner,retries,recall,one_syn_model,wall_s,syns,exact\n");
    for p in &points {
        let _ = writeln!(
            table,
            "{:<21} {:>8} {:>8.4} {:>20.4} {:>7.2} {:>8}  {}",
            p.scanner,
            p.retries,
            p.recall,
            one_syn_recall(p.retries),
            p.wall_s,
            p.syns,
            p.exact
        );
        let _ = writeln!(
            csv,
            "{},{},{:.5},{:.5},{:.3},{},{}",
            p.scanner,
            p.retries,
            p.recall,
            one_syn_recall(p.retries),
            p.wall_s,
            p.syns,
            p.exact
        );
    }
    println!(
        "\nOpen-port recall on lossy ({:.0} % loss each way) against retries (median of {}):\n{table}",
        LOSSY_LOSS * 100.0,
        b.repeat
    );
    write(&b.out.join("netsim-recall.csv"), &csv);
    write(&b.out.join("netsim-recall.svg"), &recall_figure(&csv));
}

/// Recall if each attempt sends one SYN and succeeds when neither it nor
/// its answer is lost: 1 − (1 − (1 − loss)²)^(retries + 1).
fn one_syn_recall(retries: u32) -> f64 {
    let miss = 1.0 - (1.0 - LOSSY_LOSS).powi(2);
    1.0 - miss.powi(retries as i32 + 1)
}

/// Wall time per scanner on each profile, from `netsim-profiles.csv` (one
/// log axis: the slowest scanner takes minutes where FastPort takes seconds).
fn profile_figure(csv: &str) -> String {
    let rows = csv_rows(csv);
    let mut scanners: Vec<String> = Vec::new();
    for r in &rows {
        if !scanners.contains(&r["scanner"]) {
            scanners.push(r["scanner"].clone());
        }
    }
    let groups: Vec<String> = PROFILES.iter().map(|p| p.to_string()).collect();
    let series: Vec<BarSeries> = scanners
        .iter()
        .map(|scanner| BarSeries {
            label: scanner.clone(),
            values: PROFILES
                .iter()
                .map(|p| {
                    rows.iter()
                        .find(|r| &r["scanner"] == scanner && r["scenario"] == *p)
                        .and_then(|r| num(r, "wall_s"))
                })
                .collect(),
        })
        .collect();
    wall_bars(
        "netsim-profiles",
        "Wall time by scanner on each netsim profile (lower is better)",
        &groups,
        &series,
    )
}

/// Bars of wall seconds on a log axis.
fn wall_bars(id: &str, title: &str, groups: &[String], series: &[BarSeries]) -> String {
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
    };
    let lo = values().fold(f64::MAX, f64::min);
    let hi = values().fold(1.0, f64::max);
    figures::bars(
        id,
        title,
        groups,
        series,
        Axis::log("wall time (s, log scale)", lo.min(hi), hi, Unit::Count),
    )
}

/// Measured probes/s against concurrency (log-log) beside the concurrency /
/// RTT line, from `netsim-sweep.csv`.
fn sweep_figure(csv: &str) -> String {
    let rows = csv_rows(csv);
    let series = |column: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((num(r, "in_use")?, num(r, column)?)))
            .collect()
    };
    let lines = [
        Line::reference("concurrency / RTT", series("concurrency_over_rtt")),
        Line::measured("measured (FastPort's clock)", series("engine_probes_per_s")),
        Line::measured("measured (wall, start-up included)", series("probes_per_s")),
    ];
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (cmin, cmax) = (
        all().map(|p| p.0).fold(f64::MAX, f64::min),
        all().map(|p| p.0).fold(1.0, f64::max),
    );
    let (vmin, vmax) = (
        all().map(|p| p.1).fold(f64::MAX, f64::min),
        all().map(|p| p.1).fold(1.0, f64::max),
    );
    figures::lines(
        "netsim-sweep",
        &format!(
            "far ({:.0} ms RTT): FastPort probes/s against concurrency",
            FAR_RTT_S * 1000.0
        ),
        Axis::log(
            "concurrency (probes in flight, log scale)",
            cmin.min(cmax),
            cmax,
            Unit::Count,
        ),
        Axis::log("probes/s (log scale)", vmin.min(vmax), vmax, Unit::Count),
        &lines,
    )
}

/// Recall against retries per scanner, beside the one-SYN-per-attempt
/// model, from `netsim-recall.csv`.
fn recall_figure(csv: &str) -> String {
    let rows = csv_rows(csv);
    let mut lines = vec![Line::reference(
        "one SYN per attempt (model)",
        RETRIES
            .iter()
            .map(|&r| (f64::from(r), one_syn_recall(r)))
            .collect(),
    )];
    for (label, _) in RECALL_SERIES {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r["scanner"] == label)
            .filter_map(|r| Some((num(r, "retries")?, num(r, "recall")?)))
            .collect();
        if !pts.is_empty() {
            lines.push(Line::measured(label, pts));
        }
    }
    let lo = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0, f64::min);
    let lo = (lo * 20.0).floor() / 20.0;
    let max_r = f64::from(RETRIES[RETRIES.len() - 1]);
    figures::lines(
        "netsim-recall",
        &format!(
            "lossy ({:.0} % loss each way): open-port recall against retries",
            LOSSY_LOSS * 100.0
        ),
        Axis::linear(
            "retries (nmap --max-retries; RustScan --tries − 1)",
            0.0,
            max_r,
            Unit::Count,
        ),
        Axis::linear("open-port recall", lo, 1.0, Unit::Seconds),
        &lines,
    )
}

/// The rows of a `profile,setting,VALUE` table as bar groups (profiles,
/// in order of first appearance) and series (settings).
fn setting_bars(csv: &str, value: &str) -> (Vec<String>, Vec<BarSeries>) {
    let rows = csv_rows(csv);
    let mut groups: Vec<String> = Vec::new();
    let mut settings: Vec<String> = Vec::new();
    for r in &rows {
        if !groups.contains(&r["profile"]) {
            groups.push(r["profile"].clone());
        }
        if !settings.contains(&r["setting"]) {
            settings.push(r["setting"].clone());
        }
    }
    let series = settings
        .iter()
        .map(|setting| BarSeries {
            label: setting.clone(),
            values: groups
                .iter()
                .map(|g| {
                    rows.iter()
                        .find(|r| &r["setting"] == setting && &r["profile"] == g)
                        .and_then(|r| num(r, value))
                })
                .collect(),
        })
        .collect();
    (groups, series)
}

/// Wall time per timing setting on each profile, from `timing-wall.csv`
/// (`profile,setting,wall_s`: the medians docs/BENCHMARKS.md records under
/// "Adaptive timing on netsim", measured by the commands in docs/TIMING.md).
fn timing_figure(csv: &str) -> String {
    let (groups, series) = setting_bars(csv, "wall_s");
    wall_bars(
        "timing-wall",
        "netsim, 64 hosts × top 100 ports: wall time (medians of seeds 1–3)",
        &groups,
        &series,
    )
}

/// Wall time ÷ netsim's informed oracle per world and scale, the default
/// beside the best fixed setting of the same accuracy, from
/// `timing-oracle.csv` (`profile,setting,ratio`: the medians docs/TIMING.md
/// records, and the blind bound ÷ the informed one).
fn oracle_figure(csv: &str) -> String {
    let (groups, series) = setting_bars(csv, "ratio");
    let hi = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold(2.0, f64::max);
    figures::bars(
        "timing-oracle",
        "netsim, top 100 ports, seed 17: wall time ÷ the informed oracle (goal: 1.5 on internet-like and far)",
        &groups,
        &series,
        Axis::linear("× the oracle", 0.0, hi.ceil(), Unit::Count),
    )
}

/// `FASTPORT_BENCH_REPLOT=DIR`: the figures again from DIR's CSV files
/// (`netsim-profiles.csv`, `netsim-sweep.csv`, `netsim-recall.csv`,
/// `timing-wall.csv`, `timing-oracle.csv`, whichever are there), into
/// target/bench/.
fn replot(dir: &Path, out: &Path) {
    /// A CSV file, the figure drawn from it, and how.
    type Figure = (&'static str, &'static str, fn(&str) -> String);
    let figures: [Figure; 5] = [
        ("netsim-profiles.csv", "netsim-profiles.svg", profile_figure),
        ("netsim-sweep.csv", "netsim-sweep.svg", sweep_figure),
        ("netsim-recall.csv", "netsim-recall.svg", recall_figure),
        ("timing-wall.csv", "timing-wall.svg", timing_figure),
        ("timing-oracle.csv", "timing-oracle.svg", oracle_figure),
    ];
    for (csv, svg, draw) in figures {
        if let Ok(text) = std::fs::read_to_string(dir.join(csv)) {
            write(&out.join(svg), &draw(&text));
        }
    }
}
