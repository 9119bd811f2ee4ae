//! Address ranges and port sets: the lab's own small parser for what scanners
//! are pointed at (`127.0.0.1`, `127.0.0.0/16`, `198.18.1.1-198.18.1.9`,
//! `1-1024,8080`), and the canonical spellings it hands back to them.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Why a target or port specification was not understood. Keeps what the
/// user typed so the message can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The offending text.
    pub input: String,
    /// What was wrong with it.
    pub kind: SpecErrorKind,
}

/// The kinds of [`SpecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// Not an IPv4 address.
    BadAddress,
    /// A prefix length above 32.
    BadPrefix,
    /// A range whose end comes before its start.
    Reversed,
    /// Not a port number in 1..=65535.
    BadPort,
    /// Nothing at all.
    Empty,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            SpecErrorKind::BadAddress => "not an IPv4 address",
            SpecErrorKind::BadPrefix => "prefix length must be 0..=32",
            SpecErrorKind::Reversed => "range ends before it starts",
            SpecErrorKind::BadPort => "not a port in 1..=65535",
            SpecErrorKind::Empty => "empty specification",
        };
        write!(f, "{what}: {:?}", self.input)
    }
}

impl std::error::Error for SpecError {}

fn spec_error(input: &str, kind: SpecErrorKind) -> SpecError {
    SpecError {
        input: input.to_string(),
        kind,
    }
}

/// A contiguous, inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    first: u32,
    last: u32,
}

impl AddrRange {
    /// The range `first..=last`; `None` when reversed.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Option<AddrRange> {
        let (first, last) = (u32::from(first), u32::from(last));
        (first <= last).then_some(AddrRange { first, last })
    }

    /// The single address `addr`.
    pub fn single(addr: Ipv4Addr) -> AddrRange {
        let a = u32::from(addr);
        AddrRange { first: a, last: a }
    }

    /// The block `net/prefix` (host bits of `net` are ignored).
    pub fn cidr(net: Ipv4Addr, prefix: u8) -> Option<AddrRange> {
        if prefix > 32 {
            return None;
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let first = u32::from(net) & mask;
        Some(AddrRange {
            first,
            last: first | !mask,
        })
    }

    /// The first address.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    /// The last address.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }

    /// How many addresses the range holds.
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Never empty; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
    }

    /// Whether every address of `other` lies in this range.
    pub fn covers(&self, other: &AddrRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The addresses in order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (self.first..=self.last).map(Ipv4Addr::from)
    }

    /// The fewest CIDR blocks that cover exactly this range, as `(net, prefix)`.
    pub fn cidrs(&self) -> Vec<(Ipv4Addr, u8)> {
        let mut out = Vec::new();
        let mut start = u64::from(self.first);
        let end = u64::from(self.last) + 1;
        while start < end {
            let align = if start == 0 {
                32
            } else {
                start.trailing_zeros().min(32)
            };
            let mut size_log = align;
            while (1u64 << size_log) > end - start {
                size_log -= 1;
            }
            out.push((Ipv4Addr::from(start as u32), (32 - size_log) as u8));
            start += 1u64 << size_log;
        }
        out
    }

    /// The range spelled as CIDR blocks (`127.0.0.1`, `127.0.0.0/16`), the
    /// syntax every scanner accepts.
    pub fn to_cidr_strings(&self) -> Vec<String> {
        self.cidrs()
            .into_iter()
            .map(|(net, prefix)| {
                if prefix == 32 {
                    net.to_string()
                } else {
                    format!("{net}/{prefix}")
                }
            })
            .collect()
    }
}

impl FromStr for AddrRange {
    type Err = SpecError;

    /// `A`, `A/N`, `A-B` (B a full address) or `A-D` (D the last octet).
    fn from_str(s: &str) -> Result<AddrRange, SpecError> {
        let s = s.trim();
        let addr = |t: &str| {
            Ipv4Addr::from_str(t.trim()).map_err(|_| spec_error(s, SpecErrorKind::BadAddress))
        };
        if s.is_empty() {
            return Err(spec_error(s, SpecErrorKind::Empty));
        }
        if let Some((net, prefix)) = s.split_once('/') {
            let prefix: u8 = prefix
                .trim()
                .parse()
                .map_err(|_| spec_error(s, SpecErrorKind::BadPrefix))?;
            return AddrRange::cidr(addr(net)?, prefix)
                .ok_or_else(|| spec_error(s, SpecErrorKind::BadPrefix));
        }
        if let Some((a, b)) = s.split_once('-') {
            let first = addr(a)?;
            let last = if b.contains('.') {
                addr(b)?
            } else {
                let octet: u8 = b
                    .trim()
                    .parse()
                    .map_err(|_| spec_error(s, SpecErrorKind::BadAddress))?;
                let o = first.octets();
                Ipv4Addr::new(o[0], o[1], o[2], octet)
            };
            return AddrRange::new(first, last)
                .ok_or_else(|| spec_error(s, SpecErrorKind::Reversed));
        }
        Ok(AddrRange::single(addr(s)?))
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = self.to_cidr_strings();
        if blocks.len() == 1 {
            f.write_str(&blocks[0])
        } else {
            write!(f, "{}-{}", self.first(), self.last())
        }
    }
}

/// A set of TCP ports, kept as sorted, merged, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSet {
    ranges: Vec<RangeInclusive<u16>>,
}

impl PortSet {
    /// The set holding exactly these ports.
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> PortSet {
        PortSet::from_ranges(ports.into_iter().map(|p| p..=p))
    }

