//! The order of a scan: which probe comes at which position, which positions
//! one shard of a split scan owns, and which of them an interrupted run has
//! already finished.
//!
//! ZMap and masscan get load spreading, sharding and resume from one idea, a
//! seeded bijection over the index space; so does FastPort:
//!
//! - [`Permutation`] maps a *position* `0..n` to an *index* `0..n`. It is
//!   a small Feistel cipher over the power-of-two domain just above `n`,
//!   with cycle-walking back into `0..n` (masscan's BlackRock idea): random
//!   access, `O(1)` memory, no allocation, a few nanoseconds per position.
//!   The seed picks the round keys, so the same seed and the same space give
//!   the same order on every machine.
//! - [`BlockOrder`] (`--order random`) uses it twice: over the [`Blocks`] of
//!   consecutive hosts, and within each block, so every probe of a block
//!   comes before the next block's. Hosts then finish within about a block
//!   of probes, and what is kept per host in progress stays bounded
//!   ([`crate::targets::TargetSpace::get`] turns an index into an address
//!   and port).
//! - [`Shard`] `K/N` owns positions `K-1, K-1+N, K-1+2N, ...`. Its *sequence
//!   numbers* `s = 0, 1, 2, ...` name them (`position = K-1 + N*s`); workers
//!   take interleaved slices of the sequence, and resume records progress in
//!   it, so neither depends on how many workers ran.
//! - [`Done`] is the set of sequence numbers already finished (a resumed run
//!   skips them), kept as sorted ranges.
//! - [`Schedule`] puts them together for the engine: the probe index of a
//!   sequence number, each host's [`Quotas`] in this run (for the per-host
//!   outputs), and the workers' [`Stride`]s, held together by a [`Gate`]
//!   (the threads engine's counter by [`Claims`]) so they span at most two
//!   windows of the sequence.

use std::cell::Cell;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

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

