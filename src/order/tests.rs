//! The permutation's math, exhaustively where the domain is small and on
//! samples where it is not, plus property tests for the bijection, the
//! block order and its window, the per-host quotas, the gate, the shards
//! and the resume bookkeeping.

use super::*;
use proptest::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// Every index of `0..n` exactly once over all positions.
fn assert_bijection(p: &Permutation) {
    let n = p.len() as usize;
    let mut seen = vec![false; n];
    for pos in 0..p.len() {
        let i = p.apply(pos);
        assert!(i < p.len(), "n {n}: {pos} -> {i}");
        assert!(!seen[i as usize], "n {n}: {i} twice");
        seen[i as usize] = true;
        assert_eq!(p.invert(i), pos);
    }
}

#[test]
fn small_sizes_are_permuted_exhaustively() {
    for n in 0..=300 {
        for seed in [0, 1, 0xDEAD_BEEF, u64::MAX] {
            assert_bijection(&Permutation::new(n, seed));
        }
    }
}

#[test]
fn primes_and_powers_of_two() {
    for n in [
        65_521,
        65_535,
        65_536,
        65_537,
        131_071,
        131_072,
        1 << 17 | 1,
    ] {
        assert_bijection(&Permutation::new(n, 42));
    }
}

#[test]
fn the_cipher_permutes_its_whole_domain() {
    // Cycle-walking is a bijection of 0..n only if each pass of the network
    // is one of 0..2^bits: decrypt undoes encrypt on every point.
    for bits in 2..=16u32 {
        let p = Permutation::new(1 << bits, 7);
        for x in 0..1u64 << bits {
            let y = p.encrypt(x);
            assert!(y < 1 << bits);
            assert_eq!(p.decrypt(y), x, "bits {bits}");
        }
    }
}

#[test]
fn huge_sizes_on_samples() {
    // 2^32 hosts x 65535 ports, a prime just above 2^48, 2^32 and u64::MAX.
    for n in [
        (1u64 << 32) * 65_535,
        (1 << 48) + 21,
        1 << 32,
        (1 << 32) + 15,
        u64::MAX,
    ] {
        let p = Permutation::new(n, 5);
        let mut x = 1u64;
        for _ in 0..2_000 {
            x = mix(x);
            let pos = x % n;
            let i = p.apply(pos);
            assert!(i < n);
            assert_eq!(p.invert(i), pos, "n {n}");
            assert_eq!(p.apply(p.invert(pos)), pos, "n {n}");
        }
        for pos in [0, 1, n - 2, n - 1] {
            assert_eq!(p.invert(p.apply(pos)), pos);
        }
    }
}

#[test]
fn the_seed_chooses_the_order() {
    let a: Vec<u64> = (0..1000)
        .map(|i| Permutation::new(1000, 1).apply(i))
        .collect();
    let b: Vec<u64> = (0..1000)
        .map(|i| Permutation::new(1000, 1).apply(i))
        .collect();
    let c: Vec<u64> = (0..1000)
        .map(|i| Permutation::new(1000, 2).apply(i))
        .collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(Order::Sequential.index(17), 17);
}

#[test]
fn consecutive_probes_rarely_share_a_host() {
    // 256 hosts x 100 ports, host-major: a random order puts two probes of
    // one host back to back about once in 256 steps; sequential, always.
    let (hosts, ports) = (256u64, 100u64);
    let p = Permutation::new(hosts * ports, 99);
    let same = (1..hosts * ports)
        .filter(|&i| p.apply(i) / ports == p.apply(i - 1) / ports)
        .count() as u64;
    assert!(
        same < 3 * hosts * ports / hosts,
        "{same} back-to-back pairs"
    );
    // A worker's slice (every 4th position) spreads the same way.
    let same = (1..hosts * ports / 4)
        .filter(|&s| p.apply(4 * s) / ports == p.apply(4 * (s - 1)) / ports)
        .count() as u64;
    assert!(
        same < 3 * ports / 4 + 10,
        "{same} back-to-back pairs in a slice"
    );
}

