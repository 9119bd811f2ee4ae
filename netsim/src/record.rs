//! What the simulator did, for the summary it prints and the JSON it writes
//! with `--record`: packet counts, the latency it really applied to each
//! answer (an HdrHistogram per kind of answer), how late its timer fired,
//! how many SYNs each target saw, and optionally every SYN with its fate and timing.
//!
//! A scorer compares FastPort's measured round-trip times with
//! `latency_us`: both are the time between the SYN leaving the kernel and
//! the answer entering it, give or take the TUN device's microseconds.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::model::ReplyKind;
use crate::oracle::OracleReport;

/// Packet counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets read from the device.
    pub packets: u64,
    /// SYNs among them.
    pub syns: u64,
    /// SYNs dropped as lost on the way to the host.
    pub syns_lost: u64,
    /// Answers dropped as lost on the way back.
    pub replies_lost: u64,
    /// SYNs to filtered ports, which get no answer.
    pub silent: u64,
    /// Answers sent: SYN-ACKs.
    pub syn_acks: u64,
    /// Answers sent: RSTs to SYNs.
    pub rsts: u64,
    /// Answers sent: ICMP host unreachable.
    pub icmp_host_unreach: u64,
    /// Answers sent: ICMP administratively prohibited.
    pub icmp_admin_prohibited: u64,
    /// Bare ACKs consumed (the handshake's last step).
    pub acks_consumed: u64,
    /// RSTs consumed (FastPort's close of an open probe).
    pub rsts_consumed: u64,
    /// FINs or data answered with a stateless RST.
    pub strays_reset: u64,
    /// Packets that are not IPv4 TCP (IPv6 router solicitations, say).
    pub other: u64,
    /// Packets that do not parse.
    pub malformed: u64,
    /// Answers still waiting when the simulator stopped.
    pub abandoned: u64,
    /// Writes to the device that failed.
    pub write_errors: u64,
    /// SYNs and other packets the kernel dropped because the device's
    /// queue was full: loss nobody asked for, so a run with any is suspect
    /// (the responder fell behind the scanner).
    #[serde(default)]
    pub device_drops: u64,
    /// ICMP unreachables not sent: the /24's router was over its
    /// `icmp_unreach_per_s`.
    #[serde(default)]
    pub icmp_rate_limited: u64,
    /// RSTs not sent: the host was over its `rst_per_s`.
    #[serde(default)]
    pub rst_rate_limited: u64,
    /// Handshakes completed on a service that talks first (a greeting due).
    #[serde(default)]
    pub greetings: u64,
    /// Client data a service answered (an answer due).
    #[serde(default)]
    pub requests_answered: u64,
    /// Service data segments sent (greetings and answers).
    #[serde(default)]
    pub data_sent: u64,
    /// Service data transmissions lost (each resent a second later).
    #[serde(default)]
    pub data_lost: u64,
}

impl Counters {
    /// Answers sent, every kind.
    pub fn replies(&self) -> u64 {
        self.syn_acks + self.rsts + self.icmp_host_unreach + self.icmp_admin_prohibited
    }

    pub(crate) fn count_reply(&mut self, kind: ReplyKind) {
        *match kind {
            ReplyKind::SynAck => &mut self.syn_acks,
            ReplyKind::Rst => &mut self.rsts,
            ReplyKind::IcmpHostUnreach => &mut self.icmp_host_unreach,
            ReplyKind::IcmpAdminProhibited => &mut self.icmp_admin_prohibited,
        } += 1;
    }
}

/// A distribution in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many values.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// What became of one SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// Answered with a SYN-ACK.
    SynAck,
    /// Answered with a RST.
    Rst,
    /// Answered with ICMP host unreachable.
    IcmpHostUnreach,
    /// Answered with ICMP administratively prohibited.
    IcmpAdminProhibited,
    /// Lost on the way to the host.
    SynLost,
    /// Answered, but the answer was lost on the way back.
    ReplyLost,
    /// A filtered port: no answer.
    Silent,
    /// An answer the rate limit of the host or its router held back.
    RateLimited,
}

impl Fate {
    /// The answer sent, if one was.
    pub fn reply(self) -> Option<ReplyKind> {
        match self {
            Fate::SynAck => Some(ReplyKind::SynAck),
            Fate::Rst => Some(ReplyKind::Rst),
            Fate::IcmpHostUnreach => Some(ReplyKind::IcmpHostUnreach),
            Fate::IcmpAdminProhibited => Some(ReplyKind::IcmpAdminProhibited),
            Fate::SynLost | Fate::ReplyLost | Fate::Silent | Fate::RateLimited => None,
        }
    }
}

