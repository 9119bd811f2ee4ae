//! Connect deadlines for in-flight probes: a hashed hierarchical timer wheel keyed by slab index,
//! so that arming, cancelling and expiring tens of thousands of timeouts per worker is O(1) and
//! never allocates.

use std::fmt;
use std::time::{Duration, Instant};

/// Bits of a tick consumed by one level: each level has `2^6 = 64` slots.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask of the slot index within a level.
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Number of levels: `64^6` ms is about 2.2 years.
const LEVELS: usize = 6;
/// Index of the top level.
const TOP: usize = LEVELS - 1;
/// Ticks covered by the whole wheel, `64^6`.
const WHEEL_RANGE: u64 = 1 << (SLOT_BITS * LEVELS as u32);
/// Ticks covered by one slot of the top level, `64^5`.
const TOP_SLOT_RANGE: u64 = 1 << (SLOT_BITS * TOP as u32);
/// Farthest a key is *placed* ahead of the wheel's time, in ticks (about 2.15 years).
///
/// A key whose deadline lies farther away is parked at this distance instead, in the top level,
/// and re-placed from its true deadline when that slot comes round. The span stops one top-level
/// slot short of a full rotation, so a parked key never lands in the top-level slot the wheel is
/// currently in, which would be ambiguous between "now" and "one rotation from now".
const MAX_SPAN: u64 = WHEEL_RANGE - TOP_SLOT_RANGE - 1;
/// List index of the pending list: keys whose deadline has been reached, waiting for `poll`.
/// The slot lists of the levels come before it, `level * SLOTS + slot`.
const PENDING: usize = LEVELS * SLOTS;
/// Number of lists: every slot of every level, plus the pending list.
const LISTS: usize = PENDING + 1;
/// End-of-list marker in the intrusive links, and the reason keys are below `u32::MAX`.
const NIL: u32 = u32::MAX;
/// `Node::list` of a key that is not in the wheel.
const ABSENT: u16 = u16::MAX;
/// The largest capacity: every key must be representable as a `u32` other than [`NIL`].
const MAX_CAPACITY: usize = NIL as usize;

const MILLIS_PER_SEC: u64 = 1_000;
const NANOS_PER_MILLI: u32 = 1_000_000;

/// A hashed hierarchical timer wheel holding one deadline per slab key.
///
/// # Why a wheel
///
/// A worker keeps up to tens of thousands of connects in flight, each with a timeout, and almost
/// every timeout is cancelled: the connect completes first. A binary heap pays `O(log n)` per
/// insert and per expiry and cannot remove an entry without searching for it, so cancelled
/// deadlines pile up until they surface. The timing wheels of Varghese and Lauck ("Hashed and
/// Hierarchical Timing Wheels", SOSP 1987) make insert, cancel and expiry `O(1)`: a deadline is
/// hashed to a slot by its time, and a slot is a list. This is the same scheme as tokio's timer
/// driver (`runtime/time`), adapted to slab keys.
///
/// # Levels
///
/// Time is counted in ticks of 1 ms since the `start` given to [`Wheel::new`]. The wheel has six
/// levels of 64 slots; a slot of level `L` spans `64^L` ticks, so each level spans 64 times its
/// slot:
///
/// | level | one slot     | whole level  |
/// |-------|--------------|--------------|
/// | 0     | 1 ms         | 64 ms        |
/// | 1     | 64 ms        | ~4.1 s       |
/// | 2     | ~4.1 s       | ~4.4 min     |
/// | 3     | ~4.4 min     | ~4.7 h       |
/// | 4     | ~4.7 h       | ~12.4 days   |
/// | 5     | ~12.4 days   | ~2.2 years   |
///
/// A deadline goes to the level of the highest base-64 digit in which it differs from the
/// wheel's current tick, and to the slot given by its own digit at that level. Every key in a
/// level is therefore in a slot strictly after the wheel's own digit there (at the top level,
/// after it in ring order), and every key of a lower level expires before any key of a higher
/// one. A deadline beyond the top level's range
/// (more than about 2.15 years ahead) is parked in the top level at the farthest placeable tick,
/// one top-level slot short of a full rotation, and re-placed from its true deadline when that
/// slot comes due; the clamp affects only where a key waits, never when it fires.
///
/// # The cascade
///
/// Only level 0 is exact to the millisecond. When the wheel's time reaches the start of an
/// occupied slot at a higher level, the whole slot is taken and each key in it is placed again
/// relative to the new time; it now falls into a lower level (or into the pending list if its
/// deadline is exactly now). A key cascades at most once per level (a key parked beyond the
/// range also once per top-level slot, about every 12 days), so the work per key stays `O(1)`. Finding the next occupied slot does not scan: each level keeps a `u64`
/// occupancy mask, rotated to the wheel's position and searched with `trailing_zeros`.
///
/// # Slab keys
///
/// Keys are the indices of the engine's probe slab, `0..capacity`. Each key owns one fixed
/// node in a preallocated array: its deadline, the list it is on, and `u32` links to its
/// neighbours. The slot lists are intrusive doubly-linked lists through that array, so insert
/// and cancel touch a handful of words, there is no pointer or box per entry, and nothing is
/// allocated after [`Wheel::new`]. A key can be cancelled directly, without a handle.
///
/// # Time comes from the caller
///
/// The wheel reads no clock: it sees time only through the `deadline` and `now` arguments. Tests
/// drive it with a fake clock. Time never runs backwards: a `now` earlier than one already seen
/// is treated as the wheel's current time. Ticks saturate at `u64::MAX` (about 584 million years
/// after `start`).
///
/// # Misuse
///
/// Inserting a key that is already present, or a key `>= capacity`, is a bug in the caller and
/// trips a `debug_assert!`. In release builds a present key is rescheduled and an out-of-range
/// key is ignored; neither panics.
pub struct Wheel {
    /// Tick 0.
    start: Instant,
    /// The wheel's current time in ticks since `start`: every slot before it has been processed.
    elapsed: u64,
    /// Number of keys in the wheel.
    len: usize,
    /// Per level, bit `s` is set when slot `s` of that level is non-empty.
    occupied: [u64; LEVELS],
    /// First key of each list (slot lists, then the pending list), or [`NIL`].
    heads: [u32; LISTS],
    /// One node per key, indexed by key.
    nodes: Box<[Node]>,
}

