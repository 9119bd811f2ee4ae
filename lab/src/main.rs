//! `fastport-lab`: build a seeded world in a private network namespace, run
//! scanners against it, score and measure them.
//!
//! ```text
//! fastport-lab run --scenario loopback-65k --seed 1 --scanner floor --scanner nmap --repeat 5
//! fastport-lab bench --scanners fastport,floor,nmap,rustscan --repeat 5 --out target/lab-bench
//! fastport-lab truth --scenario filtered-mix --seed 1 --scale small
//! fastport-lab run --scenario netsim-far --scale bench --scanner fastport,nmap   # served by netsim
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use fastport_lab::measure::launch_and_report;
use fastport_lab::report::{bench_csv, bench_rows, bench_table, run_summary};
use fastport_lab::scanners::{Locations, Scanner};
use fastport_lab::scenario::{BUILTIN, FULL};
use fastport_lab::session::{SessionOptions, run_scanners};
use fastport_lab::{INEXACT_EXIT, LabError, Record, SKIP_EXIT, Scenario, World, netns};

#[derive(Parser)]
#[command(
    name = "fastport-lab",
    version,
    about = "Ground-truth lab for port scanners: seeded worlds in private network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build one world and run scanners against it (inside a fresh network namespace).
    Run(RunArgs),
    /// Run scanners against several scenarios and tabulate speed and accuracy.
    Bench(BenchArgs),
    /// Print a world's truth (no namespace needed).
    Truth(TruthArgs),
    /// List the built-in scenarios.
    Scenarios,
    /// Run a command and write its wall time and rusage as JSON (the lab's
    /// launcher for scanners; see measure.rs).
    #[command(hide = true)]
    Measure(MeasureArgs),
}

#[derive(Args)]
struct MeasureArgs {
    /// Kill the command after this many milliseconds.
    #[arg(long, value_name = "MS")]
    time_limit_ms: u64,
    /// Where to write the measurement.
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// The command.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

#[derive(Args, Clone)]
struct WorldArgs {
    /// Built-in scenario name or path to a .toml file.
    #[arg(long)]
    scenario: String,
    /// World seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scale: full, or a [scale.NAME] table of the scenario (e.g. small).
    #[arg(long, default_value = FULL)]
    scale: String,
}

#[derive(Args, Clone)]
struct ProgramArgs {
    /// FastPort binary [default: target/release/fastport; skipped if absent].
    #[arg(long, value_name = "BIN")]
    fastport: Option<PathBuf>,
    /// Floor binary [default: next to fastport-lab].
    #[arg(long, value_name = "BIN")]
    floor: Option<PathBuf>,
    /// Runs per scanner; reports give medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Kill a scanner run after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    time_limit: u64,
    /// Keep every run's output files under this directory.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Extra arguments for one scanner (by name or family), split on spaces:
    /// --args 'fastport=--timeout 250ms --retries 1'. Repeatable.
    #[arg(long = "args", value_name = "SCANNER=ARGS")]
    scanner_args: Vec<String>,
    /// Extra arguments for every scanner (after the scenario's and --args).
    #[arg(last = true)]
    extra: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// Scanners: fastport, fastport-ENGINE, floor, floor-all, nmap, nmap-grep, rustscan (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_value = "floor")]
    scanner: Vec<String>,
    /// Print one JSON record per scanner instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Exit with code 4 unless every scored run is exact.
    #[arg(long)]
    expect_exact: bool,
    #[command(flatten)]
    programs: ProgramArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Scenarios.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "loopback-65k,wide-16,filtered-mix,ephemeral-trap"
    )]
    scenarios: Vec<String>,
    /// Scanners.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fastport,floor,nmap,rustscan"
    )]
    scanners: Vec<String>,
    /// World seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scale of every scenario.
    #[arg(long, default_value = FULL)]
    scale: String,
    /// Where to write bench.json and bench.csv.
    #[arg(long, value_name = "DIR", default_value = "target/lab-bench")]
    out: PathBuf,
    #[command(flatten)]
    programs: ProgramArgs,
}

