//! `fastport report` in a real browser: Debian's Chromium, headless, inside
//! a private network namespace (nothing the page did could reach a
//! network). The page must render with no console message, every plot must
//! have its marks and both axis labels, and input built to become markup
//! (`</script><img src=x onerror=...>` in a banner, a hostname and a file
//! name) must stay text. The screenshot is kept under target/ as an
//! artifact.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fastport::classify::Reason;
use fastport::trace::{self, Sampler, TraceEvent, TraceSink};

use crate::in_netns;
use crate::util::{fastport, run, stderr, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The payload of the issue, and one that would rename the page if it ran.
const PAYLOAD: &str = "</script><img src=x onerror=alert(1)>";
const RENAME: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// Chromium is there, or installed now (root with apt-get); under
/// `CI=true` a missing browser is a failure, elsewhere a skip that says so.
fn have_chromium() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if root {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "chromium is missing (scripts/test installs it)"
    );
    eprintln!("skipped: chromium is not installed (apt-get install chromium)");
    false
}

/// The page as Chromium rendered it, after checking that nothing in it ran
/// or became an element: no console message (Chromium logs errors, CSP
/// violations and a payload's alert as CONSOLE lines), the report's title,
/// no `<img>` or `<script>` element.
fn inert_dom(page: &Path) -> String {
    let o = chromium(page, "--dump-dom");
    assert!(o.status.success(), "chromium --dump-dom: {}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    let log = stderr(&o);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let title = text_after(&dom, "<title").expect("a title");
    assert!(
        title.starts_with("FastPort report"),
        "title is now {title:?}"
    );
    assert!(!dom.contains("<img"), "a payload became an <img> element");
    assert!(
        !dom.contains("<script"),
        "a payload became a <script> element"
    );
    dom
}

/// Headless Chromium on `page` with `what` (`--dump-dom`, `--screenshot=...`).
fn chromium(page: &Path, what: &str) -> Output {
    let profile = temp_dir("report-chromium-profile");
    Command::new("timeout")
        .arg("60")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,4200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

/// A loopback service that greets every connection with `banner`.
fn banner_service(banner: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(banner.as_bytes());
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut [0u8; 64]);
        }
    });
    port
}

/// A trace of three probes and the engine's changes, made with the
/// library's writer (the format is tested on its own in `trace`).
fn write_trace(path: &Path) {
    let sink = TraceSink::create(path, Sampler::new(1.0, 1)).unwrap();
    let mut t = sink.tracer(0);
    let us = Duration::from_micros;
    t.record(TraceEvent::InFlightCap { cap: 64 }, us(0));
    t.record(TraceEvent::Window { window: 8 }, us(0));
    for (p, reason) in [Reason::SynAck, Reason::ConnRefused, Reason::NoResponse]
        .into_iter()
        .enumerate()
    {
        let p = p as u64;
        let t0 = 200 * p;
        let target = format!("127.0.0.1:{}", 8000 + p).parse().unwrap();
        t.record(
            TraceEvent::Launch {
                probe: p,
                attempt: 0,
                target,
            },
            us(t0),
        );
        t.record(
            TraceEvent::Connect {
                probe: p,
                errno: libc::EINPROGRESS,
            },
            us(t0 + 3),
        );
        if reason == Reason::NoResponse {
            t.record(
                TraceEvent::Deadline {
                    probe: p,
                    attempt: 0,
                },
                us(t0 + 900),
            );
        } else {
            t.record(TraceEvent::Ready { probe: p }, us(t0 + 40));
        }
        t.record(TraceEvent::Close { probe: p, reason }, us(t0 + 950));
    }
    t.record(TraceEvent::Window { window: 16 }, us(500));
    t.record(TraceEvent::BackOff { delay: us(100) }, us(600));
    t.finish().unwrap();
    sink.flush().unwrap();
}

/// Where the test keeps its artifacts: target/tmp/report/.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The figures of a rendered DOM, each with its `data-plot` name.
fn figures(dom: &str) -> Vec<(String, &str)> {
    dom.split("<figure class=\"plot\"")
        .skip(1)
        .map(|chunk| {
            let body = &chunk[..chunk.find("</figure>").expect("a closed figure")];
            let name = body
                .split_once("data-plot=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or(String::new(), |(n, _)| n.to_string());
            (name, body)
        })
        .collect()
}

/// The text of the element that follows `marker` in `body`.
fn text_after<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = body.split_once(marker)?;
    let (_, rest) = rest.split_once('>')?;
    rest.split_once('<').map(|(text, _)| text.trim())
}

