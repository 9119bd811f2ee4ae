//! Adaptive timing end to end, in a private namespace: the default (no
//! `--timeout`) stays exact, learns loopback's RTT, and spends its waits on
//! dropped ports at `--min-rtt-timeout` instead of a fixed second; answers
//! that come only to retries cut the window. Assertions are on results,
//! attempts and the summary's timing, never on wall-clock time.

use std::collections::BTreeMap;

use crate::in_netns;
use crate::util::{drop_packets, listeners, read_jsonl, read_stats, run, stderr, temp_dir};

/// Drops SYNs to 127.0.0.1 ports `ports` (an nft range) with `extra`
/// conditions before the verdict.
fn drop_rule(ports: &str, extra: &str) {
    drop_packets(&[&format!("ip daddr 127.0.0.1 tcp dport {ports} {extra}")]);
}

/// Scans 127.0.0.1 `ports` with `args`; returns results and the summary.
fn scan(
    name: &str,
    ports: &str,
    args: &[&str],
) -> (BTreeMap<(String, u16), String>, serde_json::Value) {
    let dir = temp_dir(name);
    let out = dir.join("out.jsonl");
    let st = dir.join("stats.json");
    let mut argv = vec![
        "-p",
        ports,
        "--show",
        "all",
        "-oJ",
        out.to_str().unwrap(),
        "--stats",
        st.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    argv.push("127.0.0.1");
    let o = run(&argv);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    (read_jsonl(&out), read_stats(&st))
}

/// Open 7001 and 7050, dropped 7100-7199, the rest closed.
fn truth(port: u16) -> &'static str {
    match port {
        7001 | 7050 => "open/syn-ack",
        7100..=7199 => "filtered/no-response",
        _ => "closed/conn-refused",
    }
}

/// The default is adaptive and exact; it learns loopback's microsecond RTT,
/// so its timeout ends at `--min-rtt-timeout` (100 ms) rather than the
/// fixed second, and a port no host ever needed a second retry for gets one
/// retry: the same attempts as `--timeout 1s --retries 1`.
#[test]
fn a_filtered_heavy_world_waits_min_rtt_timeout_not_a_second() {
    if !in_netns!(a_filtered_heavy_world_waits_min_rtt_timeout_not_a_second) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001, 7050], 0);
    drop_rule("7100-7199", "");
    let (adaptive, a) = scan("timing-adaptive", "7000-7199", &[]);
    let (fixed, f) = scan("timing-fixed", "7000-7199", &["--timeout", "1s"]);
    assert_eq!(adaptive.len(), 200);
    for ((_, port), got) in &adaptive {
        assert_eq!(got, truth(*port), "{port}");
    }
    assert_eq!(adaptive, fixed, "the same answers");
    let (ta, tf) = (&a["timing"], &f["timing"]);
    assert_eq!(ta["adaptive"], true);
    assert_eq!(tf["adaptive"], false);
    assert_eq!(tf["timeout_us"], 1_000_000);
    assert_eq!(
        ta["timeout_us"], 100_000,
        "learnt: srtt + 4 rttvar < 100 ms"
    );
    assert!(ta["srtt_us"].as_u64().unwrap() < 50_000, "{ta}");
    assert!(ta["samples"].as_u64().unwrap() >= 90, "{ta}");
    assert_eq!(ta["karn_skipped"], 0);
    // One retry per dropped port, as with --retries 1.
    assert_eq!(a["attempts"], 200 + 100);
    assert_eq!(f["attempts"], 200 + 100);
    assert_eq!(a["probes_per_port"], 1.5);
}

/// The lab's default worlds run without --timeout: the same must hold for
/// both engines here, port for port and attempt for attempt.
#[test]
fn engines_agree_with_adaptive_timing() {
    if !in_netns!(engines_agree_with_adaptive_timing) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001, 7050], 0);
    drop_rule("7100-7199", "");
    let (mio, m) = scan("timing-mio", "7000-7199", &["--engine", "mio"]);
    let (threads, t) = scan(
        "timing-threads",
        "7000-7199",
        &["--engine", "threads", "--concurrency", "64"],
    );
    assert_eq!(mio, threads);
    for ((_, port), got) in &threads {
        assert_eq!(got, truth(*port), "{port}");
    }
    assert_eq!(m["attempts"], t["attempts"]);
    assert_eq!(t["timing"]["adaptive"], true);
    assert_eq!(
        t["timing"]["window"], 64,
        "the threads engine's window is its threads"
    );
}

