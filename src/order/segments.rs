//! The outer layer of the order for spaces of more than `u64::MAX` probes:
//! which [`Segments`] segment a run is in, the seeded order the segments
//! are visited in, and each segment's own [`Schedule`].
//!
//! Inside a segment everything is the ordinary `u64` machinery (a
//! [`BlockOrder`] keyed by the segment, the shard's positions, resume's
//! sequence numbers); the engine never learns that segments exist. A run
//! scans segment after segment in the plan's order; a resume file records
//! the *ordinal* of the segment it stopped in (every earlier one is done)
//! and its progress there. See docs/SHARDING.md for what this costs in
//! randomness.

use std::sync::Arc;

use super::{Blocks, Done, Order, Permutation, Schedule, Shard, mix};
use crate::targets::{Segments, TargetSpace};

/// How a segmented scan walks its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    segments: Arc<Segments>,
    /// Ordinal to segment: `None` in `--order sequential`.
    visit: Option<Permutation>,
    seed: u64,
    shard: Shard,
}

impl SegmentPlan {
    /// The plan of `segments`: visited in a seeded random order when
    /// `random`, else in address order; `shard` applies within each one.
    pub fn new(segments: Segments, random: bool, seed: u64, shard: Shard) -> SegmentPlan {
        let count = segments.count();
        SegmentPlan {
            segments: Arc::new(segments),
            visit: random.then(|| Permutation::new(count, mix(seed ^ 0x5e6_3e47))),
            seed,
            shard,
        }
    }

    /// The segments.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// How many segments there are (ordinals `0..count()`).
    pub fn count(&self) -> u64 {
        self.segments.count()
    }

    /// The segment visited `ordinal`-th.
    pub fn segment(&self, ordinal: u64) -> u64 {
        self.visit.map_or(ordinal, |p| p.apply(ordinal))
    }

    /// The seed of segment `segment`'s block order: every segment is
    /// permuted differently.
    pub fn seed_of(&self, segment: u64) -> u64 {
        mix(self.seed ^ mix(segment ^ 0x5e9_0001))
    }

    /// The space and schedule of the segment visited `ordinal`-th, with
    /// nothing done yet.
    pub fn at(&self, ordinal: u64) -> (TargetSpace, Schedule) {
        let segment = self.segment(ordinal);
        let space = self.segments.space(segment);
        let blocks = Blocks::new(space.len(), space.ports().len() as u64);
        let order = match self.visit {
            Some(_) => Order::random(blocks, self.seed_of(segment)),
            None => Order::Sequential,
        };
        let schedule = Schedule::new(blocks, order, self.shard, Done::none());
        (space, schedule)
    }

    /// Probes of the whole scan that this shard owns.
    pub fn planned(&self) -> u128 {
        let count = self.count();
        let ports = self.segments.ports().len() as u64;
        let full = self.segments.hosts_per_segment() * ports;
        let last = self.segments.host_range(count - 1);
        let last = u64::try_from(last.end - last.start).unwrap_or(u64::MAX) * ports;
        u128::from(count - 1) * u128::from(self.shard.len(full)) + u128::from(self.shard.len(last))
    }

