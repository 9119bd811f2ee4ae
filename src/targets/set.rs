//! Sets of addresses as sorted, disjoint, merged inclusive intervals.
//!
//! A scan of `127.0.0.0/8` must not hold sixteen million addresses, and a
//! million-line `-iL` file must not hold a million intervals when they touch.
//! [`SpanSet`] gathers spans and merges them whenever its buffer doubles, so
//! memory follows the number of disjoint intervals, not of addresses or lines.
//! IPv4 uses `u32` points, IPv6 `u128`.

/// A point of an address space: `u32` for IPv4, `u128` for IPv6. The
/// arithmetic is done once, in `u128`, and brought back to the family's
/// width, which fails exactly where the family's own would overflow.
pub(crate) trait Point: Copy + Ord + std::fmt::Debug + Into<u128> + TryFrom<u128> {
    /// `self + 1`, `None` at `MAX`.
    fn next(self) -> Option<Self> {
        Self::try_from(self.into().checked_add(1)?).ok()
    }
    /// `self - 1`, `None` at zero.
    fn prev(self) -> Option<Self> {
        Self::try_from(self.into().checked_sub(1)?).ok()
    }
    /// `last - first + 1` for `first <= last`; `None` if it does not fit a `u128`.
    fn count(first: Self, last: Self) -> Option<u128> {
        (last.into() - first.into()).checked_add(1)
    }
    /// `self + offset`, the offset known to stay inside the family.
    fn add(self, offset: u128) -> Self {
        Self::try_from(self.into() + offset)
            .ok()
            .expect("an offset inside the address family")
    }
}

impl Point for u32 {}

impl Point for u128 {}

/// An inclusive interval `first..=last`, `first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span<T> {
    pub(crate) first: T,
    pub(crate) last: T,
}

impl<T: Point> Span<T> {
    pub(crate) fn new(first: T, last: T) -> Self {
        debug_assert!(first <= last, "span {first:?}..={last:?} is reversed");
        Span { first, last }
    }
}

/// Below this many buffered spans, merging is not worth it.
const MIN_COMPACT: usize = 4096;

/// A growing set of spans, normalized (sorted, disjoint, non-adjacent) on demand.
#[derive(Debug, Clone)]
pub(crate) struct SpanSet<T> {
    spans: Vec<Span<T>>,
    /// Length of `spans` right after the last normalization.
    normalized: usize,
}

impl<T: Point> Default for SpanSet<T> {
    fn default() -> Self {
        SpanSet {
            spans: Vec::new(),
            normalized: 0,
        }
    }
}

impl<T: Point> SpanSet<T> {
    /// Adds `span`; merges the buffer when it has doubled since the last merge,
    /// which keeps insertion `O(log n)` amortised and memory `O(disjoint spans)`.
    pub(crate) fn insert(&mut self, span: Span<T>) {
        self.spans.push(span);
        if self.spans.len() >= MIN_COMPACT.max(2 * self.normalized) {
            self.normalize();
        }
    }

    /// True if no span was inserted.
    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Buffered spans (merged or not); used to check memory bounds in tests.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.spans.len()
    }

    fn normalize(&mut self) {
        self.spans.sort_unstable();
        let mut out = 0;
        for i in 0..self.spans.len() {
            let span = self.spans[i];
            if out > 0 {
                let top = &mut self.spans[out - 1];
                // Overlapping or adjacent: extend. `top.last == MAX` swallows all.
                if top.last.next().is_none_or(|n| n >= span.first) {
                    top.last = top.last.max(span.last);
                    continue;
                }
            }
            self.spans[out] = span;
            out += 1;
        }
        self.spans.truncate(out);
        self.spans.shrink_to(2 * out);
        self.normalized = out;
    }

    /// The sorted, disjoint, non-adjacent spans.
    pub(crate) fn into_spans(mut self) -> Vec<Span<T>> {
        self.normalize();
        self.spans.shrink_to_fit();
        self.spans
    }
}

/// `a \ b` for two sorted, disjoint span lists; the result is sorted and disjoint.
pub(crate) fn subtract<T: Point>(a: &[Span<T>], b: &[Span<T>]) -> Vec<Span<T>> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &span in a {
        let mut first = span.first;
        // Skip excludes entirely below this span.
        while j < b.len() && b[j].last < first {
            j += 1;
        }
        let mut k = j;
        let mut done = false;
        while k < b.len() && b[k].first <= span.last {
            let ex = b[k];
            if ex.first > first {
                // `ex.first > first >= 0`, so `prev` exists.
                let before = ex.first.prev().unwrap_or(first);
                out.push(Span::new(first, before));
            }
            match ex.last.next() {
                Some(n) if ex.last < span.last => first = n,
                _ => {
                    done = true;
                    break;
                }
            }
            k += 1;
        }
        if !done {
            out.push(Span::new(first, span.last));
        }
        // The exclude at `k` (if any) may overlap the next span too: keep `j`.
    }
    out
}