/// SplitMix64: the seed's key schedule, and a good 64-bit mixer (the
/// trace's sampler hashes probe indices with it too).
#[inline]
pub(crate) fn splitmix(state: &mut u64) -> u64 {
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

    /// Whether the permutation is of nothing.
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
        self.walk(position, |x| self.encrypt(x))
    }

    /// The position of `index`: the inverse of [`apply`](Self::apply).
    pub fn invert(&self, index: u64) -> u64 {
        if index >= self.n {
            return index;
        }
        self.walk(index, |x| self.decrypt(x))
    }

    /// Cycle-walking: the cipher permutes 0..2^bits; following the cycle
    /// of a point of 0..n (one `step` of the cipher or of its inverse at a
    /// time) until it comes back into 0..n is a bijection of 0..n, and the
    /// cycle does come back (it contains the start).
    #[inline]
    fn walk(&self, start: u64, step: impl Fn(u64) -> u64) -> u64 {
        let mut x = step(start);
        while x >= self.n {
            x = step(x);
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

/// How the index space splits into *host blocks*: block `b` is the hosts
/// `b*G .. (b+1)*G`, that is the probe indices `b*B .. (b+1)*B` with
/// `B = G * ports_per_host` (a host's ports are consecutive indices, see
/// [`crate::targets`]). The last block is shorter when the hosts do not
/// divide evenly. The order finishes a block's probes before it goes far
/// into the next one, so the hosts in progress (and the per-host records of
/// `-oX`/`-oG`) are those of about two blocks, whatever the scan's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    total: u64,
    ports: u64,
    hosts: u64,
}

/// A block aims at this many probes: large against the concurrency, so
/// each worker's interleaved share of a block is long and the order within
/// it is well mixed...
pub const BLOCK_PROBES: u64 = 1 << 16;
/// ...but holds at most this many hosts, which bounds the host records
/// open at once (about two blocks' worth).
pub const BLOCK_HOSTS: u64 = 1 << 14;

impl Blocks {
    /// The blocks of a space of `total` probes, `ports_per_host` per host.
    pub fn new(total: u64, ports_per_host: u64) -> Blocks {
        let ports = ports_per_host.max(1);
        let hosts = BLOCK_PROBES.div_ceil(ports).clamp(1, BLOCK_HOSTS);
        Blocks::with_hosts(total, ports, hosts)
    }

    /// Blocks of `hosts` hosts each (tests use small ones).
    pub fn with_hosts(total: u64, ports_per_host: u64, hosts: u64) -> Blocks {
        Blocks {
            total,
            ports: ports_per_host.max(1),
            hosts: hosts.max(1),
        }
    }

    /// Probes in the whole space.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Ports per host.
    pub fn ports_per_host(&self) -> u64 {
        self.ports
    }

    /// `G`: hosts in a full block.
    pub fn hosts_per_block(&self) -> u64 {
        self.hosts
    }

    /// `B`: probes in a full block.
    pub fn size(&self) -> u64 {
        self.hosts * self.ports
    }

    /// Full blocks.
    pub fn full(&self) -> u64 {
        self.total / self.size()
    }

    /// Blocks, the short last one included.
    pub fn count(&self) -> u64 {
        self.total.div_ceil(self.size())
    }

    /// The host of probe `index`.
    #[inline]
    pub fn host(&self, index: u64) -> u64 {
        index / self.ports
    }

    /// The block of `host`, and the host's offset in it (what
    /// [`Quotas::get`] takes).
    #[inline]
    pub fn host_in_block(&self, host: u64) -> (u64, u64) {
        (host / self.hosts, host % self.hosts)
    }

    /// The block holding index (or position) `x`.
    #[inline]
    pub fn of(&self, x: u64) -> u64 {
        x / self.size()
    }

    /// The indices (or positions) of block `b`.
    pub fn range(&self, b: u64) -> Range<u64> {
        let start = b.saturating_mul(self.size()).min(self.total);
        start..start.saturating_add(self.size()).min(self.total)
    }
}

/// The seeded pseudo-random order over host blocks: a [`Permutation`] of the
/// full blocks, then within each block a permutation of its offsets keyed
/// by the block, so every probe of a block comes before any of the next
/// block's. The short last block (if any) stays last, permuted within
/// itself: keeping it in place keeps every block the same size, so one
/// Feistel domain serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOrder {
    blocks: Blocks,
    /// `blocks.full()`, kept: a division per probe otherwise.
    full: u64,
    seed: u64,
    /// Over the full blocks: position block to index block.
    outer: Permutation,
    /// Within the short last block.
    last: Permutation,
}

impl BlockOrder {
    /// The block permutation for `blocks`, seeded.
    pub fn new(blocks: Blocks, seed: u64) -> BlockOrder {
        let full = blocks.full();
        BlockOrder {
            blocks,
            full,
            seed,
            outer: Permutation::new(full, seed),
            last: Permutation::new(blocks.total - full * blocks.size(), mix(seed ^ 0x1a57)),
        }
    }

    /// The order within index block `c`: its own key, so blocks do not
    /// repeat one pattern.
    #[inline]
    fn inner(&self, c: u64) -> Permutation {
        Permutation::new(self.blocks.size(), mix(self.seed ^ mix(c ^ 0xb10c)))
    }

    /// The index at `position` (`position < total`).
    #[inline]
    pub fn apply(&self, position: u64) -> u64 {
        let size = self.blocks.size();
        let b = position / size;
        let offset = position % size;
        if b >= self.blocks.full() {
            return b * size + self.last.apply(offset);
        }
        let c = self.outer.apply(b);
        c * size + self.inner(c).apply(offset)
    }

    /// [`apply`](Self::apply), with the order of the block `cursor` holds
    /// kept from the last call: a block's outer step and its inner
    /// permutation's key schedule are made once per block, not per probe.
    #[inline]
    fn apply_at(&self, position: u64, cursor: &mut OrderCursor) -> u64 {
        let size = self.blocks.size();
        let b = position / size;
        let offset = position % size;
        if b >= self.full {
            return b * size + self.last.apply(offset);
        }
        if cursor.block != b {
            let c = self.outer.apply(b);
            *cursor = OrderCursor {
                block: b,
                start: c * size,
                inner: self.inner(c),
            };
        }
        cursor.start + cursor.inner.apply(offset)
    }

