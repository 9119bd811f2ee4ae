//! Target specifications as users write them for nmap and masscan.
//!
//! One token is an address (`198.18.0.1`, `2001:db8::1`), a CIDR block
//! (`198.18.0.0/24`), a range (`198.18.0.1-20`, `198.18.0.1-198.18.1.5`, `::1-::5`),
//! an nmap octet range (`198.18.0-2.1`, `198.18.0.*`, `198.18.1,3.1-5`) or a
//! hostname, resolved once with the system resolver unless `-n` forbids it.
//! Tokens land in an [`AddrSet`] of merged intervals; list files (`-iL`,
//! `--exclude-file`) are tokenized as a stream, never read whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::Path;

use super::error::{TargetError, TargetErrorKind as Kind};
use super::set::{Span, SpanSet};

/// IPv4 and IPv6 addresses gathered from target or exclude specifications.
#[derive(Debug, Default)]
pub(crate) struct AddrSet {
    pub(crate) v4: SpanSet<u32>,
    pub(crate) v6: SpanSet<u128>,
}

impl AddrSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn insert_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.v4.insert(Span::new(a.into(), a.into())),
            IpAddr::V6(a) => self.v6.insert(Span::new(a.into(), a.into())),
        }
    }
}

/// Looks a hostname up: its addresses in the resolver's order; `Err(None)`
/// when it resolves to none.
pub(crate) type Lookup<'a> = dyn FnMut(&str) -> Result<Vec<IpAddr>, Option<io::Error>> + 'a;

/// The system resolver: every address, in its order, each once.
pub(crate) fn system_lookup(name: &str) -> Result<Vec<IpAddr>, Option<io::Error>> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for sa in (name, 0u16).to_socket_addrs().map_err(Some)? {
        if !ips.contains(&sa.ip()) {
            ips.push(sa.ip());
        }
    }
    if ips.is_empty() { Err(None) } else { Ok(ips) }
}

/// The addresses of a name that FastPort scans: every address of one
/// family, IPv4 when the name has any (the family its users expect), else
/// IPv6; with `first_only` (`--resolve-first`, nmap's default) only the
/// first of them.
pub(crate) fn pick(addrs: &[IpAddr], first_only: bool) -> Vec<IpAddr> {
    let v4 = addrs.iter().any(IpAddr::is_ipv4);
    let family = addrs.iter().copied().filter(|ip| ip.is_ipv4() == v4);
    if first_only {
        family.take(1).collect()
    } else {
        family.collect()
    }
}

/// Hostname resolution policy plus a cache, so each name is looked up once.
///
/// A name that does not resolve is not an error: it is kept in
/// [`unresolved`](Self::unresolved) (reported, and counted in the summary)
/// and stands for no address, so the scan goes on with the others.
pub(crate) struct Names<'a> {
    resolve: bool,
    first_only: bool,
    lookup: Box<Lookup<'a>>,
    cache: HashMap<String, Vec<IpAddr>>,
    /// While true, resolved names are recorded in `given` (targets, not excludes).
    pub(crate) record: bool,
    /// Each target name and the addresses it stands for, in the order given.
    pub(crate) given: Vec<(String, Vec<IpAddr>)>,
    /// Names that did not resolve, each once, with why.
    pub(crate) unresolved: Vec<TargetError>,
}

