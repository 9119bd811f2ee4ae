//! Scoring: what a scanner reported against what the world holds.
//!
//! Open-port precision and recall for every scanner; for scanners that report
//! every port ([`Coverage::All`]) also the full confusion matrix truth ×
//! report, with reasons where the scanner gives them, missing ports, ports
//! outside the scan, and duplicates.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::truth::{Expect, Reason, State, Truth};

/// One (address, port) verdict as a scanner reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// The reported state.
    pub state: State,
    /// The reported reason, when the format carries one.
    pub reason: Option<Reason>,
}

/// Which ports a scanner's output speaks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// Every probed port gets a verdict (FastPort `--show all`, nmap).
    All,
    /// Only open ports are listed (RustScan, the floor); silence means "not open".
    OpenOnly,
}

/// One cell of the confusion matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The truth, `state/reason`.
    pub truth: String,
    /// The report: `state/reason`, `state` (no reason given), `missing`
    /// (a full-coverage scanner said nothing) or `not-reported` (open-only
    /// scanner, port not open).
    pub reported: String,
    /// How many probes.
    pub count: u64,
}

/// One probe reported wrongly, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// `addr:port`.
    pub target: String,
    /// The truth.
    pub truth: String,
    /// What was reported.
    pub reported: String,
}

/// How many mismatches a score keeps as examples.
pub const MISMATCH_EXAMPLES: usize = 20;

/// The score of one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// What the scanner's output covers.
    pub coverage: Coverage,
    /// Probes in the scan.
    pub probes: u64,
    /// Reports parsed (duplicates and strays included).
    pub reported: u64,
    /// Open (address, port)s in the world.
    pub open_truth: u64,
    /// Reported open and open.
    pub true_positives: u64,
    /// Reported open but not open (self-connects, strays...).
    pub false_positives: u64,
    /// Open but not reported open.
    pub false_negatives: u64,
    /// tp / (tp + fp); 1 when nothing was reported open.
    pub precision: f64,
    /// tp / (tp + fn); 1 when nothing is open.
    pub recall: f64,
    /// Extra reports of an (address, port) already reported.
    pub duplicates: u64,
    /// Probes of the scan a full-coverage scanner said nothing about.
    pub missing: u64,
    /// Reports of (address, port)s outside the scan.
    pub outside: u64,
    /// Reports with the wrong state.
    pub wrong_state: u64,
    /// Reports with the right state and the wrong reason.
    pub wrong_reason: u64,
    /// Every probe reported once, with its true state (and reason, where
    /// given); nothing else reported. For open-only scanners: the open set
    /// is exact and nothing is duplicated.
    pub exact: bool,
    /// The confusion matrix, non-zero cells only, sorted.
    pub matrix: Vec<Cell>,
    /// Up to [`MISMATCH_EXAMPLES`] wrong, missing or stray reports.
    pub mismatches: Vec<Mismatch>,
}