    /// The position of `index`: the inverse of [`apply`](Self::apply).
    pub fn invert(&self, index: u64) -> u64 {
        let size = self.blocks.size();
        let c = index / size;
        let offset = index % size;
        if c >= self.blocks.full() {
            return c * size + self.last.invert(offset);
        }
        self.outer.invert(c) * size + self.inner(c).invert(offset)
    }

    /// The position block whose probes are index block `c`.
    pub fn position_block(&self, c: u64) -> u64 {
        if c >= self.blocks.full() {
            c
        } else {
            self.outer.invert(c)
        }
    }
}

/// The order within the position block a worker is in, kept from one
/// probe to the next by [`Schedule::index_at`]: a worker's sequence numbers
/// run through a block one after another, and the block's place and inner
/// permutation are the same for all of them. Belongs to one schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    /// The position block held (`u64::MAX`: none yet).
    block: u64,
    /// Its first probe index.
    start: u64,
    /// The order of its offsets.
    inner: Permutation,
}

impl Default for OrderCursor {
    fn default() -> Self {
        OrderCursor {
            block: u64::MAX,
            start: 0,
            inner: Permutation::new(0, 0),
        }
    }
}

/// `--order` by name, as the command line, the stats document and a resume
/// file say it ([`Order`] is the permutation itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderKind {
    /// A seeded random permutation of host blocks and of the probes within each.
    Random,
    /// Address by address, port by port.
    Sequential,
}

impl OrderKind {
    /// The name as `--order` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Random => "random",
            OrderKind::Sequential => "sequential",
        }
    }

    /// The order a summary names (`sequential`, or else `random`).
    pub fn of(name: &str) -> OrderKind {
        if name == OrderKind::Sequential.as_str() {
            OrderKind::Sequential
        } else {
            OrderKind::Random
        }
    }
}

/// `--order`: which permutation the positions go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Host-major index order: a host's ports one after another.
    Sequential,
    /// The seeded pseudo-random order of host blocks.
    Random(BlockOrder),
}

impl Order {
    /// The seeded random order over `blocks`.
    pub fn random(blocks: Blocks, seed: u64) -> Order {
        Order::Random(BlockOrder::new(blocks, seed))
    }

    /// The index at `position` (`position < n`).
    #[inline]
    pub fn index(&self, position: u64) -> u64 {
        match self {
            Order::Sequential => position,
            Order::Random(p) => p.apply(position),
        }
    }

    /// [`index`](Self::index), the random order's block kept in `cursor`.
    #[inline]
    pub fn index_at(&self, position: u64, cursor: &mut OrderCursor) -> u64 {
        match self {
            Order::Sequential => position,
            Order::Random(p) => p.apply_at(position, cursor),
        }
    }

    /// The position of `index`.
    pub fn position(&self, index: u64) -> u64 {
        match self {
            Order::Sequential => index,
            Order::Random(p) => p.invert(index),
        }
    }

    /// The position block that holds index block `c`'s probes.
    pub fn position_block(&self, c: u64) -> u64 {
        match self {
            Order::Sequential => c,
            Order::Random(p) => p.position_block(c),
        }
    }

    /// Which kind of order it is.
    pub fn kind(&self) -> OrderKind {
        match self {
            Order::Sequential => OrderKind::Sequential,
            Order::Random(_) => OrderKind::Random,
        }
    }

    /// The order's name as `--order` spells it.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
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
    /// Why it is not.
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

