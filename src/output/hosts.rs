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
//! scanned.
//!
//! An interrupted run that will be resumed writes no partial records: it
//! *holds* the pending hosts ([`PendingHosts::hold`]) and they go into the
//! resume file as [`HeldHosts`]; the resumed run restores them
//! ([`PendingHosts::restore`]) and writes each one once, whole, when its
//! last result comes in. A run that stops for any other reason (an output
//! failed) writes them as they are with [`PendingHosts::drain_partial`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Format, Sink};
use crate::classify::{Reason, State};
use crate::config::Show;
use crate::order::{Quotas, Schedule};
use crate::probe::ProbeResult;
use crate::service::record::ServiceRecord;
use crate::stats::Summary;
use crate::timing::rtt::RttEstimator;

use super::dates::unix_secs;

/// What the per-host formats say of a host that answered SYN-ACK on every
/// port ([`HostRecord::middlebox`]): the XML host comment, the grepable
/// `# Note:` line.
pub const MIDDLEBOX_NOTE: &str =
    "every port answered syn-ack: likely a middlebox answering for the host, not open services";

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
///
/// Kept small (136 bytes): a scan keeps one per host in progress, and the
/// text table one per host with ports to show, so a sweep of a /16 with
/// `--show all` holds 65 536 of them. The counts are `u32` (a host gets at
/// most one result per port), and what few hosts have (services, routers)
/// sits out of line in [`HostExtras`].
#[derive(Debug, Clone)]
pub struct HostRecord {
    pub host_index: u64,
    pub addr: IpAddr,
    /// Unix seconds of the host's first result.
    pub first_seen: u64,
    /// Results of this run still to come: zero for a complete record.
    pub remaining: u32,
    pub reasons: [u32; Reason::COUNT],
    /// Shown ports; [`PendingHosts`] hands records out sorted by port.
    pub shown: Vec<(u16, Reason)>,
    /// Services and routers of shown ports; `None` for most hosts.
    pub extras: Option<Box<HostExtras>>,
    /// The answered probes' round-trip times, smoothed as TCP smooths them
    /// (nmap reports the pair in `<times srtt rttvar>`).
    pub rtt: RttEstimator,
}

/// What only some hosts' records have, out of line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostExtras {
    /// `-sV`/`--banners`: the shown open ports' services, sorted by port
    /// when handed out.
    pub services: Vec<(u16, ServiceRecord)>,
    /// The shown ports an ICMP unreachable answered, with its router
    /// (nmap's `reason_ip`).
    pub reason_ips: Vec<(u16, IpAddr)>,
}

impl HostExtras {
    /// The service found on `port`, if any (`services` sorted by port).
    pub fn service(&self, port: u16) -> Option<&ServiceRecord> {
        self.services
            .binary_search_by_key(&port, |(p, _)| *p)
            .ok()
            .map(|i| &self.services[i].1)
    }
}

impl HostRecord {
    /// The service found on `port`, if any.
    pub fn service(&self, port: u16) -> Option<&ServiceRecord> {
        self.extras.as_ref()?.service(port)
    }

    /// The services found, by port (empty without `-sV`/`--banners`).
    pub fn services(&self) -> &[(u16, ServiceRecord)] {
        self.extras.as_ref().map_or(&[], |e| &e.services)
    }

    /// The router whose ICMP unreachable answered `port`, if one did.
    pub fn reason_ip(&self, port: u16) -> Option<IpAddr> {
        let extras = self.extras.as_ref()?;
        extras
            .reason_ips
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, ip)| *ip)
    }

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

    /// Every port answered SYN-ACK: likely a middlebox answering for the
    /// host (`classify::answers_every_port`), flagged in the outputs.
    pub fn middlebox(&self) -> bool {
        crate::classify::answers_every_port(&self.reasons.map(u64::from))
    }

    /// Whether a shown port is open (with `--open` only such hosts are
    /// written).
    pub fn has_open_port(&self) -> bool {
        self.shown.iter().any(|(_, r)| r.state() == State::Open)
    }

    /// Results received for this host.
    pub fn results(&self) -> u64 {
        self.reasons.iter().map(|&n| u64::from(n)).sum()
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
                    .map(|r| (r, u64::from(self.reasons[r.index()])))
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

/// A host whose results straddle an interrupt, as the resume file keeps
/// it: everything its record needs so far. `reasons` and `shown` are
/// compact strings (`"conn-refused:14 syn-ack:1"`, `"22:syn-ack
/// 80:conn-refused"`) so that thousands of held hosts stay a small file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldHost {
    /// The host's index in the target space.
    pub host: u64,
    pub addr: IpAddr,
    /// Unix seconds of its first result.
    pub first_seen: u64,
    /// Results per reason, by reason name.
    pub reasons: String,
    /// The shown ports, by port, with their reasons.
    pub shown: String,
    /// The round-trip-time smoother: `[srtt_us, rttvar_us, samples]`.
    pub rtt: [u64; 3],
    /// `-sV`/`--banners`: the services of its shown ports so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<HeldService>,
}