#[test]
fn shards_parse_like_masscan() {
    assert_eq!(Shard::parse("1/3"), Ok(Shard::new(1, 3).unwrap()));
    assert_eq!(Shard::parse("3/3").unwrap().to_string(), "3/3");
    for (bad, why) in [
        ("0/3", "K must be between 1 and N"),
        ("4/3", "K must be between 1 and N"),
        ("1/0", "N must be at least 1"),
        ("1", "expected K/N, such as 1/3"),
        ("a/3", "K is not a number"),
        ("1/b", "N is not a number"),
    ] {
        let e = Shard::parse(bad).unwrap_err();
        assert_eq!(e.why, why, "{bad}");
        assert_eq!(e.to_string(), format!("invalid --shard \"{bad}\": {why}"));
    }
}

#[test]
fn shard_lengths_add_up() {
    for total in [0u64, 1, 2, 3, 10, 1001] {
        for n in 1..=7 {
            let sum: u64 = (1..=n).map(|k| Shard::new(k, n).unwrap().len(total)).sum();
            assert_eq!(sum, total, "total {total} n {n}");
        }
    }
    let s = Shard::new(2, 3).unwrap();
    assert_eq!((0..3).map(|i| s.position(i)).collect::<Vec<_>>(), [1, 4, 7]);
}

#[test]
fn done_sets_merge_and_answer() {
    let d = Done::from_ranges([5..7, 0..3, 2..4, 9..9, 7..8]);
    assert_eq!(d.ranges(), [0..4, 5..8]);
    assert_eq!(d.below(), 4);
    assert_eq!(d.count(), 7);
    assert!(d.contains(0) && d.contains(3) && !d.contains(4) && d.contains(7));
    assert!(!d.contains(8) && !d.contains(u64::MAX));
    assert_eq!(Done::none().below(), 0);
    let s = Schedule::new(
        Blocks::new(20, 1),
        Order::Sequential,
        Shard::new(1, 2).unwrap(),
        d,
    );
    assert_eq!(s.seq_len(), 10);
    assert_eq!(s.remaining(), 3);
    assert_eq!(s.index(3), 6);
}

