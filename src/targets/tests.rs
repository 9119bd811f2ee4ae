//! Tests of the whole target space: syntax, excludes, list files, counting,
//! indexing and cursors. Nothing here connects anywhere; hostnames go to a
//! fake resolver except "localhost" and a `.invalid` name.

use super::addr::{self, AddrSet, Names};
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Fake DNS: `v4.test`, `v6.test`, `multi.test` (two IPv4 addresses and
/// one IPv6), anything else fails.
fn fake_lookup(name: &str) -> Result<Vec<IpAddr>, Option<io::Error>> {
    let ips = |list: &[&str]| Ok(list.iter().map(|s| s.parse().unwrap()).collect());
    match name {
        "v4.test" => ips(&["198.18.2.7"]),
        "v6.test" => ips(&["2001:db8::7"]),
        "multi.test" => ips(&["2001:2::1", "198.18.0.9", "198.18.0.2"]),
        _ => Err(None),
    }
}

fn args<'a>(targets: &'a [String]) -> TargetArgs<'a> {
    TargetArgs {
        targets,
        ..TargetArgs::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Builds from target operands with the fake resolver.
fn space(targets: &[&str]) -> Result<TargetSpace, TargetError> {
    let targets = strings(targets);
    build_with(&args(&targets), &mut Names::new(true, fake_lookup))
}

/// Builds target operands with the port list `ports` (`-p`).
fn with_ports(targets: &[&str], ports: &str) -> Result<TargetSpace, TargetError> {
    let targets = strings(targets);
    build(&TargetArgs {
        ports: Some(ports),
        ..args(&targets)
    })
}

fn space_ex(targets: &[&str], exclude: &[&str]) -> Result<TargetSpace, TargetError> {
    let (targets, exclude) = (strings(targets), strings(exclude));
    let a = TargetArgs {
        exclude: &exclude,
        ..args(&targets)
    };
    build_with(&a, &mut Names::new(true, fake_lookup))
}

fn err(targets: &[&str]) -> TargetError {
    space(targets).unwrap_err()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `(first, last)` of every interval, as strings.
fn intervals(s: &TargetSpace) -> Vec<(String, String)> {
    s.intervals()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn iv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("fastport-targets-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Targets read from `file` alone (`-iL FILE`).
fn list_args(file: &TempFile) -> TargetArgs<'_> {
    TargetArgs {
        input_list: Some(&file.0),
        ..TargetArgs::default()
    }
}

fn from_list(contents: &str) -> Result<TargetSpace, TargetError> {
    let file = TempFile::new("list", contents.as_bytes());
    let a = list_args(&file);
    build_with(&a, &mut Names::new(true, fake_lookup))
}

// ---- Target syntax ----

#[test]
fn single_addresses() {
    let s = space(&["198.18.0.1"]).unwrap();
    assert_eq!(s.host_count(), 1);
    assert_eq!(s.host(0), Some(ip("198.18.0.1")));
    let s = space(&["2001:db8::1", "[2001:db8::2]"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("2001:db8::1", "2001:db8::2")]));
}

#[test]
fn no_targets_means_localhost() {
    let s = build(&TargetArgs::default()).unwrap();
    assert_eq!(s.host_count(), 1);
    assert_eq!(s.host(0), Some(ip("127.0.0.1")));
    assert_eq!(s.ports(), (1..=1024).collect::<Vec<u16>>());
    assert_eq!(s.len(), 1024);
}

#[test]
fn operands_may_hold_several_targets() {
    let s = space(&["198.18.0.1 198.18.0.3\t198.18.0.5", "198.18.0.7"]).unwrap();
    assert_eq!(s.host_count(), 4);
}

#[test]
fn cidr_blocks() {
    let s = space(&["198.18.0.0/24"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.0", "198.18.0.255")]));
    let s = space(&["198.18.0.77/30"]).unwrap();
    assert_eq!(
        intervals(&s),
        iv(&[("198.18.0.76", "198.18.0.79")]),
        "host bits are masked"
    );
    assert_eq!(space(&["198.18.0.9/32"]).unwrap().host_count(), 1);
    assert_eq!(space(&["0.0.0.0/0"]).unwrap().host_count(), 1 << 32);
    let s = space(&["2001:db8::/120"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("2001:db8::", "2001:db8::ff")]));
    assert_eq!(space(&["::1/128"]).unwrap().host_count(), 1);
    assert_eq!(space(&["[2001:db8::]/126"]).unwrap().host_count(), 4);
}

#[test]
fn invalid_cidr_names_the_token() {
    assert_eq!(
        err(&["198.18.0.0/33"]).to_string(),
        r#"invalid CIDR "198.18.0.0/33": prefix length must be 0-32"#
    );
    assert_eq!(
        err(&["::/129"]).to_string(),
        r#"invalid CIDR "::/129": prefix length must be 0-128"#
    );
    for t in [
        "198.18.0.0/",
        "198.18.0.0/x",
        "198.18.0.0/-1",
        "198.18.0.0/024",
        "198.18.0.0/+8",
    ] {
        assert!(
            matches!(
                err(&[t]).kind(),
                TargetErrorKind::InvalidCidr { max_prefix: 32 }
            ),
            "{t}"
        );
    }
    for t in ["198.18.0.300/24", "/24", "198.18.0.1/24/8", "-x/8"] {
        assert!(
            matches!(err(&[t]).kind(), TargetErrorKind::InvalidTarget),
            "{t}"
        );
    }
}

#[test]
fn last_octet_and_full_ranges() {
    let s = space(&["198.18.0.1-20"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.1", "198.18.0.20")]));
    let s = space(&["198.18.0.1-198.18.1.5"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.1", "198.18.1.5")]));
    assert_eq!(s.host_count(), 261);
    let s = space(&["::1-::5"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("::1", "::5")]));
    let s = space(&["0.0.0.0-255.255.255.255"]).unwrap();
    assert_eq!(s.host_count(), 1 << 32);
    assert_eq!(space(&["198.18.0.7-7"]).unwrap().host_count(), 1);
}

#[test]
fn reversed_ranges_are_errors() {
    assert_eq!(
        err(&["198.18.0.20-10"]).to_string(),
        r#"reversed range "198.18.0.20-10": start is above end"#
    );
    for t in ["198.18.0.5-198.18.0.1", "::5-::1", "198.18-1.0.0"] {
        assert!(
            matches!(err(&[t]).kind(), TargetErrorKind::ReversedRange),
            "{t}"
        );
    }
}

#[test]
fn mixed_family_ranges_are_errors() {
    assert_eq!(
        err(&["198.18.0.1-::5"]).to_string(),
        r#"invalid range "198.18.0.1-::5": mixes IPv4 and IPv6"#
    );
    assert!(matches!(
        err(&["::1-198.18.0.1"]).kind(),
        TargetErrorKind::MixedFamilies
    ));
}

#[test]
fn nmap_octet_ranges() {
    let s = space(&["198.18.0-2.1"]).unwrap();
    let hosts: Vec<IpAddr> = (0..s.host_count()).map(|i| s.host(i).unwrap()).collect();
    assert_eq!(
        hosts,
        [ip("198.18.0.1"), ip("198.18.1.1"), ip("198.18.2.1")]
    );
    let s = space(&["198.18.0.*"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.0", "198.18.0.255")]));
    let s = space(&["198.18.1,3.1-2"]).unwrap();
    assert_eq!(
        intervals(&s),
        iv(&[("198.18.1.1", "198.18.1.2"), ("198.18.3.1", "198.18.3.2")])
    );
    let s = space(&["198.18.-.0"]).unwrap();
    assert_eq!(s.host_count(), 256);
    let s = space(&["240.*.*.*"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("240.0.0.0", "240.255.255.255")]));
    let s = space(&["198.18.0.250-"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.250", "198.18.0.255")]));
    let s = space(&["198.18.0.-3"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.0", "198.18.0.3")]));
}

#[test]
fn octet_ranges_with_too_many_pieces_are_refused() {
    let e = err(&["1-255.1-255.1-255.1"]);
    assert!(matches!(e.kind(), TargetErrorKind::TooManyPieces));
    assert_eq!(
        e.to_string(),
        r#"invalid target "1-255.1-255.1-255.1": expands to too many separate ranges"#
    );
    // Full trailing octets stay one piece per prefix.
    assert_eq!(
        space(&["1-255.1-255.*.*"]).unwrap().host_count(),
        255 * 255 * 65536
    );
}

#[test]
fn invalid_targets_name_the_token() {
    assert_eq!(
        err(&["198.18.0.300"]).to_string(),
        r#"invalid target "198.18.0.300""#
    );
    for t in [
        "198.18.0",
        "1.2.3.4.5",
        "198.18.0.01",
        "-",
        "198.18.0.1-300",
        "::g",
        "1::2::3",
        "a..b",
        "-host",
        "host-",
        "198.18.0.1,,2",
        "198.18.0.1-2-3",
        "[::1",
        "@",
        "ü.de",
        "198.18.0.1--5",
        "256.0.0.1",
        ":",
        "*",
    ] {
        let e = err(&[t]);
        assert!(
            matches!(
                e.kind(),
                TargetErrorKind::InvalidTarget | TargetErrorKind::ReversedRange
            ),
            "{t}: {e}"
        );
        assert_eq!(e.token(), t);
    }
}

#[test]
fn hostnames_resolve_once_to_one_address() {
    let s = space(&["v4.test", "v6.test"]).unwrap();
    assert_eq!(s.host(0), Some(ip("198.18.2.7")));
    assert_eq!(s.host(1), Some(ip("2001:db8::7")));

    let mut calls = 0;
    let targets = strings(&["v4.test", "v4.test", "v4.test/30"]);
    let mut names = Names::new(true, |n: &str| {
        calls += 1;
        fake_lookup(n)
    });
    let s = build_with(&args(&targets), &mut names).unwrap();
    drop(names);
    assert_eq!(calls, 1);
    assert_eq!(intervals(&s), iv(&[("198.18.2.4", "198.18.2.7")]));
}

#[test]
fn hostname_cidr_blocks() {
    let s = space(&["v6.test/126"]).unwrap();
    assert_eq!(intervals(&s), iv(&[("2001:db8::4", "2001:db8::7")]));
    let e = err(&["v4.test/33"]);
    assert_eq!(
        e.to_string(),
        r#"invalid CIDR "v4.test/33": prefix length must be 0-32"#
    );
    // A bad prefix is reported without a lookup.
    let targets = strings(&["v4.test/x"]);
    let mut names = Names::new(true, |_: &str| -> Result<Vec<IpAddr>, Option<io::Error>> {
        panic!("looked up")
    });
    let e = build_with(&args(&targets), &mut names).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::InvalidCidr { .. }));
}

#[test]
fn hostname_resolution_prefers_ipv4() {
    let v6 = ip("::1");
    let (a, b) = (ip("198.18.0.1"), ip("198.18.0.2"));
    assert_eq!(addr::pick(&[v6, a, b], true), [a]);
    assert_eq!(addr::pick(&[v6, a, b], false), [a, b]);
    assert_eq!(addr::pick(&[v6, ip("::2")], true), [v6]);
    assert_eq!(addr::pick(&[v6, ip("::2")], false), [v6, ip("::2")]);
    assert!(addr::pick(&[], false).is_empty());
}

/// Built from `targets` and `exclude` with the fake resolver, names kept.
fn named(targets: &[&str], exclude: &[&str], first_only: bool) -> Result<Built, TargetError> {
    let (targets, exclude) = (strings(targets), strings(exclude));
    let a = TargetArgs {
        exclude: &exclude,
        first_address_only: first_only,
        ..args(&targets)
    };
    build_names(
        &a,
        &mut Names::new(true, fake_lookup).first_only(first_only),
    )
}

/// A name with several addresses was scanned at its first only, silently,
/// and `--exclude NAME` dropped only the first.
#[test]
fn a_name_with_several_addresses_is_scanned_at_every_one() {
    let b = named(&["multi.test"], &[], false).unwrap();
    assert_eq!(
        intervals(&b.space),
        iv(&[("198.18.0.2", "198.18.0.2"), ("198.18.0.9", "198.18.0.9")])
    );
    assert_eq!(b.names.get(ip("198.18.0.2")), Some("multi.test"));
    assert_eq!(b.names.get(ip("198.18.0.9")), Some("multi.test"));
    // --resolve-first: nmap's default, the first address only.
    let b = named(&["multi.test"], &[], true).unwrap();
    assert_eq!(intervals(&b.space), iv(&[("198.18.0.9", "198.18.0.9")]));
    // --exclude NAME drops every address it stands for.
    let b = named(&["198.18.0.0/28"], &["multi.test"], false).unwrap();
    assert_eq!(b.space.host_count(), 14);
    assert!(b.names.is_empty(), "an exclude names no target");
}

#[test]
fn unresolvable_hostnames_are_reported_and_skipped() {
    let b = named(
        &["198.18.0.1", "foo.invalid", "v4.test", "foo.invalid"],
        &[],
        false,
    )
    .unwrap();
    assert_eq!(b.space.host_count(), 2);
    assert_eq!(b.unresolved.len(), 1, "each name once");
    assert!(matches!(
        b.unresolved[0].kind(),
        TargetErrorKind::Unresolvable(None)
    ));
    assert_eq!(
        b.unresolved[0].to_string(),
        r#"cannot resolve hostname "foo.invalid""#
    );
    assert_eq!(b.names.get(ip("198.18.2.7")), Some("v4.test"));
    assert_eq!(b.names.get(ip("198.18.0.1")), None);
    // Nothing left to scan: the error is the name's.
    let e = named(&["foo.invalid", "bar.invalid"], &[], false).unwrap_err();
    assert_eq!(e.to_string(), r#"cannot resolve hostname "foo.invalid""#);
    // An unresolvable exclude excludes nothing, and is reported.
    let b = named(&["198.18.0.1"], &["foo.invalid"], false).unwrap();
    assert_eq!((b.space.host_count(), b.unresolved.len()), (1, 1));
    // A name as a CIDR base is skipped the same way.
    let b = named(&["198.18.0.1", "foo.invalid/30"], &[], false).unwrap();
    assert_eq!((b.space.host_count(), b.unresolved.len()), (1, 1));
}

#[test]
fn unresolvable_names_in_a_list_file_are_skipped() {
    let dir = crate::test_util::TempDir::new("targets", "names");
    let list = dir.join("targets.txt");
    std::fs::write(&list, "v4.test\nfoo.invalid # gone\n198.18.0.1\n").unwrap();
    let a = TargetArgs {
        input_list: Some(&list),
        ..TargetArgs::default()
    };
    let b = build_names(&a, &mut Names::new(true, fake_lookup)).unwrap();
    assert_eq!(b.space.host_count(), 2);
    assert_eq!(b.unresolved.len(), 1);
    assert_eq!(b.names.get(ip("198.18.2.7")), Some("v4.test"));
}

#[test]
fn hostnames_are_refused_with_no_resolve() {
    let targets = strings(&["v4.test"]);
    let a = TargetArgs {
        resolve: false,
        ..args(&targets)
    };
    let e = build(&a).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::HostnameNotAllowed));
    assert_eq!(
        e.to_string(),
        r#"cannot use hostname "v4.test" with --no-resolve"#
    );
    // Literals need no resolver.
    let targets = strings(&["198.18.0.1", "::1", "198.18.0.0/30"]);
    let a = TargetArgs {
        resolve: false,
        ..args(&targets)
    };
    assert_eq!(build(&a).unwrap().host_count(), 5);
}

#[test]
fn system_resolver_knows_localhost() {
    let targets = strings(&["localhost"]);
    let s = build(&args(&targets)).unwrap();
    assert!(s.host(0).unwrap().is_loopback());
}

#[test]
fn system_resolver_fails_on_invalid_tld() {
    // Alone, the name leaves nothing to scan: its error is the scan's.
    let targets = strings(&["no-such-host.invalid"]);
    let e = build(&args(&targets)).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::Unresolvable(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with(r#"cannot resolve hostname "no-such-host.invalid""#),
        "{e}"
    );
}

// ---- Merging and excludes ----

#[test]
fn duplicates_and_overlaps_are_scanned_once() {
    let s = space(&[
        "198.18.0.1",
        "198.18.0.1",
        "198.18.0.0/30",
        "198.18.0.2-5",
        "198.18.0.6",
    ])
    .unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.0", "198.18.0.6")]));
    assert_eq!(s.host_count(), 7);
}

#[test]
fn excludes_cut_holes() {
    let s = space_ex(
        &["198.18.0.0/24"],
        &["198.18.0.0,198.18.0.10-19", "198.18.0.128/25"],
    )
    .unwrap();
    assert_eq!(
        intervals(&s),
        iv(&[
            ("198.18.0.1", "198.18.0.9"),
            ("198.18.0.20", "198.18.0.127")
        ])
    );
    let s = space_ex(&["198.18.0.1", "::1-::3"], &["::2 v4.test"]).unwrap();
    assert_eq!(
        intervals(&s),
        iv(&[("198.18.0.1", "198.18.0.1"), ("::1", "::1"), ("::3", "::3")])
    );
}

#[test]
fn exclude_errors_name_the_flag() {
    let e = space_ex(&["198.18.0.1"], &["198.18.0.1,x$"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid target "x$" in "--exclude 198.18.0.1,x$""#
    );
    let e = space_ex(&["198.18.0.1"], &["198.18.0.0/40"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid CIDR "198.18.0.0/40" in "--exclude 198.18.0.0/40": prefix length must be 0-32"#
    );
}

#[test]
fn excluding_everything_is_nothing_to_scan() {
    let e = space_ex(&["0.0.0.0/0"], &["0.0.0.0/0"]).unwrap_err();
    assert!(matches!(
        e.kind(),
        TargetErrorKind::NothingToScan { all_excluded: true }
    ));
    assert_eq!(
        e.to_string(),
        "nothing to scan: every target address is excluded"
    );
    let e = space_ex(&["198.18.0.1-5"], &["198.18.0.0-2", "198.18.0.3-10"]).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::NothingToScan { .. }));
}

#[test]
fn exclude_file_is_read() {
    let file = TempFile::new(
        "exclude",
        b"# keep .1\n198.18.0.2-254\n198.18.0.0 198.18.0.255\n",
    );
    let targets = strings(&["198.18.0.0/24"]);
    let a = TargetArgs {
        exclude_file: Some(&file.0),
        ..args(&targets)
    };
    let s = build_with(&a, &mut Names::new(true, fake_lookup)).unwrap();
    assert_eq!(intervals(&s), iv(&[("198.18.0.1", "198.18.0.1")]));
}

// ---- -iL ----

#[test]
fn input_list_tokens_comments_and_blank_lines() {
    let s = from_list(
        "# header\n\n198.18.0.1 198.18.0.2\t198.18.0.3 # trailing\r\n  198.18.0.4\r\n#198.18.0.5\n::1\n198.18.0.6",
    )
    .unwrap();
    assert_eq!(
        intervals(&s),
        iv(&[
            ("198.18.0.1", "198.18.0.4"),
            ("198.18.0.6", "198.18.0.6"),
            ("::1", "::1")
        ])
    );
}

#[test]
fn input_list_is_added_to_operands() {
    let file = TempFile::new("extra", b"198.18.0.2\n");
    let targets = strings(&["198.18.0.1"]);
    let a = TargetArgs {
        input_list: Some(&file.0),
        ..args(&targets)
    };
    assert_eq!(build(&a).unwrap().host_count(), 2);
}

#[test]
fn input_list_errors_carry_the_line_number() {
    let file = TempFile::new("bad", b"198.18.0.1\n# c\n198.18.0.2 198.18.0.300\n");
    let a = list_args(&file);
    let e = build(&a).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(
        e.to_string(),
        format!(
            r#"invalid target "198.18.0.300" on line 3 of -iL file "{}""#,
            file.0.display()
        )
    );
}

#[test]
fn missing_input_list_is_a_read_error() {
    let path = Path::new("/nonexistent-fastport-dir/x.txt");
    let a = TargetArgs {
        input_list: Some(path),
        ..TargetArgs::default()
    };
    let e = build(&a).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::Read(_)));
    assert_eq!(
        e.to_string(),
        r#"cannot read -iL file "/nonexistent-fastport-dir/x.txt": No such file or directory"#
    );
    let a = TargetArgs {
        exclude_file: Some(path),
        ..TargetArgs::default()
    };
    assert!(
        build(&a)
            .unwrap_err()
            .to_string()
            .starts_with("cannot read --exclude-file file")
    );
}

#[test]
fn empty_input_list_is_nothing_to_scan() {
    let e = from_list("# nothing\n\n").unwrap_err();
    assert!(matches!(
        e.kind(),
        TargetErrorKind::NothingToScan {
            all_excluded: false
        }
    ));
    assert_eq!(e.to_string(), "nothing to scan: no target addresses given");
}

#[test]
fn input_list_rejects_binary_and_overlong_tokens() {
    let file = TempFile::new("binary", b"198.18.0.1\n\xff\xfe\n");
    let a = list_args(&file);
    let e = build(&a).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::InvalidTarget));
    assert_eq!(e.line(), Some(2));

    let long = "a".repeat(100_000);
    let e = from_list(&format!("198.18.0.1\n{long}\n")).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::InvalidTarget));
    assert_eq!(e.token(), format!("{}...", &long[..64]));
}

/// Generates the lines `240.0.0.0` to `240.15.255.255` on demand: a list that
/// never exists in memory.
struct GeneratedList {
    next: u32,
    end: u32,
    pending: Vec<u8>,
    served: usize,
}

impl Read for GeneratedList {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.len() < buf.len() && self.next < self.end {
            let a = 0xf000_0000 + self.next;
            writeln!(self.pending, "{}", Ipv4Addr::from(a))?;
            self.next += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.served += n;
        Ok(n)
    }
}

#[test]
fn input_list_streams_a_million_generated_lines() {
    let lines = 1 << 20;
    let mut source = GeneratedList {
        next: 0,
        end: lines,
        pending: Vec::new(),
        served: 0,
    };
    let mut names = Names::new(false, fake_lookup);
    let mut set = AddrSet::default();
    let mut max_buffered = 0;
    let reader = io::BufReader::with_capacity(8192, &mut source);
    addr::for_each_token(reader, "-iL", Path::new("gen"), |token| {
        addr::add_target(token, &mut names, &mut set)?;
        max_buffered = max_buffered.max(set.v4.buffered());
        Ok(())
    })
    .unwrap();
    assert!(
        source.next == lines && source.pending.is_empty(),
        "all lines were read"
    );
    assert!(source.served > 9 * lines as usize);
    let spans = set.v4.into_spans();
    assert_eq!(spans.len(), 1, "240.0.0.0/12 merges into one interval");
    assert_eq!(set::count(&spans), Some(1 << 20));
    // Memory follows the merged intervals, not the lines read.
    assert!(max_buffered <= 4096, "{max_buffered}");
}

#[test]
fn input_list_of_a_million_lines_from_a_file() {
    let mut text = Vec::with_capacity(16 << 20);
    for i in 0..1_000_000u32 {
        // Every third address, so the result keeps many intervals.
        let a = Ipv4Addr::from(0xf000_0000 + i * 3);
        writeln!(text, "{a}").unwrap();
    }
    let file = TempFile::new("million", &text);
    drop(text);
    let a = TargetArgs {
        resolve: false,
        ..list_args(&file)
    };
    let s = build(&a).unwrap();
    assert_eq!(s.host_count(), 1_000_000);
    assert_eq!(s.interval_count(), 1_000_000);
    assert_eq!(
        s.host(999_999),
        Some(IpAddr::V4(Ipv4Addr::from(0xf000_0000 + 2_999_997)))
    );
}

// ---- Ports through build ----

#[test]
fn ports_flags_reach_the_space() {
    assert_eq!(
        with_ports(&["198.18.0.1"], "443,22").unwrap().ports(),
        [22, 443]
    );
    let targets = strings(&["198.18.0.1"]);
    let a = TargetArgs {
        top_ports: Some(2),
        exclude_ports: Some("23"),
        ..args(&targets)
    };
    assert_eq!(build(&a).unwrap().ports(), [80, 443]);
    assert_eq!(with_ports(&["198.18.0.1"], "-").unwrap().len(), 65535);
    let a = TargetArgs {
        ports: Some("22"),
        top_ports: Some(10),
        ..args(&targets)
    };
    assert!(matches!(
        build(&a).unwrap_err().kind(),
        TargetErrorKind::PortsAndTopPorts
    ));
}

// ---- Counting ----

#[test]
fn whole_ipv4_space_times_all_ports_fits_u64() {
    let s = with_ports(&["0.0.0.0/0"], "-").unwrap();
    let len = (1u64 << 32) * 65535;
    assert_eq!(s.host_count(), 1 << 32);
    assert_eq!(s.len(), len);
    assert_eq!(
        s.get(len - 1),
        Some("255.255.255.255:65535".parse().unwrap())
    );
    assert_eq!(
        s.get(len - 65535),
        Some("255.255.255.255:1".parse().unwrap())
    );
    assert_eq!(s.get(65535), Some("0.0.0.1:1".parse().unwrap()));
    assert_eq!(s.get(len), None);
    assert_eq!(s.host((1 << 32) - 1), Some(ip("255.255.255.255")));
    assert_eq!(s.host_index(ip("255.255.255.255")), Some((1 << 32) - 1));
    let last: Vec<SocketAddr> = s.cursor(len - 2, 1).collect();
    assert_eq!(last.len(), 2);
}

#[test]
fn ipv4_and_ipv6_counts_add_up() {
    let s = space(&["0.0.0.0/0", "::/96"]).unwrap();
    assert_eq!(s.host_count(), 1 << 33);
    assert_eq!(s.host(1 << 32), Some(ip("::")));
    assert_eq!(s.host_index(ip("::ffff:ffff")), Some((1 << 33) - 1));
}

#[test]
fn spaces_beyond_u64_are_errors_not_wraps() {
    let e = err(&["2001:db8::/32"]);
    assert!(matches!(
        e.kind(),
        TargetErrorKind::TooLarge {
            hosts: Some(h),
            ports: 1024,
            segmented: false,
        } if *h == 1 << 96
    ));
    assert_eq!(
        e.to_string(),
        "scan too large: 79228162514264337593543950336 addresses x 1024 ports is more than 2^64 probes"
    );
    assert!(matches!(
        err(&["::/0"]).kind(),
        TargetErrorKind::TooLarge { hosts: None, .. }
    ));
    assert!(
        err(&["::/0"])
            .to_string()
            .starts_with("scan too large: at least 2^128 addresses")
    );

    let only = |t: &str, p: &str| with_ports(&[t], p);
    assert!(only("::/64", "80").is_err(), "2^64 probes");
    assert_eq!(only("::/65", "80").unwrap().len(), 1 << 63);
    assert!(only("::/65", "80,443").is_err(), "2^64 probes");
    assert_eq!(
        only("::/65", "80").unwrap().host(u64::MAX >> 1),
        Some(ip("::7fff:ffff:ffff:ffff"))
    );
    assert!(only("::/72 ::1:0:0:0:0/72", "-").is_err());
}

// ---- Indexing ----

#[test]
fn index_order_is_host_major_ipv4_first() {
    let s = TargetSpace::new(
        [ip("::1")..=ip("::1"), ip("198.18.0.1")..=ip("198.18.0.2")],
        &[443, 80, 80],
    )
    .unwrap();
    let all: Vec<String> = s.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        all,
        [
            "198.18.0.1:80",
            "198.18.0.1:443",
            "198.18.0.2:80",
            "198.18.0.2:443",
            "[::1]:80",
            "[::1]:443"
        ]
    );
    assert_eq!(s.get(6), None);
    assert_eq!(s.host(3), None);
    assert_eq!(s.index_of("[::1]:443".parse().unwrap()), Some(5));
    assert_eq!(s.index_of("[::1]:22".parse().unwrap()), None);
}

#[test]
fn host_index_of_non_members_is_none() {
    let s = space(&["198.18.0.10-20", "198.18.0.30", "::5"]).unwrap();
    for a in [
        "198.18.0.9",
        "198.18.0.21",
        "198.18.0.29",
        "198.18.0.31",
        "0.0.0.0",
        "::4",
        "::6",
        "::a00:a",
    ] {
        assert_eq!(s.host_index(ip(a)), None, "{a}");
    }
    assert_eq!(s.host_index(ip("198.18.0.30")), Some(11));
    assert_eq!(s.host_index(ip("::5")), Some(12));
}

#[test]
fn new_rejects_bad_ranges() {
    let e = TargetSpace::new([ip("198.18.0.2")..=ip("198.18.0.1")], &[80]).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::ReversedRange));
    assert_eq!(e.token(), "198.18.0.2-198.18.0.1");
    let e = TargetSpace::new([ip("198.18.0.2")..=ip("::1")], &[80]).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::MixedFamilies));
    let e = TargetSpace::new([ip("198.18.0.1")..=ip("198.18.0.1")], &[0]).unwrap_err();
    assert!(matches!(e.kind(), TargetErrorKind::NoPorts));
}

