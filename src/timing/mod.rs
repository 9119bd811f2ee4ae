//! Adaptive timing: how long an attempt waits, how many probes are in
//! flight, and how many times a silent port is tried — learnt from the
//! answers, as nmap does (docs/TIMING.md).
//!
//! - [`rtt`]: RFC 6298's smoothed RTT and variation; an attempt's timeout is
//!   `srtt + 4 × rttvar` within `--min-rtt-timeout`..`--max-rtt-timeout`,
//!   `--initial-rtt-timeout` before any sample.
//! - [`window`]: a congestion window in probes (slow start, congestion
//!   avoidance, halving on drops).
//! - [`hosts`]: per-host estimate and window in a fixed-size table.
//! - [`Timing`]: one event-loop worker's timing state, tying them together:
//!   a host's own estimate once it has [`HOST_SAMPLES`] samples, the
//!   scan-wide one before; the host's window and the scan's window both
//!   bound what is in flight.
//!
//! All of it is pure: `now` and the measured RTTs are arguments, so the unit
//! tests drive it with a fake clock and scripted answers.
//!
//! **Karn's rule.** A sample is taken only from an attempt whose SYN went
//! out once. FastPort's retries are new sockets (new source port, new ISN):
//! an answer belongs to the attempt that got it, so a retry's answer is a
//! clean sample. The ambiguity is inside one socket, when the kernel
//! retransmits the SYN (at 1 s, see docs/NETSIM.md): the engines read
//! `TCP_INFO` for answers that took at least [`KERNEL_SYN_RTO`] and pass no
//! sample when the SYN was retransmitted. Faster answers cannot have been
//! retransmitted and pay nothing.

pub mod hosts;
pub mod rtt;
pub mod window;

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use hosts::HostTable;
use rtt::RttEstimator;
use window::{Signal, Window, WindowParams};

/// Samples a host needs before its own estimate replaces the scan's.
pub const HOST_SAMPLES: u32 = 3;
/// Linux's initial retransmission timeout for a SYN (`TCP_TIMEOUT_INIT`):
/// an answer that took less cannot be to a retransmitted SYN.
pub const KERNEL_SYN_RTO: Duration = Duration::from_secs(1);
/// Slots of the per-host table of each event-loop worker (~100 bytes each).
pub const HOST_SLOTS: usize = 2048;
/// Doublings of an unknown host's timeout, at most.
const MAX_BACKOFF: u32 = 3;
/// Probes of one host in flight at the start, and never fewer.
const HOST_WINDOW: (usize, usize) = (32, 2);

/// Answers the scan needs before its measured loss sets the retries of a
/// host it knows nothing of (before: nmap's one retry).
const LOSS_SAMPLES: u64 = 200;
/// How often an answering port may be missed on a host the scan has no
/// record of: retries are added until the measured loss, to the power of
/// the attempts, is below this.
const MISS_TARGET: f64 = 1e-4;

/// The scan's evidence on retries, for hosts without a record of their own
/// (untracked hosts, and every host in the threads engine): how many
/// answers came, how many only to a retry (a loss), and the highest try
/// that was answered.
#[derive(Debug, Clone, Copy, Default)]
struct RetryEvidence {
    answers: u64,
    lost: u64,
    max_ok_try: u32,
}

impl RetryEvidence {
    fn answered(&mut self, needed: u32) {
        self.answers += 1;
        if needed > 0 {
            self.lost += 1;
        }
        self.max_ok_try = self.max_ok_try.max(needed);
    }

    /// Retries for a host the scan has no record of: enough that an
    /// answering port is missed less than once in 10 000 at the loss the
    /// scan measures (the share of answers that needed a retry), at least
    /// one (nmap's rule for a host that never needed one), never more than
    /// the scan ever needed plus one. The highest try answered anywhere
    /// alone gave a /20 scan's filtered ports on untracked hosts five
    /// attempts each, because somewhere one port had needed three.
    fn retries(&self, max_retries: u32) -> u32 {
        let by_loss = if self.answers < LOSS_SAMPLES || self.lost == 0 {
            1
        } else {
            let loss = (self.lost as f64 / self.answers as f64).min(0.99);
            // Smallest r with loss^(r+1) <= MISS_TARGET.
            (MISS_TARGET.ln() / loss.ln()).ceil().max(2.0) as u32 - 1
        };
        max_retries.min(by_loss.min(self.max_ok_try + 1).max(1))
    }
}

