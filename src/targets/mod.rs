//! The target space: every (address, port) pair a scan probes.
//!
//! Users write targets and ports as for nmap: addresses, CIDR blocks, ranges
//! and hostnames on the command line or in `-iL` files, minus `--exclude`
//! and `--exclude-file`; ports with `-p`, `--top-ports` and
//! `--exclude-ports`. [`build`] turns that raw input into a [`TargetSpace`]:
//! a sorted list of disjoint address intervals times an ascending port list.
//! Memory follows the number of intervals, never the number of addresses.
//!
//! Probes are numbered host-major, `index = host_index * ports + port_index`,
//! so the engine can permute `0..len()` and map each index back with
//! [`TargetSpace::get`] or walk a stride of indices with a [`Cursor`].
//!
//! - `addr`: target syntax, hostname resolution, list files.
//! - `set`: interval sets (merge, subtract, count).
//! - `hostnames`: the names targets were given by, for the outputs.
//! - `ports`: port syntax and selection.
//! - `services`: IANA's service names and the `--top-ports` ranking.
//! - `error`: [`TargetError`], one line naming what the user typed.

mod addr;
mod error;
mod hostnames;
mod ports;
mod segments;
mod services;
mod set;

use std::iter::FusedIterator;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use addr::{AddrSet, Names};
use set::{Point, Span};

pub use addr::for_each_token as for_each_list_token;
pub use error::{Origin, TargetError, TargetErrorKind};
pub use hostnames::HostNames;
pub use ports::{DEFAULT_PORTS, parse_ports};
pub use segments::{SEGMENT_PROBES, Segments, segment_probes};
pub use services::{Ranking, RankingSource, SERVICES, service_name};

/// Everything the user typed about targets and ports, raw, as clap gives it.
#[derive(Debug, Clone, Copy)]
pub struct TargetArgs<'a> {
    /// Target operands; each may hold several whitespace-separated specs.
    pub targets: &'a [String],
    /// `-iL FILE`; `-` is standard input.
    pub input_list: Option<&'a Path>,
    /// `--exclude LIST` values, each a comma-separated list of specs.
    pub exclude: &'a [String],
    /// `--exclude-file FILE`; `-` is standard input.
    pub exclude_file: Option<&'a Path>,
    /// False with `--no-resolve`: hostnames are then errors.
    pub resolve: bool,
    /// `--resolve-first`: scan only a name's first address (nmap's
    /// default), not every address of its family.
    pub first_address_only: bool,
    /// `-p SPEC` (`-p-` arrives as `"-"`).
    pub ports: Option<&'a str>,
    /// `--top-ports N`.
    pub top_ports: Option<usize>,
    /// `--exclude-ports SPEC`.
    pub exclude_ports: Option<&'a str>,
    /// How `--top-ports` ranks ports; `None`: the built-in ranking.
    pub ranking: Option<&'a Ranking>,
}

impl Default for TargetArgs<'_> {
    /// No targets (so localhost), default ports, names resolved.
    fn default() -> Self {
        TargetArgs {
            targets: &[],
            input_list: None,
            exclude: &[],
            exclude_file: None,
            resolve: true,
            first_address_only: false,
            ports: None,
            top_ports: None,
            exclude_ports: None,
            ranking: None,
        }
    }
}

/// Builds the target space, resolving hostnames with the system resolver.
///
/// With neither target operands nor `-iL`, the target is `127.0.0.1`.
pub fn build(args: &TargetArgs) -> Result<TargetSpace, TargetError> {
    build_named(args).map(|b| b.space)
}

/// The target space and what the outputs say about how it was named.
#[derive(Debug)]
pub struct Built {
    /// The addresses and ports to scan.
    pub space: TargetSpace,
    /// The names targets were given by.
    pub names: HostNames,
    /// Names that did not resolve: reported and skipped, the scan goes on.
    pub unresolved: Vec<TargetError>,
}

/// [`build`], keeping the names: a name that does not resolve is skipped
/// (and listed in [`Built::unresolved`]); only when nothing is left to
/// scan is it an error, the first such name's.
pub fn build_named(args: &TargetArgs) -> Result<Built, TargetError> {
    let mut names =
        Names::new(args.resolve, addr::system_lookup).first_only(args.first_address_only);
    build_names(args, &mut names)
}

