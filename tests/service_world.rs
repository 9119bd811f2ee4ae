//! The ground truth of service detection: real daemons from Debian's packages (OpenSSH,
//! nginx with a self-signed TLS site, Redis, vsftpd, memcached, Mosquitto, Dovecot IMAP and
//! POP3, Exim, PostgreSQL, MariaDB, Python's http.server), several on unusual ports so that
//! a port hint cannot decide, plus hostile listeners written here. FastPort must name every
//! real service exactly and its product on at least 90 % of them; `nmap -sV` runs on the
//! same world in the same test, and FastPort must name at least what nmap names.
//!
//! Everything runs inside `unshare --net --pid --fork --mount-proc` (`in_netns_with_daemons!`):
//! the daemons listen on that namespace's loopback only and die with the test.
//! `scripts/service-world start` starts them and writes the truth (port, service, product).
//! It needs root and the packages (scripts/test installs them); without them the test says
//! so and passes. `FASTPORT_WORLD=small` starts only the quick daemons (no mail, no
//! databases, no MQTT).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::in_netns_with_daemons;
use crate::util::netns::is_root;

/// What the daemons' packages put on the machine; the test is skipped without them.
const NEEDED: &[&str] = &[
    "/usr/sbin/sshd",
    "/usr/sbin/nginx",
    "/usr/bin/redis-server",
    "/usr/sbin/vsftpd",
    "/usr/bin/memcached",
    "/usr/sbin/mosquitto",
    "/usr/sbin/dovecot",
    "/usr/sbin/exim4",
    "/usr/sbin/mariadbd",
    "/usr/bin/mariadb-install-db",
    "/usr/lib/postgresql",
    "/usr/lib/dovecot/pop3",
    "/usr/bin/nmap",
];

/// A port's answer: service (with `ssl/` when tunnelled), product, version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Named {
    service: Option<String>,
    product: Option<String>,
    version: Option<String>,
}

/// One real daemon, as `scripts/service-world` started it.
#[derive(Debug)]
struct Truth {
    port: u16,
    service: String,
    product: String,
    name: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the world under `dir` and reads its truth.
fn start_world(dir: &Path, set: &str) -> Vec<Truth> {
    std::fs::create_dir_all(dir).expect("world dir");
    // To a file, not a pipe: the daemons keep what they inherit open, a pipe would never end.
    let log = dir.join("service-world.log");
    let file = std::fs::File::create(&log).expect("log file");
    let status = Command::new(repo().join("scripts/service-world"))
        .arg("start")
        .arg(dir)
        .arg(set)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .status()
        .expect("run scripts/service-world");
    assert!(
        status.success(),
        "scripts/service-world start failed ({status}): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::fs::read_to_string(dir.join("world.tsv"))
        .expect("world.tsv")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Truth {
                port: f[0].parse().expect("port"),
                service: f[1].to_owned(),
                product: f[2].to_owned(),
                name: f[3].to_owned(),
            }
        })
        .collect()
}

// ---- The hostile listeners: each an accept loop in a thread of the test.

fn listen(port: u16, serve: fn(TcpStream)) {
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind a hostile port");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
}

