//! `fastport report RUN.json [RUN2.json …] -o report.html`: one
//! self-contained HTML page drawn from `--stats` summaries, `-oJ` results and
//! `--trace` files.
//!
//! The page is inline SVG and CSS: no script, no fetch, opens offline and
//! prints. Everything read from the inputs (hostnames, banners, file names,
//! any string) is escaped as text by [`crate::service::escape::xml`] (the
//! escaper of the XML outputs too), never spliced as markup.
//!
//! Inputs are told apart by content: a trace starts with `FPTRACE2` (or
//! version 1's `FPTRACE1`), a summary is one JSON object, results are JSON
//! lines. Each summary starts a
//! *run*; the results and traces after it belong to it (a results file or
//! trace before any summary starts a run of its own). Several runs are drawn
//! overlaid, one colour each (mio vs threads, adaptive vs fixed, before vs
//! after).
//!
//! What the page draws, and which input it needs:
//!
//! - latency histograms per outcome, log axis, p50/p90/p99 markers: the
//!   summary's `histograms` (HdrHistogram V2, base64);
//! - in flight and window, launch rate and completion rate over time: the
//!   summary's `series` ([`series::SeriesDoc`]);
//! - per-host RTT distribution: the summary's `host_rtt`
//!   ([`HostRtt`], one entry per host) or the `rtt_us` of `-oJ` results;
//! - a waterfall of sampled probes and a timeline of engine events: a trace
//!   ([`crate::trace`]).

pub mod figures;
pub mod plots;
pub mod series;
pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::service::escape::xml;
use crate::trace::{self, Trace};
use series::SeriesDoc;

/// Why a report cannot be made: the input named, nothing written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read \"{path}\": {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("\"{path}\" is not a --stats summary, -oJ results or --trace file: {why}")]
    Unknown { path: PathBuf, why: String },
    #[error("\"{path}\": {source}")]
    Trace {
        path: PathBuf,
        source: trace::TraceError,
    },
    #[error("cannot write \"{path}\": {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no plot \"{name}\" in these inputs (they make: {known})")]
    NoPlot { name: String, known: String },
    #[error("no input: give at least one --stats summary, results or trace file")]
    NoInput,
}

/// One host's connect latency, in microseconds: the `host_rtt` entries of a
/// summary, or computed from `-oJ` results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRtt {
    /// The address, with the name it was given as if any (`name (addr)`).
    pub host: String,
    /// Answered probes of this host.
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub max: u64,
}

impl HostRtt {
    /// Summarises `rtts` (any order; must not be empty).
    pub fn of(host: String, rtts: &mut [u64]) -> HostRtt {
        rtts.sort_unstable();
        let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
        HostRtt {
            host,
            count: rtts.len() as u64,
            min: rtts[0],
            p50: at(0.5),
            p90: at(0.9),
            max: rtts[rtts.len() - 1],
        }
    }
}

/// What the report shows of a `--stats` summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Top-level scalars shown in the run table (engine, threads, ...).
    pub fields: Vec<(String, String)>,
    /// Latency histogram per `state/reason`.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    pub series: Option<SeriesDoc>,
    pub host_rtt: Vec<HostRtt>,
}

/// A string found in results beside the port (a banner, a TLS subject, a
/// hostname): shown as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub addr: String,
    pub port: u64,
    pub field: String,
    pub text: String,
}

/// One run: a summary and what came with it.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The files it was read from (shown as the run's name).
    pub label: String,
    pub summary: Option<Summary>,
    pub trace: Option<Trace>,
    pub hosts: Vec<HostRtt>,
    pub findings: Vec<Finding>,
}

impl Run {
    /// Per-host RTTs: the summary's, else those computed from results.
    pub fn host_rtt(&self) -> &[HostRtt] {
        match &self.summary {
            Some(s) if !s.host_rtt.is_empty() => &s.host_rtt,
            _ => &self.hosts,
        }
    }

    /// A short name for legends: the run's engine (if known) and its file.
    pub fn name(&self) -> String {
        let engine = self.summary.as_ref().and_then(|s| {
            s.fields
                .iter()
                .find(|(k, _)| k == "engine")
                .map(|(_, v)| v.clone())
        });
        match engine {
            Some(e) => format!("{} ({e})", self.label),
            None => self.label.clone(),
        }
    }
}

/// Reads the inputs into runs (see the module docs for the grouping).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Run>, ReportError> {
    if paths.is_empty() {
        return Err(ReportError::NoInput);
    }
    let mut runs: Vec<Run> = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        let name = file_name(path);
        if trace::is_trace(&bytes) {
            let t = trace::read(bytes.as_slice()).map_err(|source| ReportError::Trace {
                path: path.clone(),
                source,
            })?;
            let run = current(&mut runs, &name, |r| r.trace.is_some());
            run.label = join_label(&run.label, &name);
            run.trace = Some(t);
            continue;
        }
        let text = String::from_utf8(bytes).map_err(|_| ReportError::Unknown {
            path: path.clone(),
            why: "neither a trace nor UTF-8 text".into(),
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(doc)) if !looks_like_result(&doc) => {
                runs.push(Run {
                    label: name,
                    summary: Some(summary(&doc)),
                    ..Run::default()
                });
            }
            _ => {
                let (hosts, findings) = results(&text).map_err(|why| ReportError::Unknown {
                    path: path.clone(),
                    why,
                })?;
                let run = current(&mut runs, &name, |r| !r.hosts.is_empty());
                run.label = join_label(&run.label, &name);
                run.hosts = hosts;
                run.findings = findings;
            }
        }
    }
    Ok(runs)
}

