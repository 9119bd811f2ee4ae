//! Records of scanner runs (one JSON line each with `--json`) and the tables
//! and CSV humans and plots read.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::measure::Measurement;
use crate::score::Score;

/// One run of a scanner: what it cost and how it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Wall time, spawn to reap.
    pub wall_s: f64,
    /// User CPU.
    pub user_s: f64,
    /// System CPU.
    pub sys_s: f64,
    /// Peak RSS, KiB.
    pub max_rss_kib: u64,
    /// Voluntary context switches.
    pub nvcsw: u64,
    /// Involuntary context switches.
    pub nivcsw: u64,
    /// `exit code N` or `killed by signal N`.
    pub exit: String,
    /// The score was exact.
    pub exact: bool,
    /// Open-port precision.
    pub precision: f64,
    /// Open-port recall.
    pub recall: f64,
    /// For a netsim world: what the simulator injected during this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netsim: Option<NetsimRun>,
}

/// What netsim injected during one run: the parts of its
/// [`fastport_netsim::Record`] a report needs. (The record's own
/// `syns_per_target` map has integer keys, which JSON spells as strings and
/// serde cannot read back inside [`Record`]'s tagged enum: here it is a list.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetsimRun {
    /// How long the simulator ran, milliseconds.
    pub elapsed_ms: u64,
    /// Packet counts.
    pub counters: fastport_netsim::Counters,
    /// (SYNs, how many targets saw that many), ascending.
    pub syns_per_target: Vec<(u32, u64)>,
    /// The latency applied to the answers, per kind (`syn-ack`, `rst`,
    /// `icmp-host-unreach`, `icmp-admin-prohibited`) and `all`.
    pub latency_us: std::collections::BTreeMap<String, fastport_netsim::Summary>,
    /// How much later than intended the answers left.
    pub lateness_us: fastport_netsim::Summary,
    /// What a scanner knowing the network could have done in this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle: Option<fastport_netsim::OracleReport>,
}

impl From<&fastport_netsim::Record> for NetsimRun {
    fn from(r: &fastport_netsim::Record) -> NetsimRun {
        NetsimRun {
            elapsed_ms: r.elapsed_ms,
            counters: r.counters,
            syns_per_target: r.syns_per_target.iter().map(|(k, v)| (*k, *v)).collect(),
            latency_us: r.latency_us.clone(),
            lateness_us: r.lateness_us,
            oracle: r.oracle.clone(),
        }
    }
}

impl RunRecord {
    /// Combines a measurement with its score.
    pub fn new(m: &Measurement, score: &Score) -> RunRecord {
        RunRecord {
            wall_s: m.wall.as_secs_f64(),
            user_s: m.usage.user.as_secs_f64(),
            sys_s: m.usage.system.as_secs_f64(),
            max_rss_kib: m.usage.max_rss_kib,
            nvcsw: m.usage.nvcsw,
            nivcsw: m.usage.nivcsw,
            exit: m.status.to_string(),
            exact: score.exact,
            precision: score.precision,
            recall: score.recall,
            netsim: None,
        }
    }

    /// User + system CPU.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// A scanner's runs against one world, summarised by medians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scanner name.
    pub scanner: String,
    /// Scenario name.
    pub scenario: String,
    /// Scenario scale.
    pub scale: String,
    /// World seed.
    pub seed: u64,
    /// Probes in the scan (hosts × ports).
    pub probes: u64,
    /// The first run's command line.
    pub command: Vec<String>,
    /// Median wall time, seconds.
    pub wall_s: f64,
    /// probes / median wall.
    pub probes_per_s: f64,
    /// Median user + system CPU, seconds.
    pub cpu_s: f64,
    /// Median user CPU.
    pub user_s: f64,
    /// Median system CPU.
    pub sys_s: f64,
    /// Median peak RSS, KiB.
    pub max_rss_kib: u64,
    /// Median voluntary context switches.
    pub nvcsw: u64,
    /// Median involuntary context switches.
    pub nivcsw: u64,
    /// Every run scored exact.
    pub exact_all: bool,
    /// The score of the median-wall run.
    pub score: Score,
    /// Every run.
    pub runs: Vec<RunRecord>,
}