/// nmap's timing templates, `-T0` … `-T5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Template {
    Paranoid,
    Sneaky,
    Polite,
    Normal,
    Aggressive,
    Insane,
}

/// A `-T` value that is neither 0-5 nor one of nmap's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid -T \"{0}\": expected 0-5 or paranoid, sneaky, polite, normal, aggressive, insane")]
pub struct TemplateError(pub String);

/// What a template sets (each can still be given by its own flag).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateValues {
    pub initial_rtt: Duration,
    pub min_rtt: Duration,
    pub max_rtt: Duration,
    pub max_retries: u32,
    /// Probes in flight at most (nmap's `--max-parallelism`).
    pub max_concurrency: Option<usize>,
    /// Probes per second at most (nmap's `--scan-delay`, as a rate).
    pub rate: Option<f64>,
    /// The scan-wide window at the start, per worker.
    pub initial_window: usize,
}

impl Template {
    pub const ALL: [Template; 6] = [
        Template::Paranoid,
        Template::Sneaky,
        Template::Polite,
        Template::Normal,
        Template::Aggressive,
        Template::Insane,
    ];

    /// `0`..`5` or nmap's name, any case.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let t = s.trim();
        Template::ALL
            .into_iter()
            .enumerate()
            .find(|(i, t2)| t == i.to_string() || t.eq_ignore_ascii_case(t2.name()))
            .map(|(_, t)| t)
            .ok_or_else(|| TemplateError(s.to_string()))
    }

    pub fn level(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Template::Paranoid => "paranoid",
            Template::Sneaky => "sneaky",
            Template::Polite => "polite",
            Template::Normal => "normal",
            Template::Aggressive => "aggressive",
            Template::Insane => "insane",
        }
    }

    /// nmap's values for the template (nmap.cc), in FastPort's terms.
    pub fn values(self) -> TemplateValues {
        let ms = Duration::from_millis;
        let normal = TemplateValues {
            initial_rtt: ms(1000),
            min_rtt: ms(100),
            max_rtt: ms(10_000),
            max_retries: 10,
            max_concurrency: None,
            rate: None,
            initial_window: 64,
        };
        let serial = |initial_rtt: Duration, delay: Duration| TemplateValues {
            initial_rtt,
            // nmap: an initial timeout above the maximum raises the maximum.
            max_rtt: normal.max_rtt.max(initial_rtt),
            max_concurrency: Some(1),
            rate: Some(1.0 / delay.as_secs_f64()),
            initial_window: 1,
            ..normal
        };
        match self {
            Template::Paranoid => serial(ms(300_000), ms(300_000)),
            Template::Sneaky => serial(ms(15_000), ms(15_000)),
            Template::Polite => serial(normal.initial_rtt, ms(400)),
            Template::Normal => normal,
            Template::Aggressive => TemplateValues {
                initial_rtt: ms(500),
                min_rtt: ms(100),
                max_rtt: ms(1250),
                max_retries: 6,
                initial_window: 128,
                ..normal
            },
            Template::Insane => TemplateValues {
                initial_rtt: ms(250),
                min_rtt: ms(50),
                max_rtt: ms(300),
                max_retries: 2,
                initial_window: 256,
                ..normal
            },
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{} ({})", self.level(), self.name())
    }
}

/// Doublings of attempt `try_no`'s wait (0 = first attempt) when the
/// estimate gives `estimate`: one for every retry while the wait is the
/// initial guess, none once a measured estimate is above it (it already
/// spans the scan's slow hosts, and late in a scan it is biased up by them).
/// One doubling for all retries: more made a filtered port on an unknown
/// host cost 1.6 + 3.2 + 6.4 + 10 s on internet-like (/22).
fn retry_doubling(p: &AdaptiveTiming, estimate: Duration, try_no: u32) -> u32 {
    u32::from(estimate <= p.guess()).min(try_no)
}

/// The validated adaptive-timing settings (absent: `--timeout` fixes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveTiming {
    pub initial_rtt: Duration,
    pub min_rtt: Duration,
    pub max_rtt: Duration,
    /// The scan-wide window at the start, per worker.
    pub initial_window: usize,
}