#[derive(Args)]
struct TruthArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// Print every probe as a JSON line (FastPort's format) instead of a summary.
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::Truth(a) => cmd_truth(a),
        Cmd::Scenarios => cmd_scenarios(),
        Cmd::Measure(a) => launch_and_report(
            &a.command,
            Duration::from_millis(a.time_limit_ms),
            &a.report,
        )
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| Failure::Lab(LabError::io("measuring", e))),
    };
    match result {
        Ok(code) => code,
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Lab(e)) => {
            eprintln!("fastport-lab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    BrokenPipe,
    Lab(LabError),
}

impl From<LabError> for Failure {
    fn from(e: LabError) -> Failure {
        Failure::Lab(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Lab(LabError::io("writing output", e))
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn load_world(w: &WorldArgs) -> Result<World, LabError> {
    World::build(&Scenario::load(&w.scenario, &w.scale)?, w.seed)
}

fn parse_scanners(names: &[String]) -> Result<Vec<Scanner>, LabError> {
    names
        .iter()
        .map(|n| {
            n.parse::<Scanner>().map_err(|m| LabError::Scanner {
                scanner: n.clone(),
                message: m,
            })
        })
        .collect()
}

fn parse_scanner_args(specs: &[String]) -> Result<BTreeMap<String, Vec<String>>, LabError> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for spec in specs {
        let (name, args) = spec.split_once('=').ok_or_else(|| LabError::Scanner {
            scanner: spec.clone(),
            message: "--args wants SCANNER=ARGS".into(),
        })?;
        map.entry(name.trim().to_string())
            .or_default()
            .extend(args.split_whitespace().map(String::from));
    }
    Ok(map)
}

fn cmd_run(a: RunArgs) -> Result<ExitCode, Failure> {
    let scanners = parse_scanners(&a.scanner)?;
    let world = load_world(&a.world)?;
    if !netns::inside() {
        return enter_namespace(&world, &a);
    }
    let t = &world.truth;
    eprintln!(
        "lab: world {} (scale {}, seed {}): {} hosts x {} ports = {} probes, {} open{}",
        world.scenario.name,
        world.scenario.scale,
        world.seed,
        t.host_count(),
        t.ports.len(),
        t.probes(),
        t.open().len(),
        world
            .netsim
            .as_ref()
            .map(|m| format!(", served by netsim ({})", m.config().name))
            .unwrap_or_default()
    );
    let live = netns::materialize(&world)?;
    let opts = SessionOptions {
        scanners,
        repeat: a.programs.repeat,
        locations: Locations {
            fastport: a.programs.fastport.clone(),
            floor: a.programs.floor.clone(),
        },
        scanner_args: parse_scanner_args(&a.programs.scanner_args)?,
        extra_args: a.programs.extra.clone(),
        time_limit: Duration::from_secs(a.programs.time_limit),
        keep_outputs: a.programs.keep.clone(),
    };
    let records = run_scanners(&world, &live, &opts);
    live.stop()?;
    let mut out = io::stdout().lock();
    if a.json {
        for r in &records {
            writeln!(
                out,
                "{}",
                serde_json::to_string(r).expect("records serialize")
            )?;
        }
    } else {
        write!(out, "{}", run_summary(&records))?;
    }
    out.flush()?;
    if records.iter().any(|r| matches!(r, Record::Failed { .. })) {
        return Ok(ExitCode::FAILURE);
    }
    if a.expect_exact
        && records
            .iter()
            .any(|r| matches!(r, Record::Scored(rep) if !rep.exact_all))
    {
        return Ok(exit(INEXACT_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}

/// Outside the namespace: check that one can be made, then run this same
/// command inside it. Failing that: an error under CI=true, a skip otherwise.
fn enter_namespace(world: &World, a: &RunArgs) -> Result<ExitCode, Failure> {
    let missing = netns::missing_tools(&world.tools());
    let unavailable = if !missing.is_empty() {
        Some(LabError::MissingTools(missing))
    } else if world.netsim.is_some() {
        // A namespace with a TUN device in it.
        fastport_netsim::netns::probe()
            .err()
            .map(LabError::Namespace)
    } else {
        netns::probe().err().map(LabError::Namespace)
    };
    if let Some(e) = unavailable {
        if netns::under_ci() {
            return Err(Failure::Lab(e));
        }
        let reason = e.to_string();
        eprintln!("fastport-lab: skipped: {reason}");
        if a.json {
            let mut out = io::stdout().lock();
            for s in &a.scanner {
                let r = Record::Skipped {
                    scanner: s.clone(),
                    scenario: world.scenario.name.clone(),
                    reason: reason.clone(),
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&r).expect("records serialize")
                )?;
            }
        }
        return Ok(exit(SKIP_EXIT));
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = netns::reexec(&args)?;
    Ok(match status.code() {
        Some(c) => exit(c),
        None => ExitCode::FAILURE,
    })
}

fn cmd_bench(a: BenchArgs) -> Result<ExitCode, Failure> {
    parse_scanners(&a.scanners)?;
    parse_scanner_args(&a.programs.scanner_args)?;
    for s in &a.scenarios {
        Scenario::load(s, &a.scale)?;
    }
    let exe = std::env::current_exe().map_err(|e| LabError::io("locating fastport-lab", e))?;
    let mut records: Vec<Record> = Vec::new();
    let mut skipped_all = true;
    for scenario in &a.scenarios {
        eprintln!("lab: bench {scenario}: {}", a.scanners.join(", "));
        let mut cmd = Command::new(&exe);
        cmd.env_remove(netns::INSIDE_ENV)
            .args(["run", "--json", "--scenario", scenario])
            .args(["--seed", &a.seed.to_string(), "--scale", &a.scale])
            .args(["--scanner", &a.scanners.join(",")])
            .args(["--repeat", &a.programs.repeat.to_string()])
            .args(["--time-limit", &a.programs.time_limit.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(f) = &a.programs.fastport {
            cmd.arg("--fastport").arg(f);
        }
        if let Some(f) = &a.programs.floor {
            cmd.arg("--floor").arg(f);
        }
        if let Some(k) = &a.programs.keep {
            cmd.arg("--keep").arg(k);
        }
        for spec in &a.programs.scanner_args {
            cmd.arg("--args").arg(spec);
        }
        if !a.programs.extra.is_empty() {
            cmd.arg("--").args(&a.programs.extra);
        }
        let out = cmd
            .output()
            .map_err(|e| LabError::io("running fastport-lab run", e))?;
        let code = out.status.code();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match serde_json::from_str::<Record>(line) {
                Ok(r) => records.push(r),
                Err(e) => eprintln!("lab: bench {scenario}: unreadable record ({e}): {line}"),
            }
        }
        if code != Some(SKIP_EXIT) {
            skipped_all = false;
        }
        if code != Some(0)
            && code != Some(SKIP_EXIT)
            && !records.iter().any(|r| r.scenario() == scenario)
        {
            records.push(Record::Failed {
                scanner: a.scanners.join(","),
                scenario: scenario.clone(),
                error: format!("fastport-lab run {}", out.status),
            });
        }
    }
    let rows = bench_rows(&records);
    let mut stdout = io::stdout().lock();
    write!(stdout, "{}", bench_table(&rows))?;
    stdout.flush()?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| LabError::io(format!("creating {}", a.out.display()), e))?;
    let json = serde_json::json!({ "rows": rows, "records": records });
    let json_path = a.out.join("bench.json");
    let csv_path = a.out.join("bench.csv");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json).expect("serializes"),
    )
    .map_err(|e| LabError::io(format!("writing {}", json_path.display()), e))?;
    std::fs::write(&csv_path, bench_csv(&rows))
        .map_err(|e| LabError::io(format!("writing {}", csv_path.display()), e))?;
    eprintln!(
        "lab: wrote {} and {}",
        json_path.display(),
        csv_path.display()
    );
    if skipped_all {
        return Ok(exit(SKIP_EXIT));
    }
    if records.iter().any(|r| matches!(r, Record::Failed { .. })) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_truth(a: TruthArgs) -> Result<ExitCode, Failure> {
    let world = load_world(&a.world)?;
    let t = &world.truth;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.all {
        for (sa, e) in t.iter() {
            writeln!(
                out,
                r#"{{"addr":"{}","port":{},"state":"{}","reason":"{}"}}"#,
                sa.ip(),
                sa.port(),
                e.state,
                e.reason
            )?;
        }
    } else {
        writeln!(
            out,
            "scenario {} (scale {}, seed {})",
            world.scenario.name, world.scenario.scale, world.seed
        )?;
        writeln!(out, "  {}", world.scenario.description)?;
        writeln!(out, "targets: {}", world.targets().join(" "))?;
        writeln!(out, "ports:   {}", t.ports)?;
        writeln!(
            out,
            "probes:  {} ({} hosts x {} ports)",
            t.probes(),
            t.host_count(),
            t.ports.len()
        )?;
        for (e, n) in t.tally() {
            writeln!(out, "  {:<28} {n:>9}", e.to_string())?;
        }
        let open = t.open();
        let shown: Vec<String> = open.iter().take(32).map(|s| s.to_string()).collect();
        let more = open.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" ... ({more} more; --all lists every probe)")
        } else {
            String::new()
        };
        writeln!(out, "open:    {}{tail}", shown.join(" "))?;
        if let Some(rules) = world.nft_ruleset() {
            let lines = rules.lines().count();
            writeln!(out, "nftables: {} rules ({lines} lines)", world.rules.len())?;
        }
        for cmd in world.ip_batch() {
            writeln!(out, "ip {cmd}")?;
        }
        if let Some(m) = &world.netsim {
            writeln!(
                out,
                "netsim:  profile {}, seed {}\n{}",
                m.config().name,
                m.seed(),
                m.config().to_toml().trim_end()
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_scenarios() -> Result<ExitCode, Failure> {
    let mut out = io::stdout().lock();
    for (name, text) in BUILTIN {
        let s = Scenario::parse(text, FULL, name)?;
        writeln!(out, "{name:<16} {}", s.description)?;
    }
    Ok(ExitCode::SUCCESS)
}