fn median_by<T: Copy>(v: &[T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
    let mut s = v.to_vec();
    s.sort_by(cmp);
    s[(s.len() - 1) / 2]
}

fn median_f(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    median_by(&v, |a, b| a.total_cmp(b))
}

fn median_u(v: impl Iterator<Item = u64>) -> u64 {
    let v: Vec<u64> = v.collect();
    median_by(&v, Ord::cmp)
}

impl Report {
    /// Summarises runs (at least one) with their scores.
    pub fn from_runs(
        scanner: &str,
        world: (&str, &str, u64, u64),
        command: Vec<String>,
        runs: Vec<(RunRecord, Score)>,
    ) -> Report {
        let (scenario, scale, seed, probes) = world;
        assert!(!runs.is_empty(), "a report needs at least one run");
        let walls: Vec<f64> = runs.iter().map(|(r, _)| r.wall_s).collect();
        let wall_s = median_f(walls.iter().copied());
        let median_run = walls
            .iter()
            .position(|w| *w == wall_s)
            .expect("the median is one of the runs");
        let records: Vec<RunRecord> = runs.iter().map(|(r, _)| r.clone()).collect();
        Report {
            scanner: scanner.to_string(),
            scenario: scenario.to_string(),
            scale: scale.to_string(),
            seed,
            probes,
            command,
            wall_s,
            probes_per_s: if wall_s > 0.0 {
                probes as f64 / wall_s
            } else {
                0.0
            },
            cpu_s: median_f(records.iter().map(RunRecord::cpu_s)),
            user_s: median_f(records.iter().map(|r| r.user_s)),
            sys_s: median_f(records.iter().map(|r| r.sys_s)),
            max_rss_kib: median_u(records.iter().map(|r| r.max_rss_kib)),
            nvcsw: median_u(records.iter().map(|r| r.nvcsw)),
            nivcsw: median_u(records.iter().map(|r| r.nivcsw)),
            exact_all: records.iter().all(|r| r.exact),
            score: runs[median_run].1.clone(),
            runs: records,
        }
    }

    /// A panic message listing what was wrong, unless every run was exact.
    pub fn assert_exact(&self) {
        assert!(
            self.exact_all,
            "{} on {} (scale {}, seed {}) is not exact:\n{}\ncommand: {}",
            self.scanner,
            self.scenario,
            self.scale,
            self.seed,
            self.score.describe(),
            self.command.join(" ")
        );
    }
}

/// What `fastport-lab run --json` prints, one per scanner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Record {
    /// The scanner ran and was scored.
    Scored(Box<Report>),
    /// The scanner (or the whole lab) could not run here; not a failure.
    Skipped {
        /// Scanner name.
        scanner: String,
        /// Scenario name.
        scenario: String,
        /// Why.
        reason: String,
    },
    /// The scanner failed (crashed, timed out, unparsable output).
    Failed {
        /// Scanner name.
        scanner: String,
        /// Scenario name.
        scenario: String,
        /// What happened.
        error: String,
    },
}

impl Record {
    /// The scanner's name.
    pub fn scanner(&self) -> &str {
        match self {
            Record::Scored(r) => &r.scanner,
            Record::Skipped { scanner, .. } | Record::Failed { scanner, .. } => scanner,
        }
    }

    /// The scenario's name.
    pub fn scenario(&self) -> &str {
        match self {
            Record::Scored(r) => &r.scenario,
            Record::Skipped { scenario, .. } | Record::Failed { scenario, .. } => scenario,
        }
    }
}

/// One row of the bench table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Scanner.
    pub scanner: String,
    /// Scenario.
    pub scenario: String,
    /// `scored`, `skipped` or `failed`.
    pub status: String,
    /// Median wall, seconds.
    pub wall_s: Option<f64>,
    /// Probes per second.
    pub probes_per_s: Option<f64>,
    /// Speed relative to the floor (probes/s ÷ floor's probes/s; 1 = at the floor).
    pub vs_floor: Option<f64>,
    /// Speed relative to nmap (probes/s ÷ nmap's probes/s).
    pub vs_nmap: Option<f64>,
    /// Median CPU seconds.
    pub cpu_s: Option<f64>,
    /// Median peak RSS, KiB.
    pub max_rss_kib: Option<u64>,
    /// Open-port precision.
    pub precision: Option<f64>,
    /// Open-port recall.
    pub recall: Option<f64>,
    /// Every run exact.
    pub exact: Option<bool>,
    /// Why it was skipped or failed.
    pub note: String,
}

