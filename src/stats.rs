//! Counting a scan: results per reason, local-error retries, and connect
//! latency in one HdrHistogram per reason.
//!
//! Each worker owns a [`Stats`] and records into it on its hot path (no
//! sharing, no allocation: histograms are sized up front). The driver adds the
//! workers' stats into one [`Summary`] when they finish; HdrHistograms add
//! exactly, so the merged percentiles are those of the whole scan.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::classify::{LocalError, Reason, State};
use crate::engine::EngineKind;
use crate::order::{OrderKind, Shard};
use crate::report::series::{Series, SeriesDoc};
use crate::timing::TimingSummary;

/// Highest latency a histogram tracks exactly: one hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// One worker's counts and latencies.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Final results per reason (each port counted once).
    pub reasons: [u64; Reason::COUNT],
    /// Local-error retries per kind.
    pub local_errors: [u64; LocalError::COUNT],
    /// Connect attempts made, retries included.
    pub attempts: u64,
    /// Connect latency in microseconds per reason (answered probes only).
    pub latency: Vec<Histogram<u64>>,
    /// Where adaptive timing ended (or the fixed timeout).
    pub timing: TimingSummary,
    /// The hosts found to limit their RSTs, by their index in the scan's
    /// order, sorted: workers probing the same host each find it, and
    /// [`Stats::merge`] counts it once.
    pub rst_limited: Vec<u64>,
    /// Launches, completions, in flight and window per 100 ms (the `series`
    /// of `--stats`, drawn by `fastport report`).
    pub series: Series,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty counts, histograms allocated.
    pub fn new() -> Self {
        let latency = Reason::ALL
            .iter()
            .map(|_| {
                // 3 significant figures over 1 µs .. 1 h: ~20 KiB each, allocated once.
                Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
                    .expect("static histogram bounds are valid")
            })
            .collect();
        Stats {
            reasons: [0; Reason::COUNT],
            local_errors: [0; LocalError::COUNT],
            attempts: 0,
            latency,
            timing: TimingSummary::default(),
            rst_limited: Vec::new(),
            series: Series::new(),
        }
    }

    /// Counts one final result.
    pub fn record(&mut self, reason: Reason, rtt_us: Option<u32>) {
        self.reasons[reason.index()] += 1;
        if let Some(us) = rtt_us {
            // saturating_record clamps to the tracked range: it cannot fail.
            self.latency[reason.index()].saturating_record(u64::from(us).max(1));
        }
    }

    /// Counts one retry after a local error.
    pub fn record_local_error(&mut self, e: LocalError) {
        self.local_errors[e.index()] += 1;
    }

    /// Adds another worker's stats into these.
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.reasons.iter_mut().zip(other.reasons) {
            *a += b;
        }
        for (a, b) in self.local_errors.iter_mut().zip(other.local_errors) {
            *a += b;
        }
        self.attempts += other.attempts;
        self.timing.merge(&other.timing);
        if !other.rst_limited.is_empty() {
            let both = self.rst_limited.len() + other.rst_limited.len();
            self.rst_limited.extend_from_slice(&other.rst_limited);
            self.rst_limited.sort_unstable();
            self.rst_limited.dedup();
            let twice = (both - self.rst_limited.len()) as u64;
            self.timing.rst_limited_hosts -= twice.min(self.timing.rst_limited_hosts);
        }
        self.series.merge(&other.series);
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            // Same bounds on both sides: add cannot fail.
            a.add(b).expect("histograms share their bounds");
        }
    }

    /// Ports reported (each counted once).
    pub fn results(&self) -> u64 {
        self.reasons.iter().sum()
    }

    /// Ports reported with `state`.
    pub fn state_count(&self, state: State) -> u64 {
        crate::classify::in_state(&self.reasons, state)
    }

    /// Local-error retries, every kind together.
    pub fn local_error_total(&self) -> u64 {
        self.local_errors.iter().sum()
    }

    /// Connect attempts per result: 1.0 when no port needed a retry.
    pub fn probes_per_port(&self) -> f64 {
        match self.results() {
            0 => 0.0,
            n => self.attempts as f64 / n as f64,
        }
    }
}

