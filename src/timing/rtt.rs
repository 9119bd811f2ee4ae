//! Round-trip time estimation as RFC 6298 (and nmap) do it: a smoothed RTT
//! and its mean deviation, and a retransmission timeout of
//! `srtt + 4 × rttvar` kept within bounds.
//!
//! Integer microseconds, no clock: samples are given, the timeout is asked.

use std::time::Duration;

/// RFC 6298's K: how many mean deviations above the smoothed RTT a timeout
/// waits.
const K: u64 = 4;
/// RFC 6298's G, the clock granularity: the timer wheel ticks in 1 ms.
const GRANULARITY_US: u64 = 1_000;
/// The margin above `srtt` is at least `srtt / SRTT_MARGIN_DIV`. A host's
/// answers vary less than the queues on the way do (ours, the kernel's, a
/// loaded path's): with RFC 6298's bare `4 × rttvar` a steady 300 ms host
/// got a 304 ms timeout, and on netsim's internet-like profile one port in
/// nine was retried for nothing. Half the RTT of margin costs a filtered
/// port 1.5 RTT instead of 1.
const SRTT_MARGIN_DIV: u64 = 2;
/// ... but that floor is at most this much. The queues that make answers
/// late add milliseconds, not a share of the distance: netsim's timers ran
/// 90-160 ms late (p99) on the loaded machine whatever the host's RTT.
/// Uncapped, a filtered port of a host 600 ms away waited 900 ms a try,
/// 1 s on internet-like's farthest, and those chains (three tries) were
/// the tail of every scan: 150 ms took lossy /22 from 8.08 to 6.15 s and
/// internet-like from 6.95 to 5.95 s (medians of three, same accuracy).
/// `4 × rttvar` still widens it for a host whose answers do vary.
const SRTT_MARGIN_CAP_US: u64 = 150_000;

/// A smoothed RTT and RTT variation (RFC 6298 §2), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttEstimator {
    srtt_us: u64,
    rttvar_us: u64,
    samples: u32,
}

impl RttEstimator {
    /// An estimator with no sample yet.
    pub const fn new() -> RttEstimator {
        RttEstimator {
            srtt_us: 0,
            rttvar_us: 0,
            samples: 0,
        }
    }

    /// An estimator as [`srtt`](Self::srtt), [`rttvar`](Self::rttvar) and
    /// [`samples`](Self::samples) described it (kept across a resume).
    pub const fn restored(srtt_us: u64, rttvar_us: u64, samples: u32) -> RttEstimator {
        RttEstimator {
            srtt_us,
            rttvar_us,
            samples,
        }
    }

