//! Port specifications: `-p`, `--top-ports` and `--exclude-ports`.
//!
//! The syntax is nmap's: a comma list of `22`, `1000-2000`, `1000-` (to
//! 65535), `-100` (from 1) and `-` (all), each optionally prefixed `T:`.
//! Ports are collected in a 65536-bit set, so the result is deduplicated and
//! ascending whatever order the user wrote.

use super::error::{TargetError, TargetErrorKind as Kind};
use super::services;

/// Ports scanned when neither `-p` nor `--top-ports` is given.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 1..=1024;

/// A set of TCP ports (port 0 is never a member).
#[derive(Clone)]
pub(crate) struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl PortSet {
    pub(crate) fn new() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
        }
    }

    pub(crate) fn insert(&mut self, port: u16) {
        self.bits[usize::from(port / 64)] |= 1 << (port % 64);
    }

    pub(crate) fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    fn insert_range(&mut self, first: u16, last: u16) {
        for port in first..=last {
            self.insert(port);
        }
    }

    /// The members in ascending order.
    pub(crate) fn to_vec(&self) -> Vec<u16> {
        (1..=u16::MAX).filter(|&p| self.contains(p)).collect()
    }
}

/// Parses a `-p` value into ascending, deduplicated ports.
///
/// ```
/// assert_eq!(fastport::targets::parse_ports("80,22,1000-1002,22").unwrap(), [22, 80, 1000, 1001, 1002]);
/// assert_eq!(fastport::targets::parse_ports("-").unwrap().len(), 65535);
/// ```
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, TargetError> {
    parse_port_set(spec, "-p").map(|set| set.to_vec())
}

/// Parses a port spec given to `flag` (`-p`, `--exclude-ports`).
pub(crate) fn parse_port_set(spec: &str, flag: &'static str) -> Result<PortSet, TargetError> {
    let mut set = PortSet::new();
    for item in spec.split(',') {
        let (first, last) = parse_item(item.trim()).map_err(|e| e.in_flag(flag, spec))?;
        set.insert_range(first, last);
    }
    Ok(set)
}

/// One comma-separated item: `[T:]` then `n`, `n-m`, `n-`, `-m` or `-`.
fn parse_item(item: &str) -> Result<(u16, u16), TargetError> {
    let err = |kind| TargetError::new(kind, item);
    let body = match item.split_once(':') {
        Some(("T" | "t", body)) => body,
        Some(("U" | "u" | "S" | "s" | "P" | "p", _)) => return Err(err(Kind::NotTcp)),
        Some(_) => return Err(err(Kind::InvalidPortSyntax)),
        None => item,
    };
    if body.is_empty() {
        return Err(err(Kind::EmptyItem));
    }
    let (first, last) = match body.split_once('-') {
        None => {
            let p = parse_port(body)?;
            (p, p)
        }
        Some((a, b)) => {
            let first = if a.is_empty() { 1 } else { parse_port(a)? };
            let last = if b.is_empty() {
                u16::MAX
            } else {
                parse_port(b)?
            };
            (first, last)
        }
    };
    if first > last {
        return Err(err(Kind::ReversedRange));
    }
    Ok((first, last))
}

/// A port number 1-65535; the error names just this number.
fn parse_port(s: &str) -> Result<u16, TargetError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::new(Kind::InvalidPortSyntax, s));
    }
    // Digits only, so a failed parse means too large.
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(TargetError::new(Kind::InvalidPort, s)),
    }
}

