//! The report's plots, each from the runs' data to one or more SVG figures;
//! a plot whose data no run carries says so in one line instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Run;
use super::svg::{Axis, COLORS, Chart, DASHES, Unit, micros};
use crate::classify::Reason;
use crate::service::escape::xml;
use crate::trace::TraceEvent;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 300.0;
/// Histogram bins per decade of latency.
const BINS_PER_DECADE: f64 = 10.0;
/// Most probes drawn in a waterfall.
const MAX_WATERFALL: usize = 60;
/// Most hosts drawn individually.
const MAX_HOSTS: usize = 60;

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

/// A piece of the page: a chart, or HTML (a table, a note).
pub enum Block {
    /// A chart, and whether its y ticks are hidden (row charts).
    Chart(Box<Chart>, bool),
    Html(String),
}

impl Block {
    /// The block as page HTML.
    pub fn html(self) -> String {
        match self {
            Block::Chart(c, hide) => c.finish(hide),
            Block::Html(h) => h,
        }
    }
}

fn html(text: String) -> Vec<Block> {
    vec![Block::Html(text)]
}

fn empty(what: &str) -> String {
    format!("<p class=\"empty\">{}</p>\n", xml(what))
}

/// The chart when it has something to draw, else a note saying why not.
fn chart_or_note(chart: Chart, drawn: bool, why_not: &str) -> Block {
    if drawn {
        Block::Chart(Box::new(chart), false)
    } else {
        Block::Html(empty(why_not))
    }
}

/// Lower edge of log bin `b`, rounded up to a whole microsecond: the
/// histograms count whole microseconds, so below ~40 µs several bins would
/// hold no value at all and the outline would show false gaps.
fn bin_edge(b: i64) -> f64 {
    10f64.powf(b as f64 / BINS_PER_DECADE).ceil()
}

/// The lowest bin with the same whole-microsecond edge as `b` (bins that
/// hold the same integers are one bin).
fn canonical_bin(mut b: i64) -> i64 {
    while b > 0 && bin_edge(b - 1) == bin_edge(b) {
        b -= 1;
    }
    b
}

/// The next bin holding other values than `b`.
fn next_bin(b: i64) -> i64 {
    let mut n = b + 1;
    while bin_edge(n) == bin_edge(b) {
        n += 1;
    }
    n
}

/// Share of samples per log-spaced bin, as a step outline: (µs, percent).
fn log_bins(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len() as f64;
    let mut bins: BTreeMap<i64, u64> = BTreeMap::new();
    for v in h.iter_recorded() {
        let value = h.median_equivalent(v.value_iterated_to()).max(1) as f64;
        let mut bin = (value.log10() * BINS_PER_DECADE).floor() as i64;
        // Float rounding at an edge: keep the value inside its bin.
        while bin_edge(bin) > value {
            bin -= 1;
        }
        *bins.entry(canonical_bin(bin)).or_default() += v.count_at_value();
    }
    let (Some(&first), Some(&last)) = (bins.keys().next(), bins.keys().next_back()) else {
        return Vec::new();
    };
    // Each bin's left and right edge at its height, and zero on both sides
    // so the shape closes on the axis.
    let mut pts = vec![(bin_edge(first), 0.0)];
    let mut b = first;
    while b <= last {
        let pct = bins.get(&b).copied().unwrap_or(0) as f64 * 100.0 / total;
        let next = next_bin(b);
        pts.push((bin_edge(b), pct));
        pts.push((bin_edge(next), pct));
        b = next;
    }
    pts.push((bin_edge(b), 0.0));
    pts
}

#[cfg(test)]
pub(crate) fn log_bins_for_test(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    log_bins(h)
}