impl<'a> Names<'a> {
    /// `resolve == false` is `--no-resolve`: every hostname is an error.
    pub(crate) fn new(
        resolve: bool,
        lookup: impl FnMut(&str) -> Result<Vec<IpAddr>, Option<io::Error>> + 'a,
    ) -> Self {
        Names {
            resolve,
            first_only: false,
            lookup: Box::new(lookup),
            cache: HashMap::new(),
            record: false,
            given: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    /// Only each name's first address (`--resolve-first`).
    pub(crate) fn first_only(mut self, first_only: bool) -> Self {
        self.first_only = first_only;
        self
    }

    /// The addresses `name` stands for; none when it does not resolve.
    fn resolve(&mut self, name: &str, token: &str) -> Result<Vec<IpAddr>, TargetError> {
        if !self.resolve {
            return Err(TargetError::new(Kind::HostnameNotAllowed, token));
        }
        let ips = match self.cache.get(name) {
            Some(ips) => ips.clone(),
            None => {
                let ips = match (self.lookup)(name) {
                    Ok(all) => pick(&all, self.first_only),
                    Err(e) => {
                        self.unresolved
                            .push(TargetError::new(Kind::Unresolvable(e), name));
                        Vec::new()
                    }
                };
                self.cache.insert(name.to_owned(), ips.clone());
                ips
            }
        };
        if self.record && !ips.is_empty() && !self.given.iter().any(|(n, _)| n == name) {
            self.given.push((name.to_owned(), ips.clone()));
        }
        Ok(ips)
    }
}

/// Parses one target token and adds its addresses to `out`.
pub(crate) fn add_target(
    token: &str,
    names: &mut Names<'_>,
    out: &mut AddrSet,
) -> Result<(), TargetError> {
    let invalid = |kind| TargetError::new(kind, token);
    if let Some((base, prefix)) = token.rsplit_once('/') {
        return add_cidr(token, base, prefix, names, out);
    }
    if token.contains(':') {
        if token.contains('%') {
            return Err(invalid(Kind::ZoneId));
        }
        let (first, last) = parse_v6_range(token)?;
        out.v6.insert(Span::new(first, last));
        return Ok(());
    }
    if token.bytes().all(|b| b"0123456789.,-*".contains(&b)) {
        return add_v4(token, out);
    }
    if looks_numeric(token) {
        // The resolver would read 0x7f.0.0.1 (inet_aton) where the parser
        // refuses 017.0.0.1: neither is taken.
        return Err(invalid(Kind::NotDottedDecimal));
    }
    if is_hostname(token) {
        for ip in names.resolve(token, token)? {
            out.insert_ip(ip);
        }
        return Ok(());
    }
    Err(invalid(Kind::InvalidTarget))
}

/// `base/prefix` where base is an IPv4 or IPv6 address or a hostname.
fn add_cidr(
    token: &str,
    base: &str,
    prefix: &str,
    names: &mut Names<'_>,
    out: &mut AddrSet,
) -> Result<(), TargetError> {
    let v4 = base.parse::<Ipv4Addr>().ok();
    let v6 = parse_v6(base);
    if v4.is_none() && v6.is_none() && !is_hostname(base) {
        return Err(TargetError::new(Kind::InvalidTarget, token));
    }
    let bad_prefix = |max_prefix| TargetError::new(Kind::InvalidCidr { max_prefix }, token);
    // Checked before any lookup: a typo must not cost a DNS query.
    let bits =
        parse_decimal(prefix).ok_or_else(|| bad_prefix(if v6.is_some() { 128 } else { 32 }))?;
    let base_ip = match (v4, v6) {
        (Some(a), _) => IpAddr::V4(a),
        (_, Some(a)) => IpAddr::V6(a),
        _ => match names.resolve(base, token)?.first() {
            Some(&ip) => ip,
            // Did not resolve: reported with the others, no addresses.
            None => return Ok(()),
        },
    };
    let max_prefix = if base_ip.is_ipv4() { 32 } else { 128 };
    if bits > max_prefix {
        return Err(bad_prefix(max_prefix));
    }
    match base_ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - bits)).unwrap_or(0);
            let first = u32::from(a) & mask;
            out.v4.insert(Span::new(first, first | !mask));
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - bits)).unwrap_or(0);
            let first = u128::from(a) & mask;
            out.v6.insert(Span::new(first, first | !mask));
        }
    }
    Ok(())
}

/// `a`, `[a]`, or the full range `a-b` of IPv6 addresses.
fn parse_v6_range(token: &str) -> Result<(u128, u128), TargetError> {
    let err = |kind| TargetError::new(kind, token);
    match token.split_once('-') {
        None => parse_v6(token)
            .map(|a| (a.into(), a.into()))
            .ok_or_else(|| err(Kind::InvalidTarget)),
        Some((a, b)) => match (parse_v6(a), parse_v6(b)) {
            (Some(a), Some(b)) => {
                ordered(u128::from(a), u128::from(b)).ok_or_else(|| err(Kind::ReversedRange))
            }
            (Some(_), None) if b.parse::<Ipv4Addr>().is_ok() => Err(err(Kind::MixedFamilies)),
            (None, Some(_)) if a.parse::<Ipv4Addr>().is_ok() => Err(err(Kind::MixedFamilies)),
            _ => Err(err(Kind::InvalidTarget)),
        },
    }
}