impl AdaptiveTiming {
    /// `--initial-rtt-timeout` within the bounds: the wait before any
    /// measurement.
    fn guess(&self) -> Duration {
        self.initial_rtt
            .clamp(self.min_rtt, self.max_rtt.max(self.min_rtt))
    }
}

/// Which estimate and window a probe's host uses: a slot in the worker's
/// host table, or none (the host's bucket was busy: scan-wide only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRef(u32);

impl HostRef {
    pub const UNTRACKED: HostRef = HostRef(u32::MAX);

    fn slot(self) -> Option<usize> {
        (self != HostRef::UNTRACKED).then_some(self.0 as usize)
    }
}

/// One event-loop worker's adaptive timing: the scan-wide estimate and
/// window (this worker's share of them), and its per-host table.
#[derive(Debug, Clone)]
pub struct Timing {
    params: AdaptiveTiming,
    max_retries: u32,
    scan_rtt: RttEstimator,
    scan_window: Window,
    scan_retries: RetryEvidence,
    host_window: WindowParams,
    hosts: HostTable,
    karn_skipped: u64,
}

impl Timing {
    /// `max_in_flight` is the worker's share of `--concurrency`.
    pub fn new(params: AdaptiveTiming, max_retries: u32, max_in_flight: usize) -> Timing {
        let max = max_in_flight.max(1);
        let host_window = WindowParams {
            initial: HOST_WINDOW.0,
            floor: HOST_WINDOW.1,
            max,
        };
        Timing {
            params,
            max_retries,
            scan_rtt: RttEstimator::new(),
            scan_window: Window::new(WindowParams {
                initial: params.initial_window,
                floor: HOST_WINDOW.1,
                max,
            }),
            scan_retries: RetryEvidence::default(),
            host_window,
            hosts: HostTable::new(HOST_SLOTS, host_window),
            karn_skipped: 0,
        }
    }

    /// Probes the scan-wide window allows in flight.
    pub fn window(&self) -> usize {
        self.scan_window.allowed()
    }

    /// A new probe of `host` wants to go out: its slot (now counting it in
    /// flight), or `None` if the host's own window is full (try later).
    pub fn enter(&mut self, host: u64) -> Option<HostRef> {
        let Some(slot) = self.hosts.claim(host, self.host_window) else {
            return Some(HostRef::UNTRACKED);
        };
        let s = self.hosts.get_mut(slot);
        if s.in_flight as usize >= s.window.allowed() {
            return None;
        }
        s.in_flight += 1;
        Some(HostRef(slot as u32))
    }