/// The run a results file or trace belongs to: the last one, unless it
/// already has one (`taken`) or there is none.
fn current<'a>(runs: &'a mut Vec<Run>, name: &str, taken: impl Fn(&Run) -> bool) -> &'a mut Run {
    if runs.last().is_none_or(taken) {
        runs.push(Run {
            label: name.into(),
            ..Run::default()
        });
    }
    runs.last_mut().expect("a run was just pushed")
}

fn join_label(label: &str, name: &str) -> String {
    if label == name {
        label.into()
    } else {
        format!("{label} + {name}")
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// A single `-oJ` line parses as one object too: it has `addr` and `port`.
fn looks_like_result(doc: &serde_json::Map<String, serde_json::Value>) -> bool {
    doc.contains_key("addr") && doc.contains_key("port")
}

/// The parts of a summary the report draws; anything missing is left out.
fn summary(doc: &serde_json::Map<String, serde_json::Value>) -> Summary {
    use serde_json::Value;
    let mut fields = Vec::new();
    for key in [
        "engine",
        "threads",
        "concurrency",
        "hosts",
        "ports_per_host",
        "results",
        "attempts",
        "probes_per_port",
        "elapsed_s",
        "probes_per_s",
        "interrupted",
        "seed",
        "order",
        "shard",
    ] {
        match doc.get(key) {
            Some(Value::String(s)) => fields.push((key.into(), s.clone())),
            Some(Value::Number(n)) => {
                let text = match n.as_f64() {
                    Some(f) if n.is_f64() => format!("{f:.3}"),
                    _ => n.to_string(),
                };
                fields.push((key.into(), text));
            }
            Some(Value::Bool(b)) => fields.push((key.into(), b.to_string())),
            _ => {}
        }
    }
    if let Some(Value::Object(states)) = doc.get("states") {
        for (k, v) in states {
            fields.push((format!("states.{k}"), v.to_string()));
        }
    }
    let mut histograms = BTreeMap::new();
    if let Some(Value::Object(h)) = doc.get("histograms") {
        for (k, v) in h {
            if let Some(hist) = v.as_str().and_then(crate::stats::histogram_from_base64) {
                histograms.insert(k.clone(), hist);
            }
        }
    }
    let series = doc
        .get("series")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let host_rtt = doc
        .get("host_rtt")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Summary {
        fields,
        histograms,
        series,
        host_rtt,
    }
}

/// Per-host RTTs and the extra strings of `-oJ` results.
fn results(text: &str) -> Result<(Vec<HostRtt>, Vec<Finding>), String> {
    use serde_json::Value;
    let mut rtts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut findings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let addr = match doc.get("addr") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(format!("line {}: no \"addr\"", i + 1)),
        };
        let host = match doc.get("hostname").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => format!("{name} ({addr})"),
            _ => addr.clone(),
        };
        let port = doc.get("port").and_then(Value::as_u64).unwrap_or(0);
        if let Some(us) = doc.get("rtt_us").and_then(Value::as_u64) {
            rtts.entry(host).or_default().push(us);
        }
        for (k, v) in &doc {
            if matches!(k.as_str(), "addr" | "state" | "reason" | "time") {
                continue;
            }
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Object(_) | Value::Array(_) => v.to_string(),
                _ => continue,
            };
            findings.push(Finding {
                addr: addr.clone(),
                port,
                field: k.clone(),
                text,
            });
        }
    }
    let hosts = rtts
        .into_iter()
        .map(|(host, mut v)| HostRtt::of(host, &mut v))
        .collect();
    Ok((hosts, findings))
}

/// Most findings listed in the page.
const MAX_FINDINGS: usize = 200;

