//! The permutation's math, exhaustively where the domain is small and on
//! samples where it is not, plus property tests for the bijection, the
//! shards and the resume bookkeeping.

use super::*;
use proptest::prelude::*;

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
    let s = Schedule::new(20, Order::Sequential, Shard::new(1, 2).unwrap(), d);
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
        let order = Order::Random(Permutation::new(n, seed));
        let mut seen = vec![0u8; n as usize];
        for k in 1..=shards {
            let sched = Schedule::new(n, order, Shard::new(k, shards).unwrap(), Done::none());
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
