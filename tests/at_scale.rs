//! The at-scale tier: a space of 2²⁴ probes (`FASTPORT_SCALE=N` for 2ᴺ)
//! scanned with every output on, interrupted three times at random moments
//! and resumed, and again as three shards (one interrupted and resumed)
//! merged; the union must be exact in every format, and no run may pass
//! 64 MiB of resident memory.
//!
//! Everything runs inside a private network namespace on 127.0.0.0/8
//! (closed ports answer at once; a few listeners give open ports) and the
//! unrouted benchmark range 2001:2::/48. Results are checked by streaming
//! the files (a bitmap of probes, a bitmap of hosts), never by loading
//! them. The tier runs against the release binary only (`scripts/test`'s
//! release pass): a debug build says so and skips.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::in_netns;
use crate::util::{fastport, read_stats, stderr, temp_dir};

/// Ports per host: 2⁸, so the space of 2ᴺ probes is 2ᴺ⁻⁸ hosts.
const PORTS: &str = "9001-9256";
const FIRST_PORT: u16 = 9001;
const PORTS_PER_HOST: u64 = 256;
/// The memory bound every run is held to.
const PEAK_KIB: u64 = 64 * 1024;

/// Listeners: these (address, port) are open, every other probe of
/// 127.0.0.0/16 is closed (`conn-refused`).
const OPEN: [(&str, u16); 5] = [
    ("127.0.0.1", 9001),
    ("127.0.3.7", 9080),
    ("127.0.77.77", 9100),
    ("127.0.200.9", 9256),
    ("127.0.255.254", 9200),
];

/// 2ᴺ probes: `FASTPORT_SCALE=N` (16 to 30), 24 by default.
fn scale_bits() -> u32 {
    match std::env::var("FASTPORT_SCALE") {
        Ok(v) => {
            let n: u32 = v
                .parse()
                .unwrap_or_else(|_| panic!("FASTPORT_SCALE={v}: give N for 2^N probes"));
            assert!(
                (16..=30).contains(&n),
                "FASTPORT_SCALE={n}: N must be 16 to 30"
            );
            n
        }
        Err(_) => 24,
    }
}

/// The scan of 2ᴺ probes: 127.0.0.0/(40-N) × 256 ports.
struct Space {
    hosts: u64,
    prefix: String,
}

impl Space {
    fn new(bits: u32) -> Space {
        Space {
            hosts: 1 << (bits - 8),
            prefix: format!("127.0.0.0/{}", 40 - bits),
        }
    }

    fn probes(&self) -> u64 {
        self.hosts * PORTS_PER_HOST
    }

    /// The host index of an address of the space.
    fn host(&self, addr: &str) -> u64 {
        let ip: Ipv4Addr = addr.parse().unwrap_or_else(|_| panic!("address {addr}"));
        let h = u64::from(u32::from(ip) - 0x7f00_0000);
        assert!(h < self.hosts, "{addr} is outside {}", self.prefix);
        h
    }

