//! `fastport merge`: joins the results of shards (`--shard K/N` run on
//! several machines) into one scan's result.
//!
//! Inputs are the shards' JSON-lines files (`-oJ`) and `--stats` summaries,
//! told apart by their content. Result lines are concatenated, and a port
//! reported by two shards is an error (the shards overlapped: different seeds
//! or targets). Summaries are added: counts, attempts, local errors, and the
//! latency histograms, which HdrHistogram serialises losslessly and adds
//! exactly, so the merged percentiles are those of the whole scan. Elapsed
//! time is the longest shard's (shards run side by side).

pub mod formats;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::classify::{LocalError, Reason};
use crate::order::Shard;
use crate::stats::{Stats, Summary, histogram_from_base64};

/// Why the inputs could not be merged; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read \"{}\": {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("\"{}\" line {line}: {why}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        why: String,
    },
    #[error("\"{}\": not a FastPort --stats summary: {why}", path.display())]
    BadStats { path: PathBuf, why: String },
    #[error("{addr} port {port} is reported twice (in \"{}\"): the shards overlap — were they run with the same seed and targets?", path.display())]
    Duplicate {
        addr: IpAddr,
        port: u16,
        path: PathBuf,
    },
    #[error("the summaries do not belong to one scan: {0}")]
    Mismatch(String),
    #[error("nothing to merge: give the shards' -oJ files and/or --stats files")]
    NoInputs,
}

/// One `-oJ` line, as read back.
#[derive(serde::Deserialize)]
struct Line {
    addr: IpAddr,
    port: u16,
}

/// Copies every result line of `inputs` to `out`, checking that no port
/// appears twice. Returns the number of lines.
pub fn merge_results(inputs: &[PathBuf], out: &mut dyn Write) -> Result<u64, MergeError> {
    let mut seen: HashSet<(IpAddr, u16)> = HashSet::new();
    let mut n = 0;
    for path in inputs {
        let file = File::open(path).map_err(|source| MergeError::Read {
            path: path.clone(),
            source,
        })?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| MergeError::Read {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| MergeError::BadLine {
                path: path.clone(),
                line: i as u64 + 1,
                why,
            };
            let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            if !seen.insert((parsed.addr, parsed.port)) {
                return Err(MergeError::Duplicate {
                    addr: parsed.addr,
                    port: parsed.port,
                    path: path.clone(),
                });
            }
            writeln!(out, "{line}").map_err(|source| MergeError::Read {
                path: PathBuf::from("output"),
                source,
            })?;
            n += 1;
        }
    }
    Ok(n)
}

/// The merged summary, and the shards it was made of.
#[derive(Debug)]
pub struct MergedStats {
    pub summary: Summary,
    /// `K/N` of each input, in input order.
    pub shards: Vec<Shard>,
    /// Shards of `1..=N` that no input covers.
    pub missing: Vec<u64>,
}

impl MergedStats {
    /// The `--stats` document of the merged scan, listing its shards.
    pub fn to_json(&self) -> Value {
        let mut v = self.summary.to_json();
        if let Value::Object(map) = &mut v {
            let shards: Vec<String> = self.shards.iter().map(ToString::to_string).collect();
            map.insert("merged_shards".into(), shards.into());
            map.insert("missing_shards".into(), self.missing.clone().into());
        }
        v
    }
}