#[test]
fn done_after_a_stop() {
    // Two lanes (even and odd), the even one stopped at 10 with 4 in flight,
    // the odd one at 7 with nothing in flight; 20..30 were done before.
    let before = Done::from_ranges([0..2, 20..30]);
    let lanes = [
        Lane {
            start: 2,
            step: 2,
            next: 10,
        },
        Lane {
            start: 3,
            step: 2,
            next: 7,
        },
    ];
    let after = before.after(&lanes, &[4]);
    assert_eq!(after.ranges(), [0..4, 5..7, 8..9, 20..30]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every index once, for any size, seed and shard count: the shards'
    /// sequences, mapped through the permutation, partition the space.
    #[test]
    fn shards_of_a_permutation_cover_the_space_once(
        n in prop_oneof![0u64..4, 4u64..5_000],
        seed in any::<u64>(),
        shards in 1u64..9,
        workers in 1u64..5,
    ) {
        let blocks = Blocks::new(n, 1);
        let order = Order::random(blocks, seed);
        let mut seen = vec![0u8; n as usize];
        for k in 1..=shards {
            let sched = Schedule::new(blocks, order, Shard::new(k, shards).unwrap(), Done::none());
            // Workers take interleaved slices of the shard's sequence.
            for w in 0..workers {
                let mut s = w;
                while s < sched.seq_len() {
                    seen[sched.index(s) as usize] += 1;
                    s += workers;
                }
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }

    /// Bijection on samples of sizes up to 2^64 - 1.
    #[test]
    fn apply_and_invert_are_inverse(n in 1u64.., seed in any::<u64>(), x in any::<u64>()) {
        let p = Permutation::new(n, seed);
        let pos = x % n;
        let i = p.apply(pos);
        prop_assert!(i < n);
        prop_assert_eq!(p.invert(i), pos);
    }

    /// Stopping lanes anywhere, with any probes in flight, and resuming as
    /// often as we like covers every sequence number exactly once.
    #[test]
    fn interrupted_runs_finish_everything_once(
        len in 0u64..400,
        stops in proptest::collection::vec((any::<u64>(), 1u64..5, proptest::collection::vec(any::<u64>(), 0..6)), 0..5),
    ) {
        let mut done = Done::none();
        let mut count = vec![0u32; len as usize];
        for (cut, lanes_n, flying) in stops.iter().chain(std::iter::once(&(u64::MAX, 1, vec![]))) {
            // Each lane runs to some point (at most `cut`), skipping done ones.
            let mut lanes = Vec::new();
            let mut in_flight = Vec::new();
            for w in 0..*lanes_n {
                let start = done.below() + w;
                let stop_at = if *cut == u64::MAX { len } else { (cut % (len + 1)).max(start).min(len + w) };
                let mut s = start;
                while s < stop_at.min(len) {
                    if !done.contains(s) {
                        count[s as usize] += 1;
                    }
                    s += lanes_n;
                }
                lanes.push(Lane { start, step: *lanes_n, next: s });
            }
            for f in flying {
                // A probe in flight is one the lanes claimed but did not finish.
                let s = if len == 0 { continue } else { f % len };
                if lanes.iter().any(|l| s >= l.start && s < l.next && (s - l.start) % l.step == 0) && !done.contains(s) && !in_flight.contains(&s) {
                    count[s as usize] -= 1;
                    in_flight.push(s);
                }
            }
            done = done.after(&lanes, &in_flight);
        }
        prop_assert!(count.iter().all(|&c| c == 1), "{:?}", count);
        prop_assert_eq!(done.count(), len);
    }
}

/// A schedule over `hosts` hosts of `ports` ports in blocks of `per_block`
/// hosts, random order.
fn blocked(
    hosts: u64,
    ports: u64,
    per_block: u64,
    seed: u64,
    shard: Shard,
    done: Done,
) -> Schedule {
    let blocks = Blocks::with_hosts(hosts * ports, ports, per_block);
    Schedule::new(blocks, Order::random(blocks, seed), shard, done)
}

/// The size and seed of a random [`blocked`] schedule, as the properties
/// below draw them.
#[derive(Debug, Clone, Copy)]
struct Grid {
    hosts: u64,
    ports: u64,
    per_block: u64,
    seed: u64,
}

impl Grid {
    /// Grids of `hosts` hosts of 1 to 5 ports, in blocks of `per_block`
    /// hosts, any seed.
    fn any(hosts: Range<u64>, per_block: Range<u64>) -> impl Strategy<Value = Grid> {
        (hosts, 1u64..6, per_block, any::<u64>()).prop_map(|(hosts, ports, per_block, seed)| Grid {
            hosts,
            ports,
            per_block,
            seed,
        })
    }

    /// Its schedule for `shard`, `done` already done.
    fn schedule(self, shard: Shard, done: Done) -> Schedule {
        blocked(
            self.hosts,
            self.ports,
            self.per_block,
            self.seed,
            shard,
            done,
        )
    }
}

#[test]
fn block_sizes_follow_the_port_count() {
    // -p 22,80,443: as many hosts as the memory bound allows.
    let b = Blocks::new(3 << 24, 3);
    assert_eq!(
        (b.hosts_per_block(), b.size()),
        (BLOCK_HOSTS, 3 * BLOCK_HOSTS)
    );
    // -p-: one host is already a large block.
    let b = Blocks::new(65535 * 10, 65535);
    assert_eq!((b.hosts_per_block(), b.size()), (2, 131_070));
    assert_eq!((b.full(), b.count()), (5, 5));
    // 100 ports: 656 hosts a block; 1000 hosts are one full block and a short one.
    let b = Blocks::new(100 * 1000, 100);
    assert_eq!(b.hosts_per_block(), 656);
    assert_eq!((b.full(), b.count()), (1, 2));
    assert_eq!(b.range(1), 65_600..100_000);
    assert_eq!(b.range(2), 100_000..100_000);
}

#[test]
fn a_block_of_positions_is_a_block_of_hosts() {
    // 50 hosts x 7 ports, 8 hosts a block (6 full blocks and a short one of
    // 2 hosts): positions b*56..(b+1)*56 are exactly the ports of 8 hosts.
    let s = blocked(50, 7, 8, 3, Shard::WHOLE, Done::none());
    let blocks = s.blocks();
    for b in 0..blocks.count() {
        let range = blocks.range(b);
        let mut hosts: Vec<u64> = range.clone().map(|p| s.order.index(p) / 7).collect();
        hosts.sort_unstable();
        hosts.dedup();
        assert_eq!(hosts.len() as u64 * 7, range.end - range.start, "block {b}");
        let c = hosts[0] / 8;
        assert!(
            hosts.iter().all(|h| h / 8 == c),
            "block {b}: one index block"
        );
        assert_eq!(s.order.position_block(c), b);
    }
    // The short last block stays last.
    assert_eq!(s.order.index(349) / 7 / 8, 6);
}

#[test]
fn the_order_within_a_block_is_still_mixed() {
    // 16 Ki hosts x 3 ports in one block: as spread as the plain permutation.
    let s = blocked(1 << 14, 3, 1 << 14, 11, Shard::WHOLE, Done::none());
    let n = s.seq_len();
    let same = (1..n)
        .filter(|&i| s.index(i) / 3 == s.index(i - 1) / 3)
        .count() as u64;
    assert!(same < 3 * n / (1 << 14) + 10, "{same} back-to-back pairs");
}

#[test]
fn claims_come_in_order_and_make_one_lane() {
    let s = blocked(
        10,
        3,
        2,
        1,
        Shard::WHOLE,
        Done::from_ranges(std::iter::once(0..4)),
    );
    let claims = s.claims();
    let stop = AtomicBool::new(false);
    let mut got = Vec::new();
    while let Some(c) = claims.claim(&stop) {
        got.push(c.seq());
    }
    assert_eq!(got, (4..30).collect::<Vec<_>>());
    assert_eq!(
        claims.lane(),
        Lane {
            start: 4,
            step: 1,
            next: 30
        }
    );
    stop.store(true, Ordering::Relaxed);
    assert!(claims.claim(&stop).is_none());
}

#[test]
fn done_after_walks_only_the_spread() {
    // A billion numbers claimed by two lanes, the odd one 5 ahead: only
    // the 5 between them are walked (the odd ones there were claimed).
    let lanes = [
        Lane {
            start: 0,
            step: 2,
            next: 1_000_000_000,
        },
        Lane {
            start: 1,
            step: 2,
            next: 1_000_000_005,
        },
    ];
    let after = Done::none().after(&lanes, &[17, 999_999_999]);
    assert_eq!(
        after.ranges(),
        [
            0..17,
            18..999_999_999,
            1_000_000_001..1_000_000_002,
            1_000_000_003..1_000_000_004
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The block order is a bijection for any size, block size, seed and
    /// shard count, and a block's positions are one block's indices.
    #[test]
    fn block_order_is_a_bijection(g in Grid::any(0..300, 1..40), shards in 1u64..5) {
        let mut seen = vec![0u8; (g.hosts * g.ports) as usize];
        for k in 1..=shards {
            let s = g.schedule(Shard::new(k, shards).unwrap(), Done::none());
            for seq in 0..s.seq_len() {
                let p = s.shard.position(seq);
                let i = s.index(seq);
                prop_assert_eq!(s.order.position(i), p);
                prop_assert_eq!(s.blocks().of(i), s.blocks().of(s.order.index(s.blocks().range(s.block_of_seq(seq)).start)));
                seen[i as usize] += 1;
            }
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }

    /// A worker's kept block order gives every sequence number the index
    /// the schedule gives it: along a stride, after a jump back, and for
    /// the short last block, whatever the shard.
    #[test]
    fn the_cursor_gives_the_schedules_indices(
        g in Grid::any(1..300, 1..40),
        shards in 1u64..4,
        step in 1u64..4,
        jumps in proptest::collection::vec(any::<u64>(), 0..20),
    ) {
        let s = g.schedule(Shard::new(1, shards).unwrap(), Done::none());
        let mut cursor = OrderCursor::default();
        for start in 0..step {
            for seq in (start..s.seq_len()).step_by(step as usize) {
                prop_assert_eq!(s.index_at(seq, &mut cursor), s.index(seq));
            }
        }
        for j in jumps {
            let seq = j % s.seq_len();
            prop_assert_eq!(s.index_at(seq, &mut cursor), s.index(seq));
        }
    }

    /// Quotas count exactly the probes this shard still makes for each
    /// host, and sum to the run's remaining probes.
    #[test]
    fn quotas_sum_to_the_shards_remaining_probes(
        g in Grid::any(1..200, 1..30),
        (k, shards) in (1u64..5).prop_flat_map(|n| (1..=n, Just(n))),
        done in proptest::collection::vec((0u64..400, 0u64..40), 0..4),
    ) {
        let Grid { hosts, ports, .. } = g;
        let done = Done::from_ranges(done.into_iter().map(|(a, l)| a..a + l));
        let s = g.schedule(Shard::new(k, shards).unwrap(), done.clone());
        let mut want = vec![0u32; hosts as usize];
        for seq in 0..s.seq_len() {
            if !done.contains(seq) {
                want[(s.index(seq) / ports) as usize] += 1;
            }
        }
        let mut got = Vec::new();
        for c in 0..s.blocks().count() {
            let quotas = s.quotas(c);
            let range = s.blocks().range(c);
            let hosts = (range.end - range.start) / ports;
            got.extend((0..hosts).map(|h| quotas.get(h)));
            prop_assert_eq!(quotas.hosts(), (0..hosts).filter(|&h| quotas.get(h) > 0).count() as u64);
        }
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(got.iter().map(|&q| u64::from(q)).sum::<u64>(), s.remaining());
    }

    /// Workers run in any interleaving the gate allows; the windows in
    /// progress never span more than two, and every number is taken once.
    #[test]
    fn the_gate_bounds_the_spread(
        hosts in 1u64..120,
        ports in 1u64..4,
        per_block in 1u64..10,
        workers in 1usize..6,
        window in 1u64..12,
        picks in proptest::collection::vec(any::<u8>(), 1..2000),
    ) {
        let s = blocked(hosts, ports, per_block, 5, Shard::WHOLE, Done::none());
        let mut strides = s.strides_in_windows(workers, window);
        let mut seen = vec![0u8; s.seq_len() as usize];
        let mut pick = picks.iter().cycle();
        while strides.iter().any(|st| !st.is_exhausted()) {
            let open: Vec<usize> = (0..workers).filter(|&w| strides[w].peek().is_some()).collect();
            prop_assert!(!open.is_empty(), "every worker held");
            let w = open[*pick.next().unwrap() as usize % open.len()];
            let seq = strides[w].next().unwrap();
            seen[seq as usize] += 1;
            let lowest = strides
                .iter()
                .filter(|st| !st.is_exhausted())
                .map(|st| st.lane().next / window)
                .min()
                .unwrap_or(u64::MAX);
            prop_assert!(seq / window <= lowest.saturating_add(1));
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
    }
}

#[test]
fn strides_partition_the_space() {
    for len in [0u64, 1, 2, 7, 100, 65535] {
        for workers in 1..=5 {
            let mut seen = vec![0u8; len as usize];
            for id in 0..workers {
                for i in Stride::for_worker(id, workers, 0, len) {
                    seen[i as usize] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "len {len} workers {workers}");
        }
    }
}

#[test]
fn stride_near_u64_max_ends() {
    let mut s = Stride {
        start: u64::MAX - 1,
        next: u64::MAX - 1,
        step: 3,
        end: u64::MAX,
        gate: None,
    };
    assert_eq!(s.next(), Some(u64::MAX - 1));
    assert_eq!(s.next(), None);
    assert!(s.is_exhausted());
}

#[test]
fn a_held_stride_is_not_exhausted() {
    // Two workers, windows of 4 numbers: worker 1 runs ahead to window 1
    // (numbers 5, 7) and is held at 9 while worker 0 has not left window 0.
    let s = blocked(20, 1, 20, 3, Shard::WHOLE, Done::none());
    let mut strides = s.strides_in_windows(2, 4);
    assert_eq!(
        strides[1].by_ref().take(4).collect::<Vec<_>>(),
        [1, 3, 5, 7]
    );
    assert_eq!(strides[1].peek(), None);
    assert!(!strides[1].is_exhausted());
    assert_eq!(strides[0].next(), Some(0));
    assert_eq!(strides[1].peek(), None, "worker 0 is still in window 0");
    assert_eq!(strides[0].next(), Some(2));
    assert_eq!(strides[1].peek(), Some(9), "worker 0 has left window 0");
}

#[test]
fn a_dropped_stride_holds_no_one() {
    // Worker 0 ends before taking anything (its thread failed to start):
    // worker 1 still runs to the end.
    let s = blocked(20, 1, 20, 3, Shard::WHOLE, Done::none());
    let mut strides = s.strides_in_windows(2, 4);
    let lone = strides.pop().unwrap();
    drop(strides);
    assert_eq!(lone.count(), 10);
}
