//! End-to-end scans inside a private namespace: exact results against
//! listeners, drop rules and routes the test made itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::in_netns;
use crate::util::{
    addrs, drop_packets, fastport, listeners, read_jsonl, read_stats, run, sh, stderr, stdout,
    temp_dir,
};

/// The issue's acceptance scan: 25 listeners, all 65535 ports, every port
/// reported once with its exact state, ephemeral-range listeners included
/// and no self-connect reported open.
#[test]
fn every_port_of_a_host_exactly_once() {
    if !in_netns!(every_port_of_a_host_exactly_once) {
        return;
    }
    let ls = listeners("127.0.0.1", &[22, 80, 443, 8080, 30000], 20);
    let open: Vec<u16> = addrs(&ls).iter().map(|a| a.port()).collect();
    assert!(open.iter().filter(|p| (32768..=60999).contains(*p)).count() >= 5);
    let dir = temp_dir("exact");
    let out = dir.join("out.jsonl");
    let st = dir.join("stats.json");
    let o = run(&[
        "-p-",
        "--show",
        "all",
        "-oJ",
        out.to_str().unwrap(),
        "--stats",
        st.to_str().unwrap(),
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let got = read_jsonl(&out);
    assert_eq!(got.len(), 65535, "every port once");
    for port in 1..=65535u16 {
        let state = &got[&("127.0.0.1".to_string(), port)];
        if open.contains(&port) {
            assert_eq!(state, "open/syn-ack", "port {port}");
        } else {
            assert!(
                state == "closed/conn-refused" || state == "closed/self-connect",
                "port {port}: {state}"
            );
        }
    }
    let s = read_stats(&st);
    assert_eq!(s["states"]["open"], 25);
    assert_eq!(s["states"]["closed"], 65510);
    assert_eq!(s["states"]["filtered"], 0);
    assert_eq!(s["results"], 65535);
    assert_eq!(s["interrupted"], false);
    assert!(s["latency_us"]["open/syn-ack"]["p50"].as_u64().unwrap() > 0);
    drop(ls);
}

/// Default run, the original tool's job: localhost 1-1024, open ports as
/// `[OPEN] 127.0.0.1:22 ssh`, then the summary.
#[test]
fn no_arguments_scans_localhost_1_to_1024() {
    if !in_netns!(no_arguments_scans_localhost_1_to_1024) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80, 1024, 1025], 0);
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for want in [
        "[OPEN] 127.0.0.1:22 ssh",
        "[OPEN] 127.0.0.1:80 http",
        "[OPEN] 127.0.0.1:1024 ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want} missing from {text}"
        );
    }
    assert!(text.contains("1 host x 1024 ports"), "{text}");
    assert!(text.contains("open              3"), "{text}");
    assert!(text.contains("closed         1021"), "{text}");
    assert!(text.contains("p50"), "{text}");
    assert!(
        stderr(&o).is_empty(),
        "nothing on stderr when it is not a terminal"
    );
}

