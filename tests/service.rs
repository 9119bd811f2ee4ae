//! Service detection against nmap's own probe file: its patterns compile, and given that
//! file FastPort names what nmap names on the same banners.
//!
//! The file is the copy Debian's `nmap` package installs (scripts/test installs the
//! package). It is read here, never shipped. Without it these tests say so and pass.
//!
//! The expected names were recorded by running nmap 7.93 (`nmap -sV --version-intensity 9`)
//! against listeners that served exactly these bytes, in a private network namespace.

use std::sync::OnceLock;

use fastport::service::Matcher;
use fastport::service::probes::{self, Protocol};

const NMAP: &str = "/usr/share/nmap/nmap-service-probes";

/// nmap's file, compiled once for all the tests here.
fn nmap() -> Option<&'static Matcher> {
    static NMAP_MATCHER: OnceLock<Option<Matcher>> = OnceLock::new();
    let m = NMAP_MATCHER.get_or_init(|| match std::fs::read(NMAP) {
        Ok(text) => Some(Matcher::new(
            probes::parse(&text).expect("nmap's file parses"),
        )),
        Err(_) => None,
    });
    if m.is_none() {
        eprintln!("skipped: {NMAP} is absent (scripts/test installs Debian's nmap package)");
    }
    m.as_ref()
}

#[test]
fn nmap_probe_file_patterns_compile() {
    let Some(m) = nmap() else { return };
    let total = m.compiled_rules() + m.skipped().len();
    assert!(total > 10_000, "{total} patterns: not a full-size file?");
    // At least 99.9 % (PCRE2 compiles them all today).
    assert!(
        m.skipped().len() * 1000 <= total,
        "{} of {total} patterns refused: {:?}",
        m.skipped().len(),
        &m.skipped()[..m.skipped().len().min(5)]
    );
}

/// (probe nmap answered with, banner, service, product, version, extrainfo), as nmap named it.
type Case = (
    &'static str,
    &'static [u8],
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

const CASES: &[Case] = &[
    // GROUND_TRUTH
];

#[test]
fn fastport_names_what_nmap_names_with_nmaps_file() {
    let Some(m) = nmap() else { return };
    for &(probe, banner, service, product, version, info) in CASES {
        let p = m
            .probe_index(Protocol::Tcp, probe)
            .expect("probe in nmap's file");
        let hit = m
            .match_response(p, banner, None)
            .unwrap_or_else(|| panic!("no match for {}", String::from_utf8_lossy(banner)));
        assert_eq!(
            (
                hit.service.as_str(),
                hit.product.as_deref(),
                hit.version.as_deref(),
                hit.info.as_deref()
            ),
            (service, product, version, info),
            "{}",
            String::from_utf8_lossy(banner)
        );
    }
}

#[test]
fn nmap_file_parses_every_directive() {
    let Some(m) = nmap() else { return };
    let probes = m.probes();
    let null = &probes[m.probe_index(Protocol::Tcp, "NULL").unwrap()];
    assert!(
        null.payload.is_empty() && null.total_wait_ms.is_some() && null.tcpwrapped_ms.is_some()
    );
    let get = &probes[m.probe_index(Protocol::Tcp, "GetRequest").unwrap()];
    assert_eq!(get.payload, b"GET / HTTP/1.0\r\n\r\n");
    assert!(get.ports.contains(80) && get.sslports.contains(443) && get.rarity == 1);
    assert!(probes.iter().any(|p| !p.fallback.is_empty()));
    assert!(probes.iter().any(|p| !p.sslports.is_empty()));
    assert!(probes.iter().any(|p| p.protocol == Protocol::Udp));
    assert!(m.file().exclude.is_some());
    assert!(probes.iter().flat_map(|p| &p.matches).any(|r| r.soft));
    assert!(
        probes
            .iter()
            .flat_map(|p| &p.matches)
            .any(|r| !r.templates.cpe.is_empty())
    );
}