/// [`build_named`] for spaces of any size: one of more than `u64::MAX`
/// probes comes back cut into [`Segments`] (then [`Built::space`] is the
/// first segment). Up to 2¹²⁷ probes; more is [`TargetErrorKind::TooLarge`].
pub fn build_segmented(args: &TargetArgs) -> Result<(Built, Option<Segments>), TargetError> {
    let mut names =
        Names::new(args.resolve, addr::system_lookup).first_only(args.first_address_only);
    let mut segments = None;
    let built = build_names_with(args, &mut names, |args, names| {
        let parts = build_parts(args, names)?;
        let limit = segment_probes();
        let whole = TargetSpace::from_spans(&parts.v4, &parts.v6, parts.ports.clone());
        let cut = match &whole {
            Err(e) => matches!(e.kind(), TargetErrorKind::TooLarge { .. }),
            Ok(space) => space.len() > limit,
        };
        match whole {
            _ if cut => {
                let hosts = set::count(&parts.v4)
                    .zip(set::count(&parts.v6))
                    .and_then(|(a, b)| a.checked_add(b))
                    .ok_or_else(|| {
                        let kind = TargetErrorKind::TooLarge {
                            hosts: None,
                            ports: parts.ports.len(),
                            segmented: true,
                        };
                        TargetError::new(kind, "")
                    })?;
                let cut = Segments::new(&parts.v4, &parts.v6, &parts.ports, hosts, limit)?;
                let first = cut.space(0);
                segments = Some(cut);
                Ok(first)
            }
            space => space,
        }
    })?;
    Ok((built, segments))
}

fn build_names(args: &TargetArgs, names: &mut Names<'_>) -> Result<Built, TargetError> {
    build_names_with(args, names, build_with)
}

fn build_names_with(
    args: &TargetArgs,
    names: &mut Names<'_>,
    build: impl FnOnce(&TargetArgs, &mut Names<'_>) -> Result<TargetSpace, TargetError>,
) -> Result<Built, TargetError> {
    let space = build(args, names);
    let mut unresolved = std::mem::take(&mut names.unresolved);
    match space {
        Ok(space) => Ok(Built {
            space,
            names: HostNames::new(&names.given),
            unresolved,
        }),
        Err(e)
            if matches!(
                e.kind(),
                TargetErrorKind::NothingToScan {
                    all_excluded: false
                }
            ) && !unresolved.is_empty() =>
        {
            Err(unresolved.swap_remove(0))
        }
        Err(e) => Err(e),
    }
}

fn build_with(args: &TargetArgs, names: &mut Names<'_>) -> Result<TargetSpace, TargetError> {
    let parts = build_parts(args, names)?;
    TargetSpace::from_spans(&parts.v4, &parts.v6, parts.ports)
}

/// A scan's addresses (merged, excludes taken out) and ports, before they
/// are numbered.
struct Parts {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    ports: Vec<u16>,
}

fn build_parts(args: &TargetArgs, names: &mut Names<'_>) -> Result<Parts, TargetError> {
    let ports = ports::select_ports(args.ports, args.top_ports, args.exclude_ports, args.ranking)?;

    let mut include = AddrSet::default();
    if args.targets.is_empty() && args.input_list.is_none() {
        include.v4.insert(Span::new(
            u32::from(Ipv4Addr::LOCALHOST),
            u32::from(Ipv4Addr::LOCALHOST),
        ));
    }
    names.record = true;
    for operand in args.targets {
        for token in operand.split_whitespace() {
            addr::add_target(token, names, &mut include)?;
        }
    }
    if let Some(path) = args.input_list {
        addr::add_list_file("-iL", path, names, &mut include)?;
    }
    names.record = false;

    let mut exclude = AddrSet::default();
    for value in args.exclude {
        for token in value.split(|c: char| c == ',' || c.is_whitespace()) {
            if token.is_empty() {
                continue;
            }
            addr::add_target(token, names, &mut exclude)
                .map_err(|e| e.in_flag("--exclude", value))?;
        }
    }
    if let Some(path) = args.exclude_file {
        addr::add_list_file("--exclude-file", path, names, &mut exclude)?;
    }

    let had_targets = !include.is_empty();
    let v4 = set::subtract(&include.v4.into_spans(), &exclude.v4.into_spans());
    let v6 = set::subtract(&include.v6.into_spans(), &exclude.v6.into_spans());
    if v4.is_empty() && v6.is_empty() {
        return Err(TargetError::new(
            TargetErrorKind::NothingToScan {
                all_excluded: had_targets,
            },
            "",
        ));
    }
    Ok(Parts { v4, v6, ports })
}

/// An address family's point type, as used for host indexing.
trait Family: Point {
    fn ip(self) -> IpAddr;
    /// `self + offset`; callers keep the result inside a block.
    fn plus(self, offset: u64) -> Self;
    /// `self - base` if `self >= base` and the difference fits a `u64`.
    fn minus(self, base: Self) -> Option<u64>;
}

impl Family for u32 {
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    fn plus(self, offset: u64) -> Self {
        // Offsets stay inside a block, below 2^32 - self.
        self.wrapping_add(offset as u32)
    }
    fn minus(self, base: Self) -> Option<u64> {
        self.checked_sub(base).map(u64::from)
    }
}

impl Family for u128 {
    fn ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    fn plus(self, offset: u64) -> Self {
        self.wrapping_add(u128::from(offset))
    }
    fn minus(self, base: Self) -> Option<u64> {
        self.checked_sub(base).and_then(|d| u64::try_from(d).ok())
    }
}

/// A run of consecutive addresses starting at `first`, whose host indices
/// start at `start`; it ends where the next block (or the family) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block<T> {
    start: u64,
    first: T,
}

