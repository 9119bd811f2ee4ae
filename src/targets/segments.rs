//! Target spaces of more probes than a `u64` counts (`-p 80 2001:2::/48`
//! is 2⁸⁰), cut into *segments* of at most [`SEGMENT_PROBES`] probes.
//!
//! A segment is a run of consecutive host indices, whole hosts only, and
//! is itself an ordinary [`TargetSpace`]: the engine, the order, the
//! outputs and the resume bookkeeping keep their `u64` arithmetic (and
//! their speed), and only the layer above them knows which segment a run
//! is in (see [`crate::order::SegmentPlan`]). Memory follows the number of
//! address intervals, as for any space.

use std::net::IpAddr;

use super::set::{Point, Span};
use super::{Family, TargetError, TargetErrorKind, TargetSpace};

/// The most probes a segment holds: 2⁶³, so that every position, sequence
/// number and block of a segment fits a `u64` with room to spare.
pub const SEGMENT_PROBES: u64 = 1 << 63;

/// The probes a segment holds in this build: [`SEGMENT_PROBES`], or in a
/// debug build `FASTPORT_DEBUG_SEGMENT_PROBES` when set, so that tests can
/// cross the seams between segments in a scan of a few thousand probes
/// (any scan larger than it is then segmented). Release builds have no
/// such knob.
pub fn segment_probes() -> u64 {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("FASTPORT_DEBUG_SEGMENT_PROBES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
    {
        return n.min(SEGMENT_PROBES);
    }
    SEGMENT_PROBES
}

/// A space of more than `u64::MAX` probes as consecutive segments. They
/// are counted in a `u64`, so a space holds less than 2¹²⁷ probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    ports: Vec<u16>,
    /// Addresses in the whole space.
    hosts: u128,
    /// IPv4 addresses (host indices `0..v4_hosts`, before the IPv6 ones).
    v4_hosts: u128,
    /// Hosts in a full segment.
    per_segment: u64,
    /// Segments, the short last one included.
    count: u64,
}

impl Segments {
    /// The segments of `v4` × `ports` then `v6` × `ports`; `None` when
    /// even segments cannot count them (2¹²⁷ probes and more).
    pub(crate) fn new(
        v4: &[Span<u32>],
        v6: &[Span<u128>],
        ports: &[u16],
        hosts: u128,
        probes_per_segment: u64,
    ) -> Result<Segments, TargetError> {
        let too_large = || {
            TargetError::new(
                TargetErrorKind::TooLarge {
                    hosts: Some(hosts),
                    ports: ports.len(),
                    segmented: true,
                },
                "",
            )
        };
        let n = ports.len().max(1) as u64;
        let per_segment = (probes_per_segment / n).max(1);
        let count = hosts.div_ceil(u128::from(per_segment));
        let count = u64::try_from(count).map_err(|_| too_large())?;
        hosts.checked_mul(u128::from(n)).ok_or_else(too_large)?;
        let v4_hosts = super::set::count(v4).unwrap_or(0);
        Ok(Segments {
            v4: v4.to_vec(),
            v6: v6.to_vec(),
            ports: ports.to_vec(),
            hosts,
            v4_hosts,
            per_segment,
            count,
        })
    }

    /// Segments, the short last one included.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Addresses in the whole space.
    pub fn hosts(&self) -> u128 {
        self.hosts
    }

    /// Probes in the whole space.
    pub fn probes(&self) -> u128 {
        self.hosts * self.ports.len() as u128
    }

    /// Hosts in a full segment (every segment but maybe the last).
    pub fn hosts_per_segment(&self) -> u64 {
        self.per_segment
    }

    /// The ports probed on every address.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The whole space's disjoint address intervals, in host-index order.
    pub fn intervals(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        let v4 = self.v4.iter().map(|s| (s.first.ip(), s.last.ip()));
        v4.chain(self.v6.iter().map(|s| (s.first.ip(), s.last.ip())))
    }

    /// The host indices of segment `i` in the whole space.
    pub fn host_range(&self, i: u64) -> std::ops::Range<u128> {
        let start = u128::from(i) * u128::from(self.per_segment);
        start.min(self.hosts)..(start + u128::from(self.per_segment)).min(self.hosts)
    }

    /// Segment `i` as a space of its own (host index 0 is the segment's
    /// first host). `O(intervals)`.
    pub fn space(&self, i: u64) -> TargetSpace {
        let range = self.host_range(i);
        let v4 = clip(&self.v4, 0, &range);
        let v6 = clip(&self.v6, self.v4_hosts, &range);
        TargetSpace::from_spans(&v4, &v6, self.ports.clone())
            .expect("a segment is a non-empty space of at most 2^63 probes")
    }
}

/// The parts of `spans` (whose hosts are numbered from `start`) with host
/// indices in `range`.
fn clip<T: Point>(
    spans: &[Span<T>],
    mut start: u128,
    range: &std::ops::Range<u128>,
) -> Vec<Span<T>> {
    let mut out = Vec::new();
    for s in spans {
        let count = T::count(s.first, s.last).unwrap_or(u128::MAX);
        let end = start.saturating_add(count);
        let lo = start.max(range.start);
        let hi = end.min(range.end);
        if lo < hi {
            out.push(Span::new(
                s.first.add(lo - start),
                s.first.add(hi - start - 1),
            ));
        }
        start = end;
        if start >= range.end {
            break;
        }
    }
    out
}
