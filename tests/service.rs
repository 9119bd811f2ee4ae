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
    eprintln!(
        "{total} patterns, {} refused; literal prefix of >= 1 byte: {}, >= 2 bytes: {}",
        m.skipped().len(),
        m.prefixed_rules(1),
        m.prefixed_rules(2)
    );
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
    (
        "NULL",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        "ssh",
        Some("OpenSSH"),
        Some("9.2p1 Debian 2+deb12u3"),
        Some("protocol 2.0"),
    ),
    (
        "NULL",
        b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n",
        "ssh",
        Some("OpenSSH"),
        Some("8.9p1 Ubuntu 3ubuntu0.6"),
        Some("Ubuntu Linux; protocol 2.0"),
    ),
    (
        "NULL",
        b"SSH-2.0-dropbear_2022.83\r\n",
        "ssh",
        Some("Dropbear sshd"),
        Some("2022.83"),
        Some("protocol 2.0"),
    ),
    (
        "NULL",
        b"220 (vsFTPd 3.0.3)\r\n",
        "ftp",
        Some("vsftpd"),
        Some("3.0.3"),
        None,
    ),
    (
        "NULL",
        b"220 ProFTPD Server (Debian) [::ffff:127.0.0.1]\r\n",
        "ftp",
        None,
        None,
        None,
    ),
    (
        "NULL",
        b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n",
        "smtp",
        Some("Postfix smtpd"),
        None,
        None,
    ),
    (
        "NULL",
        b"220 mail.example.org ESMTP Exim 4.96 Tue, 01 Dec 2026 10:00:00 +0000\r\n",
        "smtp",
        Some("Exim smtpd"),
        Some("4.96"),
        None,
    ),
    (
        "NULL",
        b"+OK Dovecot (Debian) ready.\r\n",
        "pop3",
        None,
        None,
        None,
    ),
    (
        "NULL",
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n",
        "imap",
        None,
        None,
        None,
    ),
    (
        "NULL",
        b"J\0\0\0\n8.0.36\0\x08\0\0\0abcdefgh\0\xff\xff\xff\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0ijklmnopqrst\0caching_sha2_password\0",
        "mysql",
        Some("MySQL"),
        Some("8.0.36"),
        None,
    ),
    (
        "NULL",
        b"Y\0\0\0\n5.5.5-10.11.6-MariaDB-0+deb12u1\0\x05\0\0\0abcdefgh\0\xfe\xf7-\x02\0\xff\x81\x15\0\0\0\0\0\0\x1d\0\0\0ijklmnopqrst\0mysql_native_password\0",
        "mysql",
        Some("MySQL"),
        Some("5.5.5-10.11.6-MariaDB-0+deb12u1"),
        None,
    ),
    (
        "NULL",
        b"RFB 003.008\n",
        "vnc",
        Some("VNC"),
        None,
        Some("protocol 3.8"),
    ),
    (
        "GetRequest",
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "http",
        Some("nginx"),
        Some("1.22.1"),
        None,
    ),
    (
        "GetRequest",
        b"HTTP/1.1 404 Not Found\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nServer: Apache/2.4.62 (Debian)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "http",
        Some("Apache httpd"),
        Some("2.4.62"),
        Some("(Debian)"),
    ),
    (
        "GetRequest",
        b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-type: text/html\r\n\r\n",
        "http",
        Some("SimpleHTTPServer"),
        Some("0.6"),
        Some("Python 3.11.2"),
    ),
    (
        "redis-server",
        b"$3000\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:1\r\nredis_mode:standalone\r\nos:Linux 6.1.0 x86_64\r\narch_bits:64\r\n",
        "redis",
        Some("Redis key-value store"),
        Some("7.0.15"),
        None,
    ),
    (
        "NULL",
        b"SSH-2.0-libssh_0.10.6\r\n",
        "ssh",
        Some("libssh"),
        Some("0.10.6"),
        Some("protocol 2.0"),
    ),
    (
        "NULL",
        b"220 Microsoft FTP Service\r\n",
        "ftp",
        Some("Microsoft ftpd"),
        None,
        None,
    ),
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
    // nmap's file keeps printers' raw ports out of version detection.
    assert!(m.is_excluded(9100) && !m.is_excluded(80));
    assert!(probes.iter().flat_map(|p| &p.matches).any(|r| r.soft));
    assert!(
        probes
            .iter()
            .flat_map(|p| &p.matches)
            .any(|r| !r.templates.cpe.is_empty())
    );
}