/// Adds up `--stats` summaries.
pub fn merge_stats(inputs: &[PathBuf]) -> Result<MergedStats, MergeError> {
    let mut merged: Option<Summary> = None;
    let mut shards = Vec::new();
    for path in inputs {
        let (summary, shard) = read_stats(path)?;
        shards.push(shard);
        merged = Some(match merged {
            None => summary,
            Some(mut m) => {
                if m.seed != summary.seed || m.order != summary.order {
                    return Err(MergeError::Mismatch(format!(
                        "\"{}\" has seed {} order {}, others seed {} order {}",
                        path.display(),
                        summary.seed,
                        summary.order,
                        m.seed,
                        m.order
                    )));
                }
                if m.hosts != summary.hosts || m.ports_per_host != summary.ports_per_host {
                    return Err(MergeError::Mismatch(format!(
                        "\"{}\" scanned {} hosts x {} ports, others {} x {}",
                        path.display(),
                        summary.hosts,
                        summary.ports_per_host,
                        m.hosts,
                        m.ports_per_host
                    )));
                }
                m.stats.merge(&summary.stats);
                m.planned += summary.planned;
                m.elapsed = m.elapsed.max(summary.elapsed);
                m.interrupted |= summary.interrupted;
                m.concurrency += summary.concurrency;
                m.threads += summary.threads;
                m
            }
        });
    }
    let mut summary = merged.ok_or(MergeError::NoInputs)?;
    let n = shards.first().map_or(1, Shard::n);
    if shards.iter().any(|s| s.n() != n) {
        return Err(MergeError::Mismatch(
            "the inputs split the scan into different numbers of shards".into(),
        ));
    }
    let mut ks: Vec<u64> = shards.iter().map(Shard::k).collect();
    ks.sort_unstable();
    if let Some(w) = ks.windows(2).find(|w| w[0] == w[1]) {
        return Err(MergeError::Mismatch(format!(
            "shard {}/{n} is given twice",
            w[0]
        )));
    }
    let missing: Vec<u64> = (1..=n).filter(|k| !ks.contains(k)).collect();
    if missing.is_empty() {
        summary.shard = Shard::WHOLE;
    }
    Ok(MergedStats {
        summary,
        shards,
        missing,
    })
}

/// Whether a file holds a `--stats` summary (one JSON object with `states`)
/// rather than result lines.
pub fn is_stats_file(path: &Path) -> Result<bool, MergeError> {
    // A result file can be gigabytes: its first line tells, unread beyond.
    let mut first = String::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_line(&mut first))
        .map_err(|source| MergeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if matches!(serde_json::from_str::<Value>(&first), Ok(v) if v.get("addr").is_some()) {
        return Ok(false);
    }
    let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(matches!(serde_json::from_str::<Value>(&text), Ok(v) if v.get("states").is_some()))
}

fn read_stats(path: &Path) -> Result<(Summary, Shard), MergeError> {
    let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: &str| MergeError::BadStats {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let u = |key: &str| {
        v[key]
            .as_u64()
            .ok_or_else(|| bad(&format!("no number \"{key}\"")))
    };

    let mut stats = Stats::new();
    stats.attempts = u("attempts")?;
    if let Some(reasons) = v["reasons"].as_object() {
        for (name, count) in reasons {
            let reason = name
                .split_once('/')
                .and_then(|(_, r)| Reason::from_str_name(r))
                .ok_or_else(|| bad(&format!("unknown reason \"{name}\"")))?;
            stats.reasons[reason.index()] = count
                .as_u64()
                .ok_or_else(|| bad("reason counts are numbers"))?;
        }
    }
    if let Some(local) = v["local_errors"].as_object() {
        for e in LocalError::ALL {
            stats.local_errors[e.index()] =
                local.get(e.as_str()).and_then(Value::as_u64).unwrap_or(0);
        }
    }
    if let Some(hists) = v["histograms"].as_object() {
        for (name, encoded) in hists {
            let reason = name
                .split_once('/')
                .and_then(|(_, r)| Reason::from_str_name(r))
                .ok_or_else(|| bad(&format!("unknown histogram \"{name}\"")))?;
            let h = encoded
                .as_str()
                .and_then(histogram_from_base64)
                .ok_or_else(|| bad(&format!("histogram \"{name}\" does not decode")))?;
            stats.latency[reason.index()]
                .add(&h)
                .map_err(|_| bad(&format!("histogram \"{name}\" is out of range")))?;
        }
    }
    let shard = match v["shard"].as_str() {
        Some(s) => Shard::parse(s).map_err(|e| bad(&e.to_string()))?,
        None => Shard::WHOLE,
    };
    let order = match v["order"].as_str() {
        Some("sequential") => "sequential",
        _ => "random",
    };
    let engine = match v["engine"].as_str() {
        Some("threads") => "threads",
        _ => "mio",
    };
    let summary = Summary {
        stats,
        elapsed: Duration::from_secs_f64(v["elapsed_s"].as_f64().unwrap_or(0.0).max(0.0)),
        hosts: u("hosts")?,
        ports_per_host: u("ports_per_host")?,
        planned: u("planned")?,
        interrupted: v["interrupted"].as_bool().unwrap_or(false),
        engine,
        threads: u("threads")? as usize,
        concurrency: u("concurrency")? as usize,
        seed: u("seed")?,
        order,
        shard,
    };
    Ok((summary, shard))
}
