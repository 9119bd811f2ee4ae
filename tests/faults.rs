//! Faults that break other scanners, each asserted against the exact truth
//! (docs/RELIABILITY.md lists them with what nmap and RustScan did). Every
//! test runs inside its own network namespace.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;

use crate::in_netns;
use crate::util::{addrs, drop_packets, listeners, read_jsonl, read_stats, sh, stderr, temp_dir};

/// Runs fastport through `sh -c "PRELUDE && exec fastport ARGS"`.
fn fastport_after(prelude: &str, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{prelude} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_fastport"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sh")
}

/// Drops every TCP packet to `ports` on 127.0.0.1: those probes stay in
/// flight for a whole timeout.
fn drop_ports(ports: &str) {
    drop_packets(&[&format!("ip daddr 127.0.0.1 tcp dport {ports}")]);
}

/// Checks a one-host result: `open` open, `dropped` filtered/no-response,
/// everything else closed (refused, or a self-connect).
fn assert_truth(
    engine: &str,
    got: &BTreeMap<(String, u16), String>,
    ports: std::ops::RangeInclusive<u16>,
    open: &[u16],
    dropped: std::ops::RangeInclusive<u16>,
) {
    assert_eq!(
        got.len(),
        ports.clone().count(),
        "{engine}: every port once"
    );
    for port in ports {
        let state = &got[&("127.0.0.1".to_string(), port)];
        if open.contains(&port) {
            assert_eq!(state, "open/syn-ack", "{engine}: port {port}");
        } else if dropped.contains(&port) {
            assert_eq!(state, "filtered/no-response", "{engine}: port {port}");
        } else {
            assert!(
                state == "closed/conn-refused" || state == "closed/self-connect",
                "{engine}: port {port}: {state}"
            );
        }
    }
}

/// `ulimit -n 64` with `--concurrency 10000`: FastPort sizes its in-flight
/// cap to the descriptors it has (RustScan dies on EMFILE here).
#[test]
fn open_file_limit_of_64() {
    if !in_netns!(open_file_limit_of_64) {
        return;
    }
    let ls = listeners("127.0.0.1", &[22, 80, 443, 3000], 4);
    let open: Vec<u16> = addrs(&ls)
        .iter()
        .map(|a| a.port())
        .filter(|p| *p <= 5000)
        .collect();
    drop_ports("4000-4099");
    let dir = temp_dir("fd64");
    for engine in ["mio", "threads"] {
        let out = dir.join(format!("{engine}.jsonl"));
        let o = fastport_after(
            "ulimit -n 64",
            &[
                "--engine",
                engine,
                "-p",
                "1-5000",
                "--concurrency",
                "10000",
                "--timeout",
                "200ms",
                "--retries",
                "0",
                "--show",
                "all",
                "-oJ",
                out.to_str().unwrap(),
                "127.0.0.1",
            ],
        );
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("open-file limit (64)"),
            "{}",
            stderr(&o)
        );
        assert_truth(engine, &read_jsonl(&out), 1..=5000, &open, 4000..=4099);
    }
}

/// A tight open-file limit: the scan either runs exactly with what is left
/// or stops with one clear error and exit 1 before any probe; it used to
/// spin on `EMFILE` forever without a word. Descriptors this test inherits
/// are closed first, so the count is FastPort's own: stdio, the output file
/// and its clone (five). At 5 nothing is left for a probe, in either engine;
/// at 6 the event loop still needs its poll, while the threads engine scans
/// with the one descriptor it has.
#[test]
fn tight_open_file_limits_scan_exactly_or_fail_clearly() {
    if !in_netns!(tight_open_file_limits_scan_exactly_or_fail_clearly) {
        return;
    }
    let dir = temp_dir("fd6");
    for (limit, engine, runs) in [
        (5, "mio", false),
        (5, "threads", false),
        (6, "mio", false),
        (6, "threads", true),
    ] {
        let out = dir.join(format!("{engine}-{limit}.jsonl"));
        // bash: dash cannot close descriptors above 9.
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "for fd in $(ls /proc/$$/fd); do [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; \
                 ulimit -n {limit} && exec \"$0\" \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_fastport"))
            .args([
                "--engine",
                engine,
                "--show",
                "all",
                "-p",
                "1-100",
                "-oJ",
                out.to_str().unwrap(),
                "127.0.0.1",
            ])
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run bash");
        let err = stderr(&o);
        let what = format!("{engine} under ulimit -n {limit}: {err}");
        if runs {
            assert!(o.status.success(), "{what}");
            // Nothing dropped: port 0 is not scanned.
            assert_truth(engine, &read_jsonl(&out), 1..=100, &[], 0..=0);
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert!(
            err.contains(&format!("open-file limit ({limit}) is too small")),
            "{what}"
        );
        assert_eq!(
            err.lines()
                .filter(|l| l.contains("open-file limit"))
                .count(),
            1,
            "one message: {what}"
        );
    }
}