/// A held host's port and its service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldService {
    /// The port.
    pub port: u16,
    /// What was found there.
    #[serde(flatten)]
    pub service: ServiceRecord,
}

/// What the per-host documents of an interrupted run hold over for its
/// resume: the hosts in progress, and each document's host counts so far
/// (`[seen, up]`), which a continued document carries on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldHosts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<[u64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grepable: Option<[u64; 2]>,
    pub pending: Vec<HeldHost>,
}

impl HeldHost {
    fn of(r: &HostRecord) -> HeldHost {
        let reasons: Vec<String> = Reason::ALL
            .into_iter()
            .filter(|x| r.reasons[x.index()] > 0)
            .map(|x| format!("{}:{}", x.as_str(), r.reasons[x.index()]))
            .collect();
        let mut shown = r.shown.clone();
        shown.sort_unstable_by_key(|(port, _)| *port);
        let shown: Vec<String> = shown
            .iter()
            .map(|(port, reason)| format!("{port}:{}", reason.as_str()))
            .collect();
        HeldHost {
            host: r.host_index,
            addr: r.addr,
            first_seen: r.first_seen,
            reasons: reasons.join(" "),
            shown: shown.join(" "),
            rtt: [
                r.rtt.srtt().as_micros() as u64,
                r.rtt.rttvar().as_micros() as u64,
                u64::from(r.rtt.samples()),
            ],
            services: r
                .services()
                .iter()
                .map(|(port, service)| HeldService {
                    port: *port,
                    service: service.clone(),
                })
                .collect(),
        }
    }

    /// The record again, with no results still counted as to come; `Err`
    /// names what does not parse.
    pub fn record(&self) -> Result<HostRecord, String> {
        let bad = |what: &str, item: &str| format!("host {}: bad {what} {item:?}", self.host);
        let pair = |item: &str| -> Option<(String, String)> {
            let (a, b) = item.split_once(':')?;
            Some((a.to_string(), b.to_string()))
        };
        let mut reasons = [0u32; Reason::COUNT];
        for item in self.reasons.split_whitespace() {
            let (name, n) = pair(item).ok_or_else(|| bad("reason count", item))?;
            let reason = Reason::from_str_name(&name).ok_or_else(|| bad("reason", item))?;
            reasons[reason.index()] = n.parse().map_err(|_| bad("reason count", item))?;
        }
        let mut shown = Vec::new();
        for item in self.shown.split_whitespace() {
            let (port, name) = pair(item).ok_or_else(|| bad("shown port", item))?;
            let port: u16 = port.parse().map_err(|_| bad("port", item))?;
            let reason = Reason::from_str_name(&name).ok_or_else(|| bad("reason", item))?;
            shown.push((port, reason));
        }
        let results: u64 = reasons.iter().map(|&n| u64::from(n)).sum();
        if results == 0 || shown.len() as u64 > results {
            return Err(format!(
                "host {}: {} shown ports of {results} results",
                self.host,
                shown.len()
            ));
        }
        let samples = u32::try_from(self.rtt[2]).map_err(|_| bad("rtt", "samples"))?;
        Ok(HostRecord {
            host_index: self.host,
            addr: self.addr,
            first_seen: self.first_seen,
            remaining: 0,
            reasons,
            shown,
            extras: (!self.services.is_empty()).then(|| {
                Box::new(HostExtras {
                    services: self
                        .services
                        .iter()
                        .map(|h| (h.port, h.service.clone()))
                        .collect(),
                    reason_ips: Vec::new(),
                })
            }),
            rtt: RttEstimator::restored(self.rtt[0], self.rtt[1], samples),
        })
    }
}