#[test]
fn ipv6_loopback() {
    if !in_netns!(ipv6_loopback) {
        return;
    }
    let ls = listeners("::1", &[], 3);
    let open: Vec<u16> = addrs(&ls).iter().map(|a| a.port()).collect();
    let dir = temp_dir("v6");
    let out = dir.join("out.jsonl");
    let spec = format!("1-100,{},{},{}", open[0], open[1], open[2]);
    let o = run(&[
        "-p",
        &spec,
        "--show",
        "all",
        "-oJ",
        out.to_str().unwrap(),
        "::1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_jsonl(&out);
    assert_eq!(got.len(), 103);
    for p in open {
        assert_eq!(got[&("::1".to_string(), p)], "open/syn-ack");
    }
    assert_eq!(got[&("::1".to_string(), 7)], "closed/conn-refused");
}

/// Dropped ports are filtered/no-response after timeout × (retries + 1);
/// `unreachable` and `prohibit` routes give host-unreach and
/// admin-prohibited, a missing route net-unreach.
#[test]
fn filtered_reasons() {
    if !in_netns!(filtered_reasons) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001], 0);
    drop_packets(&["ip daddr 127.0.0.1 tcp dport 7010-7019"]);
    sh("ip route add unreachable 198.18.1.0/24 && ip route add prohibit 198.18.2.0/24");
    let dir = temp_dir("filtered");
    let out = dir.join("out.jsonl");
    let st = dir.join("stats.json");
    let started = Instant::now();
    let o = run(&[
        "-p",
        "7000-7019",
        "--timeout",
        "300ms",
        "--retries",
        "1",
        "--show",
        "all",
        "-oJ",
        out.to_str().unwrap(),
        "--stats",
        st.to_str().unwrap(),
        "127.0.0.1",
        "198.18.1.1",
        "198.18.2.1",
        "198.19.0.1",
    ]);
    let elapsed = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_jsonl(&out);
    assert_eq!(got.len(), 80);
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for ((addr, port), state) in &got {
        let want = match (addr.as_str(), *port) {
            ("127.0.0.1", 7001) => "open/syn-ack",
            ("127.0.0.1", 7010..=7019) => "filtered/no-response",
            ("127.0.0.1", _) => "closed/conn-refused",
            ("198.18.1.1", _) => "filtered/host-unreach",
            ("198.18.2.1", _) => "filtered/admin-prohibited",
            ("198.19.0.1", _) => "filtered/net-unreach",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(state, want, "{addr}:{port}");
        *by_state.entry(state.clone()).or_default() += 1;
    }
    assert_eq!(by_state["filtered/no-response"], 10);
    // Each dropped port was tried retries + 1 = 2 times, each try a full timeout.
    let s = read_stats(&st);
    assert_eq!(s["attempts"], 80 + 10);
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

/// A router one hop away answers IPv6 SYNs with ICMPv6: no route
/// (2001:2:2::/64), administratively prohibited (2001:2:1::7, an nft
/// reject) or nothing (the rest of 2001:2:1::/64, a blackhole). The router
/// is a second namespace behind a veth pair, so its answers cross a link as
/// a real router's do. With `IPV6_RECVERR` each connect socket learns who
/// sent the unreachable: nmap's `reason_ip`, in the JSON lines and the XML
/// `<state>`, in both engines; the silent port has none. The router's
/// ICMPv6 rate limit is off: the kernel's default (a burst of six, then one
/// error per 250 ms to a destination behind a /64) would let the second
/// engine's run find some unreachables unanswered.
#[test]
fn ipv6_unreachables_name_their_router() {
    if !in_netns!(ipv6_unreachables_name_their_router) {
        return;
    }
    let mut router = std::process::Command::new("unshare")
        .args(["--net", "sleep", "600"])
        .spawn()
        .expect("start the router's namespace");
    let pid = router.id();
    let netns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while netns(&pid.to_string()) == netns("self") {
        assert!(Instant::now() < deadline, "the router's namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    sh(&format!(
        "ip link add v0 type veth peer name v1 && ip link set v1 netns {pid} && \
         ip -6 addr add 2001:2::1/64 dev v0 nodad && ip link set v0 up && \
         ip -6 route add 2001:2:1::/64 via 2001:2::2 && \
         ip -6 route add 2001:2:2::/64 via 2001:2::2"
    ));
    sh(&format!(
        "nsenter -t {pid} -n sh -c 'ip link set lo up && \
         ip -6 addr add 2001:2::2/64 dev v1 nodad && ip link set v1 up && \
         sysctl -qw net.ipv6.conf.all.forwarding=1 && \
         sysctl -qw net.ipv6.icmp.ratelimit=0 && \
         ip -6 route add blackhole 2001:2:1::/64 && \
         nft add table inet router && \
         nft add chain inet router pre \"{{ type filter hook prerouting priority 0; }}\" && \
         nft add rule inet router pre ip6 daddr 2001:2:1::7 reject with icmpv6 type admin-prohibited'"
    ));
    let dir = temp_dir("v6-router");
    for engine in ["mio", "threads"] {
        let json = dir.join(format!("{engine}.jsonl"));
        let xml = dir.join(format!("{engine}.xml"));
        let o = run(&[
            "--engine",
            engine,
            "-p",
            "80,443",
            "--timeout",
            "2s",
            "--retries",
            "0",
            "--show",
            "all",
            "-oJ",
            json.to_str().unwrap(),
            "-oX",
            xml.to_str().unwrap(),
            "2001:2:1::5",
            "2001:2:1::7",
            "2001:2:2::9",
        ]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        let text = std::fs::read_to_string(&json).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6, "{engine}: 3 hosts x 2 ports: {text}");
        for v in &lines {
            let (reason, router) = match v["addr"].as_str().unwrap() {
                "2001:2:1::5" => ("no-response", None),
                "2001:2:1::7" => ("admin-prohibited", Some("2001:2::2")),
                "2001:2:2::9" => ("net-unreach", Some("2001:2::2")),
                other => panic!("{engine}: unexpected {other}"),
            };
            assert_eq!(v["state"], "filtered", "{engine}: {v}");
            assert_eq!(v["reason"], reason, "{engine}: {v}");
            assert_eq!(v["reason_ip"].as_str(), router, "{engine}: {v}");
        }
        let xml = std::fs::read_to_string(&xml).unwrap();
        for reason in ["admin-prohibited", "net-unreach"] {
            let state = format!(
                r#"<state state="filtered" reason="{reason}" reason_ttl="0" reason_ip="2001:2::2"/>"#
            );
            assert_eq!(xml.matches(&state).count(), 2, "{engine}: {xml}");
        }
        let silent = r#"<state state="filtered" reason="no-response" reason_ttl="0"/>"#;
        assert_eq!(xml.matches(silent).count(), 2, "{engine}: {xml}");
    }
    let _ = router.kill();
    let _ = router.wait();
}

/// Ctrl-C: stop issuing, close what is in flight, flush every output, print
/// the summary, exit 130.
#[test]
fn interrupt_flushes_and_exits_130() {
    if !in_netns!(interrupt_flushes_and_exits_130) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[8000], 0);
    drop_packets(&["ip daddr 127.0.0.1 tcp dport 9000-9999"]);
    let dir = temp_dir("sigint");
    let out = dir.join("out.jsonl");
    let mut child = fastport()
        .args([
            // Closed ports first, then the dropped ones: index order.
            "--order",
            "sequential",
            "-p",
            "8000-9999",
            "--timeout",
            "10s",
            "--concurrency",
            "100",
            "--show",
            "all",
            "-oJ",
            out.to_str().unwrap(),
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the open port has been reported on stdout, then interrupt.
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("[OPEN] 127.0.0.1:8000") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stdout ended before the open port"
        );
    }
    sh(&format!("kill -INT {}", child.id()));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(rest.contains("Interrupted after"), "{rest}");
    let got = read_jsonl(&out); // every line complete and parseable
    assert_eq!(got[&("127.0.0.1".to_string(), 8000)], "open/syn-ack");
    // What finished is reported; the dropped ports were still in flight
    // (10 s timeout) and are not. How many closed ports the workers reached
    // before the signal depends on scheduling.
    assert!(got.len() <= 1000, "{}", got.len());
    for ((_, port), state) in &got {
        assert!(
            *port < 9000,
            "port {port} was in flight, yet reported {state}"
        );
    }
}

/// `fastport | head -1`: exit quietly, no panic, status 0.
#[test]
fn closed_stdout_is_a_quiet_end() {
    if !in_netns!(closed_stdout_is_a_quiet_end) {
        return;
    }
    let mut child = fastport()
        .args(["-p-", "--show", "all", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("[CLOSED] 127.0.0.1:"), "{first}");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// The two engines differ only in how they wait: on the same world they
/// report the same state and reason for every port, and spend the same
/// attempts.
#[test]
fn engines_agree() {
    if !in_netns!(engines_agree) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001, 7100, 40000], 0);
    drop_packets(&["ip daddr 127.0.0.1 tcp dport 7200-7204"]);
    sh("ip route add unreachable 198.18.1.0/24 && ip route add prohibit 198.18.2.0/24");
    let dir = temp_dir("engines");
    let mut results = Vec::new();
    for engine in ["mio", "threads"] {
        let out = dir.join(format!("{engine}.jsonl"));
        let st = dir.join(format!("{engine}.json"));
        let o = run(&[
            "--engine",
            engine,
            "-p",
            "7000-7300,40000",
            "--timeout",
            "200ms",
            "--retries",
            "2",
            "--concurrency",
            "64",
            "--show",
            "all",
            "-oJ",
            out.to_str().unwrap(),
            "--stats",
            st.to_str().unwrap(),
            "127.0.0.1",
            "198.18.1.1",
            "198.18.2.1",
        ]);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        let s = read_stats(&st);
        assert_eq!(s["engine"], engine);
        results.push((read_jsonl(&out), s["attempts"].clone(), s["states"].clone()));
    }
    let (mio, threads) = (&results[0], &results[1]);
    assert_eq!(mio.0.len(), 3 * 302);
    assert_eq!(mio.0, threads.0, "same state and reason for every port");
    assert_eq!(mio.1, threads.1, "same attempts");
    assert_eq!(
        mio.1,
        3 * 302 + 5 * 2,
        "each dropped port tried retries + 1 times"
    );
    assert_eq!(mio.2["open"], 3);
    assert_eq!(mio.2["filtered"], 5 + 2 * 302);
}