    /// Probes of this shard in the segments after the `ordinal`-th.
    pub fn planned_after(&self, ordinal: u64) -> u128 {
        let ports = self.segments.ports().len() as u64;
        let count = self.count();
        let full = self.shard.len(self.segments.hosts_per_segment() * ports);
        let later = count.saturating_sub(ordinal + 1);
        // The short last segment, if visited later, holds less.
        let last_ordinal = self.visit.map_or(count - 1, |p| p.invert(count - 1));
        let range = self.segments.host_range(count - 1);
        let last = u64::try_from(range.end - range.start).unwrap_or(u64::MAX) * ports;
        let mut sum = u128::from(later) * u128::from(full);
        if last_ordinal > ordinal {
            sum = sum - u128::from(full) + u128::from(self.shard.len(last));
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{TargetArgs, build_segmented};
    use std::net::IpAddr;

    fn segments(targets: &[&str], ports: &str) -> Segments {
        let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        let (built, segments) = build_segmented(&TargetArgs {
            targets: &targets,
            ports: Some(ports),
            resolve: false,
            ..TargetArgs::default()
        })
        .unwrap();
        let segments = segments.expect("segmented");
        assert_eq!(built.space, segments.space(0));
        segments
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The last host of segment `i` and the first of `i + 1` are neighbours,
    /// and the segments together hold every host once.
    fn assert_seamless(s: &Segments) {
        let mut hosts = 0u128;
        for i in 0..s.count() {
            let space = s.space(i);
            hosts += u128::from(space.host_count());
            assert!(space.len() <= crate::targets::SEGMENT_PROBES);
            if i + 1 < s.count() {
                let last = space.host(space.host_count() - 1).unwrap();
                let next = s.space(i + 1).host(0).unwrap();
                let (IpAddr::V6(a), IpAddr::V6(b)) = (last, next) else {
                    continue; // the IPv4 to IPv6 seam is not a neighbour
                };
                assert_eq!(u128::from(a) + 1, u128::from(b), "seam {i}");
            }
        }
        assert_eq!(hosts, s.hosts());
    }

    #[test]
    fn a_space_of_exactly_2_64_probes_is_two_segments() {
        let s = segments(&["::/64"], "80");
        assert_eq!(s.probes(), 1 << 64);
        assert_eq!(s.count(), 2);
        assert_eq!(s.space(0).len(), 1 << 63);
        assert_eq!(s.space(1).host(0), Some(ip("::8000:0:0:0")));
        assert_eq!(
            s.space(1).host((1 << 63) - 1),
            Some(ip("::ffff:ffff:ffff:ffff"))
        );
        assert_seamless(&s);
        // 2^63 probes are one space; one more is two segments.
        let build = |targets: &[&str]| {
            let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
            build_segmented(&TargetArgs {
                targets: &targets,
                ports: Some("80"),
                resolve: false,
                ..TargetArgs::default()
            })
            .unwrap()
        };
        let (built, none) = build(&["::/65"]);
        assert!(none.is_none());
        assert_eq!(built.space.len(), 1 << 63);
        let (built, cut) = build(&["::/65", "1::"]);
        let cut = cut.expect("segmented");
        assert_eq!(cut.count(), 2);
        assert_eq!(built.space.len(), 1 << 63);
        assert_eq!(cut.space(1).len(), 1);
        assert_eq!(cut.space(1).host(0), Some(ip("1::")));
    }

    #[test]
    fn the_unrouted_ipv6_range_is_2_80_probes_in_2_17_segments() {
        let s = segments(&["2001:2::/48"], "80");
        assert_eq!(s.probes(), 1 << 80);
        assert_eq!(s.count(), 1 << 17);
        assert_eq!(s.space(0).host(0), Some(ip("2001:2::")));
        let last = s.space(s.count() - 1);
        assert_eq!(
            last.host(last.host_count() - 1),
            Some(ip("2001:2:0:ffff:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(s.host_range(5).start, 5 << 63);
        // Ports shrink the segments: whole hosts only.
        let s = segments(&["2001:2::/48"], "80,443,8080");
        assert_eq!(s.hosts_per_segment(), (1 << 63) / 3);
        assert_eq!(s.space(0).len(), (1 << 63) / 3 * 3);
        assert_eq!(s.count(), (1u128 << 80).div_ceil((1 << 63) / 3) as u64);
        for i in [0, 1, s.count() - 2, s.count() - 1] {
            let (a, b) = (s.space(i), s.host_range(i));
            assert_eq!(u128::from(a.host_count()), b.end - b.start, "{i}");
        }
    }

    #[test]
    fn ipv4_and_ipv6_share_the_first_segment() {
        let s = segments(&["198.18.0.0/15", "2001:2::/64", "2001:3::/64"], "80");
        assert_eq!(s.hosts(), (1 << 17) + (1 << 65));
        let first = s.space(0);
        assert_eq!(first.host(0), Some(ip("198.18.0.0")));
        assert_eq!(first.host(1 << 17), Some(ip("2001:2::")));
        assert_eq!(first.host_count(), 1 << 63);
        assert_eq!(first.interval_count(), 2);
        // The seam between the two /64s falls inside a segment.
        assert_eq!(s.count(), 5);
        assert_eq!(s.space(2).interval_count(), 2);
        assert_seamless(&s);
    }

    #[test]
    fn past_2_127_probes_is_refused_in_one_line() {
        let targets = vec!["::/0".to_string()];
        let e = build_segmented(&TargetArgs {
            targets: &targets,
            ports: Some("80"),
            resolve: false,
            ..TargetArgs::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "scan too large: at least 2^128 addresses x 1 port is more than the 2^127 probes a scan may hold"
        );
        for (t, ports) in [("::/1", "80"), ("::/2", "80,443")] {
            let targets = vec![t.to_string()];
            let e = build_segmented(&TargetArgs {
                targets: &targets,
                ports: Some(ports),
                resolve: false,
                ..TargetArgs::default()
            })
            .unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("is more than the 2^127 probes a scan may hold"),
                "{t}: {e}"
            );
        }
        assert_eq!(segments(&["::/2"], "80").count(), 1 << 63);
    }

    #[test]
    fn segments_are_visited_in_a_seeded_order_each_permuted_by_its_own_key() {
        let s = segments(&["2001:2::/48"], "80");
        let plan = SegmentPlan::new(s.clone(), true, 7, Shard::WHOLE);
        let visited: Vec<u64> = (0..8).map(|o| plan.segment(o)).collect();
        assert_ne!(visited, (0..8).collect::<Vec<_>>(), "not address order");
        let mut all: Vec<u64> = (0..plan.count()).map(|o| plan.segment(o)).collect();
        all.sort_unstable();
        assert!(
            all.iter().enumerate().all(|(i, &s)| i as u64 == s),
            "a bijection"
        );
        let (a, sa) = plan.at(0);
        let (b, sb) = plan.at(1);
        assert_ne!(a.host(0), b.host(0));
        assert_ne!(sa.order, sb.order, "each segment its own key");
        assert_eq!(
            SegmentPlan::new(s.clone(), true, 7, Shard::WHOLE).at(0).1,
            sa
        );
        let sequential = SegmentPlan::new(s, false, 7, Shard::WHOLE);
        assert_eq!(sequential.segment(3), 3);
        assert_eq!(sequential.at(0).1.order, Order::Sequential);
    }

    #[test]
    fn the_plan_counts_the_shards_probes_over_every_segment() {
        let s = segments(&["2001:2::/48"], "80,443,8080");
        let whole = SegmentPlan::new(s.clone(), true, 1, Shard::WHOLE);
        assert_eq!(whole.planned(), 3 << 80);
        let n = 3u64;
        let sum: u128 = (1..=n)
            .map(|k| SegmentPlan::new(s.clone(), true, 1, Shard::new(k, n).unwrap()).planned())
            .sum();
        assert_eq!(sum, 3 << 80, "the shards partition the space");
        // Every segment's share, summed from the last ordinal back.
        let small = segments(&["2001:2::/58"], "80,443,8080");
        for shard in [Shard::WHOLE, Shard::new(2, 3).unwrap()] {
            for random in [true, false] {
                let plan = SegmentPlan::new(small.clone(), random, 9, shard);
                assert_eq!(plan.count(), 385);
                let mut after = 0u128;
                for ordinal in (0..plan.count()).rev() {
                    assert_eq!(plan.planned_after(ordinal), after, "{ordinal}");
                    after += u128::from(plan.at(ordinal).1.seq_len());
                }
                assert_eq!(after, plan.planned());
            }
        }
        assert_eq!(whole.planned_after(whole.count() - 1), 0);
    }
}