    /// The probe is over (answered, silent, or abandoned).
    pub fn leave(&mut self, host: HostRef) {
        if let Some(slot) = host.slot() {
            let s = self.hosts.get_mut(slot);
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// The estimate a host's probes use: its own with enough samples, the
    /// scan's otherwise.
    fn estimate(&self, host: HostRef) -> &RttEstimator {
        match host.slot().map(|s| &self.hosts.get(s).rtt) {
            Some(rtt) if rtt.samples() >= HOST_SAMPLES => rtt,
            _ => &self.scan_rtt,
        }
    }

    /// How long attempt `try_no` (0 = first) of a probe to `host` waits.
    ///
    /// A host with an estimate of its own is *known*: its timeout, and its
    /// retries wait as long (silence there means a filtered port or a
    /// loss). An unknown host waits the scan's timeout but never less than
    /// `--initial-rtt-timeout`: the first answers of a scan come from its
    /// nearest hosts, and a scan-wide estimate made of them timed out one
    /// probe in nine on netsim's internet-like hosts for nothing (measured,
    /// docs/TIMING.md). An unknown host's retries back off, doubling the
    /// wait (RFC 6298 §5.5) within `--max-rtt-timeout`, until it answers.
    pub fn timeout(&self, host: HostRef, try_no: u32) -> Duration {
        let p = &self.params;
        let known = host
            .slot()
            .is_some_and(|s| self.hosts.get(s).rtt.samples() >= HOST_SAMPLES);
        let max = p.max_rtt.max(p.min_rtt);
        let estimate = self
            .estimate(host)
            .timeout(p.initial_rtt, p.min_rtt, p.max_rtt);
        if known {
            return estimate;
        }
        let backoff = host.slot().map_or(0, |s| self.hosts.get(s).backoff);
        let doublings = backoff + retry_doubling(p, estimate, try_no);
        estimate
            .max(p.guess())
            .saturating_mul(1 << doublings.min(MAX_BACKOFF))
            .min(max)
    }

    /// How long a probe waits when its host's window is full.
    pub fn host_wait(&self, host: u64) -> Duration {
        let srtt = self
            .hosts
            .find(host)
            .map(|s| self.hosts.get(s).rtt)
            .filter(|r| r.samples() > 0)
            .unwrap_or(self.scan_rtt)
            .srtt();
        (srtt / 2).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// Retries a probe to `host` may still get: `--retries` at most, and no
    /// more than one beyond the most this host ever needed (nmap's rule: a
    /// host that never answered a retry gets one retry). An untracked host
    /// gets what the scan's measured loss calls for
    /// ([`RetryEvidence::retries`]).
    pub fn retries(&self, host: HostRef) -> u32 {
        match host.slot() {
            Some(s) => self.max_retries.min(self.hosts.get(s).max_ok_try + 1),
            None => self.scan_retries.retries(self.max_retries),
        }
    }

    /// An attempt `try_no` of a probe to `host` was answered after
    /// `elapsed`; the attempt before it (if any) had waited `waited`. `rtt`
    /// is its clean sample, or `None` when Karn's rule forbids one. An
    /// answer to a retry means an earlier attempt was lost — a drop for the
    /// windows — unless the answer took longer than the earlier attempt
    /// waited: then the timeout was too short (spurious),
    /// nothing was lost, and an unknown host keeps the backed-off timeout
    /// for its next probes (RFC 6298 §5.5–5.7) until it gives samples.
    pub fn answered(
        &mut self,
        host: HostRef,
        try_no: u32,
        elapsed: Duration,
        waited: Duration,
        rtt: Option<Duration>,
        now: Instant,
    ) {
        let hold = self.timeout(host, 0);
        let spurious = try_no > 0 && elapsed >= waited;
        // The doublings of the unknown-host wait that this answer needed; one
        // at most from an answer to a resent SYN (see the back-off below).
        let needed_backoff = {
            let now_backoff = host.slot().map_or(0, |s| self.hosts.get(s).backoff);
            let base = self.timeout(host, 0) / (1 << now_backoff);
            let cap = if rtt.is_some() { MAX_BACKOFF } else { 1 };
            let mut level = 0;
            while level < cap && base.saturating_mul(1 << level) <= elapsed {
                level += 1;
            }
            level
        };
        let signal = if try_no == 0 || spurious {
            Signal::Answer
        } else {
            Signal::Drop
        };
        // Only a real loss shows that more retries can pay.
        let needed = if signal == Signal::Drop { try_no } else { 0 };
        match rtt {
            Some(rtt) => self.scan_rtt.sample(rtt),
            None => self.karn_skipped += 1,
        }
        self.scan_retries.answered(needed);
        self.scan_window.on(signal, now, hold);
        if let Some(slot) = host.slot() {
            let s = self.hosts.get_mut(slot);
            if let Some(rtt) = rtt {
                s.rtt.sample(rtt);
            }
            s.max_ok_try = s.max_ok_try.max(needed);
            s.window.on(signal, now, hold);
            // An answer to a retransmitted SYN (no clean sample) may be to
            // the kernel's later SYN: it only backs off a host that has
            // never given a clean sample (one farther than the kernel's RTO).
            // It backs off one doubling at most (the cap above): a SYN lost
            // and resent by the kernel looks the same, and one such answer
            // set an 8-fold, 10 s wait that ended an internet-like /22 scan
            // 4 s late.
            let trusted = rtt.is_some() || s.rtt.samples() == 0;
            if spurious && trusted && s.rtt.samples() < HOST_SAMPLES {
                s.backoff = s.backoff.max(needed_backoff);
            } else if s.rtt.samples() >= HOST_SAMPLES {
                s.backoff = 0;
            }
        }
    }

    /// Every attempt of a probe went unanswered.
    pub fn silent(&mut self, host: HostRef, now: Instant) {
        let hold = self.timeout(host, 0);
        self.scan_window.on(Signal::Silence, now, hold);
        if let Some(slot) = host.slot() {
            self.hosts
                .get_mut(slot)
                .window
                .on(Signal::Silence, now, hold);
        }
    }

    /// Where this worker's timing stands, for the summary.
    pub fn summary(&self) -> TimingSummary {
        TimingSummary {
            window: self.scan_window.allowed() as u64,
            window_cuts: self.scan_window.cuts(),
            hosts_tracked: self.hosts.estimates(HOST_SAMPLES).count() as u64,
            ..TimingSummary::adaptive(&self.params, &self.scan_rtt, self.karn_skipped)
        }
    }
}

/// The threads engine's timing: one scan-wide estimate and retry allowance
/// that every thread shares (behind a mutex); its window is the thread
/// count.
#[derive(Debug, Clone)]
pub struct SharedTiming {
    params: AdaptiveTiming,
    max_retries: u32,
    rtt: RttEstimator,
    retries: RetryEvidence,
    karn_skipped: u64,
}

impl SharedTiming {
    pub fn new(params: AdaptiveTiming, max_retries: u32) -> SharedTiming {
        SharedTiming {
            params,
            max_retries,
            rtt: RttEstimator::new(),
            retries: RetryEvidence::default(),
            karn_skipped: 0,
        }
    }

    /// Attempt `try_no`'s wait, as [`Timing::timeout`] with the scan's estimate.
    pub fn timeout(&self, try_no: u32) -> Duration {
        let p = &self.params;
        let base = self.rtt.timeout(p.initial_rtt, p.min_rtt, p.max_rtt);
        base.saturating_mul(1 << retry_doubling(p, base, try_no))
            .min(p.max_rtt.max(p.min_rtt))
    }

    /// As [`Timing::retries`] for an untracked host: every host is one here.
    pub fn retries(&self) -> u32 {
        self.retries.retries(self.max_retries)
    }

    /// As [`Timing::answered`], without windows.
    pub fn answered(&mut self, try_no: u32, elapsed: Duration, rtt: Option<Duration>) {
        let spurious = try_no > 0 && elapsed >= self.timeout(try_no - 1);
        // (The shared timeout only grows with try_no: this is what the
        // earlier attempt waited, up to the estimate's drift.)
        self.retries.answered(if spurious { 0 } else { try_no });
        match rtt {
            Some(rtt) => self.rtt.sample(rtt),
            None => self.karn_skipped += 1,
        }
    }

    pub fn summary(&self, threads: usize) -> TimingSummary {
        TimingSummary {
            window: threads as u64,
            ..TimingSummary::adaptive(&self.params, &self.rtt, self.karn_skipped)
        }
    }
}

/// The timing a scan ended with, as the summary reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimingSummary {
    /// Adaptive timing (false: `--timeout` fixed every attempt's wait).
    pub adaptive: bool,
    /// Scan-wide smoothed RTT and variation (RFC 6298).
    pub srtt_us: u64,
    pub rttvar_us: u64,
    /// The scan-wide estimate's timeout at the end (the fixed `--timeout`
    /// when not adaptive).
    pub timeout_us: u64,
    /// Probes the congestion windows allowed in flight at the end, all
    /// workers together (`--concurrency` when not adaptive).
    pub window: u64,
    /// Times a window was halved after drops.
    pub window_cuts: u64,
    /// RTT samples taken.
    pub samples: u64,
    /// Answers that gave no sample (Karn's rule: the SYN was retransmitted).
    pub karn_skipped: u64,
    /// Hosts with their own estimate at the end (in the fixed-size tables).
    pub hosts_tracked: u64,
}

impl TimingSummary {
    /// An adaptive scan's estimate (windows and host counts left at 0).
    fn adaptive(p: &AdaptiveTiming, rtt: &RttEstimator, karn_skipped: u64) -> TimingSummary {
        TimingSummary {
            adaptive: true,
            srtt_us: rtt.srtt().as_micros() as u64,
            rttvar_us: rtt.rttvar().as_micros() as u64,
            timeout_us: rtt.timeout(p.initial_rtt, p.min_rtt, p.max_rtt).as_micros() as u64,
            samples: u64::from(rtt.samples()),
            karn_skipped,
            ..TimingSummary::default()
        }
    }

    /// A fixed timeout.
    pub fn fixed(timeout: Duration, concurrency: usize) -> TimingSummary {
        TimingSummary {
            timeout_us: timeout.as_micros() as u64,
            window: concurrency as u64,
            ..TimingSummary::default()
        }
    }

    /// Adds another worker's: windows and counts add; the estimates are
    /// averaged, weighted by samples.
    pub fn merge(&mut self, other: &TimingSummary) {
        let (a, b) = (self.samples, other.samples);
        let avg = |x: u64, y: u64| {
            if a + b == 0 {
                x.max(y)
            } else {
                ((u128::from(x) * u128::from(a) + u128::from(y) * u128::from(b))
                    / u128::from(a + b)) as u64
            }
        };
        self.srtt_us = avg(self.srtt_us, other.srtt_us);
        self.rttvar_us = avg(self.rttvar_us, other.rttvar_us);
        self.timeout_us = avg(self.timeout_us, other.timeout_us);
        self.adaptive |= other.adaptive;
        self.window += other.window;
        self.window_cuts += other.window_cuts;
        self.samples += other.samples;
        self.karn_skipped += other.karn_skipped;
        self.hosts_tracked += other.hosts_tracked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// `-T4`'s settings.
    fn t4_params() -> AdaptiveTiming {
        let v = Template::Aggressive.values();
        AdaptiveTiming {
            initial_rtt: v.initial_rtt,
            min_rtt: v.min_rtt,
            max_rtt: v.max_rtt,
            initial_window: v.initial_window,
        }
    }

    fn t4() -> Timing {
        Timing::new(t4_params(), Template::Aggressive.values().max_retries, 1000)
    }

    #[test]
    fn templates_parse_by_level_and_name() {
        assert_eq!(Template::parse("4"), Ok(Template::Aggressive));
        assert_eq!(Template::parse("Insane"), Ok(Template::Insane));
        assert_eq!(Template::parse("paranoid"), Ok(Template::Paranoid));
        assert!(Template::parse("6").is_err());
        assert_eq!(
            Template::parse("fast").unwrap_err().to_string(),
            "invalid -T \"fast\": expected 0-5 or paranoid, sneaky, polite, normal, aggressive, insane"
        );
        // nmap's facts.
        let v = Template::Aggressive.values();
        assert_eq!(
            (v.min_rtt, v.max_rtt, v.initial_rtt),
            (MS(100), MS(1250), MS(500))
        );
        assert_eq!(v.max_retries, 6);
        let v = Template::Insane.values();
        assert_eq!(
            (v.min_rtt, v.max_rtt, v.initial_rtt),
            (MS(50), MS(300), MS(250))
        );
        assert_eq!(v.max_retries, 2);
        let v = Template::Paranoid.values();
        assert_eq!(v.max_concurrency, Some(1));
        assert_eq!(v.max_rtt, MS(300_000));
    }

    #[test]
    fn a_host_gets_its_own_timeout_after_three_samples() {
        let t0 = Instant::now();
        let mut t = t4();
        // A near host answers fast; a far one has not answered yet.
        let near = t.enter(1).unwrap();
        assert_eq!(t.timeout(near, 0), MS(500), "initial before any sample");
        for i in 0..2 {
            t.answered(near, 0, MS(300), Duration::ZERO, Some(MS(300)), t0 + MS(i));
        }
        let far = t.enter(2).unwrap();
        // Two samples: both hosts are still unknown.
        assert_eq!(t.timeout(near, 0), t.timeout(far, 0));
        for i in 0..60 {
            t.answered(near, 0, MS(2), Duration::ZERO, Some(MS(2)), t0 + MS(10 + i));
        }
        assert_eq!(t.timeout(near, 0), MS(100), "min-rtt-timeout");
        // A host without samples of its own waits at least the initial
        // timeout: the scan's first answers come from its nearest hosts.
        assert_eq!(t.timeout(far, 0), MS(500));
        // A known host's retries wait as long; an unknown one's wait twice
        // as long, up to max-rtt-timeout.
        assert_eq!(t.timeout(near, 1), MS(100));
        let unknown = t.timeout(far, 0);
        assert_eq!(t.timeout(far, 1), (unknown * 2).min(MS(1250)));
        assert_eq!(t.timeout(far, 10), t.timeout(far, 1));
    }

    #[test]
    fn retries_back_off_from_the_guess_not_from_a_measured_estimate() {
        let t0 = Instant::now();
        let mut t = t4();
        // The scan has measured slow answers: its timeout is above the
        // initial guess (500 ms) and below max-rtt-timeout (1250 ms).
        let known = t.enter(1).unwrap();
        for (i, ms) in [600, 650, 700, 620, 680, 640].into_iter().enumerate() {
            t.answered(
                known,
                0,
                MS(ms),
                Duration::ZERO,
                Some(MS(ms)),
                t0 + MS(i as u64),
            );
        }
        let far = t.enter(2).unwrap();
        let first = t.timeout(far, 0);
        assert!(first > MS(500) && first < MS(1250), "{first:?}");
        // A retry waits as long: the estimate already spans the slow hosts.
        assert_eq!(t.timeout(far, 1), first);
        // An untracked host likewise.
        assert_eq!(t.timeout(HostRef::UNTRACKED, 1), first);
    }

    #[test]
    fn the_threads_engines_shared_timing_follows_the_same_retry_rule() {
        let mut t = SharedTiming::new(t4_params(), Template::Aggressive.values().max_retries);
        // No sample: the guess, doubled for retries.
        assert_eq!(
            (t.timeout(0), t.timeout(1), t.timeout(5)),
            (MS(500), MS(1000), MS(1000))
        );
        // Measured above the guess: retries wait as long.
        for ms in [600, 650, 700, 620, 680, 640] {
            t.answered(0, MS(ms), Some(MS(ms)));
        }
        let measured = t.timeout(0);
        assert!(measured > MS(500), "{measured:?}");
        assert_eq!(t.timeout(1), measured);
        assert_eq!(t.retries(), 1);
    }

    #[test]
    fn untracked_hosts_get_the_retries_the_measured_loss_calls_for() {
        let evidence = |answers: u64, lost: u64, max_ok_try: u32| RetryEvidence {
            answers,
            lost,
            max_ok_try,
        };
        // Too few answers, or no loss: nmap's one retry.
        assert_eq!(evidence(0, 0, 0).retries(10), 1);
        assert_eq!(evidence(199, 50, 3).retries(10), 1);
        assert_eq!(evidence(10_000, 0, 0).retries(10), 1);
        // 1 % of answers came only to a retry: 0.01² = 1e-4, one retry.
        assert_eq!(evidence(10_000, 100, 3).retries(10), 1);
        // 10 %: 0.1⁴ = 1e-4, three retries; 20 %: five (0.2⁶ < 1e-4).
        assert_eq!(evidence(10_000, 1_000, 5).retries(10), 3);
        assert_eq!(evidence(10_000, 2_000, 9).retries(10), 5);
        // Never more than the scan ever needed plus one, nor --retries.
        assert_eq!(evidence(10_000, 2_000, 1).retries(10), 2);
        assert_eq!(evidence(10_000, 2_000, 9).retries(2), 2);
        assert_eq!(evidence(10_000, 2_000, 9).retries(0), 0);
    }

    #[test]
    fn a_host_that_answers_slowly_then_fast() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(7).unwrap();
        for i in 0..10 {
            t.answered(h, 0, MS(900), Duration::ZERO, Some(MS(900)), t0 + MS(i));
        }
        let slow = t.timeout(h, 0);
        assert!(slow > MS(900) && slow <= MS(1250), "slow: {slow:?}");
        for i in 0..40 {
            t.answered(h, 0, MS(30), Duration::ZERO, Some(MS(30)), t0 + MS(100 + i));
        }
        assert_eq!(t.timeout(h, 0), MS(100), "fast again: at the floor");
    }

    #[test]
    fn a_host_that_goes_silent_keeps_its_timeout_and_the_window() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(3).unwrap();
        for i in 0..10 {
            t.answered(h, 0, MS(50), Duration::ZERO, Some(MS(50)), t0 + MS(i));
        }
        let before = (t.timeout(h, 0), t.window());
        // Then nothing answers: filtered ports say nothing about the path.
        for i in 0..100 {
            t.silent(h, t0 + MS(1000 + i));
        }
        assert_eq!((t.timeout(h, 0), t.window()), before);
        // And it gets one retry per port: it never showed it needed more.
        assert_eq!(t.retries(h), 1);
    }

    #[test]
    fn answers_to_retries_cut_the_windows_and_allow_more_retries() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(5).unwrap();
        for i in 0..200 {
            t.answered(
                h,
                0,
                MS(10),
                Duration::ZERO,
                Some(MS(10)),
                t0 + Duration::from_micros(i),
            );
        }
        let grown = t.window();
        assert!(grown > 128, "{grown}");
        t.answered(h, 2, MS(10), MS(1000), Some(MS(10)), t0 + MS(1));
        assert_eq!(t.retries(h), 3);
        // One loss in 201 answers: an untracked host needs one retry.
        assert_eq!(t.retries(HostRef::UNTRACKED), 1, "the scan's loss is low");
        // A round where most answers come only to retries: cut once.
        for i in 0..grown {
            t.answered(
                h,
                1,
                MS(10),
                MS(100),
                Some(MS(10)),
                t0 + MS(2) + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(t.window(), grown / 2);
        assert_eq!(t.summary().window_cuts, 1);
        // Clean rounds end whatever round the drops were in.
        for i in 0..2 * grown {
            t.answered(
                h,
                0,
                MS(10),
                Duration::ZERO,
                Some(MS(10)),
                t0 + MS(1000) + Duration::from_micros(i as u64),
            );
        }
        // A retry answered later than the first attempt waited: the timeout
        // was too short, nothing was lost.
        let before = t.summary().window_cuts;
        for i in 0..1000 {
            t.answered(
                h,
                1,
                MS(5000),
                MS(1000),
                Some(MS(5000)),
                t0 + MS(10_000 * i),
            );
        }
        assert_eq!(t.summary().window_cuts, before);
    }

    /// netsim's first "very far" run: every answer takes 1.5 s, so every
    /// SYN was retransmitted by the kernel (at 1 s) and Karn's rule gives no
    /// sample at all. The host stays unknown: its answers to retries must
    /// not count as drops (they came after the first attempt's wait), and
    /// its next probes start from the backed-off timeout.
    #[test]
    fn a_host_farther_than_the_kernels_rto_is_not_congestion() {
        let t0 = Instant::now();
        let mut t = Timing::new(
            AdaptiveTiming {
                initial_rtt: MS(1000),
                min_rtt: MS(100),
                max_rtt: MS(10_000),
                initial_window: 64,
            },
            10,
            1000,
        );
        let h = t.enter(4).unwrap();
        assert_eq!((t.timeout(h, 0), t.timeout(h, 1)), (MS(1000), MS(2000)));
        for i in 0..500 {
            t.answered(h, 1, MS(1500), MS(1000), None, t0 + MS(10 * i));
        }
        let s = t.summary();
        assert_eq!((s.window_cuts, s.samples, s.karn_skipped), (0, 0, 500));
        assert!(t.window() > 64, "answers grow the window: {}", t.window());
        assert_eq!(t.timeout(h, 0), MS(2000), "backed off for the next probes");
        assert_eq!(t.retries(h), 1, "spurious retries earn no more retries");
        // An answer 6 s late without a clean sample (a SYN the kernel resent
        // twice, or a host that far) backs another host off once, not 8-fold.
        let g = t.enter(5).unwrap();
        t.answered(g, 1, MS(6000), MS(2000), None, t0 + MS(6000));
        assert_eq!(t.timeout(g, 0), MS(2000));
    }

    #[test]
    fn karn_no_sample_from_a_retransmitted_syn() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(9).unwrap();
        t.answered(h, 0, MS(1500), Duration::ZERO, None, t0);
        assert_eq!(t.summary().samples, 0);
        assert_eq!(t.summary().karn_skipped, 1);
        assert_eq!(t.timeout(h, 0), MS(500));
    }

    #[test]
    fn a_host_window_holds_probes_back() {
        let mut t = t4();
        let mut refs = Vec::new();
        while let Some(r) = t.enter(11) {
            refs.push(r);
            assert!(refs.len() <= HOST_WINDOW.0);
        }
        assert_eq!(refs.len(), HOST_WINDOW.0);
        t.leave(refs.pop().unwrap());
        assert!(t.enter(11).is_some());
        assert!(t.enter(12).is_some(), "other hosts are not held");
    }

    #[test]
    fn summaries_merge_weighted() {
        let mut a = TimingSummary {
            adaptive: true,
            srtt_us: 100,
            samples: 3,
            window: 10,
            ..Default::default()
        };
        let b = TimingSummary {
            adaptive: true,
            srtt_us: 500,
            samples: 1,
            window: 20,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!((a.srtt_us, a.window, a.samples), (200, 30, 4));
    }
}