/// One chart per outcome seen in any run: every run's histogram overlaid,
/// with its p50/p90/p99.
pub fn latency(runs: &[Run]) -> Vec<Block> {
    let outcomes: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.summary.iter().flat_map(|s| s.histograms.keys()))
        .collect();
    if outcomes.is_empty() {
        return html(empty("No latency histograms: give a --stats summary."));
    }
    let mut out: Vec<Block> = Vec::new();
    for outcome in outcomes {
        let hists: Vec<(usize, &Run, &Histogram<u64>)> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.summary
                    .as_ref()
                    .and_then(|s| s.histograms.get(outcome))
                    .map(|h| (i, r, h))
            })
            .collect();
        let lo = hists.iter().map(|(_, _, h)| h.min()).min().unwrap_or(1);
        let hi = hists.iter().map(|(_, _, h)| h.max()).max().unwrap_or(10);
        let bins: Vec<_> = hists.iter().map(|(_, _, h)| log_bins(h)).collect();
        let ymax = bins.iter().flatten().map(|&(_, y)| y).fold(0.0, f64::max);
        let mut c = Chart::new(
            &format!("latency-{outcome}"),
            &format!("Connect latency: {outcome}"),
            Axis::log(
                "connect latency (log scale)",
                lo as f64,
                hi as f64 * 1.3,
                Unit::Micros,
            ),
            Axis::linear("share of probes per bin (%)", 0.0, ymax * 1.1, Unit::Count),
            WIDTH,
            HEIGHT,
        );
        for (row, ((i, run, h), pts)) in hists.iter().zip(&bins).enumerate() {
            let col = color(*i);
            c.line(pts, col, "", &format!("{}: {} probes", run.name(), h.len()));
            c.legend(&format!("{} (n={})", run.name(), h.len()), col, "");
            for (k, (q, name)) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")]
                .into_iter()
                .enumerate()
            {
                let v = h.value_at_quantile(q);
                c.vline(
                    v as f64,
                    col,
                    &format!("{name} {}", micros(v as f64)),
                    row * 3 + k,
                );
            }
        }
        c.note(&format!(
            "{} bins per decade; dashed lines: p50, p90, p99 of each run.",
            BINS_PER_DECADE
        ));
        out.push(Block::Chart(Box::new(c), false));
    }
    out
}

/// In flight (and window), launch rate, completion rate against time.
pub fn over_time(runs: &[Run]) -> Vec<Block> {
    let series: Vec<(usize, &Run, &super::SeriesDoc)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.summary
                .as_ref()
                .and_then(|s| s.series.as_ref())
                .filter(|s| !s.is_empty())
                .map(|s| (i, r, s))
        })
        .collect();
    if series.is_empty() {
        return html(empty("No time series: the summaries carry no \"series\"."));
    }
    let tmax = series
        .iter()
        .map(|(_, _, s)| s.len() as f64 * s.bucket_ms / 1000.0)
        .fold(0.0, f64::max);
    // A chart over the scan's time, its y axis a tenth above the highest value.
    let over_time = |id: &str, title: &str, y_label: &str, ymax: f64| {
        Chart::new(
            id,
            title,
            Axis::linear("time since the scan started (s)", 0.0, tmax, Unit::Seconds),
            Axis::linear(y_label, 0.0, ymax * 1.1, Unit::Count),
            WIDTH,
            HEIGHT,
        )
    };
    // x of bucket i: its middle, in seconds.
    let at = |s: &super::SeriesDoc, i: usize| (i as f64 + 0.5) * s.bucket_ms / 1000.0;
    let mut out: Vec<Block> = Vec::new();

    // In flight and window.
    let sampled = series
        .iter()
        .any(|(_, _, s)| s.in_flight.iter().chain(&s.window).any(Option::is_some));
    let ymax = series
        .iter()
        .flat_map(|(_, _, s)| s.in_flight.iter().chain(&s.window).flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let mut c = over_time("in-flight", "Probes in flight and window", "probes", ymax);
    for (i, run, s) in &series {
        let pts = |col: &[Option<f64>]| -> Vec<(f64, f64)> {
            col.iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|v| (at(s, k), v)))
                .collect()
        };
        let (in_flight, window) = (pts(&s.in_flight), pts(&s.window));
        if !in_flight.is_empty() {
            c.line(
                &in_flight,
                color(*i),
                "",
                &format!("{}: in flight", run.name()),
            );
            c.legend(&format!("{}: in flight", run.name()), color(*i), "");
        }
        if !window.is_empty() {
            c.line(
                &window,
                color(*i),
                DASHES[1],
                &format!("{}: window", run.name()),
            );
            c.legend(&format!("{}: window", run.name()), color(*i), DASHES[1]);
        }
    }
    c.note("Mean of the samples taken in each bucket.");
    out.push(chart_or_note(
        c,
        sampled,
        "In flight and window: the engine took no samples in this run.",
    ));

    // Launch rate.
    // Per-second rates of a column of per-bucket counts, at each bucket's middle.
    let rates = |s: &super::SeriesDoc, col: &[u64]| -> Vec<(f64, f64)> {
        col.iter()
            .enumerate()
            .map(|(b, &n)| (at(s, b), n as f64 * 1000.0 / s.bucket_ms))
            .collect()
    };
    let lines: Vec<Line> = series
        .iter()
        .map(|(i, run, s)| (run.name(), color(*i), "", rates(s, &s.launches)))
        .collect();
    let ymax = highest(&lines);
    let mut c = over_time(
        "launch-rate",
        "Launch rate (connect attempts, retries included)",
        "launches per second",
        ymax,
    );
    draw(&mut c, &lines);
    let widths: BTreeSet<String> = series
        .iter()
        .map(|(_, _, s)| format!("{} ms", s.bucket_ms))
        .collect();
    let widths: Vec<String> = widths.into_iter().collect();
    c.note(&format!("Buckets of {}.", widths.join(", ")));
    out.push(chart_or_note(
        c,
        ymax > 0.0,
        "Launch rate: the engine recorded no launches in this run.",
    ));

    // Completion rate: by outcome for one run, the total per run for several.
    let mut lines: Vec<Line> = Vec::new();
    for (i, run, s) in &series {
        if series.len() == 1 {
            for (k, (outcome, col)) in s.completions.iter().enumerate() {
                lines.push((
                    outcome.clone(),
                    color(k),
                    DASHES[k % DASHES.len()],
                    rates(s, col),
                ));
            }
        }
        let label = if series.len() == 1 {
            "all outcomes".to_string()
        } else {
            run.name()
        };
        let col = if series.len() == 1 {
            "#000000"
        } else {
            color(*i)
        };
        lines.push((label, col, "", rates(s, &s.completions_total())));
    }
    let mut c = over_time(
        "completion-rate",
        "Completion rate (final results)",
        "results per second",
        highest(&lines),
    );
    draw(&mut c, &lines);
    out.push(Block::Chart(Box::new(c), false));
    out
}

