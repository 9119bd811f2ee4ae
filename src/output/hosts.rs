//! Gathering results into hosts, for the formats that write one record per
//! host (nmap XML, grepable).
//!
//! Results reach the writer in any order, from several workers. The
//! [`Schedule`] says how many results each host gets in this run (its
//! quota: all of its ports in a whole scan, fewer in a shard or a resumed
//! run), one host block at a time, so [`PendingHosts`] keeps only the hosts
//! that are still *pending*: a count of results still to come, counts per
//! reason, the ports to be shown and a round-trip-time estimate, keyed by
//! host index. A host leaves the table the moment its last result of the
//! run arrives, and the format writes its record then: output appears
//! during a long scan, and memory follows the hosts in progress (about two
//! blocks of the order, see [`crate::order::Blocks`]), not the hosts
//! scanned. An interrupted scan drains what is left with
//! [`PendingHosts::drain_partial`].

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::classify::{Reason, State};
use crate::config::Show;
use crate::order::{Quotas, Schedule};
use crate::probe::ProbeResult;
use crate::stats::Summary;
use crate::timing::rtt::RttEstimator;

use super::dates::unix_secs;

/// Whether a host answered, and the reason given for it (nmap's `<status>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus {
    pub up: bool,
    pub reason: Reason,
}

/// Ports of one state that are not shown, counted (nmap's `<extraports>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub state: State,
    pub count: u64,
    /// Reasons with a non-zero count, in [`Reason::ALL`] order.
    pub reasons: Vec<(Reason, u64)>,
}

/// One host's results so far.
#[derive(Debug, Clone)]
pub struct HostRecord {
    pub host_index: u64,
    pub addr: IpAddr,
    /// Unix seconds of the host's first result.
    pub first_seen: u64,
    /// Results of this run still to come: zero for a complete record.
    pub remaining: u64,
    pub reasons: [u64; Reason::COUNT],
    /// Shown ports; [`PendingHosts`] hands records out sorted by port.
    pub shown: Vec<(u16, Reason)>,
    /// The answered probes' round-trip times, smoothed as TCP smooths them
    /// (nmap reports the pair in `<times srtt rttvar>`).
    pub rtt: RttEstimator,
}

impl HostRecord {
    /// Up when any port answered from the host itself (open, refused,
    /// reset); the reason is the strongest such answer, `syn-ack` first.
    /// Otherwise down, for the reason most of its ports gave.
    pub fn status(&self) -> HostStatus {
        let answered = Reason::ALL
            .into_iter()
            .filter(|r| r.state() != State::Filtered && *r != Reason::SelfConnect)
            .find(|r| self.reasons[r.index()] > 0);
        if let Some(reason) = answered {
            return HostStatus { up: true, reason };
        }
        // max_by_key keeps the last maximum: walk backwards so ties go to
        // the first reason in ALL order.
        let reason = Reason::ALL
            .into_iter()
            .rev()
            .max_by_key(|r| self.reasons[r.index()])
            .unwrap_or(Reason::NoResponse);
        HostStatus { up: false, reason }
    }

    /// Results received for this host.
    pub fn results(&self) -> u64 {
        self.reasons.iter().sum()
    }

    /// `(srtt, rttvar)` in microseconds, or `None` when nothing answered.
    pub fn rtt_us(&self) -> Option<(u64, u64)> {
        (self.rtt.samples() > 0).then(|| {
            (
                self.rtt.srtt().as_micros() as u64,
                self.rtt.rttvar().as_micros() as u64,
            )
        })
    }

    /// The states not shown, each with its count and reasons, most ports
    /// first (ties in state order).
    pub fn ignored(&self, show: Show) -> Vec<Ignored> {
        let mut out: Vec<Ignored> = State::ALL
            .into_iter()
            .filter(|s| !show.contains(*s))
            .map(|state| {
                let reasons: Vec<(Reason, u64)> = Reason::ALL
                    .into_iter()
                    .filter(|r| r.state() == state && self.reasons[r.index()] > 0)
                    .map(|r| (r, self.reasons[r.index()]))
                    .collect();
                Ignored {
                    state,
                    count: reasons.iter().map(|(_, n)| n).sum(),
                    reasons,
                }
            })
            .filter(|i| i.count > 0)
            .collect();
        // Stable: ties keep state order.
        out.sort_by_key(|i| std::cmp::Reverse(i.count));
        out
    }
}

/// The quotas of one host block, while some of its hosts are pending.
#[derive(Debug)]
struct BlockQuotas {
    /// Results each host of the block gets in this run.
    quotas: Quotas,
    /// Hosts with a quota whose record is not handed out yet.
    open: u64,
}