/// The blocks of one family, sorted by address and by host index, which
/// cover host indices `blocks[0].start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blocks<T> {
    blocks: Vec<Block<T>>,
    end: u64,
}

impl<T: Family> Blocks<T> {
    /// Numbers `spans` from host index `start`; the caller has checked that
    /// the total fits a `u64`.
    fn new(spans: &[Span<T>], mut start: u64) -> Self {
        let mut blocks = Vec::with_capacity(spans.len());
        for s in spans {
            blocks.push(Block {
                start,
                first: s.first,
            });
            let count = T::count(s.first, s.last).and_then(|c| u64::try_from(c).ok());
            start = start.saturating_add(count.unwrap_or(u64::MAX));
        }
        Blocks { blocks, end: start }
    }

    /// Host index one past block `i`.
    fn block_end(&self, i: usize) -> u64 {
        self.blocks.get(i + 1).map_or(self.end, |b| b.start)
    }

    /// The block holding `host`, which must be below `end` and not below
    /// the first block's start. `O(log blocks)`.
    fn find(&self, host: u64) -> usize {
        self.blocks.partition_point(|b| b.start <= host) - 1
    }

    /// Like [`find`](Self::find) but tries `*hint` and its successor first,
    /// so sequential walks cost `O(1)`; updates the hint.
    fn find_from(&self, host: u64, hint: &mut usize) -> usize {
        let i = *hint;
        let found = if i < self.blocks.len() && self.blocks[i].start <= host {
            if host < self.block_end(i) {
                i
            } else if host < self.block_end(i + 1) {
                i + 1
            } else {
                self.find(host)
            }
        } else {
            self.find(host)
        };
        *hint = found;
        found
    }

    fn addr(&self, block: usize, host: u64) -> IpAddr {
        let b = &self.blocks[block];
        b.first.plus(host - b.start).ip()
    }

    fn host_index(&self, point: T) -> Option<u64> {
        let after = self.blocks.partition_point(|b| b.first <= point);
        let i = after.checked_sub(1)?;
        let b = &self.blocks[i];
        let offset = point.minus(b.first)?;
        (offset < self.block_end(i) - b.start).then(|| b.start + offset)
    }

    fn intervals(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        (0..self.blocks.len()).map(|i| {
            let b = &self.blocks[i];
            (
                b.first.ip(),
                b.first.plus(self.block_end(i) - b.start - 1).ip(),
            )
        })
    }
}

/// A set of addresses (as merged intervals) times a list of ports.
///
/// Host indices run over IPv4 addresses in ascending order, then IPv6
/// addresses in ascending order; probe indices are host-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpace {
    /// Host indices `0..v4.end`.
    v4: Blocks<u32>,
    /// Host indices `v4.end..hosts`.
    v6: Blocks<u128>,
    hosts: u64,
    ports: Vec<u16>,
    len: u64,
}