/// Hashes the host and block indices that key the pending tables: one
/// multiply per key (as FxHash does) instead of SipHash's rounds, which
/// every result paid on the writer's thread. The keys are the scan's own
/// indices, not input an adversary picks, so no keyed hash is needed.
#[derive(Debug, Default, Clone, Copy)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A table keyed by host or block index.
type IndexMap<V> = HashMap<u64, V, BuildHasherDefault<IndexHasher>>;

/// The quotas of one host block, while some of its hosts are pending.
#[derive(Debug)]
struct BlockQuotas {
    /// Results each host of the block gets in this run.
    quotas: Quotas,
    /// Hosts with a quota whose record is not handed out yet.
    open: u64,
}

/// This run's quota of `host` (see [`PendingHosts::quota`]), with the
/// tables borrowed apart so that [`PendingHosts::add`] can call it while it
/// holds the host's entry.
fn quota_in(schedule: &Schedule, blocks: &mut IndexMap<BlockQuotas>, host: u64) -> u32 {
    let (block, offset) = schedule.blocks().host_in_block(host);
    let entry = blocks.entry(block).or_insert_with(|| {
        let quotas = schedule.quotas(block);
        let open = quotas.hosts();
        BlockQuotas { quotas, open }
    });
    entry.quotas.get(offset)
}

/// The hosts with results still to come, and counts over every host seen.
#[derive(Debug)]
pub struct PendingHosts {
    schedule: Schedule,
    show: Show,
    pending: IndexMap<HostRecord>,
    /// Quotas of the blocks with hosts not yet handed out.
    blocks: IndexMap<BlockQuotas>,
    /// Hosts with at least one result.
    seen: u64,
    /// Hosts handed out (complete or partial) whose status was up.
    up: u64,
    /// Hosts handed out that answered SYN-ACK on every port.
    middleboxes: u64,
    /// Results taken.
    results: u64,
    /// An interrupted run to be resumed: [`drain_partial`](Self::drain_partial)
    /// keeps the pending hosts here instead of handing them out.
    held: Option<Vec<HostRecord>>,
    holding: bool,
    /// Emptied shown-port lists handed back ([`recycle`](Self::recycle)),
    /// for the next hosts: one allocation per host less.
    spare: Vec<Vec<(u16, Reason)>>,
}

/// Spare shown-port lists kept at most (a block's hosts: the hosts of one
/// block finish about when those of the next begin), and the largest
/// capacity kept (a host of many shown ports does not keep its list's
/// memory). At most 16 Ki lists of 32 bytes.
const SPARE_LISTS: usize = crate::order::BLOCK_HOSTS as usize;
const SPARE_CAPACITY: usize = 8;

impl PendingHosts {
    /// Hosts of the run `schedule` describes.
    pub fn new(schedule: &Schedule, show: Show) -> PendingHosts {
        PendingHosts {
            schedule: schedule.clone(),
            show,
            pending: IndexMap::default(),
            blocks: IndexMap::default(),
            seen: 0,
            up: 0,
            middleboxes: 0,
            results: 0,
            held: None,
            holding: false,
            spare: Vec::new(),
        }
    }

    /// The hosts of `run`, with those an earlier part held over taken back
    /// (`counts` picks the document's own counts from them, used when this
    /// run continues the same file).
    pub fn for_run(
        run: &super::RunInfo,
        show: Show,
        continued: bool,
        counts: impl FnOnce(&HeldHosts) -> Option<[u64; 2]>,
    ) -> PendingHosts {
        let mut hosts = PendingHosts::new(&run.schedule, show);
        if let Some(held) = &run.held {
            let counts = if continued { counts(held) } else { None };
            // The held hosts were checked when the resume file was read
            // (`ResumeFile::from_text`): none fails here.
            let _ = hosts.restore(held, counts);
        }
        hosts
    }

