//! The output formats, read by the real programs people feed them to:
//! xmllint against nmap.dtd, ndiff, python-libnmap and Python's csv module.
//! Scans run inside a private namespace. A consumer that is not installed
//! fails the test under `CI=true` (scripts/test installs them all) and
//! skips it, saying so, elsewhere.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::in_netns;
use crate::util::{
    drop_packets, fastport, listeners, read_jsonl, run, sh, stderr, stdout, temp_dir,
};

const NMAP_DTD: &str = "/usr/share/nmap/nmap.dtd";

/// Whether the consumer `what` can be run (`probe` exits 0). Under CI a
/// missing consumer is a failure, not a skip.
fn have(what: &str, probe: &[&str]) -> bool {
    let ok = Command::new(probe[0])
        .args(&probe[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{what} is missing (scripts/test installs it)"
        );
        eprintln!("skipped: {what} is not installed (scripts/test installs it)");
    }
    ok
}

fn have_xmllint() -> bool {
    have("xmllint", &["xmllint", "--version"]) && have("nmap.dtd", &["test", "-f", NMAP_DTD])
}

/// Runs a command, returning its output.
fn output(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

/// Validates an XML file against nmap's DTD.
fn assert_valid_nmap_xml(path: &Path) {
    let o = output(
        "xmllint",
        &["--noout", "--dtdvalid", NMAP_DTD, path.to_str().unwrap()],
    );
    assert!(
        o.status.success(),
        "{} is not valid nmap XML:\n{}\n{}",
        path.display(),
        stderr(&o),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Runs a Python script with arguments and parses what it prints as JSON.
fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(o.status.success(), "python3 failed:\n{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

const LIBNMAP_SCRIPT: &str = r#"
import json, sys
from libnmap.parser import NmapParser
r = NmapParser.parse_fromfile(sys.argv[1])
print(json.dumps({
    "up": r.hosts_up,
    "total": r.hosts_total,
    "hosts": {h.address: {
        "status": h.status,
        "ports": [[s.port, s.protocol, s.state, s.reason, s.service] for s in h.services],
    } for h in r.hosts},
}))
"#;

const CSV_SCRIPT: &str = r#"
import csv, json, sys
with open(sys.argv[1], newline="") as f:
    print(json.dumps(list(csv.DictReader(f))))
"#;

/// `-oA` and `-oC` on two hosts: four files plus the CSV, the XML valid
/// against nmap.dtd, and libnmap, the grepable lines and Python's csv
/// module all reading the same ports.
#[test]
fn every_format_reads_back_in_its_consumer() {
    let tools = have_xmllint()
        && have(
            "python-libnmap",
            &["python3", "-c", "import libnmap.parser"],
        );
    if !tools || !in_netns!(every_format_reads_back_in_its_consumer) {
        return;
    }
    let _v4 = listeners("127.0.0.1", &[22, 80, 443], 0);
    let _v6 = listeners("::1", &[8080], 0);
    let dir = temp_dir("formats");
    let base = dir.join("scan");
    let csv = dir.join("scan.csv");
    let o = run(&[
        "-p",
        "1-1024,8080",
        "-oA",
        base.to_str().unwrap(),
        "-oC",
        csv.to_str().unwrap(),
        "127.0.0.1",
        "::1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("[OPEN] 127.0.0.1:22 ssh"),
        "text on stdout too"
    );

    let file = |ext: &str| dir.join(format!("scan.{ext}"));
    let text = std::fs::read_to_string(file("txt")).unwrap();
    assert!(text.contains("[OPEN] [::1]:8080 http-alt"), "{text}");
    let jsonl = read_jsonl(&file("jsonl"));
    assert_eq!(jsonl.len(), 4, "{jsonl:?}");

    let xml = file("xml");
    assert_valid_nmap_xml(&xml);
    let report = python_json(LIBNMAP_SCRIPT, &[xml.to_str().unwrap()]);
    assert_eq!(report["up"], 2);
    assert_eq!(report["total"], 2);
    let ports = |addr: &str| report["hosts"][addr]["ports"].clone();
    assert_eq!(report["hosts"]["127.0.0.1"]["status"], "up");
    assert_eq!(
        ports("127.0.0.1"),
        serde_json::json!([
            [22, "tcp", "open", "syn-ack", "ssh"],
            [80, "tcp", "open", "syn-ack", "http"],
            [443, "tcp", "open", "syn-ack", "https"],
        ])
    );
    assert_eq!(
        ports("::1"),
        serde_json::json!([[8080, "tcp", "open", "syn-ack", "http-alt"]])
    );

    let gnmap = std::fs::read_to_string(file("gnmap")).unwrap();
    let lines: Vec<&str> = gnmap.lines().collect();
    assert_eq!(lines.len(), 7, "{gnmap}");
    assert!(lines[0].starts_with("# FastPort "), "{gnmap}");
    assert!(lines[1].starts_with("# order random, seed "), "{gnmap}");
    let mut hosts = lines[2..6].to_vec();
    hosts.sort_unstable();
    assert_eq!(
        hosts,
        [
            "Host: 127.0.0.1 ()\tPorts: 22/open/tcp//ssh///, 80/open/tcp//http///, 443/open/tcp//https///\tIgnored State: closed (1022)",
            "Host: 127.0.0.1 ()\tStatus: Up",
            "Host: ::1 ()\tPorts: 8080/open/tcp//http-alt///\tIgnored State: closed (1024)",
            "Host: ::1 ()\tStatus: Up",
        ]
    );
    assert!(
        lines[6].starts_with("# FastPort done at ")
            && lines[6].contains(" -- 2 IP addresses (2 hosts up) scanned in "),
        "{gnmap}"
    );

    let rows = python_json(CSV_SCRIPT, &[csv.to_str().unwrap()]);
    let mut rows: Vec<(String, u16, String, String, bool)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["addr"].as_str().unwrap().to_string(),
                r["port"].as_str().unwrap().parse().unwrap(),
                r["state"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["rtt_us"].as_str().unwrap().parse::<u32>().is_ok(),
            )
        })
        .collect();
    rows.sort();
    let open = |addr: &str, port| {
        (
            addr.to_string(),
            port,
            "open".into(),
            "syn-ack".into(),
            true,
        )
    };
    assert_eq!(
        rows,
        [
            open("127.0.0.1", 22),
            open("127.0.0.1", 80),
            open("127.0.0.1", 443),
            open("::1", 8080),
        ]
    );
}

/// ndiff, given two FastPort XML files, reports the port that closed
/// between them and nothing else.
#[test]
fn ndiff_reports_the_port_that_changed() {
    if !have("ndiff", &["ndiff", "--help"]) || !in_netns!(ndiff_reports_the_port_that_changed) {
        return;
    }
    let dir = temp_dir("ndiff");
    let (a, b) = (dir.join("a.xml"), dir.join("b.xml"));
    let scan = |out: &Path| {
        let o = run(&["-p", "20-90", "-oX", out.to_str().unwrap(), "127.0.0.1"]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let keep = listeners("127.0.0.1", &[22], 0);
    let gone = listeners("127.0.0.1", &[80], 0);
    scan(&a);
    drop(gone);
    scan(&b);
    drop(keep);

    let o = output("ndiff", &[a.to_str().unwrap(), b.to_str().unwrap()]);
    let diff = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "ndiff found differences:\n{diff}");
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with(['-', '+']) && l.contains("/tcp"))
        .collect();
    assert_eq!(changed.len(), 1, "{diff}");
    assert!(
        changed[0].starts_with("-80/tcp") && changed[0].contains("open"),
        "{diff}"
    );
    assert!(diff.contains("127.0.0.1"), "{diff}");
}

/// A host's records are written as soon as its last probe reports, while
/// the scan goes on; Ctrl-C then still leaves a valid XML document and a
/// complete grepable file.
#[test]
fn hosts_stream_out_and_an_interrupt_leaves_well_formed_files() {
    if !have_xmllint() || !in_netns!(hosts_stream_out_and_an_interrupt_leaves_well_formed_files) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[7001], 0);
    // 127.0.0.2 never answers: its probes wait for the 10 s timeout.
    drop_packets(&["ip daddr 127.0.0.2"]);
    let dir = temp_dir("stream");
    let (xml, gnmap) = (dir.join("x.xml"), dir.join("x.gnmap"));
    let mut child = fastport()
        .args([
            "-p",
            "7000-7009",
            "--timeout",
            "10s",
            "-oX",
            xml.to_str().unwrap(),
            "-oG",
            gnmap.to_str().unwrap(),
            "127.0.0.1",
            "127.0.0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(8);
    let host_line =
        "Host: 127.0.0.1 ()\tPorts: 7001/open/tcp//afs3-callback///\tIgnored State: closed (9)";
    loop {
        let x = std::fs::read_to_string(&xml).unwrap_or_default();
        let g = std::fs::read_to_string(&gnmap).unwrap_or_default();
        if x.contains("<address addr=\"127.0.0.1\"") && g.contains(host_line) {
            assert!(!x.contains("</nmaprun>"), "the scan is still running");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.1 was not written during the scan:\n{x}\n{g}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sh(&format!("kill -INT {}", child.id()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));

    assert_valid_nmap_xml(&xml);
    let x = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(x.matches("<host ").count(), 1, "{x}");
    assert!(x.contains(r#"exit="error""#), "{x}");
    assert!(x.trim_end().ends_with("</nmaprun>"), "{x}");
    let g = std::fs::read_to_string(&gnmap).unwrap();
    let last = g.lines().last().unwrap();
    assert!(last.starts_with("# FastPort interrupted at "), "{g}");
}

/// `-oX -` makes stdout the XML document alone; the summary moves to
/// stderr. Another output may be a device.
#[test]
fn xml_on_stdout_is_all_of_stdout() {
    if !have_xmllint() || !in_netns!(xml_on_stdout_is_all_of_stdout) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22], 0);
    // /dev/null cannot be truncated, and need not be.
    let o = run(&["-p", "1-100", "-oX", "-", "-oG", "/dev/null", "127.0.0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = temp_dir("xml-stdout");
    let path = dir.join("out.xml");
    std::fs::write(&path, &o.stdout).unwrap();
    assert_valid_nmap_xml(&path);
    assert!(stderr(&o).contains("Scanned 1 host"), "{}", stderr(&o));
}

/// `fastport completions SHELL` and `fastport manpage` print documents made
/// from the CLI definition; only the first word counts, so a host named
/// like one is still a target after `--`.
#[test]
fn completions_and_manpage() {
    for (shell, needle) in [
        ("bash", "--output-xml"),
        ("zsh", "--output-grepable"),
        ("fish", "output-csv"),
    ] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(stdout(&o).contains(needle), "{shell}: {}", stdout(&o));
    }
    let o = run(&["manpage"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let man = stdout(&o);
    assert!(man.contains(".TH fastport"), "{man}");
    assert!(man.contains("output\\-xml"), "{man}");
    assert!(man.contains("completions"), "{man}");

    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    // With `--` first, "manpage" is a host name (refused by -n, before any probe).
    let o = run(&["-n", "--", "manpage"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("manpage"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

/// `--stats-every` prints nmap-style status lines on stderr when it is not
/// a terminal.
#[test]
fn stats_every_prints_status_lines() {
    if !in_netns!(stats_every_prints_status_lines) {
        return;
    }
    // Dropped ports keep the scan going past the first tick.
    drop_packets(&["ip daddr 127.0.0.1 tcp dport 7005-7009"]);
    let o = run(&[
        "-p",
        "7000-7009",
        "--timeout",
        "300ms",
        "--stats-every",
        "100ms",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("Stats: "))
        .unwrap_or_else(|| panic!("no status line:\n{err}"));
    assert!(
        line.contains(" elapsed; ") && line.contains("/10 probes ("),
        "{line}"
    );
    assert!(line.contains(" probes/s; ETA "), "{line}");
}
