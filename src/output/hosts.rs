//! Gathering results into hosts, for the formats that write one record per
//! host (nmap XML, grepable).
//!
//! Results reach the writer in any order, from several workers. A host's
//! record is complete once all of its probes have reported, and each host
//! has the same number of probes (the scan's port count), so a
//! [`HostTable`] keeps only the hosts that are still *pending*: a count of
//! probes not yet reported, counts per reason, the ports to be shown and a
//! round-trip-time estimate, keyed by host index. A host leaves the table
//! the moment its last probe reports, and the format writes its record
//! then: output appears during a long scan and memory follows the hosts in
//! progress, not the hosts scanned. An interrupted scan drains what is left
//! with [`HostTable::drain_partial`].

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::classify::{Reason, State};
use crate::config::Show;
use crate::probe::ProbeResult;
use crate::stats::Summary;

use super::dates::unix_secs;

/// Round-trip time of one host's answered probes, smoothed as TCP smooths
/// it (RFC 6298: gains 1/8 and 1/4), in microseconds. nmap reports the same
/// pair in `<times srtt rttvar>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rtt {
    srtt: i64,
    rttvar: i64,
    samples: u32,
}

impl Rtt {
    pub fn record(&mut self, rtt_us: u32) {
        let r = i64::from(rtt_us);
        if self.samples == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            let delta = r - self.srtt;
            self.rttvar += (delta.abs() - self.rttvar) / 4;
            self.srtt += delta / 8;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// `(srtt, rttvar)`, or `None` when nothing answered.
    pub fn get(&self) -> Option<(u64, u64)> {
        (self.samples > 0).then(|| (self.srtt.max(0) as u64, self.rttvar.max(0) as u64))
    }
}

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
    /// Probes not yet reported: zero for a complete record.
    pub remaining: u64,
    pub reasons: [u64; Reason::COUNT],
    /// Shown ports; [`HostTable`] hands records out sorted by port.
    pub shown: Vec<(u16, Reason)>,
    pub rtt: Rtt,
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

/// The hosts with results still to come, and counts over every host seen.
#[derive(Debug)]
pub struct HostTable {
    ports_per_host: u64,
    show: Show,
    pending: HashMap<u64, HostRecord>,
    /// Hosts with at least one result.
    seen: u64,
    /// Hosts handed out (complete or partial) whose status was up.
    up: u64,
    /// Results taken.
    results: u64,
}

impl HostTable {
    /// `ports_per_host` is the number of probes each host gets.
    pub fn new(ports_per_host: u64, show: Show) -> HostTable {
        HostTable {
            ports_per_host: ports_per_host.max(1),
            show,
            pending: HashMap::new(),
            seen: 0,
            up: 0,
            results: 0,
        }
    }

    /// Takes one result; returns the host's record when this was its last
    /// probe. `now` gives Unix seconds, asked only for a host's first result
    /// (its first-seen time).
    pub fn add(&mut self, r: &ProbeResult, now: impl FnOnce() -> u64) -> Option<HostRecord> {
        self.results += 1;
        let host_index = r.index / self.ports_per_host;
        let ports_per_host = self.ports_per_host;
        let seen = &mut self.seen;
        let record = self.pending.entry(host_index).or_insert_with(|| {
            *seen += 1;
            HostRecord {
                host_index,
                addr: r.target.ip(),
                first_seen: now(),
                remaining: ports_per_host,
                reasons: [0; Reason::COUNT],
                shown: Vec::new(),
                rtt: Rtt::default(),
            }
        });
        record.remaining = record.remaining.saturating_sub(1);
        record.reasons[r.reason.index()] += 1;
        if self.show.contains(r.reason.state()) {
            record.shown.push((r.target.port(), r.reason));
        }
        if let Some(us) = r.rtt_us {
            record.rtt.record(us);
        }
        if record.remaining > 0 {
            return None;
        }
        let record = self.pending.remove(&host_index)?;
        Some(self.hand_out(record))
    }

    /// Every host still pending (an interrupted scan), by host index.
    pub fn drain_partial(&mut self) -> Vec<HostRecord> {
        let mut records: Vec<HostRecord> = self.pending.drain().map(|(_, r)| r).collect();
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

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
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
    fn hosts(&mut self) -> &mut HostTable;
    fn clock(&self) -> fn() -> SystemTime;
    /// Whether the footer has been written (or is being written).
    fn finished(&mut self) -> &mut bool;

    /// Takes one result; writes its host's record if that completed it.
    fn add_result(&mut self, r: &ProbeResult) -> io::Result<()> {
        self.begin()?;
        let clock = self.clock();
        if let Some(record) = self.hosts().add(r, || unix_secs(clock())) {
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
        let mut t = HostTable::new(3, Show::OPEN);
        let a = "10.0.0.1";
        let b = "10.0.0.2";
        assert!(
            t.add(
                &result(4, &format!("{b}:80"), Reason::SynAck, Some(90)),
                || 7
            )
            .is_none()
        );
        assert!(
            t.add(
                &result(2, &format!("{a}:443"), Reason::ConnRefused, Some(10)),
                || 7
            )
            .is_none()
        );
        assert!(
            t.add(
                &result(1, &format!("{a}:80"), Reason::SynAck, Some(20)),
                || 8
            )
            .is_none()
        );
        assert_eq!(t.pending(), 2);
        let done = t
            .add(
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
        assert_eq!(t.pending(), 1, "only host b is still kept");
        let partial = t.drain_partial();
        assert_eq!(partial.len(), 1);
        assert_eq!(partial[0].remaining, 2);
        assert_eq!(partial[0].results(), 1);
        assert_eq!(t.counts(), (2, 2));
        assert_eq!(t.results(), 4);
        assert_eq!(t.pending(), 0);
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
            rtt: Rtt::default(),
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
    fn rtt_is_smoothed_like_tcp() {
        let mut rtt = Rtt::default();
        assert_eq!(rtt.get(), None);
        rtt.record(100);
        assert_eq!(rtt.get(), Some((100, 50)));
        rtt.record(180);
        // rttvar = 50 + (80 - 50) / 4 = 57; srtt = 100 + 80 / 8 = 110.
        assert_eq!(rtt.get(), Some((110, 57)));
        rtt.record(110);
        // rttvar = 57 + (0 - 57) / 4, truncated toward zero = 43.
        assert_eq!(rtt.get(), Some((110, 43)));
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
}
