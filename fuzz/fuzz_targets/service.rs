//! Fuzzes service detection with hostile banners: the probe-file parser, the matcher, the
//! conversation machine and every escaping writer.
//!
//! Input: bytes. Up to the first `\0\0` they are a probe file (parsed; when it parses, it
//! is compiled and the rest is matched against each of its probes); the rest is a banner,
//! matched against every probe of FastPort's own database, fed to a conversation in chunks
//! picked by the first byte, and written through every escaping helper and the record every
//! output format writes ([`ServiceRecord`]: summary, JSON, XML, CSV cells).

#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use fastport::service::conversation::{Conversation, Settings, Verdict};
use fastport::service::record::ServiceRecord;
use fastport::service::{Matcher, escape, probes};
use libfuzzer_sys::fuzz_target;

static BUILTIN: LazyLock<Arc<Matcher>> = LazyLock::new(|| Arc::new(fastport::service::builtin()));

fn check_text(s: &str) {
    assert!(!s.chars().any(|c| c.is_control()), "control character left in {s:?}");
}

fuzz_target!(|data: &[u8]| {
    let (file, banner) = match data.windows(2).position(|w| w == b"\0\0") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    if let Ok(parsed) = probes::parse(file) {
        let m = Matcher::new(parsed);
        for p in 0..m.probes().len() {
            let _ = m.match_response(p, banner, None);
        }
    } else if let Err(e) = probes::parse(file) {
        assert!(!e.to_string().contains('\n'));
    }

    let db = &*BUILTIN;
    for p in 0..db.probes().len() {
        if let Some(hit) = db.match_response(p, banner, None) {
            for field in [&hit.product, &hit.version, &hit.info, &hit.hostname, &hit.os, &hit.device]
                .into_iter()
                .flatten()
                .chain(hit.cpe.iter())
            {
                check_text(&escape::text(field));
                let _ = escape::xml(&escape::text(field));
                let _ = escape::csv_cell(&escape::text(field));
            }
        }
    }

    let shown = escape::bytes(banner);
    assert!(shown.bytes().all(|b| (0x20..0x7f).contains(&b)));
    let xml = escape::xml(&shown);
    assert!(!xml.contains('<') && !xml.contains('>'));
    let csv = escape::csv_cell(&shown);
    assert!(!csv.starts_with(['=', '+', '-', '@']));
    let lossy = String::from_utf8_lossy(banner);
    check_text(&escape::text(&lossy));

    let t0 = Instant::now();
    let settings = Settings { read_limit: 4096, ..Settings::default() };
    let mut c = Conversation::new(db.clone(), 80, settings, t0);
    let step = usize::from(banner.first().copied().unwrap_or(1)).max(1);
    let mut now = t0;
    for chunk in banner.chunks(step) {
        now += Duration::from_millis(1);
        c.handle_data(0, chunk, now);
        while c.poll_action().is_some() {}
    }
    // Run the conversation out: every lane connects and stays silent.
    for _ in 0..64 {
        while let Some(a) = c.poll_action() {
            if let fastport::service::conversation::Action::Connect(l) = a {
                c.handle_connected(l, now);
            }
        }
        match c.next_deadline() {
            Some(d) => {
                now = d;
                c.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(c.verdict().is_some());

    // What the outputs write of the verdict and of the raw banner: nothing raw, bounded.
    for verdict in [c.verdict().cloned(), Some(Verdict::Banner(banner.to_vec()))]
        .into_iter()
        .flatten()
    {
        let record = ServiceRecord::from_verdict(&verdict);
        check_text(&record.summary());
        check_text(&record.version_line());
        if let Some(b) = &record.banner {
            assert!(b.len() <= 4 * fastport::service::record::BANNER_LIMIT);
        }
        for value in record.json().values() {
            if let Some(text) = value.as_str() {
                check_text(text);
            }
        }
        if let Some(xml) = record.xml() {
            assert!(!xml.contains("<script"));
        }
        for cell in record.csv_cells() {
            assert!(!cell.starts_with(['=', '+', '-', '@']));
        }
    }
});