/// A labelled line: label, colour, dash pattern, points.
type Line = (String, &'static str, &'static str, Vec<(f64, f64)>);

/// The highest point of any of `lines` (0 for none).
fn highest(lines: &[Line]) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.3.iter().map(|p| p.1))
        .fold(0.0, f64::max)
}

/// Each line on `chart`, with its legend entry.
fn draw(chart: &mut Chart, lines: &[Line]) {
    for (label, col, dash, pts) in lines {
        chart.line(pts, col, dash, label);
        chart.legend(label, col, dash);
    }
}

/// Each host's min–max range with its p50 and p90, hosts by median.
pub fn host_rtt(runs: &[Run]) -> Vec<Block> {
    let with: Vec<(usize, &Run)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.host_rtt().is_empty())
        .collect();
    if with.is_empty() {
        return html(empty(
            "No per-host RTTs: give -oJ results, or a summary with \"host_rtt\".",
        ));
    }
    let mut out: Vec<Block> = Vec::new();
    let hmax = with
        .iter()
        .map(|(_, r)| r.host_rtt().len().min(MAX_HOSTS))
        .max()
        .unwrap_or(1);
    let lo = with
        .iter()
        .flat_map(|(_, r)| r.host_rtt().iter().map(|h| h.min))
        .min()
        .unwrap_or(1);
    let hi = with
        .iter()
        .flat_map(|(_, r)| r.host_rtt().iter().map(|h| h.max))
        .max()
        .unwrap_or(10);
    let mut c = Chart::new(
        "host-rtt",
        "Per-host connect latency (hosts by median)",
        Axis::linear(
            "host rank, by median RTT",
            0.0,
            hmax as f64 + 1.0,
            Unit::Count,
        ),
        Axis::log(
            "connect latency (log scale)",
            lo as f64,
            hi as f64 * 1.3,
            Unit::Micros,
        ),
        WIDTH,
        HEIGHT,
    );
    let n_runs = with.len() as f64;
    let mut notes = Vec::new();
    for (slot, (i, run)) in with.iter().enumerate() {
        let mut hosts: Vec<_> = run.host_rtt().iter().collect();
        hosts.sort_by_key(|h| (h.p50, h.max));
        if hosts.len() > MAX_HOSTS {
            notes.push(format!(
                "{}: {} hosts, every {}th drawn",
                run.label,
                hosts.len(),
                hosts.len().div_ceil(MAX_HOSTS)
            ));
            let step = hosts.len().div_ceil(MAX_HOSTS);
            hosts = hosts.into_iter().step_by(step).collect();
        }
        let col = color(*i);
        // Runs side by side within a host's slot.
        let offset = (slot as f64 + 0.5) / n_runs - 0.5;
        for (rank, h) in hosts.iter().enumerate() {
            let x = rank as f64 + 1.0 + offset * 0.6;
            let title = format!(
                "{}: {} answers, min {}, p50 {}, p90 {}, max {}",
                h.host,
                h.count,
                micros(h.min as f64),
                micros(h.p50 as f64),
                micros(h.p90 as f64),
                micros(h.max as f64)
            );
            c.rect(x - 0.02, x + 0.02, h.min as f64, h.max as f64, col, &title);
            c.rect(x - 0.15, x + 0.15, h.p50 as f64, h.p90 as f64, col, &title);
            c.dot(x, h.p50 as f64, 3.0, "#000000", &title);
        }
        c.legend(&run.name(), col, "");
    }
    let mut note = "Thin bar: min to max; box: p50 to p90; dot: p50.".to_string();
    if !notes.is_empty() {
        note.push(' ');
        note.push_str(&notes.join("; "));
        note.push('.');
    }
    c.note(&note);
    out.push(Block::Chart(Box::new(c), false));
    // The hosts by name, so the ranks can be read.
    let mut table = String::new();
    table.push_str("<table class=\"hosts\"><tr><th>run</th><th>rank</th><th>host</th><th>answers</th><th>min</th><th>p50</th><th>p90</th><th>max</th></tr>\n");
    for (_, run) in &with {
        let mut hosts: Vec<_> = run.host_rtt().iter().collect();
        hosts.sort_by_key(|h| (h.p50, h.max));
        for (rank, h) in hosts.iter().enumerate().take(20) {
            let _ = writeln!(
                table,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                xml(&run.label),
                rank + 1,
                xml(&h.host),
                h.count,
                xml(&micros(h.min as f64)),
                xml(&micros(h.p50 as f64)),
                xml(&micros(h.p90 as f64)),
                xml(&micros(h.max as f64))
            );
        }
    }
    table.push_str("</table>\n");
    out.push(Block::Html(table));
    out
}