    /// Takes back the hosts an interrupted run held over (see
    /// [`HeldHosts`]): each is pending again, its record written once when
    /// its last result of this run comes in. `counts` are the document's
    /// `[seen, up]` so far, when this run continues the same document.
    pub fn restore(&mut self, held: &HeldHosts, counts: Option<[u64; 2]>) -> Result<(), String> {
        for h in &held.pending {
            let mut record = h.record()?;
            // Its results of this run, counted from the schedule (a held
            // host has probes left, or it would have been written).
            record.remaining = self.quota(record.host_index);
            self.pending.insert(record.host_index, record);
        }
        match counts {
            Some([seen, up]) => {
                self.seen = seen.max(held.pending.len() as u64);
                self.up = up;
            }
            None => self.seen = self.pending.len() as u64,
        }
        Ok(())
    }

    /// A segmented scan's next segment: hosts and quotas count by
    /// `schedule` now. No host is pending at the seam (a segment holds
    /// whole hosts, and the run moves on only once it is done).
    pub fn enter_segment(&mut self, schedule: &Schedule) {
        debug_assert!(self.pending.is_empty(), "a host straddles segments");
        self.schedule = schedule.clone();
        self.blocks.clear();
    }

    /// From now on the pending hosts are held for a resume instead of
    /// handed out by [`drain_partial`](Self::drain_partial).
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// The hosts held by [`hold`](Self::hold) and a drain, with the
    /// document's `[seen, up]`.
    pub fn take_held(&mut self) -> Option<(Vec<HeldHost>, [u64; 2])> {
        let held = self.held.take()?;
        Some((
            held.iter().map(HeldHost::of).collect(),
            [self.seen, self.up],
        ))
    }

    /// Hosts held for a resume so far.
    pub fn held(&self) -> usize {
        self.held.as_ref().map_or(0, Vec::len)
    }

    /// This run's quota of `host`: its block's quotas are counted on the
    /// block's first result (one step of the order per probe of the block).
    fn quota(&mut self, host: u64) -> u32 {
        quota_in(&self.schedule, &mut self.blocks, host)
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
        // One lookup per result: the entry is found (or made) once, and
        // removed through the same entry when the host completes.
        let mut entry = match self.pending.entry(host_index) {
            Entry::Occupied(entry) => entry,
            Entry::Vacant(vacant) => {
                // A result the schedule did not plan for (it cannot happen)
                // still gets a record: it completes with this one result.
                let quota = quota_in(&self.schedule, &mut self.blocks, host_index).max(1);
                self.seen += 1;
                vacant.insert_entry(HostRecord {
                    host_index,
                    addr: r.target.ip(),
                    first_seen: now(),
                    remaining: quota,
                    reasons: [0; Reason::COUNT],
                    shown: Vec::new(),
                    extras: None,
                    rtt: RttEstimator::new(),
                })
            }
        };
        let record = entry.get_mut();
        if shown && record.shown.capacity() == 0 {
            // Sized once for a host of a few ports (its results still to
            // come, this one included), not grown from 4 to 8; capped, as a
            // host of 65 536 ports with `--show open` shows a few. A list a
            // finished host handed back serves as well.
            let rest = usize::try_from(record.remaining).unwrap_or(usize::MAX);
            match self.spare.pop() {
                Some(list) => record.shown = list,
                None => record.shown.reserve_exact(rest.min(SPARE_CAPACITY)),
            }
        }
        record.remaining = record.remaining.saturating_sub(1);
        record.reasons[r.reason.index()] += 1;
        if shown {
            let port = r.target.port();
            record.shown.push((port, r.reason));
            if let Some(service) = &r.service {
                let extras = record.extras.get_or_insert_with(Box::default);
                extras.services.push((port, (**service).clone()));
            }
            if let Some(ip) = r.reason_ip {
                let extras = record.extras.get_or_insert_with(Box::default);
                extras.reason_ips.push((port, ip));
            }
        }
        if let Some(us) = r.rtt_us {
            record.rtt.sample(Duration::from_micros(u64::from(us)));
        }
        if record.remaining > 0 {
            return None;
        }
        let record = entry.remove();
        self.close_host(host_index);
        Some(self.hand_out(record))
    }

    /// Takes back a handed-out host's shown-port list, once its owner has
    /// read it, for a later host ([`add`](Self::add)).
    pub fn recycle(&mut self, mut list: Vec<(u16, Reason)>) {
        if list.capacity() > 0
            && list.capacity() <= SPARE_CAPACITY
            && self.spare.len() < SPARE_LISTS
        {
            list.clear();
            self.spare.push(list);
        }
    }

