//! Invariants every answer of FastPort's target and port parsers must keep,
//! whatever the input: shared by the fuzz targets in `fuzz_targets/`.
//!
//! A parser may accept or reject anything, but it must not panic, an
//! accepted [`TargetSpace`] must be self-consistent (sizes, order, index
//! round trips, cursors), and a rejection must be a [`TargetError`] whose
//! message is one bounded line, as `main` prints it as is.

use std::net::IpAddr;

use fastport::targets::{TargetError, TargetSpace};

/// Checks a space that a parser accepted.
pub fn check_space(space: &TargetSpace) {
    let ports = space.ports();
    assert!(!space.is_empty(), "build returned an empty space");
    assert!(!ports.is_empty() && ports[0] != 0, "ports {ports:?}");
    assert!(ports.windows(2).all(|w| w[0] < w[1]), "ports not ascending");
    let len = space.host_count().checked_mul(ports.len() as u64);
    assert_eq!(len, Some(space.len()), "len != hosts * ports");

    // Intervals: IPv4 then IPv6, ascending, disjoint and not adjacent (merged),
    // and together exactly `host_count` addresses.
    let mut hosts = 0u128;
    let mut previous: Option<(u128, bool)> = None;
    let mut intervals = 0;
    for (first, last) in space.intervals() {
        let (a, b) = (ordinal(first), ordinal(last));
        assert_eq!(first.is_ipv4(), last.is_ipv4(), "mixed interval");
        assert!(a <= b, "reversed interval {first}-{last}");
        if let Some((prev_last, prev_v4)) = previous {
            assert!(prev_v4 || !first.is_ipv4(), "IPv4 after IPv6");
            if prev_v4 == first.is_ipv4() {
                assert!(
                    prev_last.saturating_add(1) < a,
                    "unmerged interval at {first}"
                );
            }
        }
        previous = Some((b, first.is_ipv4()));
        hosts = hosts.saturating_add(b - a + 1);
        intervals += 1;
    }
    assert_eq!(intervals, space.interval_count());
    assert_eq!(hosts, u128::from(space.host_count()), "interval sizes");

    // Random access and its inverse, at the edges and in between.
    let len = space.len();
    assert_eq!(space.get(len), None);
    assert_eq!(space.host(space.host_count()), None);
    for index in [0, 1, len / 3, len / 2, len.saturating_sub(2), len - 1] {
        let Some(index) = (index < len).then_some(index) else {
            continue;
        };
        let probe = space.get(index).expect("index below len");
        assert_eq!(space.index_of(probe), Some(index), "index_of({probe})");
        let host = index / ports.len() as u64;
        assert_eq!(space.host(host), Some(probe.ip()));
        assert_eq!(space.host_index(probe.ip()), Some(host));
    }

    // A strided cursor agrees with `get` and knows how much is left; the
    // stride is chosen to cross intervals and port-list ends.
    let step = len / 7 + ports.len() as u64 / 2 + 1;
    let start = len / 5;
    let mut cursor = space.cursor(start, step);
    let mut expected = Some(start);
    for _ in 0..32 {
        let want = expected.filter(|&i| i < len);
        let left = want.map_or(0, |i| (len - 1 - i) / step + 1);
        assert_eq!(cursor.size_hint(), (left as usize, Some(left as usize)));
        assert_eq!(cursor.position(), want);
        assert_eq!(cursor.next(), want.and_then(|i| space.get(i)));
        expected = want.and_then(|i| i.checked_add(step));
    }
}

/// Checks a rejection: one line, bounded by the size of the input that
/// caused it (`input_len` bytes, plus `extra` for paths the harness added).
pub fn check_error(e: &TargetError, input_len: usize, extra: usize) {
    let message = e.to_string();
    assert!(!message.is_empty(), "empty message for {e:?}");
    assert!(
        !message.contains(['\n', '\r']),
        "error message is not one line: {message:?}"
    );
    // Quoting escapes a byte into at most 10 characters (`\u{10ffff}`), and
    // the message may quote both the token and the whole flag value.
    let bound = 2 * 10 * input_len + extra + 256;
    assert!(message.len() <= bound, "message of {} bytes", message.len());
    assert!(
        e.token().len() <= 3 * input_len + 3,
        "token of {} bytes",
        e.token().len()
    );
}

/// An address as a number, IPv4 and IPv6 alike.
fn ordinal(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}