/// Colour of a probe's final reason.
fn reason_color(r: Reason) -> &'static str {
    match r.state() {
        crate::classify::State::Open => COLORS[2],
        crate::classify::State::Closed => COLORS[0],
        crate::classify::State::Filtered => COLORS[1],
    }
}

/// One row per sampled probe, on its own clock: time since its first
/// launch, log scale, so a 5 µs loopback refusal and a 3 s silence read on
/// one page. The bar runs from launch to close, coloured by outcome; each
/// event is a tick.
pub fn waterfall(runs: &[Run]) -> Vec<Block> {
    let traced: Vec<&Run> = runs.iter().filter(|r| r.trace.is_some()).collect();
    if traced.is_empty() {
        return html(empty(
            "No trace: run with --trace FILE and give FILE to the report.",
        ));
    }
    let mut out: Vec<Block> = Vec::new();
    for run in traced {
        let trace = run.trace.as_ref().expect("filtered on trace");
        // Each probe's events, in time order.
        let mut probes: BTreeMap<u64, Vec<(Duration, TraceEvent)>> = BTreeMap::new();
        let mut first: Vec<(Duration, u64)> = Vec::new();
        for r in &trace.records {
            if let Some(p) = r.event.probe() {
                let evs = probes.entry(p).or_default();
                if evs.is_empty() {
                    first.push((r.t, p));
                }
                evs.push((r.t, r.event));
            }
        }
        if first.is_empty() {
            out.push(Block::Html(empty(&format!(
                "{}: the trace holds no probe events.",
                run.label
            ))));
            continue;
        }
        first.sort();
        let total = first.len();
        // An even spread over the run rather than its first probes only.
        let step = total.div_ceil(MAX_WATERFALL);
        let shown: Vec<u64> = first.iter().step_by(step).map(|&(_, p)| p).collect();
        // Offsets from each probe's launch, in µs (at least 1: log axis).
        let life = |p: &u64| -> Vec<(f64, TraceEvent)> {
            let evs = &probes[p];
            let t0 = evs[0].0;
            evs.iter()
                .map(|&(t, e)| (((t - t0).as_secs_f64() * 1e6).max(1.0), e))
                .collect()
        };
        let longest = shown
            .iter()
            .flat_map(|p| life(p).last().map(|e| e.0))
            .fold(10.0, f64::max);
        let rows = shown.len() as f64;
        let mut c = Chart::new(
            &format!("waterfall-{}", run.label),
            &format!("Sampled probes, each from its launch: {}", run.label),
            Axis::log(
                "time since the probe's launch (log scale)",
                1.0,
                longest * 1.5,
                Unit::Micros,
            ),
            Axis::linear("probe, by launch time", 0.0, rows + 1.0, Unit::Count),
            WIDTH,
            90.0 + 15.0 * rows.max(6.0),
        );
        c.set_left(170.0);
        for (row, p) in shown.iter().enumerate() {
            let evs = life(p);
            let y = rows - row as f64;
            let launched = probes[p][0].0;
            let target = evs.iter().find_map(|(_, e)| match e {
                TraceEvent::Launch { target, .. } => Some(*target),
                _ => None,
            });
            let reason = evs.iter().rev().find_map(|(_, e)| match e {
                TraceEvent::Close { reason, .. } => Some(*reason),
                _ => None,
            });
            let end = evs.last().map_or(1.0, |e| e.0);
            let label = target.map_or_else(|| format!("probe {p}"), |t| t.to_string());
            c.label_left(
                y,
                &format!("{label} @{:.1} ms", launched.as_secs_f64() * 1e3),
            );
            let col = reason.map_or("#777777", reason_color);
            let outcome = reason.map_or("no close".to_string(), |r| format!("{}/{}", r.state(), r));
            c.rect(
                1.0,
                end,
                y - 0.25,
                y + 0.25,
                col,
                &format!("{label}: {outcome}, {} from launch to close", micros(end)),
            );
            for (t, e) in &evs {
                if let Some(mc) = event_color(e) {
                    c.tick(
                        *t,
                        y,
                        6.0,
                        mc,
                        &format!("{label}: {} at +{}", describe(e), micros(*t)),
                    );
                }
            }
        }
        c.legend("bar: open", COLORS[2], "");
        c.legend("bar: closed", COLORS[0], "");
        c.legend("bar: filtered", COLORS[1], "");
        c.legend("tick: connect() returned", COLORS[5], "");
        c.legend("tick: eager look / readiness", "#000000", "");
        c.legend("tick: deadline", COLORS[4], "");
        c.legend("tick: retry or local error", COLORS[3], "");
        c.note(&format!(
            "{} of {} traced probes (the trace kept {} % of all probes), spread over the run; the label gives the target and when it was launched. Hover for each event.",
            shown.len(),
            total,
            trace.sample * 100.0
        ));
        out.push(Block::Chart(Box::new(c), true));
    }
    out
}

