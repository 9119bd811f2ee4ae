//! End-to-end benchmarks: every lab scenario at full size, each scanner
//! against the same world in the same session (the floor, FastPort's two
//! engines, nmap and RustScan when installed), then a sweep of concurrency
//! for both engines. Prints the tables and writes CSV, JSON and SVG plots to
//! `target/bench/` (docs/BENCHMARKS.md records a run).
//!
//! Knobs (environment): `FASTPORT_BENCH_REPEAT` (rounds: each runs every
//! scanner once per scenario; medians over rounds; default 5), `FASTPORT_BENCH_SCENARIOS` (comma list),
//! `FASTPORT_BENCH_SCANNERS`, `FASTPORT_BENCH_SWEEP` (`0` skips the sweep),
//! `FASTPORT_BENCH_SWEEP_REPEAT` (default 3), `FASTPORT_BENCH_REPORT` (`0` skips
//! the `fastport report` plots of one traced run per engine),
//! `FASTPORT_BENCH_REPLOT=DIR` (run nothing: draw the figures again from
//! DIR's `bench.csv` and `sweep.csv`; docs/data/ holds the recorded runs').
//!
//! Every figure is drawn from the CSV the bench writes, by the report module
//! (`fastport::report::figures`) or by `fastport report`.

mod common;

use common::{csv_rows, env_or, list, num, replot_dir, write};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use fastport::report::figures::{self, BarSeries, Line};
use fastport::report::svg::{Axis, Unit};
use fastport_lab::report::{RunRecord, bench_csv, bench_rows, bench_table};
use fastport_lab::{Record, Report, RunSpec, Score, bench};

const SCENARIOS: &str = "loopback-65k,wide-16,filtered-mix,ephemeral-trap";
const SCANNERS: &str = "floor,fastport,fastport-threads,nmap,rustscan";
const SWEEP: [usize; 6] = [16, 64, 256, 1024, 4096, 16384];

fn main() {
    // `cargo bench -- <filter>` passes libtest-style arguments; a filter
    // that names no scenario skips this harness (e.g. when only criterion runs).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir).expect("create target/bench");
    let repeat: usize = env_or("FASTPORT_BENCH_REPEAT", "5").parse().unwrap_or(5);
    let scanners = list(&env_or("FASTPORT_BENCH_SCANNERS", SCANNERS));
    let fastport = PathBuf::from(env!("CARGO_BIN_EXE_fastport"));
    if let Some(dir) = replot_dir() {
        replot(&dir, &out_dir);
        return;
    }

    // Rounds, not runs in a row: each round builds every world once and runs
    // every scanner once against it (in a rotating order), so a load spike
    // on this shared machine hits all scanners alike, and the medians are
    // taken over rounds.
    let scenarios: Vec<String> = list(&env_or("FASTPORT_BENCH_SCENARIOS", SCENARIOS))
        .into_iter()
        .filter(|sc| filter.is_empty() || filter.iter().any(|f| sc.contains(f.as_str())))
        .collect();
    type Runs = Vec<(RunRecord, Score)>;
    let mut scored: BTreeMap<(String, String), (Report, Runs)> = BTreeMap::new();
    let mut others: BTreeMap<(String, String), Record> = BTreeMap::new();
    for round in 0..repeat {
        for scenario in &scenarios {
            let mut order = scanners.clone();
            let turn = round % order.len().max(1);
            order.rotate_left(turn);
            eprintln!(
                "bench: round {}/{repeat}: {scenario} × {}",
                round + 1,
                order.join(", ")
            );
            let spec = RunSpec {
                scenario: scenario.clone(),
                seed: 1,
                scale: "full".into(),
                fastport_bin: Some(fastport.clone()),
                repeat: 1,
                ..RunSpec::default()
            };
            let records = match bench(&spec, &order) {
                Ok(rs) => rs,
                Err(e) => {
                    eprintln!("bench: {scenario}: {e}");
                    continue;
                }
            };
            for record in records {
                let key = (scenario.clone(), record.scanner().to_string());
                match record {
                    Record::Scored(report) => {
                        let run = (report.runs[0].clone(), report.score.clone());
                        scored
                            .entry(key)
                            .or_insert_with(|| ((*report).clone(), Vec::new()))
                            .1
                            .push(run);
                    }
                    other => {
                        others.insert(key, other);
                    }
                }
            }
        }
    }
    // In table order: scenarios as listed, scanners as listed.
    let mut records: Vec<Record> = Vec::new();
    for scenario in &scenarios {
        for scanner in &scanners {
            let key = (scenario.clone(), scanner.clone());
            if let Some((first, runs)) = scored.remove(&key) {
                let world = (
                    first.scenario.as_str(),
                    first.scale.as_str(),
                    first.seed,
                    first.probes,
                );
                let report = Report::from_runs(&first.scanner, world, first.command.clone(), runs);
                records.push(Record::Scored(Box::new(report)));
            } else if let Some(other) = others.remove(&key) {
                records.push(other);
            }
        }
    }
    if !records.is_empty() {
        let rows = bench_rows(&records);
        println!("\n{}", bench_table(&rows));
        let csv = bench_csv(&rows);
        write(&out_dir.join("bench.csv"), &csv);
        write(
            &out_dir.join("bench.json"),
            &serde_json::to_string_pretty(&records).expect("records serialise"),
        );
        write(&out_dir.join("probes-per-s.svg"), &probes_figure(&csv));
    }

    if env_or("FASTPORT_BENCH_SWEEP", "1") != "0"
        && (filter.is_empty() || filter.iter().any(|f| f == "sweep"))
    {
        sweep(&out_dir, &fastport);
    }
    if env_or("FASTPORT_BENCH_RATE", "1") != "0"
        && (filter.is_empty() || filter.iter().any(|f| f == "rate"))
    {
        rate(&out_dir, &fastport);
    }
    if env_or("FASTPORT_BENCH_REPORT", "1") != "0"
        && (filter.is_empty() || filter.iter().any(|f| f == "report"))
    {
        report_plots(&out_dir, &fastport);
    }
}