#[test]
fn cursor_strides_match_get() {
    let s = space(&["198.18.0.1-3", "198.18.0.9", "198.19.0.0/30", "::1-::2"]).unwrap();
    let s = TargetSpace::new(s.intervals().map(|(a, b)| a..=b), &[1, 2, 3]).unwrap();
    for start in [0, 1, 2, 5, 29, 30, 31, 100] {
        for step in [1, 2, 3, 4, 7, 12, 29, 1000, u64::MAX] {
            let got: Vec<SocketAddr> = s.cursor(start, step).collect();
            let want: Vec<SocketAddr> = (start..s.len())
                .step_by(usize::try_from(step).unwrap_or(usize::MAX))
                .map(|i| s.get(i).unwrap())
                .collect();
            assert_eq!(got, want, "start {start} step {step}");
            assert_eq!(s.cursor(start, step).size_hint().0, want.len());
        }
    }
}

#[test]
fn cursor_reports_its_position() {
    let s = space(&["198.18.0.1-3"]).unwrap();
    let mut c = s.cursor(5, 10_000);
    assert_eq!(c.position(), Some(5));
    assert!(c.next().is_some());
    assert_eq!(c.position(), None);
    assert_eq!(c.next(), None);
    assert_eq!(s.cursor(s.len(), 1).next(), None);
}

