//! A run's time series: launches, completions per reason, probes in flight
//! and the congestion window, per 100 ms, so `fastport report` can draw the
//! run without a trace.
//!
//! [`Series`] is a pure recorder: every call takes `now`, the time since the
//! run started on the scan's one monotonic clock, so tests drive it with a
//! fake clock. Memory is bounded for runs of any length: the buckets are
//! allocated once ([`Series::with_capacity`]) and when time runs past the last
//! one, neighbouring buckets are merged in pairs and the bucket width doubles
//! (100 ms, 200 ms, 400 ms, ...), as a long recording is coarsened rather
//! than cut. Each worker owns one; [`Series::merge`] adds workers together.
//!
//! On disk it is the `series` field of the `--stats` document
//! ([`SeriesDoc`], columnar: one array per quantity, one entry per bucket).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::Reason;

/// The width of a bucket until the run outgrows the buckets: 100 ms.
pub const BUCKET: Duration = Duration::from_millis(100);

/// Buckets kept by default: 2048 × 100 ms covers 3 min 24 s before the first
/// coarsening, and a week-long run still has ≥ 1024 points.
pub const DEFAULT_BUCKETS: usize = 2048;

/// One time slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    launches: u64,
    completions: [u64; Reason::COUNT],
    /// Sum of the in-flight samples taken in this slice.
    in_flight_sum: u64,
    /// Sum of the window samples taken in this slice.
    window_sum: u64,
    /// Samples taken in this slice.
    samples: u64,
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        self.launches += o.launches;
        for (a, b) in self.completions.iter_mut().zip(o.completions) {
            *a += b;
        }
        self.in_flight_sum += o.in_flight_sum;
        self.window_sum += o.window_sum;
        self.samples += o.samples;
    }
}

/// Launches, completions and samples per time slice of one worker (or of the
/// whole run, after [`Series::merge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Current bucket width, in microseconds (100 ms × 2^k).
    width_us: u64,
    buckets: Vec<Bucket>,
    /// Most buckets kept; a power of two ≥ 2.
    capacity: usize,
}

impl Default for Series {
    fn default() -> Self {
        Series::new()
    }
}

impl Series {
    pub fn new() -> Series {
        Series::with_capacity(DEFAULT_BUCKETS)
    }

