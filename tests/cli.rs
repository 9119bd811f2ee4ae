//! Bad input: one clear line naming what was wrong, exit status 2, no probe
//! sent and no earlier output lost. Run in a namespace so that even a
//! regression could not send a packet anywhere.

use crate::in_netns;
use crate::util::{listeners, run, stderr, stdout, temp_dir};

/// Runs fastport with `args` and checks the usage-error contract.
fn rejects(args: &[&str], needle: &str) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line expected, got {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should name {needle:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn bad_input_is_named_and_exits_2() {
    if !in_netns!(bad_input_is_named_and_exits_2) {
        return;
    }
    rejects(&["198.18.0.300"], "198.18.0.300");
    rejects(&["198.18.0.0/33"], "198.18.0.0/33");
    rejects(&["127.0.0.20-10"], "127.0.0.20-10");
    rejects(&["127.0.0.9-127.0.0.1"], "127.0.0.9-127.0.0.1");
    rejects(&["-p", "0", "127.0.0.1"], "0");
    rejects(&["-p", "22,70000", "127.0.0.1"], "70000");
    rejects(&["-p", "100-1", "127.0.0.1"], "100-1");
    rejects(&["-p", "22,,80", "127.0.0.1"], "22,,80");
    rejects(
        &["-iL", "/nonexistent/targets.txt"],
        "/nonexistent/targets.txt",
    );
    rejects(&["no-such-host.invalid"], "no-such-host.invalid");
    rejects(&["--no-resolve", "localhost"], "localhost");
    rejects(
        &["-oJ", "/nonexistent/dir/out.jsonl", "127.0.0.1"],
        "/nonexistent/dir/out.jsonl",
    );
    rejects(&["--timeout", "soon", "127.0.0.1"], "soon");
    rejects(&["--show", "opne", "127.0.0.1"], "opne");
    rejects(&["--threads", "0", "127.0.0.1"], "--threads");
    rejects(&["--frobnicate", "127.0.0.1"], "--frobnicate");
}

#[test]
fn a_bad_argument_does_not_clobber_earlier_results() {
    if !in_netns!(a_bad_argument_does_not_clobber_earlier_results) {
        return;
    }
    let dir = temp_dir("clobber");
    let kept = dir.join("kept.txt");
    std::fs::write(&kept, "earlier results\n").unwrap();
    let kept_s = kept.to_str().unwrap();
    // A bad port, then an unwritable second output: the first file survives both.
    rejects(&["-oN", kept_s, "-p", "0", "127.0.0.1"], "0");
    rejects(
        &["-oN", kept_s, "-oJ", "/nonexistent/x.jsonl", "127.0.0.1"],
        "/nonexistent/x.jsonl",
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "earlier results\n");
}

#[test]
fn help_and_version_exit_0() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "-iL",
        "--exclude",
        "--top-ports",
        "--timeout",
        "--retries",
        "--concurrency",
        "--threads",
        "--show",
        "--reason",
        "--stats",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(version.starts_with("fastport 0."), "{version}");
    assert!(
        version.contains(" (commit "),
        "--version names the commit it was built from: {version}"
    );
}

/// `fastport -sT -Pn -T4 --open -p 1-1000 127.0.0.1` failed on `-s`.
#[test]
fn an_nmap_command_line_scans() {
    if !in_netns!(an_nmap_command_line_scans) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80], 0);
    let dir = temp_dir("nmap-line");
    let gnmap = dir.join("out.gnmap");
    let out = run(&[
        "-sT",
        "-Pn",
        "-n",
        "-T4",
        "--open",
        "-p",
        "1-1000",
        "-oG",
        gnmap.to_str().unwrap(),
        "127.0.0.1",
        "127.0.0.2",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "no notes without -v: {err}");
    let text = stdout(&out);
    assert!(text.contains("22/tcp open  ssh"), "{text}");
    assert!(
        text.contains("Not shown: 998 closed tcp ports (conn-refused)"),
        "{text}"
    );
    let gnmap = std::fs::read_to_string(&gnmap).unwrap();
    assert!(
        gnmap.contains("Host: 127.0.0.1 ()\tStatus: Up\n"),
        "{gnmap}"
    );
    assert!(
        !gnmap.contains("127.0.0.2 ()"),
        "--open leaves out a host without an open port: {gnmap}"
    );
    // -v says what the accepted flags did not change.
    let out = run(&["-v", "-sT", "-Pn", "-p", "22", "127.0.0.1"]);
    assert!(
        stderr(&out).contains("note: -Pn: FastPort never pings"),
        "{}",
        stderr(&out)
    );
    // -q: no notes.
    let out = run(&["-q", "--concurrency", "100000", "-p", "22", "127.0.0.1"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn nmap_flags_fastport_cannot_honour_are_one_line_each() {
    if !in_netns!(nmap_flags_fastport_cannot_honour_are_one_line_each) {
        return;
    }
    rejects(&["-sS", "127.0.0.1"], "-sS (SYN scan) needs raw packets");
    rejects(&["-sU", "127.0.0.1"], "-sU");
    rejects(&["-O", "127.0.0.1"], "-O (OS detection)");
    rejects(&["-A", "127.0.0.1"], "-A means");
    rejects(
        &["--script", "default", "127.0.0.1"],
        "NSE scripts are nmap's",
    );
    rejects(
        &["-PE", "127.0.0.1"],
        "-PE: FastPort sends no discovery probes",
    );
    rejects(
        &["--open", "--show", "all", "127.0.0.1"],
        "--open and --show",
    );
}

/// `fastport -oL - ... | sort` gets results only; the summary goes to stderr.
#[test]
fn list_output_is_for_pipes() {
    if !in_netns!(list_output_is_for_pipes) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80], 0);
    let out = run(&["-oL", "-", "-p", "1-100", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["127.0.0.1:22", "127.0.0.1:80"], "{text}");
    assert!(
        stderr(&out).contains("1 host x 100 ports"),
        "{}",
        stderr(&out)
    );
}

/// A target given by name lost its name in every output.
#[test]
fn names_are_kept_in_every_output() {
    if !in_netns!(names_are_kept_in_every_output) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22], 0);
    let dir = temp_dir("names");
    let base = dir.join("scan");
    let csv = dir.join("scan.csv");
    let out = run(&[
        "-p",
        "22,23",
        "-oA",
        base.to_str().unwrap(),
        "-oC",
        csv.to_str().unwrap(),
        "localhost",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let file = |ext: &str| std::fs::read_to_string(dir.join(format!("scan.{ext}"))).unwrap();
    let xml = file("xml");
    assert!(
        xml.contains(r#"<hostname name="localhost" type="user"/>"#),
        "{xml}"
    );
    assert!(
        file("jsonl").contains(r#""addr":"127.0.0.1","host":"localhost","port":22"#),
        "{}",
        file("jsonl")
    );
    assert!(
        file("gnmap").contains("Host: 127.0.0.1 (localhost)\tStatus: Up\n"),
        "{}",
        file("gnmap")
    );
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .contains(",localhost\n"),
        "{}",
        std::fs::read_to_string(&csv).unwrap()
    );
    let text = file("txt");
    assert!(
        text.starts_with("# FastPort "),
        "-oN opens with nmap's header: {text}"
    );
    assert!(
        text.contains("FastPort scan report for localhost (127.0.0.1)"),
        "{text}"
    );
    assert!(
        text.contains("[OPEN] 127.0.0.1:22 ssh (localhost)"),
        "{text}"
    );
}

/// A name that did not resolve stopped the whole scan.
#[test]
fn an_unresolvable_name_is_reported_and_skipped() {
    if !in_netns!(an_unresolvable_name_is_reported_and_skipped) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22], 0);
    let out = run(&["-p", "22", "no-such-host.invalid", "127.0.0.1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("cannot resolve hostname \"no-such-host.invalid\"") && err.contains("skipped"),
        "{err}"
    );
    let text = stdout(&out);
    assert!(text.contains("[OPEN] 127.0.0.1:22"), "{text}");
    assert!(text.contains("names not resolved (skipped): 1"), "{text}");
}

/// The XML hosts (address, user-given names, open ports) and the grepable
/// `Status: Up` hosts of one output pair, for comparing FastPort with nmap.
fn hosts_seen(xml: &str, gnmap: &str) -> (Vec<String>, Vec<String>) {
    let mut records = Vec::new();
    for host in xml.split("<host ").skip(1) {
        let host = host.split("</host>").next().unwrap_or_default();
        let field = |tag: &str, attr: &str| -> Vec<String> {
            host.split(&format!("<{tag} "))
                .skip(1)
                .filter_map(|t| {
                    let rest = t.split(&format!("{attr}=\"")).nth(1)?;
                    Some(rest.split('"').next()?.to_string())
                })
                .collect()
        };
        let open: Vec<String> = host
            .split("<port ")
            .skip(1)
            .filter(|p| p.contains("state=\"open\""))
            .filter_map(|p| {
                p.split("portid=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(String::from)
            })
            .collect();
        records.push(format!(
            "{} names={:?} types={:?} open={open:?}",
            field("address", "addr").join(","),
            field("hostname", "name"),
            field("hostname", "type"),
        ));
    }
    records.sort();
    let mut up: Vec<String> = gnmap
        .lines()
        .filter(|l| l.ends_with("\tStatus: Up"))
        .filter_map(|l| {
            l.strip_prefix("Host: ")?
                .split(' ')
                .next()
                .map(String::from)
        })
        .collect();
    up.sort();
    (records, up)
}

/// nmap and FastPort, same flags, same world: `--open` leaves out the same
/// hosts, a name given on the command line is recorded the same way in the
/// XML, and the grepable `Status: Up` lines name the same hosts.
#[test]
fn open_and_hostnames_match_nmap() {
    let nmap_found = std::process::Command::new("nmap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !nmap_found {
        eprintln!("skipped: nmap is not installed (../shared/peers/install.sh)");
        return;
    }
    if !in_netns!(open_and_hostnames_match_nmap) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80], 0);
    let dir = temp_dir("vs-nmap");
    let outputs = |who: &str| -> (String, String) {
        let (xml, gnmap) = (
            dir.join(format!("{who}.xml")),
            dir.join(format!("{who}.gnmap")),
        );
        let args = [
            "-sT",
            "-Pn",
            "-n",
            "--open",
            "-p",
            "1-100",
            "-oX",
            xml.to_str().unwrap(),
            "-oG",
            gnmap.to_str().unwrap(),
            "localhost",
            "127.0.0.2",
        ];
        let out = if who == "nmap" {
            std::process::Command::new("nmap")
                .args(args)
                .output()
                .unwrap()
        } else {
            run(&args)
        };
        assert!(out.status.success(), "{who}: {}", stderr(&out));
        (
            std::fs::read_to_string(xml).unwrap(),
            std::fs::read_to_string(gnmap).unwrap(),
        )
    };
    let (nmap_xml, nmap_gnmap) = outputs("nmap");
    let (fp_xml, fp_gnmap) = outputs("fastport");
    let (nmap_hosts, nmap_up) = hosts_seen(&nmap_xml, &nmap_gnmap);
    let (fp_hosts, fp_up) = hosts_seen(&fp_xml, &fp_gnmap);
    assert_eq!(
        nmap_hosts,
        [r#"127.0.0.1 names=["localhost"] types=["user"] open=["22", "80"]"#],
        "the world is as expected: {nmap_xml}"
    );
    assert_eq!(
        fp_hosts, nmap_hosts,
        "XML hosts differ:\n{fp_xml}\n{nmap_xml}"
    );
    assert_eq!(
        fp_up, nmap_up,
        "grepable hosts differ:\n{fp_gnmap}\n{nmap_gnmap}"
    );
    // nmap's grepable puts a reverse-DNS name in the parentheses (none with
    // -n); FastPort puts the name the user gave, as its XML does.
    assert!(
        fp_gnmap.contains("Host: 127.0.0.1 (localhost)\tStatus: Up"),
        "{fp_gnmap}"
    );
}