#[test]
#[should_panic(expected = "step must be positive")]
fn cursor_step_zero_panics() {
    let s = space(&["198.18.0.1"]).unwrap();
    let _ = s.cursor(0, 0);
}

// ---- Properties ----

/// Small random spans around 198.18.0.0 and ::, and a few ports.
/// IPv4 spans, IPv6 spans and ports of a small space.
type SmallSpace = (Vec<(u32, u32)>, Vec<(u128, u128)>, Vec<u16>);

fn arb_space() -> impl Strategy<Value = SmallSpace> {
    let v4 = prop::collection::vec((0u32..64, 0u32..8), 0..5);
    let v6 = prop::collection::vec((0u128..64, 0u128..8), 0..4);
    let ports = prop::collection::vec(1u16..=8, 1..4);
    (v4, v6, ports)
        .prop_filter("at least one address", |(a, b, _)| {
            !a.is_empty() || !b.is_empty()
        })
        .prop_map(|(a, b, p)| {
            let a = a
                .into_iter()
                .map(|(x, l)| (0xf000_0000 + x, 0xf000_0000 + x + l))
                .collect();
            let b = b.into_iter().map(|(x, l)| (x, x + l)).collect();
            (a, b, p)
        })
}

proptest! {
    #[test]
    fn get_visits_every_probe_once_in_order((v4, v6, ports) in arb_space()) {
        let ranges = v4.iter().map(|&(a, b)| IpAddr::V4(a.into())..=IpAddr::V4(b.into()))
            .chain(v6.iter().map(|&(a, b)| IpAddr::V6(a.into())..=IpAddr::V6(b.into())));
        let s = TargetSpace::new(ranges, &ports).unwrap();

        let hosts4: BTreeSet<u32> = v4.iter().flat_map(|&(a, b)| a..=b).collect();
        let hosts6: BTreeSet<u128> = v6.iter().flat_map(|&(a, b)| a..=b).collect();
        let ports: BTreeSet<u16> = ports.into_iter().collect();
        let hosts: Vec<IpAddr> = hosts4.iter().map(|&a| IpAddr::V4(a.into()))
            .chain(hosts6.iter().map(|&a| IpAddr::V6(a.into()))).collect();
        let naive: Vec<SocketAddr> = hosts.iter()
            .flat_map(|&h| ports.iter().map(move |&p| SocketAddr::new(h, p))).collect();

        prop_assert_eq!(s.len(), naive.len() as u64);
        prop_assert_eq!(s.host_count(), hosts.len() as u64);
        let got: Vec<SocketAddr> = (0..s.len()).map(|i| s.get(i).unwrap()).collect();
        prop_assert_eq!(&got, &naive);
        prop_assert_eq!(s.get(s.len()), None);
        prop_assert_eq!(s.iter().collect::<Vec<_>>(), naive.clone());
        for (i, &h) in hosts.iter().enumerate() {
            prop_assert_eq!(s.host(i as u64), Some(h));
            prop_assert_eq!(s.host_index(h), Some(i as u64));
        }
        for (i, &a) in naive.iter().enumerate() {
            prop_assert_eq!(s.index_of(a), Some(i as u64));
        }
    }

    #[test]
    fn cursors_partition_the_space((v4, v6, ports) in arb_space(), workers in 1u64..6) {
        let ranges = v4.iter().map(|&(a, b)| IpAddr::V4(a.into())..=IpAddr::V4(b.into()))
            .chain(v6.iter().map(|&(a, b)| IpAddr::V6(a.into())..=IpAddr::V6(b.into())));
        let s = TargetSpace::new(ranges, &ports).unwrap();
        let mut seen = BTreeSet::new();
        for k in 0..workers {
            for (j, a) in s.cursor(k, workers).enumerate() {
                prop_assert_eq!(Some(a), s.get(k + j as u64 * workers));
                prop_assert!(seen.insert(a), "visited twice: {}", a);
            }
        }
        prop_assert_eq!(seen.len() as u64, s.len());
    }

    #[test]
    fn excluding_is_naive_set_difference(
        include in prop::collection::vec((0u32..300, 0u32..40), 1..6),
        exclude in prop::collection::vec((0u32..300, 0u32..40), 0..6),
    ) {
        let spec = |&(a, l): &(u32, u32)| {
            let first = Ipv4Addr::from(0xf000_0000 + a);
            let last = Ipv4Addr::from(0xf000_0000 + a + l);
            format!("{first}-{last}")
        };
        let inc: Vec<String> = include.iter().map(spec).collect();
        let exc: Vec<String> = exclude.iter().map(spec).collect();
        let naive: BTreeSet<u32> = include.iter().flat_map(|&(a, l)| a..=a + l)
            .filter(|x| !exclude.iter().any(|&(a, l)| (a..=a + l).contains(x)))
            .collect();
        let exc_joined = [exc.join(",")];
        let a = TargetArgs {
            targets: &inc,
            exclude: if exc.is_empty() { &[] } else { &exc_joined },
            ..TargetArgs::default()
        };
        match build_with(&a, &mut Names::new(false, fake_lookup)) {
            Ok(s) => {
                let got: BTreeSet<u32> = (0..s.host_count())
                    .map(|i| match s.host(i) {
                        Some(IpAddr::V4(a)) => u32::from(a) - 0xf000_0000,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                prop_assert_eq!(got, naive);
            }
            Err(e) => {
                prop_assert!(naive.is_empty());
                let all_excluded = matches!(e.kind(), TargetErrorKind::NothingToScan { all_excluded: true });
                prop_assert!(all_excluded, "{}", e);
            }
        }
    }

    #[test]
    fn target_parser_never_panics(token in "\\PC{0,30}") {
        let mut set = AddrSet::default();
        let _ = addr::add_target(&token, &mut Names::new(true, fake_lookup), &mut set);
    }

    #[test]
    fn target_parser_never_panics_on_address_alphabet(token in "[0-9a-f.:,*/\\[\\]-]{0,24}") {
        let mut set = AddrSet::default();
        let mut names = Names::new(true, fake_lookup);
        if addr::add_target(&token, &mut names, &mut set).is_ok() {
            // Every target adds addresses, or is a name reported as unresolved.
            prop_assert!(!set.is_empty() || !names.unresolved.is_empty());
        }
    }

    #[test]
    fn list_tokenizer_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut set = AddrSet::default();
        let mut names = Names::new(true, fake_lookup);
        let _ = addr::for_each_token(&bytes[..], "-iL", Path::new("p"), |t| {
            addr::add_target(t, &mut names, &mut set)
        });
    }
}

/// Every token of `text` read through a buffer of `capacity` bytes, and the
/// error that stopped the reading (its message), if any.
fn list_tokens(text: &[u8], capacity: usize) -> (Vec<String>, Option<String>) {
    let mut tokens = Vec::new();
    let reader = io::BufReader::with_capacity(capacity, text);
    let end = for_each_list_token(reader, "-iL", Path::new("list"), |t| {
        tokens.push(t.to_string());
        Ok(())
    });
    (tokens, end.err().map(|e| e.to_string()))
}

proptest! {
    #[test]
    fn list_tokens_do_not_depend_on_where_reads_split(
        // Tokens, comments, every kind of whitespace, bytes that are not
        // UTF-8, and now and then a token longer than the limit.
        parts in prop::collection::vec(prop_oneof![
            "[0-9a-f.:/-]{1,12}",
            "#[^\n]{0,8}\n",
            "[ \t\r\n]{1,3}",
            Just("\u{e9}".to_string()),
            "x{1020,1030}",
        ], 0..40),
        junk in prop::option::of(0usize..400),
        capacity in 1usize..20,
    ) {
        let mut text: Vec<u8> = parts.concat().into_bytes();
        if let Some(at) = junk {
            text.insert(at.min(text.len()), 0xff);
        }
        prop_assert_eq!(list_tokens(&text, capacity), list_tokens(&text, 1 << 16));
    }
}

#[test]
fn a_zone_id_got_a_bare_invalid_target() {
    assert_eq!(
        err(&["fe80::1%lo"]).to_string(),
        r#"invalid target "fe80::1%lo": IPv6 zone (scope) IDs such as %eth0 are not supported; give the address without it"#
    );
}

#[test]
fn hex_addresses_went_through_the_resolver_while_octal_was_refused() {
    for t in ["0x7f.0.0.1", "0x7f000001", "0X7F.1", "127.0.0.0x1"] {
        assert!(
            err(&[t])
                .to_string()
                .contains("write IPv4 addresses in dotted decimal"),
            "{t}"
        );
    }
    // Names with hex-looking labels are still names.
    assert!(
        !err(&["0xdead.example"])
            .to_string()
            .contains("dotted decimal")
    );
}

#[test]
fn a_list_of_zeros_was_read_for_ever() {
    let (tokens, end) = list_tokens(b"127.0.0.1\n\0\0\0", 4);
    assert_eq!(tokens, ["127.0.0.1"]);
    assert_eq!(
        end.as_deref(),
        Some(
            r#"not a list of targets on line 2 of -iL file "list": it holds binary data (a NUL byte)"#
        )
    );
    // An endless line with no NUL stops at the first token too long.
    let long = vec![b'a'; 10_000];
    let (tokens, end) = list_tokens(&long, 64);
    assert!(tokens.is_empty());
    assert!(end.unwrap().starts_with("invalid target"));
}
