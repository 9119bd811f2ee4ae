//! The private network namespace and the world made real inside it.
//!
//! `fastport-lab` re-executes itself under `unshare --net` (adding `--user
//! --map-root-user` when not root), marking the child with [`INSIDE_ENV`].
//! Inside, the namespace holds only `lo`; the lab brings it up, loads the
//! world's nftables rules, adds its routes and devices, starts its listeners
//! and checks a sample of probes against the truth. Nothing a scanner sends
//! can leave the namespace, and it vanishes with the process.
//!
//! A netsim world instead gets netsim's TUN device and route (198.18.0.0/15
//! only) from [`LiveWorld::serve`], a fresh simulator for each scanner run:
//! each run then has its own record of what was injected, and loses the same
//! packets (netsim keys loss by the n-th SYN to a target).

use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddrV4;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

pub use fastport_netsim::netns::under_ci;
use fastport_netsim::netns::{ReexecError, Unshare, find_tool};
use fastport_netsim::{Model, RunningSim};

use crate::LabError;
use crate::listeners::Listeners;
use crate::sys;
use crate::truth::{ConnectResult, Expect, Reason, classify_connect};
use crate::world::World;

/// Set (to `1`) in the re-executed child that runs inside the namespace.
pub const INSIDE_ENV: &str = "FASTPORT_LAB_NETNS";
/// Overrides the `unshare` program (tests point it at `false` to exercise
/// the paths taken where no namespace can be made).
pub const UNSHARE_ENV: &str = "FASTPORT_LAB_UNSHARE";

/// The lab's re-execution (netsim's mechanism, the lab's names).
const LAB: Unshare = Unshare {
    inside_env: INSIDE_ENV,
    program_env: UNSHARE_ENV,
};

/// Whether this process is the lab's child inside its namespace.
pub fn inside() -> bool {
    LAB.inside()
}

