//! Probe order, shards and resume, end to end inside a private namespace:
//! a seeded order is reproducible and recorded, shards of one seed union to
//! the unsharded result, and runs interrupted at random moments, then
//! resumed, report every probe exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::in_netns;
use crate::util::{
    drop_packets, fastport, listeners, read_jsonl, run, signal_after, stderr, temp_dir,
};

/// The world: listeners on four loopback addresses, and a drop rule so some
/// probes wait for their timeout (and are in flight at an interrupt).
fn world() -> Vec<std::net::TcpListener> {
    let mut ls = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        ls.extend(listeners(ip, &[22, 80, 443], 0));
    }
    ls.extend(listeners("127.0.0.5", &[8080], 0));
    drop_packets(&[
        "ip daddr 127.0.0.6 tcp dport 1-40",
        "ip daddr 127.0.0.2 tcp dport 100-120",
    ]);
    ls
}

/// The scan every test runs: 8 hosts × 200 ports, everything reported.
const SCAN: &[&str] = &[
    "-p",
    "1-200,443,8080",
    "--show",
    "all",
    "--timeout",
    "300ms",
    "--retries",
    "0",
    "127.0.0.1-127.0.0.8",
];

fn scan(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let out = dir.join(format!("{name}.jsonl"));
    let mut args: Vec<&str> = SCAN.to_vec();
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-oJ", out.to_str().unwrap()]);
    let o = fastport()
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("run fastport");
    (out, o)
}

/// The (addr, port) lines of a -oJ file, in file order.
fn lines_in_order(path: &Path) -> Vec<(String, u16)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["addr"].as_str().unwrap().to_string(),
                v["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

#[test]
fn a_seed_gives_one_order_and_is_recorded() {
    if !in_netns!(a_seed_gives_one_order_and_is_recorded) {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22], 0);
    let dir = temp_dir("seed");
    let serial = [
        "--concurrency",
        "1",
        "--threads",
        "1",
        "-p",
        "1-300",
        "--show",
        "all",
        "127.0.0.1",
    ];
    let order_of = |name: &str, extra: &[&str]| {
        let out = dir.join(format!("{name}.jsonl"));
        let st = dir.join(format!("{name}.json"));
        let mut args: Vec<&str> = serial.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "-oJ",
            out.to_str().unwrap(),
            "--stats",
            st.to_str().unwrap(),
        ]);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&st).unwrap()).unwrap();
        (lines_in_order(&out), stats)
    };
    let (a, sa) = order_of("a", &["--seed", "12345"]);
    let (b, _) = order_of("b", &["--seed", "12345"]);
    let (c, _) = order_of("c", &["--seed", "54321"]);
    let (d, sd) = order_of("d", &["--order", "sequential"]);
    let (e, se) = order_of("e", &[]);
    assert_eq!(a, b, "same seed, same order");
    assert_ne!(a, c, "another seed, another order");
    let ports = |v: &[(String, u16)]| v.iter().map(|l| l.1).collect::<Vec<_>>();
    assert_eq!(ports(&d), (1..=300).collect::<Vec<_>>());
    assert_ne!(ports(&a), ports(&d));
    assert_eq!(sa["seed"], 12345);
    assert_eq!(sa["order"], "random");
    assert_eq!(sa["shard"], "1/1");
    assert_eq!(sd["order"], "sequential");
    // The default seed is random and recorded: rerunning with it repeats the order.
    let seed = se["seed"].as_u64().unwrap().to_string();
    let (f, _) = order_of("f", &["--seed", &seed]);
    assert_eq!(e, f);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 300);
}