    /// Reads the records of `batch`'s hosts in progress, before
    /// [`add`](Self::add) takes the results one by one. The hosts of a
    /// batch are scattered over a table of megabytes, so each lookup
    /// misses the cache; these lookups are independent of each other, and
    /// the processor overlaps their misses, where `add`'s each wait for
    /// the one before. What is read is the parts `add` writes.
    pub fn warm(&self, batch: &[ProbeResult]) {
        let blocks = self.schedule.blocks();
        let mut touched = 0u64;
        for r in batch {
            if let Some(record) = self.pending.get(&blocks.host(r.index)) {
                touched = touched
                    .wrapping_add(u64::from(record.remaining))
                    .wrapping_add(u64::from(record.reasons[r.reason.index()]))
                    .wrapping_add(u64::from(record.rtt.samples()))
                    .wrapping_add(record.shown.first().map_or(0, |&(port, _)| u64::from(port)));
            }
        }
        std::hint::black_box(touched);
    }

    /// Every host still pending (an interrupted scan), by host index; none
    /// when they are held for a resume (see [`hold`](Self::hold)). A
    /// restored host whose last results came in the earlier run is complete
    /// (`remaining` 0), not partial.
    pub fn drain_partial(&mut self) -> Vec<HostRecord> {
        let mut records: Vec<HostRecord> = self.pending.drain().map(|(_, r)| r).collect();
        self.blocks.clear();
        records.sort_by_key(|r| r.host_index);
        if self.holding {
            self.held.get_or_insert_with(Vec::new).extend(records);
            return Vec::new();
        }
        records.into_iter().map(|r| self.hand_out(r)).collect()
    }

    fn hand_out(&mut self, mut record: HostRecord) -> HostRecord {
        record.shown.sort_unstable_by_key(|(port, _)| *port);
        if let Some(extras) = &mut record.extras {
            extras.services.sort_unstable_by_key(|(port, _)| *port);
        }
        if record.status().up {
            self.up += 1;
        }
        if record.middlebox() {
            self.middleboxes += 1;
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

    /// Hosts handed out that answered SYN-ACK on every port
    /// ([`HostRecord::middlebox`]).
    pub fn middleboxes(&self) -> u64 {
        self.middleboxes
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

/// What a per-host document keeps besides its writer: its hosts in
/// progress, its clock, and how far it is written.
#[derive(Debug)]
pub(super) struct DocumentState {
    pub hosts: PendingHosts,
    pub now: fn() -> SystemTime,
    /// Whether the header is written (a continued file has it).
    begun: bool,
    /// Whether the footer has been written (or is being written).
    finished: bool,
}

impl DocumentState {
    /// The document of `run` showing `show`; `continued` when it goes on
    /// with an interrupted run's file, taking that document's own host
    /// counts (`counts`) from what the run held over.
    pub fn new(
        run: &super::RunInfo,
        show: Show,
        continued: bool,
        counts: impl FnOnce(&HeldHosts) -> Option<[u64; 2]>,
    ) -> DocumentState {
        DocumentState {
            hosts: PendingHosts::for_run(run, show, continued, counts),
            now: SystemTime::now,
            begun: continued,
            finished: false,
        }
    }

    /// True the first time only: the header is to be written now.
    pub fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.begun, true)
    }
}

/// What the per-host formats (nmap XML, grepable) share: a header written
/// on the first result, a record per host as soon as it is complete, and
/// at the end the unfinished hosts and a footer. A format gives the parts;
/// the provided methods run them the same way for both.
pub(super) trait HostDocument {
    /// Writes the header, once ([`DocumentState::begin`]).
    fn begin(&mut self) -> io::Result<()>;
    /// Writes one host's record.
    fn write_host(&mut self, record: &HostRecord) -> io::Result<()>;
    /// Writes what follows the last host (run statistics, closing tags).
    fn write_footer(&mut self, summary: &Summary) -> io::Result<()>;
    fn doc(&mut self) -> &mut DocumentState;

    /// The same document with a fixed clock, for exact tests.
    #[cfg(test)]
    fn with_clock(mut self, now: fn() -> SystemTime) -> Self
    where
        Self: Sized,
    {
        self.doc().now = now;
        self
    }
    /// The format, as a resume file names it.
    const FORMAT: Format;
    /// Flushes the writer underneath.
    fn flush_out(&mut self) -> io::Result<()>;

    /// Takes one result; writes its host's record if that completed it.
    fn add_result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        self.begin()?;
        let doc = self.doc();
        let clock = doc.now;
        if let Some(record) = doc.hosts.add(r, shown, || unix_secs(clock())) {
            if worth_writing(&record) {
                self.write_host(&record)?;
            }
        }
        Ok(())
    }

    /// Writes the hosts still pending and the footer, once.
    fn close(&mut self, summary: &Summary) -> io::Result<()> {
        if std::mem::replace(&mut self.doc().finished, true) {
            return Ok(());
        }
        self.begin()?;
        for record in self.doc().hosts.drain_partial() {
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
        self.doc().finished = false;
        self.close(summary)
    }
}

/// Every document of host records is a [`Sink`] the same way: results go
/// through [`PendingHosts`], held hosts go to the resume file.
impl<D: HostDocument> Sink for D {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        self.add_result(r, shown)
    }

    fn warm(&mut self, batch: &[ProbeResult]) {
        self.doc().hosts.warm(batch);
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_out()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.close(summary)
    }

    fn abandon(&mut self, summary: &Summary) -> io::Result<()> {
        self.abandon_document(summary)
    }

    fn hold(&mut self) {
        self.doc().hosts.hold();
    }

    fn enter_segment(&mut self, schedule: &crate::order::Schedule) {
        self.doc().hosts.enter_segment(schedule);
    }

    fn take_held(&mut self) -> Option<(Format, Vec<HeldHost>, [u64; 2])> {
        let (pending, counts) = self.doc().hosts.take_held()?;
        Some((D::FORMAT, pending, counts))
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
            service: None,
            reason_ip: None,
        }
    }