/// The tools among `tools` (plus `unshare`) that are not installed.
pub fn missing_tools(tools: &[&str]) -> Vec<String> {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| find_tool(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if LAB.program().is_none() {
        missing.insert(0, "unshare".into());
    }
    missing
}

/// Tries to make a namespace (running `true` in one); `Err` says why not.
pub fn probe() -> Result<(), String> {
    LAB.probe(&["true"])
}

/// Runs this executable again with `args`, inside a fresh network namespace.
pub fn reexec(args: &[OsString]) -> Result<ExitStatus, LabError> {
    LAB.reexec(args).map_err(|e| match e {
        ReexecError::NoUnshare => LabError::Namespace("unshare is not installed".into()),
        ReexecError::Io(what, e) => LabError::io(what, e),
    })
}

/// The interfaces of this process's network namespace (from /proc/self/net/dev,
/// which, unlike /sys/class/net, follows the namespace).
fn interfaces() -> Result<Vec<String>, LabError> {
    let dev = std::fs::read_to_string("/proc/self/net/dev")
        .map_err(|e| LabError::io("reading /proc/self/net/dev", e))?;
    Ok(dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect())
}

/// Refuses to touch the network unless this is a fresh namespace of the lab's.
fn ensure_private_namespace() -> Result<(), LabError> {
    if !inside() {
        return Err(LabError::World(format!(
            "not inside the lab's namespace ({INSIDE_ENV} unset): refusing to change this machine's network"
        )));
    }
    if let (Ok(me), Ok(init)) = (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) && me == init
    {
        return Err(LabError::World(
            "this is the machine's own network namespace: refusing to change it".into(),
        ));
    }
    let ifs = interfaces()?;
    if ifs != ["lo"] {
        return Err(LabError::World(format!(
            "the namespace is not fresh (interfaces: {}): refusing to build a world in it",
            ifs.join(", ")
        )));
    }
    Ok(())
}

fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let path = find_tool(program).ok_or_else(|| LabError::MissingTools(vec![program.into()]))?;
    let mut child = Command::new(&path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::io(format!("running {program}"), e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| LabError::io(format!("writing to {program}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("waiting for {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::World(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The kernel rate-limits the ICMP errors it sends (`icmp_msgs_per_sec` =
/// 1000 with a burst of 50, plus `icmp_ratelimit` per destination), nft
/// rejects included. Left alone, a fast scan of 1000 host-unreachable ports
/// gets most of them dropped silently: measured, FastPort then saw 605 of
/// 1000 as no-response, nmap 336. These settings belong to the namespace, so
/// lifting them makes "host-unreach" the truth without touching the machine.
fn lift_icmp_rate_limits() -> Result<(), LabError> {
    for (name, value) in [
        ("icmp_msgs_per_sec", "10000000"),
        ("icmp_msgs_burst", "10000000"),
        ("icmp_ratelimit", "0"),
    ] {
        let path = format!("/proc/sys/net/ipv4/{name}");
        std::fs::write(&path, value).map_err(|e| LabError::io(format!("writing {path}"), e))?;
    }
    Ok(())
}

/// A world made real: its listeners run until this is dropped; the rules,
/// routes and devices go with the namespace. A netsim world's network runs
/// only while [`LiveWorld::serve`]'s simulator does.
pub struct LiveWorld {
    listeners: Option<Listeners>,
    netsim: Option<Model>,
}

impl LiveWorld {
    /// Connections the listeners accepted so far.
    pub fn accepted(&self) -> u64 {
        self.listeners.as_ref().map_or(0, Listeners::accepted)
    }

    /// For a netsim world, a fresh simulator serving it until
    /// [`RunningSim::stop`] returns its record; `None` for other worlds.
    pub fn serve(&self) -> Result<Option<RunningSim>, LabError> {
        self.netsim.as_ref().map(start_netsim).transpose()
    }

    /// Stops the listeners.
    pub fn stop(self) -> Result<(), LabError> {
        match self.listeners {
            Some(l) => l.stop().map_err(|e| LabError::io("listener thread", e)),
            None => Ok(()),
        }
    }
}

fn start_netsim(model: &Model) -> Result<RunningSim, LabError> {
    let options = fastport_netsim::Options {
        // The session's own time limit bounds a run (and then stops the
        // simulator); netsim's deadline must not cut a long scan short.
        max_time: Duration::from_secs(24 * 3600),
        ..fastport_netsim::Options::default()
    };
    fastport_netsim::start(model.clone(), &options)
        .map_err(|e| LabError::World(format!("starting netsim: {e}")))
}

/// Builds `world` in this (fresh, private) namespace and checks it.
pub fn materialize(world: &World) -> Result<LiveWorld, LabError> {
    ensure_private_namespace()?;
    let missing = missing_tools(&world.tools());
    if !missing.is_empty() {
        return Err(LabError::MissingTools(missing));
    }
    let _ = sys::raise_nofile_limit();
    lift_icmp_rate_limits()?;
    run_tool("ip", &["link", "set", "lo", "up"], None)?;
    if let Some(model) = &world.netsim {
        netsim_self_check(world, model)?;
        return Ok(LiveWorld {
            listeners: None,
            netsim: Some(model.clone()),
        });
    }
    if let Some(rules) = world.nft_ruleset() {
        run_tool("nft", &["-f", "-"], Some(&rules))?;
    }
    let batch = world.ip_batch();
    if !batch.is_empty() {
        run_tool("ip", &["-batch", "-"], Some(&(batch.join("\n") + "\n")))?;
    }
    let listeners =
        Listeners::start(&world.listeners).map_err(|e| LabError::World(e.to_string()))?;
    let live = LiveWorld {
        listeners: Some(listeners),
        netsim: None,
    };
    self_check(world)?;
    Ok(live)
}

/// The self-check of a netsim world, in a simulator of its own (so the
/// scanners' runs see the first SYN to each target as theirs): a few
/// targets of each kind whose first SYN and answer the model does not lose,
/// each probed with a timeout just past its latency.
fn netsim_self_check(world: &World, model: &Model) -> Result<(), LabError> {
    const PER_KIND: usize = 2;
    let mut counts: std::collections::HashMap<Expect, usize> = std::collections::HashMap::new();
    let mut picked: Vec<(SocketAddrV4, Expect, Duration)> = Vec::new();
    let sample = world
        .truth
        .exceptions
        .iter()
        .map(|(sa, e)| (*sa, e.clone()))
        .chain(
            world
                .truth
                .iter()
                .step_by(97)
                .take(2_000)
                .map(|(sa, e)| (sa, e.clone())),
        );
    for (sa, expect) in sample {
        let (addr, port) = (*sa.ip(), sa.port());
        let latency = model.latency(addr, port, 0);
        let n = counts.entry(expect.clone()).or_default();
        // Past 900 ms the kernel's 1 s SYN retransmission would be a second SYN.
        if *n >= PER_KIND
            || latency > Duration::from_millis(900)
            || model.syn_lost(addr, port, 0)
            || model.reply_lost(addr, port, 0)
        {
            continue;
        }
        *n += 1;
        let timeout = if expect == Expect::filtered(Reason::NoResponse) {
            Duration::from_millis(200)
        } else {
            latency + Duration::from_millis(200)
        };
        picked.push((sa, expect, timeout));
    }
    let sim = start_netsim(model)?;
    let mut failure = None;
    for (sa, expect, timeout) in picked {
        let got = match sys::connect_probe(sa, Some(timeout)) {
            Ok(g) => g,
            Err(e) => {
                failure = Some(LabError::io(format!("self-check probe of {sa}"), e));
                break;
            }
        };
        let verdict = classify_connect(got);
        if !verdict
            .as_ref()
            .is_some_and(|v| expect.accepts(v.state, Some(&v.reason)))
        {
            let what = verdict.map_or_else(|| format!("{got:?}"), |v| v.to_string());
            failure = Some(LabError::SelfCheck(format!(
                "{sa} should be {expect} (netsim), a probe found {what}"
            )));
            break;
        }
    }
    sim.stop()
        .map_err(|e| LabError::World(format!("stopping netsim: {e}")))?;
    failure.map_or(Ok(()), Err)
}

/// Probes a sample of every kind of (address, port) with the floor's probe
/// and compares with the truth, so a world that is not what it claims fails
/// loudly instead of mis-scoring scanners.
fn self_check(world: &World) -> Result<(), LabError> {
    const PER_KIND: usize = 8;
    const SILENT_PER_KIND: usize = 1;
    let silent = Expect::filtered(Reason::NoResponse);
    let mut picked: Vec<(SocketAddrV4, Expect)> = Vec::new();
    let mut counts: std::collections::HashMap<Expect, usize> = std::collections::HashMap::new();
    for sa in world.listeners.iter().take(64) {
        picked.push((*sa, Expect::OPEN));
    }
    counts.insert(Expect::OPEN, usize::MAX);
    let mut add = |sa: SocketAddrV4, e: &Expect| {
        let n = counts.entry(e.clone()).or_default();
        let cap = if *e == silent {
            SILENT_PER_KIND
        } else {
            PER_KIND
        };
        if *n < cap {
            *n += 1;
            picked.push((sa, e.clone()));
        }
    };
    for (sa, e) in &world.truth.exceptions {
        add(*sa, e);
    }
    for (sa, e) in world.truth.iter().step_by(97).take(10_000) {
        add(sa, e);
    }
    for (sa, expect) in picked {
        let timeout = Duration::from_millis(200);
        let got = sys::connect_probe(sa, Some(timeout))
            .map_err(|e| LabError::io(format!("self-check probe of {sa}"), e))?;
        let verdict = classify_connect(got);
        let ok = verdict
            .as_ref()
            .is_some_and(|v| expect.accepts(v.state, Some(&v.reason)));
        if !ok {
            let what = match (got, verdict) {
                (_, Some(v)) => v.to_string(),
                (ConnectResult::Failed(errno), None) => {
                    std::io::Error::from_raw_os_error(errno).to_string()
                }
                (ConnectResult::Connected { .. }, None) => "connected".into(),
            };
            return Err(LabError::SelfCheck(format!(
                "{sa} should be {expect}, a probe found {what}"
            )));
        }
    }
    Ok(())
}
