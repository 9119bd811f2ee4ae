//! A session: one live world, each scanner run against it N times, measured
//! and scored. Runs inside the namespace (see `netns.rs`); a netsim world
//! gets a fresh simulator for each run, whose record joins the run's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::measure::run_launched;
use crate::netns::LiveWorld;
use crate::report::{Record, Report, RunRecord};
use crate::scanners::{Locations, Scanner, Unavailable};
use crate::score::score;
use crate::world::World;

/// How to run the scanners.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The scanners, in order.
    pub scanners: Vec<Scanner>,
    /// Runs per scanner (the report gives medians).
    pub repeat: usize,
    /// Where the programs are.
    pub locations: Locations,
    /// Extra arguments per scanner name or family (`fastport-threads` or
    /// `fastport`), after the scenario's.
    pub scanner_args: BTreeMap<String, Vec<String>>,
    /// Extra arguments for every scanner, last.
    pub extra_args: Vec<String>,
    /// A run taking longer is killed and reported failed.
    pub time_limit: Duration,
    /// Keep each run's output files in this directory instead of deleting them.
    pub keep_outputs: Option<PathBuf>,
}

/// Runs every scanner against `world`, made real as `live`; progress goes to stderr.
pub fn run_scanners(world: &World, live: &LiveWorld, opts: &SessionOptions) -> Vec<Record> {
    opts.scanners
        .iter()
        .map(|s| run_one(world, live, s, opts))
        .collect()
}

fn run_one(world: &World, live: &LiveWorld, scanner: &Scanner, opts: &SessionOptions) -> Record {
    let scenario = world.scenario.name.clone();
    let program = match scanner.locate(&opts.locations) {
        Ok(p) => p,
        Err(Unavailable::Skip(reason)) => {
            eprintln!("lab: {scanner}: skipped: {reason}");
            return Record::Skipped {
                scanner: scanner.name.clone(),
                scenario,
                reason,
            };
        }
        Err(Unavailable::Error(error)) => {
            return Record::Failed {
                scanner: scanner.name.clone(),
                scenario,
                error,
            };
        }
    };
    let mut extra = world
        .scenario
        .args_for(&scanner.name, scanner.family.as_str());
    if let Some(a) = opts
        .scanner_args
        .get(&scanner.name)
        .or_else(|| opts.scanner_args.get(scanner.family.as_str()))
    {
        extra.extend(a.iter().cloned());
    }
    extra.extend(opts.extra_args.iter().cloned());
    let mut runs = Vec::new();
    let mut command = Vec::new();
    for i in 0..opts.repeat.max(1) {
        match run_once(world, live, scanner, &program, &extra, opts, i) {
            Ok((cmd, record, score)) => {
                eprintln!(
                    "lab: {scanner} run {}/{}: {:.3} s, {}",
                    i + 1,
                    opts.repeat.max(1),
                    record.wall_s,
                    if score.exact { "exact" } else { "NOT exact" }
                );
                if command.is_empty() {
                    command = cmd;
                }
                runs.push((record, score));
            }
            Err(error) => {
                eprintln!("lab: {scanner} run {}: FAILED: {error}", i + 1);
                return Record::Failed {
                    scanner: scanner.name.clone(),
                    scenario,
                    error,
                };
            }
        }
    }
    Record::Scored(Box::new(Report::from_runs(
        &scanner.name,
        (
            &scenario,
            &world.scenario.scale,
            world.seed,
            world.truth.probes(),
        ),
        command,
        runs,
    )))
}

fn run_once(
    world: &World,
    live: &LiveWorld,
    scanner: &Scanner,
    program: &Path,
    extra: &[String],
    opts: &SessionOptions,
    index: usize,
) -> Result<(Vec<String>, RunRecord, crate::score::Score), String> {
    let dir = match &opts.keep_outputs {
        Some(d) => d.join(format!(
            "{}-{}-{}",
            world.scenario.name,
            scanner.name,
            index + 1
        )),
        None => std::env::temp_dir().join(format!(
            "fastport-lab-{}-{}-{}",
            std::process::id(),
            scanner.name,
            index + 1
        )),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let sim = live.serve().map_err(|e| e.to_string())?;
    let mut result = measure_and_score(world, scanner, program, extra, opts, &dir);
    if let Some(sim) = sim {
        let record = sim.stop().map_err(|e| format!("netsim: {e}"))?;
        eprintln!("{}", record.summary().trim_end());
        if opts.keep_outputs.is_some() {
            let _ = std::fs::write(
                dir.join("netsim-record.json"),
                serde_json::to_string_pretty(&record).unwrap_or_default(),
            );
        }
        if let Ok((_, run, _)) = &mut result {
            run.netsim = Some((&record).into());
        }
    }
    if opts.keep_outputs.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure_and_score(
    world: &World,
    scanner: &Scanner,
    program: &Path,
    extra: &[String],
    opts: &SessionOptions,
    dir: &Path,
) -> Result<(Vec<String>, RunRecord, crate::score::Score), String> {
    let out_file = dir.join("output");
    let stdout_file = dir.join("stdout");
    let stderr_file = dir.join("stderr");
    let args: Vec<OsString> = scanner.args(world, &out_file, extra);
    let create = |p: &Path| File::create(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let shown: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let launcher = std::env::current_exe().map_err(|e| format!("locating fastport-lab: {e}"))?;
    let m = run_launched(
        &launcher,
        program,
        &args,
        create(&stdout_file)?,
        create(&stderr_file)?,
        opts.time_limit,
        &dir.join("measurement.json"),
    )
    .map_err(|e| format!("running {}: {e}", shown[0]))?;
    let stderr_tail = || {
        let s = std::fs::read_to_string(&stderr_file).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    };
    if m.timed_out {
        return Err(format!(
            "killed after the {:?} time limit; command: {}",
            opts.time_limit,
            shown.join(" ")
        ));
    }
    if !m.status.success() {
        return Err(format!(
            "{}; command: {}; stderr:\n{}",
            m.status,
            shown.join(" "),
            stderr_tail()
        ));
    }
    let source = if scanner.reads_stdout() {
        &stdout_file
    } else {
        &out_file
    };
    let text = std::fs::read_to_string(source)
        .map_err(|e| format!("reading {}: {e}", source.display()))?;
    let observations = scanner
        .parse(&text, &world.truth.ports)
        .map_err(|e| format!("parsing {}: {e}", source.display()))?;
    let score = score(&world.truth, &observations, scanner.coverage());
    Ok((shown, RunRecord::new(&m, &score), score))
}