/// The plots `fastport report` draws, from one loopback-65k run of each
/// engine (mio traced at 1 %): the page itself, and its latency and
/// over-time plots as SVG images for docs/img. The drawing is the report's
/// own (`fastport report --plot`), not a second plotting path here.
fn report_plots(out_dir: &Path, fastport: &Path) {
    let file = |name: &str| out_dir.join(name).display().to_string();
    let (mio, threads, trace) = (
        file("report-mio.json"),
        file("report-threads.json"),
        file("report-mio.trace"),
    );
    let spec = RunSpec {
        scenario: "loopback-65k".into(),
        seed: 1,
        scale: "full".into(),
        fastport_bin: Some(fastport.to_path_buf()),
        repeat: 1,
        scanner_args: vec![
            format!("fastport=--stats {mio} --trace {trace} --trace-sample 0.01"),
            format!("fastport-threads=--stats {threads}"),
        ],
        ..RunSpec::default()
    };
    let scanners = ["fastport".to_string(), "fastport-threads".to_string()];
    if let Err(e) = bench(&spec, &scanners) {
        eprintln!("bench: report: {e}");
        return;
    }
    let report = |extra: &[&str], out: &str| {
        let o = std::process::Command::new(fastport)
            .arg("report")
            .args([&mio, &trace, &threads])
            .args(extra)
            .args(["-o", &file(out)])
            .output();
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "bench: fastport report {out}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("bench: fastport report: {e}"),
        }
    };
    report(&[], "report-loopback-65k.html");
    for (plot, out) in [
        (
            "latency-closed/conn-refused",
            "report-loopback-65k-latency.svg",
        ),
        ("completion-rate", "report-loopback-65k-completions.svg"),
        ("in-flight", "report-loopback-65k-in-flight.svg"),
    ] {
        report(&["--plot", plot], out);
    }
    println!("\nfastport report: target/bench/report-loopback-65k.html and its plots");
}

/// `--rate` accuracy: 10-second scans of closed loopback ports at 1 000,
/// 10 000 and 100 000 connects per second, in a private namespace; the
/// achieved rate is results / wall time (a closed loopback port answers in
/// microseconds, so the cap is what paces the scan).
fn rate(out_dir: &Path, fastport: &Path) {
    let mut table = String::from("asked/s   probes   wall s   achieved/s   error\n");
    let mut csv = String::from("asked,probes,wall_s,achieved,error_pct\n");
    for asked in [1_000u64, 10_000, 100_000] {
        let probes = asked * 10;
        // Enough hosts of 127/8 × 1000 ports for ten seconds at the asked rate.
        let hosts = probes.div_ceil(1000);
        let last = std::net::Ipv4Addr::from(0x7f01_0000u32 + hosts as u32 - 1);
        let targets = format!("127.1.0.0-{last}");
        let started = std::time::Instant::now();
        let out = std::process::Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(fastport)
            .args([
                "-n",
                "-p",
                "1-1000",
                "--rate",
                &asked.to_string(),
                "--show",
                "open",
                &targets,
            ])
            .output();
        let wall = started.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.status.success() => {
                let achieved = (hosts * 1000) as f64 / wall;
                let err = 100.0 * (achieved - asked as f64) / asked as f64;
                let _ = writeln!(
                    table,
                    "{asked:>7} {:>8} {wall:>8.2} {achieved:>12.0} {err:>+7.2}%",
                    hosts * 1000
                );
                let _ = writeln!(
                    csv,
                    "{asked},{},{wall:.3},{achieved:.0},{err:.2}",
                    hosts * 1000
                );
            }
            Ok(o) => eprintln!(
                "rate {asked}: fastport failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("rate {asked}: cannot run unshare: {e}"),
        }
    }
    println!("\n--rate accuracy (10 s scans; includes start-up):\n{table}");
    write(&out_dir.join("rate.csv"), &csv);
}