/// The per-key state: a few words in a fixed array.
#[derive(Clone, Copy)]
struct Node {
    /// The tick at which the key expires: its deadline rounded up to the next millisecond.
    deadline: u64,
    /// Next key on the same list, or [`NIL`].
    next: u32,
    /// Previous key on the same list, or [`NIL`] when this key is the head.
    prev: u32,
    /// The list the key is on (an index into `heads`), or [`ABSENT`].
    list: u16,
}

impl Node {
    const VACANT: Node = Node {
        deadline: 0,
        next: NIL,
        prev: NIL,
        list: ABSENT,
    };
}

impl Wheel {
    /// Creates an empty wheel for keys `0..capacity` whose tick 0 is `start`.
    ///
    /// Preallocates everything: no method allocates afterwards. `capacity` is capped at
    /// `u32::MAX` keys.
    pub fn new(capacity: usize, start: Instant) -> Self {
        debug_assert!(
            capacity <= MAX_CAPACITY,
            "wheel capacity {capacity} exceeds {MAX_CAPACITY}"
        );
        let capacity = capacity.min(MAX_CAPACITY);
        Wheel {
            start,
            elapsed: 0,
            len: 0,
            occupied: [0; LEVELS],
            heads: [NIL; LISTS],
            nodes: vec![Node::VACANT; capacity].into_boxed_slice(),
        }
    }

    /// Schedules `key` to expire at `deadline`, rounded up to the next 1 ms tick so it never
    /// fires early. O(1).
    ///
    /// A deadline at or before the wheel's current time expires on the next [`poll`](Self::poll).
    /// `key` must be `< capacity` and not present (`debug_assert!`; see "Misuse" on [`Wheel`]).
    pub fn insert(&mut self, key: usize, deadline: Instant) {
        debug_assert!(
            key < self.nodes.len(),
            "key {key} out of range for a wheel of capacity {}",
            self.nodes.len()
        );
        debug_assert!(!self.contains(key), "key {key} is already in the wheel");
        if key >= self.nodes.len() {
            return;
        }
        if self.contains(key) {
            self.unlink(key);
            self.len -= 1;
        }
        self.nodes[key].deadline = self.ticks_ceil(deadline);
        self.place(key);
        self.len += 1;
    }

    /// Removes `key` if present and returns whether it was. O(1).
    pub fn cancel(&mut self, key: usize) -> bool {
        if !self.contains(key) {
            return false;
        }
        self.unlink(key);
        self.len -= 1;
        true
    }

    /// Whether `key` is scheduled (and has not yet been returned by [`poll`](Self::poll)).
    pub fn contains(&self, key: usize) -> bool {
        self.nodes.get(key).is_some_and(|node| node.list != ABSENT)
    }

    /// The earliest instant at which some key may expire, or `None` when the wheel is empty.
    ///
    /// Exact when the earliest key is in level 0 or already due (then it is the wheel's current
    /// time). For a key in a higher level it may be earlier: the instant its slot cascades. It is
    /// never later than the true expiry, so sleeping until it and then polling loses nothing.
    /// Also `None` in the degenerate case where that instant is not representable as an
    /// `Instant`.
    pub fn next_expiry(&self) -> Option<Instant> {
        let tick = if self.heads[PENDING] != NIL {
            self.elapsed
        } else {
            self.next_slot()?.1
        };
        self.start.checked_add(Duration::from_millis(tick))
    }