/// The tick colour of a probe event (`None`: not drawn; the bar shows it).
fn event_color(e: &TraceEvent) -> Option<&'static str> {
    use TraceEvent::*;
    match e {
        Connect { .. } => Some(COLORS[5]),
        EagerLook { .. } | Ready { .. } => Some("#000000"),
        Deadline { .. } => Some(COLORS[4]),
        Retry { .. } | LocalError { .. } => Some(COLORS[3]),
        _ => None,
    }
}

/// A trace event in words, errno names included.
fn describe(e: &TraceEvent) -> String {
    use TraceEvent::*;
    match *e {
        Launch {
            attempt, target, ..
        } => format!("launch #{attempt} to {target}"),
        Connect { errno, .. } => format!("connect() = {}", errno_name(errno)),
        EagerLook { errno, .. } => format!("eager look: {}", errno_name(errno)),
        Ready { .. } => "ready".into(),
        SoError { errno, .. } => format!("SO_ERROR = {}", errno_name(errno)),
        PeerName { errno, .. } => format!("getpeername: {}", errno_name(errno)),
        SockName { self_connect, .. } => {
            format!(
                "getsockname: {}",
                if self_connect {
                    "self-connect"
                } else {
                    "distinct"
                }
            )
        }
        Deadline { attempt, .. } => format!("deadline of attempt #{attempt}"),
        Retry { attempt, delay, .. } => {
            format!(
                "retry #{attempt} after {}",
                micros(delay.as_secs_f64() * 1e6)
            )
        }
        LocalError { errno, .. } => format!("local error {}", errno_name(errno)),
        Close { reason, .. } => format!("close: {}/{}", reason.state(), reason),
        InFlightCap { cap } => format!("in-flight cap {cap}"),
        Window { window } => format!("window {window}"),
        BackOff { delay } => format!("back-off {}", micros(delay.as_secs_f64() * 1e6)),
    }
}