/// The whole run, as `--stats` writes it and the text summary prints it.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Counts and latencies of the run.
    pub stats: Stats,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Addresses scanned.
    pub hosts: u64,
    /// Ports per address.
    pub ports_per_host: u64,
    /// Size of the index space (hosts × ports).
    pub planned: u64,
    /// The run was stopped before it finished (Ctrl-C, a closed output).
    pub interrupted: bool,
    /// The engine's name (`mio`, `threads`).
    pub engine: &'static str,
    /// Worker threads (the threads engine: one per probe in flight).
    pub threads: usize,
    /// Probes in flight, at most.
    pub concurrency: usize,
    /// Seed of the random order: with the same targets, ports, `--order`
    /// and `--shard`, the same seed gives the same probe order.
    pub seed: u64,
    /// `--order`: `random` or `sequential`.
    pub order: &'static str,
    /// `--shard K/N` (`1/1` for an unsplit scan).
    pub shard: Shard,
}

/// Latency percentiles of one outcome, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Highest.
    pub max: u64,
}

impl Percentiles {
    /// The percentiles of one histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

impl Summary {
    /// Ports reported per second of the run.
    pub fn probes_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.results() as f64 / secs
        } else {
            0.0
        }
    }

    /// Percentiles per answered outcome that has at least one sample.
    pub fn latencies(&self) -> impl Iterator<Item = (Reason, Percentiles)> + '_ {
        Reason::ALL
            .into_iter()
            .filter(|r| r.answered())
            .map(|r| (r, &self.stats.latency[r.index()]))
            .filter(|(_, h)| !h.is_empty())
            .map(|(r, h)| (r, Percentiles::of(h)))
    }

    /// The `--stats` JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(StatsDocument::new(self, None)).unwrap_or_default()
    }
}

/// The `--stats` file's format version (`"fastport_stats"`).
pub const STATS_VERSION: u32 = 1;

/// The `--stats` file: one versioned serde type, written by
/// [`StatsDocument::new`] and read back by `fastport merge` (and by a
/// resumed run, which continues the counts of the parts before it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsDocument {
    /// The format version ([`STATS_VERSION`]).
    pub fastport_stats: u32,
    /// `--engine`.
    pub engine: EngineKind,
    /// Worker threads.
    pub threads: usize,
    /// Probes in flight, at most.
    pub concurrency: usize,
    /// Addresses scanned.
    pub hosts: u64,
    /// Ports per address.
    pub ports_per_host: u64,
    /// Probes of this shard (all parts of a resumed run together).
    pub planned: u64,
    /// Probes reported (all parts together).
    pub results: u64,
    /// Connect attempts, retries included.
    pub attempts: u64,
    /// Attempts per port reported.
    pub probes_per_port: f64,
    /// Where adaptive timing ended.
    pub timing: TimingSummary,
    /// The run was stopped before it finished.
    pub interrupted: bool,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Ports reported per second.
    pub probes_per_s: f64,
    /// Ports per state name.
    pub states: BTreeMap<String, u64>,
    /// Ports per reason name.
    pub reasons: BTreeMap<String, u64>,
    /// Local-error retries, all kinds.
    pub local_error_retries: u64,
    /// Local-error retries per errno name.
    pub local_errors: BTreeMap<String, u64>,
    /// Latency percentiles per `state/reason`.
    pub latency_us: BTreeMap<String, Percentiles>,
    /// The random order's seed.
    pub seed: u64,
    /// `--order`.
    pub order: OrderKind,
    /// `--shard` as `K/N`.
    pub shard: String,
    /// HdrHistogram V2 in base64, by `state/reason`: they add exactly.
    pub histograms: BTreeMap<String, String>,
    /// Which scan this is and what it wrote: what `fastport merge` checks
    /// a shard's results against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    /// In a document `fastport merge` wrote: the shards it joined (`K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_shards: Option<Vec<String>>,
    /// In a document `fastport merge` wrote: the shards no input covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_shards: Option<Vec<u64>>,
    /// Launches, completions, in flight and window per 100 ms (drawn by
    /// `fastport report`); absent when the engine recorded none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesDoc>,
}

/// The run's identity and what it wrote, recorded in its `--stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Probes of the whole scan (every shard).
    pub space: u64,
    /// A hash of the targets and ports (hex): shards of one scan agree.
    pub targets: String,
    /// How many runs made this result: 1, plus one per resume.
    pub parts: u32,
    /// Result lines written to `-oJ` by all parts together; `None` when a
    /// part wrote none (no `-oJ`, or to stdout).
    pub json_lines: Option<u64>,
}

