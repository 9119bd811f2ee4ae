//! Per-host timing state in a fixed amount of memory, whatever the scan's
//! size: a small set-associative table (4 ways per bucket) keyed by the host
//! index, each host hashed to two buckets (the "power of two choices": with
//! one, a half-full table left ~4 % of hosts without a slot on a
//! 1024-host scan; with two, practically none until the table is full). A
//! host gets a slot when its first probe goes out; a slot is only ever taken
//! from a host with nothing in flight (empty first, then the least recently
//! used of both buckets), so a host's in-flight count is never lost. A host
//! that finds every way of both buckets busy goes untracked: it uses the
//! scan-wide estimate and window only.
//!
//! Every probe claims its host's slot, and on a scan of more hosts than
//! slots most claims are of a new host. So the keys and use stamps live in
//! their own dense arrays (a bucket's four keys are one 32-byte run; the
//! wide state of a slot is read only once it is chosen), each bucket keeps
//! its count of taken ways instead of recounting them per candidate, and the
//! least recently used way is checked for in-flight probes first: only when
//! it is busy are the other ways' in-flight counts read. The eviction rule
//! is unchanged: the least recently used idle way, the emptier bucket on a
//! tie, the first in probing order after that.

use std::time::Duration;

use super::limit::RstWatch;
use super::rtt::RttEstimator;
use super::window::{Window, WindowParams};

/// Ways per bucket.
const WAYS: usize = 4;
/// Marks an empty slot.
const EMPTY: u64 = u64::MAX;

/// One host's timing state: a few words.
#[derive(Debug, Clone, Copy)]
pub struct HostSlot {
    /// The host's own RTT estimate.
    pub rtt: RttEstimator,
    /// The host's congestion window.
    pub window: Window,
    /// Probes of this host in flight (from first attempt to result).
    pub in_flight: u32,
    /// The highest try number (0 = first attempt) that got an answer
    /// (nmap's `max_successful_tryno`): a host's retries until the scan has
    /// measured its loss.
    pub max_ok_try: u32,
    /// Doublings of the timeout an unknown host has shown it needs.
    pub backoff: u32,
    /// `rtt` is made of upper bounds: the times to answers of retransmitted
    /// SYNs, taken while the host gave no clean sample (one farther than
    /// the kernel's RTO never does); its first clean sample replaces them.
    pub bounded: bool,
    /// Its RSTs and silences: whether it limits its RSTs, and its pace.
    pub watch: RstWatch,
}

impl HostSlot {
    fn fresh(window: WindowParams) -> HostSlot {
        HostSlot {
            rtt: RttEstimator::new(),
            window: Window::new(window),
            in_flight: 0,
            max_ok_try: 0,
            backoff: 0,
            bounded: false,
            watch: RstWatch::default(),
        }
    }
}

/// The table: `slots` slots, allocated once.
#[derive(Debug, Clone)]
pub struct HostTimingTable {
    /// The host in each slot (`EMPTY` for none).
    keys: Box<[u64]>,
    /// When each slot was last claimed (0: never).
    used: Box<[u64]>,
    /// Taken ways of each bucket (slots are never emptied again).
    load: Box<[u8]>,
    slots: Box<[HostSlot]>,
    buckets_mask: usize,
    clock: u64,
}

impl HostTimingTable {
    /// A table of at least `slots` slots (rounded up to a power of two
    /// buckets of `WAYS`), each host window starting from `window`.
    pub fn new(slots: usize, window: WindowParams) -> HostTimingTable {
        let buckets = slots.div_ceil(WAYS).max(1).next_power_of_two();
        HostTimingTable {
            keys: vec![EMPTY; buckets * WAYS].into_boxed_slice(),
            used: vec![0; buckets * WAYS].into_boxed_slice(),
            load: vec![0; buckets].into_boxed_slice(),
            slots: vec![HostSlot::fresh(window); buckets * WAYS].into_boxed_slice(),
            buckets_mask: buckets - 1,
            clock: 0,
        }
    }

    /// How many hosts the table tracks at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The first slots of the host's two buckets (the same one in a
    /// one-bucket table).
    fn buckets(&self, host: u64) -> [usize; 2] {
        // SplitMix64's finaliser: neighbouring hosts land in unrelated
        // buckets; its low and high halves pick the two.
        let mut z = host.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        [
            (z as usize & self.buckets_mask) * WAYS,
            ((z >> 32) as usize & self.buckets_mask) * WAYS,
        ]
    }