fn drain(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Accepts and never speaks.
fn silent(s: TcpStream) {
    drain(s);
}

/// Speaks one byte a second, forever.
fn trickle(mut s: TcpStream) {
    while s.write_all(b"\x07").is_ok() {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sends 1 MB of binary at once.
fn flood(mut s: TcpStream) {
    let mb: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let _ = s.write_all(&mb);
    drain(s);
}

/// Closes at once.
fn closes(s: TcpStream) {
    drop(s);
}

/// Says something no rule knows, then resets the connection.
fn resets(mut s: TcpStream) {
    let _ = s.write_all(b"\x1b[31mGO AWAY\x1b[0m\r\n");
    std::thread::sleep(Duration::from_millis(20));
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// A hostile listener: port, what it does, what FastPort must say (`tcpwrapped` or nothing).
type Hostile = (u16, fn(TcpStream), Option<&'static str>);

const HOSTILE: &[Hostile] = &[
    (9101, silent, None),
    (9102, trickle, None),
    (9103, flood, None),
    (9104, closes, Some("tcpwrapped")),
    (9105, resets, None),
];

/// Longest the scan may take with the hostile listeners in it (the conversation's waits:
/// NULL's banner floor, then every probe's wait, three at a time; far less in practice).
const HOSTILE_BOUND: Duration = Duration::from_secs(30);

// ---- FastPort.

/// `fastport -sV` on `ports` (the binary under test, its JSON lines read back): each
/// open port's service (with `ssl/` when tunnelled), product and version; and its wall time.
fn fastport(ports: &[u16], dir: &Path) -> (BTreeMap<u16, Named>, Duration) {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let json = dir.join("fastport.jsonl");
    let started = Instant::now();
    let out = crate::util::fastport()
        .args(["-sV", "-p", &list.join(","), "127.0.0.1", "-oJ"])
        .arg(&json)
        .output()
        .expect("run fastport");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "fastport -sV failed: {}",
        crate::util::stderr(&out)
    );
    let text = std::fs::read_to_string(&json).expect("fastport's JSON lines");
    let named = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let s = |k: &str| v[k].as_str().map(str::to_owned);
            let service = s("service").map(|n| match s("tunnel") {
                Some(t) => format!("{t}/{n}"),
                None => n,
            });
            let port = v["port"].as_u64().expect("port") as u16;
            (
                port,
                Named {
                    service,
                    product: s("product"),
                    version: s("version"),
                },
            )
        })
        .collect();
    (named, took)
}

// ---- nmap.

/// nmap's names for `ports` (from its XML), and its wall time.
fn nmap(ports: &[u16], dir: &Path) -> (BTreeMap<u16, Named>, Duration) {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let xml = dir.join("nmap.xml");
    let started = Instant::now();
    let out = Command::new("nmap")
        .args([
            "-sV",
            "-Pn",
            "-n",
            "-p",
            &list.join(","),
            "127.0.0.1",
            "-oX",
        ])
        .arg(&xml)
        .output()
        .expect("run nmap");
    let took = started.elapsed();
    assert!(out.status.success(), "nmap -sV failed: {out:?}");
    let text = std::fs::read_to_string(&xml).expect("nmap's XML");
    (parse_nmap_xml(&text), took)
}

/// `<port portid="N"><service name= product= version= tunnel=>` of nmap's XML.
fn parse_nmap_xml(text: &str) -> BTreeMap<u16, Named> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = BTreeMap::new();
    let mut port = None;
    loop {
        match reader.read_event().expect("nmap's XML is well-formed") {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| a.unescape_value().expect("attribute").into_owned())
                };
                match e.name().as_ref() {
                    b"port" => port = attr(b"portid").and_then(|p| p.parse::<u16>().ok()),
                    // A name from nmap's port table (`method="table"`) is a guess, not a
                    // detection: left out.
                    b"service" if attr(b"method").as_deref() == Some("probed") => {
                        if let Some(p) = port {
                            let service = attr(b"name").map(|n| match attr(b"tunnel") {
                                Some(t) => format!("{t}/{n}"),
                                None => n,
                            });
                            out.insert(
                                p,
                                Named {
                                    service,
                                    product: attr(b"product"),
                                    version: attr(b"version"),
                                },
                            );
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn show(n: Option<&Named>) -> String {
    match n {
        Some(n) => format!(
            "{} | {} | {}",
            n.service.as_deref().unwrap_or("-"),
            n.product.as_deref().unwrap_or("-"),
            n.version.as_deref().unwrap_or("-")
        ),
        None => "(no answer)".to_owned(),
    }
}

#[test]
fn real_daemons_are_named_exactly_and_at_least_as_nmap_names_them() {
    if !in_netns_with_daemons!(real_daemons_are_named_exactly_and_at_least_as_nmap_names_them) {
        return;
    }
    if !is_root() {
        eprintln!("skipped: the real-daemon world needs root (daemons start as their users)");
        return;
    }
    let missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: missing {missing:?} (scripts/test installs the packages)");
        return;
    }
    let set = std::env::var("FASTPORT_WORLD").unwrap_or_else(|_| "full".to_owned());
    // The test is PID 1 of its namespace: the name comes from the clock, not the PID.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("fastport-world-{stamp}"));
    let _ = std::fs::remove_dir_all(&dir);
    let world = start_world(&dir, &set);
    for &(port, serve, _) in HOSTILE {
        listen(port, serve);
    }
    let mut ports: Vec<u16> = world.iter().map(|t| t.port).collect();
    ports.extend(HOSTILE.iter().map(|h| h.0));

    let (ours, ours_wall) = fastport(&ports, &dir);
    let (theirs, nmap_wall) = nmap(&ports, &dir);

    println!("world ({} daemons, {set}):", world.len());
    println!("{:<6} {:<16} | fastport | nmap", "port", "daemon");
    for t in &world {
        println!(
            "{:<6} {:<16} | {} | {}",
            t.port,
            t.name,
            show(ours.get(&t.port)),
            show(theirs.get(&t.port))
        );
    }
    for &(port, _, _) in HOSTILE {
        println!(
            "{port:<6} {:<16} | {} | {}",
            "hostile",
            show(ours.get(&port)),
            show(theirs.get(&port))
        );
    }

    // Every real service named exactly; the product on at least 90 % of them.
    let mut wrong = Vec::new();
    let mut products = 0;
    let none = Named::default();
    for t in &world {
        let o = ours.get(&t.port).unwrap_or(&none);
        if o.service.as_deref() != Some(t.service.as_str()) {
            wrong.push(format!("{} ({}): {}", t.port, t.name, show(Some(o))));
        }
        products += usize::from(o.product.as_deref() == Some(t.product.as_str()));
    }
    let nmap_named = world
        .iter()
        .filter(|t| theirs.get(&t.port).and_then(|n| n.service.as_deref()) == Some(&t.service))
        .count();
    println!(
        "named: fastport {}/{n}, nmap {nmap_named}/{n}; product: fastport {products}/{n}; \
         wall: fastport {ours_wall:?}, nmap {nmap_wall:?}",
        world.len() - wrong.len(),
        n = world.len()
    );
    assert!(wrong.is_empty(), "misnamed: {wrong:#?}");
    assert!(
        products * 10 >= world.len() * 9,
        "product right on only {products} of {}",
        world.len()
    );
    // FastPort names at least what nmap names (here: everything, so this holds whenever the
    // assertion above does; kept so that a change of truth cannot hide it).
    for t in &world {
        if theirs.get(&t.port).and_then(|n| n.service.as_deref()) == Some(&t.service) {
            assert_eq!(
                ours.get(&t.port).and_then(|n| n.service.as_deref()),
                Some(t.service.as_str())
            );
        }
    }
    // Hostile listeners: reported open, with the verdict they deserve (never a made-up
    // service), and the whole scan within their bound.
    for &(port, _, expected) in HOSTILE {
        let named = ours
            .get(&port)
            .unwrap_or_else(|| panic!("hostile port {port} not reported"));
        assert_eq!(named.service.as_deref(), expected, "hostile port {port}");
    }
    assert!(
        ours_wall < HOSTILE_BOUND,
        "fastport -sV took {ours_wall:?} with hostile listeners in the world"
    );
}
