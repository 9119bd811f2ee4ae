//! FastPort's ground-truth lab: seeded worlds in private network namespaces,
//! scanners run against them, their output scored against the truth and
//! their cost measured.
//!
//! The layers, in the order a run goes through them:
//!
//! - [`scenario`]: the declarative TOML files in `lab/scenarios/` (hosts,
//!   ports, how many open, which ports are dropped or rejected, routes), and
//!   their scales (`--scale small` for tests).
//! - [`world`]: a scenario plus a seed ([`rng`]) made concrete and pure: the
//!   [`truth::Truth`] of every (address, port), and the nftables rules, routes
//!   and listeners that make it so. [`truth`] also records which errno each
//!   mechanism really produces (measured, not assumed).
//! - [`netns`]: the `fastport-lab` binary re-executes itself in a fresh
//!   network namespace, builds the world there ([`listeners`] serves the open
//!   ports) and self-checks it. Nothing leaves the namespace.
//! - [`session`] and [`scanners`]: each scanner (FastPort and its engines, the
//!   floor of `src/bin/floor.rs`, nmap, RustScan) gets its command line; its
//!   process is measured with `wait4` ([`measure`], [`sys`]) and its output parsed.
//!   A `[netsim]` world is served instead by `fastport-netsim` (remote hosts
//!   with latency and loss behind a TUN device), one fresh simulator per
//!   run, whose record of what it injected joins the run's
//!   ([`report::RunRecord::netsim`]).
//! - [`score`] and [`report`]: precision, recall and the confusion matrix;
//!   medians of repeats; tables, JSON lines and CSV.
//!
//! Tests and benchmarks of the root crate call [`run`], which spawns the
//! `fastport-lab` binary and returns its [`Outcome`]: skipped (no namespace
//! could be made here, or the scanner is not installed) or a scored
//! [`Report`]; or [`bench()`], which runs several scanners against one world.
//!
//! ```no_run
//! let spec = fastport_lab::RunSpec {
//!     scenario: "filtered-mix".into(),
//!     scale: "small".into(),
//!     seed: 7,
//!     scanner: "fastport".into(),
//!     fastport_bin: Some("target/debug/fastport".into()),
//!     ..Default::default()
//! };
//! match fastport_lab::run(&spec).unwrap() {
//!     fastport_lab::Outcome::Scored(report) => report.assert_exact(),
//!     fastport_lab::Outcome::Skipped(why) => eprintln!("skipped: {why}"),
//! }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod listeners;
pub mod measure;
pub mod netns;
pub mod report;
pub mod rng;
pub mod scanners;
pub mod scenario;
pub mod score;
pub mod session;
#[allow(unsafe_code)]
pub mod sys;
pub mod targets;
pub mod truth;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use error::LabError;
pub use report::{Record, Report};
pub use scenario::Scenario;
pub use score::Score;
pub use world::World;

/// Exit code of `fastport-lab` when the lab cannot run here (no namespace)
/// and `CI` is not `true`.
pub const SKIP_EXIT: i32 = 3;
/// Exit code of `fastport-lab run --expect-exact` when a scored run was not exact.
pub const INEXACT_EXIT: i32 = 4;
/// Environment variable naming the `fastport-lab` binary.
pub const LAB_BIN_ENV: &str = "FASTPORT_LAB_BIN";

/// One scanner against one world, for tests and benches.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// A built-in scenario name or a path to a `.toml` file.
    pub scenario: String,
    /// The world seed.
    pub seed: u64,
    /// `full`, or a scale the scenario defines (all built-ins define `small`).
    pub scale: String,
    /// `fastport`, `fastport-ENGINE`, `floor`, `floor-all`, `nmap`, `nmap-grep` or `rustscan`.
    pub scanner: String,
    /// Extra arguments for the scanner.
    pub extra_args: Vec<String>,
    /// Extra arguments for one scanner of several, by name or family:
    /// `fastport-threads=--stats /tmp/t.json` (`fastport-lab run --args`).
    pub scanner_args: Vec<String>,
    /// The FastPort binary (default: `target/release/fastport`, relative to
    /// the working directory; skipped when absent).
    pub fastport_bin: Option<PathBuf>,
    /// Runs (the report gives medians).
    pub repeat: usize,
    /// The `fastport-lab` binary (default: [`LAB_BIN_ENV`], else next to the
    /// running test executable, built with cargo if missing).
    pub lab_bin: Option<PathBuf>,
}

impl Default for RunSpec {
    fn default() -> RunSpec {
        RunSpec {
            scenario: "loopback-65k".into(),
            seed: 1,
            scale: "small".into(),
            scanner: "fastport".into(),
            extra_args: Vec::new(),
            scanner_args: Vec::new(),
            fastport_bin: None,
            repeat: 1,
            lab_bin: None,
        }
    }
}