    #[test]
    fn a_host_is_handed_out_when_its_last_probe_reports() {
        // Two hosts x three ports (22, 80, 443), results interleaved and out of order.
        let mut t = PendingHosts::new(&schedule(6, 3, Done::none()), Show::OPEN);
        let a = "198.18.0.1";
        let b = "198.18.0.2";
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
            extras: None,
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

    /// A record per host in progress and per row of the text table: 216
    /// bytes each made a /16's `--show all` scan take 52 MB.
    #[test]
    fn host_records_stay_small() {
        assert!(std::mem::size_of::<HostRecord>() <= 136);
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
    /// A finished host's shown-port list, handed back, is the next host's
    /// (emptied, its memory kept); a large one is not kept.
    #[test]
    fn a_handed_back_port_list_serves_the_next_host() {
        let mut t = PendingHosts::new(&schedule(6, 3, Done::none()), Show::ALL);
        let mut first = None;
        for i in 0..3 {
            first = t.add(&probe(i, 3), true, || 1);
        }
        let first = first.expect("host 0 is complete");
        assert_eq!(first.shown.len(), 3);
        let memory = first.shown.as_ptr();
        t.recycle(first.shown);
        let mut second = None;
        for i in 3..6 {
            second = t.add(&probe(i, 3), true, || 1);
        }
        let second = second.expect("host 1 is complete");
        assert_eq!(
            second.shown,
            [
                (1, Reason::ConnRefused),
                (2, Reason::ConnRefused),
                (3, Reason::ConnRefused)
            ]
        );
        assert_eq!(second.shown.as_ptr(), memory, "the same list, reused");
        t.recycle(Vec::with_capacity(SPARE_CAPACITY + 1));
        assert!(t.spare.is_empty(), "a large list is not kept");
    }

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
            service: None,
            reason_ip: None,
        }
    }