    /// The union of these ranges.
    pub fn from_ranges(ranges: impl IntoIterator<Item = RangeInclusive<u16>>) -> PortSet {
        let mut v: Vec<RangeInclusive<u16>> =
            ranges.into_iter().filter(|r| !r.is_empty()).collect();
        v.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u16>> = Vec::with_capacity(v.len());
        for r in v {
            match merged.last_mut() {
                Some(last) if u32::from(*r.start()) <= u32::from(*last.end()) + 1 => {
                    if r.end() > last.end() {
                        *last = *last.start()..=*r.end();
                    }
                }
                _ => merged.push(r),
            }
        }
        PortSet { ranges: merged }
    }

    /// The merged ranges, ascending.
    pub fn ranges(&self) -> &[RangeInclusive<u16>] {
        &self.ranges
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|r| usize::from(*r.end() - *r.start()) + 1)
            .sum()
    }

    /// Whether the set holds no port.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let i = self.ranges.partition_point(|r| *r.end() < port);
        self.ranges.get(i).is_some_and(|r| r.contains(&port))
    }

    /// The ports, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }
}

impl FromStr for PortSet {
    type Err = SpecError;

    /// `22`, `1-1024`, `-` (all), `8000-` (to 65535), `-100` (from 1), comma separated.
    fn from_str(s: &str) -> Result<PortSet, SpecError> {
        let port = |t: &str, default: u16| -> Result<u16, SpecError> {
            let t = t.trim();
            if t.is_empty() {
                return Ok(default);
            }
            match t.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(spec_error(t, SpecErrorKind::BadPort)),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let r = match part.split_once('-') {
                Some((a, b)) => port(a, 1)?..=port(b, u16::MAX)?,
                None => {
                    let p = port(part, 0)?;
                    p..=p
                }
            };
            if r.is_empty() {
                return Err(spec_error(part, SpecErrorKind::Reversed));
            }
            ranges.push(r);
        }
        if ranges.is_empty() {
            return Err(spec_error(s, SpecErrorKind::Empty));
        }
        Ok(PortSet::from_ranges(ranges))
    }
}

impl fmt::Display for PortSet {
    /// The canonical spelling, `1-1024,8080`, that nmap, FastPort and the floor accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// Parses a list of address specifications into ranges.
pub fn parse_hosts<S: AsRef<str>>(specs: &[S]) -> Result<Vec<AddrRange>, SpecError> {
    specs
        .iter()
        .flat_map(|s| s.as_ref().split(','))
        .filter(|s| !s.trim().is_empty())
        .map(AddrRange::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_address_forms() {
        assert_eq!("127.0.0.1".parse::<AddrRange>().unwrap().len(), 1);
        let r: AddrRange = "127.0.0.9/16".parse().unwrap();
        assert_eq!((r.first(), r.last()), (a("127.0.0.0"), a("127.0.255.255")));
        let r: AddrRange = "198.18.1.1-4".parse().unwrap();
        assert_eq!((r.first(), r.last()), (a("198.18.1.1"), a("198.18.1.4")));
        let r: AddrRange = "127.0.0.250-127.0.1.3".parse().unwrap();
        assert_eq!(r.len(), 10);
        assert_eq!(
            "1.2.3.4/33".parse::<AddrRange>().unwrap_err().kind,
            SpecErrorKind::BadPrefix
        );
        assert_eq!(
            "1.2.3.9-1".parse::<AddrRange>().unwrap_err().kind,
            SpecErrorKind::Reversed
        );
        assert_eq!(
            "localhost".parse::<AddrRange>().unwrap_err().kind,
            SpecErrorKind::BadAddress
        );
    }

    #[test]
    fn cidr_cover_is_exact_and_minimal() {
        let r: AddrRange = "198.18.1.1-198.18.1.6".parse().unwrap();
        assert_eq!(
            r.to_cidr_strings(),
            ["198.18.1.1", "198.18.1.2/31", "198.18.1.4/31", "198.18.1.6"]
        );
        let all = AddrRange::cidr(a("0.0.0.0"), 0).unwrap();
        assert_eq!(all.cidrs(), vec![(a("0.0.0.0"), 0)]);
        let top = AddrRange::new(a("255.255.255.254"), a("255.255.255.255")).unwrap();
        assert_eq!(top.to_cidr_strings(), ["255.255.255.254/31"]);
        // Exhaustive over small ranges: blocks are disjoint, ordered and cover the range.
        for first in 0u32..40 {
            for last in first..40 {
                let r = AddrRange::new(Ipv4Addr::from(first), Ipv4Addr::from(last)).unwrap();
                let mut next = first;
                for (net, prefix) in r.cidrs() {
                    let b = AddrRange::cidr(net, prefix).unwrap();
                    assert_eq!(u32::from(b.first()), next);
                    next = u32::from(b.last()) + 1;
                }
                assert_eq!(next, last + 1);
            }
        }
    }

    #[test]
    fn port_sets_merge_and_print_canonically() {
        let p: PortSet = "80, 22,23-25,26,1000-,-3".parse().unwrap();
        assert_eq!(p.to_string(), "1-3,22-26,80,1000-65535");
        assert_eq!(p.len(), 3 + 5 + 1 + 64536);
        assert!(p.contains(24) && p.contains(65535) && !p.contains(79));
        assert_eq!("-".parse::<PortSet>().unwrap().len(), 65535);
        assert!("0".parse::<PortSet>().is_err());
        assert!("70000".parse::<PortSet>().is_err());
        assert!("9-3".parse::<PortSet>().is_err());
        assert!(",".parse::<PortSet>().is_err());
        assert_eq!(PortSet::from_ports([5, 3, 4, 9]).to_string(), "3-5,9");
    }
}
