//! The command line: truth, profiles, errors, exit codes, and stopping by itself.

use std::time::{Duration, Instant};

use fastport_netsim::{Model, ModelConfig, Preset, SKIP_EXIT, TIMEOUT_EXIT};

use crate::util::{can_simulate, json_lines, netsim, stderr};

#[test]
fn truth_prints_the_models_truth_as_fastport_json_lines() {
    let out = netsim()
        .args(["truth", "--profile", "internet-like", "--seed", "5"])
        .args(["--hosts", "198.18.4.0/28", "--ports", "top10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 16 * 10);
    let mut config = Preset::InternetLike.config();
    config.hosts = "198.18.4.0/28".parse().unwrap();
    config.ports = "top10".parse().unwrap();
    let model = Model::new(config, 5).unwrap();
    let expected: Vec<String> = model
        .truth()
        .map(|t| serde_json::to_string(&t).unwrap())
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    let first = &lines[0];
    assert_eq!(first["addr"], "198.18.4.0");
    assert_eq!(first["port"], 21);
    assert!(["open", "closed", "filtered"].contains(&first["state"].as_str().unwrap()));
}

#[test]
fn profile_prints_toml_that_loads_back() {
    for preset in Preset::ALL {
        let out = netsim().args(["profile", preset.name()]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(ModelConfig::from_toml(&text).unwrap(), preset.config());
    }
    let out = netsim().args(["profile", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn hosts_outside_the_benchmark_range_are_refused_with_the_input_named() {
    let out = netsim()
        .args(["truth", "--hosts", "240.0.0.0/8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("\"240.0.0.0/8\"") && err.contains("198.18.0.0/15"),
        "{err}"
    );
    let out = netsim()
        .args(["run", "--hosts", "240.1.0.0/24", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn run_skips_where_no_namespace_can_be_made_and_fails_under_ci() {
    let out = netsim()
        .args(["run", "--profile", "far", "--", "true"])
        .env("FASTPORT_NETSIM_UNSHARE", "false")
        .env_remove("CI")
        .env_remove("FASTPORT_NETSIM_NETNS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(SKIP_EXIT), "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped"));
    let out = netsim()
        .args(["run", "--profile", "far", "--", "true"])
        .env("FASTPORT_NETSIM_UNSHARE", "false")
        .env("CI", "true")
        .env_remove("FASTPORT_NETSIM_NETNS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn run_ends_when_its_command_ends_and_passes_on_the_exit_code() {
    if !can_simulate("run_ends_when_its_command_ends_and_passes_on_the_exit_code") {
        return;
    }
    let t0 = Instant::now();
    let out = netsim()
        .args(["run", "--profile", "far", "--max-time", "60s", "--"])
        .args(["sh", "-c", "ip route get 198.18.0.9 && exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dev fpsim0 src 198.19.255.254"),
        "the route: {stdout}"
    );
    assert!(stderr(&out).contains("netsim: profile far seed 1"));
}

#[test]
fn run_stops_at_max_time_and_kills_its_command() {
    if !can_simulate("run_stops_at_max_time_and_kills_its_command") {
        return;
    }
    let t0 = Instant::now();
    let out = netsim()
        .args([
            "run",
            "--profile",
            "far",
            "--max-time",
            "1s",
            "--",
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(TIMEOUT_EXIT), "{}", stderr(&out));
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(stderr(&out).contains("--max-time 1s ran out"));
}

#[test]
fn run_refuses_hosts_that_hold_its_own_source_address() {
    let out = netsim()
        .args(["run", "--hosts", "198.19.255.0/24", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("198.19.255.254"), "{}", stderr(&out));
}