    /// The first sequence number whose position is at least `position`.
    pub fn seq_at(&self, position: u64) -> u64 {
        position.saturating_sub(self.index).div_ceil(self.count)
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
    ///
    /// `O(lanes + in flight + ranges + spread)`: when the lanes interleave
    /// one sequence (the engines' lanes do: `W` lanes of step `W` starting
    /// at `W` consecutive numbers, or one lane of step 1), everything below
    /// the slowest lane's `next` was claimed, and only the spread between
    /// the slowest and the fastest lane is walked number by number (the
    /// block gate, see [`Stride`], keeps it within about two blocks).
    pub fn after(&self, lanes: &[Lane], in_flight: &[u64]) -> Done {
        let mut in_flight = in_flight.to_vec();
        in_flight.sort_unstable();
        let mut ranges = self.ranges.clone();
        let mut lanes = lanes.to_vec();
        lanes.sort_unstable_by_key(|l| l.start);
        let step = lanes.first().map_or(1, |l| l.step.max(1));
        let dense = !lanes.is_empty()
            && lanes.len() as u64 == step
            && lanes
                .iter()
                .enumerate()
                .all(|(i, l)| l.step.max(1) == step && l.start == lanes[0].start + i as u64);
        // Claimed numbers, minus those in flight, as ranges.
        let claimed = |from: u64, to: u64, ranges: &mut Vec<Range<u64>>| {
            let lo = in_flight.partition_point(|&s| s < from);
            let hi = in_flight.partition_point(|&s| s < to);
            let mut start = from;
            for &s in &in_flight[lo..hi] {
                ranges.push(start..s);
                start = s + 1;
            }
            ranges.push(start..to);
        };
        if dense {
            let from = lanes[0].start;
            let low = lanes.iter().map(|l| l.next).min().unwrap_or(from);
            let high = lanes.iter().map(|l| l.next).max().unwrap_or(from);
            claimed(from, low, &mut ranges);
            // The spread: `s` belongs to lane `(s - from) % step`.
            let mut run: Option<u64> = None;
            for s in low..high {
                let lane = &lanes[((s - from) % step) as usize];
                let done = s < lane.next && in_flight.binary_search(&s).is_err();
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
                ranges.push(start..high);
            }
        } else {
            // Any other lanes (only tests make them): each one's numbers.
            for l in &lanes {
                if l.step <= 1 {
                    claimed(l.start, l.next, &mut ranges);
                } else {
                    let mut s = l.start;
                    while s < l.next {
                        if in_flight.binary_search(&s).is_err() {
                            ranges.push(s..s + 1);
                        }
                        s += l.step;
                    }
                }
            }
        }
        Done::from_ranges(ranges)
    }
}

/// What one worker (or the threads engine's shared counter) claimed of the
/// sequence: `start, start + step, ...` below `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// The lane's first sequence number.
    pub start: u64,
    /// The distance between its sequence numbers (the number of lanes).
    pub step: u64,
    /// The next sequence number it would claim.
    pub next: u64,
}

/// How many results each host of one block gets in a run, by the host's
/// offset in the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quotas {
    /// One count per host of the block.
    Dense(Vec<u32>),
    /// `(host offset, count)` of the hosts with a count, sorted: for
    /// blocks this run has few probes in.
    Sparse(Vec<(u64, u32)>),
}

impl Quotas {
    /// The quota of the host at `offset` in the block.
    pub fn get(&self, offset: u64) -> u32 {
        match self {
            Quotas::Dense(v) => usize::try_from(offset)
                .ok()
                .and_then(|i| v.get(i))
                .copied()
                .unwrap_or(0),
            Quotas::Sparse(v) => v
                .binary_search_by_key(&offset, |&(h, _)| h)
                .map_or(0, |i| v[i].1),
        }
    }

    /// Hosts with a quota above zero.
    pub fn hosts(&self) -> u64 {
        match self {
            Quotas::Dense(v) => v.iter().filter(|&&q| q > 0).count() as u64,
            Quotas::Sparse(v) => v.len() as u64,
        }
    }
}

/// Everything the engine needs to know about order: which sequence numbers
/// to probe, the probe index of each, and how many results each host gets
/// in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Random or sequential.
    pub order: Order,
    /// The part of the sequence this run owns.
    pub shard: Shard,
    /// Finished by earlier runs (`--resume`): skipped.
    pub done: Done,
    blocks: Blocks,
}