#[test]
fn three_shards_union_to_the_whole_scan() {
    if !in_netns!(three_shards_union_to_the_whole_scan) {
        return;
    }
    let _ls = world();
    let dir = temp_dir("shards");
    let (whole, o) = scan(&dir, "whole", &["--seed", "99"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read_jsonl(&whole);
    assert_eq!(whole.len(), 8 * 202);
    let mut union = BTreeMap::new();
    let mut sizes = Vec::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let (out, o) = scan(
            &dir,
            &format!("shard{k}"),
            &["--seed", "99", "--shard", &shard],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let part = read_jsonl(&out);
        sizes.push(part.len());
        for (key, state) in part {
            assert!(
                union.insert(key.clone(), state).is_none(),
                "{key:?} in two shards"
            );
        }
    }
    assert_eq!(union, whole);
    // 1616 positions: 539, 539, 538.
    assert_eq!(sizes, [539, 539, 538]);
}

/// `fastport merge` joins three shards' result lines and summaries into
/// the whole scan: the same lines as an unsharded run, counts that add up,
/// and histograms that add exactly (the merged count equals the sum).
#[test]
fn merge_joins_shards_into_the_whole_scan() {
    if !in_netns!(merge_joins_shards_into_the_whole_scan) {
        return;
    }
    let _ls = world();
    let dir = temp_dir("merge");
    let (whole, o) = scan(&dir, "whole", &["--seed", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read_jsonl(&whole);
    let mut inputs = Vec::new();
    let mut answered = 0;
    for k in 1..=3 {
        let stats = dir.join(format!("s{k}.json"));
        let shard = format!("{k}/3");
        let (out, o) = scan(
            &dir,
            &format!("part{k}"),
            &[
                "--seed",
                "7",
                "--shard",
                &shard,
                "--stats",
                stats.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        answered += s["latency_us"]["closed/conn-refused"]["count"]
            .as_u64()
            .unwrap();
        inputs.push(out);
        inputs.push(stats);
    }
    let merged = dir.join("merged.jsonl");
    let merged_stats = dir.join("merged.json");
    let mut args = vec![
        "merge".to_string(),
        "-oJ".into(),
        merged.display().to_string(),
    ];
    args.extend(["--stats".into(), merged_stats.display().to_string()]);
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let o = fastport().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_jsonl(&merged), whole);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_stats).unwrap()).unwrap();
    assert_eq!(m["results"], whole.len() as u64);
    assert_eq!(m["shard"], "1/1");
    assert_eq!(m["missing_shards"], serde_json::json!([]));
    assert_eq!(m["latency_us"]["closed/conn-refused"]["count"], answered);

    // A shard given twice is refused, naming the problem.
    let o = fastport()
        .args([
            "merge",
            inputs[1].to_str().unwrap(),
            inputs[1].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("shard 1/3 is given twice"),
        "{}",
        stderr(&o)
    );
    // Two shards reporting one port is an overlap.
    let o = fastport()
        .args([
            "merge",
            inputs[0].to_str().unwrap(),
            inputs[0].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("reported twice"), "{}", stderr(&o));
}

/// A tiny deterministic generator for interrupt times (seed printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Interrupts runs at random moments, several times in a row, and resumes
/// each time with new output files: the parts together are exactly the
/// uninterrupted result, nothing lost, nothing twice.
fn interrupt_and_resume(name: &str, engine: &str) {
    let _ls = world();
    let dir = temp_dir(name);
    let (whole, o) = scan(&dir, "whole", &["--engine", engine]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read_jsonl(&whole);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("interrupt times seeded with {seed}");
    let mut rng = Lcg(seed);
    let resume_file = dir.join("fastport.resume");
    let mut union: BTreeMap<(String, u16), String> = BTreeMap::new();
    let mut interrupts = 0;
    for part in 0.. {
        assert!(part < 40, "no end after 40 resumptions");
        let out = dir.join(format!("part{part}.jsonl"));
        let mut cmd = fastport();
        if part == 0 {
            cmd.args(SCAN)
                .args(["--engine", engine, "--concurrency", "30"]);
        } else {
            cmd.arg("--resume").arg(&resume_file);
        }
        cmd.arg("-oJ").arg(&out).current_dir(&dir);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Interrupt the first few runs at a random moment; let the last finish.
        let stop_it = interrupts < 4;
        if stop_it {
            // A moment of the scan, not of start-up: the signal handlers
            // are installed once the outputs are open, and a debug build on
            // a loaded machine can take longer than 20 ms to get there.
            let started = Instant::now() + Duration::from_secs(10);
            while !out.exists() && Instant::now() < started && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(5));
            let wait = Duration::from_millis(20 + rng.below(400));
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let sig = if rng.below(2) == 0 { "INT" } else { "TERM" };
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &child.id().to_string()])
                .status();
        }
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        for (key, state) in read_jsonl(&out) {
            assert!(
                union.insert(key.clone(), state).is_none(),
                "{key:?} reported twice (part {part})"
            );
        }
        match o.status.code() {
            Some(0) => break,
            Some(130) => {
                interrupts += 1;
                assert!(err.contains("--resume"), "{err}");
                assert!(resume_file.exists());
            }
            other => panic!("part {part}: status {other:?}: {err}"),
        }
    }
    assert!(interrupts >= 1);
    assert_eq!(union, whole, "parts together are the uninterrupted result");
}

#[test]
fn interrupted_runs_resume_to_the_exact_result() {
    if !in_netns!(interrupted_runs_resume_to_the_exact_result) {
        return;
    }
    interrupt_and_resume("resume-mio", "mio");
}

#[test]
fn interrupted_threads_runs_resume_to_the_exact_result() {
    if !in_netns!(interrupted_threads_runs_resume_to_the_exact_result) {
        return;
    }
    interrupt_and_resume("resume-threads", "threads");
}

#[test]
fn a_file_that_is_not_a_resume_file_is_refused() {
    if !in_netns!(a_file_that_is_not_a_resume_file_is_refused) {
        return;
    }
    let dir = temp_dir("resume-refuse");
    let resume = dir.join("r.resume");
    std::fs::write(&resume, "{}").unwrap();
    let o = fastport()
        .args(["--resume", resume.to_str().unwrap(), "--retries", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a FastPort resume file"),
        "{}",
        stderr(&o)
    );
}

/// The `<host>` records of an `-oX` file: address, `<port>` elements, and
/// whether the record says it is incomplete.
fn xml_hosts(path: &Path) -> Vec<(String, usize, bool)> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.trim_end().ends_with("</nmaprun>"), "{text}");
    text.split("<host ")
        .skip(1)
        .map(|h| {
            let h = &h[..h.find("</host>").expect("a closed <host>")];
            let addr = h
                .split("<address addr=\"")
                .nth(1)
                .and_then(|a| a.split('"').next())
                .expect("an address")
                .to_string();
            (addr, h.matches("<port ").count(), h.contains("incomplete"))
        })
        .collect()
}

/// Adds one file's host records to `ports` (address → `<port>`s), failing
/// on a host written twice in one file.
fn add_hosts(ports: &mut BTreeMap<String, usize>, hosts: &[(String, usize, bool)]) {
    let mut once = std::collections::BTreeSet::new();
    for (addr, n, _) in hosts {
        assert!(once.insert(addr.clone()), "{addr} written twice");
        *ports.entry(addr.clone()).or_default() += n;
    }
}

/// Under `--shard` no host used to be complete (each shard gets only some
/// of its ports), so every host waited for the end and was written
/// `timedout="true" comment="incomplete ..."`. A shard knows each host's
/// share now and writes it whole.
#[test]
fn sharded_xml_writes_whole_hosts_not_incomplete_ones() {
    if !in_netns!(sharded_xml_writes_whole_hosts_not_incomplete_ones) {
        return;
    }
    let _ls = world();
    let dir = temp_dir("shard-xml");
    let mut ports = BTreeMap::new();
    for k in 1..=3 {
        let xml = dir.join(format!("shard{k}.xml"));
        let shard = format!("{k}/3");
        let (_, o) = scan(
            &dir,
            &format!("shard{k}"),
            &[
                "--seed",
                "7",
                "--shard",
                &shard,
                "-oX",
                xml.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let hosts = xml_hosts(&xml);
        assert_eq!(hosts.len(), 8, "every host has ports to show");
        assert!(
            hosts.iter().all(|(_, _, incomplete)| !incomplete),
            "{hosts:?}"
        );
        add_hosts(&mut ports, &hosts);
    }
    assert_eq!(ports.len(), 8);
    assert!(ports.values().all(|&n| n == 202), "{ports:?}");
}

/// A resumed run used to hold every host to the end for the same reason:
/// it knows now which of each host's ports the first run finished.
#[test]
fn resumed_xml_writes_whole_hosts_not_incomplete_ones() {
    if !in_netns!(resumed_xml_writes_whole_hosts_not_incomplete_ones) {
        return;
    }
    let _ls = world();
    let dir = temp_dir("resume-xml");
    let first = dir.join("first.xml");
    let child = fastport()
        .args(SCAN)
        .args(["--concurrency", "20", "-oX", first.to_str().unwrap()])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = signal_after(child, "INT", Duration::from_millis(300));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let mut ports = BTreeMap::new();
    add_hosts(&mut ports, &xml_hosts(&first));

    let rest = dir.join("rest.xml");
    let o = fastport()
        .arg("--resume")
        .arg(dir.join("fastport.resume"))
        .args(["-oX", rest.to_str().unwrap()])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hosts = xml_hosts(&rest);
    assert!(
        hosts.iter().all(|(_, _, incomplete)| !incomplete),
        "{hosts:?}"
    );
    add_hosts(&mut ports, &hosts);
    assert_eq!(ports.len(), 8);
    assert!(ports.values().all(|&n| n == 202), "{ports:?}");
}