/// The hosts with results still to come, and counts over every host seen.
#[derive(Debug)]
pub struct PendingHosts {
    schedule: Schedule,
    show: Show,
    pending: HashMap<u64, HostRecord>,
    /// Quotas of the blocks with hosts not yet handed out.
    blocks: HashMap<u64, BlockQuotas>,
    /// Hosts with at least one result.
    seen: u64,
    /// Hosts handed out (complete or partial) whose status was up.
    up: u64,
    /// Results taken.
    results: u64,
}

impl PendingHosts {
    /// Hosts of the run `schedule` describes.
    pub fn new(schedule: &Schedule, show: Show) -> PendingHosts {
        PendingHosts {
            schedule: schedule.clone(),
            show,
            pending: HashMap::new(),
            blocks: HashMap::new(),
            seen: 0,
            up: 0,
            results: 0,
        }
    }

    /// This run's quota of `host`: its block's quotas are counted on the
    /// block's first result (one step of the order per probe of the block).
    fn quota(&mut self, host: u64) -> u64 {
        let (block, offset) = self.schedule.blocks().host_in_block(host);
        let schedule = &self.schedule;
        let entry = self.blocks.entry(block).or_insert_with(|| {
            let quotas = schedule.quotas(block);
            let open = quotas.hosts();
            BlockQuotas { quotas, open }
        });
        u64::from(entry.quotas.get(offset))
    }

    /// A host's record was handed out: its block closes with its last host.
    fn close_host(&mut self, host: u64) {
        let (block, _) = self.schedule.blocks().host_in_block(host);
        if let Some(entry) = self.blocks.get_mut(&block) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
                self.blocks.remove(&block);
            }
        }
    }

    /// Takes one result; returns the host's record when this was its last
    /// result of the run. `now` gives Unix seconds, asked only for a host's
    /// first result (its first-seen time).
    pub fn add(
        &mut self,
        r: &ProbeResult,
        shown: bool,
        now: impl FnOnce() -> u64,
    ) -> Option<HostRecord> {
        self.results += 1;
        let host_index = self.schedule.blocks().host(r.index);
        if !self.pending.contains_key(&host_index) {
            // A result the schedule did not plan for (it cannot happen)
            // still gets a record: it completes with this one result.
            let quota = self.quota(host_index).max(1);
            self.seen += 1;
            self.pending.insert(
                host_index,
                HostRecord {
                    host_index,
                    addr: r.target.ip(),
                    first_seen: now(),
                    remaining: quota,
                    reasons: [0; Reason::COUNT],
                    shown: Vec::new(),
                    rtt: RttEstimator::new(),
                },
            );
        }
        let record = self.pending.get_mut(&host_index)?;
        record.remaining = record.remaining.saturating_sub(1);
        record.reasons[r.reason.index()] += 1;
        if shown {
            record.shown.push((r.target.port(), r.reason));
        }
        if let Some(us) = r.rtt_us {
            record.rtt.sample(Duration::from_micros(u64::from(us)));
        }
        if record.remaining > 0 {
            return None;
        }
        let record = self.pending.remove(&host_index)?;
        self.close_host(host_index);
        Some(self.hand_out(record))
    }

    /// Every host still pending (an interrupted scan), by host index.
    pub fn drain_partial(&mut self) -> Vec<HostRecord> {
        let mut records: Vec<HostRecord> = self.pending.drain().map(|(_, r)| r).collect();
        self.blocks.clear();
        records.sort_by_key(|r| r.host_index);
        records.into_iter().map(|r| self.hand_out(r)).collect()
    }

    fn hand_out(&mut self, mut record: HostRecord) -> HostRecord {
        record.shown.sort_unstable_by_key(|(port, _)| *port);
        if record.status().up {
            self.up += 1;
        }
        record
    }

    pub fn show(&self) -> Show {
        self.show
    }

    /// Hosts pending, and blocks whose quotas are kept.
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        (self.pending.len(), self.blocks.len())
    }

    /// `(seen, up)`: hosts with a result, and those handed out up.
    pub fn counts(&self) -> (u64, u64) {
        (self.seen, self.up)
    }

    /// Results taken (the XML footer counts the summary's instead: a
    /// resumed run's counts every part).
    #[cfg(test)]
    pub fn results(&self) -> u64 {
        self.results
    }
}

/// Whether a record gets written: a host that answered, or one with ports
/// to show. Silent hosts with nothing shown are only counted (nmap leaves
/// down hosts out too).
pub fn worth_writing(record: &HostRecord) -> bool {
    record.status().up || !record.shown.is_empty()
}