impl StatsDocument {
    /// The document of `summary`, with `run` when known.
    pub fn new(s: &Summary, run: Option<RunRecord>) -> StatsDocument {
        let states = State::ALL
            .iter()
            .map(|&st| (st.as_str().to_string(), s.stats.state_count(st)))
            .collect();
        let reasons = Reason::ALL
            .iter()
            .filter(|r| s.stats.reasons[r.index()] > 0)
            .map(|r| (format!("{}/{}", r.state(), r), s.stats.reasons[r.index()]))
            .collect();
        let local_errors = LocalError::ALL
            .iter()
            .map(|e| (e.as_str().to_string(), s.stats.local_errors[e.index()]))
            .collect();
        let latency_us = s
            .latencies()
            .map(|(r, p)| (format!("{}/{}", r.state(), r), p))
            .collect();
        StatsDocument {
            fastport_stats: STATS_VERSION,
            engine: EngineKind::of(s.engine),
            threads: s.threads,
            concurrency: s.concurrency,
            hosts: s.hosts,
            ports_per_host: s.ports_per_host,
            planned: s.planned,
            results: s.stats.results(),
            attempts: s.stats.attempts,
            probes_per_port: s.stats.probes_per_port(),
            timing: s.stats.timing,
            interrupted: s.interrupted,
            elapsed_s: s.elapsed.as_secs_f64(),
            probes_per_s: s.probes_per_sec(),
            states,
            reasons,
            local_error_retries: s.stats.local_error_total(),
            local_errors,
            latency_us,
            seed: s.seed,
            order: OrderKind::of(s.order),
            shard: s.shard.to_string(),
            histograms: histograms(&s.stats),
            run,
            merged_shards: None,
            missing_shards: None,
            series: (!s.stats.series.is_empty()).then(|| s.stats.series.to_doc()),
        }
    }

    /// The summary this document was written from (counts, histograms and
    /// timing exactly; rates are recomputed). The error says which field
    /// is wrong.
    pub fn to_summary(&self) -> Result<Summary, String> {
        if self.fastport_stats != STATS_VERSION {
            return Err(format!(
                "format version {} (this FastPort reads {STATS_VERSION})",
                self.fastport_stats
            ));
        }
        let mut stats = Stats::new();
        stats.attempts = self.attempts;
        stats.timing = self.timing;
        for (name, &count) in &self.reasons {
            let reason = reason_named(name).ok_or_else(|| format!("unknown reason \"{name}\""))?;
            stats.reasons[reason.index()] = count;
        }
        for e in LocalError::ALL {
            stats.local_errors[e.index()] = self.local_errors.get(e.as_str()).copied().unwrap_or(0);
        }
        for (name, encoded) in &self.histograms {
            let reason =
                reason_named(name).ok_or_else(|| format!("unknown histogram \"{name}\""))?;
            let h = histogram_from_base64(encoded)
                .ok_or_else(|| format!("histogram \"{name}\" does not decode"))?;
            stats.latency[reason.index()]
                .add(&h)
                .map_err(|_| format!("histogram \"{name}\" is out of range"))?;
        }
        if stats.results() != self.results {
            return Err(format!(
                "its reasons add up to {} results, not the {} it says",
                stats.results(),
                self.results
            ));
        }
        let shard = Shard::parse(&self.shard).map_err(|e| e.to_string())?;
        if !(self.elapsed_s.is_finite() && self.elapsed_s >= 0.0) {
            return Err(format!("elapsed_s {} is not a duration", self.elapsed_s));
        }
        Ok(Summary {
            stats,
            elapsed: Duration::from_secs_f64(self.elapsed_s),
            hosts: self.hosts,
            ports_per_host: self.ports_per_host,
            planned: self.planned,
            interrupted: self.interrupted,
            engine: self.engine.as_str(),
            threads: self.threads,
            concurrency: self.concurrency,
            seed: self.seed,
            order: self.order.as_str(),
            shard,
        })
    }
}