impl From<ReplyKind> for Fate {
    fn from(kind: ReplyKind) -> Fate {
        match kind {
            ReplyKind::SynAck => Fate::SynAck,
            ReplyKind::Rst => Fate::Rst,
            ReplyKind::IcmpHostUnreach => Fate::IcmpHostUnreach,
            ReplyKind::IcmpAdminProhibited => Fate::IcmpAdminProhibited,
        }
    }
}

/// One SYN and what became of it (with `--record-log`). Answered SYNs are
/// logged when the answer leaves, the others when the SYN arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The simulated host.
    pub addr: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// Which SYN to this (address, port) it was, from 0.
    pub attempt: u32,
    /// When the SYN arrived, microseconds after the first packet of the run.
    pub at_us: u64,
    /// What became of it.
    pub fate: Fate,
    /// For an answer sent: the latency the model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_us: Option<u64>,
    /// For an answer sent: the latency applied, from reading the SYN to
    /// writing the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

/// Everything a run recorded; written as JSON by `--record`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The profile's name.
    pub profile: String,
    /// The seed.
    pub seed: u64,
    /// The simulated hosts.
    pub hosts: String,
    /// How long the simulator ran, milliseconds.
    pub elapsed_ms: u64,
    /// Packet counts.
    pub counters: Counters,
    /// How many (address, port) pairs saw each number of SYNs: `{"1": 980,
    /// "2": 20}` means 20 targets saw a second SYN (a kernel retransmission
    /// or a scanner's retry).
    pub syns_per_target: BTreeMap<u32, u64>,
    /// The latency applied to the answers, per kind (`syn-ack`, `rst`,
    /// `icmp-host-unreach`, `icmp-admin-prohibited`) and `all`.
    pub latency_us: BTreeMap<String, Summary>,
    /// How much later than intended the answers left (timer resolution
    /// and scheduling).
    pub lateness_us: Summary,
    /// The launch rate the scanner sustained: the most SYNs received in
    /// any one second of the run.
    #[serde(default)]
    pub launch_rate: f64,
    /// What a scanner that knew the network could have done at that rate
    /// (see [`crate::oracle`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle: Option<OracleReport>,
    /// Hosts behind a middlebox answering SYN-ACK on every port (the
    /// `syn_ack_all_ports` hazard): a scanner should flag them, not report
    /// every port open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleboxes: Vec<Ipv4Addr>,
    /// Every SYN and its fate, when asked for (`--record-log`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
}

/// Collects the latency histograms and the optional log.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    per_kind: [Histogram<u64>; 4],
    all: Histogram<u64>,
    lateness: Histogram<u64>,
    log: Option<Vec<LogEntry>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to an hour, three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub(crate) fn new(log: bool) -> Recorder {
        Recorder {
            per_kind: std::array::from_fn(|_| histogram()),
            all: histogram(),
            lateness: histogram(),
            log: log.then(Vec::new),
        }
    }

    /// Records one SYN's fate: an answer sent (with its latencies) feeds the
    /// histograms; every entry goes to the log when there is one.
    pub(crate) fn syn(&mut self, entry: LogEntry) {
        if let (Some(kind), Some(intended), Some(applied)) =
            (entry.fate.reply(), entry.intended_us, entry.latency_us)
        {
            self.per_kind[kind.index()].saturating_record(applied.max(1));
            self.all.saturating_record(applied.max(1));
            self.lateness
                .saturating_record(applied.saturating_sub(intended).max(1));
        }
        if let Some(log) = &mut self.log {
            log.push(entry);
        }
    }

    pub(crate) fn latency(&self) -> BTreeMap<String, Summary> {
        let mut m: BTreeMap<String, Summary> = ReplyKind::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str().to_string(),
                    Summary::of(&self.per_kind[k.index()]),
                )
            })
            .collect();
        m.insert("all".into(), Summary::of(&self.all));
        m
    }

    pub(crate) fn lateness(&self) -> Summary {
        Summary::of(&self.lateness)
    }

    pub(crate) fn take_log(&mut self) -> Vec<LogEntry> {
        self.log.take().unwrap_or_default()
    }
}

