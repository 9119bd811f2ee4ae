//! The at-scale tier: a scan of more than 2²⁴ probes (`FASTPORT_SCALE=N`
//! for 2ᴺ) with every output on (`-oJ -oX -oG --stats`), run as three
//! shards, one of them interrupted three times at random moments and
//! resumed, then merged: the union must be exact in every format, and no
//! run may pass 64 MiB of resident memory.
//!
//! Everything runs inside a private network namespace, on addresses that
//! may be scanned there: 127.0.0.0/20 (4096 hosts whose closed ports answer
//! at once; five listeners give open ports) and the unrouted benchmark
//! ranges 198.18.0.0/15 and 2001:2::/48 (every connect fails at once:
//! `filtered/net-unreach`, hosts down). Results are checked by streaming
//! the files, never by loading them. The tier runs against the release
//! binary only (`scripts/test`'s release pass): a debug build says so and
//! skips.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::in_netns;
use crate::util::{fastport, read_stats, stderr, temp_dir};

/// Ports per host.
const PORTS: &str = "9001-9128";
const PORTS_PER_HOST: u64 = 128;
/// The loopback hosts: 127.0.0.0/20.
const LOOPBACK: &str = "127.0.0.0/20";
const LOOPBACK_HOSTS: u64 = 4096;
/// The memory bound every run is held to.
const PEAK_KIB: u64 = 64 * 1024;

/// Listeners: these (address, port) are open, every other probe of
/// 127.0.0.0/20 is closed (`conn-refused`).
const OPEN: [(&str, u16); 5] = [
    ("127.0.0.1", 9001),
    ("127.0.3.7", 9080),
    ("127.0.7.77", 9100),
    ("127.0.12.9", 9128),
    ("127.0.15.254", 9064),
];

/// 2ᴺ unrouted probes: `FASTPORT_SCALE=N` (16 to 40), 24 by default.
fn scale_bits() -> u32 {
    match std::env::var("FASTPORT_SCALE") {
        Ok(v) => {
            let n: u32 = v
                .parse()
                .unwrap_or_else(|_| panic!("FASTPORT_SCALE={v}: give N for 2^N probes"));
            assert!(
                (16..=40).contains(&n),
                "FASTPORT_SCALE={n}: N must be 16 to 40"
            );
            n
        }
        Err(_) => 24,
    }
}

/// The scan: 127.0.0.0/20 and 2ᴺ⁻⁷ unrouted hosts (198.18.0.0/15 and
/// smaller, 2001:2::/M past 2¹⁷ hosts), × 128 ports.
struct Space {
    unrouted_hosts: u64,
    unrouted: String,
}

impl Space {
    fn new(bits: u32) -> Space {
        let host_bits = bits - 7;
        let unrouted = if host_bits <= 17 {
            format!("198.18.0.0/{}", 32 - host_bits)
        } else {
            format!("2001:2::/{}", 128 - host_bits)
        };
        Space {
            unrouted_hosts: 1 << host_bits,
            unrouted,
        }
    }

    fn hosts(&self) -> u64 {
        LOOPBACK_HOSTS + self.unrouted_hosts
    }

    fn probes(&self) -> u64 {
        self.hosts() * PORTS_PER_HOST
    }

    /// The index of a loopback host (the only ones that answer).
    fn host(&self, addr: &str) -> u64 {
        let ip: Ipv4Addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("{addr}: only loopback hosts are up"));
        let h = u64::from(u32::from(ip).wrapping_sub(0x7f00_0000));
        assert!(h < LOOPBACK_HOSTS, "{addr} is outside {LOOPBACK}");
        h
    }

    /// The open probes, as (host, port).
    fn open(&self) -> BTreeSet<(u64, u16)> {
        OPEN.iter().map(|&(a, p)| (self.host(a), p)).collect()
    }
}

