//! Sharding on a real job engine: a one-node Slurm cluster (Debian's
//! slurm-wlm and munge, daemons as root) inside a private network, PID and
//! mount namespace runs `fastport --shard auto` as a job array; the shards,
//! merged by `fastport merge`, are exactly the unsharded scan. A second run
//! interrupts one array task with `scancel --signal=INT`, resubmits it with
//! `--resume`, and is still exact.
//!
//! The daemons listen on 127.0.0.1 of the namespace only, and die with it
//! (the test body is the namespace's PID 1). A namespace with only
//! loopback makes `getaddrinfo(AI_ADDRCONFIG)` fail for every name, which
//! Slurm's tools use, so a veth pair gets an address from the benchmark
//! range 198.18.0.0/15. Slurm waits are polls with deadlines: the daemons
//! are real processes, not a simulation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::in_netns_with_daemons;
use crate::util::{drop_packets, fastport, listeners, read_jsonl, read_stats, sh, stderr};

/// The tools the cluster needs, and the Debian packages that bring them.
const TOOLS: &[(&str, &str)] = &[
    ("/usr/sbin/slurmctld", "slurm-wlm"),
    ("/usr/sbin/slurmd", "slurm-wlm"),
    ("/usr/bin/sbatch", "slurm-wlm"),
    ("/usr/sbin/munged", "munge"),
];

/// Whether a test can run here: `tools` installed (with apt-get when
/// missing, as root), and root when `needs_root` (Slurm's daemons run as
/// root, munged as the munge user). Under `CI=true` a missing piece is a
/// failure, elsewhere a skip that says why.
pub fn ready(tools: &[(&str, &str)], needs_root: bool) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let skip = |why: String| {
        assert!(!ci, "{why}");
        eprintln!("skipped: {why}");
        false
    };
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .is_some_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
    if needs_root && !root {
        return skip("this test starts daemons as root: run it as root".into());
    }
    let missing = |tools: &[(&str, &str)]| -> Vec<String> {
        let mut pkgs: Vec<String> = tools
            .iter()
            .filter(|(path, _)| !Path::new(path).exists())
            .map(|(_, pkg)| pkg.to_string())
            .collect();
        pkgs.dedup();
        pkgs
    };
    let need = missing(tools);
    if need.is_empty() {
        return true;
    }
    // Inside a namespace there is no network: only the outer process installs.
    if root && std::env::var_os("FASTPORT_TEST_NETNS").is_none() {
        eprintln!("installing {}", need.join(" "));
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {} >/dev/null",
                    need.join(" ")
                ),
            ])
            .status();
    }
    let need = missing(tools);
    if need.is_empty() {
        true
    } else {
        skip(format!("cannot install {}", need.join(" ")))
    }
}

/// The lab world: open ports on four addresses of 127.0.0.0/8, the rest
/// closed, and one range whose probes are dropped (they time out, so an
/// interrupt finds probes in flight).
pub fn world() -> Vec<std::net::TcpListener> {
    let mut ls = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        ls.extend(listeners(ip, &[22, 80, 443], 0));
    }
    ls.extend(listeners("127.0.0.4", &[8080], 0));
    drop_packets(&["ip daddr 127.0.0.5 tcp dport 100-160"]);
    ls
}

/// The scan of the world: 6 hosts × 202 ports, every result written.
pub const SCAN: &[&str] = &[
    "-p",
    "1-200,443,8080",
    "--show",
    "all",
    "--timeout",
    "200ms",
    "--retries",
    "0",
    "--seed",
    "4242",
    "127.0.0.1-127.0.0.6",
];

/// The scan's command line for a shell script, with `extra` words after it.
pub fn scan_line(extra: &str) -> String {
    format!(
        "exec {} {} {extra}",
        env!("CARGO_BIN_EXE_fastport"),
        SCAN.join(" ")
    )
}

/// A fresh temporary directory for a test that runs as PID 1 of its
/// namespace, where `util::temp_dir`'s process id would be 1 in every run:
/// the clock makes it unique instead.
fn pid1_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    crate::util::temp_dir(&format!("{name}-{nanos}"))
}