impl TargetSpace {
    /// A space from explicit inclusive address ranges (merged, overlaps
    /// counted once) and ports (sorted and deduplicated; 0 is dropped).
    ///
    /// ```
    /// use fastport::targets::TargetSpace;
    /// let space = TargetSpace::new(
    ///     ["198.18.0.1".parse().unwrap()..="198.18.0.4".parse().unwrap()],
    ///     &[443, 80],
    /// ).unwrap();
    /// assert_eq!(space.len(), 8);
    /// assert_eq!(space.get(1), Some("198.18.0.1:443".parse().unwrap()));
    /// ```
    pub fn new(
        ranges: impl IntoIterator<Item = std::ops::RangeInclusive<IpAddr>>,
        ports: &[u16],
    ) -> Result<TargetSpace, TargetError> {
        let mut addrs = AddrSet::default();
        for range in ranges {
            let token = || format!("{}-{}", range.start(), range.end());
            let kind = match (*range.start(), *range.end()) {
                (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
                    addrs.v4.insert(Span::new(a.into(), b.into()));
                    continue;
                }
                (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
                    addrs.v6.insert(Span::new(a.into(), b.into()));
                    continue;
                }
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                    TargetErrorKind::ReversedRange
                }
                _ => TargetErrorKind::MixedFamilies,
            };
            return Err(TargetError::new(kind, token()));
        }
        let mut ports: Vec<u16> = ports.iter().copied().filter(|&p| p != 0).collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(TargetError::new(TargetErrorKind::NoPorts, ""));
        }
        let (v4, v6) = (addrs.v4.into_spans(), addrs.v6.into_spans());
        if v4.is_empty() && v6.is_empty() {
            let kind = TargetErrorKind::NothingToScan {
                all_excluded: false,
            };
            return Err(TargetError::new(kind, ""));
        }
        TargetSpace::from_spans(&v4, &v6, ports)
    }

    /// Numbers the merged spans and checks that `hosts * ports` fits a `u64`.
    fn from_spans(
        v4: &[Span<u32>],
        v6: &[Span<u128>],
        ports: Vec<u16>,
    ) -> Result<TargetSpace, TargetError> {
        let too_large = |hosts| {
            let kind = TargetErrorKind::TooLarge {
                hosts,
                ports: ports.len(),
                segmented: false,
            };
            TargetError::new(kind, "")
        };
        let hosts = set::count(v4)
            .zip(set::count(v6))
            .and_then(|(a, b)| a.checked_add(b));
        let (hosts, len) = match hosts.and_then(|h| u64::try_from(h).ok()) {
            Some(h) => match h.checked_mul(ports.len() as u64) {
                Some(len) => (h, len),
                None => return Err(too_large(Some(u128::from(h)))),
            },
            None => return Err(too_large(hosts)),
        };
        let v4 = Blocks::new(v4, 0);
        let v6 = Blocks::new(v6, v4.end);
        debug_assert_eq!(v6.end, hosts);
        Ok(TargetSpace {
            v4,
            v6,
            hosts,
            ports,
            len,
        })
    }

    /// Number of distinct addresses.
    pub fn host_count(&self) -> u64 {
        self.hosts
    }

    /// The ports probed on every address, ascending and distinct.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Number of probes: `host_count() * ports().len()`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if there is nothing to probe; [`build`] never returns such a space.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of disjoint address intervals.
    pub fn interval_count(&self) -> usize {
        self.v4.blocks.len() + self.v6.blocks.len()
    }

    /// The disjoint address intervals `(first, last)`, in host-index order.
    pub fn intervals(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        self.v4.intervals().chain(self.v6.intervals())
    }

    /// Probe `index` (host-major), or `None` past the end. `O(log intervals)`.
    pub fn get(&self, index: u64) -> Option<SocketAddr> {
        if index >= self.len {
            return None;
        }
        let n = self.ports.len() as u64;
        let (host, port) = (index / n, index % n);
        Some(SocketAddr::new(self.host(host)?, self.ports[port as usize]))
    }

    /// Address `host_index`, or `None` past the end. `O(log intervals)`.
    pub fn host(&self, host_index: u64) -> Option<IpAddr> {
        if host_index < self.v4.end {
            Some(self.v4.addr(self.v4.find(host_index), host_index))
        } else if host_index < self.hosts {
            Some(self.v6.addr(self.v6.find(host_index), host_index))
        } else {
            None
        }
    }

    /// The host index of `addr`, or `None` if it is not in the space.
    /// Inverse of [`host`](Self::host).
    pub fn host_index(&self, addr: IpAddr) -> Option<u64> {
        match addr {
            IpAddr::V4(a) => self.v4.host_index(a.into()),
            IpAddr::V6(a) => self.v6.host_index(a.into()),
        }
    }

    /// The probe index of `addr`, or `None` if it is not in the space.
    /// Inverse of [`get`](Self::get).
    pub fn index_of(&self, addr: SocketAddr) -> Option<u64> {
        let host = self.host_index(addr.ip())?;
        let port = self.ports.binary_search(&addr.port()).ok()?;
        Some(host * self.ports.len() as u64 + port as u64)
    }

    /// Walks probe indices `start, start + step, ...` below [`len`](Self::len).
    ///
    /// # Panics
    ///
    /// If `step` is 0.
    pub fn cursor(&self, start: u64, step: u64) -> Cursor<'_> {
        Cursor::new(self, start, step)
    }

    /// Every probe in index order.
    pub fn iter(&self) -> Cursor<'_> {
        self.cursor(0, 1)
    }
}