    fn probe(&self, addr: &str, port: u16) -> u64 {
        assert!(
            (FIRST_PORT..FIRST_PORT + PORTS_PER_HOST as u16).contains(&port),
            "port {port}"
        );
        self.host(addr) * PORTS_PER_HOST + u64::from(port - FIRST_PORT)
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

/// Every `-oJ` line of `files` into the probe bitmap: each probe at most
/// once, open exactly where a listener is, closed (`conn-refused`)
/// elsewhere. Returns how many lines were read.
fn check_jsonl(space: &Space, files: &[&Path], seen: &mut Bits, show_all: bool) -> u64 {
    let open = space.open();
    let mut open_seen = BTreeSet::new();
    let mut lines = 0;
    for path in files {
        let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in BufReader::with_capacity(1 << 20, f).lines() {
            let line = line.unwrap();
            let l: crate::util::Line = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", path.display()));
            let i = space.probe(&l.addr, l.port);
            assert!(seen.set(i), "reported twice: {line}");
            let key = (space.host(&l.addr), l.port);
            let state = format!("{}/{}", l.state, l.reason);
            if open.contains(&key) {
                assert_eq!(state, "open/syn-ack", "{line}");
                open_seen.insert(key);
            } else {
                assert!(show_all, "a closed port with --show open: {line}");
                assert_eq!(state, "closed/conn-refused", "{line}");
            }
            lines += 1;
        }
    }
    assert_eq!(open_seen, open, "every open port");
    lines
}

/// Streams an nmap XML file: DTD-valid (`xmllint --stream`), and every
/// host of the space exactly once, with its open ports shown and the rest
/// counted closed (`--show open`), no partial record.
fn check_xml(space: &Space, path: &Path) {
    xmllint(path);
    use quick_xml::events::Event;
    let open = space.open();
    let mut hosts = Bits::new(space.hosts);
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(path).unwrap(),
    ));
    let mut buf = Vec::new();
    let attr = |e: &quick_xml::events::BytesStart, name: &[u8]| -> Option<String> {
        e.try_get_attribute(name)
            .ok()
            .flatten()
            .map(|a| String::from_utf8(a.value.into_owned()).unwrap())
    };
    let mut host: Option<u64> = None;
    let mut closed = 0u64;
    let mut ports: Vec<(u16, String)> = Vec::new();
    let mut port: Option<u16> = None;
    let mut runstats = 0;
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"host" => {
                    assert!(attr(&e, b"timedout").is_none(), "a partial record");
                    closed = 0;
                    ports.clear();
                }
                b"address" => host = Some(space.host(&attr(&e, b"addr").unwrap())),
                b"extraports" => {
                    assert_eq!(attr(&e, b"state").as_deref(), Some("closed"));
                    closed += attr(&e, b"count").unwrap().parse::<u64>().unwrap();
                }
                b"port" => port = Some(attr(&e, b"portid").unwrap().parse().unwrap()),
                b"state" => {
                    let p = port.take().expect("<state> in a <port>");
                    ports.push((p, attr(&e, b"state").unwrap()));
                }
                b"runstats" => runstats += 1,
                b"hosts" => {
                    let total: u64 = attr(&e, b"total").unwrap().parse().unwrap();
                    assert_eq!(total, space.hosts, "<runstats><hosts total>");
                    assert_eq!(attr(&e, b"up").unwrap(), total.to_string());
                }
                b"finished" => assert_eq!(attr(&e, b"exit").as_deref(), Some("success")),
                _ => {}
            },
            Event::End(e) if e.name().as_ref() == b"host" => {
                let h = host.take().expect("<address> in a <host>");
                assert!(hosts.set(h), "host {h} written twice");
                let want: Vec<(u16, String)> = open
                    .iter()
                    .filter(|(oh, _)| *oh == h)
                    .map(|&(_, p)| (p, "open".to_string()))
                    .collect();
                assert_eq!(ports, want, "host {h}");
                assert_eq!(closed + ports.len() as u64, PORTS_PER_HOST, "host {h}");
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    assert_eq!(runstats, 1, "one <runstats>");
    assert_eq!(hosts.count(), space.hosts, "every host once");
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

/// Streams a grepable file: one header, one `done` footer last, every host
/// exactly once with its open ports and the rest `closed`.
fn check_grepable(space: &Space, path: &Path) {
    let open = space.open();
    let mut hosts = Bits::new(space.hosts);
    let f = std::fs::File::open(path).unwrap();
    let (mut headers, mut footers, mut last) = (0, 0, String::new());
    for line in BufReader::with_capacity(1 << 20, f).lines() {
        let line = line.unwrap();
        if line.contains("scan initiated") {
            headers += 1;
        } else if let Some(rest) = line.strip_prefix("Host: ") {
            let mut fields = rest.split('\t');
            let addr = fields.next().unwrap().trim_end_matches(" ()");
            let h = space.host(addr);
            assert!(hosts.set(h), "host {h} written twice: {line}");
            let ports: Vec<u16> = fields
                .next()
                .unwrap()
                .trim_start_matches("Ports: ")
                .split(", ")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    assert!(p.contains("/open/"), "{line}");
                    p.split('/').next().unwrap().parse().unwrap()
                })
                .collect();
            let want: Vec<u16> = open
                .iter()
                .filter(|(oh, _)| *oh == h)
                .map(|&(_, p)| p)
                .collect();
            assert_eq!(ports, want, "{line}");
            let ignored = format!(
                "Ignored State: closed ({})",
                PORTS_PER_HOST - want.len() as u64
            );
            assert_eq!(fields.next(), Some(ignored.as_str()), "{line}");
        } else if line.starts_with("# FastPort ") && !line.contains("seed") {
            footers += 1;
            assert!(line.starts_with("# FastPort done"), "{line}");
        }
        last = line;
    }
    assert_eq!((headers, footers), (1, 1), "one header, one footer");
    assert!(last.starts_with("# FastPort done"), "{last}");
    assert_eq!(hosts.count(), space.hosts, "every host once");
}

