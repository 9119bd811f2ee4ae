//! Nothing is lost or counted twice by resume, shards or merge, and
//! outputs close cleanly whatever ends the run: each test is named after
//! the way a result used to be lost or misstated. Scans run inside a
//! private network namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::in_netns;
use crate::util::{fastport, listeners, read_jsonl, signal_after, stderr, temp_dir};

/// 1500 ports of 127.0.0.1 at 1000 connects a second: long enough to
/// interrupt, short enough to finish.
const SLOW: &[&str] = &["-p", "1-1500", "--show", "all", "--rate", "1000"];

fn start(dir: &Path, args: &[&str]) -> Child {
    fastport()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fastport")
}

fn finish(dir: &Path, args: &[&str]) -> Output {
    start(dir, args).wait_with_output().unwrap()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Parses an XML file from start to end (quick-xml checks that tags match).
fn assert_well_formed_xml(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0i32;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed XML: {e}", path.display()),
        }
    }
    assert_eq!(depth, 0, "{}: unclosed elements", path.display());
}

/// The run: interrupted, then resumed with the same `-oJ` file
/// named again (and with no other output named). Every output of the
/// first run is continued: all results once, one header, XML whole.
#[test]
fn resume_overwrote_the_first_part_of_its_outputs() {
    if !in_netns!(resume_overwrote_the_first_part_of_its_outputs) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80, 443, 1234], 0);
    let dir = temp_dir("resume-continues");
    let mut args = SLOW.to_vec();
    args.extend([
        "-oJ",
        "part1.jsonl",
        "-oX",
        "scan.xml",
        "-oG",
        "scan.gnmap",
        "-oC",
        "scan.csv",
        "-oN",
        "scan.txt",
        "127.0.0.1",
    ]);
    let o = signal_after(start(&dir, &args), "INT", Duration::from_millis(500));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let first = read_jsonl(&dir.join("part1.jsonl"));
    assert!(!first.is_empty() && first.len() < 1500, "{}", first.len());
    assert!(dir.join("fastport.resume").exists());

    let o = finish(&dir, &["--resume", "fastport.resume", "-oJ", "part1.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = read_jsonl(&dir.join("part1.jsonl"));
    assert_eq!(all.len(), 1500, "every port once, the first part kept");
    for (key, state) in &first {
        assert_eq!(all.get(key), Some(state), "{key:?} of the first part");
    }
    let open: Vec<u16> = all
        .iter()
        .filter(|(_, s)| s.starts_with("open"))
        .map(|((_, p), _)| *p)
        .collect();
    assert_eq!(open, [22, 80, 443, 1234]);

    let csv = std::fs::read_to_string(dir.join("scan.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 1500, "one header, every row once");
    assert_eq!(count(&csv, "addr,port"), 1);
    let xml = std::fs::read_to_string(dir.join("scan.xml")).unwrap();
    assert_well_formed_xml(&dir.join("scan.xml"));
    assert_eq!(count(&xml, "<nmaprun"), 1);
    assert_eq!(count(&xml, "<runstats>"), 1);
    assert_eq!(count(&xml, "<port protocol=\"tcp\" portid=\"443\""), 1);
    let gnmap = std::fs::read_to_string(dir.join("scan.gnmap")).unwrap();
    assert_eq!(count(&gnmap, "scan initiated"), 1);
    assert_eq!(count(&gnmap, "# FastPort done"), 1);
    assert_eq!(count(&gnmap, "# FastPort interrupted"), 0);
    assert!(
        gnmap
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("# FastPort done")
    );
    let txt = std::fs::read_to_string(dir.join("scan.txt")).unwrap();
    assert_eq!(txt.lines().filter(|l| l.starts_with('[')).count(), 1500);
    assert_eq!(count(&txt, "Interrupted after"), 0, "{txt}");
    assert_eq!(
        count(&txt, "\nScanned 1 host x 1500 ports: 1500 results"),
        1
    );

    // Finished: resuming again is refused, nothing rescanned.
    let o = finish(&dir, &["--resume", "fastport.resume"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a finished run"), "{}", stderr(&o));
    assert_eq!(read_jsonl(&dir.join("part1.jsonl")), all);
}

/// A second interrupted scan in the same directory used to replace the
/// first one's resume file.
#[test]
fn a_second_interrupted_scan_replaced_the_first_resume_file() {
    if !in_netns!(a_second_interrupted_scan_replaced_the_first_resume_file) {
        return;
    }
    let dir = temp_dir("resume-names");
    let mut args = SLOW.to_vec();
    args.extend(["-oJ", "a.jsonl", "127.0.0.1"]);
    let o = signal_after(start(&dir, &args), "TERM", Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let first = std::fs::read(dir.join("fastport.resume")).unwrap();
    let at = args.len() - 2;
    args[at] = "b.jsonl";
    let o = signal_after(start(&dir, &args), "TERM", Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("fastport-2.resume"), "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.join("fastport.resume")).unwrap(), first);

    // The first run's output is gone: its resume says so and stays usable.
    std::fs::remove_file(dir.join("a.jsonl")).unwrap();
    let o = finish(&dir, &["--resume", "fastport.resume"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("a.jsonl") && err.contains("it is gone"),
        "{err}"
    );
    let o = finish(&dir, &["--resume", "fastport.resume", "-oJ", "rest.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!read_jsonl(&dir.join("rest.jsonl")).is_empty());
}

/// SIGHUP (a closed terminal) used to end the run with 129, no resume file
/// and the XML cut mid-record (the JSON lines empty with the threads
/// engine).
#[test]
fn sighup_lost_the_resume_file_and_cut_the_xml() {
    if !in_netns!(sighup_lost_the_resume_file_and_cut_the_xml) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22], 0);
    for engine in ["mio", "threads"] {
        let dir = temp_dir(&format!("sighup-{engine}"));
        let mut args = SLOW.to_vec();
        args.extend([
            "--engine",
            engine,
            "-oX",
            "scan.xml",
            "-oJ",
            "scan.jsonl",
            "127.0.0.1",
        ]);
        let o = signal_after(start(&dir, &args), "HUP", Duration::from_millis(400));
        assert_eq!(o.status.code(), Some(130), "{engine}: {}", stderr(&o));
        assert!(dir.join("fastport.resume").exists(), "{engine}");
        assert_well_formed_xml(&dir.join("scan.xml"));
        assert!(!read_jsonl(&dir.join("scan.jsonl")).is_empty(), "{engine}");
        let o = finish(&dir, &["--resume", "fastport.resume"]);
        assert_eq!(o.status.code(), Some(0), "{engine}: {}", stderr(&o));
        assert_eq!(read_jsonl(&dir.join("scan.jsonl")).len(), 1500, "{engine}");
        assert_well_formed_xml(&dir.join("scan.xml"));
    }
}

fn merge(dir: &Path, args: &[&str]) -> Output {
    fastport()
        .arg("merge")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Shards that were interrupted and resumed (into a second result file)
/// merge to the whole scan; a shard not resumed to its end, a result file
/// cut short, and an input named as the output are refused, and nothing
/// is written.
#[test]
fn merge_misstated_interrupted_cut_short_and_self_overwriting_shards() {
    if !in_netns!(merge_misstated_interrupted_cut_short_and_self_overwriting_shards) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80, 443, 1234, 1400], 0);
    let dir = temp_dir("merge-resumed");
    let shard = |k: u32| {
        let mut args = SLOW.to_vec();
        args.extend(["--seed", "99", "--shard"]);
        args.push(if k == 1 { "1/2" } else { "2/2" });
        args
    };
    // Shard 1: interrupted, its stats copied aside, then resumed into part b.
    let mut a1 = shard(1);
    a1.extend(["-oJ", "s1a.jsonl", "--stats", "s1.json", "127.0.0.1"]);
    let o = signal_after(start(&dir, &a1), "INT", Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    std::fs::copy(dir.join("s1.json"), dir.join("s1-interrupted.json")).unwrap();
    let o = finish(
        &dir,
        &["--resume", "fastport-1-of-2.resume", "-oJ", "s1b.jsonl"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Shard 2: whole.
    let mut a2 = shard(2);
    a2.extend(["-oJ", "s2.jsonl", "--stats", "s2.json", "127.0.0.1"]);
    let o = finish(&dir, &a2);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let inputs = ["s1a.jsonl", "s1b.jsonl", "s2.jsonl", "s1.json", "s2.json"];
    let mut args = vec!["-oJ", "all.jsonl", "--stats", "all.json"];
    args.extend(inputs);
    let o = merge(&dir, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = read_jsonl(&dir.join("all.jsonl"));
    assert_eq!(all.len(), 1500);
    let open: BTreeMap<_, _> = all.iter().filter(|(_, s)| s.starts_with("open")).collect();
    assert_eq!(open.len(), 5, "every open port: {open:?}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("all.json")).unwrap()).unwrap();
    assert_eq!(m["results"], 1500);
    assert_eq!(m["states"]["open"], 5);
    assert_eq!(m["shard"], "1/1");
    assert!(m["timing"].is_object(), "timing kept: {m}");

    let refused = |args: &[&str], needle: &str| {
        let o = merge(&dir, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!dir.join("out.jsonl").exists(), "nothing written");
    };
    // The shard's interrupted summary instead of the resumed one.
    refused(
        &[
            "-oJ",
            "out.jsonl",
            "s1a.jsonl",
            "s1b.jsonl",
            "s2.jsonl",
            "s1-interrupted.json",
            "s2.json",
        ],
        "stopped after",
    );
    // The resumed part's results left out.
    refused(
        &[
            "-oJ",
            "out.jsonl",
            "s1a.jsonl",
            "s2.jsonl",
            "s1.json",
            "s2.json",
        ],
        "a result file is missing, cut short",
    );
    // A result file cut short (as a full disk leaves it).
    let text = std::fs::read_to_string(dir.join("s2.jsonl")).unwrap();
    let cut: String = text.lines().skip(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("s2-cut.jsonl"), cut).unwrap();
    refused(
        &[
            "-oJ",
            "out.jsonl",
            "s1a.jsonl",
            "s1b.jsonl",
            "s2-cut.jsonl",
            "s1.json",
            "s2.json",
        ],
        "cut short",
    );
    // The output is an input: refused before it is truncated.
    let before = std::fs::read(dir.join("s1a.jsonl")).unwrap();
    let mut args = vec!["-oJ", "s1a.jsonl"];
    args.extend(inputs);
    refused(&args, "both an input and the output");
    assert_eq!(std::fs::read(dir.join("s1a.jsonl")).unwrap(), before);
}

/// `-oJ f -oC f` used to be accepted, the two formats interleaved.
#[test]
fn two_outputs_naming_one_file_interleaved() {
    if !in_netns!(two_outputs_naming_one_file_interleaved) {
        return;
    }
    let dir = temp_dir("same-file");
    std::fs::write(dir.join("f"), "earlier\n").unwrap();
    std::fs::hard_link(dir.join("f"), dir.join("g")).unwrap();
    for args in [
        ["-oJ", "f", "-oC", "f", "-p", "1", "127.0.0.1"],
        ["-oJ", "f", "-oC", "g", "-p", "1", "127.0.0.1"],
    ] {
        let o = finish(&dir, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("both name"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "earlier\n");
    }
}

/// A named output that closes (a FIFO whose reader left) used to end the
/// run with status 0 and no word.
#[test]
fn a_fifo_whose_reader_left_ended_the_run_quietly() {
    if !in_netns!(a_fifo_whose_reader_left_ended_the_run_quietly) {
        return;
    }
    let dir = temp_dir("fifo");
    let fifo: PathBuf = dir.join("results.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut f = std::fs::File::open(&fifo).unwrap();
            let mut buf = [0u8; 64];
            let _ = f.read(&mut buf);
            // The reader leaves after its first read.
        })
    };
    let mut args = SLOW.to_vec();
    args.extend(["-oJ", fifo.to_str().unwrap(), "127.0.0.1"]);
    let o = finish(&dir, &args);
    reader.join().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("results.fifo"), "{err}");
}

/// A resumed run killed (or crashed)
/// after appending to the outputs used to leave its resume file as it was,
/// so resuming it again wrote those results a second time.
#[test]
fn a_resumed_run_killed_mid_way_let_a_later_resume_write_results_twice() {
    if !in_netns!(a_resumed_run_killed_mid_way_let_a_later_resume_write_results_twice) {
        return;
    }
    let dir = temp_dir("resume-killed");
    let mut args = SLOW.to_vec();
    args.extend(["-oJ", "scan.jsonl", "127.0.0.1"]);
    let o = signal_after(start(&dir, &args), "INT", Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let first = read_jsonl(&dir.join("scan.jsonl")).len();
    let o = signal_after(
        start(&dir, &["--resume", "fastport.resume"]),
        "KILL",
        Duration::from_millis(400),
    );
    assert_eq!(o.status.code(), None, "killed");
    assert!(read_jsonl(&dir.join("scan.jsonl")).len() > first);
    let o = finish(&dir, &["--resume", "fastport.resume"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("was killed or crashed"), "{err}");
}

/// A second Ctrl-C while the run stopped used to end it at once, without
/// its resume file (2 of 8 tries with the second signal 10-30 ms after the
/// first). Now a second signal is ignored while the stop is under way.
#[test]
fn a_second_signal_while_stopping_lost_the_resume_file() {
    if !in_netns!(a_second_signal_while_stopping_lost_the_resume_file) {
        return;
    }
    let dir = temp_dir("second-signal");
    let mut args = SLOW.to_vec();
    args.extend(["-oJ", "scan.jsonl", "127.0.0.1"]);
    let child = start(&dir, &args);
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(400));
    for gap in [0, 2, 5, 10] {
        std::thread::sleep(Duration::from_millis(gap));
        let _ = Command::new("kill").args(["-INT", &pid]).status();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(dir.join("fastport.resume").exists(), "{}", stderr(&o));
    let o = finish(&dir, &["--resume", "fastport.resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read_jsonl(&dir.join("scan.jsonl")).len(), 1500);
}

/// A run stuck before it could stop (an output FIFO nobody reads blocks
/// its opening) still ends on a second signal once a stop has had time.
#[test]
fn a_stuck_run_ends_on_a_second_signal() {
    if !in_netns!(a_stuck_run_ends_on_a_second_signal) {
        return;
    }
    let dir = temp_dir("stuck");
    let fifo = dir.join("nobody.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let child = start(&dir, &["-oJ", fifo.to_str().unwrap(), "127.0.0.1"]);
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    std::thread::sleep(Duration::from_millis(1300));
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("did not stop"), "{err}");
}

/// A worker's panic used to abort the process (`panic = "abort"`): no
/// resume file, the XML cut mid-record, every result of the run to be
/// probed again. Now the panic is caught at the worker's boundary: the run
/// stops as after Ctrl-C, says so in one line, exits 1, and its resume
/// file continues it exactly. The panic is injected by a hook that only
/// debug builds have (`FASTPORT_DEBUG_PANIC_AFTER`), in both engines.
#[test]
fn a_worker_panic_lost_the_runs_progress() {
    if !in_netns!(a_worker_panic_lost_the_runs_progress) {
        return;
    }
    if !cfg!(debug_assertions) {
        return; // the injection hook exists in debug builds only
    }
    let _ls = listeners("127.0.0.1", &[22, 80, 443, 1234], 0);
    for engine in ["mio", "threads"] {
        let dir = temp_dir(&format!("worker-panic-{engine}"));
        let mut args = SLOW.to_vec();
        args.extend([
            "--engine",
            engine,
            "--concurrency",
            "64",
            "-oJ",
            "scan.jsonl",
            "-oX",
            "scan.xml",
            "-oN",
            "scan.txt",
            "127.0.0.1",
        ]);
        let o = fastport()
            .args(&args)
            .current_dir(&dir)
            .env("FASTPORT_DEBUG_PANIC_AFTER", "300")
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{engine}: {err}");
        assert_eq!(err.lines().count(), 1, "{engine}: one line: {err}");
        assert!(
            err.starts_with("fastport: internal error: a worker panicked at src/")
                && err.contains("injected worker panic after 300 probes")
                && err.contains("fastport --resume fastport.resume"),
            "{engine}: {err}"
        );
        let first = read_jsonl(&dir.join("scan.jsonl"));
        assert!(
            first.len() >= 290 && first.len() < 1500,
            "{engine}: {}",
            first.len()
        );
        assert_well_formed_xml(&dir.join("scan.xml"));

        let o = finish(&dir, &["--resume", "fastport.resume"]);
        assert_eq!(o.status.code(), Some(0), "{engine}: {}", stderr(&o));
        let all = read_jsonl(&dir.join("scan.jsonl"));
        assert_eq!(all.len(), 1500, "{engine}: every port once");
        for (key, state) in &first {
            assert_eq!(all.get(key), Some(state), "{engine}: {key:?}");
        }
        let lines = std::fs::read_to_string(dir.join("scan.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 1500, "{engine}: none twice");
        let xml = std::fs::read_to_string(dir.join("scan.xml")).unwrap();
        assert_well_formed_xml(&dir.join("scan.xml"));
        assert_eq!(count(&xml, "<port protocol=\"tcp\" portid=\"1234\""), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A scan cut into segments (here of 256 probes, through a knob only debug
/// builds have; in release a segment is 2^63 probes), interrupted twice and
/// resumed: the seams between segments lose and repeat nothing, in the
/// line formats and in the per-host documents, and the segments are not
/// visited in address order.
#[test]
fn a_segmented_scan_interrupted_and_resumed_across_its_seams_is_exact() {
    if !in_netns!(a_segmented_scan_interrupted_and_resumed_across_its_seams_is_exact) {
        return;
    }
    if !cfg!(debug_assertions) {
        return; // the segment-size knob exists in debug builds only
    }
    let _a = listeners("127.0.0.1", &[9003], 0);
    let _b = listeners("127.0.0.200", &[9007], 0);
    for engine in ["mio", "threads"] {
        let dir = temp_dir(&format!("segmented-resume-{engine}"));
        let run = |args: &[&str], interrupt: Option<Duration>| {
            let child = fastport()
                .args(args)
                .current_dir(&dir)
                .env("FASTPORT_DEBUG_SEGMENT_PROBES", "256")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            match interrupt {
                Some(after) => signal_after(child, "INT", after),
                None => child.wait_with_output().unwrap(),
            }
        };
        // 256 hosts x 8 ports: 8 segments of 32 hosts, about 2 s at 1000/s.
        let first = run(
            &[
                "--engine",
                engine,
                "--concurrency",
                "32",
                "-p",
                "9001-9008",
                "--show",
                "all",
                "--rate",
                "1000",
                "--seed",
                "11",
                "-oJ",
                "scan.jsonl",
                "-oX",
                "scan.xml",
                "-oG",
                "scan.gnmap",
                "127.0.0.0/24",
            ],
            Some(Duration::from_millis(700)),
        );
        assert_eq!(first.status.code(), Some(130), "{}", stderr(&first));
        let part = read_jsonl(&dir.join("scan.jsonl"));
        assert!(part.len() > 256 && part.len() < 2048, "{}", part.len());
        // Random segment order: the first hosts scanned are not 127.0.0.0-31.
        let low = part
            .keys()
            .filter(|(a, _)| a.parse::<std::net::Ipv4Addr>().unwrap().octets()[3] < 32)
            .count();
        assert!(low < part.len(), "address order: {low} of {}", part.len());
        let resume = std::fs::read_to_string(dir.join("fastport.resume")).unwrap();
        assert!(resume.contains("\"segment\": "), "{resume}");

        let second = run(
            &["--resume", "fastport.resume"],
            Some(Duration::from_millis(500)),
        );
        assert_eq!(second.status.code(), Some(130), "{}", stderr(&second));
        let third = run(&["--resume", "fastport.resume"], None);
        assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));

        let all = read_jsonl(&dir.join("scan.jsonl")); // panics on a repeat
        assert_eq!(all.len(), 2048, "every probe once");
        for (key, state) in &part {
            assert_eq!(all.get(key), Some(state), "{key:?}");
        }
        let open: Vec<_> = all.iter().filter(|(_, s)| s.starts_with("open")).collect();
        assert_eq!(open.len(), 2, "{open:?}");
        assert_well_formed_xml(&dir.join("scan.xml"));
        let xml = std::fs::read_to_string(dir.join("scan.xml")).unwrap();
        let gnmap = std::fs::read_to_string(dir.join("scan.gnmap")).unwrap();
        for host in 0..256 {
            let addr = format!("127.0.0.{host}");
            assert_eq!(
                count(&xml, &format!("<address addr=\"{addr}\" ")),
                1,
                "{addr} in the XML"
            );
            assert_eq!(
                count(&gnmap, &format!("Host: {addr} ()\tPorts:")),
                1,
                "{addr} in the grepable output"
            );
        }
        assert_eq!(count(&xml, "<port protocol=\"tcp\""), 2048);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
