//! The validated adaptive-timing settings a scan runs with (from `-T` and
//! the `--*-rtt-timeout` flags), and the one rule derived from them alone.

use std::time::Duration;

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
    pub(crate) fn guess(&self) -> Duration {
        self.initial_rtt
            .clamp(self.min_rtt, self.max_rtt.max(self.min_rtt))
    }
}

/// Doublings of attempt `try_no`'s wait (0 = first attempt) when the
/// estimate gives `estimate`: one for every retry while the wait is the
/// initial guess, none once a measured estimate is above it (it already
/// spans the scan's slow hosts, and late in a scan it is biased up by them).
/// One doubling for all retries: more made a filtered port on an unknown
/// host cost 1.6 + 3.2 + 6.4 + 10 s on internet-like (/22).
pub(crate) fn retry_doubling(p: &AdaptiveTiming, estimate: Duration, try_no: u32) -> u32 {
    u32::from(estimate <= p.guess()).min(try_no)
}