/// What the per-host formats (nmap XML, grepable) share: a header written
/// on the first result, a record per host as soon as it is complete, and
/// at the end the unfinished hosts and a footer. A format gives the parts;
/// the provided methods run them the same way for both.
pub(super) trait HostDocument {
    /// Writes the header, once.
    fn begin(&mut self) -> io::Result<()>;
    /// Writes one host's record.
    fn write_host(&mut self, record: &HostRecord) -> io::Result<()>;
    /// Writes what follows the last host (run statistics, closing tags).
    fn write_footer(&mut self, summary: &Summary) -> io::Result<()>;
    fn hosts(&mut self) -> &mut PendingHosts;
    fn clock(&self) -> fn() -> SystemTime;
    /// Whether the footer has been written (or is being written).
    fn finished(&mut self) -> &mut bool;

    /// Takes one result; writes its host's record if that completed it.
    fn add_result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        self.begin()?;
        let clock = self.clock();
        if let Some(record) = self.hosts().add(r, shown, || unix_secs(clock())) {
            if worth_writing(&record) {
                self.write_host(&record)?;
            }
        }
        Ok(())
    }

    /// Writes the hosts still pending and the footer, once.
    fn close(&mut self, summary: &Summary) -> io::Result<()> {
        if std::mem::replace(self.finished(), true) {
            return Ok(());
        }
        self.begin()?;
        for record in self.hosts().drain_partial() {
            if worth_writing(&record) {
                self.write_host(&record)?;
            }
        }
        self.write_footer(summary)
    }

    /// Closes after another output failed. If the closing write fails too
    /// (a full disk), the file was cut back to its last whole host and the
    /// unfinished hosts are drained now: try again with only the footer,
    /// which fits where they did not.
    fn abandon_document(&mut self, summary: &Summary) -> io::Result<()> {
        if self.close(summary).is_ok() {
            return Ok(());
        }
        *self.finished() = false;
        self.close(summary)
    }
}

