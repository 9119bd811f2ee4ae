//! The order of a scan: which probe comes at which position, which positions
//! one shard of a split scan owns, and which of them an interrupted run has
//! already finished.
//!
//! ZMap and masscan get load spreading, sharding and resume from one idea, a
//! seeded bijection over the index space; so does FastPort:
//!
//! - [`Permutation`] maps a *position* `0..n` to a probe *index* `0..n`
//!   ([`crate::targets::TargetSpace::get`] turns the index into an address
//!   and port). It is a small Feistel cipher over the power-of-two domain just
//!   above `n`, with cycle-walking back into `0..n` (masscan's BlackRock
//!   idea): random access, `O(1)` memory, no allocation, a few nanoseconds
//!   per position. The seed picks the round keys, so the same seed and the
//!   same space give the same order on every machine.
//! - [`Shard`] `K/N` owns positions `K-1, K-1+N, K-1+2N, ...`. Its *sequence
//!   numbers* `s = 0, 1, 2, ...` name them (`position = K-1 + N*s`); workers
//!   take interleaved slices of the sequence, and resume records progress in
//!   it, so neither depends on how many workers ran.
//! - [`Done`] is the set of sequence numbers already finished (a resumed run
//!   skips them), kept as sorted ranges.
//! - [`Schedule`] puts the three together for the engine.

use std::fmt;
use std::ops::Range;

/// Feistel rounds. Four rounds of a full 64-bit mixer spread neighbouring
/// positions over the whole space; the order needs spread, not secrecy.
const ROUNDS: usize = 4;

/// A seeded, bijective map from positions `0..n` to indices `0..n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permutation {
    n: u64,
    /// Bits of the left (high) and right (low) halves of the domain.
    left_bits: u32,
    right_bits: u32,
    keys: [u64; ROUNDS],
}

/// SplitMix64: the seed's key schedule, and a good 64-bit mixer.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// A 64-bit finaliser (Stafford's variant 13): every input bit reaches
/// every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl Permutation {
    /// The permutation of `0..n` chosen by `seed`.
    pub fn new(n: u64, seed: u64) -> Permutation {
        // Domain 2^bits, the smallest power of two >= n (at least 4, so both
        // halves have a bit): fewer than 2 encryptions per position on average.
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let mut state = seed;
        let mut keys = [0; ROUNDS];
        for k in &mut keys {
            *k = splitmix(&mut state);
        }
        Permutation {
            n,
            left_bits: bits - bits / 2,
            right_bits: bits / 2,
            keys,
        }
    }

    /// Size of the permuted range.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The index at `position`. `position` must be below [`len`](Self::len)
    /// (anything else is returned unchanged).
    #[inline]
    pub fn apply(&self, position: u64) -> u64 {
        if position >= self.n {
            return position;
        }
        // Cycle-walking: the cipher permutes 0..2^bits; following the cycle
        // of a point of 0..n until it comes back into 0..n is a bijection of
        // 0..n, and the cycle does come back (it contains the start).
        let mut x = self.encrypt(position);
        while x >= self.n {
            x = self.encrypt(x);
        }
        x
    }

    /// The position of `index`: the inverse of [`apply`](Self::apply).
    pub fn invert(&self, index: u64) -> u64 {
        if index >= self.n {
            return index;
        }
        let mut x = self.decrypt(index);
        while x >= self.n {
            x = self.decrypt(x);
        }
        x
    }

    /// Round `r`'s function of one half.
    #[inline]
    fn round(&self, r: usize, half: u64) -> u64 {
        mix(half ^ self.keys[r])
    }

    /// One pass of the unbalanced Feistel network over `0..2^bits`: the
    /// halves alternate between `left_bits` and `right_bits` wide, and each
    /// round adds a keyed function of one half to the other (BlackRock's
    /// scheme, with power-of-two moduli so the reductions are masks).
    #[inline]
    fn encrypt(&self, x: u64) -> u64 {
        let (mut a_bits, mut b_bits) = (self.left_bits, self.right_bits);
        let mut a = x >> b_bits; // a_bits wide
        let mut b = x & mask(b_bits); // b_bits wide
        for r in 0..ROUNDS {
            let t = a.wrapping_add(self.round(r, b)) & mask(a_bits);
            a = b;
            b = t;
            std::mem::swap(&mut a_bits, &mut b_bits);
        }
        (a << b_bits) | b
    }

    fn decrypt(&self, y: u64) -> u64 {
        // After an even number of rounds the widths are back where they began.
        let (mut a_bits, mut b_bits) = if ROUNDS % 2 == 0 {
            (self.left_bits, self.right_bits)
        } else {
            (self.right_bits, self.left_bits)
        };
        let mut a = y >> b_bits;
        let mut b = y & mask(b_bits);
        for r in (0..ROUNDS).rev() {
            // Undo: (a, b) = (b_prev, a_prev + F(b_prev)).
            std::mem::swap(&mut a_bits, &mut b_bits);
            let prev_a = b.wrapping_sub(self.round(r, a)) & mask(a_bits);
            b = a;
            a = prev_a;
        }
        (a << b_bits) | b
    }
}

/// `--order`: which permutation the positions go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Host-major index order: a host's ports one after another.
    Sequential,
    /// The seeded pseudo-random permutation.
    Random(Permutation),
}

impl Order {
    /// The index at `position` (`position < n`).
    #[inline]
    pub fn index(&self, position: u64) -> u64 {
        match self {
            Order::Sequential => position,
            Order::Random(p) => p.apply(position),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Random(_) => "random",
        }
    }
}