/// Timing templates run and say what they set; `-T5` waits at most 300 ms.
#[test]
fn templates_run_exactly() {
    if !in_netns!(templates_run_exactly) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001, 7050], 0);
    drop_rule("7100-7109", "");
    for template in ["-T5", "-T4", "--timing=insane"] {
        let (got, s) = scan("timing-t", "7000-7109", &[template]);
        assert_eq!(got.len(), 110, "{template}");
        for ((_, port), state) in &got {
            assert_eq!(state, truth(*port), "{template} {port}");
        }
        let timeout = s["timing"]["timeout_us"].as_u64().unwrap();
        assert!(timeout <= 1_250_000, "{template}: {timeout}");
    }
}

/// Random loss on a port range: when more than 1/8 of a round's ports
/// answer only to a retry, the congestion window is cut, and the host earns
/// more retries (nmap's rule); the summary counts probes per port.
#[test]
fn answers_to_retries_cut_the_window() {
    if !in_netns!(answers_to_retries_cut_the_window) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001], 0);
    // A third of the SYNs to 7000-7299 vanish.
    drop_rule("7000-7299", "numgen random mod 3 == 0");
    // A small window, so that rounds (a window's worth of answers) end
    // many times within the scan.
    let (got, s) = scan(
        "timing-lossy",
        "7000-7299",
        &["--max-retries", "10", "--concurrency", "16"],
    );
    assert_eq!(got.len(), 300);
    for ((_, port), state) in &got {
        // A port may be missed (all its tries lost) but never misreported.
        if state != "filtered/no-response" {
            let want = if *port == 7001 {
                "open/syn-ack"
            } else {
                "closed/conn-refused"
            };
            assert_eq!(state, want, "{port}");
        }
    }
    let t = &s["timing"];
    assert!(t["window_cuts"].as_u64().unwrap() >= 1, "{t}");
    let ppp = s["probes_per_port"].as_f64().unwrap();
    assert!(ppp > 1.2, "a third lost: {ppp}");
    let missed = got
        .values()
        .filter(|s| *s == "filtered/no-response")
        .count();
    assert!(missed <= 10, "retries recovered most: {missed} missed");
}

/// Where the namespace tracks connections (here: a rule that needs
/// nf_conntrack), the scan says so once on stderr and keeps unanswered
/// connects under what the table holds; without tracking, or with
/// `--ignore-conntrack`, it says nothing. The answers are the same.
#[test]
fn connection_tracking_is_detected_and_said_once() {
    if !in_netns!(connection_tracking_is_detected_and_said_once) {
        return;
    }
    if !std::path::Path::new("/proc/sys/net/netfilter/nf_conntrack_max").exists() {
        eprintln!("connection_tracking_is_detected_and_said_once: skipped: no nf_conntrack");
        return;
    }
    let note = "connection tracking is active here";
    let _ls = listeners("127.0.0.1", &[7201], 0);
    let plain = scan("ct-plain", "7200-7209", &[]);
    let o = run(&["-p", "7200-7209", "127.0.0.1"]);
    assert!(!stderr(&o).contains(note), "{}", stderr(&o));
    crate::util::sh(
        "nft add table inet fastport_ct \
         && nft add chain inet fastport_ct out '{ type filter hook output priority 0; }' \
         && nft add rule inet fastport_ct out ct state new counter",
    );
    let o = run(&["-p", "7200-7209", "127.0.0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches(note).count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--ignore-conntrack"), "{}", stderr(&o));
    let o = run(&["--ignore-conntrack", "-p", "7200-7209", "127.0.0.1"]);
    assert!(!stderr(&o).contains(note), "{}", stderr(&o));
    let tracked = scan("ct-tracked", "7200-7209", &[]);
    assert_eq!(plain.0, tracked.0, "the same answers");
}