#[test]
fn report_renders_in_chromium_with_labelled_plots_and_inert_payloads() {
    if !have_chromium()
        || !in_netns!(report_renders_in_chromium_with_labelled_plots_and_inert_payloads)
    {
        return;
    }
    let dir = temp_dir("report-browser");
    let banner = banner_service("</script><img src=x onerror=alert(1)>\r\n");
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // Two runs, mio and threads, overlaid; the first one's summary has a
    // file name that is markup.
    let stats_a = dir.join(format!("mio{}.json", RENAME.replace('/', "")));
    let stats_b = dir.join("threads.json");
    let results = dir.join("results.jsonl");
    let ports = format!("{banner},{closed_port},1-200");
    for (stats, engine, out) in [
        (&stats_a, "mio", Some(&results)),
        (&stats_b, "threads", None),
    ] {
        let mut args = vec![
            "127.0.0.1".to_string(),
            "-p".into(),
            ports.clone(),
            "--engine".into(),
            engine.into(),
            "--show".into(),
            "all".into(),
            "--stats".into(),
            stats.display().to_string(),
        ];
        if let Some(out) = out {
            args.extend(["-oJ".into(), out.display().to_string()]);
        }
        let o = fastport().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // What a scan that reads banners and names hosts writes beside a port
    // (results carry any string field through to the page).
    let mut lines = std::fs::read_to_string(&results).unwrap();
    lines.push_str(
        &serde_json::json!({
            "addr": "127.0.0.1", "port": banner, "state": "open", "reason": "syn-ack",
            "rtt_us": 42, "hostname": RENAME, "banner": PAYLOAD,
        })
        .to_string(),
    );
    lines.push('\n');
    std::fs::write(&results, lines).unwrap();
    let trace_file = dir.join("run.trace");
    write_trace(&trace_file);

    let page = dir.join("report.html");
    let o = run(&[
        "report",
        stats_a.to_str().unwrap(),
        results.to_str().unwrap(),
        trace_file.to_str().unwrap(),
        stats_b.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<img") && !html.contains("<script"),
        "markup in the page"
    );

    let shot = artifacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let o = chromium(&page, &format!("--screenshot={}", shot.display()));
    assert!(o.status.success(), "chromium --screenshot: {}", stderr(&o));
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot"
    );
    let _ = std::fs::copy(&page, artifacts().join("report.html"));

    let dom = inert_dom(&page);
    assert!(
        dom.contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "the banner is shown as text"
    );
    assert!(
        dom.contains("mio&lt;img src=x onerror="),
        "the file name is shown as text"
    );

    let figs = figures(&dom);
    let names: Vec<&str> = figs.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "latency-closed/conn-refused",
        "latency-open/syn-ack",
        "host-rtt",
    ] {
        assert!(names.contains(&want), "no {want} plot in {names:?}");
    }
    // The time series is drawn when the summary carries one.
    let has_series = std::fs::read_to_string(&stats_b)
        .unwrap()
        .contains("\"series\"");
    assert_eq!(names.contains(&"completion-rate"), has_series, "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("waterfall-")),
        "no waterfall in {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("engine-")),
        "no engine timeline in {names:?}"
    );
    for (name, body) in &figs {
        assert!(body.contains("<svg"), "{name}: no svg");
        assert!(body.contains("class=\"data\""), "{name}: no data marks");
        assert!(
            body.contains("class=\"tick\"") || name.starts_with("waterfall-"),
            "{name}: no ticks"
        );
        for axis in ["axis-label x", "axis-label y"] {
            let label = text_after(body, &format!("class=\"{axis}\""));
            assert!(label.is_some_and(|l| !l.is_empty()), "{name}: no {axis}");
        }
    }
    // Both runs are in the overlaid latency plot.
    let (_, latency) = figs
        .iter()
        .find(|(n, _)| n == "latency-closed/conn-refused")
        .unwrap();
    assert_eq!(
        latency.matches("<path class=\"data\"").count(),
        2,
        "two runs overlaid"
    );
    // The trace is drawn: three probes, one row each.
    let (_, waterfall) = figs
        .iter()
        .find(|(n, _)| n.starts_with("waterfall-"))
        .unwrap();
    assert!(waterfall.contains("127.0.0.1:8002"));
    assert!(trace::read(std::fs::File::open(&trace_file).unwrap()).is_ok());
}