/// An IPv6 address, optionally in brackets as in URLs.
fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

fn ordered<T: Ord>(first: T, last: T) -> Option<(T, T)> {
    (first <= last).then_some((first, last))
}

/// IPv4 address, full range `a-b`, or nmap octet ranges (which include the
/// last-octet shorthand `198.18.0.1-20`).
fn add_v4(token: &str, out: &mut AddrSet) -> Result<(), TargetError> {
    if let Ok(a) = token.parse::<Ipv4Addr>() {
        out.v4.insert(Span::new(a.into(), a.into()));
        return Ok(());
    }
    let ends = token
        .split_once('-')
        .map(|(a, b)| (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()));
    if let Some((Ok(a), Ok(b))) = ends {
        let (first, last) = ordered(u32::from(a), u32::from(b))
            .ok_or_else(|| TargetError::new(Kind::ReversedRange, token))?;
        out.v4.insert(Span::new(first, last));
        return Ok(());
    }
    for span in expand_octets(token)? {
        out.v4.insert(span);
    }
    Ok(())
}

/// Upper bound on the disjoint pieces one octet-range token may expand to.
const MAX_PIECES: usize = 1 << 16;

/// nmap's per-octet syntax: each of the four octets is a comma list of
/// `n`, `n-m`, `n-`, `-m`, `-` or `*`.
fn expand_octets(token: &str) -> Result<Vec<Span<u32>>, TargetError> {
    let invalid = || TargetError::new(Kind::InvalidTarget, token);
    let mut octets = token.split('.');
    let mut octet_ranges = || -> Result<Vec<(u32, u32)>, TargetError> {
        let part = octets.next().ok_or_else(invalid)?;
        let mut ranges = Vec::new();
        for item in part.split(',') {
            let (lo, hi) = match item {
                "*" | "-" => (0, 255),
                _ => match item.split_once('-') {
                    None => {
                        let n = parse_octet(item).ok_or_else(invalid)?;
                        (n, n)
                    }
                    Some((a, b)) => {
                        let lo = if a.is_empty() {
                            Some(0)
                        } else {
                            parse_octet(a)
                        };
                        let hi = if b.is_empty() {
                            Some(255)
                        } else {
                            parse_octet(b)
                        };
                        let (lo, hi) = lo.zip(hi).ok_or_else(invalid)?;
                        ordered(lo, hi)
                            .ok_or_else(|| TargetError::new(Kind::ReversedRange, token))?
                    }
                },
            };
            ranges.push((lo, hi));
        }
        ranges.sort_unstable();
        ranges.dedup();
        Ok(ranges)
    };
    let parts = [
        octet_ranges()?,
        octet_ranges()?,
        octet_ranges()?,
        octet_ranges()?,
    ];
    if octets.next().is_some() {
        return Err(invalid());
    }
    // Widen octet by octet; a full octet keeps each prefix interval contiguous.
    let [first, rest @ ..] = parts;
    let mut spans = first;
    for ranges in rest {
        let full = ranges.contains(&(0, 255));
        let mut wider = Vec::new();
        for (a, b) in spans {
            if full {
                wider.push((a << 8, (b << 8) | 255));
                continue;
            }
            for v in a..=b {
                for &(lo, hi) in &ranges {
                    wider.push(((v << 8) | lo, (v << 8) | hi));
                }
                if wider.len() > MAX_PIECES {
                    return Err(TargetError::new(Kind::TooManyPieces, token));
                }
            }
        }
        spans = wider;
    }
    Ok(spans.into_iter().map(|(a, b)| Span::new(a, b)).collect())
}

/// A decimal octet 0-255 without sign or leading zeros (which some tools read as octal).
fn parse_octet(s: &str) -> Option<u32> {
    parse_decimal(s).map(u32::from).filter(|&n| n <= 255)
}

/// A short plain decimal number: digits only, no sign, no leading zero.
fn parse_decimal(s: &str) -> Option<u8> {
    let plain = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !plain {
        return None;
    }
    s.parse::<u16>().ok().and_then(|n| u8::try_from(n).ok())
}