/// Number of points in sorted, disjoint spans; `None` beyond `u128`.
pub(crate) fn count<T: Point>(spans: &[Span<T>]) -> Option<u128> {
    spans
        .iter()
        .try_fold(0u128, |acc, s| acc.checked_add(T::count(s.first, s.last)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(spans: &[(u32, u32)]) -> Vec<Span<u32>> {
        let mut s = SpanSet::default();
        for &(a, b) in spans {
            s.insert(Span::new(a, b));
        }
        s.into_spans()
    }

    fn pairs(spans: &[Span<u32>]) -> Vec<(u32, u32)> {
        spans.iter().map(|s| (s.first, s.last)).collect()
    }

    #[test]
    fn merges_overlapping_adjacent_and_duplicate_spans() {
        let s = set(&[(10, 20), (5, 9), (15, 30), (40, 50), (40, 50), (52, 52)]);
        assert_eq!(pairs(&s), [(5, 30), (40, 50), (52, 52)]);
    }

    #[test]
    fn merges_at_the_top_of_the_space() {
        let s = set(&[(u32::MAX, u32::MAX), (0, u32::MAX), (7, 7)]);
        assert_eq!(pairs(&s), [(0, u32::MAX)]);
        let s = SpanSet::<u128>::default();
        assert!(s.into_spans().is_empty());
    }

    #[test]
    fn subtract_cuts_holes_and_edges() {
        let a = set(&[(0, 100), (200, 300)]);
        let b = set(&[(0, 0), (50, 60), (100, 210), (300, 400)]);
        assert_eq!(pairs(&subtract(&a, &b)), [(1, 49), (61, 99), (211, 299)]);
        assert!(subtract(&a, &set(&[(0, u32::MAX)])).is_empty());
        assert_eq!(pairs(&subtract(&a, &[])), [(0, 100), (200, 300)]);
    }

    #[test]
    fn subtract_at_both_ends_of_the_space() {
        let a = set(&[(0, u32::MAX)]);
        let b = set(&[(0, 0), (u32::MAX, u32::MAX)]);
        assert_eq!(pairs(&subtract(&a, &b)), [(1, u32::MAX - 1)]);
    }

    #[test]
    fn count_does_not_overflow() {
        assert_eq!(count(&set(&[(0, u32::MAX)])), Some(1 << 32));
        let all = [Span::new(0u128, u128::MAX)];
        assert_eq!(count(&all), None);
        let half = [Span::new(0u128, u128::MAX >> 1)];
        assert_eq!(count(&half), Some(1 << 127));
    }

    #[test]
    fn buffer_stays_bounded_when_spans_merge() {
        let mut s = SpanSet::default();
        for p in 0..1_000_000u32 {
            s.insert(Span::new(p, p));
            assert!(s.buffered() <= MIN_COMPACT);
        }
        assert_eq!(pairs(&s.into_spans()), [(0, 999_999)]);
    }

    #[test]
    fn shuffled_points_merge_into_one_span() {
        let mut s = SpanSet::default();
        for i in 0..100_000u32 {
            // 7919 is coprime with 100_000: a permutation of 0..100_000.
            let p = (i * 7919) % 100_000;
            s.insert(Span::new(p, p));
        }
        assert_eq!(pairs(&s.into_spans()), [(0, 99_999)]);
    }

    fn points(spans: &[Span<u32>]) -> BTreeSet<u32> {
        spans.iter().flat_map(|s| s.first..=s.last).collect()
    }

    fn arb_spans() -> impl Strategy<Value = Vec<(u32, u32)>> {
        prop::collection::vec((0u32..200, 0u32..20), 0..12)
            .prop_map(|v| v.into_iter().map(|(a, len)| (a, a + len)).collect())
    }

    proptest! {
        #[test]
        fn normalized_spans_are_sorted_disjoint_and_exact(v in arb_spans()) {
            let s = set(&v);
            for w in s.windows(2) {
                prop_assert!(w[0].last + 1 < w[1].first);
            }
            let naive: BTreeSet<u32> = v.iter().flat_map(|&(a, b)| a..=b).collect();
            prop_assert_eq!(points(&s), naive);
        }

        #[test]
        fn subtract_is_set_difference(a in arb_spans(), b in arb_spans()) {
            let (sa, sb) = (set(&a), set(&b));
            let d = subtract(&sa, &sb);
            for w in d.windows(2) {
                prop_assert!(w[0].last < w[1].first);
            }
            let naive: BTreeSet<u32> = points(&sa).difference(&points(&sb)).copied().collect();
            prop_assert_eq!(points(&d), naive);
        }
    }
}
