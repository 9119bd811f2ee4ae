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

/// The matcher's prefilters (first byte, literal prefix, required literals, also inside
/// groups) skip only rules that cannot match: on nmap's ~12 000 patterns, for every banner
/// above and variations of it, under the probes that see such answers, the first match is
/// the one trying every rule in order finds.
#[test]
fn prefilters_pick_the_same_rule_as_trying_every_rule() {
    let Some(m) = nmap() else { return };
    let mut banners: Vec<Vec<u8>> = Vec::new();
    for &(_, b, ..) in CASES {
        banners.push(b.to_vec());
        banners.push(b.to_ascii_uppercase());
        banners.push(b[..b.len() / 2].to_vec());
        banners.push([b"HTTP/1.1 200 OK\r\n".as_slice(), b].concat());
    }
    banners.push(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"router\"\r\n\r\n".to_vec(),
    );
    banners
        .push(b"HTTP/1.0 200 OK\r\nServer: Boa/0.94.14rc21\r\n\r\n<title>Login</title>".to_vec());
    banners.push(Vec::new());
    for probe in ["NULL", "GetRequest", "GenericLines", "HTTPOptions", "Help"] {
        let p = m
            .probe_index(Protocol::Tcp, probe)
            .expect("probe in nmap's file");
        for b in &banners {
            assert_eq!(
                m.match_response(p, b, None),
                m.match_response_exhaustive(p, b, None),
                "{probe}: {}",
                String::from_utf8_lossy(b)
            );
        }
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

/// Tiny daemons on loopback, each speaking (or refusing to speak) one way, and the
/// conversation driven over real sockets by `engine::services::run`.
mod live {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use fastport::engine::services;
    use fastport::service::conversation::{Conversation, Settings, Verdict};
    use fastport::service::record::ServiceRecord;

    use crate::in_netns;

    /// Starts a daemon on `port` (0: any) that runs `serve` on each connection, in a thread.
    fn daemon(port: u16, serve: fn(TcpStream)) -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || serve(s));
            }
        });
        addr
    }

    /// Reads until the peer closes (or fails), so the connection stays open meanwhile.
    fn drain(mut s: TcpStream) {
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Reads until `needle` has arrived; false if the peer closed first.
    fn read_until(s: &mut TcpStream, needle: &[u8]) -> bool {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return false,
            }
            if got.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }

    fn ssh(mut s: TcpStream) {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
        drain(s);
    }

    fn smtp(mut s: TcpStream) {
        let _ = s
            .write_all(b"220 mail.example.org ESMTP Exim 4.96 Tue, 01 Dec 2026 10:00:00 +0000\r\n");
        drain(s);
    }

    fn http(mut s: TcpStream) {
        if read_until(&mut s, b"\r\n\r\n") {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 0\r\n\r\n");
        }
        drain(s);
    }

    fn redis(mut s: TcpStream) {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                return;
            }
            let reply: &[u8] = if buf[..n].windows(4).any(|w| w == b"INFO") {
                b"$120\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\nos:Linux 6.1.0 x86_64\r\n"
            } else {
                b"-ERR unknown command\r\n"
            };
            if s.write_all(reply).is_err() {
                return;
            }
        }
    }

    fn silent(s: TcpStream) {
        drain(s);
    }

    fn closes(s: TcpStream) {
        drop(s);
    }

    fn trickle(mut s: TcpStream) {
        while s.write_all(b"\x01").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn flood(mut s: TcpStream) {
        let mb = vec![0xabu8; 1 << 20];
        let _ = s.write_all(&mb);
        drain(s);
    }

    fn resets(mut s: TcpStream) {
        let _ = s.write_all(b"hello from nothing known\r\n");
        std::thread::sleep(Duration::from_millis(50));
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    }

    /// What the conversation decides about `addr`, and how long it took.
    fn detect(addr: SocketAddr) -> (Verdict, Duration) {
        let matcher = Arc::new(fastport::service::builtin());
        let settings = Settings {
            rtt: Duration::from_millis(1),
            ..Settings::default()
        };
        let started = Instant::now();
        let first = TcpStream::connect(addr).unwrap();
        let conv = Conversation::new(matcher, addr.port(), settings, started);
        let (v, _) = services::run(addr, first, conv, Duration::from_secs(1)).unwrap();
        (v, started.elapsed())
    }

    fn named(v: &Verdict) -> (String, Option<String>, Option<String>) {
        match v {
            Verdict::Matched(m) => (m.service.clone(), m.product.clone(), m.version.clone()),
            other => panic!("not a match: {other:?}"),
        }
    }

    /// (port, daemon, service, product, version).
    type Case = (
        u16,
        fn(TcpStream),
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn speaking_daemons_are_named_exactly() {
        if !in_netns!(speaking_daemons_are_named_exactly) {
            return;
        }
        let cases: &[Case] = &[
            (2222, ssh, "ssh", Some("OpenSSH"), Some("9.2p1")),
            (2525, smtp, "smtp", Some("Exim smtpd"), Some("4.96")),
            (8787, http, "http", Some("nginx"), Some("1.22.1")),
            (
                6379,
                redis,
                "redis",
                Some("Redis key-value store"),
                Some("7.0.15"),
            ),
        ];
        for &(port, serve, service, product, version) in cases {
            let addr = daemon(port, serve);
            let (v, _) = detect(addr);
            let (s, p, ver) = named(&v);
            assert_eq!(
                (s.as_str(), p.as_deref(), ver.as_deref()),
                (service, product, version),
                "port {port}"
            );
            let line = ServiceRecord::from_verdict(&v).summary();
            assert!(line.starts_with(&format!("{service} ")), "{line}");
        }
    }

    /// Each hostile daemon ends within the conversation's bounded waits; the bound here
    /// (a minute) only catches a hang, the waits are the conversation's tests' business.
    #[test]
    fn hostile_daemons_end_within_their_bounded_waits() {
        if !in_netns!(hostile_daemons_end_within_their_bounded_waits) {
            return;
        }
        let bound = Duration::from_secs(60);
        let (v, t) = detect(daemon(0, closes));
        assert_eq!(v, Verdict::Tcpwrapped, "closes at once");
        assert!(t < bound);
        let (v, t) = detect(daemon(0, silent));
        assert_eq!(v, Verdict::Silent, "never speaks");
        assert!(t < bound, "silent took {t:?}");
        let (v, t) = detect(daemon(0, trickle));
        assert!(
            matches!(v, Verdict::Unrecognized { .. }),
            "one byte a second: {v:?}"
        );
        assert!(t < bound, "trickle took {t:?}");
        let (v, t) = detect(daemon(0, flood));
        match v {
            Verdict::Unrecognized { response, .. } => assert!(response.len() <= 16 * 1024),
            other => panic!("1 MB of binary: {other:?}"),
        }
        assert!(t < bound, "flood took {t:?}");
        let (v, t) = detect(daemon(0, resets));
        assert!(
            matches!(v, Verdict::Unrecognized { .. } | Verdict::Silent),
            "resets after the banner: {v:?}"
        );
        assert!(t < bound, "resets took {t:?}");
    }

    /// An HTTPS daemon (the test certificate of `service::tls`): TLS, then an HTTP answer.
    /// Plaintext (a probe that is not a ClientHello) gets rustls' alert, as a real server's
    /// TLS stack answers.
    fn https(s: TcpStream) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(TEST_CERT.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(TEST_KEY.to_vec())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {
                    // Send the alert rustls queued, then hang up.
                    let _ = tls.conn.write_tls(&mut tls.sock);
                    return;
                }
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let _ =
            tls.write_all(b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Length: 0\r\n\r\n");
        let _ = tls.flush();
        while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
    }

    const TEST_CERT: &[u8] = include_bytes!("../src/service/testdata/cert.der");
    const TEST_KEY: &[u8] = include_bytes!("../src/service/testdata/key.der");

    /// The ports of the scan world: speaking daemons on their usual ports and an HTTPS one
    /// on 8443, then hostile ones.
    type Daemon = (u16, fn(TcpStream));

    const WORLD: &[Daemon] = &[
        (2222, ssh),
        (2525, smtp),
        (8787, http),
        (6379, redis),
        (8443, https),
        (7001, closes),
        (7002, flood),
        (7003, silent),
        (7004, trickle),
        (7005, resets),
    ];

    fn world_ports() -> String {
        let ports: Vec<String> = WORLD.iter().map(|(p, _)| p.to_string()).collect();
        format!("{},7999", ports.join(","))
    }

    /// `-sV` on a loopback world, every format: the speaking daemons named exactly in each,
    /// https as `ssl/http` with its certificate, the hostile ones ended within their waits.
    #[test]
    fn scan_with_sv_names_services_in_every_format() {
        if !in_netns!(scan_with_sv_names_services_in_every_format) {
            return;
        }
        for &(port, serve) in WORLD {
            daemon(port, serve);
        }
        let dir = crate::util::temp_dir("sv-formats");
        let file = |ext: &str| dir.join(format!("scan.{ext}"));
        let ports = world_ports();
        let o = crate::util::run(&[
            "-sV",
            "-p",
            &ports,
            "-oA",
            dir.join("scan").to_str().unwrap(),
            "-oC",
            file("csv").to_str().unwrap(),
            "127.0.0.1",
        ]);
        assert!(o.status.success(), "{}", crate::util::stderr(&o));

        // JSON lines: one per open port, with the service keys.
        let text = std::fs::read_to_string(file("jsonl")).unwrap();
        let lines: std::collections::BTreeMap<u64, serde_json::Value> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["port"].as_u64().unwrap(), v)
            })
            .collect();
        assert_eq!(lines.len(), WORLD.len(), "{text}");
        let named = |port: u64| {
            let v = &lines[&port];
            (
                v["service"].as_str().map(str::to_owned),
                v["product"].as_str().map(str::to_owned),
                v["version"].as_str().map(str::to_owned),
                v["tunnel"].as_str().map(str::to_owned),
            )
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            named(2222),
            (some("ssh"), some("OpenSSH"), some("9.2p1"), None)
        );
        assert_eq!(
            named(2525),
            (some("smtp"), some("Exim smtpd"), some("4.96"), None)
        );
        assert_eq!(
            named(8787),
            (some("http"), some("nginx"), some("1.22.1"), None)
        );
        assert_eq!(
            named(6379),
            (
                some("redis"),
                some("Redis key-value store"),
                some("7.0.15"),
                None
            )
        );
        assert_eq!(
            named(8443),
            (some("http"), some("nginx"), some("1.25.3"), some("ssl"))
        );
        let tls = &lines[&8443]["tls"];
        assert_eq!(tls["subject"], "CN=fastport.test, O=FastPort Tests");
        assert_eq!(tls["issuer"], "CN=fastport.test, O=FastPort Tests");
        assert_eq!(tls["alpn"], "http/1.1");
        assert_eq!(
            tls["sans"],
            serde_json::json!(["DNS:fastport.test", "DNS:www.fastport.test", "IP:127.0.0.1"])
        );
        assert!(tls["not_after"].as_i64() > tls["not_before"].as_i64());
        assert_eq!(named(7001).0, some("tcpwrapped"));
        let flood = lines[&7002]["banner"].as_str().unwrap();
        assert!(flood.starts_with("\\xab\\xab"), "{flood}");
        assert!(flood.len() <= 4 * 512, "bounded banner: {}", flood.len());
        assert_eq!(lines[&7003].get("service"), None, "silent: nothing named");
        assert!(
            lines[&7004]["banner"]
                .as_str()
                .unwrap()
                .starts_with("\\x01")
        );
        assert_eq!(lines[&7005]["banner"], "hello from nothing known\\r\\n");
        // The port keys are unchanged.
        assert_eq!(lines[&2222]["state"], "open");
        assert_eq!(lines[&2222]["reason"], "syn-ack");

        // Text: the line names the service; the table has a VERSION column.
        let txt = std::fs::read_to_string(file("txt")).unwrap();
        assert!(
            txt.contains("[OPEN] 127.0.0.1:2222 ssh OpenSSH 9.2p1"),
            "{txt}"
        );
        assert!(
            txt.contains("[OPEN] 127.0.0.1:8443 ssl/http nginx 1.25.3"),
            "{txt}"
        );
        assert!(
            txt.contains("PORT     STATE SERVICE       VERSION"),
            "{txt}"
        );
        assert!(
            txt.contains("8443/tcp open  ssl/http      nginx 1.25.3\n"),
            "{txt}"
        );
        assert!(txt.contains("7001/tcp open  tcpwrapped\n"), "{txt}");
        assert!(
            txt.contains("[OPEN] 127.0.0.1:7005 afs3-volser \"hello from nothing known\\r\\n\"\n"),
            "{txt}"
        );

        // Grepable: nmap's service and version fields.
        let gnmap = std::fs::read_to_string(file("gnmap")).unwrap();
        assert!(
            gnmap.contains("2222/open/tcp//ssh//OpenSSH 9.2p1"),
            "{gnmap}"
        );
        assert!(
            gnmap.contains("8443/open/tcp//ssl|http//nginx 1.25.3/"),
            "{gnmap}"
        );
        assert!(
            gnmap.contains("7003/open/tcp//afs3-prserver///") || gnmap.contains("7003/open/tcp//"),
            "{gnmap}"
        );

        // XML: probed services, DTD-valid, and what python-libnmap reads.
        let xml = std::fs::read_to_string(file("xml")).unwrap();
        assert!(
            xml.contains(r#"<service name="http" product="nginx" version="1.25.3" tunnel="ssl" method="probed" conf="10""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<service name="ssh" product="OpenSSH" version="9.2p1""#),
            "{xml}"
        );
        assert!(
            xml.contains("<cpe>cpe:/a:openbsd:openssh:9.2p1</cpe>"),
            "{xml}"
        );
        xml_checks(&file("xml"));

        // CSV: the service columns, read by Python's csv module.
        let csv = std::fs::read_to_string(file("csv")).unwrap();
        let mut rows = csv.lines();
        assert_eq!(
            rows.next(),
            Some(
                "addr,port,state,reason,rtt_us,host,service,product,version,extrainfo,tunnel,banner"
            )
        );
        let row = csv
            .lines()
            .find(|l| l.starts_with("127.0.0.1,8443,"))
            .unwrap();
        assert!(row.ends_with(",,http,nginx,1.25.3,,ssl,"), "{row}");
    }

    /// The threads engine runs the same conversations (blocking) and names the same.
    #[test]
    fn threads_engine_names_what_the_event_loop_names() {
        if !in_netns!(threads_engine_names_what_the_event_loop_names) {
            return;
        }
        for &(port, serve) in &WORLD[..5] {
            daemon(port, serve);
        }
        let o = crate::util::run(&[
            "-sV",
            "--engine",
            "threads",
            "--concurrency",
            "8",
            "-p",
            "2222,2525,8787,6379,8443",
            "-oJ",
            "-",
            "-q",
            "127.0.0.1",
        ]);
        assert!(o.status.success(), "{}", crate::util::stderr(&o));
        let mut got: Vec<(u64, String)> = crate::util::stdout(&o)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let name = format!(
                    "{}{} {}",
                    v["tunnel"]
                        .as_str()
                        .map_or(String::new(), |t| format!("{t}/")),
                    v["service"].as_str().unwrap_or("?"),
                    v["product"].as_str().unwrap_or("?")
                );
                (v["port"].as_u64().unwrap(), name)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (2222, "ssh OpenSSH".to_string()),
                (2525, "smtp Exim smtpd".to_string()),
                (6379, "redis Redis key-value store".to_string()),
                (8443, "ssl/http nginx".to_string()),
                (8787, "http nginx".to_string()),
            ]
        );
    }

    /// `--banners`: what each port says by itself, unmatched, next to the table's name.
    #[test]
    fn banners_print_what_services_say() {
        if !in_netns!(banners_print_what_services_say) {
            return;
        }
        daemon(2222, ssh);
        daemon(8787, http);
        let o = crate::util::run(&["--banners", "-p", "2222,8787", "127.0.0.1"]);
        assert!(o.status.success(), "{}", crate::util::stderr(&o));
        let out = crate::util::stdout(&o);
        let line = |port: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("[OPEN] 127.0.0.1:{port} ")))
                .unwrap_or_else(|| panic!("no line for {port}: {out}"))
                .to_owned()
        };
        // The table's name, then the banner, escaped and quoted; nothing matched.
        assert!(
            line("2222").ends_with(r#" "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n""#),
            "{out}"
        );
        assert!(!line("2222").contains("OpenSSH 9.2p1"), "{out}");
        // HTTP says nothing first: only the table's name.
        assert_eq!(line("8787").matches('"').count(), 0, "{out}");
    }

    /// Sessions hold their slots and their lanes wait for room: with one
    /// probe in flight and a low --rate the scan still names every port (a
    /// session waiting for a lane must not wait on itself).
    #[test]
    fn sessions_fit_in_a_tiny_budget() {
        if !in_netns!(sessions_fit_in_a_tiny_budget) {
            return;
        }
        for &(port, serve) in &WORLD[..5] {
            daemon(port, serve);
        }
        let o = crate::util::run(&[
            "-sV",
            "--concurrency",
            "1",
            "--threads",
            "1",
            "--rate",
            "20",
            "-p",
            "2222,2525,8787,6379,8443",
            "-oJ",
            "-",
            "-q",
            "127.0.0.1",
        ]);
        assert!(o.status.success(), "{}", crate::util::stderr(&o));
        let out = crate::util::stdout(&o);
        for (port, name) in [
            (2222, "ssh"),
            (2525, "smtp"),
            (8787, "http"),
            (6379, "redis"),
            (8443, "http"),
        ] {
            let needle = format!(r#""port":{port},"#);
            let l = out
                .lines()
                .find(|l| l.contains(&needle))
                .unwrap_or_else(|| panic!("{port}: {out}"));
            assert!(l.contains(&format!(r#""service":"{name}""#)), "{l}");
        }
    }

    /// Ctrl-C while conversations run: the ports whose sessions were cut
    /// are not reported, and the resumed run (with -sV from the resume
    /// file) reports them with their services; no port twice.
    #[test]
    fn an_interrupted_sv_scan_resumes_its_sessions() {
        use std::process::{Command, Stdio};
        if !in_netns!(an_interrupted_sv_scan_resumes_its_sessions) {
            return;
        }
        daemon(2222, ssh);
        daemon(8787, http);
        daemon(7003, silent);
        let dir = crate::util::temp_dir("sv-resume");
        let part = |n: u32| dir.join(format!("part{n}.jsonl"));
        let child = crate::util::fastport()
            .args(["-sV", "-p", "2222,7003,8787", "127.0.0.1", "-oJ"])
            .arg(part(0))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The banner comes at once; HTTP (1.5 s) and the silent port
        // (several seconds) are still in their sessions.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(part(0)).is_ok_and(|t| t.contains("\"ssh\"")) {
            assert!(Instant::now() < deadline, "no ssh line");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{}", crate::util::stderr(&o));
        let first = std::fs::read_to_string(part(0)).unwrap();
        assert!(!first.contains("\"port\":7003"), "{first}");
        let o = crate::util::fastport()
            .arg("--resume")
            .arg(dir.join("fastport.resume"))
            .arg("-oJ")
            .arg(part(1))
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", crate::util::stderr(&o));
        let second = std::fs::read_to_string(part(1)).unwrap();
        let mut ports: Vec<(u64, Option<String>)> = first
            .lines()
            .chain(second.lines())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["port"].as_u64().unwrap(),
                    v["service"].as_str().map(str::to_owned),
                )
            })
            .collect();
        ports.sort();
        assert_eq!(
            ports,
            vec![
                (2222, Some("ssh".to_owned())),
                (7003, None),
                (8787, Some("http".to_owned())),
            ]
        );
    }

    /// Validates the XML against nmap.dtd and reads it with python-libnmap, when they are
    /// installed (scripts/test installs them; CI requires them).
    fn xml_checks(path: &std::path::Path) {
        use std::process::Command;
        let ci = std::env::var("CI").as_deref() == Ok("true");
        let dtd = "/usr/share/nmap/nmap.dtd";
        match Command::new("xmllint")
            .args(["--noout", "--dtdvalid", dtd])
            .arg(path)
            .output()
        {
            Ok(o) if std::path::Path::new(dtd).exists() => {
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
            }
            _ => {
                assert!(!ci, "xmllint and nmap.dtd are needed under CI");
                eprintln!("skipped: xmllint or nmap.dtd missing");
            }
        }
        let script = r#"
import json, sys
from libnmap.parser import NmapParser
r = NmapParser.parse_fromfile(sys.argv[1])
h = r.hosts[0]
print(json.dumps({str(s.port): [s.service, s.banner, s.tunnel] for s in h.services}))
"#;
        match Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .output()
        {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(v["2222"][0], "ssh", "{v}");
                assert!(
                    v["2222"][1]
                        .as_str()
                        .unwrap()
                        .starts_with("product: OpenSSH version: 9.2p1"),
                    "{v}"
                );
                assert_eq!(v["8443"][0], "http", "{v}");
                assert_eq!(v["8443"][2], "ssl", "{v}");
            }
            o => {
                assert!(!ci, "python-libnmap is needed under CI: {o:?}");
                eprintln!("skipped: python-libnmap missing");
            }
        }
    }
}