/// Turns records into bench rows, computing ratios within each scenario.
pub fn bench_rows(records: &[Record]) -> Vec<BenchRow> {
    let speed_of = |scenario: &str, scanner: &str| {
        records.iter().find_map(|r| match r {
            Record::Scored(rep) if rep.scenario == scenario && rep.scanner == scanner => {
                Some(rep.probes_per_s)
            }
            _ => None,
        })
    };
    records
        .iter()
        .map(|r| match r {
            Record::Scored(rep) => {
                let ratio =
                    |base: Option<f64>| base.filter(|b| *b > 0.0).map(|b| rep.probes_per_s / b);
                BenchRow {
                    scanner: rep.scanner.clone(),
                    scenario: rep.scenario.clone(),
                    status: "scored".into(),
                    wall_s: Some(rep.wall_s),
                    probes_per_s: Some(rep.probes_per_s),
                    vs_floor: ratio(speed_of(&rep.scenario, "floor")),
                    vs_nmap: ratio(speed_of(&rep.scenario, "nmap")),
                    cpu_s: Some(rep.cpu_s),
                    max_rss_kib: Some(rep.max_rss_kib),
                    precision: Some(rep.score.precision),
                    recall: Some(rep.score.recall),
                    exact: Some(rep.exact_all),
                    note: String::new(),
                }
            }
            Record::Skipped {
                scanner,
                scenario,
                reason,
            } => empty_row(scanner, scenario, "skipped", reason),
            Record::Failed {
                scanner,
                scenario,
                error,
            } => empty_row(scanner, scenario, "failed", error),
        })
        .collect()
}

fn empty_row(scanner: &str, scenario: &str, status: &str, note: &str) -> BenchRow {
    BenchRow {
        scanner: scanner.into(),
        scenario: scenario.into(),
        status: status.into(),
        wall_s: None,
        probes_per_s: None,
        vs_floor: None,
        vs_nmap: None,
        cpu_s: None,
        max_rss_kib: None,
        precision: None,
        recall: None,
        exact: None,
        note: note.into(),
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The bench table for a terminal.
pub fn bench_table(rows: &[BenchRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<15} {:>9} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}  exact",
        "scanner",
        "scenario",
        "wall s",
        "probes/s",
        "÷floor",
        "÷nmap",
        "cpu s",
        "rss MiB",
        "precision",
        "recall"
    );
    for r in rows {
        if r.status != "scored" {
            let _ = writeln!(
                s,
                "{:<18} {:<15} {}: {}",
                r.scanner, r.scenario, r.status, r.note
            );
            continue;
        }
        let _ = writeln!(
            s,
            "{:<18} {:<15} {:>9} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7}  {}",
            r.scanner,
            r.scenario,
            opt(r.wall_s, |v| format!("{v:.3}")),
            opt(r.probes_per_s, |v| format!("{v:.0}")),
            opt(r.vs_floor, |v| format!("{v:.2}")),
            opt(r.vs_nmap, |v| format!("{v:.2}")),
            opt(r.cpu_s, |v| format!("{v:.3}")),
            opt(r.max_rss_kib, |v| format!("{:.1}", v as f64 / 1024.0)),
            opt(r.precision, |v| format!("{v:.4}")),
            opt(r.recall, |v| format!("{v:.4}")),
            opt(r.exact, |v| if v { "yes".into() } else { "NO".into() }),
        );
    }
    s
}