    /// Advances the wheel to `now` and pops one expired key (deadline, rounded up to the
    /// millisecond, `<= now`), or returns `None`. Call repeatedly until `None`.
    ///
    /// Keys that expire by the same `now` come out in no particular order.
    pub fn poll(&mut self, now: Instant) -> Option<usize> {
        let now = self.ticks_floor(now);
        loop {
            if let Some(key) = self.pop_pending() {
                return Some(key);
            }
            match self.next_slot() {
                Some((list, tick)) if tick <= now => {
                    // Never skip past an occupied slot: stop at its start and cascade it.
                    self.elapsed = tick;
                    self.cascade(list);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now);
                    return None;
                }
            }
        }
    }

    /// Number of keys in the wheel.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ticks from `start` to `t`, rounded down; 0 before `start`.
    fn ticks_floor(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        millis(d.as_secs(), u64::from(d.subsec_millis()))
    }

    /// Ticks from `start` to `t`, rounded up; 0 at or before `start`.
    fn ticks_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        millis(
            d.as_secs(),
            u64::from(d.subsec_nanos().div_ceil(NANOS_PER_MILLI)),
        )
    }

    /// Puts `key` (not on any list) on the list its deadline belongs to, relative to `elapsed`.
    fn place(&mut self, key: usize) {
        let deadline = self.nodes[key].deadline;
        let list = if deadline <= self.elapsed {
            PENDING
        } else {
            let at = deadline.min(self.elapsed.saturating_add(MAX_SPAN));
            let level = level_for(self.elapsed, at);
            // level <= TOP and slot < SLOTS, so this is < PENDING.
            level * SLOTS + slot_for(at, level)
        };
        self.push(list, key);
    }

    /// Pushes `key` on the front of `list` and marks the slot occupied.
    fn push(&mut self, list: usize, key: usize) {
        let head = self.heads[list];
        let link = as_link(key);
        if head != NIL {
            self.nodes[head as usize].prev = link;
        }
        let node = &mut self.nodes[key];
        node.next = head;
        node.prev = NIL;
        // list < LISTS = 385, far below u16::MAX.
        node.list = list as u16;
        self.heads[list] = link;
        if list < PENDING {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        }
    }

    /// Takes `key` off its list, clearing the slot's occupancy bit if it empties.
    fn unlink(&mut self, key: usize) {
        let Node {
            next, prev, list, ..
        } = self.nodes[key];
        let list = usize::from(list);
        if prev == NIL {
            self.heads[list] = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if list < PENDING && self.heads[list] == NIL {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
        self.nodes[key].list = ABSENT;
    }

    /// Removes and returns one key from the pending list.
    fn pop_pending(&mut self) -> Option<usize> {
        let head = self.heads[PENDING];
        if head == NIL {
            return None;
        }
        let key = head as usize;
        self.unlink(key);
        self.len -= 1;
        Some(key)
    }

    /// Empties slot list `list`, whose start is the wheel's current time, and places each of its
    /// keys again: into a lower level, or the pending list if its deadline is now.
    fn cascade(&mut self, list: usize) {
        // Detach the whole list first. A re-placed key never returns to this slot (it lands in
        // a lower level, or in another top-level slot), but detaching makes that irrelevant.
        let mut key = std::mem::replace(&mut self.heads[list], NIL);
        self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        while key != NIL {
            let node = self.nodes[key as usize];
            debug_assert!(
                node.deadline >= self.elapsed,
                "key {key} missed its deadline"
            );
            self.place(key as usize);
            key = node.next;
        }
    }

    /// The occupied slot that comes due first, as `(list, tick at which it is processed)`.
    fn next_slot(&self) -> Option<(usize, u64)> {
        // Lower levels always come due before higher ones (see the type's docs), so the first
        // occupied level holds the answer.
        (0..LEVELS).find_map(|level| {
            let slot = next_occupied_slot(self.occupied[level], self.elapsed, level)?;
            Some((level * SLOTS + slot, slot_start(self.elapsed, level, slot)))
        })
    }
}

impl fmt::Debug for Wheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("elapsed_ms", &self.elapsed)
            .field("len", &self.len)
            .field("capacity", &self.nodes.len())
            .field("pending", &(self.heads[PENDING] != NIL))
            .field("occupied", &format_args!("{:016x?}", self.occupied))
            .finish_non_exhaustive()
    }
}

/// `secs * 1000 + extra_millis`, saturating at `u64::MAX`.
fn millis(secs: u64, extra_millis: u64) -> u64 {
    secs.checked_mul(MILLIS_PER_SEC)
        .and_then(|ms| ms.checked_add(extra_millis))
        .unwrap_or(u64::MAX)
}

