//! What a scanner that knew the network could have done: the yardstick
//! FastPort's wall time and accuracy are measured against.
//!
//! netsim knows every host's latency and every loss it draws, so for a run
//! it can say how long an ideal connect scanner would have needed, given
//! the launch rate this machine sustained in that run:
//!
//! - each probe waits exactly its round trip ([`Model::latency`] of that
//!   SYN), no timeout margin;
//! - a probe whose SYN or answer is lost is retried right after that round
//!   trip, up to `tries` SYNs in all;
//! - launches happen at the sustained rate, longest chains first (the best
//!   order: with one launch slot every 1/rate s, starting the longest job
//!   first minimises the last finish).
//!
//! Two bounds come out. The *informed* one knows which silences are losses,
//! so a filtered port costs one SYN and one round trip. The *blind* one
//! knows the latencies but not the losses, as a real scanner: every silent
//! try waits its round trip and is retried, so a filtered port costs
//! `tries` SYNs and `tries` round trips. Both ignore that retries take
//! launch slots of their own beyond the first term `syns / rate`, so they
//! are lower bounds. Hazards (rate limits, middleboxes) are not in them.
//!
//! The accuracy side: a target whose answer is lost on all of its first
//! `k` SYNs is missed (reported filtered) by any scanner that sends `k`.
//! [`OracleReport::accuracy`] counts them exactly for this seed and gives the
//! one-SYN loss model's expectation, `1 − a·q^k` with `a` the share of
//! targets that answer and `q = 1 − (1 − syn)(1 − reply)`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// The oracle's verdict on one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleReport {
    /// SYNs per target the bounds allow.
    pub tries: u32,
    /// Targets (configured hosts × ports).
    pub targets: u64,
    /// The launch rate used, SYNs per second: the most SYNs the simulator
    /// received in any one-second window of the run.
    pub launch_rate: f64,
    /// Knowing every loss: milliseconds.
    pub lower_bound_ms: f64,
    /// SYNs the informed scanner sends.
    pub informed_syns: u64,
    /// Knowing latencies but not losses: milliseconds.
    pub blind_lower_bound_ms: f64,
    /// SYNs the blind scanner sends.
    pub blind_syns: u64,
    /// Accuracy at 1 ..= `tries` SYNs per target.
    pub accuracy: Vec<Accuracy>,
}

/// How many targets `tries` SYNs each get right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// SYNs per target.
    pub tries: u32,
    /// Targets whose every answer was lost in this seed's draws.
    pub missed: u64,
    /// `1 − missed / targets`.
    pub exact: f64,
    /// The one-SYN loss model's expectation, `1 − a·q^k`.
    pub model: f64,
}

/// Computes [`OracleReport`]s for a [`Model`].
#[derive(Debug, Clone)]
pub struct Oracle<'a> {
    model: &'a Model,
}

/// One target's chain: how long it keeps the ideal scanner busy and how
/// many SYNs it takes, informed and blind.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Chain {
    informed: Duration,
    informed_syns: u32,
    blind: Duration,
    blind_syns: u32,
    /// The first SYN (from 1) whose answer arrives, if any of `tries` does.
    answered_at: Option<u32>,
}

