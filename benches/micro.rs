//! Micro-benchmarks of FastPort's hot-path data structures, each measured on a workload shaped
//! like a real scan and, where there is one, against the obvious alternative.
//!
//! Each group is a `fn NAME_benches(c: &mut Criterion)`: the timer wheel against a binary heap,
//! the probe-order permutations, the target-space iterator, and classification.
//! Run with `cargo bench --bench micro`, or `cargo bench --bench micro -- wheel` for one group.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

/// Connect deadlines: the timer wheel against a binary heap with lazy cancellation.
mod deadlines {
    use fastport::wheel::Wheel;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::time::{Duration, Instant};

    /// Probes in flight at every step.
    pub const IN_FLIGHT: usize = 10_000;
    /// Connect timeout.
    const TIMEOUT: Duration = Duration::from_millis(1_000);
    /// One probe in `TIMEOUT_ONE_IN` times out; the others complete first and are cancelled.
    const TIMEOUT_ONE_IN: u64 = 10;
    /// Completions happen at an age uniform in `1..TIMEOUT_MS` milliseconds.
    const TIMEOUT_MS: u64 = 1_000;
    /// Length of the completion calendar: a power of two above the timeout.
    const CALENDAR: usize = 1_024;

    /// What the scan loop needs from a deadline structure.
    pub trait Deadlines {
        fn insert(&mut self, key: usize, deadline: Instant);
        fn cancel(&mut self, key: usize);
        fn poll(&mut self, now: Instant) -> Option<usize>;
    }

    impl Deadlines for Wheel {
        fn insert(&mut self, key: usize, deadline: Instant) {
            Wheel::insert(self, key, deadline);
        }
        fn cancel(&mut self, key: usize) {
            Wheel::cancel(self, key);
        }
        fn poll(&mut self, now: Instant) -> Option<usize> {
            Wheel::poll(self, now)
        }
    }

    /// The usual alternative: a min-heap of deadlines. Cancelling only forgets the key's live
    /// deadline; the stale heap entry is skipped when it surfaces.
    pub struct Heap {
        heap: BinaryHeap<Reverse<(Instant, usize)>>,
        live: Vec<Option<Instant>>,
    }

    impl Heap {
        pub fn new(capacity: usize) -> Self {
            Heap {
                // Live entries plus the stale ones of cancelled keys, with room to spare.
                heap: BinaryHeap::with_capacity(4 * capacity),
                live: vec![None; capacity],
            }
        }
    }

    impl Deadlines for Heap {
        fn insert(&mut self, key: usize, deadline: Instant) {
            self.live[key] = Some(deadline);
            self.heap.push(Reverse((deadline, key)));
        }
        fn cancel(&mut self, key: usize) {
            self.live[key] = None;
        }
        fn poll(&mut self, now: Instant) -> Option<usize> {
            while let Some(&Reverse((deadline, key))) = self.heap.peek() {
                if deadline > now {
                    return None;
                }
                self.heap.pop();
                if self.live[key] == Some(deadline) {
                    self.live[key] = None;
                    return Some(key);
                }
            }
            None
        }
    }

    /// A scan loop reduced to its deadlines: `IN_FLIGHT` probes, a fake clock advancing 1 ms per
    /// step, completions cancelling 90% of the deadlines and timeouts expiring the rest, and each
    /// finished probe's slab key reused at once for a new probe.
    pub struct Scan<D> {
        deadlines: D,
        t0: Instant,
        step: u64,
        /// Keys of finished probes, to be reused this step.
        free: Vec<usize>,
        /// `calendar[s % CALENDAR]`: keys whose probe completes at step `s`.
        calendar: Vec<Vec<usize>>,
        rng: u64,
        /// Inserts, cancels and expiries so far.
        pub ops: u64,
    }

    impl<D: Deadlines> Scan<D> {
        /// Fills the scan and runs it long enough to reach a steady state.
        pub fn new(deadlines: D) -> Self {
            let mut scan = Scan {
                deadlines,
                t0: Instant::now(),
                step: 0,
                free: (0..IN_FLIGHT).rev().collect(),
                calendar: (0..CALENDAR)
                    .map(|_| Vec::with_capacity(IN_FLIGHT / 16))
                    .collect(),
                rng: 0x9E37_79B9_7F4A_7C15,
                ops: 0,
            };
            scan.refill();
            for _ in 0..3 * TIMEOUT_MS {
                scan.step();
            }
            scan.ops = 0;
            scan
        }

        /// Advances the clock by 1 ms: expire, complete, and start new probes in the freed keys.
        pub fn step(&mut self) {
            self.step += 1;
            let now = self.t0 + Duration::from_millis(self.step);
            while let Some(key) = self.deadlines.poll(now) {
                self.free.push(key);
                self.ops += 1;
            }
            let slot = self.step as usize % CALENDAR;
            let mut completed = std::mem::take(&mut self.calendar[slot]);
            for &key in &completed {
                self.deadlines.cancel(key);
                self.free.push(key);
                self.ops += 1;
            }
            completed.clear();
            self.calendar[slot] = completed;
            self.refill();
        }

        fn refill(&mut self) {
            let deadline = self.t0 + Duration::from_millis(self.step) + TIMEOUT;
            while let Some(key) = self.free.pop() {
                self.deadlines.insert(key, deadline);
                self.ops += 1;
                let r = self.next_random();
                let completes = r % TIMEOUT_ONE_IN > 0;
                if completes {
                    let age = 1 + (r >> 8) % (TIMEOUT_MS - 1);
                    let slot = (self.step + age) as usize % CALENDAR;
                    self.calendar[slot].push(key);
                }
            }
        }