    /// The first slots of the distinct buckets among `buckets`.
    fn distinct(buckets: &[usize; 2]) -> &[usize] {
        let n = if buckets[0] == buckets[1] { 1 } else { 2 };
        &buckets[..n]
    }

    /// The slot of `host` among its buckets' ways.
    fn find_in(&self, buckets: [usize; 2], host: u64) -> Option<usize> {
        for &base in Self::distinct(&buckets) {
            let ways = &self.keys[base..base + WAYS];
            if let Some(w) = ways.iter().position(|&k| k == host) {
                return Some(base + w);
            }
        }
        None
    }

    /// The slot holding `host`, if any.
    pub fn find(&self, host: u64) -> Option<usize> {
        self.find_in(self.buckets(host), host)
    }

    /// The slot of `host`, taking an idle way of its buckets (an empty one,
    /// else the least recently used; reset to `fresh`) if it has none;
    /// `None` when every way is busy with another host's probes.
    pub fn claim(&mut self, host: u64, fresh: WindowParams) -> Option<usize> {
        self.clock += 1;
        let clock = self.clock;
        let buckets = self.buckets(host);
        let i = match self.find_in(buckets, host) {
            Some(i) => i,
            None => {
                let i = self.victim(buckets)?;
                if self.keys[i] == EMPTY {
                    self.load[i / WAYS] += 1;
                }
                self.keys[i] = host;
                self.slots[i] = HostSlot::fresh(fresh);
                i
            }
        };
        self.used[i] = clock;
        Some(i)
    }

    /// The way a new host takes: the least recently used idle way (empty
    /// ones first, as never used), in the emptier bucket on a tie, the first
    /// in probing order after that.
    fn victim(&self, buckets: [usize; 2]) -> Option<usize> {
        // The least recently used way of all: when it is idle (nearly
        // always), it is also the least recently used idle one, and no
        // other way's in-flight count need be read.
        let first = self.least_recent(buckets, false)?;
        if self.slots[first].in_flight == 0 {
            return Some(first);
        }
        self.least_recent(buckets, true)
    }