impl<'a> Oracle<'a> {
    /// The oracle of `model`.
    pub fn new(model: &'a Model) -> Oracle<'a> {
        Oracle { model }
    }

    fn chain(&self, addr: std::net::Ipv4Addr, port: u16, tries: u32) -> Chain {
        let m = self.model;
        let answers = m.state(addr, port).reply().is_some();
        let mut waited = Duration::ZERO;
        for n in 0..tries {
            let rtt = m.latency(addr, port, n);
            waited += rtt;
            if !answers {
                // Filtered: the informed scanner waits one round trip; the
                // blind one cannot tell silence from loss.
                let first = m.latency(addr, port, 0);
                let blind = (0..tries).map(|i| m.latency(addr, port, i)).sum();
                return Chain {
                    informed: first,
                    informed_syns: 1,
                    blind,
                    blind_syns: tries,
                    answered_at: None,
                };
            }
            if !m.syn_lost(addr, port, n) && !m.reply_lost(addr, port, n) {
                return Chain {
                    informed: waited,
                    informed_syns: n + 1,
                    blind: waited,
                    blind_syns: n + 1,
                    answered_at: Some(n + 1),
                };
            }
        }
        Chain {
            informed: waited,
            informed_syns: tries,
            blind: waited,
            blind_syns: tries,
            answered_at: None,
        }
    }

    /// The report for a run that sustained `launch_rate` SYNs per second,
    /// at `tries` SYNs per target (at least 1).
    pub fn report(&self, tries: u32, launch_rate: f64) -> OracleReport {
        let tries = tries.max(1);
        let m = self.model;
        let ports = m.config().ports.as_slice();
        // Microseconds in a u32 (71 minutes; latencies are capped at 60 s
        // a try): 8 bytes a target, 52 MB for a /16 × 100 ports.
        let mut informed: Vec<u32> = Vec::new();
        let mut blind: Vec<u32> = Vec::new();
        let (mut informed_syns, mut blind_syns) = (0u64, 0u64);
        let mut missed = vec![0u64; tries as usize];
        let mut targets = 0u64;
        for addr in m.config().hosts.iter() {
            for &port in ports {
                targets += 1;
                let c = self.chain(addr, port, tries);
                informed.push(micros32(c.informed));
                blind.push(micros32(c.blind));
                informed_syns += u64::from(c.informed_syns);
                blind_syns += u64::from(c.blind_syns);
                if m.state(addr, port).reply().is_some() {
                    // Missed at k tries when the first answer needs more than k.
                    let first = c.answered_at.unwrap_or(u32::MAX);
                    for (k, miss) in (1..=tries).zip(missed.iter_mut()) {
                        if first > k {
                            *miss += 1;
                        }
                    }
                }
            }
        }
        let accuracy = (1..=tries)
            .zip(&missed)
            .map(|(k, &missed)| Accuracy {
                tries: k,
                missed,
                exact: 1.0 - missed as f64 / targets.max(1) as f64,
                model: self.model_accuracy(k),
            })
            .collect();
        OracleReport {
            tries,
            targets,
            launch_rate,
            lower_bound_ms: makespan(&mut informed, informed_syns, launch_rate),
            informed_syns,
            blind_lower_bound_ms: makespan(&mut blind, blind_syns, launch_rate),
            blind_syns,
            accuracy,
        }
    }

    /// The fewest SYNs per target that miss an answering port less than
    /// once in `1/miss` under the one-SYN loss model: the smallest k with
    /// `q^k ≤ miss` (FastPort's adaptive retries aim at 10⁻⁴).
    pub fn tries_for(&self, miss: f64) -> u32 {
        let c = self.model.config();
        let q = 1.0 - (1.0 - c.loss.syn) * (1.0 - c.loss.reply);
        (1..=64).find(|&k| q.powi(k as i32) <= miss).unwrap_or(64)
    }

    /// The slowest round trip of any configured host (its base plus the
    /// whole jitter band).
    pub fn slowest_rtt(&self) -> Duration {
        let m = self.model;
        let jitter = Duration::from_secs_f64(m.config().jitter_ms / 1000.0);
        m.config()
            .hosts
            .iter()
            .map(|a| m.host_latency(a))
            .max()
            .unwrap_or_default()
            + jitter
    }

    /// How long the last 10 % of a scan may take, by the model: the blind
    /// scanner's chain for the slowest host (`tries` round trips), doubled
    /// for a real scanner's timeout margin (an adaptive timeout is up to
    /// 1.5 round trips, and the kernel retransmits a SYN only on whole
    /// seconds), plus one second of the kernel's initial RTO. A scan's tail
    /// beyond this is the scanner's doing, not the network's.
    pub fn tail_bound(&self, tries: u32) -> Duration {
        self.slowest_rtt() * tries * 2 + Duration::from_secs(1)
    }

    /// The one-SYN loss model's accuracy at `k` SYNs per target.
    pub fn model_accuracy(&self, k: u32) -> f64 {
        let c = self.model.config();
        let answering = 1.0 - c.fractions.filtered;
        let q = 1.0 - (1.0 - c.loss.syn) * (1.0 - c.loss.reply);
        1.0 - answering * q.powi(i32::try_from(k).unwrap_or(i32::MAX))
    }
}

/// The last finish, in milliseconds, of jobs launched one every `1/rate`
/// seconds, longest first, and never sooner than `syns / rate`.
fn makespan(chains_us: &mut [u32], syns: u64, rate: f64) -> f64 {
    chains_us.sort_unstable_by(|a, b| b.cmp(a));
    let slot = if rate > 0.0 { 1.0 / rate } else { 0.0 };
    let last = chains_us
        .iter()
        .enumerate()
        .map(|(j, &c)| j as f64 * slot + f64::from(c) / 1e6)
        .fold(0.0, f64::max);
    last.max(syns as f64 * slot) * 1000.0
}

fn micros32(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The most events in any window of `window` buckets of a per-bucket count.
pub(crate) fn busiest(buckets: &[u32], window: usize) -> u64 {
    let mut sum: u64 = 0;
    let mut best = 0;
    for (i, &b) in buckets.iter().enumerate() {
        sum += u64::from(b);
        if i >= window {
            sum -= u64::from(buckets[i - window]);
        }
        best = best.max(sum);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Fractions, Latency, Loss, ModelConfig, Preset};

    fn config(loss: f64, filtered: f64) -> ModelConfig {
        let mut c = Preset::Far.config();
        c.hosts = "198.18.0.0/28".parse().unwrap();
        c.ports = "1-10".parse().unwrap();
        c.fractions = Fractions {
            filtered,
            ..Fractions::default()
        };
        c.loss = Loss {
            syn: loss,
            reply: loss,
        };
        c.latency = Latency::Fixed { ms: 100.0 };
        c.jitter_ms = 0.0;
        c
    }

    #[test]
    fn a_lossless_world_takes_one_round_trip_after_the_last_launch() {
        let m = Model::new(config(0.0, 0.0), 1).unwrap();
        // 160 targets at 1000/s: the last launches at 159 ms, answers at 259 ms.
        let r = Oracle::new(&m).report(3, 1000.0);
        assert_eq!(r.targets, 160);
        assert_eq!(r.informed_syns, 160);
        assert!((r.lower_bound_ms - 259.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.lower_bound_ms, r.blind_lower_bound_ms);
        assert!(r.accuracy.iter().all(|a| a.missed == 0 && a.exact == 1.0));
        // A slow launcher is bound by its launches.
        let slow = Oracle::new(&m).report(3, 10.0);
        assert!((slow.lower_bound_ms - 16_000.0).abs() < 1e-6, "{slow:?}");
    }

    #[test]
    fn a_lost_syn_costs_one_round_trip_each_and_filtered_ports_cost_the_blind_scanner_every_try() {
        let m = Model::new(config(0.2, 0.1), 4).unwrap();
        let o = Oracle::new(&m);
        let r = o.report(3, 1e9);
        let ports = m.config().ports.as_slice().to_vec();
        let mut longest = 0u32;
        let mut filtered = false;
        for a in m.config().hosts.iter() {
            for &p in &ports {
                let answers = m.state(a, p).reply().is_some();
                filtered |= !answers;
                let n = (0..3)
                    .position(|i| !m.syn_lost(a, p, i) && !m.reply_lost(a, p, i))
                    .map_or(3, |i| i as u32 + 1);
                longest = longest.max(if answers { n } else { 1 });
            }
        }
        assert!(filtered);
        // At an unbounded rate the bound is the longest chain.
        assert!((r.lower_bound_ms - 100.0 * f64::from(longest)).abs() < 1e-3);
        assert!((r.blind_lower_bound_ms - 300.0).abs() < 1e-3);
        assert!(r.blind_syns > r.informed_syns);
    }

    #[test]
    fn accuracy_counts_the_targets_whose_every_answer_was_lost() {
        let mut c = config(0.3, 0.0);
        c.hosts = "198.18.0.0/22".parse().unwrap();
        let m = Model::new(c, 9).unwrap();
        let r = Oracle::new(&m).report(3, 1e6);
        let missed = |k: u32| {
            m.config()
                .hosts
                .iter()
                .flat_map(|a| (1..=10u16).map(move |p| (a, p)))
                .filter(|&(a, p)| (0..k).all(|i| m.syn_lost(a, p, i) || m.reply_lost(a, p, i)))
                .count() as u64
        };
        for a in &r.accuracy {
            assert_eq!(a.missed, missed(a.tries));
            // 10240 targets, q = 0.51: the seed's count is near the model's.
            assert!((a.exact - a.model).abs() < 0.02, "{a:?}");
        }
        assert!(r.accuracy[0].missed > r.accuracy[2].missed);
        assert!((r.accuracy[1].model - (1.0 - 0.51f64.powi(2))).abs() < 1e-9);
    }

    #[test]
    fn the_tail_bound_follows_the_slowest_host_and_the_tries_the_loss_calls_for() {
        let m = Model::new(config(0.05, 0.0), 1).unwrap();
        let o = Oracle::new(&m);
        // q = 1 − 0.95² = 0.0975: q³ = 9.3e-4, q⁴ = 9.0e-5.
        assert_eq!(o.tries_for(1e-4), 4);
        assert_eq!(o.slowest_rtt(), Duration::from_millis(100));
        assert_eq!(o.tail_bound(4), Duration::from_millis(1800));
        let lossless = Model::new(config(0.0, 0.0), 1).unwrap();
        assert_eq!(Oracle::new(&lossless).tries_for(1e-4), 1);
    }

    #[test]
    fn busiest_finds_the_fullest_window() {
        assert_eq!(busiest(&[1, 5, 5, 1, 9], 2), 10);
        assert_eq!(busiest(&[3], 100), 3);
        assert_eq!(busiest(&[], 100), 0);
    }
}
