//! The report from inputs made here: what each plot needs, what it draws,
//! and that input never becomes markup.

use std::time::Duration;

use super::series::Series;
use super::*;
use crate::classify::Reason;
use crate::test_util::{TempDir, assert_has};
use crate::trace::{Sampler, TraceEvent, TraceSink};

const PAYLOAD: &str = "</script><img src=x onerror=alert(1)>";

fn dir(name: &str) -> TempDir {
    TempDir::new("report", name)
}

/// A summary document as `--stats` writes it, with a series.
fn stats_doc(engine: &str, scale: u32) -> serde_json::Value {
    let mut stats = crate::stats::Stats::new();
    for us in 1..=1000 {
        stats.record(Reason::ConnRefused, Some(us * scale));
    }
    stats.record(Reason::SynAck, Some(250));
    let summary = crate::stats::Summary {
        stats,
        elapsed: Duration::from_millis(1000),
        hosts: 1,
        ports_per_host: 1001,
        planned: 1001,
        interrupted: false,
        engine: if engine == "mio" { "mio" } else { "threads" },
        threads: 2,
        concurrency: 100,
        seed: 1,
        order: "random",
        shard: crate::order::Shard::new(1, 1).unwrap(),
    };
    let mut series = Series::new();
    for i in 0..1001u64 {
        let t = Duration::from_micros(i * 900);
        series.record_launch(t);
        series.record_completion(Reason::ConnRefused, t + Duration::from_micros(50));
        series.sample(i % 100, 100, t);
    }
    let mut doc = summary.to_json();
    doc["series"] = serde_json::to_value(series.to_doc()).unwrap();
    doc
}

/// Writes a summary document to `name` in `d`.
fn stats_file(d: &TempDir, name: &str, doc: &serde_json::Value) -> PathBuf {
    let path = d.join(name);
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// The page of one summary, `doc`, loaded from a file `name` in a
/// directory of its own (`dir_name`).
fn page_of(dir_name: &str, name: &str, doc: &serde_json::Value) -> String {
    let d = dir(dir_name);
    render(&load(&[stats_file(&d, name, doc)]).unwrap())
}

/// Two runs to overlay, loaded: `mio.json`, and `threads.json` three times
/// slower.
fn two_runs(name: &str) -> Vec<Run> {
    let d = dir(name);
    let a = stats_file(&d, "mio.json", &stats_doc("mio", 1));
    let b = stats_file(&d, "threads.json", &stats_doc("threads", 3));
    load(&[a, b]).unwrap()
}

fn write_trace(path: &std::path::Path) {
    let sink = TraceSink::create(path, Sampler::new(1.0, 0)).unwrap();
    let mut t = sink.tracer(0);
    let us = Duration::from_micros;
    t.record(TraceEvent::InFlightCap { cap: 100 }, us(0));
    t.record(TraceEvent::Window { window: 10 }, us(0));
    for p in 0..5u64 {
        let t0 = p * 100;
        t.record(
            TraceEvent::Launch {
                probe: p,
                attempt: 0,
                target: format!("127.0.0.1:{}", 1000 + p).parse().unwrap(),
            },
            us(t0),
        );
        t.record(
            TraceEvent::Connect {
                probe: p,
                errno: libc::EINPROGRESS,
            },
            us(t0 + 5),
        );
        t.record(TraceEvent::Ready { probe: p }, us(t0 + 40));
        t.record(
            TraceEvent::Close {
                probe: p,
                reason: Reason::ConnRefused,
            },
            us(t0 + 45),
        );
    }
    t.record(TraceEvent::Window { window: 20 }, us(300));
    t.record(
        TraceEvent::BackOff {
            delay: Duration::from_millis(1),
        },
        us(350),
    );
    t.finish().unwrap();
    sink.flush().unwrap();
}

#[test]
fn one_run_with_results_and_trace_has_every_plot() {
    let d = dir("full");
    let stats = stats_file(&d, "run.json", &stats_doc("mio", 1));
    let results = d.join("results.jsonl");
    std::fs::write(
        &results,
        format!(
            "{}\n{}\n{}\n",
            r#"{"addr":"127.0.0.1","port":80,"state":"open","reason":"syn-ack","rtt_us":120}"#,
            r#"{"addr":"127.0.0.1","port":81,"state":"closed","reason":"conn-refused","rtt_us":80}"#,
            serde_json::json!({"addr":"127.0.0.2","port":22,"state":"open","reason":"syn-ack","rtt_us":300,"banner":PAYLOAD,"hostname":PAYLOAD}),
        ),
    )
    .unwrap();
    let trace = d.join("run.trace");
    write_trace(&trace);
    let runs = load(&[stats, results, trace]).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].label, "run.json + results.jsonl + run.trace");
    let hosts = runs[0].host_rtt();
    assert_eq!(hosts.len(), 2);
    assert_eq!(
        hosts[0],
        HostRtt {
            host: "127.0.0.1".into(),
            count: 2,
            min: 80,
            p50: 120,
            p90: 120,
            max: 120
        }
    );
    let page = render(&runs);
    for plot in [
        "latency-closed/conn-refused",
        "latency-open/syn-ack",
        "in-flight",
        "launch-rate",
        "completion-rate",
        "host-rtt",
    ] {
        assert!(page.contains(&format!("data-plot=\"{plot}\"")), "{plot}");
    }
    assert!(page.contains("data-plot=\"waterfall-run.json + results.jsonl + run.trace\""));
    assert!(page.contains("data-plot=\"engine-run.json + results.jsonl + run.trace\""));
    // The p50 of 1..=1000 µs is 500 µs.
    assert!(page.contains("p50 500 µs"), "percentile marker");
    assert!(page.contains("127.0.0.1:1004"), "waterfall row label");
    assert!(!page.contains("<img"), "the banner became markup");
    assert!(!page.contains("<script"), "the page has no script at all");
    assert!(page.contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.contains("No latency histograms"));
    assert!(!page.contains("No trace"));
}