/// Resolves `-p`, `--top-ports` and `--exclude-ports` into the port list.
///
/// `--top-ports N` picks the N highest-ranked ports of `ranking` (the
/// built-in one when `None`) that are not excluded, as nmap does; the result is ascending in every case.
pub(crate) fn select_ports(
    ports: Option<&str>,
    top_ports: Option<usize>,
    exclude_ports: Option<&str>,
    ranking: Option<&services::Ranking>,
) -> Result<Vec<u16>, TargetError> {
    let built_in;
    let ranking = match ranking {
        Some(r) => r,
        None => {
            built_in = services::Ranking::built_in();
            &built_in
        }
    };
    match (ports, top_ports) {
        (Some(_), Some(_)) => return Err(TargetError::new(Kind::PortsAndTopPorts, "")),
        (_, Some(0)) => return Err(TargetError::new(Kind::InvalidTopPorts, "0")),
        (_, Some(n)) if n > ranking.ports.len() => {
            return Err(TargetError::new(
                Kind::TopPortsBeyondTable {
                    table: ranking.ports.len(),
                },
                n.to_string(),
            ));
        }
        _ => {}
    }
    let excluded = exclude_ports
        .map(|spec| parse_port_set(spec, "--exclude-ports"))
        .transpose()?;
    let is_excluded = |p: u16| excluded.as_ref().is_some_and(|x| x.contains(p));
    let selected = match (ports, top_ports) {
        (Some(spec), _) => parse_port_set(spec, "-p")?.to_vec(),
        (None, Some(n)) => ranking.top(n, is_excluded),
        (None, None) => DEFAULT_PORTS.collect(),
    };
    let kept: Vec<u16> = selected.into_iter().filter(|&p| !is_excluded(p)).collect();
    if kept.is_empty() {
        return Err(TargetError::new(
            Kind::NoPorts,
            exclude_ports.unwrap_or_default(),
        ));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(spec: &str) -> String {
        parse_ports(spec).unwrap_err().to_string()
    }

    #[test]
    fn lists_ranges_and_duplicates() {
        assert_eq!(parse_ports("22").unwrap(), [22]);
        assert_eq!(parse_ports("80,22,22,21-23").unwrap(), [21, 22, 23, 80]);
        assert_eq!(
            parse_ports("1000-1003,1002").unwrap(),
            [1000, 1001, 1002, 1003]
        );
        assert_eq!(parse_ports("65535").unwrap(), [65535]);
        assert_eq!(parse_ports("5-5").unwrap(), [5]);
        assert_eq!(parse_ports(" 22 , 80 ").unwrap(), [22, 80]);
    }

    #[test]
    fn open_ended_and_full_ranges() {
        let all = parse_ports("-").unwrap();
        assert_eq!(all.len(), 65535);
        assert_eq!((all[0], all[65534]), (1, 65535));
        assert_eq!(
            parse_ports("65530-").unwrap(),
            [65530, 65531, 65532, 65533, 65534, 65535]
        );
        assert_eq!(parse_ports("-3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_ports("-3,65535-").unwrap(), [1, 2, 3, 65535]);
    }

    #[test]
    fn tcp_prefix_is_ignored() {
        assert_eq!(parse_ports("T:22,80").unwrap(), [22, 80]);
        assert_eq!(parse_ports("T:22,T:80-81").unwrap(), [22, 80, 81]);
        assert_eq!(parse_ports("T:-").unwrap().len(), 65535);
    }

    #[test]
    fn out_of_range_ports_are_named() {
        assert_eq!(
            err("22,70000"),
            r#"invalid port "70000" in "-p 22,70000": ports are 1-65535"#
        );
        assert_eq!(err("0"), r#"invalid port "0" in "-p 0": ports are 1-65535"#);
        assert_eq!(
            err("0-10"),
            r#"invalid port "0" in "-p 0-10": ports are 1-65535"#
        );
        assert_eq!(
            err("65536"),
            r#"invalid port "65536" in "-p 65536": ports are 1-65535"#
        );
        assert_eq!(
            err("99999999999999999999999"),
            r#"invalid port "99999999999999999999999" in "-p 99999999999999999999999": ports are 1-65535"#
        );
        assert_eq!(
            err("100-65536").split(':').next(),
            Some(r#"invalid port "65536" in "-p 100-65536""#)
        );
    }

    #[test]
    fn reversed_ranges_are_named() {
        assert_eq!(
            err("20-10"),
            r#"reversed range "20-10" in "-p 20-10": start is above end"#
        );
        assert!(matches!(
            parse_ports("22,20-10").unwrap_err().kind(),
            Kind::ReversedRange
        ));
    }

    #[test]
    fn empty_items_are_errors() {
        for spec in ["", ",", "22,", ",22", "22,,80", "T:", " "] {
            let e = parse_ports(spec).unwrap_err();
            assert!(matches!(e.kind(), Kind::EmptyItem), "{spec:?}: {e}");
        }
        assert_eq!(err("22,,80"), r#"empty item in "-p 22,,80""#);
    }

    #[test]
    fn garbage_is_named() {
        for (spec, token) in [
            ("abc", "abc"),
            ("22,http", "http"),
            ("+22", "+22"),
            ("22-x", "x"),
            ("1-2-3", "2-3"),
            ("0x16", "0x16"),
            ("X:22", "X:22"),
            ("T:T:22", "T:22"),
            ("--5", "-5"),
        ] {
            let e = parse_ports(spec).unwrap_err();
            assert_eq!(e.token(), token, "{spec:?}: {e}");
            assert!(matches!(e.kind(), Kind::InvalidPortSyntax), "{spec:?}: {e}");
        }
        assert_eq!(
            err("22,abc"),
            r#"invalid port "abc" in "-p 22,abc": expected a port or a range like 1000-2000"#
        );
    }

    #[test]
    fn udp_and_sctp_are_refused() {
        let e = parse_ports("U:53").unwrap_err();
        assert!(matches!(e.kind(), Kind::NotTcp));
        assert_eq!(
            e.to_string(),
            r#"invalid port "U:53" in "-p U:53": FastPort scans TCP ports only"#
        );
        assert!(matches!(
            parse_ports("22,S:80").unwrap_err().kind(),
            Kind::NotTcp
        ));
    }

    #[test]
    fn default_is_1_to_1024() {
        let ports = select_ports(None, None, None, None).unwrap();
        assert_eq!(ports, (1..=1024).collect::<Vec<u16>>());
    }

    #[test]
    fn top_ports_are_ascending_and_most_frequent() {
        // The built-in ranking (no nmap-services given).
        assert_eq!(select_ports(None, Some(1), None, None).unwrap(), [80]);
        assert_eq!(
            select_ports(None, Some(5), None, None).unwrap(),
            [21, 22, 25, 80, 443]
        );
        let top100 = select_ports(None, Some(100), None, None).unwrap();
        assert_eq!(top100.len(), 100);
        assert!(top100.windows(2).all(|w| w[0] < w[1]));
        assert!(top100.contains(&3389) && top100.contains(&8080));
    }

    #[test]
    fn top_ports_beyond_the_table_silently_scanned_the_table() {
        let table = services::Ranking::built_in().ports.len();
        let all = select_ports(None, Some(table), None, None).unwrap();
        assert_eq!(all.len(), table);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let e = select_ports(None, Some(99_999), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--top-ports 99999: the port ranking ranks only {table} ports; give at most {table}, or -p- for every port"
            )
        );
    }

    #[test]
    fn top_ports_zero_and_both_flags_are_errors() {
        let e = select_ports(None, Some(0), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid --top-ports "0": must be at least 1"#
        );
        let e = select_ports(Some("22"), Some(10), None, None).unwrap_err();
        assert_eq!(e.to_string(), "-p and --top-ports cannot be used together");
    }

    #[test]
    fn exclude_ports_removes_and_top_ports_skips_excluded() {
        assert_eq!(
            select_ports(Some("20-25"), None, Some("21,23-24"), None).unwrap(),
            [20, 22, 25]
        );
        assert_eq!(
            select_ports(None, Some(3), Some("80"), None).unwrap(),
            [21, 22, 443]
        );
        assert_eq!(select_ports(None, None, Some("2-1024"), None).unwrap(), [1]);
        let e = select_ports(Some("22"), None, Some("70000"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid port "70000" in "--exclude-ports 70000": ports are 1-65535"#
        );
    }

    #[test]
    fn excluding_every_port_is_an_error() {
        let e = select_ports(Some("22,80"), None, Some("-"), None).unwrap_err();
        assert!(matches!(e.kind(), Kind::NoPorts));
        assert_eq!(
            e.to_string(),
            r#"no ports left to scan after --exclude-ports "-""#
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(spec in ".{0,40}") {
            let _ = parse_ports(&spec);
        }

        #[test]
        fn parser_never_panics_on_port_alphabet(spec in "[0-9,:T-]{0,20}") {
            if let Ok(ports) = parse_ports(&spec) {
                prop_assert!(ports.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(!ports.contains(&0));
            }
        }

        #[test]
        fn list_matches_naive_model(items in prop::collection::vec((1u16..=65535, 0u16..50), 1..8)) {
            let spec: Vec<String> = items.iter().map(|&(a, len)| {
                let b = a.saturating_add(len);
                if len == 0 { a.to_string() } else { format!("{a}-{b}") }
            }).collect();
            let mut naive: Vec<u16> = items.iter().flat_map(|&(a, len)| a..=a.saturating_add(len)).collect();
            naive.sort_unstable();
            naive.dedup();
            prop_assert_eq!(parse_ports(&spec.join(",")).unwrap(), naive);
        }
    }
}