impl Schedule {
    /// A schedule over `blocks` in `order`, of `shard`, skipping `done`.
    pub fn new(blocks: Blocks, order: Order, shard: Shard, done: Done) -> Schedule {
        Schedule {
            order,
            shard,
            done,
            blocks,
        }
    }

    /// The whole space in index order, one port per host, nothing done.
    pub fn sequential(total: u64) -> Schedule {
        Schedule::new(
            Blocks::new(total, 1),
            Order::Sequential,
            Shard::WHOLE,
            Done::none(),
        )
    }

    /// The host blocks the order permutes.
    pub fn blocks(&self) -> Blocks {
        self.blocks
    }

    /// Sequence numbers of this shard: `0..seq_len()`.
    pub fn seq_len(&self) -> u64 {
        self.shard.len(self.blocks.total)
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

    /// [`index`](Self::index) for a caller that walks the sequence in
    /// order (a worker's stride): the block's order is kept in `cursor`
    /// (one per caller, used with this schedule only).
    #[inline]
    pub fn index_at(&self, s: u64, cursor: &mut OrderCursor) -> u64 {
        self.order.index_at(self.shard.position(s), cursor)
    }

    /// The position block of sequence number `s` (what [`Claims`] counts in).
    #[inline]
    pub fn block_of_seq(&self, s: u64) -> u64 {
        self.blocks.of(self.shard.position(s))
    }

    /// The sequence numbers whose probes fall in index block `c`: this
    /// shard's positions of the matching position block.
    pub fn seqs_of_block(&self, c: u64) -> Range<u64> {
        let positions = self.blocks.range(self.order.position_block(c));
        self.shard.seq_at(positions.start)..self.shard.seq_at(positions.end)
    }

    /// How many results each host of index block `c` gets in this run.
    /// Counts this shard's positions of the block that earlier runs have
    /// not done, so it costs one step of the order per probe of the block
    /// this run makes, and its memory follows those probes too (a block
    /// that a shard of many touches only here and there is kept sparse).
    pub fn quotas(&self, c: u64) -> Quotas {
        let indices = self.blocks.range(c);
        let ports = self.blocks.ports;
        let hosts = (indices.end - indices.start) / ports;
        let seqs = self.seqs_of_block(c);
        let host_of = |s: u64| {
            let index = self.index(s);
            debug_assert!(indices.contains(&index), "{index} outside block {c}");
            index.saturating_sub(indices.start) / ports
        };
        let len = seqs.end - seqs.start;
        // Every position of the block is this run's and none was done
        // before (a whole scan's blocks): every host gets all its ports,
        // without a step of the order per probe.
        let untouched = || {
            self.done
                .ranges()
                .iter()
                .all(|d| d.end <= seqs.start || d.start >= seqs.end)
        };
        if len == indices.end - indices.start && untouched() {
            let all = u32::try_from(ports).unwrap_or(u32::MAX);
            return Quotas::Dense(vec![all; hosts as usize]);
        }
        let todo = seqs.filter(|&s| !self.done.contains(s));
        if len >= hosts {
            let mut dense = vec![0u32; hosts as usize];
            for s in todo {
                if let Some(q) = dense.get_mut(host_of(s) as usize) {
                    *q += 1;
                }
            }
            Quotas::Dense(dense)
        } else {
            let mut sparse: Vec<(u64, u32)> = todo.map(|s| (host_of(s), 1)).collect();
            sparse.sort_unstable_by_key(|&(h, _)| h);
            sparse.dedup_by(|next, kept| {
                let same = next.0 == kept.0;
                if same {
                    kept.1 += next.1;
                }
                same
            });
            Quotas::Sparse(sparse)
        }
    }

    /// One stride per worker: worker `id` takes `from + id, from + id + W,
    /// ...` (from the first number not done), all held by one [`Gate`] in
    /// windows of [`GATE_SEQS`] numbers.
    pub fn strides(&self, workers: usize) -> Vec<Stride> {
        self.strides_in_windows(workers, GATE_SEQS)
    }

    /// [`strides`](Self::strides) with windows of `window` numbers.
    pub fn strides_in_windows(&self, workers: usize, window: u64) -> Vec<Stride> {
        let workers = workers.max(1);
        let gate = Arc::new(Gate {
            lanes: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        });
        (0..workers)
            .map(|id| {
                let mut stride = Stride::for_worker(id, workers, self.done.below(), self.seq_len());
                let mut held = Held {
                    gate: Arc::clone(&gate),
                    lane: id,
                    window: window.max(1),
                    allowed: Cell::new(0),
                    at: 0,
                    at_end: 0,
                };
                held.enter(stride.next);
                stride.gate = Some(held);
                stride.publish();
                stride
            })
            .collect()
    }

    /// The threads engine's shared counter, held by the same bound.
    pub fn claims(&self) -> Claims {
        let first = self.done.below();
        Claims {
            first,
            end: self.seq_len(),
            shard: self.shard,
            block_size: self.blocks.size(),
            state: Mutex::new(ClaimState {
                next: first,
                running: [0; 4],
            }),
            moved: Condvar::new(),
        }
    }
}

/// How many sequence numbers a gate window holds: the workers together
/// span at most two windows, which keeps them within about two host blocks
/// (a block is [`BLOCK_PROBES`] probes, a window a sixteenth of that) and
/// keeps a stopped run's resume bookkeeping short (the numbers between the
/// slowest and the fastest worker are recorded one by one).
pub const GATE_SEQS: u64 = 4096;

/// Which window of the sequence each worker is in (by the number it takes
/// next; `u64::MAX` once it has none left). A worker may enter window `w`
/// only when no worker is still before window `w - 1`: the slowest worker
/// is never held, and the workers together span at most two windows.
#[derive(Debug)]
pub struct Gate {
    lanes: Vec<AtomicU64>,
}

impl Gate {
    fn lowest(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// A stride's place at its gate.
#[derive(Debug)]
struct Held {
    gate: Arc<Gate>,
    lane: usize,
    /// Sequence numbers per window.
    window: u64,
    /// Windows up to this one are open to this worker (a cache of the gate).
    allowed: Cell<u64>,
    /// The window the stride's next number is in, and the first number
    /// past it: a division per window instead of three per number.
    at: u64,
    at_end: u64,
}

impl Held {
    fn block(&self, s: u64) -> u64 {
        s / self.window
    }

    /// The stride's next number is now `s`.
    fn enter(&mut self, s: u64) {
        self.at = self.block(s);
        self.at_end = self.at.saturating_add(1).saturating_mul(self.window);
    }
}

/// The sequence numbers a worker owns: `next, next + step, ...` below `end`
/// (see [`Schedule`]: a sequence number becomes a probe index through the
/// shard and the order), held back at block boundaries by the workers'
/// [`Gate`] when made by [`Schedule::strides`]. Dropping a stride lets the
/// others past it (a worker that ends early, even by a panic, holds no one).
#[derive(Debug)]
pub struct Stride {
    start: u64,
    next: u64,
    step: u64,
    end: u64,
    gate: Option<Held>,
}

impl Stride {
    /// Worker `id` of `workers` over `from..len`, with no gate: interleaved
    /// slices of one sequence, so every worker sees every part of the space
    /// and they finish together.
    pub fn for_worker(id: usize, workers: usize, from: u64, len: u64) -> Stride {
        let start = from.saturating_add(id as u64);
        Stride {
            start,
            next: start,
            step: workers.max(1) as u64,
            end: len,
            gate: None,
        }
    }

    /// The next sequence number, without taking it: `None` at the end, and
    /// also while the gate holds this worker at a block boundary (then
    /// [`is_exhausted`](Self::is_exhausted) is false: ask again later).
    pub fn peek(&self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        if let Some(held) = &self.gate {
            let block = held.at;
            if block > held.allowed.get() {
                held.allowed.set(held.gate.lowest().saturating_add(1));
                if block > held.allowed.get() {
                    return None;
                }
            }
        }
        Some(self.next)
    }

    /// Whether every number of this stride has been handed out.
    pub fn is_exhausted(&self) -> bool {
        self.next >= self.end
    }

    /// What this stride has handed out so far.
    pub fn lane(&self) -> Lane {
        Lane {
            start: self.start,
            step: self.step,
            next: self.next.min(self.end.max(self.start)),
        }
    }

    /// Tells the gate which block this worker is in.
    fn publish(&self) {
        if let Some(held) = &self.gate {
            let block = if self.is_exhausted() {
                u64::MAX
            } else {
                held.block(self.next)
            };
            held.gate.lanes[held.lane].store(block, Ordering::Release);
        }
    }
}

impl Drop for Stride {
    fn drop(&mut self) {
        if let Some(held) = &self.gate {
            held.gate.lanes[held.lane].store(u64::MAX, Ordering::Release);
        }
    }
}

impl Iterator for Stride {
    type Item = u64;

    /// Takes the next number: `None` at the end or while held (as
    /// [`peek`](Stride::peek)).
    fn next(&mut self) -> Option<u64> {
        let index = self.peek()?;
        // Saturating: an index past `end` simply ends the stride.
        self.next = self.next.saturating_add(self.step);
        if let Some(held) = &mut self.gate {
            // Past the window's end is in another window (`next` only grows).
            if self.next >= self.end || self.next >= held.at_end {
                held.enter(self.next);
                self.publish();
            }
        }
        Some(index)
    }
}

/// The threads engine's shared counter: numbers are claimed in order, and a
/// number in block `b` only once no probe of block `b - 2` or earlier is
/// still running (the same two-block bound as [`Gate`]).
#[derive(Debug)]
pub struct Claims {
    first: u64,
    end: u64,
    shard: Shard,
    block_size: u64,
    state: Mutex<ClaimState>,
    moved: Condvar,
}

#[derive(Debug)]
struct ClaimState {
    next: u64,
    /// Probes running per block, by block number modulo 4 (only the two
    /// newest blocks can have any).
    running: [u64; 4],
}

/// One claimed sequence number; its block's count drops when it is dropped
/// (the probe finished, or was abandoned).
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    seq: u64,
}

impl Claim<'_> {
    /// The sequence number claimed.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let block = self.claims.block(self.seq);
        let mut state = self.claims.lock();
        let running = &mut state.running[(block % 4) as usize];
        *running = running.saturating_sub(1);
        if *running == 0 {
            self.claims.moved.notify_all();
        }
    }
}