    /// A run interrupted anywhere holds its hosts in progress (through the
    /// resume file's text), and the resumed run writes them: every host's
    /// record once, whole. (Hosts straddling an interrupt used to get a
    /// partial record from each run.)
    fn hold_and_resume(hosts: u64, ports: u64, per_block: u64, seed: u64, cuts: &[u64]) {
        let blocks = Blocks::with_hosts(hosts * ports, ports, per_block);
        let order = Order::random(blocks, seed);
        let len = Schedule::new(blocks, order, Shard::WHOLE, Done::none()).seq_len();
        let mut written = vec![0u32; hosts as usize];
        let mut shown: Vec<Vec<u16>> = vec![Vec::new(); hosts as usize];
        let mut held: Option<HeldHosts> = None;
        let mut start = 0;
        let mut stops: Vec<u64> = cuts.iter().map(|c| len * c / 100).collect();
        stops.sort_unstable();
        stops.push(len);
        for stop in stops {
            let stop = stop.max(start);
            let lane = Lane {
                start: 0,
                step: 1,
                next: start,
            };
            let done = Done::none().after(&[lane], &[]);
            let schedule = Schedule::new(blocks, order, Shard::WHOLE, done);
            let mut run = crate::output::tests::run_info();
            run.schedule = schedule.clone();
            run.held = held.take().map(std::sync::Arc::new);
            let mut t = PendingHosts::for_run(&run, Show::ALL, true, |h| h.xml);
            let mut take = |r: HostRecord| {
                assert_eq!(r.remaining, 0, "host {} written partial", r.host_index);
                written[r.host_index as usize] += 1;
                assert_eq!(r.results(), ports, "host {}", r.host_index);
                shown[r.host_index as usize].extend(r.shown.iter().map(|(p, _)| *p));
            };
            for s in start..stop {
                if let Some(r) = t.add(&probe(schedule.index(s), ports), true, || 0) {
                    take(r);
                }
            }
            if stop < len {
                t.hold();
            }
            for r in t.drain_partial() {
                take(r);
            }
            if let Some((pending, counts)) = t.take_held() {
                let h = HeldHosts {
                    xml: Some(counts),
                    grepable: None,
                    pending,
                };
                // Through the file's text, as a resume reads it.
                let text = serde_json::to_string_pretty(&h).unwrap();
                held = Some(serde_json::from_str(&text).unwrap());
            }
            start = stop;
        }
        assert!(written.iter().all(|&w| w == 1), "{written:?}");
        for ports_of in &shown {
            assert_eq!(*ports_of, (1..=ports as u16).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_host_straddling_an_interrupt_was_written_twice() {
        hold_and_resume(40, 3, 8, 7, &[10, 35, 80]);
        hold_and_resume(1, 16, 1, 1, &[50]);
        hold_and_resume(100, 1, 16, 9, &[0, 0, 99]);
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

        /// Any interrupts, held and resumed: each host once, whole.
        #[test]
        fn held_hosts_are_written_once_whole(
            hosts in 1u64..60,
            ports in 1u64..5,
            per_block in 1u64..8,
            seed: u64,
            cuts in proptest::collection::vec(0u64..=100, 0..4),
        ) {
            hold_and_resume(hosts, ports, per_block, seed, &cuts);
        }
    }

    /// A host held over an interrupt keeps its ports' services through the
    /// resume file, so the resumed run writes them as the whole run would.
    #[test]
    fn held_hosts_keep_their_services() {
        let mut r = HostRecord {
            host_index: 4,
            addr: "127.0.0.1".parse().unwrap(),
            first_seen: 7,
            remaining: 2,
            reasons: [0; Reason::COUNT],
            shown: vec![(22, Reason::SynAck)],
            extras: Some(Box::new(HostExtras {
                services: vec![(
                    22,
                    ServiceRecord {
                        service: Some("ssh".into()),
                        version: Some("9.2p1".into()),
                        ..ServiceRecord::default()
                    },
                )],
                reason_ips: Vec::new(),
            })),
            rtt: RttEstimator::new(),
        };
        r.reasons[Reason::SynAck.index()] = 1;
        let held = HeldHost::of(&r);
        let text = serde_json::to_string(&held).unwrap();
        assert!(
            text.contains(r#""services":[{"port":22,"service":"ssh","version":"9.2p1"}]"#),
            "{text}"
        );
        let back: HeldHost = serde_json::from_str(&text).unwrap();
        let restored = back.record().unwrap();
        assert_eq!(restored.service(22), r.service(22));
        assert_eq!(restored.service(80), None);
        // A held host of a plain scan is written as before: no services key.
        r.extras = None;
        assert!(
            !serde_json::to_string(&HeldHost::of(&r))
                .unwrap()
                .contains("services")
        );
    }
}