/// Binds the listeners of [`OPEN`].
fn open_listeners() -> Vec<TcpListener> {
    OPEN.iter()
        .map(|&(a, p)| TcpListener::bind((a, p)).expect("bind a listener"))
        .collect()
}

fn release_only(test: &str) -> bool {
    if cfg!(debug_assertions) {
        println!(
            "note: {test} runs against the release binary only (scripts/test's release pass); skipped in this debug build"
        );
        return false;
    }
    true
}

/// The whole scan with `-oJ -oX -oG --stats`, interrupted three times at
/// random moments and resumed: each output holds every result once (hosts
/// straddling an interrupt used to get a partial record from each run).
#[test]
fn a_large_scan_interrupted_three_times_is_exact_in_every_format() {
    if !release_only("a_large_scan_interrupted_three_times_is_exact_in_every_format")
        || !in_netns!(a_large_scan_interrupted_three_times_is_exact_in_every_format)
    {
        return;
    }
    let _ls = open_listeners();
    let space = Space::new(scale_bits());
    let dir = temp_dir("at-scale-whole");
    let mut rng = Rng::new();
    let started = Instant::now();
    let first = [
        "--seed",
        "7",
        "-p",
        PORTS,
        "-oJ",
        "a.jsonl",
        "-oX",
        "a.xml",
        "-oG",
        "a.gnmap",
        "--stats",
        "a.json",
        &space.prefix,
    ];
    let runs = interrupted_and_resumed(&dir, &first, "fastport.resume", 3, &mut rng);
    println!(
        "{} probes in {runs} runs, {:.1} s",
        space.probes(),
        started.elapsed().as_secs_f64()
    );

    let mut seen = Bits::new(space.probes());
    let lines = check_jsonl(&space, &[&dir.join("a.jsonl")], &mut seen, false);
    assert_eq!(lines, OPEN.len() as u64, "the open ports, once each");
    let stats = read_stats(&dir.join("a.json"));
    assert_eq!(stats["results"], space.probes(), "{stats}");
    assert_eq!(stats["states"]["open"], OPEN.len() as u64);
    assert_eq!(stats["run"]["parts"], runs);
    check_xml(&space, &dir.join("a.xml"));
    check_grepable(&space, &dir.join("a.gnmap"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three shards (`--show all`), the second interrupted and resumed, merged
/// into nmap XML and grepable: the shards' results are every probe once
/// with its true state, and the merged documents every host once.
#[test]
fn three_shards_one_interrupted_merge_to_the_exact_scan() {
    if !release_only("three_shards_one_interrupted_merge_to_the_exact_scan")
        || !in_netns!(three_shards_one_interrupted_merge_to_the_exact_scan)
    {
        return;
    }
    let _ls = open_listeners();
    let space = Space::new(scale_bits());
    let dir = temp_dir("at-scale-shards");
    let mut rng = Rng::new();
    for k in 1..=3 {
        let (shard, jsonl, stats) = (
            format!("{k}/3"),
            format!("s{k}.jsonl"),
            format!("s{k}.json"),
        );
        let args = [
            "--seed",
            "11",
            "--shard",
            &shard,
            "-p",
            PORTS,
            "--show",
            "all",
            "-oJ",
            &jsonl,
            "--stats",
            &stats,
            &space.prefix,
        ];
        let interrupts = usize::from(k == 2);
        let runs =
            interrupted_and_resumed(&dir, &args, "fastport-2-of-3.resume", interrupts, &mut rng);
        assert_eq!(runs, 1 + interrupts as u32, "shard {k}");
    }

    let started = Instant::now();
    let merge = watched(
        &dir,
        &[
            "merge",
            "-oX",
            "m.xml",
            "-oG",
            "m.gnmap",
            "--stats",
            "m.json",
            "--sort-dir",
            ".",
            "s1.jsonl",
            "s2.jsonl",
            "s3.jsonl",
            "s1.json",
            "s2.json",
            "s3.json",
        ],
        None,
    );
    println!(
        "merge of {} results: {:.1} s, peak RSS {} KiB",
        space.probes(),
        started.elapsed().as_secs_f64(),
        merge.peak_kib
    );
    assert_eq!(merge.code, Some(0), "{}", merge.stderr);
    assert!(
        merge.peak_kib <= PEAK_KIB,
        "merge: peak RSS {} KiB",
        merge.peak_kib
    );

    let mut seen = Bits::new(space.probes());
    let files = ["s1.jsonl", "s2.jsonl", "s3.jsonl"].map(|f| dir.join(f));
    let lines = check_jsonl(
        &space,
        &files.each_ref().map(|p| p.as_path()),
        &mut seen,
        true,
    );
    assert_eq!(lines, space.probes(), "every probe once");
    assert_eq!(seen.count(), space.probes());
    let stats = read_stats(&dir.join("m.json"));
    assert_eq!(stats["results"], space.probes(), "{stats}");
    assert_eq!(stats["shard"], "1/1");
    check_xml(&space, &dir.join("m.xml"));
    check_grepable(&space, &dir.join("m.gnmap"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-p 80 -oX` over 2³ⁿ addresses of the unrouted benchmark range
/// 2001:2::/48 (every connect fails at once), interrupted: memory stays
/// within the bound and the document is valid. (The whole /48 is 2⁸⁰
/// probes, past the 2⁶⁴ a scan may hold: refused as a usage error, so the
/// largest part of it that fits is scanned.)
#[test]
fn an_unrouted_ipv6_range_interrupted_stays_within_64_mib() {
    if !release_only("an_unrouted_ipv6_range_interrupted_stays_within_64_mib")
        || !in_netns!(an_unrouted_ipv6_range_interrupted_stays_within_64_mib)
    {
        return;
    }
    let dir = temp_dir("at-scale-v6");
    let whole = watched(&dir, &["-p", "80", "-oX", "x.xml", "2001:2::/48"], None);
    assert_eq!(whole.code, Some(2), "{}", whole.stderr);
    assert!(
        whole.stderr.contains("more than 2^64 probes"),
        "{}",
        whole.stderr
    );
    let ran = watched(
        &dir,
        &["-p", "80", "-oX", "x.xml", "2001:2::/65"],
        Some(Duration::from_secs(10)),
    );
    println!(
        "2001:2::/65, SIGINT after 10 s: peak RSS {} KiB",
        ran.peak_kib
    );
    assert_eq!(ran.code, Some(130), "{}", ran.stderr);
    assert!(
        ran.peak_kib > 0 && ran.peak_kib <= PEAK_KIB,
        "peak RSS {} KiB",
        ran.peak_kib
    );
    xmllint(&dir.join("x.xml"));
    let resume = std::fs::metadata(dir.join("fastport.resume"))
        .unwrap()
        .len();
    println!("resume file: {resume} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}