impl Claims {
    fn block(&self, s: u64) -> u64 {
        self.shard.position(s) / self.block_size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClaimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next number, waiting while block `b - 2` still runs; `None` at
    /// the end or once `stop` is set.
    pub fn claim(&self, stop: &AtomicBool) -> Option<Claim<'_>> {
        let mut state = self.lock();
        loop {
            if stop.load(Ordering::Relaxed) || state.next >= self.end {
                return None;
            }
            let block = self.block(state.next);
            let old = block
                .checked_sub(2)
                .map_or(0, |b| state.running[(b % 4) as usize]);
            if old == 0 {
                break;
            }
            state = self
                .moved
                .wait_timeout(state, std::time::Duration::from_millis(50))
                .map_or_else(|poisoned| poisoned.into_inner().0, |(s, _)| s);
        }
        let seq = state.next;
        state.next += 1;
        state.running[(self.block(seq) % 4) as usize] += 1;
        Some(Claim { claims: self, seq })
    }

    /// What was claimed so far, as one lane of step 1.
    pub fn lane(&self) -> Lane {
        Lane {
            start: self.first,
            step: 1,
            next: self.lock().next.min(self.end.max(self.first)),
        }
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

mod segments;
pub use segments::SegmentPlan;

#[cfg(test)]
mod tests;