/// A one-node Slurm cluster in this namespace; its daemons die with it.
struct Cluster {
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        // The veth address makes AI_ADDRCONFIG lookups work; /run/munge is a
        // private tmpfs so the host's (or another test's) munged is untouched.
        sh("ip link add fpa type veth peer name fpb \
            && ip addr add 198.18.255.1/32 dev fpa && ip link set fpa up && ip link set fpb up \
            && mkdir -p /run/munge && mount -t tmpfs tmpfs /run/munge && chown munge:munge /run/munge");
        sh("su munge -s /bin/sh -c '/usr/sbin/munged --force'");
        for sub in ["spool", "state", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        // sched/builtin with a 1 s interval starts tasks without backfill's
        // delay; CR_Core lets both cores run a task each.
        std::fs::write(
            &conf,
            format!(
                "ClusterName=fp\n\
                 SlurmctldHost=localhost(127.0.0.1)\n\
                 SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/ctld.pid\nSlurmdPidFile={d}/d.pid\n\
                 SlurmctldLogFile={d}/log/ctld.log\nSlurmdLogFile={d}/log/d.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SchedulerType=sched/builtin\nSchedulerParameters=sched_interval=1\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 ReturnToService=2\nMinJobAge=600\n\
                 NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=2 RealMemory=2000 State=UNKNOWN\n\
                 PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
            ),
        )
        .unwrap();
        let cluster = Cluster { conf };
        assert!(cluster.cmd("slurmctld").status().unwrap().success());
        assert!(cluster.cmd("slurmd").status().unwrap().success());
        cluster.wait_for("the node to be idle", Duration::from_secs(30), || {
            cluster.out("sinfo", &["-h", "-o", "%T"]).trim() == "idle"
        });
        cluster
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Runs a Slurm command, failing on a non-zero exit, and returns stdout.
    fn out(&self, program: &str, args: &[&str]) -> String {
        let o: Output = self.cmd(program).args(args).output().unwrap();
        assert!(o.status.success(), "{program} {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Submits a batch script; returns the job id.
    fn sbatch(&self, args: &[&str]) -> String {
        self.out("sbatch", &[&["--parsable"], args].concat())
            .trim()
            .to_string()
    }

    /// The state of job (or array task) `id`, or None once it left the queue.
    fn queued_state(&self, id: &str) -> Option<String> {
        let o = self
            .cmd("squeue")
            .args(["-h", "-j", id, "-o", "%T"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o.status.success() && !text.is_empty()).then_some(text)
    }

    /// `ExitCode=` of every task of job `id`, by array task id (0 for a
    /// job that is not an array).
    fn exit_codes(&self, id: &str) -> BTreeMap<u64, String> {
        let text = self.out("scontrol", &["-o", "show", "job", id]);
        text.lines()
            .map(|l| {
                let field = |name: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .unwrap_or("")
                        .to_string()
                };
                (
                    field("ArrayTaskId=").parse().unwrap_or(0),
                    field("ExitCode="),
                )
            })
            .collect()
    }

    fn wait_done(&self, id: &str) {
        self.wait_for(&format!("job {id} to end"), Duration::from_secs(60), || {
            self.queued_state(id).is_none()
        });
    }

    fn wait_for(&self, what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ok() {
            if Instant::now() > deadline {
                let log = |f: &str| {
                    std::fs::read_to_string(self.conf.with_file_name("log").join(f))
                        .unwrap_or_default()
                };
                panic!(
                    "gave up waiting for {what} after {limit:?}\nslurmctld:\n{}\nslurmd:\n{}",
                    log("ctld.log"),
                    log("d.log")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `fastport merge` of `inputs` into `dir/merged.jsonl` (and `merged.json`
/// when summaries are among the inputs).
pub fn merge(dir: &Path, inputs: &[PathBuf]) -> (PathBuf, PathBuf) {
    let jsonl = dir.join("merged.jsonl");
    let stats = dir.join("merged.json");
    let o = fastport()
        .arg("merge")
        .arg("-oJ")
        .arg(&jsonl)
        .arg("--stats")
        .arg(&stats)
        .args(inputs)
        .output()
        .unwrap();
    assert!(o.status.success(), "merge: {}", stderr(&o));
    (jsonl, stats)
}

/// Merges `inputs` (shards' results and summaries) and checks the merge is
/// the unsharded scan: every probe exactly once, and a merged summary that
/// counts each. Returns the merged summary.
pub fn merge_to_whole(
    dir: &Path,
    inputs: &[PathBuf],
    whole: &BTreeMap<(String, u16), String>,
) -> serde_json::Value {
    let (merged, stats) = merge(dir, inputs);
    assert_eq!(&read_jsonl(&merged), whole, "nothing lost, nothing twice");
    let s = read_stats(&stats);
    assert_eq!(s["results"], whole.len() as u64);
    s
}

/// Submits the three-task array whose every task runs the scan with
/// `--shard auto` and the `extra` flags, writing `shard-K.jsonl` and its
/// summary `shard-K.json`; returns the job id.
fn submit_array(cluster: &Cluster, dir: &Path, extra: &str) -> String {
    let script = dir.join("shard.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{}\n",
            scan_line(&format!(
                "{extra}--shard auto -oJ shard-$SLURM_ARRAY_TASK_ID.jsonl --stats shard-$SLURM_ARRAY_TASK_ID.json"
            ))
        ),
    )
    .unwrap();
    cluster.sbatch(&[
        "--array=1-3",
        "--chdir",
        dir.to_str().unwrap(),
        "--output",
        dir.join("task-%a.log").to_str().unwrap(),
        script.to_str().unwrap(),
    ])
}

/// The unsharded scan of the world, run directly; it also writes
/// `whole.{xml,gnmap,txt,csv}`.
pub fn whole_scan(dir: &Path) -> BTreeMap<(String, u16), String> {
    let out = dir.join("whole.jsonl");
    let o = fastport()
        .args(SCAN)
        .arg("-oJ")
        .arg(&out)
        .args([
            "-oX",
            "whole.xml",
            "-oG",
            "whole.gnmap",
            "-oN",
            "whole.txt",
            "-oC",
            "whole.csv",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read_jsonl(&out);
    assert_eq!(whole.len(), 6 * 202);
    whole
}

#[test]
fn slurm_job_array_shards_merge_to_the_whole_scan() {
    if !ready(TOOLS, true)
        || !in_netns_with_daemons!(slurm_job_array_shards_merge_to_the_whole_scan)
    {
        return;
    }
    let _ls = world();
    let dir = pid1_dir("slurm-array");
    let whole = whole_scan(&dir);
    let cluster = Cluster::start(&dir.join("cluster"));

    let job = submit_array(&cluster, &dir, "");
    cluster.wait_done(&job);
    let codes = cluster.exit_codes(&job);
    assert_eq!(
        codes.values().collect::<Vec<_>>(),
        ["0:0", "0:0", "0:0"],
        "{codes:?}"
    );
    let mut inputs = Vec::new();
    for k in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("task-{k}.log"))).unwrap();
        assert!(
            log.contains(&format!(
                "--shard auto is {k}/3 from the Slurm job array (SLURM_ARRAY_TASK_ID={k}"
            )),
            "task {k}: {log}"
        );
        inputs.push(dir.join(format!("shard-{k}.jsonl")));
        inputs.push(dir.join(format!("shard-{k}.json")));
    }
    let s = merge_to_whole(&dir, &inputs, &whole);
    assert_eq!(s["shard"], "1/1");
    assert_eq!(s["missing_shards"], serde_json::json!([]));

    // Every other format, merged, says what the unsharded scan's says.
    let o = fastport()
        .args(["merge", "--show", "all"])
        .args(["-oX", "merged.xml", "-oG", "merged.gnmap"])
        .args(["-oN", "merged.txt", "-oC", "merged.csv"])
        .args(&inputs)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "merge: {}", stderr(&o));
    assert_same_formats(&dir, "whole", "merged");
}

/// The parts of each format that do not depend on timing (round-trip
/// times, dates, the order results arrived in) are equal in `a` and `b`.
pub fn assert_same_formats(dir: &Path, a: &str, b: &str) {
    let read =
        |name: &str, ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
    let (xa, xb) = (read(a, "xml"), read(b, "xml"));
    assert!(!xml_hosts(&xa).is_empty());
    assert_eq!(xml_hosts(&xa), xml_hosts(&xb));
    let counts = |x: &str| {
        x[x.find("<hosts ").unwrap()..]
            .split("/>")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(counts(&xa), counts(&xb));
    for (ext, keep) in [
        (
            "gnmap",
            (|l: &str| l.starts_with("Host: ")) as fn(&str) -> bool,
        ),
        ("txt", |l: &str| l.starts_with('[')),
    ] {
        let lines = |t: String| {
            t.lines()
                .filter(|l| keep(l))
                .map(str::to_string)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (la, lb) = (lines(read(a, ext)), lines(read(b, ext)));
        assert!(!la.is_empty(), "{ext}");
        assert_eq!(la, lb, "{ext}");
    }
    // CSV rows without the round-trip time (and the host name column).
    let rows = |t: String| {
        t.lines()
            .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(rows(read(a, "csv")), rows(read(b, "csv")));
    if Path::new("/usr/share/nmap/nmap.dtd").exists() {
        let path = dir.join(format!("{b}.xml"));
        let o = Command::new("xmllint")
            .args(["--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd"])
            .arg(&path)
            .output()
            .expect("xmllint");
        assert!(
            o.status.success(),
            "merged XML is not DTD-valid: {}",
            stderr(&o)
        );
    }
}

/// Each `<host>` of an nmap XML document: its address, status, and ports
/// (number, state, reason), extraports included.
fn xml_hosts(xml: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let attr = |s: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        s.find(&key)
            .map(|i| s[i + key.len()..].split('"').next().unwrap().to_string())
            .unwrap_or_default()
    };
    let mut hosts = BTreeMap::new();
    for block in xml.split("<host ").skip(1) {
        let block = block.split("</host>").next().unwrap();
        let status = attr(&block[block.find("<status").unwrap()..], "state");
        let addr = attr(&block[block.find("<address").unwrap()..], "addr");
        let mut ports: Vec<String> = block
            .split("<port ")
            .skip(1)
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    attr(p, "portid"),
                    attr(p, "state"),
                    attr(p, "reason")
                )
            })
            .collect();
        ports.extend(
            block
                .split("<extraports ")
                .skip(1)
                .map(|p| format!("extra {} {}", attr(p, "state"), attr(p, "count"))),
        );
        ports.sort();
        hosts.insert(addr, (status, ports));
    }
    hosts
}

#[test]
fn slurm_task_cancelled_with_sigint_resumes_exactly() {
    if !ready(TOOLS, true)
        || !in_netns_with_daemons!(slurm_task_cancelled_with_sigint_resumes_exactly)
    {
        return;
    }
    let _ls = world();
    let dir = pid1_dir("slurm-resume");
    let whole = whole_scan(&dir);
    let cluster = Cluster::start(&dir.join("cluster"));

    // A rate cap makes each shard take about two seconds, so task 2 is
    // caught mid-scan. `exec` makes fastport the batch step's process, and
    // `--full` sends the signal to it (plain scancel signals job steps only).
    let job = submit_array(&cluster, &dir, "--rate 200 ");
    let task2 = format!("{job}_2");
    let part = dir.join("shard-2.jsonl");
    cluster.wait_for(
        "task 2 to report its first results",
        Duration::from_secs(30),
        || {
            cluster.queued_state(&task2).as_deref() == Some("RUNNING")
                && std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
        },
    );
    cluster.out("scancel", &["--full", "--signal=INT", &task2]);
    cluster.wait_done(&job);
    let codes = cluster.exit_codes(&job);
    assert_eq!(codes[&1], "0:0", "{codes:?}");
    assert_eq!(codes[&2], "130:0", "task 2 was interrupted: {codes:?}");
    assert_eq!(codes[&3], "0:0", "{codes:?}");
    let log = std::fs::read_to_string(dir.join("task-2.log")).unwrap();
    assert!(log.contains("--resume"), "{log}");

    // The resubmitted job is no array task: the resume file's K/N holds.
    let resume = dir.join("fastport-2-of-3.resume");
    assert!(resume.exists(), "{log}");
    let again = cluster.sbatch(&[
        "--chdir",
        dir.to_str().unwrap(),
        "--output",
        dir.join("task-2-resumed.log").to_str().unwrap(),
        "--wrap",
        &format!(
            "exec {} --resume {} -oJ shard-2-resumed.jsonl",
            env!("CARGO_BIN_EXE_fastport"),
            resume.display()
        ),
    ]);
    cluster.wait_done(&again);
    assert_eq!(
        cluster.exit_codes(&again).values().collect::<Vec<_>>(),
        ["0:0"],
        "{}",
        std::fs::read_to_string(dir.join("task-2-resumed.log")).unwrap_or_default()
    );

    let mut inputs: Vec<PathBuf> = ["1", "2", "2-resumed", "3"]
        .iter()
        .map(|k| dir.join(format!("shard-{k}.jsonl")))
        .collect();
    let interrupted = read_jsonl(&inputs[1]).len();
    assert!(
        interrupted > 0 && interrupted < whole.len() / 3,
        "task 2 stopped mid-scan ({interrupted} results)"
    );
    // The resumed run rewrote shard-2.json with both parts' counts.
    inputs.extend((1..=3).map(|k| dir.join(format!("shard-{k}.json"))));
    merge_to_whole(&dir, &inputs, &whole);
    let o = fastport()
        .args(["merge", "--show", "all"])
        .args(["-oX", "merged.xml", "-oG", "merged.gnmap"])
        .args(["-oN", "merged.txt", "-oC", "merged.csv"])
        .args(&inputs)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "merge: {}", stderr(&o));
    assert_same_formats(&dir, "whole", "merged");
}

/// The `n`th (0-based) `sh` code block after `heading` in docs/SHARDING.md.
pub fn doc_block(heading: &str, n: usize) -> String {
    let doc = include_str!("../docs/SHARDING.md");
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    doc[at..]
        .split("```sh\n")
        .nth(n + 1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no sh block {n} after {heading:?}"))
        .to_string()
}

/// Runs a documented shell block in `dir`, `fastport` on the PATH, and
/// checks that it succeeded and that its merged `scan.jsonl` is the
/// unsharded scan of the block's targets and ports.
pub fn run_doc_block(block: &str, dir: &Path, env: &[(&str, &Path)]) {
    let bin = Path::new(env!("CARGO_BIN_EXE_fastport")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-e", "-c", block])
        .current_dir(dir)
        .env("PATH", &path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{block}\nfailed: {}\n{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    let whole = dir.join("whole.jsonl");
    let o = fastport()
        .args(["-p", "1-1024", "--show", "all", "-oJ"])
        .arg(&whole)
        .arg("127.0.0.0/28")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let merged = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(std::iter::once(dir.join("scan")))
        .map(|d| d.join("scan.jsonl"))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join("scan.jsonl"));
    let whole = read_jsonl(&whole);
    assert_eq!(whole.len(), 16 * 1024);
    assert_eq!(read_jsonl(&merged), whole, "{block}");
}

#[test]
fn the_documented_slurm_example_runs_as_written() {
    if !ready(TOOLS, true) || !in_netns_with_daemons!(the_documented_slurm_example_runs_as_written)
    {
        return;
    }
    let _ls = listeners("127.0.0.1", &[22, 80], 0);
    let dir = pid1_dir("slurm-doc");
    let cluster = Cluster::start(&dir.join("cluster"));
    let block = doc_block("## Slurm job arrays", 0);
    run_doc_block(&block, &dir, &[("SLURM_CONF", &cluster.conf)]);
    assert!(dir.join("scan/scan.xml").exists());
}
