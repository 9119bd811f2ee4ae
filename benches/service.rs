//! Service matching cost: CPU time per banner against a full-size database (nmap's own
//! nmap-service-probes, 11 917 patterns, when /usr/share/nmap has it), and FastPort's own.
//!
//! Each iteration matches one banner the way a conversation does: the answer to the probe
//! that got it, the probe's rules, its fallbacks, then NULL's. Banners are a mix of ones that
//! match early, late and never (the worst case: every candidate rule is tried). The compile
//! time and the peak RSS (VmHWM) after loading are printed once.

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fastport::service::probes::{self, Protocol};
use fastport::service::{self, Matcher};

const NMAP: &str = "/usr/share/nmap/nmap-service-probes";

const BANNERS: &[(&str, &[u8])] = &[
    ("NULL", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
    ("NULL", b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n"),
    ("NULL", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"),
    ("NULL", b"J\0\0\0\x0a8.0.36\0\x08\0\0\0abcdefgh\0\xff\xff\xff\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0ijklmnopqrst\0caching_sha2_password\0"),
    ("NULL", b"\x8a\x13\x77\x01 nothing matches this banner at all, it is noise \xff\xfe"),
    ("GetRequest", b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 612\r\nConnection: close\r\n\r\n<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body></body></html>"),
    ("GetRequest", b"HTTP/1.1 404 Not Found\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nServer: Apache/2.4.62 (Debian)\r\nContent-Length: 196\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head></html>"),
    ("GetRequest", b"HTTP/1.1 200 OK\r\nX-Unknown: yes\r\nContent-Length: 2\r\n\r\nok"),
];

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `http_probe`: the database's name for its `GET / HTTP/1.0` probe.
fn bench_database(c: &mut Criterion, label: &str, m: &Matcher, http_probe: &str) {
    let cases: Vec<(usize, &[u8])> = BANNERS
        .iter()
        .map(|&(name, b)| {
            let name = if name == "GetRequest" {
                http_probe
            } else {
                name
            };
            (m.probe_index(Protocol::Tcp, name).expect("probe exists"), b)
        })
        .collect();
    let mut group = c.benchmark_group(format!("service_match/{label}"));
    group.throughput(Throughput::Elements(cases.len() as u64));
    group.bench_function("banner_mix", |b| {
        b.iter(|| {
            let mut named = 0;
            for &(p, banner) in &cases {
                named += usize::from(m.match_response(p, banner, None).is_some());
            }
            named
        })
    });
    group.finish();
}

fn service_benches(c: &mut Criterion) {
    let before = vm_hwm_kib();
    let t = Instant::now();
    let own = service::builtin();
    eprintln!(
        "fastport-service-probes: {} rules compiled in {:?}",
        own.compiled_rules(),
        t.elapsed()
    );
    bench_database(c, "fastport", &own, "HTTPGet");

    match std::fs::read(NMAP) {
        Ok(text) => {
            let t = Instant::now();
            let file = probes::parse(&text).expect("nmap's file parses");
            let m = Matcher::new(file);
            eprintln!(
                "{NMAP}: {} rules compiled ({} refused, {} with a literal prefix) in {:?}; VmHWM {:?} KiB before, {:?} KiB after loading",
                m.compiled_rules(),
                m.skipped().len(),
                m.prefixed_rules(1),
                t.elapsed(),
                before,
                vm_hwm_kib()
            );
            bench_database(c, "nmap", &m, "GetRequest");
        }
        Err(e) => eprintln!(
            "{NMAP}: {e}; the full-size benchmark is skipped (scripts/test installs nmap)"
        ),
    }
}

criterion_group!(benches, service_benches);
criterion_main!(benches);