impl<'a> IntoIterator for &'a TargetSpace {
    type Item = SocketAddr;
    type IntoIter = Cursor<'a>;
    fn into_iter(self) -> Cursor<'a> {
        self.iter()
    }
}

/// Walks the probe indices `start, start + step, ...` of a [`TargetSpace`].
///
/// Each step is `O(1)` amortised and allocation-free: the cursor keeps its
/// (host, port) position and the block it is in, and advances them by the
/// precomputed host and port strides instead of dividing and searching.
/// Give worker `k` of `n` the cursor `space.cursor(k, n)` to split a scan.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    space: &'a TargetSpace,
    /// Host index and port index of the next probe; `host >= hosts` means done.
    host: u64,
    port: u64,
    /// Block of the last IPv4 and IPv6 probe: where the search starts.
    v4_hint: usize,
    v6_hint: usize,
    /// `step` split as `host_step * ports + port_step`.
    host_step: u64,
    port_step: u64,
}

impl<'a> Cursor<'a> {
    fn new(space: &'a TargetSpace, start: u64, step: u64) -> Cursor<'a> {
        assert!(step > 0, "Cursor step must be positive");
        let n = (space.ports.len() as u64).max(1);
        let (host, port) = if start < space.len {
            (start / n, start % n)
        } else {
            (space.hosts, 0)
        };
        Cursor {
            space,
            host,
            port,
            v4_hint: 0,
            v6_hint: 0,
            host_step: step / n,
            port_step: step % n,
        }
    }

    /// The probe index the next call to `next` returns, if any.
    pub fn position(&self) -> Option<u64> {
        (self.host < self.space.hosts)
            .then(|| self.host * self.space.ports.len() as u64 + self.port)
    }
}

impl Iterator for Cursor<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        let space = self.space;
        let host = self.host;
        let ip = if host < space.v4.end {
            let block = space.v4.find_from(host, &mut self.v4_hint);
            space.v4.addr(block, host)
        } else if host < space.hosts {
            let block = space.v6.find_from(host, &mut self.v6_hint);
            space.v6.addr(block, host)
        } else {
            return None;
        };
        let addr = SocketAddr::new(ip, space.ports[self.port as usize]);

        self.port += self.port_step;
        let mut next_host = host.saturating_add(self.host_step);
        if self.port >= space.ports.len() as u64 {
            self.port -= space.ports.len() as u64;
            next_host = next_host.saturating_add(1);
        }
        self.host = next_host;
        Some(addr)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match self.position() {
            None => 0,
            Some(i) => {
                let step = self.host_step * self.space.ports.len() as u64 + self.port_step;
                (self.space.len - 1 - i) / step + 1
            }
        };
        match usize::try_from(left) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }
}

impl FusedIterator for Cursor<'_> {}

#[cfg(test)]
mod tests;