/// One point of the concurrency sweep.
struct Point {
    scenario: &'static str,
    engine: &'static str,
    concurrency: usize,
    probes_per_s: f64,
    cpu_s: f64,
    rss_mib: f64,
    csw: u64,
    p50_us: u64,
    p99_us: u64,
    exact: bool,
}

/// Both engines at each concurrency on loopback-65k and filtered-mix
/// (filtered-mix with a 200 ms timeout and no retries, so low concurrency
/// stays affordable).
fn sweep(out_dir: &Path, fastport: &Path) {
    let repeat: usize = env_or("FASTPORT_BENCH_SWEEP_REPEAT", "3")
        .parse()
        .unwrap_or(3);
    let mut points = Vec::new();
    for (scenario, base) in [
        ("loopback-65k", vec![]),
        ("filtered-mix", vec!["--timeout", "200ms", "--retries", "0"]),
    ] {
        for engine in ["mio", "threads"] {
            for c in SWEEP {
                let stats = out_dir.join(format!("sweep-{scenario}-{engine}-{c}.json"));
                let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                args.extend(["--concurrency".into(), c.to_string(), "--stats".into()]);
                args.push(stats.display().to_string());
                let scanner = format!("fastport-{engine}");
                let spec = RunSpec {
                    scenario: scenario.into(),
                    seed: 1,
                    scale: "full".into(),
                    scanner: scanner.clone(),
                    extra_args: args,
                    fastport_bin: Some(fastport.to_path_buf()),
                    repeat,
                    ..RunSpec::default()
                };
                eprintln!("sweep: {scenario} {engine} concurrency {c}");
                let rec = match bench(&spec, std::slice::from_ref(&scanner)) {
                    Ok(mut rs) if !rs.is_empty() => rs.remove(0),
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("sweep: {e}");
                        continue;
                    }
                };
                let Record::Scored(rep) = rec else {
                    eprintln!("sweep: {scenario} {engine} {c}: not scored");
                    continue;
                };
                let lat = std::fs::read_to_string(&stats)
                    .ok()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .map(|v| {
                        let l = &v["latency_us"]["closed/conn-refused"];
                        (
                            l["p50"].as_u64().unwrap_or(0),
                            l["p99"].as_u64().unwrap_or(0),
                        )
                    })
                    .unwrap_or((0, 0));
                points.push(Point {
                    scenario,
                    engine,
                    concurrency: c,
                    probes_per_s: rep.probes_per_s,
                    cpu_s: rep.cpu_s,
                    rss_mib: rep.max_rss_kib as f64 / 1024.0,
                    csw: rep.nvcsw + rep.nivcsw,
                    p50_us: lat.0,
                    p99_us: lat.1,
                    exact: rep.exact_all,
                });
            }
        }
    }
    let mut table = String::from(
        "scenario       engine   concurrency   probes/s   cpu s  rss MiB  ctx switches  p50 us  p99 us  exact\n",
    );
    let mut csv = String::from(
        "scenario,engine,concurrency,probes_per_s,cpu_s,rss_mib,context_switches,p50_us,p99_us,exact\n",
    );
    for p in &points {
        let _ = writeln!(
            table,
            "{:<14} {:<8} {:>11} {:>10.0} {:>7.2} {:>8.1} {:>13} {:>7} {:>7}  {}",
            p.scenario,
            p.engine,
            p.concurrency,
            p.probes_per_s,
            p.cpu_s,
            p.rss_mib,
            p.csw,
            p.p50_us,
            p.p99_us,
            p.exact
        );
        let _ = writeln!(
            csv,
            "{},{},{},{:.0},{:.3},{:.1},{},{},{},{}",
            p.scenario,
            p.engine,
            p.concurrency,
            p.probes_per_s,
            p.cpu_s,
            p.rss_mib,
            p.csw,
            p.p50_us,
            p.p99_us,
            p.exact
        );
    }
    println!("\nConcurrency sweep (median of {repeat}):\n{table}");
    write(&out_dir.join("sweep.csv"), &csv);
    for (name, svg) in sweep_figures(&csv) {
        write(&out_dir.join(name), &svg);
    }
}