/// `22,80,1000-2000`: a sorted port list, with runs as ranges (nmap's
/// `services` attribute).
pub fn port_ranges(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ports.len() {
        let first = ports[i];
        let mut last = first;
        while i + 1 < ports.len() && ports[i + 1] == last.wrapping_add(1) && last < u16::MAX {
            i += 1;
            last = ports[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}-{last}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::order::{Blocks, Done, Lane, Order, Shard};

    /// Adds `r` as the writer does under `--show open`.
    fn add(t: &mut PendingHosts, r: &ProbeResult, now: impl FnOnce() -> u64) -> Option<HostRecord> {
        t.add(r, Show::OPEN.contains(r.reason.state()), now)
    }

    /// The whole scan of `total` probes, `ports` per host, in index order.
    fn schedule(total: u64, ports: u64, done: Done) -> Schedule {
        Schedule::new(
            Blocks::new(total, ports),
            Order::Sequential,
            Shard::WHOLE,
            done,
        )
    }

    pub fn result(index: u64, target: &str, reason: Reason, rtt_us: Option<u32>) -> ProbeResult {
        ProbeResult {
            index,
            target: target.parse().unwrap(),
            reason,
            rtt_us,
        }
    }

    #[test]
    fn a_host_is_handed_out_when_its_last_probe_reports() {
        // Two hosts x three ports (22, 80, 443), results interleaved and out of order.
        let mut t = PendingHosts::new(&schedule(6, 3, Done::none()), Show::OPEN);
        let a = "10.0.0.1";
        let b = "10.0.0.2";
        assert!(
            add(
                &mut t,
                &result(4, &format!("{b}:80"), Reason::SynAck, Some(90)),
                || 7
            )
            .is_none()
        );
        assert!(
            add(
                &mut t,
                &result(2, &format!("{a}:443"), Reason::ConnRefused, Some(10)),
                || 7
            )
            .is_none()
        );
        assert!(
            add(
                &mut t,
                &result(1, &format!("{a}:80"), Reason::SynAck, Some(20)),
                || 8
            )
            .is_none()
        );
        assert_eq!(t.pending(), (2, 1));
        let done = add(
            &mut t,
            &result(0, &format!("{a}:22"), Reason::SynAck, Some(30)),
            || 9,
        )
        .expect("host a is complete");
        assert_eq!(done.addr, a.parse::<IpAddr>().unwrap());
        assert_eq!(done.first_seen, 7);
        assert_eq!(done.remaining, 0);
        assert_eq!(done.shown, [(22, Reason::SynAck), (80, Reason::SynAck)]);
        assert_eq!(
            done.status(),
            HostStatus {
                up: true,
                reason: Reason::SynAck
            }
        );
        assert_eq!(t.pending(), (1, 1), "only host b is still kept");
        let partial = t.drain_partial();
        assert_eq!(partial.len(), 1);
        assert_eq!(partial[0].remaining, 2);
        assert_eq!(partial[0].results(), 1);
        assert_eq!(t.counts(), (2, 2));
        assert_eq!(t.results(), 4);
        assert_eq!(t.pending(), (0, 0));
    }

    #[test]
    fn status_and_ignored_states() {
        let mut r = HostRecord {
            host_index: 0,
            addr: "::1".parse().unwrap(),
            first_seen: 0,
            remaining: 0,
            reasons: [0; Reason::COUNT],
            shown: Vec::new(),
            rtt: RttEstimator::new(),
        };
        r.reasons[Reason::NoResponse.index()] = 3;
        r.reasons[Reason::HostUnreach.index()] = 3;
        r.reasons[Reason::SelfConnect.index()] = 1;
        // Silent: down, for the first of the most common reasons.
        assert_eq!(
            r.status(),
            HostStatus {
                up: false,
                reason: Reason::NoResponse
            }
        );
        assert!(!worth_writing(&r));
        r.reasons[Reason::Reset.index()] = 1;
        r.reasons[Reason::ConnRefused.index()] = 5;
        assert_eq!(
            r.status(),
            HostStatus {
                up: true,
                reason: Reason::ConnRefused
            }
        );
        assert!(worth_writing(&r));
        let ignored = r.ignored(Show::OPEN);
        assert_eq!(
            ignored,
            [
                Ignored {
                    state: State::Closed,
                    count: 7,
                    reasons: vec![
                        (Reason::ConnRefused, 5),
                        (Reason::Reset, 1),
                        (Reason::SelfConnect, 1)
                    ],
                },
                Ignored {
                    state: State::Filtered,
                    count: 6,
                    reasons: vec![(Reason::NoResponse, 3), (Reason::HostUnreach, 3)],
                },
            ]
        );
        assert!(r.ignored(Show::ALL).is_empty());
    }

    #[test]
    fn port_lists_become_ranges() {
        assert_eq!(port_ranges(&[]), "");
        assert_eq!(port_ranges(&[22]), "22");
        assert_eq!(port_ranges(&[1, 2, 3, 22, 80, 81]), "1-3,22,80-81");
        assert_eq!(port_ranges(&[65534, 65535]), "65534-65535");
        let all: Vec<u16> = (1..=65535).collect();
        assert_eq!(port_ranges(&all), "1-65535");
    }

    /// The result of probe `index` of a scan with `ports` ports per host.
    fn probe(index: u64, ports: u64) -> ProbeResult {
        let host = u32::try_from(index / ports).unwrap();
        ProbeResult {
            index,
            target: std::net::SocketAddr::new(
                std::net::Ipv4Addr::from(0x7f00_0000 + host).into(),
                (index % ports + 1) as u16,
            ),
            reason: Reason::ConnRefused,
            rtt_us: Some(10),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Split into shards, each interrupted anywhere and resumed: every
        /// host's record is written whole exactly once by each run that
        /// finishes it, and the records of all runs hold every result once.
        #[test]
        fn every_host_is_written_once_with_all_its_results(
            hosts in 1u64..60,
            ports in 1u64..5,
            per_block in 1u64..8,
            seed: u64,
            shards in 1u64..4,
            cut in 0u64..=100,
        ) {
            let blocked = |shard, done| {
                let blocks = Blocks::with_hosts(hosts * ports, ports, per_block);
                Schedule::new(blocks, Order::random(blocks, seed), shard, done)
            };
            let mut results = vec![0u64; hosts as usize];
            for k in 1..=shards {
                let shard = Shard::new(k, shards).unwrap();
                // The first run stops after `cut` percent of its numbers.
                let first = blocked(shard, Done::none());
                let len = first.seq_len();
                let stop = len * cut / 100;
                let mut t = PendingHosts::new(&first, Show::ALL);
                for s in (0..stop).rev() {
                    if let Some(r) = t.add(&probe(first.index(s), ports), true, || 0) {
                        proptest::prop_assert_eq!(r.remaining, 0);
                        results[r.host_index as usize] += r.results();
                    }
                }
                for r in t.drain_partial() {
                    proptest::prop_assert!(r.remaining > 0 && stop < len);
                    results[r.host_index as usize] += r.results();
                }
                // The resumed run does the rest, and finishes every host.
                let lane = Lane { start: 0, step: 1, next: stop };
                let rest = blocked(shard, Done::none().after(&[lane], &[]));
                let mut t = PendingHosts::new(&rest, Show::ALL);
                let mut written = vec![0u32; hosts as usize];
                for s in stop..len {
                    if let Some(r) = t.add(&probe(rest.index(s), ports), true, || 0) {
                        proptest::prop_assert_eq!(r.remaining, 0);
                        written[r.host_index as usize] += 1;
                        results[r.host_index as usize] += r.results();
                    }
                }
                proptest::prop_assert!(t.drain_partial().is_empty());
                proptest::prop_assert_eq!(t.pending(), (0, 0));
                proptest::prop_assert!(written.iter().all(|&w| w <= 1));
            }
            proptest::prop_assert!(results.iter().all(|&n| n == ports), "{:?}", results);
        }
    }
}
