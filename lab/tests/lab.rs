//! The lab's own tests, in one binary: scenario files, seeded worlds,
//! scoring of crafted scanner outputs, and real scans in a namespace.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddrV4;

use fastport_lab::scanners::{Scanner, parse_fastport_json, parse_nmap_xml, parse_rustscan};
use fastport_lab::scenario::{BUILTIN, FULL};
use fastport_lab::score::{Coverage, score};
use fastport_lab::truth::{Expect, Reason, State};
use fastport_lab::world::EPHEMERAL;
use fastport_lab::{Outcome, Report, RunSpec, Scenario, World};

fn world(name: &str, scale: &str, seed: u64) -> World {
    World::build(&Scenario::load(name, scale).unwrap(), seed).unwrap()
}

fn tally(w: &World) -> HashMap<Expect, u64> {
    w.truth.tally().into_iter().collect()
}

mod scenarios {
    use super::*;

    #[test]
    fn builtins_hold_what_their_descriptions_promise() {
        let w = world("loopback-65k", FULL, 1);
        assert_eq!(w.truth.probes(), 65535);
        assert_eq!(w.listeners.len(), 25);
        let eph = w
            .listeners
            .iter()
            .filter(|s| EPHEMERAL.contains(&s.port()))
            .count();
        assert_eq!(eph, 5);

        let w = world("wide-16", FULL, 1);
        assert_eq!(w.truth.host_count(), 65536);
        assert_eq!(w.truth.probes(), 65536 * 8);
        let share = w.listeners.len() as f64 / w.truth.probes() as f64;
        assert!((share - 0.002).abs() < 0.0001, "{share}");

        let t = tally(&world("filtered-mix", FULL, 1));
        assert_eq!(t[&Expect::filtered(Reason::NoResponse)], 5000);
        assert_eq!(t[&Expect::filtered(Reason::HostUnreach)], 1000);
        assert_eq!(t[&Expect::CLOSED], 2000);
        assert_eq!(t[&Expect::OPEN], 5);

        let w = world("ephemeral-trap", FULL, 1);
        assert_eq!(w.truth.ports.to_string(), "32768-60999");
        assert_eq!(w.listeners.len(), 5);

        let t = tally(&world("routes-mix", FULL, 1));
        for reason in [
            Reason::AdminProhibited,
            Reason::HostUnreach,
            Reason::NetUnreach,
            Reason::NoResponse,
        ] {
            assert!(
                t.contains_key(&Expect::filtered(reason.clone())),
                "routes-mix lacks {reason}"
            );
        }
    }

    #[test]
    fn small_scales_are_small_and_keep_few_silent_probes() {
        for (name, _) in BUILTIN {
            let w = world(name, "small", 1);
            let probes = w.truth.probes();
            let silent = tally(&w)
                .get(&Expect::filtered(Reason::NoResponse))
                .copied()
                .unwrap_or(0);
            if w.netsim.is_some() {
                // A /26 × the top 100: the profile's 3 % filtered, waited
                // out in parallel, and opens drawn by the model.
                assert!(probes <= 6400, "{name} small has {probes} probes");
                assert!(
                    silent * 20 <= probes,
                    "{name} small has {silent} silent probes"
                );
                assert!(!w.truth.open().is_empty(), "{name} small has no open port");
                continue;
            }
            assert!(probes <= 5000, "{name} small has {probes} probes");
            assert!(silent <= 50, "{name} small has {silent} silent probes");
            assert!(!w.listeners.is_empty(), "{name} small has no open port");
        }
    }