impl Record {
    /// The time (after the first packet) by which a share `q` of the
    /// targets had seen their last SYN: a scan's progress as the network
    /// saw it. `None` without a log (`--record-log`) or with no SYN in it.
    /// `progress(1.0) − progress(0.9)` is the scan's tail.
    pub fn progress(&self, q: f64) -> Option<Duration> {
        let mut last: std::collections::HashMap<(Ipv4Addr, u16), u64> =
            std::collections::HashMap::new();
        for e in &self.log {
            let t = last.entry((e.addr, e.port)).or_insert(0);
            *t = (*t).max(e.at_us);
        }
        let mut times: Vec<u64> = last.into_values().collect();
        if times.is_empty() {
            return None;
        }
        times.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * times.len() as f64).ceil() as usize).clamp(1, times.len());
        Some(Duration::from_micros(times[rank - 1]))
    }

    /// The oracle's line of the summary (empty without an oracle).
    fn oracle_line(&self) -> String {
        let Some(o) = &self.oracle else {
            return String::new();
        };
        let acc: Vec<String> = o
            .accuracy
            .iter()
            .map(|a| format!("{}: {:.5} ({:.5})", a.tries, a.exact, a.model))
            .collect();
        format!(
            "\nnetsim: oracle at {:.0} SYNs/s (the run's busiest second), up to {} tries: \
             {:.2} s knowing every loss, {:.2} s knowing latencies only; \
             accuracy by tries, this seed (loss model): {}",
            o.launch_rate,
            o.tries,
            o.lower_bound_ms / 1000.0,
            o.blind_lower_bound_ms / 1000.0,
            acc.join(", ")
        )
    }

    /// The hazards' line of the summary (empty when none acted).
    fn hazard_line(&self) -> String {
        let c = &self.counters;
        if c.icmp_rate_limited == 0 && c.rst_rate_limited == 0 && self.middleboxes.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = self
            .middleboxes
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        let more = if self.middleboxes.len() > shown.len() {
            format!(" and {} more", self.middleboxes.len() - shown.len())
        } else {
            String::new()
        };
        format!(
            "\nnetsim: hazards: {} ICMP unreachables and {} RSTs held back by rate limits; \
             {} hosts answer SYN-ACK on every port (middleboxes){}{}",
            c.icmp_rate_limited,
            c.rst_rate_limited,
            self.middleboxes.len(),
            if shown.is_empty() {
                String::new()
            } else {
                format!(": {}", shown.join(", "))
            },
            more
        )
    }

    /// A few lines for people: what was injected.
    pub fn summary(&self) -> String {
        let c = &self.counters;
        let ms = |us: u64| us as f64 / 1000.0;
        let all = self.latency_us.get("all").copied().unwrap_or_default();
        let per_target: Vec<String> = self
            .syns_per_target
            .iter()
            .map(|(n, count)| format!("{count}×{n}"))
            .collect();
        format!(
            "netsim: profile {} seed {}, hosts {}, {:.1} s\n\
             netsim: {} SYNs ({} lost on the way), {} answers sent (syn-ack {}, rst {}, \
             icmp host-unreach {}, admin-prohibited {}), {} lost on the way back, {} unanswered (filtered)\n\
             netsim: latency applied p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             timer lateness p99 {:.2} ms\n\
             netsim: SYNs per target (targets×SYNs): {}; consumed {} ACKs, {} RSTs; \
             reset {} FIN/data; {} other, {} malformed; {} answers abandoned at exit; \
             services: {} greetings, {} requests answered, {} data segments sent, {} lost{}{}{}",
            self.profile,
            self.seed,
            self.hosts,
            self.elapsed_ms as f64 / 1000.0,
            c.syns,
            c.syns_lost,
            c.replies(),
            c.syn_acks,
            c.rsts,
            c.icmp_host_unreach,
            c.icmp_admin_prohibited,
            c.replies_lost,
            c.silent,
            ms(all.p50),
            ms(all.p90),
            ms(all.p99),
            ms(all.max),
            ms(self.lateness_us.p99),
            if per_target.is_empty() {
                "none".into()
            } else {
                per_target.join(", ")
            },
            c.acks_consumed,
            c.rsts_consumed,
            c.strays_reset,
            c.other,
            c.malformed,
            c.abandoned,
            c.greetings,
            c.requests_answered,
            c.data_sent,
            c.data_lost,
            self.oracle_line(),
            self.hazard_line(),
            if c.device_drops > 0 {
                format!(
                    "\nnetsim: WARNING: the kernel dropped {} packets at the full TUN queue: \
                     the responder fell behind (unintended loss)",
                    c.device_drops
                )
            } else {
                String::new()
            },
        )
    }
}
