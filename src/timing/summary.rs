//! The timing a scan ended with, as the summary reports it: each worker's
//! state reduced to a few numbers, merged across workers.

use std::time::Duration;

use serde::Serialize;

use super::AdaptiveTiming;
use super::rtt::RttEstimator;

/// The timing a scan ended with, as the summary reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimingSummary {
    /// Adaptive timing (false: `--timeout` fixed every attempt's wait).
    pub adaptive: bool,
    /// Scan-wide smoothed RTT and variation (RFC 6298).
    pub srtt_us: u64,
    /// The RTT variation at the end, in microseconds.
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
    /// Hosts found to limit their RSTs (paced from then on).
    #[serde(default)]
    pub rst_limited_hosts: u64,
    /// Extra attempts their held ports got.
    #[serde(default)]
    pub rst_limited_retries: u64,
}

impl TimingSummary {
    /// An adaptive scan's estimate (windows and host counts left at 0).
    pub(crate) fn adaptive(
        p: &AdaptiveTiming,
        rtt: &RttEstimator,
        karn_skipped: u64,
    ) -> TimingSummary {
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
        self.rst_limited_hosts += other.rst_limited_hosts;
        self.rst_limited_retries += other.rst_limited_retries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