/// `ulimit -v` too small for `--concurrency` threads: the threads engine
/// exited ("cannot start thread 696 of 5000") instead of scanning with the
/// threads it could start.
#[test]
fn threads_engine_under_ulimit_v_shrinks_its_pool() {
    if !in_netns!(threads_engine_under_ulimit_v_shrinks_its_pool) {
        return;
    }
    let ls = listeners("127.0.0.1", &[22, 80], 2);
    let open: Vec<u16> = addrs(&ls).iter().map(|a| a.port()).collect();
    let dir = temp_dir("ulimit-v");
    let out = dir.join("threads.jsonl");
    let o = fastport_after(
        "ulimit -v 200000",
        &[
            "--engine",
            "threads",
            "--concurrency",
            "5000",
            "-p",
            "1-5000",
            "--timeout",
            "500ms",
            "--show",
            "all",
            "-oJ",
            out.to_str().unwrap(),
            "127.0.0.1",
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("scanning with"), "{err}");
    let open: Vec<u16> = open.into_iter().filter(|p| *p <= 5000).collect();
    assert_truth("threads", &read_jsonl(&out), 1..=5000, &open, 0..=0); // nothing dropped
}

/// Sixteen ephemeral ports (the range is per namespace) on a 65535-port
/// scan with 100 silent ports holding local ports. Linux shares a local
/// port between connections to different destinations, so a one-host scan
/// does not run out; should it (EADDRNOTAVAIL), FastPort backs off and
/// reissues. Either way no port may be reported closed for it (naabu's
/// failure), and self-connects in the tiny range stay closed.
#[test]
fn sixteen_ephemeral_ports() {
    if !in_netns!(sixteen_ephemeral_ports) {
        return;
    }
    let ls = listeners("127.0.0.1", &[22, 8080, 50000], 0);
    let open: Vec<u16> = addrs(&ls).iter().map(|a| a.port()).collect();
    sh("sysctl -q -w net.ipv4.ip_local_port_range='40000 40015'");
    drop_ports("3000-3099");
    let dir = temp_dir("eph16");
    for engine in ["mio", "threads"] {
        let out = dir.join(format!("{engine}.jsonl"));
        let st = dir.join(format!("{engine}.json"));
        let o = fastport_after(
            "true",
            &[
                "--engine",
                engine,
                "-p-",
                "--concurrency",
                "256",
                "--timeout",
                "200ms",
                "--retries",
                "0",
                "--show",
                "all",
                "-oJ",
                out.to_str().unwrap(),
                "--stats",
                st.to_str().unwrap(),
                "127.0.0.1",
            ],
        );
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        assert_truth(engine, &read_jsonl(&out), 1..=65535, &open, 3000..=3099);
        let s = read_stats(&st);
        assert_eq!(s["results"], 65535, "{engine}");
    }
}

/// 20 000 probes asked in flight at once: 16384 silent hosts × 2 ports
/// behind a drop rule, plus listeners elsewhere. The descriptor limit is
/// raised where the system allows; where its hard limit is lower, FastPort
/// says so and runs at what it allows.
#[test]
fn twenty_thousand_in_flight() {
    if !in_netns!(twenty_thousand_in_flight) {
        return;
    }
    let ls = listeners("127.2.0.1", &[80, 443], 0);
    drop_packets(&["ip daddr 127.1.0.0/18"]);
    let dir = temp_dir("inflight");
    let out = dir.join("out.jsonl");
    let o = fastport_after(
        "{ ulimit -n 20100 2>/dev/null || true; }",
        &[
            "-p",
            "80,443",
            "--concurrency",
            "20000",
            "--timeout",
            "1s",
            "--retries",
            "0",
            "--show",
            "all",
            "-oJ",
            out.to_str().unwrap(),
            "127.1.0.0/18",
            "127.2.0.1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_jsonl(&out);
    assert_eq!(got.len(), 16384 * 2 + 2);
    for ((addr, port), state) in &got {
        let want = if addr == "127.2.0.1" {
            "open/syn-ack"
        } else {
            "filtered/no-response"
        };
        assert_eq!(state, want, "{addr}:{port}");
    }
    drop(ls);
}

/// A listener whose accept queue is full drops new SYNs: from outside the
/// port is silent, filtered/no-response. A listener that accepts and resets
/// at once completed the handshake first: open/syn-ack.
#[test]
fn full_backlog_and_accept_then_reset() {
    if !in_netns!(full_backlog_and_accept_then_reset) {
        return;
    }
    use socket2::{Domain, Socket, Type};
    // Backlog 0: the queue holds one connection; two clients fill it.
    let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    full.set_reuse_address(true).unwrap();
    full.bind(
        &"127.0.0.1:7001"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    full.listen(0).unwrap();
    let fillers: Vec<_> = (0..2)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(
                &"127.0.0.1:7001"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            );
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let resetter = TcpListener::bind("127.0.0.1:7002").unwrap();
    let fd = resetter.as_raw_fd();
    std::thread::spawn(move || {
        for stream in resetter.incoming().flatten() {
            let s = Socket::from(stream);
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
            drop(s); // RST at once
        }
    });

    let dir = temp_dir("backlog");
    let out = dir.join("out.jsonl");
    let o = fastport_after(
        "true",
        &[
            "-p",
            "7000-7003",
            "--timeout",
            "300ms",
            "--retries",
            "1",
            "--show",
            "all",
            "-oJ",
            out.to_str().unwrap(),
            "127.0.0.1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_jsonl(&out);
    let at = |p: u16| got[&("127.0.0.1".to_string(), p)].clone();
    assert_eq!(
        at(7001),
        "filtered/no-response",
        "a full accept queue drops the SYN"
    );
    assert_eq!(
        at(7002),
        "open/syn-ack",
        "the handshake completed before the reset"
    );
    assert_eq!(at(7000), "closed/conn-refused");
    drop((full, fillers, fd));
}

/// Output to a full disk: a clear error naming the file, exit status 1;
/// the JSON lines hold only whole lines and the XML is cut back to its last
/// whole host and closed, valid (nmap exits 0 with XML cut mid-tag).
#[test]
fn full_disk() {
    if !in_netns!(full_disk) {
        return;
    }
    let dir = temp_dir("fulldisk");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64k fastport-full {mnt} && \
         \"$0\" -p 1-100 --show all -oJ {mnt}/out.jsonl -oX {mnt}/out.xml 127.0.0.0/24 >/dev/null 2>{dir}/stderr; \
         echo $? > {dir}/rc; cp {mnt}/out.jsonl {mnt}/out.xml {dir}/",
        mnt = mnt.display(),
        dir = dir.display(),
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            &script,
            env!("CARGO_BIN_EXE_fastport"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rc = std::fs::read_to_string(dir.join("rc")).unwrap();
    let err = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert_eq!(rc.trim(), "1", "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("/mnt/out."),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    assert!(!text.is_empty() && text.len() <= 64 * 1024);
    assert!(text.ends_with('\n'), "ends with a whole line");
    let lines = read_jsonl(&dir.join("out.jsonl")); // every line parses
    assert!(lines.len() > 100, "{}", lines.len());
    let xml = dir.join("out.xml");
    let lint = Command::new("xmllint").arg("--noout").arg(&xml).output();
    match lint {
        Ok(l) => assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr)),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => eprintln!("xmllint not run: {e}"),
        Err(e) => panic!("xmllint is needed under CI: {e}"),
    }
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert!(
        xml.trim_end().ends_with("</nmaprun>"),
        "closed: {}",
        &xml[xml.len().saturating_sub(200)..]
    );
}