        /// xorshift64: deterministic, so both structures see the same scan.
        fn next_random(&mut self) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        }
    }
}

fn wheel_benches(c: &mut Criterion) {
    use deadlines::{Heap, IN_FLIGHT, Scan};
    use fastport::wheel::Wheel;
    use std::time::Instant;

    // Operations (insert, cancel, expiry) per 1 ms step in the steady state, the same for both.
    let ops_per_step = {
        let mut scan = Scan::new(Heap::new(IN_FLIGHT));
        let steps = 10_000;
        for _ in 0..steps {
            scan.step();
        }
        scan.ops / steps
    };

    let mut group = c.benchmark_group("wheel");
    group.throughput(Throughput::Elements(ops_per_step));
    group.measurement_time(Duration::from_secs(4));

    let mut wheel = Scan::new(Wheel::new(IN_FLIGHT, Instant::now()));
    group.bench_function("scan_step/wheel", |b| b.iter(|| wheel.step()));
    black_box(wheel.ops);

    let mut heap = Scan::new(Heap::new(IN_FLIGHT));
    group.bench_function("scan_step/binary_heap", |b| b.iter(|| heap.step()));
    black_box(heap.ops);

    group.finish();
}

/// Probe order: position -> index through the Feistel permutation with
/// cycle-walking (random access), against ZMap's cyclic multiplicative group
/// modulo a prime (sequential only: one modular multiply per step, plus the
/// steps that land past the end of the space).
mod permutation {
    /// ZMap's walk: `x <- x * g mod p` over the group of a prime `p > n`,
    /// skipping elements above `n`.
    pub struct CyclicGroup {
        p: u64,
        g: u64,
        x: u64,
        n: u64,
    }

    impl CyclicGroup {
        /// `p` a prime above `n`. The cost per step does not depend on `g`
        /// being a generator, which the benchmark does not check.
        pub fn new(n: u64, p: u64, g: u64) -> Self {
            CyclicGroup { p, g, x: g, n }
        }

        #[inline]
        pub fn next_index(&mut self) -> u64 {
            loop {
                self.x = ((self.x as u128 * self.g as u128) % self.p as u128) as u64;
                if self.x <= self.n {
                    return self.x - 1;
                }
            }
        }
    }
}

fn order_benches(c: &mut Criterion) {
    use fastport::order::Permutation;
    use permutation::CyclicGroup;

    let mut group = c.benchmark_group("order");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    // 2^24 hosts x 1000 ports (a /8 on the top 1000 ports), and the full
    // 2^32 x 65535 space.
    for (name, n, p) in [
        ("16.7G", (1u64 << 24) * 1000, 16_777_216_019),
        ("2^32x65535", (1u64 << 32) * 65_535, (1u64 << 48) - 59),
    ] {
        let perm = Permutation::new(n, 0x5EED);
        let mut pos = 0u64;
        group.bench_function(format!("feistel/{name}"), |b| {
            b.iter(|| {
                pos = (pos + 1) % n;
                black_box(perm.apply(black_box(pos)))
            })
        });
        let mut walk = CyclicGroup::new(n, p, 3);
        group.bench_function(format!("cyclic_group/{name}"), |b| {
            b.iter(|| black_box(walk.next_index()))
        });
    }
    group.finish();
}

/// Walking the target space: the address and port of each index, as the
/// workers do, over a /8 (loopback; nothing is scanned) with three ports (one interval) and over 10 000
/// scattered single addresses (a binary search per index).
fn targets_benches(c: &mut Criterion) {
    use fastport::targets::{TargetArgs, build};
    use std::hint::black_box;
    let mut group = c.benchmark_group("targets");
    let wide = build(&TargetArgs {
        targets: &["127.0.0.0/8".to_string()],
        ports: Some("22,80,443"),
        resolve: false,
        ..TargetArgs::default()
    })
    .expect("space");
    let scattered: Vec<String> = (0..10_000u32)
        .map(|i| std::net::Ipv4Addr::from(0x7f00_0000 + i * 7).to_string())
        .collect();
    let scattered = build(&TargetArgs {
        targets: &scattered,
        ports: Some("22,80,443"),
        resolve: false,
        ..TargetArgs::default()
    })
    .expect("space");
    const N: u64 = 100_000;
    group.throughput(Throughput::Elements(N));
    for (name, space) in [("one /8 interval", &wide), ("10k intervals", &scattered)] {
        group.bench_function(format!("get, {name}"), |b| {
            let step = space.len() / N;
            b.iter(|| {
                for i in 0..N {
                    black_box(space.get(black_box(i * step)));
                }
            })
        });
        group.bench_function(format!("cursor, {name}"), |b| {
            b.iter(|| {
                for addr in space.cursor(0, 2).take(N as usize) {
                    black_box(addr);
                }
            })
        });
    }
    group.finish();
}

/// Classification: the pure step from what the kernel reported to a verdict.
fn classify_benches(c: &mut Criterion) {
    use fastport::classify::{Report, classify};
    use std::hint::black_box;
    let local = "127.0.0.1:40000".parse().unwrap();
    let peer = "127.0.0.1:22".parse().unwrap();
    let reports = [
        Report::Error(libc::ECONNREFUSED),
        Report::Connected { local, peer },
        Report::InProgress,
        Report::Error(libc::EHOSTUNREACH),
        Report::Error(libc::EMFILE),
    ];
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(reports.len() as u64));
    group.bench_function("five reports", |b| {
        b.iter(|| {
            for r in &reports {
                black_box(classify(black_box(*r)));
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    wheel_benches,
    order_benches,
    targets_benches,
    classify_benches
);
criterion_main!(benches);