/// One bit per probe (or host).
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Bits {
        Bits(vec![0; n.div_ceil(64) as usize])
    }

    /// Sets bit `i`; false when it was set already.
    fn set(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        let was = self.0[w] >> b & 1 == 1;
        self.0[w] |= 1 << b;
        !was
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// Peak resident memory of process `pid` (VmHWM), in KiB, if it still runs.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How one run ended.
struct Ran {
    code: Option<i32>,
    stderr: String,
    peak_kib: u64,
}

/// Runs fastport in `dir`, watching its peak memory; with `interrupt`, a
/// SIGINT that long after the start.
fn watched(dir: &Path, args: &[&str], interrupt: Option<Duration>) -> Ran {
    let mut child = fastport()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fastport");
    let started = Instant::now();
    let mut peak = 0;
    let mut sent = false;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(after) = interrupt {
            if !sent && started.elapsed() >= after {
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                sent = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    Ran {
        code: o.status.code(),
        stderr: stderr(&o),
        peak_kib: peak,
    }
}

/// A small xorshift generator for the interrupt times, seeded from the
/// clock and printed, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = match std::env::var("FASTPORT_SCALE_SEED") {
            Ok(v) => v.parse().expect("FASTPORT_SCALE_SEED"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        println!("interrupt times from FASTPORT_SCALE_SEED={seed}");
        Rng(seed | 1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// A run, then resumes of it: `interrupts` of them at random moments, the
/// last to the end. Returns the number of runs; every one must stay
/// within [`PEAK_KIB`].
fn interrupted_and_resumed(
    dir: &Path,
    first: &[&str],
    resume_file: &str,
    interrupts: usize,
    rng: &mut Rng,
) -> u32 {
    let mut runs = 0;
    let mut args: Vec<&str> = first.to_vec();
    let resume = ["--resume", resume_file];
    for i in 0..=interrupts {
        let at = (i < interrupts).then(|| rng.millis(300, 3000));
        let ran = watched(dir, &args, at);
        runs += 1;
        println!(
            "run {runs} ({}): exit {:?}, peak RSS {} KiB",
            at.map_or("to the end".into(), |d| format!("SIGINT at {d:?}")),
            ran.code,
            ran.peak_kib
        );
        assert!(ran.peak_kib > 0);
        assert!(
            ran.peak_kib <= PEAK_KIB,
            "run {runs}: peak RSS {} KiB",
            ran.peak_kib
        );
        match ran.code {
            Some(0) => return runs,
            Some(130) if at.is_some() => {}
            other => panic!("run {runs}: exit {other:?}: {}", ran.stderr),
        }
        args = resume.to_vec();
    }
    panic!("the last resume did not finish");
}

/// The `-oJ` lines of `files` (`--show open`): exactly the open ports,
/// each once.
fn check_jsonl(space: &Space, files: &[&Path]) {
    let mut seen = BTreeSet::new();
    for path in files {
        let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in BufReader::new(f).lines() {
            let line = line.unwrap();
            let l: crate::util::Line = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", path.display()));
            assert_eq!(
                (l.state.as_str(), l.reason.as_str()),
                ("open", "syn-ack"),
                "{line}"
            );
            assert!(
                seen.insert((space.host(&l.addr), l.port)),
                "reported twice: {line}"
            );
        }
    }
    assert_eq!(seen, space.open(), "every open port once");
}

/// Per loopback host, over the shards: ports reported (shown or counted)
/// and the open ones shown.
struct Union {
    ports: Vec<u64>,
    open: BTreeSet<(u64, u16)>,
}

impl Union {
    fn new() -> Union {
        Union {
            ports: vec![0; LOOPBACK_HOSTS as usize],
            open: BTreeSet::new(),
        }
    }

    /// Every loopback host has all its ports once, the open ones shown.
    fn check(&self, space: &Space, what: &str) {
        for (h, &n) in self.ports.iter().enumerate() {
            assert_eq!(n, PORTS_PER_HOST, "{what}: host {h}");
        }
        assert_eq!(self.open, space.open(), "{what}: open ports");
    }
}

/// Streams one shard's nmap XML file: DTD-valid (`xmllint --stream`),
/// every loopback host exactly once and whole (no partial record), the
/// unrouted hosts down and counted, the run finished. Adds the hosts'
/// ports to `union`.
fn check_xml(space: &Space, path: &Path, union: &mut Union) {
    xmllint(path);
    use quick_xml::events::Event;
    let mut hosts = Bits::new(LOOPBACK_HOSTS);
    let file = std::fs::File::open(path).unwrap();
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(1 << 20, file));
    let mut buf = Vec::new();
    let attr = |e: &quick_xml::events::BytesStart, name: &[u8]| -> Option<String> {
        e.try_get_attribute(name)
            .ok()
            .flatten()
            .map(|a| String::from_utf8(a.value.into_owned()).unwrap())
    };
    let mut host: Option<u64> = None;
    let mut ports = 0u64;
    let mut open: Vec<u16> = Vec::new();
    let mut port: Option<u16> = None;
    let mut runstats = 0;
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"host" => {
                    assert!(attr(&e, b"timedout").is_none(), "a partial record");
                    ports = 0;
                    open.clear();
                }
                b"address" => host = Some(space.host(&attr(&e, b"addr").unwrap())),
                b"extraports" => {
                    assert_eq!(attr(&e, b"state").as_deref(), Some("closed"));
                    ports += attr(&e, b"count").unwrap().parse::<u64>().unwrap();
                }
                b"port" => port = Some(attr(&e, b"portid").unwrap().parse().unwrap()),
                b"state" => {
                    let p = port.take().expect("<state> in a <port>");
                    assert_eq!(attr(&e, b"state").as_deref(), Some("open"), "port {p}");
                    open.push(p);
                    ports += 1;
                }
                b"runstats" => runstats += 1,
                b"hosts" => {
                    let n = |a: &[u8]| attr(&e, a).unwrap().parse::<u64>().unwrap();
                    assert_eq!(n(b"up"), LOOPBACK_HOSTS, "<runstats><hosts up>");
                    assert_eq!(n(b"down"), space.unrouted_hosts, "<runstats><hosts down>");
                    assert_eq!(n(b"total"), space.hosts(), "<runstats><hosts total>");
                }
                b"finished" => assert_eq!(attr(&e, b"exit").as_deref(), Some("success")),
                _ => {}
            },
            Event::End(e) if e.name().as_ref() == b"host" => {
                let h = host.take().expect("<address> in a <host>");
                assert!(hosts.set(h), "{}: host {h} written twice", path.display());
                union.ports[h as usize] += ports;
                for &p in &open {
                    assert!(union.open.insert((h, p)), "host {h} port {p} twice");
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    assert_eq!(runstats, 1, "one <runstats>");
    assert_eq!(
        hosts.count(),
        LOOPBACK_HOSTS,
        "{}: every host once",
        path.display()
    );
}

/// Validates against nmap's DTD by streaming; required under CI.
fn xmllint(path: &Path) {
    let dtd = Path::new("/usr/share/nmap/nmap.dtd");
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !dtd.exists() {
        assert!(!ci, "nmap.dtd is needed under CI");
        println!("nmap.dtd missing: {} not validated", path.display());
        return;
    }
    let o = Command::new("xmllint")
        .args(["--stream", "--noout", "--dtdvalid"])
        .arg(dtd)
        .arg(path)
        .output();
    match o {
        Ok(o) => assert!(o.status.success(), "{}: {}", path.display(), stderr(&o)),
        Err(e) => {
            assert!(!ci, "xmllint is needed under CI: {e}");
            println!("xmllint not run: {e}");
        }
    }
}

/// Streams one shard's grepable file: one header, one `done` footer last,
/// every loopback host exactly once. Adds the hosts' ports to `union`.
fn check_grepable(space: &Space, path: &Path, union: &mut Union) {
    let mut hosts = Bits::new(LOOPBACK_HOSTS);
    let mut status = Bits::new(LOOPBACK_HOSTS);
    let f = std::fs::File::open(path).unwrap();
    let (mut headers, mut footers, mut last) = (0, 0, String::new());
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let line = line.unwrap();
        if line.contains("scan initiated") {
            headers += 1;
        } else if let Some(rest) = line.strip_prefix("Host: ") {
            let mut fields = rest.split('\t');
            let h = space.host(fields.next().unwrap().trim_end_matches(" ()"));
            let second = fields.next().unwrap();
            if second.starts_with("Status: ") {
                assert_eq!(second, "Status: Up", "{line}");
                assert!(status.set(h), "host {h}'s status twice: {line}");
                continue;
            }
            assert!(hosts.set(h), "host {h} written twice: {line}");
            for p in second
                .strip_prefix("Ports: ")
                .unwrap_or_else(|| panic!("{line}"))
                .split(", ")
                .filter(|p| !p.is_empty())
            {
                assert!(p.contains("/open/"), "{line}");
                let p: u16 = p.split('/').next().unwrap().parse().unwrap();
                assert!(union.open.insert((h, p)), "{line}");
                union.ports[h as usize] += 1;
            }
            if let Some(ignored) = fields.next() {
                let n = ignored
                    .strip_prefix("Ignored State: closed (")
                    .and_then(|n| n.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{line}"));
                union.ports[h as usize] += n.parse::<u64>().unwrap();
            }
        } else if line.starts_with("# FastPort ") {
            footers += 1;
            assert!(line.starts_with("# FastPort done"), "{line}");
        }
        last = line;
    }
    assert_eq!((headers, footers), (1, 1), "one header, one footer");
    assert!(last.starts_with("# FastPort done"), "{last}");
    assert_eq!(
        hosts.count(),
        LOOPBACK_HOSTS,
        "{}: every host once",
        path.display()
    );
}

/// Binds the listeners of [`OPEN`].
fn open_listeners() -> Vec<TcpListener> {
    OPEN.iter()
        .map(|&(a, p)| TcpListener::bind((a, p)).expect("bind a listener"))
        .collect()
}

/// Release builds run the tier; a debug build only when `FASTPORT_SCALE`
/// asks for it.
fn release_only(test: &str) -> bool {
    if cfg!(debug_assertions) && std::env::var_os("FASTPORT_SCALE").is_none() {
        println!(
            "note: {test} runs against the release binary only (scripts/test's release pass); skipped in this debug build (FASTPORT_SCALE=N runs it)"
        );
        return false;
    }
    true
}

/// Three shards with every output on, the second interrupted three times
/// at random moments and resumed, then merged: the shards' records and
/// lines hold every result once (hosts straddling an interrupt used to get
/// a partial record from each run), the merge counts every probe, and no
/// run passes 64 MiB.
#[test]
fn a_large_sharded_scan_interrupted_three_times_is_exact_in_every_format() {
    if !release_only("a_large_sharded_scan_interrupted_three_times_is_exact_in_every_format")
        || !in_netns!(a_large_sharded_scan_interrupted_three_times_is_exact_in_every_format)
    {
        return;
    }
    let _ls = open_listeners();
    let space = Space::new(scale_bits());
    let dir = temp_dir("at-scale");
    let mut rng = Rng::new();
    let started = Instant::now();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let [j, x, g, st] = ["jsonl", "xml", "gnmap", "json"].map(|e| format!("s{k}.{e}"));
        let args = [
            "--seed",
            "11",
            "--shard",
            &shard,
            "-p",
            PORTS,
            "-oJ",
            &j,
            "-oX",
            &x,
            "-oG",
            &g,
            "--stats",
            &st,
            LOOPBACK,
            &space.unrouted,
        ];
        let interrupts = if k == 2 { 3 } else { 0 };
        let runs =
            interrupted_and_resumed(&dir, &args, "fastport-2-of-3.resume", interrupts, &mut rng);
        let stats = read_stats(&dir.join(&st));
        assert_eq!(stats["run"]["parts"], runs, "shard {k}");
    }
    println!(
        "{} probes ({} hosts x {PORTS_PER_HOST} ports, {LOOPBACK} and {}) in {:.1} s",
        space.probes(),
        space.hosts(),
        space.unrouted,
        started.elapsed().as_secs_f64()
    );

    let mut xml = Union::new();
    let mut grepable = Union::new();
    for k in 1..=3 {
        check_xml(&space, &dir.join(format!("s{k}.xml")), &mut xml);
        check_grepable(&space, &dir.join(format!("s{k}.gnmap")), &mut grepable);
    }
    xml.check(&space, "-oX of the shards");
    grepable.check(&space, "-oG of the shards");
    let files = ["s1.jsonl", "s2.jsonl", "s3.jsonl"].map(|f| dir.join(f));
    check_jsonl(&space, &files.each_ref().map(|p| p.as_path()));

    let merge = watched(
        &dir,
        &[
            "merge", "-oJ", "m.jsonl", "--stats", "m.json", "s1.jsonl", "s2.jsonl", "s3.jsonl",
            "s1.json", "s2.json", "s3.json",
        ],
        None,
    );
    assert_eq!(merge.code, Some(0), "{}", merge.stderr);
    assert!(
        merge.peak_kib <= PEAK_KIB,
        "merge: peak RSS {} KiB",
        merge.peak_kib
    );
    check_jsonl(&space, &[&dir.join("m.jsonl")]);
    let stats = read_stats(&dir.join("m.json"));
    let open = OPEN.len() as u64;
    assert_eq!(stats["results"], space.probes(), "{stats}");
    assert_eq!(stats["shard"], "1/1");
    assert_eq!(stats["states"]["open"], open);
    assert_eq!(
        stats["states"]["closed"],
        LOOPBACK_HOSTS * PORTS_PER_HOST - open
    );
    assert_eq!(
        stats["states"]["filtered"],
        space.unrouted_hosts * PORTS_PER_HOST
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-p 80 -oX` over the whole unrouted benchmark range 2001:2::/48: 2⁸⁰
/// probes, more than a `u64` counts, so the scan runs in segments of 2⁶³
/// (every connect fails at once). It used to be refused. Interrupted after
/// 60 s (`FASTPORT_SCALE_SECS` changes it): memory stays within the bound,
/// the document is DTD-valid, and a resume continues in the same segment
/// within the bound too. The order is pseudo-random across hosts.
#[test]
fn an_unrouted_ipv6_range_interrupted_stays_within_64_mib() {
    if !release_only("an_unrouted_ipv6_range_interrupted_stays_within_64_mib")
        || !in_netns!(an_unrouted_ipv6_range_interrupted_stays_within_64_mib)
    {
        return;
    }
    let secs: u64 = std::env::var("FASTPORT_SCALE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = temp_dir("at-scale-v6");
    let ran = watched(
        &dir,
        &["-p", "80", "-oX", "x.xml", "2001:2::/48"],
        Some(Duration::from_secs(secs)),
    );
    println!(
        "2001:2::/48 (2^80 probes), SIGINT after {secs} s: peak RSS {} KiB",
        ran.peak_kib
    );
    assert_eq!(ran.code, Some(130), "{}", ran.stderr);
    assert!(
        ran.peak_kib > 0 && ran.peak_kib <= PEAK_KIB,
        "peak RSS {} KiB",
        ran.peak_kib
    );
    xmllint(&dir.join("x.xml"));
    let progress = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("fastport.resume")).unwrap();
        assert!(
            text.contains("\"space\": 1208925819614629174706176,"),
            "the whole 2^80"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let p = &v["progress"];
        (
            p["segment"].as_u64().unwrap(),
            p["done_below"].as_u64().unwrap(),
            text.len(),
        )
    };
    let (segment, below, bytes) = progress(&dir);
    println!("resume file: {bytes} bytes, segment ordinal {segment}, done below {below}");
    assert_eq!(segment, 0);
    assert!(below > 0);

    let resumed = watched(
        &dir,
        &["--resume", "fastport.resume"],
        Some(Duration::from_secs(10)),
    );
    println!(
        "resumed, SIGINT after 10 s: peak RSS {} KiB",
        resumed.peak_kib
    );
    assert_eq!(resumed.code, Some(130), "{}", resumed.stderr);
    assert!(
        resumed.peak_kib > 0 && resumed.peak_kib <= PEAK_KIB,
        "peak RSS {} KiB",
        resumed.peak_kib
    );
    xmllint(&dir.join("x.xml"));
    let (segment, later, _) = progress(&dir);
    assert_eq!(segment, 0);
    assert!(later > below, "{later} <= {below}");

    // Pseudo-random across hosts: within a block of hosts the order is
    // mixed, and the blocks of two seconds are far apart in the segment's
    // 2^63 addresses, not neighbours.
    let o = watched(
        &dir,
        &[
            "-p",
            "80",
            "--show",
            "all",
            "-oJ",
            "j.jsonl",
            "--seed",
            "3",
            "2001:2::/48",
        ],
        Some(Duration::from_secs(2)),
    );
    assert_eq!(o.code, Some(130), "{}", o.stderr);
    let f = std::fs::File::open(dir.join("j.jsonl")).unwrap();
    let addrs: Vec<u128> = BufReader::new(f)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            let ip: std::net::Ipv6Addr = v["addr"].as_str().unwrap().parse().unwrap();
            u128::from(ip)
        })
        .collect();
    assert!(addrs.len() >= 1000, "{}", addrs.len());
    let neighbours = addrs
        .windows(2)
        .filter(|w| w[0].abs_diff(w[1]) == 1)
        .count();
    assert!(neighbours < addrs.len() / 10, "{neighbours} neighbours");
    let blocks: BTreeSet<u128> = addrs.iter().map(|a| a >> 14).collect();
    let (lo, hi) = (blocks.first().unwrap(), blocks.last().unwrap());
    println!(
        "{} results in {} host blocks, spread {}",
        addrs.len(),
        blocks.len(),
        hi - lo
    );
    assert!(blocks.len() >= 2 && hi - lo > 1 << 30, "blocks {blocks:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