fn spell(state: State, reason: Option<&Reason>) -> String {
    match reason {
        Some(r) => format!("{state}/{r}"),
        None => state.to_string(),
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// Scores `observations` against `truth`.
pub fn score(truth: &Truth, observations: &[Observation], coverage: Coverage) -> Score {
    // First report of each (address, port) counts; the rest are duplicates.
    let mut first: HashMap<SocketAddrV4, (usize, u32)> = HashMap::with_capacity(observations.len());
    for (i, o) in observations.iter().enumerate() {
        first
            .entry(SocketAddrV4::new(o.addr, o.port))
            .and_modify(|(_, n)| *n += 1)
            .or_insert((i, 1));
    }
    let duplicates: u64 = first.values().map(|(_, n)| u64::from(n - 1)).sum();

    #[derive(PartialEq, Eq, Hash)]
    enum Said<'a> {
        Reported(State, Option<&'a Reason>),
        Missing,
        NotReported,
    }
    let mut cells: HashMap<(&Expect, Said<'_>), u64> = HashMap::new();
    let mut mismatches = Vec::new();
    let mut note = |sa: SocketAddrV4, truth: &Expect, reported: String| {
        if mismatches.len() < MISMATCH_EXAMPLES {
            mismatches.push(Mismatch {
                target: sa.to_string(),
                truth: truth.to_string(),
                reported,
            });
        }
    };
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    let (mut missing, mut wrong_state, mut wrong_reason, mut open_truth) = (0u64, 0u64, 0u64, 0u64);
    let mut in_scan_reports = 0u64;

    for (sa, expect) in truth.iter() {
        let is_open = expect.state == State::Open;
        open_truth += u64::from(is_open);
        let said = match first.get(&sa) {
            Some(&(i, _)) => {
                in_scan_reports += 1;
                let o = &observations[i];
                let reported_open = o.state == State::Open;
                match (is_open, reported_open) {
                    (true, true) => tp += 1,
                    (false, true) => fp += 1,
                    (true, false) => fneg += 1,
                    (false, false) => {}
                }
                if o.state != expect.state {
                    wrong_state += 1;
                    note(sa, expect, spell(o.state, o.reason.as_ref()));
                } else if !expect.accepts(o.state, o.reason.as_ref()) {
                    wrong_reason += 1;
                    note(sa, expect, spell(o.state, o.reason.as_ref()));
                }
                Said::Reported(o.state, o.reason.as_ref())
            }
            None => {
                if is_open {
                    fneg += 1;
                }
                match coverage {
                    Coverage::All => {
                        missing += 1;
                        note(sa, expect, "missing".into());
                        Said::Missing
                    }
                    Coverage::OpenOnly => {
                        if is_open {
                            note(sa, expect, "not reported".into());
                        }
                        Said::NotReported
                    }
                }
            }
        };
        *cells.entry((expect, said)).or_default() += 1;
    }

    // Reports of (address, port)s outside the scan.
    let outside = first.len() as u64 - in_scan_reports;
    if outside > 0 {
        for (sa, &(i, _)) in &first {
            if !truth.in_scan(*sa.ip(), sa.port()) {
                let o = &observations[i];
                if o.state == State::Open {
                    fp += 1;
                }
                if mismatches.len() < MISMATCH_EXAMPLES {
                    mismatches.push(Mismatch {
                        target: sa.to_string(),
                        truth: "outside the scan".into(),
                        reported: spell(o.state, o.reason.as_ref()),
                    });
                }
            }
        }
    }

    let mut matrix: Vec<Cell> = cells
        .into_iter()
        .map(|((expect, said), count)| Cell {
            truth: expect.to_string(),
            reported: match said {
                Said::Reported(s, r) => spell(s, r),
                Said::Missing => "missing".into(),
                Said::NotReported => "not-reported".into(),
            },
            count,
        })
        .collect();
    matrix.sort_by(|a, b| (&a.truth, &a.reported).cmp(&(&b.truth, &b.reported)));

    let open_exact = fp == 0 && fneg == 0 && duplicates == 0 && outside == 0;
    let exact = match coverage {
        Coverage::OpenOnly => open_exact,
        Coverage::All => open_exact && missing == 0 && wrong_state == 0 && wrong_reason == 0,
    };
    Score {
        coverage,
        probes: truth.probes(),
        reported: observations.len() as u64,
        open_truth,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fneg,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fneg),
        duplicates,
        missing,
        outside,
        wrong_state,
        wrong_reason,
        exact,
        matrix,
        mismatches,
    }
}

impl Score {
    /// A few lines for humans: the verdict, then the matrix.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} probes, {} reports: precision {:.4}, recall {:.4} (tp {}, fp {}, fn {}); missing {}, duplicates {}, outside {}, wrong state {}, wrong reason {}: {}\n",
            self.probes,
            self.reported,
            self.precision,
            self.recall,
            self.true_positives,
            self.false_positives,
            self.false_negatives,
            self.missing,
            self.duplicates,
            self.outside,
            self.wrong_state,
            self.wrong_reason,
            if self.exact { "EXACT" } else { "NOT EXACT" }
        );
        let w = self
            .matrix
            .iter()
            .map(|c| c.truth.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s.push_str(&format!(
            "  {:<w$}  {:<28} {:>9}\n",
            "truth", "reported", "count"
        ));
        for c in &self.matrix {
            s.push_str(&format!(
                "  {:<w$}  {:<28} {:>9}\n",
                c.truth, c.reported, c.count
            ));
        }
        for m in &self.mismatches {
            s.push_str(&format!(
                "  wrong: {} is {}, reported {}\n",
                m.target, m.truth, m.reported
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{AddrRange, PortSet};

    fn truth() -> Truth {
        let mut exceptions = HashMap::new();
        let a = Ipv4Addr::new(127, 0, 0, 1);
        exceptions.insert(SocketAddrV4::new(a, 2), Expect::OPEN);
        exceptions.insert(
            SocketAddrV4::new(a, 3),
            Expect::filtered(Reason::NoResponse),
        );
        Truth {
            hosts: vec![AddrRange::single(a)],
            ports: "1-4".parse::<PortSet>().unwrap(),
            classes: vec![],
            exceptions,
        }
    }

    fn obs(port: u16, state: State, reason: Option<&str>) -> Observation {
        Observation {
            addr: Ipv4Addr::new(127, 0, 0, 1),
            port,
            state,
            reason: reason.map(Reason::from),
        }
    }

    #[test]
    fn a_perfect_full_report_is_exact() {
        let o = vec![
            obs(1, State::Closed, Some("conn-refused")),
            obs(2, State::Open, Some("syn-ack")),
            obs(3, State::Filtered, Some("no-response")),
            obs(4, State::Closed, Some("self-connect")),
        ];
        let s = score(&truth(), &o, Coverage::All);
        assert!(s.exact, "{}", s.describe());
        assert_eq!((s.precision, s.recall), (1.0, 1.0));
        assert_eq!(s.matrix.len(), 4);
    }

    #[test]
    fn wrong_missing_duplicate_and_stray_reports_are_each_counted() {
        let o = vec![
            obs(1, State::Open, Some("syn-ack")),
            obs(2, State::Open, Some("syn-ack")),
            obs(2, State::Open, Some("syn-ack")),
            obs(3, State::Filtered, Some("host-unreach")),
            obs(99, State::Open, None),
        ];
        let s = score(&truth(), &o, Coverage::All);
        assert!(!s.exact);
        assert_eq!(s.true_positives, 1);
        assert_eq!(s.false_positives, 2); // port 1 and the stray port 99
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.missing, 1);
        assert_eq!(s.outside, 1);
        assert_eq!(s.wrong_state, 1);
        assert_eq!(s.wrong_reason, 1);
        assert!((s.precision - 1.0 / 3.0).abs() < 1e-9);
        assert!(
            s.matrix
                .iter()
                .any(|c| c.truth == "closed/conn-refused" && c.reported == "missing")
        );
    }

    #[test]
    fn open_only_scanners_are_judged_on_the_open_set() {
        let s = score(&truth(), &[obs(2, State::Open, None)], Coverage::OpenOnly);
        assert!(s.exact, "{}", s.describe());
        assert_eq!(s.missing, 0);
        let s = score(&truth(), &[], Coverage::OpenOnly);
        assert!(!s.exact);
        assert_eq!((s.false_negatives, s.recall, s.precision), (1, 0.0, 1.0));
    }
}