/// `--shard K/N`: the positions congruent to `K-1` modulo `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `K - 1`.
    index: u64,
    /// `N`.
    count: u64,
}

/// A `--shard` value that is not `K/N` with `1 <= K <= N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --shard \"{input}\": {why}")]
pub struct ShardError {
    /// What the user typed.
    pub input: String,
    pub why: &'static str,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl Shard {
    /// The whole scan: shard 1/1.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `k` (1-based) of `n`.
    pub fn new(k: u64, n: u64) -> Option<Shard> {
        (1..=n).contains(&k).then(|| Shard {
            index: k - 1,
            count: n,
        })
    }

    /// Parses masscan's `K/N`.
    pub fn parse(s: &str) -> Result<Shard, ShardError> {
        let err = |why| ShardError {
            input: s.to_string(),
            why,
        };
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| err("expected K/N, such as 1/3"))?;
        let k: u64 = k.trim().parse().map_err(|_| err("K is not a number"))?;
        let n: u64 = n.trim().parse().map_err(|_| err("N is not a number"))?;
        if n == 0 {
            return Err(err("N must be at least 1"));
        }
        Shard::new(k, n).ok_or_else(|| err("K must be between 1 and N"))
    }

    /// `K` (1-based).
    pub fn k(&self) -> u64 {
        self.index + 1
    }

    /// `N`.
    pub fn n(&self) -> u64 {
        self.count
    }

    /// How many of the positions `0..total` this shard owns.
    pub fn len(&self, total: u64) -> u64 {
        if total <= self.index {
            0
        } else {
            (total - self.index - 1) / self.count + 1
        }
    }

    /// The position of sequence number `s`.
    #[inline]
    pub fn position(&self, s: u64) -> u64 {
        self.index + self.count * s
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k(), self.count)
    }
}

/// Sequence numbers already finished, as sorted, disjoint, non-adjacent
/// half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    ranges: Vec<Range<u64>>,
}

impl Done {
    /// Nothing finished yet.
    pub fn none() -> Done {
        Done::default()
    }

    /// From any ranges (unsorted, overlapping and empty ones allowed).
    pub fn from_ranges(ranges: impl IntoIterator<Item = Range<u64>>) -> Done {
        let mut v: Vec<Range<u64>> = ranges.into_iter().filter(|r| r.start < r.end).collect();
        v.sort_unstable_by_key(|r| r.start);
        let mut out: Vec<Range<u64>> = Vec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        Done { ranges: out }
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// Every sequence number below this one is finished.
    pub fn below(&self) -> u64 {
        match self.ranges.first() {
            Some(r) if r.start == 0 => r.end,
            _ => 0,
        }
    }

    /// `O(log ranges)`, no allocation.
    #[inline]
    pub fn contains(&self, s: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= s);
        self.ranges.get(i).is_some_and(|r| r.start <= s)
    }

    /// How many sequence numbers are finished.
    pub fn count(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// This set plus what a run that was stopped has finished: each lane
    /// claimed its arithmetic progression up to its `next`, and finished all
    /// of it but the probes it had in flight.
    pub fn after(&self, lanes: &[Lane], in_flight: &[u64]) -> Done {
        let mut in_flight = in_flight.to_vec();
        in_flight.sort_unstable();
        let from = self.below();
        let to = lanes.iter().map(|l| l.next).max().unwrap_or(0).max(from);
        let claimed = |s: u64| {
            lanes
                .iter()
                .any(|l| s >= l.start && s < l.next && (s - l.start) % l.step.max(1) == 0)
        };
        let mut ranges = self.ranges.clone();
        let mut run: Option<u64> = None;
        for s in from..to {
            let done = self.contains(s) || (claimed(s) && in_flight.binary_search(&s).is_err());
            match (done, run) {
                (true, None) => run = Some(s),
                (false, Some(start)) => {
                    ranges.push(start..s);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            ranges.push(start..to);
        }
        Done::from_ranges(ranges)
    }
}

/// What one worker (or the threads engine's shared counter) claimed of the
/// sequence: `start, start + step, ...` below `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub start: u64,
    pub step: u64,
    pub next: u64,
}

/// Everything the engine needs to know about order: which sequence numbers
/// to probe, and the probe index of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub order: Order,
    pub shard: Shard,
    /// Finished by earlier runs (`--resume`): skipped.
    pub done: Done,
    /// Size of the whole index space.
    total: u64,
}

impl Schedule {
    pub fn new(total: u64, order: Order, shard: Shard, done: Done) -> Schedule {
        Schedule {
            order,
            shard,
            done,
            total,
        }
    }

    /// The whole space in index order, nothing done: today's behaviour.
    pub fn sequential(total: u64) -> Schedule {
        Schedule::new(total, Order::Sequential, Shard::WHOLE, Done::none())
    }

    /// Sequence numbers of this shard: `0..seq_len()`.
    pub fn seq_len(&self) -> u64 {
        self.shard.len(self.total)
    }

    /// Probes this run still has to make.
    pub fn remaining(&self) -> u64 {
        let len = self.seq_len();
        let done: u64 = self
            .done
            .ranges()
            .iter()
            .map(|r| r.end.min(len).saturating_sub(r.start))
            .sum();
        len - done.min(len)
    }

    /// The probe index of sequence number `s` (`s < seq_len()`).
    #[inline]
    pub fn index(&self, s: u64) -> u64 {
        self.order.index(self.shard.position(s))
    }
}

/// A seed from the operating system's randomness, through std's
/// randomly keyed hasher (no extra crate).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests;