/// The bench rows as CSV (header included).
pub fn bench_csv(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "scanner,scenario,status,wall_s,probes_per_s,vs_floor,vs_nmap,cpu_s,max_rss_kib,precision,recall,exact,note\n",
    );
    let o = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        let note = r.note.replace('"', "'");
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            r.scanner,
            r.scenario,
            r.status,
            o(r.wall_s.map(|v| format!("{v:.6}"))),
            o(r.probes_per_s.map(|v| format!("{v:.1}"))),
            o(r.vs_floor.map(|v| format!("{v:.4}"))),
            o(r.vs_nmap.map(|v| format!("{v:.4}"))),
            o(r.cpu_s.map(|v| format!("{v:.6}"))),
            o(r.max_rss_kib.map(|v| v.to_string())),
            o(r.precision.map(|v| format!("{v:.6}"))),
            o(r.recall.map(|v| format!("{v:.6}"))),
            o(r.exact.map(|v| v.to_string())),
            note
        );
    }
    s
}

/// An argument cut to a readable length (RustScan's expanded port lists).
fn shorten(arg: &str) -> String {
    const MAX: usize = 80;
    if arg.len() <= MAX {
        return arg.to_string();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| arg.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}...({} chars)", &arg[..cut], arg.len())
}

/// A `run` summary for a terminal: one block per record.
pub fn run_summary(records: &[Record]) -> String {
    let mut s = String::new();
    for r in records {
        match r {
            Record::Scored(rep) => {
                let _ = writeln!(
                    s,
                    "{} on {} (scale {}, seed {}): {} probes, median of {}: wall {:.3} s, {:.0} probes/s, cpu {:.3} s (user {:.3}, sys {:.3}), peak RSS {:.1} MiB, ctx switches {} vol / {} invol",
                    rep.scanner,
                    rep.scenario,
                    rep.scale,
                    rep.seed,
                    rep.probes,
                    rep.runs.len(),
                    rep.wall_s,
                    rep.probes_per_s,
                    rep.cpu_s,
                    rep.user_s,
                    rep.sys_s,
                    rep.max_rss_kib as f64 / 1024.0,
                    rep.nvcsw,
                    rep.nivcsw
                );
                let shown: Vec<String> = rep.command.iter().map(|a| shorten(a)).collect();
                let _ = writeln!(s, "  command: {}", shown.join(" "));
                for line in rep.score.describe().lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
            Record::Skipped {
                scanner,
                scenario,
                reason,
            } => {
                let _ = writeln!(s, "{scanner} on {scenario}: skipped: {reason}");
            }
            Record::Failed {
                scanner,
                scenario,
                error,
            } => {
                let _ = writeln!(s, "{scanner} on {scenario}: FAILED: {error}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{FULL, Scenario};
    use crate::score::{Coverage, score};
    use crate::world::World;

    /// The bench reads a netsim run's counts back from `fastport-lab run --json`.
    #[test]
    fn a_scored_record_keeps_its_netsim_run_through_json() {
        let s = Scenario::parse(
            r#"name = "t"
               hosts = ["127.0.0.1"]
               ports = "80""#,
            FULL,
            "t",
        )
        .unwrap();
        let w = World::build(&s, 0).unwrap();
        let sc = score(&w.truth, &[], Coverage::All);
        let netsim = NetsimRun {
            elapsed_ms: 1200,
            counters: fastport_netsim::Counters {
                syns: 12,
                ..Default::default()
            },
            syns_per_target: vec![(1, 10), (2, 1)],
            latency_us: [("rst".to_string(), fastport_netsim::Summary::default())].into(),
            lateness_us: fastport_netsim::Summary::default(),
            oracle: None,
        };
        let run = RunRecord {
            wall_s: 1.0,
            user_s: 0.1,
            sys_s: 0.2,
            max_rss_kib: 1,
            nvcsw: 0,
            nivcsw: 0,
            exit: "exit code 0".into(),
            exact: false,
            precision: 1.0,
            recall: 1.0,
            netsim: Some(netsim.clone()),
        };
        let rep = Report::from_runs("fastport", ("t", FULL, 0, 1), vec![], vec![(run, sc)]);
        let text = serde_json::to_string(&Record::Scored(Box::new(rep))).unwrap();
        let Record::Scored(back) = serde_json::from_str::<Record>(&text).unwrap() else {
            panic!("not scored: {text}");
        };
        assert_eq!(back.runs[0].netsim.as_ref(), Some(&netsim));
    }
}