/// What a lab run came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Could not run here, and that is not a failure: the reason says why.
    Skipped(String),
    /// The scanner ran and was scored.
    Scored(Box<Report>),
}

impl Outcome {
    /// The report, or `None` after printing why the run was skipped (for tests).
    pub fn report_or_skip(self, test: &str) -> Option<Report> {
        match self {
            Outcome::Scored(r) => Some(*r),
            Outcome::Skipped(why) => {
                eprintln!("{test}: skipped: {why}");
                None
            }
        }
    }
}

/// Runs `spec` through the `fastport-lab` binary (in its own namespace).
pub fn run(spec: &RunSpec) -> Result<Outcome, LabError> {
    let records = match invoke(spec, std::slice::from_ref(&spec.scanner))? {
        Err(why) => return Ok(Outcome::Skipped(why)),
        Ok(records) => records,
    };
    match records.into_iter().find(|r| r.scanner() == spec.scanner) {
        Some(Record::Scored(r)) => Ok(Outcome::Scored(r)),
        Some(Record::Skipped { reason, .. }) => Ok(Outcome::Skipped(reason)),
        Some(Record::Failed { scanner, error, .. }) => Err(LabError::Scanner {
            scanner,
            message: error,
        }),
        None => Err(LabError::Lab(format!("no record for {}", spec.scanner))),
    }
}

/// Builds `spec`'s world once and runs every scanner of `scanners` against it
/// (`spec.scanner` is ignored): one record per scanner, in order. Where no
/// namespace can be made (and CI is not `true`) every record is `Skipped`.
/// Feed the records to [`report::bench_rows`] for the ratios to the floor and nmap.
pub fn bench(spec: &RunSpec, scanners: &[String]) -> Result<Vec<Record>, LabError> {
    let scenario = spec.scenario.clone();
    Ok(match invoke(spec, scanners)? {
        Ok(records) => records,
        Err(why) => scanners
            .iter()
            .map(|s| Record::Skipped {
                scanner: s.clone(),
                scenario: scenario.clone(),
                reason: why.clone(),
            })
            .collect(),
    })
}

/// Runs `fastport-lab run --json`; `Ok(Err(why))` when the lab was skipped.
fn invoke(spec: &RunSpec, scanners: &[String]) -> Result<Result<Vec<Record>, String>, LabError> {
    let bin = match &spec.lab_bin {
        Some(b) => b.clone(),
        None => lab_binary()?,
    };
    let mut cmd = Command::new(&bin);
    cmd.args(["run", "--json", "--scenario", &spec.scenario])
        .args(["--seed", &spec.seed.to_string()])
        .args(["--scale", &spec.scale])
        .args(["--scanner", &scanners.join(",")])
        .args(["--repeat", &spec.repeat.max(1).to_string()]);
    if let Some(f) = &spec.fastport_bin {
        cmd.arg("--fastport").arg(f);
    }
    for a in &spec.scanner_args {
        cmd.arg("--args").arg(a);
    }
    if !spec.extra_args.is_empty() {
        cmd.arg("--").args(&spec.extra_args);
    }
    let out = cmd
        .output()
        .map_err(|e| LabError::io(format!("running {}", bin.display()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records: Vec<Record> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| LabError::Lab(format!("unreadable record: {e}; stderr:\n{stderr}")))?;
    if out.status.code() == Some(SKIP_EXIT) {
        let why = records
            .iter()
            .find_map(|r| match r {
                Record::Skipped { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| stderr.trim().to_string());
        return Ok(Err(why));
    }
    // A failed scanner makes the run exit 1 but still leaves its record.
    if !out.status.success() && records.is_empty() {
        return Err(LabError::Lab(format!(
            "{}; stderr:\n{}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(Ok(records))
}

/// Finds the `fastport-lab` binary: [`LAB_BIN_ENV`], else next to the running
/// executable (`target/PROFILE/deps/test` → `target/PROFILE/fastport-lab`),
/// building it there with cargo when it is missing.
pub fn lab_binary() -> Result<PathBuf, LabError> {
    if let Some(p) = std::env::var_os(LAB_BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("locating the test executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let bin = profile_dir.join("fastport-lab");
    if bin.is_file() && profile_dir.join("floor").is_file() {
        return Ok(bin);
    }
    // Build it into the same target directory and profile.
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "fastport-lab", "--bins"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| LabError::io("running cargo build -p fastport-lab", e))?;
    if !status.success() || !bin.is_file() {
        return Err(LabError::Lab(format!(
            "cargo build -p fastport-lab {status}; no binary at {} (set {LAB_BIN_ENV})",
            bin.display()
        )));
    }
    Ok(bin)
}