#[test]
fn two_runs_are_overlaid_in_one_plot_each() {
    let runs = two_runs("two");
    assert_eq!(runs.len(), 2);
    let page = render(&runs);
    assert_eq!(
        page.matches("data-plot=\"latency-closed/conn-refused\"")
            .count(),
        1
    );
    assert!(page.contains("mio.json (mio) (n=1000)"));
    assert!(page.contains("threads.json (threads) (n=1000)"));
    // Run 2's p50 is three times run 1's.
    assert!(page.contains("p50 1.5 ms"));
    assert!(page.contains("No trace"));
}

#[test]
fn a_file_name_is_text_in_the_page() {
    let page = page_of(
        "name",
        "<img src=x onerror=alert(1)>.json",
        &stats_doc("mio", 1),
    );
    assert!(!page.contains("<img"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.json"));
}

#[test]
fn bad_inputs_are_named() {
    let d = dir("bad");
    let junk = d.join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let err = load(std::slice::from_ref(&junk)).unwrap_err().to_string();
    assert_has(&err, "junk.txt");
    assert_has(&err, "not a --stats summary");
    let missing = d.join("missing.json");
    let err = load(&[missing]).unwrap_err().to_string();
    assert_has(&err, "cannot read");
    assert_has(&err, "missing.json");
    let trace = d.join("cut.trace");
    std::fs::write(&trace, &crate::trace::MAGIC[..]).unwrap();
    let err = load(&[trace]).unwrap_err().to_string();
    assert_has(&err, "cut.trace");
    assert!(matches!(load(&[]), Err(ReportError::NoInput)));
}

#[test]
fn a_summary_without_series_or_trace_says_what_is_missing() {
    let mut doc = stats_doc("mio", 1);
    doc.as_object_mut().unwrap().remove("series");
    let page = page_of("bare", "bare.json", &doc);
    assert!(page.contains("No time series"));
    assert!(page.contains("No per-host RTTs"));
    assert!(page.contains("data-plot=\"latency-closed/conn-refused\""));
}

#[test]
fn one_plot_is_a_standalone_svg_with_its_legend_inside() {
    let runs = two_runs("plot");
    let names = plot_names(&runs);
    assert!(
        names.contains(&"latency-closed/conn-refused".to_string()),
        "{names:?}"
    );
    let svg = render_plot(&runs, "latency-closed/conn-refused").unwrap();
    assert!(svg.starts_with("<?xml"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert!(
        svg.contains("mio.json (mio) (n=1000)") && svg.contains("threads.json (threads) (n=1000)")
    );
    assert!(svg.contains(r#"class="axis-label x""#));
    assert!(!svg.contains("<figure") && !svg.contains("<div"));
    assert!(render_plot(&runs, "no-such-plot").is_none());
}

#[test]
fn histogram_bins_of_whole_microseconds_leave_no_gaps() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for us in 1..=40u64 {
        h.record(us).unwrap();
    }
    let pts = plots::log_bins_for_test(&h);
    // Every bin from the first to the last has samples: no zero inside.
    let inner = &pts[1..pts.len() - 1];
    assert!(inner.iter().all(|&(_, y)| y > 0.0), "{pts:?}");
    let total: f64 = inner.iter().step_by(2).map(|&(_, y)| y).sum();
    assert!((total - 100.0).abs() < 1e-9, "{total}");
}