    /// The way of `buckets` with the lowest (use stamp, bucket load), the
    /// first in probing order on a tie; among idle ways only if `idle`.
    /// Plain loops: as an iterator chain's `min_by_key` it was not inlined
    /// and took most of a claim's time.
    fn least_recent(&self, buckets: [usize; 2], idle: bool) -> Option<usize> {
        let mut best: Option<(usize, (u64, u8))> = None;
        for &base in Self::distinct(&buckets) {
            let load = self.load[base / WAYS];
            for i in base..base + WAYS {
                if idle && self.slots[i].in_flight != 0 {
                    continue;
                }
                let rank = (self.used[i], load);
                if best.is_none_or(|(_, r)| rank < r) {
                    best = Some((i, rank));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// The host a slot holds.
    pub fn key(&self, slot: usize) -> u64 {
        self.keys[slot]
    }

    /// The slot's state.
    pub fn get(&self, slot: usize) -> &HostSlot {
        &self.slots[slot]
    }

    /// The slot's state, to update.
    pub fn get_mut(&mut self, slot: usize) -> &mut HostSlot {
        &mut self.slots[slot]
    }

    /// Host estimates with at least `min_samples` samples: (srtt, samples).
    pub fn estimates(&self, min_samples: u32) -> impl Iterator<Item = (Duration, u32)> + '_ {
        self.keys
            .iter()
            .zip(self.slots.iter())
            .filter(move |(k, s)| **k != EMPTY && s.rtt.samples() >= min_samples)
            .map(|(_, s)| (s.rtt.srtt(), s.rtt.samples()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: WindowParams = WindowParams {
        initial: 4,
        floor: 1,
        max: 100,
    };

    #[test]
    fn a_host_keeps_its_slot_and_a_busy_slot_is_never_taken() {
        let mut t = HostTimingTable::new(8, W);
        assert_eq!(t.capacity(), 8);
        let a = t.claim(1, W).unwrap();
        assert_eq!(t.claim(1, W), Some(a));
        t.get_mut(a).in_flight = 1;
        t.get_mut(a).rtt.sample(Duration::from_millis(5));
        // Thousands of other hosts pass through: host 1 keeps its state.
        for h in 2..5000 {
            if let Some(s) = t.claim(h, W) {
                assert_ne!(s, a);
            }
        }
        assert_eq!(t.find(1), Some(a));
        assert_eq!(t.get(a).rtt.samples(), 1);
        // Once idle, it may be replaced.
        t.get_mut(a).in_flight = 0;
        let mut replaced = false;
        for h in 5000..10_000 {
            if t.claim(h, W) == Some(a) {
                replaced = true;
                break;
            }
        }
        assert!(replaced);
        assert_eq!(t.find(1), None);
    }

    #[test]
    fn a_full_bucket_leaves_the_host_untracked() {
        let mut t = HostTimingTable::new(4, W); // one bucket
        for h in 0..4 {
            let s = t.claim(h, W).unwrap();
            t.get_mut(s).in_flight = 1;
        }
        assert_eq!(t.claim(99, W), None);
    }

    #[test]
    fn two_choices_track_every_host_of_a_half_full_table() {
        // 1024 busy hosts in 2048 slots: one choice left ~40 untracked.
        let mut t = HostTimingTable::new(2048, W);
        for h in 0..1024 {
            let s = t
                .claim(h, W)
                .unwrap_or_else(|| panic!("host {h} untracked"));
            t.get_mut(s).in_flight = 1;
        }
        assert!((0..1024).all(|h| t.find(h).is_some()));
    }

    #[test]
    fn memory_is_fixed_for_any_number_of_hosts() {
        let mut t = HostTimingTable::new(1024, W);
        for h in (0..u64::from(u32::MAX)).step_by(65_537) {
            t.claim(h, W);
        }
        assert_eq!(t.capacity(), 1024);
    }

    /// Every slot a host of `buckets` may live in, in probing order.
    fn ways_of(buckets: [usize; 2]) -> impl Iterator<Item = usize> {
        let [a, b] = buckets;
        let second = if a == b { b..b } else { b..b + WAYS };
        (a..a + WAYS).chain(second)
    }

    /// The eviction rule as first written: a scan of both buckets' ways,
    /// recounting each candidate's bucket. The dense index must pick the
    /// very same slot for every claim.
    fn reference_claim(
        t: &HostTimingTable,
        keys: &mut [u64],
        used: &mut [u64],
        busy: &[bool],
        clock: u64,
        host: u64,
    ) -> Option<usize> {
        let buckets = t.buckets(host);
        let ways = || ways_of(buckets);
        let i = match ways().find(|&i| keys[i] == host) {
            Some(i) => i,
            None => {
                let load = |i: usize| {
                    let b = i - i % WAYS;
                    keys[b..b + WAYS].iter().filter(|&&k| k != EMPTY).count()
                };
                let i = ways()
                    .filter(|&i| !busy[i])
                    .min_by_key(|&i| (used[i], load(i)))?;
                keys[i] = host;
                i
            }
        };
        used[i] = clock;
        Some(i)
    }

    #[test]
    fn the_dense_index_evicts_the_same_host_as_the_full_scan() {
        // Small tables (one bucket, two, eight) so buckets fill, collide
        // and have busy ways; hosts drawn from a small range so some come
        // back while still in the table.
        for slots in [4, 8, 32] {
            let mut t = HostTimingTable::new(slots, W);
            let n = t.capacity();
            let (mut keys, mut used, mut busy) = (vec![EMPTY; n], vec![0; n], vec![false; n]);
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            for clock in 1..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let host = x % (3 * n as u64);
                let want = reference_claim(&t, &mut keys, &mut used, &busy, clock, host);
                let got = t.claim(host, W);
                assert_eq!(got, want, "slots {slots}, claim {clock} of host {host}");
                // Make some slots busy and some idle again.
                if let Some(s) = got {
                    let b = (x >> 40) % 4 == 0;
                    busy[s] = b;
                    t.get_mut(s).in_flight = u32::from(b);
                }
                let other = (x >> 20) as usize % n;
                if (x >> 50) % 3 == 0 {
                    busy[other] = false;
                    t.get_mut(other).in_flight = 0;
                }
            }
        }
    }
}