    #[test]
    fn a_scenario_file_on_disk_loads_by_path() {
        let dir = std::env::temp_dir().join(format!("fastport-lab-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.toml");
        std::fs::write(
            &path,
            "name = \"tiny\"\nhosts = [\"127.0.0.1\"]\nports = \"1-10\"\n[open]\nports = \"7\"\n",
        )
        .unwrap();
        let w = World::build(&Scenario::load(path.to_str().unwrap(), FULL).unwrap(), 0).unwrap();
        assert_eq!(
            w.listeners,
            ["127.0.0.1:7".parse::<SocketAddrV4>().unwrap()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

mod determinism {
    use super::*;

    #[test]
    fn same_scenario_and_seed_give_the_same_world() {
        for (name, _) in BUILTIN {
            let (a, b) = (world(name, FULL, 42), world(name, FULL, 42));
            assert_eq!(a.listeners, b.listeners, "{name}");
            assert_eq!(a.truth, b.truth, "{name}");
            assert_eq!(a.nft_ruleset(), b.nft_ruleset(), "{name}");
            assert_eq!(a.ip_batch(), b.ip_batch(), "{name}");
        }
    }

    #[test]
    fn another_seed_gives_another_world() {
        let (a, b) = (
            world("loopback-65k", FULL, 1),
            world("loopback-65k", FULL, 2),
        );
        assert_ne!(a.listeners, b.listeners);
        let (a, b) = (
            world("filtered-mix", FULL, 1),
            world("filtered-mix", FULL, 2),
        );
        assert_ne!(a.rules, b.rules);
    }
}

mod scoring {
    use super::*;

    /// FastPort's JSON lines for every probe of the truth.
    fn perfect_fastport(w: &World) -> String {
        let mut s = String::new();
        for (sa, e) in w.truth.iter() {
            let rtt = if e.reason == Reason::NoResponse {
                "null"
            } else {
                "12"
            };
            let _ = writeln!(
                s,
                r#"{{"addr":"{}","port":{},"state":"{}","reason":"{}","rtt_us":{rtt}}}"#,
                sa.ip(),
                sa.port(),
                e.state,
                e.reason
            );
        }
        s
    }

    #[test]
    fn fastport_json_exact_then_each_kind_of_error() {
        let w = world("filtered-mix", "small", 7);
        let text = perfect_fastport(&w);
        let s = score(
            &w.truth,
            &parse_fastport_json(&text).unwrap(),
            Coverage::All,
        );
        assert!(s.exact, "{}", s.describe());

        // A self-connect reported as closed/self-connect is still exact...
        let closed = w
            .truth
            .iter()
            .find(|(_, e)| **e == Expect::CLOSED)
            .unwrap()
            .0;
        let line = |state: &str, reason: &str| {
            format!(
                r#"{{"addr":"{}","port":{},"state":"{state}","reason":"{reason}","rtt_us":12}}"#,
                closed.ip(),
                closed.port()
            )
        };
        let swap = |new: String| {
            text.lines()
                .map(|l| {
                    if l == line("closed", "conn-refused") {
                        new.clone()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let s = score(
            &w.truth,
            &parse_fastport_json(&swap(line("closed", "self-connect"))).unwrap(),
            Coverage::All,
        );
        assert!(s.exact, "{}", s.describe());
        // ...reported open it is a false positive.
        let s = score(
            &w.truth,
            &parse_fastport_json(&swap(line("open", "syn-ack"))).unwrap(),
            Coverage::All,
        );
        assert_eq!((s.false_positives, s.wrong_state, s.exact), (1, 1, false));
        assert!(s.precision < 1.0);

        // Dropped lines are missing, repeated lines duplicates.
        let mut lines: Vec<&str> = text.lines().collect();
        let first = lines.remove(0);
        lines.push(lines[0]);
        let s = score(
            &w.truth,
            &parse_fastport_json(&lines.join("\n")).unwrap(),
            Coverage::All,
        );
        assert_eq!((s.missing, s.duplicates), (1, 1));
        assert!(!first.is_empty());
    }

    #[test]
    fn nmap_xml_with_folded_ports_scores_every_probe() {
        let w = world("routes-mix", FULL, 3);
        // Build nmap-style XML: open ports listed, everything else folded by state/reason.
        let mut xml = String::from("<?xml version=\"1.0\"?>\n<nmaprun scanner=\"nmap\">\n");
        let mut by_host: Vec<(std::net::Ipv4Addr, Vec<(u16, Expect)>)> = Vec::new();
        for (sa, e) in w.truth.iter() {
            match by_host.last_mut() {
                Some((a, v)) if *a == *sa.ip() => v.push((sa.port(), e.clone())),
                _ => by_host.push((*sa.ip(), vec![(sa.port(), e.clone())])),
            }
        }
        for (addr, ports) in &by_host {
            let _ = writeln!(
                xml,
                "<host><status state=\"up\"/>\n<address addr=\"{addr}\" addrtype=\"ipv4\"/>\n<ports>"
            );
            let mut folded: HashMap<Expect, Vec<u16>> = HashMap::new();
            for (p, e) in ports {
                if e.state == State::Open {
                    let _ = writeln!(
                        xml,
                        "<port protocol=\"tcp\" portid=\"{p}\"><state state=\"open\" reason=\"syn-ack\" reason_ttl=\"0\"/></port>"
                    );
                } else {
                    folded.entry(e.clone()).or_default().push(*p);
                }
            }
            for (e, ps) in folded {
                let spec = fastport_lab::targets::PortSet::from_ports(ps.iter().copied());
                let _ = writeln!(
                    xml,
                    "<extraports state=\"{}\" count=\"{}\">\n<extrareasons reason=\"{}\" count=\"{}\" proto=\"tcp\" ports=\"{spec}\"/>\n</extraports>",
                    e.state,
                    ps.len(),
                    e.reason,
                    ps.len()
                );
            }
            xml.push_str("</ports>\n</host>\n");
        }
        xml.push_str("</nmaprun>\n");
        let nmap: Scanner = "nmap".parse().unwrap();
        let obs = nmap.parse(&xml, &w.truth.ports).unwrap();
        let s = score(&w.truth, &obs, nmap.coverage());
        assert!(s.exact, "{}", s.describe());
        assert_eq!(s.reported, w.truth.probes());

        // Host-unreach ports reported as no-response (what a short timeout
        // without SO_ERROR gives) are reason errors, not state errors.
        let hu = w
            .truth
            .tally()
            .into_iter()
            .find(|(e, _)| e.reason == Reason::HostUnreach)
            .unwrap()
            .1;
        let obs = parse_nmap_xml(&xml.replace("reason=\"host-unreach\"", "reason=\"no-response\""))
            .unwrap();
        let s = score(&w.truth, &obs, Coverage::All);
        assert_eq!(
            (s.wrong_reason, s.wrong_state, s.exact),
            (hu, 0, false),
            "{}",
            s.describe()
        );
    }

    #[test]
    fn rustscan_greppable_is_judged_on_open_ports() {
        let w = world("wide-16", "small", 5);
        let mut by_host: HashMap<std::net::Ipv4Addr, Vec<u16>> = HashMap::new();
        for sa in &w.listeners {
            by_host.entry(*sa.ip()).or_default().push(sa.port());
        }
        let render = |m: &HashMap<std::net::Ipv4Addr, Vec<u16>>| {
            let mut s = String::from("[~] chatter the parser must skip\n");
            for (a, ps) in m {
                let ps: Vec<String> = ps.iter().map(u16::to_string).collect();
                let _ = writeln!(s, "{a} -> [{}]", ps.join(","));
            }
            s
        };
        let s = score(
            &w.truth,
            &parse_rustscan(&render(&by_host)).unwrap(),
            Coverage::OpenOnly,
        );
        assert!(s.exact, "{}", s.describe());
        assert_eq!(s.missing, 0);

        let victim = w.listeners[0];
        by_host
            .get_mut(victim.ip())
            .unwrap()
            .retain(|p| *p != victim.port());
        by_host
            .entry("127.0.0.9".parse().unwrap())
            .or_default()
            .push(1);
        let s = score(
            &w.truth,
            &parse_rustscan(&render(&by_host)).unwrap(),
            Coverage::OpenOnly,
        );
        assert_eq!((s.false_negatives, s.outside, s.false_positives), (1, 1, 1));
        assert!(s.recall < 1.0 && s.precision < 1.0 && !s.exact);
    }
}

/// Real scans inside a private network namespace. They skip (with a message)
/// where no namespace can be made, unless CI=true, where they fail.
mod namespace {
    use super::*;

    fn lab(test: &str, scenario: &str, scanner: &str) -> Option<Report> {
        let spec = RunSpec {
            scenario: scenario.into(),
            seed: 11,
            scale: "small".into(),
            scanner: scanner.into(),
            lab_bin: Some(env!("CARGO_BIN_EXE_fastport-lab").into()),
            ..RunSpec::default()
        };
        match fastport_lab::run(&spec) {
            Ok(Outcome::Skipped(why)) => {
                eprintln!("{test}: {scanner} skipped: {why}");
                None
            }
            Ok(o) => o.report_or_skip(test),
            Err(e) => panic!("{test}: {scanner} on {scenario}: {e}"),
        }
    }

    fn assert_open_ports_exact(r: &Report) {
        let s = &r.score;
        assert!(
            s.false_positives == 0 && s.false_negatives == 0 && s.true_positives == s.open_truth,
            "{} on {}: open ports not exact:\n{}",
            r.scanner,
            r.scenario,
            s.describe()
        );
    }

    #[test]
    fn floor_and_nmap_find_exactly_the_open_ports() {
        let test = "floor_and_nmap_find_exactly_the_open_ports";
        if let Some(r) = lab(test, "loopback-65k", "floor") {
            r.assert_exact();
            assert!(r.score.open_truth > 0 && r.wall_s > 0.0 && r.max_rss_kib > 0);
        }
        if let Some(r) = lab(test, "loopback-65k", "nmap") {
            assert_open_ports_exact(&r);
            assert_eq!(r.score.coverage, Coverage::All);
        }
    }

    #[test]
    fn every_mechanism_gives_the_errno_the_truth_says() {
        // The floor's --show all reports every probe, so an exact score proves
        // each row of the mechanism table in world.rs on this kernel.
        for scenario in ["routes-mix", "filtered-mix"] {
            if let Some(r) = lab(
                "every_mechanism_gives_the_errno_the_truth_says",
                scenario,
                "floor-all",
            ) {
                r.assert_exact();
            }
        }
    }

    #[test]
    fn one_world_serves_several_scanners() {
        let spec = RunSpec {
            scenario: "wide-16".into(),
            lab_bin: Some(env!("CARGO_BIN_EXE_fastport-lab").into()),
            ..RunSpec::default()
        };
        let records = fastport_lab::bench(&spec, &["floor".into(), "nmap".into()]).unwrap();
        assert_eq!(records.len(), 2);
        let rows = fastport_lab::report::bench_rows(&records);
        match &records[0] {
            fastport_lab::Record::Scored(r) => {
                r.assert_exact();
                assert_eq!(rows[0].vs_floor, Some(1.0));
            }
            fastport_lab::Record::Skipped { reason, .. } => {
                eprintln!("one_world_serves_several_scanners: skipped: {reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn self_connects_are_not_open() {
        if let Some(r) = lab("self_connects_are_not_open", "ephemeral-trap", "floor-all") {
            r.assert_exact();
        }
    }
}

/// Where no namespace can be made: a skip with a reason, or, under CI=true,
/// a failure. `FASTPORT_LAB_UNSHARE=false` stands in for a machine without
/// namespaces.
mod no_namespace {
    use std::process::Command;

    fn lab_without_namespaces(ci: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastport-lab"));
        cmd.args([
            "run",
            "--json",
            "--scenario",
            "loopback-65k",
            "--scale",
            "small",
        ])
        .args(["--scanner", "floor"])
        .env("FASTPORT_LAB_UNSHARE", "false")
        .env_remove("FASTPORT_LAB_NETNS")
        .env_remove("CI");
        if let Some(v) = ci {
            cmd.env("CI", v);
        }
        cmd.output().unwrap()
    }

    #[test]
    fn outside_ci_the_run_is_skipped_with_a_reason() {
        let out = lab_without_namespaces(None);
        assert_eq!(out.status.code(), Some(fastport_lab::SKIP_EXIT));
        let line = String::from_utf8(out.stdout).unwrap();
        let r: fastport_lab::Record = serde_json::from_str(line.trim()).unwrap();
        match r {
            fastport_lab::Record::Skipped { reason, .. } => {
                assert!(reason.contains("namespace"), "{reason}")
            }
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn under_ci_it_is_a_failure() {
        let out = lab_without_namespaces(Some("true"));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("cannot make a network namespace"), "{err}");
    }
}