/// An IPv4 address in a form other than dotted decimal: every label a
/// number (decimal or `0x` hex), at least one of them hex.
fn looks_numeric(s: &str) -> bool {
    let is_hex = |l: &str| {
        let b = l.as_bytes();
        b.len() > 2
            && b[..2].eq_ignore_ascii_case(b"0x")
            && b[2..].iter().all(u8::is_ascii_hexdigit)
    };
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() <= 4
        && labels.iter().any(|l| is_hex(l))
        && labels
            .iter()
            .all(|l| is_hex(l) || (!l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())))
}

/// RFC 1123 host name syntax (underscores tolerated), with a letter somewhere
/// so that mistyped addresses such as `198.18.0.300` are not sent to DNS.
fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Longest token a list file may hold; longer ones are reported, not buffered.
const MAX_TOKEN: usize = 1024;

/// Calls `each(token)` for every whitespace-separated token of `reader`,
/// skipping `#` comments, and locates any error at its line of `flag path`.
/// Reads through the `BufRead` buffer only: memory stays bounded whatever
/// the size of the file or the length of its lines, and where the reads
/// split the text does not change the tokens. Tokens over 1024 bytes and
/// tokens that are not UTF-8 are errors. This is the `-iL` and
/// `--exclude-file` tokenizer (public for the fuzzers).
pub fn for_each_token(
    mut reader: impl BufRead,
    flag: &'static str,
    path: &Path,
    mut each: impl FnMut(&str) -> Result<(), TargetError>,
) -> Result<(), TargetError> {
    let mut token = Vec::with_capacity(64);
    let mut line = 1u64;
    let mut in_comment = false;
    let mut flush = |token: &mut Vec<u8>, line: u64| -> Result<(), TargetError> {
        if token.is_empty() {
            return Ok(());
        }
        let result = match std::str::from_utf8(token) {
            Ok(t) if token.len() <= MAX_TOKEN => each(t),
            _ => {
                let shown = String::from_utf8_lossy(&token[..token.len().min(64)]);
                let dots = if token.len() > 64 { "..." } else { "" };
                Err(TargetError::new(
                    Kind::InvalidTarget,
                    format!("{shown}{dots}"),
                ))
            }
        };
        token.clear();
        result.map_err(|e| e.in_file(flag, path, line))
    };
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e, flag, path, line)),
        };
        for &b in chunk {
            match b {
                b'\n' => {
                    flush(&mut token, line)?;
                    line += 1;
                    in_comment = false;
                }
                _ if in_comment => {}
                b'#' => {
                    in_comment = true;
                    flush(&mut token, line)?;
                }
                // Binary data (`-iL /dev/zero`) would be read for ever.
                0 => {
                    return Err(TargetError::new(Kind::NotText, path.display().to_string())
                        .in_file(flag, path, line));
                }
                b if b.is_ascii_whitespace() => flush(&mut token, line)?,
                b => {
                    token.push(b);
                    // One byte past the limit is enough to report the token
                    // as too long, at once: a file with no line end is not
                    // read to its end first.
                    if token.len() > MAX_TOKEN {
                        flush(&mut token, line)?;
                    }
                }
            }
        }
        let len = chunk.len();
        reader.consume(len);
    }
    flush(&mut token, line)
}

fn read_error(e: io::Error, flag: &'static str, path: &Path, line: u64) -> TargetError {
    TargetError::new(Kind::Read(e), path.display().to_string()).in_file(flag, path, line)
}

/// Adds every target listed in `path` (`-` = standard input) to `out`;
/// `flag` (`-iL`, `--exclude-file`) names the source in errors.
pub(crate) fn add_list_file(
    flag: &'static str,
    path: &Path,
    names: &mut Names<'_>,
    out: &mut AddrSet,
) -> Result<(), TargetError> {
    let add = |token: &str| add_target(token, names, out);
    if path == Path::new("-") {
        for_each_token(io::stdin().lock(), flag, path, add)
    } else {
        let file = File::open(path).map_err(|e| read_error(e, flag, path, 0))?;
        for_each_token(BufReader::with_capacity(64 * 1024, file), flag, path, add)
    }
}