/// Bad input to `fastport report`: one line naming the file, exit 2,
/// nothing written.
#[test]
fn report_of_a_file_that_is_no_input_is_a_usage_error() {
    let dir = temp_dir("report-bad");
    let junk = dir.join("notes.txt");
    std::fs::write(&junk, "not a summary\n").unwrap();
    let page = dir.join("out.html");
    let o = run(&[
        "report",
        junk.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("notes.txt") && err.contains("not a --stats summary"),
        "{err}"
    );
    assert!(!page.exists());
    let o = run(&["report"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `--trace` on a loopback scan: every probe's launch, connect and close
/// are in the file, a sample keeps exactly the probes its seeded hash
/// picks, and the `--stats` series counts every launch and result.
#[test]
fn trace_and_series_record_every_probe_of_a_scan() {
    if !in_netns!(trace_and_series_record_every_probe_of_a_scan) {
        return;
    }
    let dir = temp_dir("report-trace");
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let ports = format!("{open_port},1-299");
    for (sample, name) in [("1", "all"), ("0.1", "tenth")] {
        let trace_file = dir.join(format!("{name}.trace"));
        let stats = dir.join(format!("{name}.json"));
        let o = run(&[
            "127.0.0.1",
            "-p",
            &ports,
            "--seed",
            "7",
            "--trace",
            trace_file.to_str().unwrap(),
            "--trace-sample",
            sample,
            "--stats",
            stats.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let t = trace::read(std::fs::File::open(&trace_file).unwrap()).unwrap();
        let mut launched = std::collections::BTreeSet::new();
        let mut closed = std::collections::BTreeMap::new();
        for r in &t.records {
            match r.event {
                TraceEvent::Launch { probe, target, .. } => {
                    assert_eq!(target.ip().to_string(), "127.0.0.1");
                    launched.insert(probe);
                }
                TraceEvent::Close { probe, reason } => {
                    assert!(
                        closed.insert(probe, reason).is_none(),
                        "probe {probe} closed twice"
                    );
                }
                _ => {}
            }
        }
        let sampler = Sampler::new(sample.parse().unwrap(), 7);
        let expected: std::collections::BTreeSet<u64> =
            (0..300).filter(|&i| sampler.keeps(i)).collect();
        assert_eq!(launched, expected, "sample {sample}");
        assert_eq!(
            closed
                .keys()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            expected
        );
        if sample == "1" {
            assert_eq!(closed.values().filter(|&&r| r == Reason::SynAck).count(), 1);
            assert_eq!(
                closed
                    .values()
                    .filter(|&&r| r == Reason::ConnRefused)
                    .count(),
                299
            );
            assert!(t.records.iter().any(|r| matches!(
                r.event,
                TraceEvent::SockName {
                    self_connect: false,
                    ..
                }
            )));
            assert!(
                t.records
                    .iter()
                    .any(|r| matches!(r.event, TraceEvent::InFlightCap { .. }))
            );
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let series = &doc["series"];
        let sum = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(sum(&series["launches"]), doc["attempts"].as_u64().unwrap());
        assert_eq!(sum(&series["completions"]["open/syn-ack"]), 1);
        assert_eq!(sum(&series["completions"]["closed/conn-refused"]), 299);
        assert_eq!(series["bucket_ms"], 100.0);
    }
    drop(open);
}

/// The whole path of a hostile banner: a listener in a namespace greets
/// with the payload, `fastport --banners` reads it into its `-oJ` results,
/// `fastport report` puts it in the page, and Chromium shows it as text:
/// no console message (an `alert` or a failed `<img>` load would log one),
/// the title unchanged, no element made, the payload readable, escaped.
#[test]
fn scanned_banner_with_script_payload_stays_text_in_the_browser() {
    if !have_chromium() || !in_netns!(scanned_banner_with_script_payload_stays_text_in_the_browser)
    {
        return;
    }
    let dir = temp_dir("report-banner-scan");
    let port = banner_service("</script><img src=x onerror=alert(1)>\r\n");
    let results = dir.join("results.jsonl");
    let stats = dir.join("run.json");
    let o = run(&[
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--banners",
        "-oJ",
        results.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The scan itself carried the payload into its results.
    let lines = std::fs::read_to_string(&results).unwrap();
    assert!(lines.contains(PAYLOAD), "no banner in the results: {lines}");

    let page = dir.join("report.html");
    let o = run(&[
        "report",
        stats.to_str().unwrap(),
        results.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<img") && !html.contains("</script>"));
    let _ = std::fs::copy(&page, artifacts().join("banner-report.html"));

    let dom = inert_dom(&page);
    // The findings table shows the banner, as text, beside its port.
    let row = dom
        .split("<tr>")
        .find(|r| r.contains(&format!(">{port}<")) && r.contains(">banner<"))
        .unwrap_or_else(|| panic!("no banner row for port {port}"));
    assert!(
        row.contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "the banner is not shown escaped: {row}"
    );
}