/// The link value for `key`. Keys are below the capacity, which is at most [`MAX_CAPACITY`], so
/// the conversion is lossless and never yields [`NIL`].
fn as_link(key: usize) -> u32 {
    debug_assert!(key < MAX_CAPACITY);
    key as u32
}

/// The level for a key placed at tick `at` when the wheel's time is `elapsed` (`at > elapsed`):
/// the base-64 digit of the highest bit in which they differ, capped at the top level.
fn level_for(elapsed: u64, at: u64) -> usize {
    // Setting the low digit makes "differ only in the low digit" (or not at all) mean level 0
    // and keeps the value non-zero, so `leading_zeros` is at most 58.
    let diff = (elapsed ^ at) | SLOT_MASK;
    let highest_bit = u64::BITS - 1 - diff.leading_zeros();
    ((highest_bit / SLOT_BITS) as usize).min(TOP)
}

/// The slot of tick `at` in `level`: its base-64 digit at that level.
fn slot_for(at: u64, level: usize) -> usize {
    // level <= TOP, so the shift is at most 30; the mask keeps the result below SLOTS.
    ((at >> (SLOT_BITS as usize * level)) & SLOT_MASK) as usize
}

/// The first occupied slot of a level after the wheel's own slot there, wrapping round: only the
/// top level ever holds slots at or before the wheel's own (for the next rotation).
fn next_occupied_slot(occupied: u64, elapsed: u64, level: usize) -> Option<usize> {
    if occupied == 0 {
        return None;
    }
    let first = (slot_for(elapsed, level) + 1) % SLOTS;
    // Rotate so that bit 0 is slot `first`; `trailing_zeros` is then the distance to the first
    // occupied slot, < 64 because the mask is non-zero.
    let distance = occupied.rotate_right(first as u32).trailing_zeros() as usize;
    Some((first + distance) % SLOTS)
}