    /// A recorder keeping at most `capacity` buckets (rounded up to an even
    /// number ≥ 2), allocated now so recording never allocates.
    pub fn with_capacity(capacity: usize) -> Series {
        let capacity = capacity.max(2).next_multiple_of(2);
        Series {
            width_us: BUCKET.as_micros() as u64,
            buckets: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// The current bucket width.
    pub fn width(&self) -> Duration {
        Duration::from_micros(self.width_us)
    }

    /// Number of buckets holding data so far (the last one is partial).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// A connect attempt started (retries included).
    pub fn record_launch(&mut self, now: Duration) {
        self.bucket(now).launches += 1;
    }

    /// A port got its final result.
    pub fn record_completion(&mut self, reason: Reason, now: Duration) {
        self.bucket(now).completions[reason.index()] += 1;
    }

    /// The engine's state at `now`: probes in flight and the congestion
    /// window (the in-flight cap when timing is fixed). Sampled as often as
    /// the engine likes; a bucket reports the mean of its samples.
    pub fn sample(&mut self, in_flight: u64, window: u64, now: Duration) {
        let b = self.bucket(now);
        b.in_flight_sum += in_flight;
        b.window_sum += window;
        b.samples += 1;
    }

    /// The bucket `now` falls in, coarsening until it fits.
    fn bucket(&mut self, now: Duration) -> &mut Bucket {
        let us = now.as_micros().min(u128::from(u64::MAX)) as u64;
        let mut i = (us / self.width_us) as usize;
        while i >= self.capacity {
            self.coarsen();
            i = (us / self.width_us) as usize;
        }
        if i >= self.buckets.len() {
            self.buckets.resize(i + 1, Bucket::default());
        }
        &mut self.buckets[i]
    }

    /// Halves the resolution: buckets 2k and 2k+1 become bucket k.
    fn coarsen(&mut self) {
        let n = self.buckets.len();
        for k in 0..n.div_ceil(2) {
            let mut merged = self.buckets[2 * k];
            if let Some(next) = self.buckets.get(2 * k + 1) {
                merged.add(next);
            }
            self.buckets[k] = merged;
        }
        self.buckets.truncate(n.div_ceil(2));
        self.width_us *= 2;
    }

    /// Adds another worker's series (same run, same clock) into this one:
    /// counts add, and so do the mean in-flight and window of each slice
    /// (workers run side by side).
    pub fn merge(&mut self, other: &Series) {
        let mut other = other.clone();
        while other.width_us < self.width_us {
            other.coarsen();
        }
        while self.width_us < other.width_us {
            self.coarsen();
        }
        if other.buckets.len() > self.buckets.len() {
            self.buckets.resize(other.buckets.len(), Bucket::default());
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            // Means add: rescale both sides to a common sample count.
            let samples = a.samples.max(b.samples);
            let (fa, fb) = (a.samples.max(1), b.samples.max(1));
            let in_flight = a.in_flight_sum * samples / fa + b.in_flight_sum * samples / fb;
            let window = a.window_sum * samples / fa + b.window_sum * samples / fb;
            a.launches += b.launches;
            for (x, y) in a.completions.iter_mut().zip(b.completions) {
                *x += y;
            }
            a.in_flight_sum = in_flight;
            a.window_sum = window;
            a.samples = samples;
        }
        // The merged series may exceed this one's capacity only if the other
        // had more: keep the larger bound.
        self.capacity = self.capacity.max(other.capacity);
    }

    /// The columnar document written into `--stats` as `series`.
    pub fn to_doc(&self) -> SeriesDoc {
        let mut completions = BTreeMap::new();
        for r in Reason::ALL {
            let column: Vec<u64> = self
                .buckets
                .iter()
                .map(|b| b.completions[r.index()])
                .collect();
            if column.iter().any(|&n| n > 0) {
                completions.insert(format!("{}/{}", r.state(), r), column);
            }
        }
        let mean = |sum: u64, n: u64| {
            if n == 0 {
                None
            } else {
                Some(sum as f64 / n as f64)
            }
        };
        SeriesDoc {
            bucket_ms: self.width_us as f64 / 1000.0,
            launches: self.buckets.iter().map(|b| b.launches).collect(),
            completions,
            in_flight: self
                .buckets
                .iter()
                .map(|b| mean(b.in_flight_sum, b.samples))
                .collect(),
            window: self
                .buckets
                .iter()
                .map(|b| mean(b.window_sum, b.samples))
                .collect(),
        }
    }
}

/// The `series` field of a `--stats` document: bucket `i` covers
/// `[i × bucket_ms, (i + 1) × bucket_ms)` milliseconds after the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SeriesDoc {
    /// Width of every bucket, in milliseconds (100 unless the run was long
    /// enough to be coarsened).
    pub bucket_ms: f64,
    /// Connect attempts started per bucket, retries included.
    pub launches: Vec<u64>,
    /// Final results per bucket, by `state/reason` (reasons never seen are
    /// left out).
    #[serde(default)]
    pub completions: BTreeMap<String, Vec<u64>>,
    /// Mean probes in flight per bucket (`null`: not sampled in it).
    #[serde(default)]
    pub in_flight: Vec<Option<f64>>,
    /// Mean congestion window per bucket (`null`: not sampled in it).
    #[serde(default)]
    pub window: Vec<Option<f64>>,
}

impl SeriesDoc {
    /// Buckets in the document.
    pub fn len(&self) -> usize {
        self.launches
            .len()
            .max(self.in_flight.len())
            .max(self.window.len())
            .max(self.completions.values().map(Vec::len).max().unwrap_or(0))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completions of every reason per bucket.
    pub fn completions_total(&self) -> Vec<u64> {
        let mut out = vec![0; self.len()];
        for column in self.completions.values() {
            for (o, n) in out.iter_mut().zip(column) {
                *o += n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn events_land_in_their_100ms_bucket() {
        let mut s = Series::new();
        s.record_launch(ms(0));
        s.record_launch(ms(99));
        s.record_launch(ms(100));
        s.record_completion(Reason::SynAck, ms(250));
        s.record_completion(Reason::ConnRefused, ms(299));
        s.sample(10, 20, ms(250));
        s.sample(30, 40, ms(260));
        let d = s.to_doc();
        assert_eq!(d.bucket_ms, 100.0);
        assert_eq!(d.launches, vec![2, 1, 0]);
        assert_eq!(d.completions["open/syn-ack"], vec![0, 0, 1]);
        assert_eq!(d.completions["closed/conn-refused"], vec![0, 0, 1]);
        assert!(!d.completions.contains_key("filtered/no-response"));
        assert_eq!(d.in_flight, vec![None, None, Some(20.0)]);
        assert_eq!(d.window, vec![None, None, Some(30.0)]);
        assert_eq!(d.completions_total(), vec![0, 0, 2]);
    }

    #[test]
    fn a_long_run_is_coarsened_not_cut_and_never_grows_past_capacity() {
        let mut s = Series::with_capacity(8);
        // One launch every 100 ms for 10 s: 100 launches.
        for i in 0..100 {
            s.record_launch(ms(i * 100));
            assert!(s.len() <= 8);
        }
        // 8 × 100 ms = 0.8 s; 10 s needs width 1.6 s (8 × 1.6 = 12.8 s).
        assert_eq!(s.width(), ms(1600));
        let d = s.to_doc();
        assert_eq!(d.bucket_ms, 1600.0);
        assert_eq!(d.launches.iter().sum::<u64>(), 100);
        assert_eq!(d.launches, vec![16, 16, 16, 16, 16, 16, 4]);
    }

    #[test]
    fn coarsening_keeps_the_mean_of_samples() {
        let mut s = Series::with_capacity(2);
        s.sample(10, 1, ms(0));
        s.sample(30, 3, ms(150));
        s.sample(50, 5, ms(250));
        let d = s.to_doc();
        assert_eq!(d.bucket_ms, 200.0);
        assert_eq!(d.in_flight, vec![Some(20.0), Some(50.0)]);
        assert_eq!(d.window, vec![Some(2.0), Some(5.0)]);
    }

    #[test]
    fn merging_workers_adds_counts_and_in_flight() {
        let mut a = Series::new();
        let mut b = Series::with_capacity(4);
        a.record_launch(ms(50));
        a.sample(100, 200, ms(50));
        b.record_launch(ms(60));
        b.sample(10, 20, ms(60));
        b.sample(30, 40, ms(70));
        b.record_completion(Reason::NoResponse, ms(1500));
        a.merge(&b);
        let d = a.to_doc();
        // b reached 1.5 s with 4 buckets: 400 ms wide; a follows.
        assert_eq!(d.bucket_ms, 400.0);
        assert_eq!(d.launches, vec![2, 0, 0, 0]);
        assert_eq!(d.in_flight[0], Some(120.0));
        assert_eq!(d.window[0], Some(230.0));
        assert_eq!(d.completions["filtered/no-response"], vec![0, 0, 0, 1]);
    }

    #[test]
    fn doc_round_trips_through_json() {
        let mut s = Series::new();
        s.record_launch(ms(5));
        s.record_completion(Reason::SynAck, ms(105));
        s.sample(1, 2, ms(105));
        let d = s.to_doc();
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<SeriesDoc>(&text).unwrap(), d);
    }
}