/// The probes/s figure, drawn from `bench.csv` as this bench writes it:
/// scanners side by side on each scenario, one log axis (the scenarios
/// differ by orders of magnitude).
fn probes_figure(csv: &str) -> String {
    let rows = csv_rows(csv);
    let mut scenarios: Vec<String> = Vec::new();
    let mut scanners: Vec<String> = Vec::new();
    for r in &rows {
        if !scenarios.contains(&r["scenario"]) {
            scenarios.push(r["scenario"].clone());
        }
        if !scanners.contains(&r["scanner"]) {
            scanners.push(r["scanner"].clone());
        }
    }
    let series: Vec<BarSeries> = scanners
        .iter()
        .map(|scanner| BarSeries {
            label: scanner.clone(),
            values: scenarios
                .iter()
                .map(|sc| {
                    rows.iter()
                        .find(|r| &r["scanner"] == scanner && &r["scenario"] == sc)
                        .and_then(|r| num(r, "probes_per_s"))
                })
                .collect(),
        })
        .collect();
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
    };
    let (lo, hi) = (
        values().fold(f64::MAX, f64::min),
        values().fold(1.0, f64::max),
    );
    figures::bars(
        "probes-per-s",
        "Probes per second by scanner and scenario (median of rounds)",
        &scenarios,
        &series,
        Axis::log("probes/s (log scale)", lo.min(hi), hi, Unit::Count),
    )
}

/// The sweep's figures, drawn from `sweep.csv` as [`sweep`] writes it: for
/// each scenario, probes/s, peak RSS and context switches against
/// concurrency, both engines. (file name, SVG) pairs.
fn sweep_figures(csv: &str) -> Vec<(String, String)> {
    let rows = csv_rows(csv);
    let mut out = Vec::new();
    for scenario in ["loopback-65k", "filtered-mix"] {
        let here: Vec<_> = rows.iter().filter(|r| r["scenario"] == scenario).collect();
        if here.is_empty() {
            continue;
        }
        for (metric, column, label) in [
            ("probes", "probes_per_s", "probes/s"),
            ("rss", "rss_mib", "peak RSS (MiB)"),
            ("csw", "context_switches", "context switches"),
        ] {
            let lines: Vec<Line> = ["mio", "threads"]
                .iter()
                .map(|engine| {
                    let pts = here
                        .iter()
                        .filter(|r| r["engine"] == *engine)
                        .filter_map(|r| Some((num(r, "concurrency")?, num(r, column)?)))
                        .collect();
                    Line::measured(engine, pts)
                })
                .filter(|l| !l.points.is_empty())
                .collect();
            let all = || lines.iter().flat_map(|l| l.points.iter());
            let cmin = all().map(|p| p.0).fold(f64::MAX, f64::min);
            let cmax = all().map(|p| p.0).fold(1.0, f64::max);
            let vmax = all().map(|p| p.1).fold(1.0, f64::max);
            let svg = figures::lines(
                &format!("sweep-{scenario}-{metric}"),
                &format!("{scenario}: {label} against concurrency"),
                Axis::log(
                    "concurrency (probes in flight, log scale)",
                    cmin,
                    cmax,
                    Unit::Count,
                ),
                Axis::linear(label, 0.0, vmax * 1.05, Unit::Count),
                &lines,
            );
            out.push((format!("sweep-{scenario}-{metric}.svg"), svg));
        }
    }
    out
}

/// `FASTPORT_BENCH_REPLOT=DIR`: the figures again, from DIR's `bench.csv`
/// and `sweep.csv`, into target/bench/.
fn replot(dir: &Path, out_dir: &Path) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if let Some(csv) = read("bench.csv") {
        write(&out_dir.join("probes-per-s.svg"), &probes_figure(&csv));
    }
    if let Some(csv) = read("sweep.csv") {
        for (name, svg) in sweep_figures(&csv) {
            write(&out_dir.join(name), &svg);
        }
    }
}