/// The errno's symbolic name for the ones a connect meets.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        0 => "0",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EALREADY => "EALREADY",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOTCONN => "ENOTCONN",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::EAGAIN => "EAGAIN",
        libc::ECONNRESET => "ECONNRESET",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENETDOWN => "ENETDOWN",
        _ => return format!("errno {e}"),
    };
    name.into()
}

/// The engine's cap and window as steps over time; back-offs as spans.
pub fn engine_events(runs: &[Run]) -> Vec<Block> {
    let traced: Vec<(usize, &Run)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.trace.is_some())
        .collect();
    if traced.is_empty() {
        return html(empty(
            "No trace: run with --trace FILE and give FILE to the report.",
        ));
    }
    let mut out: Vec<Block> = Vec::new();
    for (i, run) in traced {
        let trace = run.trace.as_ref().expect("filtered on trace");
        let engine: Vec<_> = trace
            .records
            .iter()
            .filter(|r| r.event.probe().is_none())
            .collect();
        if engine.is_empty() {
            out.push(Block::Html(empty(&format!(
                "{}: the trace holds no engine events.",
                run.label
            ))));
            continue;
        }
        let end = trace.records.last().map_or(0.0, |r| r.t.as_secs_f64());
        let mut cap = Vec::new();
        let mut window = Vec::new();
        let mut backoffs = Vec::new();
        for r in &engine {
            let t = r.t.as_secs_f64();
            match r.event {
                TraceEvent::InFlightCap { cap: v } => step(&mut cap, t, v as f64),
                TraceEvent::Window { window: v } => step(&mut window, t, v as f64),
                TraceEvent::BackOff { delay } => backoffs.push((t, delay.as_secs_f64())),
                _ => {}
            }
        }
        for line in [&mut cap, &mut window] {
            if let Some(&(_, v)) = line.last() {
                line.push((end, v));
            }
        }
        let ymax = cap.iter().chain(&window).map(|p| p.1).fold(1.0, f64::max);
        let mut c = Chart::new(
            &format!("engine-{}", run.label),
            &format!("Engine events: {}", run.label),
            Axis::linear(
                "time since the scan started (s)",
                0.0,
                end.max(0.001),
                Unit::Seconds,
            ),
            Axis::linear("probes", 0.0, ymax * 1.1, Unit::Count),
            WIDTH,
            HEIGHT,
        );
        for &(t, d) in &backoffs {
            c.rect(
                t,
                t + d,
                0.0,
                ymax * 1.1,
                "#f3d3c3",
                &format!("back-off {} at {t:.3} s", micros(d * 1e6)),
            );
        }
        let col = color(i);
        if !cap.is_empty() {
            c.line(&cap, col, "", "in-flight cap");
            c.legend("in-flight cap", col, "");
        }
        if !window.is_empty() {
            c.line(&window, col, DASHES[1], "window");
            c.legend("window", col, DASHES[1]);
        }
        if !backoffs.is_empty() {
            c.legend("back-off", "#f3d3c3", "");
        }
        c.note(&format!(
            "{} cap changes, {} window changes, {} back-offs.",
            cap.len().saturating_sub(1),
            window.len().saturating_sub(1),
            backoffs.len()
        ));
        out.push(Block::Chart(Box::new(c), false));
    }
    out
}

/// Appends a step to `v` at `t`.
fn step(line: &mut Vec<(f64, f64)>, t: f64, v: f64) {
    if let Some(&(_, prev)) = line.last() {
        line.push((t, prev));
    }
    line.push((t, v));
}