    /// Takes one RTT measurement (RFC 6298 §2.2 and §2.3: α = 1/8, β = 1/4).
    pub fn sample(&mut self, rtt: Duration) {
        let r = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX / 16);
        let r = r.min(u64::MAX / 16); // keeps the sums below from overflowing
        if self.samples == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2;
        } else {
            let err = self.srtt_us.abs_diff(r);
            self.rttvar_us = (3 * self.rttvar_us + err) / 4;
            self.srtt_us = (7 * self.srtt_us + r) / 8;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// The smoothed RTT (`SRTT`).
    pub fn srtt(&self) -> Duration {
        Duration::from_micros(self.srtt_us)
    }

    /// The RTT variation (`RTTVAR`).
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar_us)
    }

    /// `srtt + max(G, 4 × rttvar, min(srtt / 2, 150 ms))` within
    /// `[min, max]`; `initial` before the first sample (RFC 6298 §2.1, §2.4;
    /// the `srtt / 2` floor and its cap are FastPort's, see
    /// `SRTT_MARGIN_DIV` and `SRTT_MARGIN_CAP_US`).
    pub fn timeout(&self, initial: Duration, min: Duration, max: Duration) -> Duration {
        if self.samples == 0 {
            return initial.clamp(min, max.max(min));
        }
        let margin = (K * self.rttvar_us)
            .max(GRANULARITY_US)
            .max((self.srtt_us / SRTT_MARGIN_DIV).min(SRTT_MARGIN_CAP_US));
        let us = self.srtt_us.saturating_add(margin);
        Duration::from_micros(us).clamp(min, max.max(min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A steady host 600 ms away waited 900 ms a try (half its RTT of
    /// margin); its filtered ports' three tries were a scan's tail.
    #[test]
    fn a_far_steady_hosts_margin_is_at_most_150_ms() {
        let steady = |ms: u64| {
            let mut e = RttEstimator::new();
            for _ in 0..40 {
                e.sample(MS(ms));
            }
            e.timeout(MS(1000), MS(100), MS(10_000))
        };
        assert_eq!(steady(100), MS(150), "half the RTT below 300 ms");
        assert_eq!(steady(300), MS(450));
        assert_eq!(steady(600), MS(750));
        assert_eq!(steady(1000), MS(1150));
        // A host whose answers vary keeps RFC 6298's 4 × rttvar.
        let mut e = RttEstimator::new();
        for i in 0..40 {
            e.sample(MS(if i % 2 == 0 { 500 } else { 700 }));
        }
        assert!(e.timeout(MS(1000), MS(100), MS(10_000)) > MS(900));
    }

    #[test]
    fn the_first_sample_sets_srtt_and_half_of_it_as_variation() {
        let mut e = RttEstimator::new();
        assert_eq!(e.timeout(MS(1000), MS(100), MS(10_000)), MS(1000));
        e.sample(MS(200));
        assert_eq!((e.srtt(), e.rttvar()), (MS(200), MS(100)));
        assert_eq!(e.timeout(MS(1000), MS(100), MS(10_000)), MS(600));
    }

    #[test]
    fn a_steady_path_converges_to_one_and_a_half_srtt() {
        let mut e = RttEstimator::new();
        for _ in 0..200 {
            e.sample(MS(80));
        }
        assert_eq!(e.srtt(), MS(80));
        assert!(e.rttvar() < MS(1), "{:?}", e.rttvar());
        assert_eq!(e.timeout(MS(1000), MS(1), MS(10_000)), MS(120));
        let mut e = RttEstimator::new();
        for _ in 0..200 {
            e.sample(Duration::from_micros(500));
        }
        assert_eq!(
            e.timeout(MS(1000), MS(1), MS(10_000)),
            MS(1) + Duration::from_micros(500),
            "G"
        );
        // The floor holds.
        assert_eq!(e.timeout(MS(1000), MS(100), MS(10_000)), MS(100));
    }

    #[test]
    fn rfc_6298_update_rule() {
        let mut e = RttEstimator::new();
        e.sample(MS(100)); // srtt 100, rttvar 50
        e.sample(MS(300)); // rttvar = 3/4·50 + 1/4·200 = 87.5; srtt = 7/8·100 + 1/8·300 = 125
        assert_eq!(e.srtt(), MS(125));
        assert_eq!(e.rttvar(), Duration::from_micros(87_500));
        assert_eq!(e.timeout(MS(1), MS(1), MS(10_000)), MS(475));
        assert_eq!(
            e.timeout(MS(1), MS(1), MS(300)),
            MS(300),
            "the ceiling holds"
        );
    }

    #[test]
    fn slow_then_fast_comes_down() {
        let mut e = RttEstimator::new();
        for _ in 0..20 {
            e.sample(MS(900));
        }
        let slow = e.timeout(MS(1000), MS(100), MS(10_000));
        assert!(slow >= MS(900), "{slow:?}");
        for _ in 0..60 {
            e.sample(MS(20));
        }
        let fast = e.timeout(MS(1000), MS(100), MS(10_000));
        assert_eq!(fast, MS(100), "{:?} {:?}", e.srtt(), e.rttvar());
    }

    #[test]
    fn huge_samples_do_not_overflow() {
        let mut e = RttEstimator::new();
        e.sample(Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(Duration::ZERO);
        assert_eq!(e.timeout(MS(1), MS(1), MS(5)), MS(5));
    }
}