/// `open/syn-ack` to its reason; the state must be the reason's.
fn reason_named(name: &str) -> Option<Reason> {
    let (state, reason) = name.split_once('/')?;
    let reason = Reason::from_str_name(reason)?;
    (reason.state().as_str() == state).then_some(reason)
}

/// Each non-empty latency histogram, HdrHistogram's V2 serialisation in
/// base64, by `state/reason`: shards' histograms then add exactly
/// (`fastport merge`).
fn histograms(stats: &Stats) -> BTreeMap<String, String> {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut out = BTreeMap::new();
    let mut serializer = V2Serializer::new();
    let mut buf = Vec::new();
    for r in Reason::ALL {
        let h = &stats.latency[r.index()];
        if h.is_empty() {
            continue;
        }
        buf.clear();
        // Writing to a Vec fails only for a histogram V2 cannot encode
        // (none of ours): leave that one out rather than fail the summary.
        if serializer.serialize(h, &mut buf).is_ok() {
            let text = base64::engine::general_purpose::STANDARD.encode(&buf);
            out.insert(format!("{}/{}", r.state(), r), text);
        }
    }
    out
}

/// Reads back a histogram written by [`Summary::to_json`].
pub fn histogram_from_base64(text: &str) -> Option<Histogram<u64>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for us in 1..=100 {
            a.record(Reason::ConnRefused, Some(us));
        }
        b.record(Reason::SynAck, Some(500));
        b.record(Reason::NoResponse, None);
        b.record_local_error(LocalError::Emfile);
        b.attempts = 3;
        a.merge(&b);
        assert_eq!(a.results(), 102);
        assert_eq!(a.state_count(State::Closed), 100);
        assert_eq!(a.state_count(State::Open), 1);
        assert_eq!(a.state_count(State::Filtered), 1);
        assert_eq!(a.local_error_total(), 1);
        assert_eq!(a.attempts, 3);
        let p = Percentiles::of(&a.latency[Reason::ConnRefused.index()]);
        assert_eq!((p.count, p.p50, p.max), (100, 50, 100));
        assert!(a.latency[Reason::NoResponse.index()].is_empty());
    }

    /// Two workers probing the same hosts each find them limiting their
    /// RSTs: the merge counts each host once.
    #[test]
    fn a_host_found_limiting_by_two_workers_counts_once() {
        let worker = |hosts: &[u64]| {
            let mut s = Stats::new();
            s.rst_limited = hosts.to_vec();
            s.timing.rst_limited_hosts = hosts.len() as u64;
            s
        };
        let mut a = worker(&[1, 4, 9]);
        a.merge(&worker(&[4, 7, 9]));
        assert_eq!(a.rst_limited, [1, 4, 7, 9]);
        assert_eq!(a.timing.rst_limited_hosts, 4);
        let mut shards = worker(&[]);
        shards.timing.rst_limited_hosts = 3;
        shards.merge(&worker(&[]));
        assert_eq!(shards.timing.rst_limited_hosts, 3, "no list: the counts");
    }

    #[test]
    fn stats_json_has_every_state_and_only_seen_reasons() {
        let mut stats = Stats::new();
        stats.record(Reason::SynAck, Some(53));
        let summary = Summary {
            stats,
            elapsed: Duration::from_millis(500),
            hosts: 1,
            ports_per_host: 1,
            planned: 1,
            interrupted: false,
            engine: "mio",
            threads: 1,
            concurrency: 1,
            seed: 7,
            order: "random",
            shard: Shard::new(2, 3).unwrap(),
        };
        let j = summary.to_json();
        assert_eq!(j["seed"], 7);
        assert_eq!(j["order"], "random");
        assert_eq!(j["shard"], "2/3");
        let h = histogram_from_base64(j["histograms"]["open/syn-ack"].as_str().unwrap()).unwrap();
        assert_eq!((h.len(), h.max()), (1, 53));
        assert!(j["histograms"].get("closed/conn-refused").is_none());
        assert_eq!(j["states"]["open"], 1);
        assert_eq!(j["states"]["closed"], 0);
        assert_eq!(j["reasons"]["open/syn-ack"], 1);
        assert!(j["reasons"].get("closed/conn-refused").is_none());
        assert_eq!(j["latency_us"]["open/syn-ack"]["p50"], 53);
        assert_eq!(j["probes_per_s"], 2.0);
    }
}