/// The whole page.
pub fn render(runs: &[Run]) -> String {
    let mut page = String::new();
    let title = match runs {
        [one] => format!("FastPort report: {}", one.label),
        _ => format!("FastPort report: {} runs", runs.len()),
    };
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #111; max-width: 1100px; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #999; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }}
td, th {{ border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure.plot {{ margin: 0.8em 0; break-inside: avoid; }}
figcaption {{ font-size: 0.8em; color: #333; }}
.legend {{ font-size: 0.8em; margin-left: 78px; }} .legend .key {{ margin-right: 1.2em; white-space: nowrap; }}
.legend svg {{ vertical-align: middle; margin-right: 0.3em; }}
.swatch {{ display: inline-block; width: 1em; height: 0.8em; margin-right: 0.3em; }}
pre {{ white-space: pre-wrap; word-break: break-all; margin: 0; }}
p.empty {{ color: #555; font-style: italic; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>{}</h1>
"#,
        xml(&title),
        xml(&title)
    );
    page.push_str("<h2>Runs</h2>\n");
    page.push_str(&run_table(runs));
    page.push_str("<h2>Connect latency per outcome</h2>\n");
    push_blocks(&mut page, plots::latency(runs));
    page.push_str("<h2>The run over time</h2>\n");
    push_blocks(&mut page, plots::over_time(runs));
    page.push_str("<h2>Per-host RTT</h2>\n");
    push_blocks(&mut page, plots::host_rtt(runs));
    page.push_str("<h2>Trace: sampled probes</h2>\n");
    push_blocks(&mut page, plots::waterfall(runs));
    page.push_str("<h2>Trace: engine events</h2>\n");
    push_blocks(&mut page, plots::engine_events(runs));
    let findings: Vec<(&Run, &Finding)> = runs
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
        .collect();
    if !findings.is_empty() {
        page.push_str("<h2>What the services said</h2>\n<table class=\"findings\"><tr><th>run</th><th>address</th><th>port</th><th>field</th><th>text</th></tr>\n");
        for (run, f) in findings.iter().take(MAX_FINDINGS) {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                xml(&run.label),
                xml(&f.addr),
                f.port,
                xml(&f.field),
                xml(&f.text)
            );
        }
        page.push_str("</table>\n");
        if findings.len() > MAX_FINDINGS {
            let _ = writeln!(
                page,
                "<p>{} more not shown.</p>",
                findings.len() - MAX_FINDINGS
            );
        }
    }
    page.push_str("<p><small>Made by fastport report: inline SVG, no script, no network access.</small></p>\n</body></html>\n");
    page
}

fn push_blocks(page: &mut String, blocks: Vec<plots::Block>) {
    for b in blocks {
        page.push_str(&b.html());
    }
}

/// Every chart the page would draw, by its `data-plot` name.
fn charts(runs: &[Run]) -> Vec<svg::Chart> {
    [
        plots::latency(runs),
        plots::over_time(runs),
        plots::host_rtt(runs),
        plots::waterfall(runs),
        plots::engine_events(runs),
    ]
    .into_iter()
    .flatten()
    .filter_map(|b| match b {
        plots::Block::Chart(mut c, hide_y) => {
            c.hide_y |= hide_y;
            Some(*c)
        }
        plots::Block::Html(_) => None,
    })
    .collect()
}

/// The names of the plots the page would draw (`--plot` takes one).
pub fn plot_names(runs: &[Run]) -> Vec<String> {
    charts(runs).iter().map(|c| c.id().to_string()).collect()
}

/// One plot as a standalone SVG file (its legend inside), for documents
/// that embed images: the same drawing as the page's.
pub fn render_plot(runs: &[Run], name: &str) -> Option<String> {
    charts(runs)
        .into_iter()
        .find(|c| c.id() == name)
        .map(|c| c.standalone())
}

fn run_table(runs: &[Run]) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for r in runs {
        for (k, _) in r.summary.iter().flat_map(|s| &s.fields) {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    // One column per run, so several runs compare side by side and a long
    // list of fields stays on the page.
    let mut s = String::from("<table class=\"runs\"><tr><th>run</th>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            s,
            r#"<th><span class="swatch" style="background:{}"></span>{}</th>"#,
            svg::COLORS[i % svg::COLORS.len()],
            xml(&r.label)
        );
    }
    s.push_str("</tr>\n");
    for k in &keys {
        let _ = write!(s, "<tr><th>{}</th>", xml(k));
        for r in runs {
            let v = r
                .summary
                .iter()
                .flat_map(|s| &s.fields)
                .find(|(key, _)| key == k)
                .map_or("", |(_, v)| v.as_str());
            let _ = write!(s, "<td class=\"num\">{}</td>", xml(v));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("<tr><th>trace</th>");
    for r in runs {
        let trace = match &r.trace {
            Some(t) => format!(
                "{} events, {} % of probes",
                t.records.len(),
                t.sample * 100.0
            ),
            None => "none".into(),
        };
        let _ = write!(s, "<td>{}</td>", xml(&trace));
    }
    s.push_str("</tr>\n</table>\n");
    s
}

/// Reads `paths` and writes the page to `out` (`-` for stdout), or only
/// the plot named `plot`, as a standalone SVG.
pub fn write_report(paths: &[PathBuf], out: &Path, plot: Option<&str>) -> Result<(), ReportError> {
    let runs = load(paths)?;
    let page = match plot {
        None => render(&runs),
        Some(name) => render_plot(&runs, name).ok_or_else(|| ReportError::NoPlot {
            name: name.into(),
            known: plot_names(&runs).join(", "),
        })?,
    };
    let written = if out == Path::new("-") {
        use std::io::Write as _;
        std::io::stdout().lock().write_all(page.as_bytes())
    } else {
        std::fs::write(out, page)
    };
    written.map_err(|source| ReportError::Write {
        path: out.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