/// The tick at which `slot` of `level` must be processed: the first start of that slot after
/// `elapsed`.
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = SLOT_BITS as usize * level;
    // Ticks spanned by the whole level, minus one: a mask of the level's digits and below.
    let level_mask = (1_u64 << (shift + SLOT_BITS as usize)) - 1;
    // `|` cannot overflow: the slot offset stays within the level's aligned block.
    let start = (elapsed & !level_mask) | ((slot as u64) << shift);
    if start > elapsed {
        start
    } else {
        // A top-level slot for the next rotation.
        start.saturating_add(level_mask + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A wheel started at `t0` holding key `i` due `deadlines[i]` ms after it.
    fn wheel_of(t0: Instant, deadlines: &[u64]) -> Wheel {
        let mut w = Wheel::new(deadlines.len(), t0);
        for (key, &d) in deadlines.iter().enumerate() {
            w.insert(key, t0 + ms(d));
        }
        w
    }

    /// Every key `w` fires at `now`, sorted.
    fn fire_all(w: &mut Wheel, now: Instant) -> Vec<usize> {
        let mut fired: Vec<usize> = std::iter::from_fn(|| w.poll(now)).collect();
        fired.sort_unstable();
        fired
    }

    /// The level rule stated plainly: the largest `L` such that `elapsed` and `at` differ in
    /// some bit `>= 6 * L`, capped at the top level.
    fn naive_level(elapsed: u64, at: u64) -> usize {
        (1..LEVELS)
            .rev()
            .find(|&l| elapsed >> (6 * l) != at >> (6 * l))
            .unwrap_or(0)
    }

    /// The first multiple of `64^level` after `elapsed` whose digit at `level` is `slot`.
    fn naive_slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
        let width = 64_u64.pow(level as u32);
        let mut t = (elapsed / width + 1) * width;
        while (t / width) % 64 != slot as u64 {
            t += width;
        }
        t
    }

    /// Distances around every level boundary: `64^L` and each multiple `pos * 64^L`, +- 2.
    fn boundary_distances() -> Vec<u64> {
        let mut out = Vec::new();
        for level in 0..=LEVELS as u32 {
            let width = 64_u64.pow(level);
            for pos in 1..=64 {
                let d = pos * width;
                out.extend([d.saturating_sub(2), d - 1, d, d + 1, d + 2]);
            }
        }
        out.retain(|&d| d > 0);
        out
    }

    #[test]
    fn level_for_at_boundaries_from_zero() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        for level in 1..LEVELS {
            let width = 64_u64.pow(level as u32);
            assert_eq!(level_for(0, width - 1), level - 1, "64^{level} - 1");
            assert_eq!(level_for(0, width), level, "64^{level}");
            for pos in 1..64 {
                let d = pos * width;
                assert_eq!(level_for(0, d), level, "{pos} * 64^{level}");
                assert_eq!(level_for(0, d + 1), level, "{pos} * 64^{level} + 1");
                if pos > 1 {
                    assert_eq!(level_for(0, d - 1), level, "{pos} * 64^{level} - 1");
                }
            }
        }
        // Beyond the wheel's range: capped at the top level.
        assert_eq!(level_for(0, WHEEL_RANGE - 1), TOP);
        assert_eq!(level_for(0, WHEEL_RANGE), TOP);
        assert_eq!(level_for(0, u64::MAX), TOP);
    }

    #[test]
    fn level_depends_on_digits_not_distance() {
        // One tick ahead, but across a level-1 boundary: the slot of level 0 would be behind.
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(4095, 4096), 2);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(TOP_SLOT_RANGE - 1, TOP_SLOT_RANGE), TOP);
    }

    #[test]
    fn level_and_slot_match_naive_rule_exhaustively_near_boundaries() {
        let mut elapsed_values: Vec<u64> = (0..=130).collect();
        for level in 1..=LEVELS as u32 {
            let w = 64_u64.pow(level);
            elapsed_values.extend([
                w.saturating_sub(65),
                w - 64,
                w - 2,
                w - 1,
                w,
                w + 1,
                3 * w + 17,
            ]);
        }
        elapsed_values.extend([123_456_789, u64::MAX / 3, u64::MAX - WHEEL_RANGE - 7]);
        let mut distances = boundary_distances();
        distances.extend(1..=4200);
        for &elapsed in &elapsed_values {
            for &d in &distances {
                let Some(at) = elapsed.checked_add(d.min(MAX_SPAN)) else {
                    continue;
                };
                let level = level_for(elapsed, at);
                assert_eq!(level, naive_level(elapsed, at), "elapsed={elapsed} at={at}");
                let slot = slot_for(at, level);
                assert_eq!(slot as u64, (at / 64_u64.pow(level as u32)) % 64);
                // A placed key's slot comes due after now and no later than its tick.
                let due = slot_start(elapsed, level, slot);
                assert!(
                    due > elapsed && due <= at,
                    "elapsed={elapsed} at={at} due={due}"
                );
                if level == 0 {
                    assert_eq!(due, at, "level 0 is exact");
                }
                assert_ne!(slot, slot_for(elapsed, level), "never the wheel's own slot");
            }
        }
    }

    #[test]
    fn slot_for_every_position_of_every_level() {
        for level in 0..LEVELS {
            let width = 64_u64.pow(level as u32);
            for pos in 0..64_u64 {
                assert_eq!(slot_for(pos * width, level), pos as usize);
                assert_eq!(slot_for(pos * width + width - 1, level), pos as usize);
                assert_eq!(slot_for((64 + pos) * width, level), pos as usize);
            }
        }
    }

    #[test]
    fn slot_start_matches_naive_search() {
        for elapsed in [
            0,
            1,
            63,
            64,
            65,
            4095,
            4096,
            262_143,
            999_999,
            TOP_SLOT_RANGE * 63 + 5,
        ] {
            for level in 0..LEVELS {
                for slot in 0..SLOTS {
                    let expected = naive_slot_start(elapsed, level, slot);
                    let is_after_own = slot > slot_for(elapsed, level);
                    // Lower levels only hold slots after their own; the top level wraps.
                    if is_after_own || level == TOP {
                        assert_eq!(
                            slot_start(elapsed, level, slot),
                            expected,
                            "elapsed={elapsed} level={level} slot={slot}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn next_occupied_slot_wraps_after_own_slot() {
        assert_eq!(next_occupied_slot(0, 0, 0), None);
        assert_eq!(next_occupied_slot(1 << 5, 0, 0), Some(5));
        // Own slot 10: slot 3 is only reached after wrapping, slot 12 first.
        let mask = (1 << 3) | (1 << 12);
        assert_eq!(next_occupied_slot(mask, 10, 0), Some(12));
        assert_eq!(next_occupied_slot(1 << 3, 10, 0), Some(3));
        assert_eq!(next_occupied_slot(1 << 63, 62, 0), Some(63));
        assert_eq!(next_occupied_slot(1, 63, 0), Some(0));
        // At level 1 the own slot of tick 64 * 7 + 5 is 7.
        assert_eq!(
            next_occupied_slot((1 << 7) | (1 << 9), 64 * 7 + 5, 1),
            Some(9)
        );
    }

    #[test]
    fn fires_at_rounded_up_millisecond_never_early() {
        let t0 = Instant::now();
        let mut w = Wheel::new(4, t0);
        w.insert(0, t0 + Duration::from_micros(2_300));
        assert_eq!(w.next_expiry(), Some(t0 + ms(3)));
        assert_eq!(w.poll(t0 + ms(2)), None);
        assert_eq!(w.poll(t0 + Duration::from_micros(2_999)), None);
        assert!(w.contains(0));
        assert_eq!(w.poll(t0 + ms(3)), Some(0));
        assert_eq!(w.poll(t0 + ms(3)), None);
        assert!(!w.contains(0));
        assert!(w.is_empty());
        assert_eq!(w.next_expiry(), None);
    }

    #[test]
    fn whole_millisecond_deadline_fires_on_that_millisecond() {
        let t0 = Instant::now();
        let mut w = Wheel::new(1, t0);
        w.insert(0, t0 + ms(5));
        assert_eq!(w.poll(t0 + ms(5) - Duration::from_nanos(1)), None);
        assert_eq!(w.poll(t0 + ms(5)), Some(0));
    }

    #[test]
    fn late_poll_fires_everything_due() {
        let t0 = Instant::now();
        let mut w = Wheel::new(8, t0);
        for (key, deadline) in [(0, 1), (1, 70), (2, 5_000), (3, 300_000), (4, 300_001)] {
            w.insert(key, t0 + ms(deadline));
        }
        assert_eq!(fire_all(&mut w, t0 + ms(300_000)), [0, 1, 2, 3]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_expiry(), Some(t0 + ms(300_001)));
        assert_eq!(w.poll(t0 + ms(300_001)), Some(4));
    }

    #[test]
    fn cancel_removes_and_reports() {
        let t0 = Instant::now();
        let mut w = Wheel::new(4, t0);
        w.insert(1, t0 + ms(10));
        w.insert(2, t0 + ms(10));
        assert_eq!(w.len(), 2);
        assert!(w.cancel(1));
        assert!(!w.cancel(1));
        assert!(!w.contains(1));
        assert!(!w.cancel(3), "never inserted");
        assert!(!w.cancel(99), "out of range");
        assert!(!w.contains(99));
        assert_eq!(w.len(), 1);
        assert_eq!(w.poll(t0 + ms(10)), Some(2));
        assert_eq!(w.poll(t0 + ms(1_000)), None);
        // Cancelling the last key of a slot frees the slot: nothing is due any more.
        w.insert(0, t0 + ms(2_000));
        assert!(w.cancel(0));
        assert_eq!(w.next_expiry(), None);
        assert!(w.occupied.iter().all(|&m| m == 0));
    }

    #[test]
    fn reinsert_after_cancel_uses_new_deadline() {
        let t0 = Instant::now();
        let mut w = Wheel::new(2, t0);
        w.insert(0, t0 + ms(100));
        assert!(w.cancel(0));
        w.insert(0, t0 + ms(30));
        assert_eq!(w.poll(t0 + ms(29)), None);
        assert_eq!(w.poll(t0 + ms(30)), Some(0));
        // And after firing, a key can be scheduled again.
        w.insert(0, t0 + ms(5_000));
        assert_eq!(w.poll(t0 + ms(4_999)), None);
        assert_eq!(w.poll(t0 + ms(5_000)), Some(0));
        assert!(w.is_empty());
    }

    #[test]
    fn many_keys_in_one_slot() {
        let t0 = Instant::now();
        let n = 1_000;
        let mut w = Wheel::new(n, t0);
        for key in 0..n {
            w.insert(key, t0 + ms(1_500));
        }
        // Cancel from the head, the tail and the middle of the slot's list.
        for key in [0, n - 1, n / 2] {
            assert!(w.cancel(key));
        }
        assert_eq!(w.poll(t0 + ms(1_499)), None);
        let fired = fire_all(&mut w, t0 + ms(1_500));
        let expected: Vec<usize> = (1..n - 1).filter(|&k| k != n / 2).collect();
        assert_eq!(fired, expected);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_cascade_to_the_exact_millisecond() {
        let t0 = Instant::now();
        // One key per level, boundary values, and one past the wheel's range.
        let deadlines: [u64; 10] = [
            63,
            64,
            4_095,
            4_097,
            262_145,
            16_777_300,
            1_073_741_900,
            WHEEL_RANGE - 1,
            WHEEL_RANGE + 12_345,
            5 * WHEEL_RANGE + 7,
        ];
        let mut w = wheel_of(t0, &deadlines);
        for (key, &d) in deadlines.iter().enumerate() {
            // Jump to just before the deadline (cascading everything on the way), then step.
            assert!(
                w.next_expiry().is_some_and(|e| e <= t0 + ms(d)),
                "next_expiry after the deadline of key {key}"
            );
            assert_eq!(w.poll(t0 + ms(d - 1)), None, "key {key} fired early");
            assert_eq!(w.poll(t0 + ms(d)), Some(key), "key {key} not fired on time");
            assert_eq!(w.poll(t0 + ms(d)), None);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn stepping_one_millisecond_at_a_time_fires_exactly_once() {
        let t0 = Instant::now();
        let deadlines = [
            1_u64, 2, 63, 64, 65, 127, 128, 1_000, 4_095, 4_096, 4_097, 9_999,
        ];
        let mut w = wheel_of(t0, &deadlines);
        for now in 0..=10_000 {
            while let Some(key) = w.poll(t0 + ms(now)) {
                assert_eq!(deadlines[key], now, "key {key}");
            }
        }
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_next_poll() {
        let t0 = Instant::now();
        let mut w = Wheel::new(4, t0);
        assert_eq!(w.poll(t0 + ms(100)), None);
        // Before the wheel's current time, exactly at it, and before the wheel's start.
        w.insert(0, t0 + ms(40));
        w.insert(1, t0 + ms(100));
        if let Some(before_start) = t0.checked_sub(ms(10)) {
            w.insert(2, before_start);
        } else {
            w.insert(2, t0);
        }
        assert_eq!(w.next_expiry(), Some(t0 + ms(100)));
        // Even a poll with an earlier `now` fires them: time does not run backwards.
        assert_eq!(fire_all(&mut w, t0 + ms(1)), [0, 1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn backwards_time_is_ignored() {
        let t0 = Instant::now();
        let mut w = Wheel::new(1, t0);
        assert_eq!(w.poll(t0 + ms(50)), None);
        w.insert(0, t0 + ms(60));
        assert_eq!(w.poll(t0 + ms(10)), None);
        assert_eq!(w.poll(t0 + ms(59)), None);
        assert_eq!(w.poll(t0 + ms(60)), Some(0));
    }

    #[test]
    fn next_expiry_is_exact_in_level_zero_and_never_late_above() {
        let t0 = Instant::now();
        let mut w = Wheel::new(4, t0);
        assert_eq!(w.next_expiry(), None);
        // Level 1, slot 15: the slot cascades at 960 ms.
        w.insert(0, t0 + ms(1_000));
        assert_eq!(w.next_expiry(), Some(t0 + ms(960)));
        // Level 0 wins and is exact.
        w.insert(1, t0 + ms(7));
        assert_eq!(w.next_expiry(), Some(t0 + ms(7)));
        assert_eq!(w.poll(t0 + ms(7)), Some(1));
        assert_eq!(w.next_expiry(), Some(t0 + ms(960)));
        // After the cascade at 960 ms the key is in level 0 and the answer is exact.
        assert_eq!(w.poll(t0 + ms(960)), None);
        assert_eq!(w.next_expiry(), Some(t0 + ms(1_000)));
        // A due key makes the answer the wheel's current time.
        w.insert(2, t0);
        assert_eq!(w.next_expiry(), Some(t0 + ms(960)));
        assert_eq!(w.poll(t0 + ms(960)), Some(2));
        assert_eq!(w.poll(t0 + ms(1_000)), Some(0));
        assert_eq!(w.next_expiry(), None);
    }

    #[test]
    fn deadline_crossing_a_level_boundary_one_tick_ahead() {
        let t0 = Instant::now();
        let mut w = Wheel::new(1, t0);
        assert_eq!(w.poll(t0 + ms(4_095)), None);
        w.insert(0, t0 + ms(4_096));
        assert_eq!(w.next_expiry(), Some(t0 + ms(4_096)));
        assert_eq!(w.poll(t0 + ms(4_096)), Some(0));
    }

    #[test]
    fn debug_output_is_compact() {
        let w = Wheel::new(20_000, Instant::now());
        let s = format!("{w:?}");
        assert!(s.starts_with("Wheel {") && s.len() < 400, "{s}");
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "already in the wheel")]
    fn double_insert_is_caught_in_debug() {
        let t0 = Instant::now();
        let mut w = Wheel::new(1, t0);
        w.insert(0, t0 + ms(1));
        w.insert(0, t0 + ms(2));
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "out of range")]
    fn out_of_range_insert_is_caught_in_debug() {
        let t0 = Instant::now();
        Wheel::new(1, t0).insert(1, t0);
    }

    #[cfg(not(debug_assertions))]
    #[test]
    fn misuse_does_not_panic_in_release() {
        let t0 = Instant::now();
        let mut w = Wheel::new(1, t0);
        w.insert(5, t0 + ms(1));
        assert!(w.is_empty());
        w.insert(0, t0 + ms(1));
        w.insert(0, t0 + ms(9));
        assert_eq!(w.len(), 1);
        assert_eq!(w.poll(t0 + ms(8)), None);
        assert_eq!(w.poll(t0 + ms(9)), Some(0));
    }

    /// Keys in the property test; a small number so inserts, cancels and collisions mix.
    const MODEL_KEYS: usize = 24;

    #[derive(Debug, Clone)]
    enum Op {
        /// Schedule `key` at the current fake time plus `offset_ns` (negative: in the past).
        Insert {
            key: usize,
            offset_ns: i64,
        },
        Cancel {
            key: usize,
        },
        /// Move the fake clock forward and drain `poll`.
        Advance {
            ns: u64,
        },
    }

    const NS_PER_MS: i64 = 1_000_000;
    /// Far beyond the wheel's range, in nanoseconds (still well within `u64` nanoseconds).
    const FAR_NS: i64 = 4 * WHEEL_RANGE as i64 * NS_PER_MS;

    fn op() -> impl Strategy<Value = Op> {
        let key = 0..MODEL_KEYS;
        let offset = prop_oneof![
            1 => -5 * NS_PER_MS..=0,
            6 => 0..=70 * NS_PER_MS,
            3 => 0..=5_000 * NS_PER_MS,
            1 => 0..=FAR_NS,
        ];
        let advance = prop_oneof![
            6 => 0..=2 * NS_PER_MS as u64,
            3 => 0..=100 * NS_PER_MS as u64,
            2 => 0..=10_000 * NS_PER_MS as u64,
            1 => 0..=FAR_NS as u64 / 3,
        ];
        prop_oneof![
            3 => (key.clone(), offset).prop_map(|(key, offset_ns)| Op::Insert { key, offset_ns }),
            1 => key.prop_map(|key| Op::Cancel { key }),
            3 => advance.prop_map(|ns| Op::Advance { ns }),
        ]
    }

    /// The model's tick for a deadline `ns` nanoseconds after `start`: rounded up, 0 if before.
    fn model_tick(ns: i128) -> u64 {
        if ns <= 0 {
            0
        } else {
            u64::try_from(ns.div_euclid(1_000_000) + i128::from(ns % 1_000_000 != 0)).unwrap()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The wheel against a map of key -> deadline tick: the same keys expire, each at the
        /// first poll at or after its deadline tick and never before it.
        #[test]
        fn behaves_like_a_sorted_map(ops in prop::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let at = |ns: u64| t0 + Duration::from_nanos(ns);
            let mut wheel = Wheel::new(MODEL_KEYS, t0);
            let mut model: BTreeMap<usize, u64> = BTreeMap::new();
            let mut now_ns: u64 = 0;
            let drain = |wheel: &mut Wheel, model: &mut BTreeMap<usize, u64>, now_ns: u64| {
                let now_tick = now_ns / 1_000_000;
                let mut fired = Vec::new();
                while let Some(key) = wheel.poll(at(now_ns)) {
                    let deadline = model.remove(&key);
                    prop_assert!(deadline.is_some(), "key {} fired but was not scheduled", key);
                    prop_assert!(deadline.unwrap() <= now_tick, "key {} fired early", key);
                    fired.push(key);
                }
                let late: Vec<_> = model.iter().filter(|&(_, &d)| d <= now_tick).collect();
                prop_assert!(late.is_empty(), "due but not fired: {:?}", late);
                // Nothing is due, so the next expiry is in the future and not after any deadline.
                match (wheel.next_expiry(), model.values().min()) {
                    (None, None) => {}
                    (Some(e), Some(&min)) => {
                        prop_assert!(e > t0 + Duration::from_millis(now_tick));
                        prop_assert!(e <= t0 + Duration::from_millis(min));
                    }
                    (e, min) => prop_assert!(false, "next_expiry {:?} vs model min {:?}", e, min),
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Insert { key, offset_ns } => {
                        if wheel.contains(key) {
                            prop_assert!(wheel.cancel(key));
                            model.remove(&key);
                        }
                        let deadline_ns = i128::from(now_ns) + i128::from(offset_ns);
                        let deadline = if deadline_ns >= 0 {
                            at(u64::try_from(deadline_ns).unwrap())
                        } else {
                            let back = Duration::from_nanos(deadline_ns.unsigned_abs() as u64);
                            t0.checked_sub(back).unwrap_or(t0)
                        };
                        wheel.insert(key, deadline);
                        model.insert(key, model_tick(deadline_ns));
                        // Not after the new deadline, or after now for a deadline in the past.
                        let due = model[&key].max(now_ns / 1_000_000);
                        let next = wheel.next_expiry();
                        prop_assert!(next.is_some_and(|e| e <= t0 + Duration::from_millis(due)));
                    }
                    Op::Cancel { key } => {
                        prop_assert_eq!(wheel.cancel(key), model.remove(&key).is_some());
                    }
                    Op::Advance { ns } => {
                        now_ns += ns;
                        drain(&mut wheel, &mut model, now_ns)?;
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                for key in 0..MODEL_KEYS {
                    prop_assert_eq!(wheel.contains(key), model.contains_key(&key));
                }
            }
            // Far enough ahead for every deadline: everything left fires.
            now_ns += 2 * FAR_NS as u64;
            drain(&mut wheel, &mut model, now_ns)?;
            prop_assert!(model.is_empty() && wheel.is_empty());
        }
    }
}
