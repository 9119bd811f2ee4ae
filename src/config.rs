//! The validated scan: [`ScanConfig`] holds parsed targets, ports, timing and
//! output destinations, built once from the raw [`Args`]. Every check on user
//! input happens here, before any probe is sent, and fails with one
//! [`ConfigError`] that names what the user typed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::classify::State;
use crate::cli::Args;
use crate::engine::{EngineConfig, EngineKind};
use crate::order::{Blocks, Done, Order, OrderKind, Schedule, SegmentPlan, Shard, ShardError};
use crate::service::options::{OptionsError, ServiceOptions};
use crate::targets::{self, Ranking, RankingSource, TargetArgs, TargetError, TargetSpace};
use crate::timing::{AdaptiveTiming, Template, TemplateError};

/// File descriptors kept back from the concurrency budget: stdio, outputs,
/// one epoll instance per worker, and some slack. A quarter of the limit,
/// at least this many...
pub(crate) const RESERVED_FDS_MIN: u64 = 16;
/// ...and at most this many.
pub(crate) const RESERVED_FDS_MAX: u64 = 64;
/// Event-loop workers per core, at most: more only cost memory (each has
/// its poll, events, slab and wheel, ~2 MB with its stack) and switches;
/// `--threads 100000` ran the machine out of memory.
const WORKERS_PER_CORE: usize = 4;

/// A bad command line, named precisely.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    /// A target, exclude or port specification.
    Target(#[from] TargetError),
    /// A duration flag (`--timeout`, `--*-rtt-timeout`, `--scan-delay`, ...)
    /// is not a duration.
    #[error("invalid {flag} \"{value}\": expected a duration like 500ms, 2s or 1m")]
    FlagDuration {
        /// The flag given it.
        flag: &'static str,
        /// The value, as typed.
        value: String,
    },
    #[error(transparent)]
    /// `-T` is not a template.
    Template(#[from] TemplateError),
    #[error("--timeout fixes every attempt's wait and {0} adapts it: give only one of them")]
    /// `--timeout` together with an adaptive-timing flag (named).
    FixedAndAdaptive(&'static str),
    #[error(transparent)]
    /// A service-detection flag (`--service-probes FILE` unreadable or malformed).
    Services(#[from] OptionsError),
    /// `--min-rtt-timeout` above `--max-rtt-timeout`.
    #[error("--min-rtt-timeout {min} is above --max-rtt-timeout {max}")]
    RttBounds {
        /// The minimum, as typed.
        min: String,
        /// The maximum, as typed (or the template's).
        max: String,
    },
    #[error("invalid --show \"{0}\": expected a comma list of open, closed, filtered, or all")]
    /// `--show` is not a list of states.
    Show(String),
    #[error("invalid {flag} {value}: {why}")]
    /// A number out of its range.
    Number {
        /// The flag given it.
        flag: &'static str,
        /// The number, as typed.
        value: String,
        /// What the number must be.
        why: &'static str,
    },
    #[error("{0} and {1} both write to stdout: give one of them a file")]
    /// Two outputs (named) to stdout.
    StdoutTwice(&'static str, &'static str),
    #[error("{0} already writes the {1} output: give only one of them")]
    /// An output given twice (by `-oA` and its own flag).
    OutputTwice(&'static str, &'static str),
    #[error("-oA writes four files named after its BASENAME: it cannot write to stdout (\"-\")")]
    /// `-oA -`.
    OutputAllToStdout,
    #[error("invalid --stats-every \"{0}\": expected a duration like 5s or 1m")]
    /// `--stats-every` is not a duration.
    StatsEvery(String),
    #[error(transparent)]
    /// `--shard` is not `K/N` (nor `auto`).
    Shard(#[from] ShardError),
    #[error(transparent)]
    /// `--shard auto` found no shard in the environment.
    ShardEnv(#[from] crate::shard_env::ShardEnvError),
    /// An nmap flag FastPort cannot honour: why, and what to use instead.
    #[error("{0}")]
    Nmap(String),
    /// `--min-rate` above `--rate`.
    #[error("--min-rate {min} is above --rate {max}")]
    RateBounds {
        /// `--min-rate`.
        min: f64,
        /// `--rate`.
        max: f64,
    },
    /// Two flags (named) that exclude each other.
    #[error("{0} and {1} cannot be used together")]
    Conflict(&'static str, &'static str),
}

/// Which states get a line in the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Show {
    open: bool,
    closed: bool,
    filtered: bool,
}

impl Show {
    /// Only open ports (the default).
    pub const OPEN: Show = Show {
        open: true,
        closed: false,
        filtered: false,
    };
    /// Every state.
    pub const ALL: Show = Show {
        open: true,
        closed: true,
        filtered: true,
    };

    /// Whether results in `state` get a line.
    pub fn contains(self, state: State) -> bool {
        match state {
            State::Open => self.open,
            State::Closed => self.closed,
            State::Filtered => self.filtered,
        }
    }

    /// Parses `open,closed`, `all`, ...
    pub fn parse(spec: &str) -> Result<Show, ConfigError> {
        let mut show = Show {
            open: false,
            closed: false,
            filtered: false,
        };
        for word in spec.split(',').map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "open" => show.open = true,
                "closed" => show.closed = true,
                "filtered" => show.filtered = true,
                "all" => show = Show::ALL,
                _ => return Err(ConfigError::Show(spec.to_string())),
            }
        }
        Ok(show)
    }
}

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Standard output (`-`).
    Stdout,
    /// A file.
    File(PathBuf),
}

impl Dest {
    fn from_path(p: &Path) -> Dest {
        if p == Path::new("-") {
            Dest::Stdout
        } else {
            Dest::File(p.to_path_buf())
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Stdout => f.write_str("stdout"),
            Dest::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The outputs asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPlan {
    /// Human text: stdout by default, unless another output took stdout.
    pub text: Vec<Dest>,
    /// `-oJ`: JSON lines.
    pub json: Option<Dest>,
    /// nmap XML (`-oX`).
    pub xml: Option<Dest>,
    /// nmap's grepable format (`-oG`).
    pub grepable: Option<Dest>,
    /// `-oC`: CSV.
    pub csv: Option<Dest>,
    /// `--stats`: the run's summary as a JSON document.
    pub stats: Option<Dest>,
    /// `--show`: which states get a line.
    pub show: Show,
    /// `--reason`: the text output gives each port's reason.
    pub reason: bool,
    /// Where the text summary goes when no text output does (stderr).
    pub summary_to_stderr: bool,
    /// `--stats-every`: a status line on stderr this often, when stderr is
    /// not a terminal (a terminal gets a progress bar).
    pub stats_every: Option<Duration>,
    /// `--open`: hosts without an open port are left out of the XML and
    /// grepable outputs, as nmap does.
    pub open_only: bool,
    /// `-q`: no progress bar, status lines or notes.
    pub quiet: bool,
    /// `-oL`: one `addr:port` (or `host:port`) line per shown port, for pipes.
    pub list: Option<Dest>,
    /// `--trace FILE` and the probes it keeps (`--trace-sample`), in parts
    /// per million.
    pub trace: Option<(PathBuf, u32)>,
}

/// A scan, ready to run.
#[derive(Debug)]
pub struct ScanConfig {
    /// The targets and ports (of a segmented scan: the segment the run is
    /// in).
    pub space: TargetSpace,
    /// A scan of more than `u64::MAX` probes: its segments and the order
    /// they are visited in (`None` for any smaller scan).
    pub segments: Option<SegmentPlan>,
    /// Which segment of [`segments`](Self::segments) the run is in, by
    /// ordinal (0 for an unsegmented scan).
    pub ordinal: u64,
    /// Which probe comes when: order, shard, and what a resume skips.
    pub schedule: Schedule,
    /// The seed of the random order (`--seed`, or drawn from the OS).
    pub seed: u64,
    /// How the engine runs.
    pub engine: EngineConfig,
    /// Where the results go.
    pub outputs: OutputPlan,
    /// The open-file soft limit the concurrency was derived from.
    pub fd_limit: u64,
    /// Notes for the user about adjusted settings (printed on stderr).
    pub notes: Vec<String>,
    /// Where the `--top-ports` (or `-F`) ranking came from; `None` when
    /// ports were listed or left at the default.
    pub ranking: Option<RankingSource>,
    /// The names targets were given by, for the outputs.
    pub names: std::sync::Arc<targets::HostNames>,
    /// How many target names did not resolve (reported in `notes`, skipped).
    pub unresolved: usize,
}

impl ScanConfig {
    /// Moves a segmented scan to the segment visited `ordinal`-th, nothing
    /// of it done yet.
    pub fn enter_segment(&mut self, ordinal: u64) {
        if let Some(plan) = &self.segments {
            (self.space, self.schedule) = plan.at(ordinal);
            self.ordinal = ordinal;
        }
    }

    /// Probes of the whole scan (every segment, every shard).
    pub fn total_probes(&self) -> u128 {
        self.segments
            .as_ref()
            .map_or(u128::from(self.space.len()), |p| p.segments().probes())
    }

    /// Addresses of the whole scan.
    pub fn total_hosts(&self) -> u128 {
        self.segments
            .as_ref()
            .map_or(u128::from(self.space.host_count()), |p| {
                p.segments().hosts()
            })
    }

    /// Probes this run still has to make: the rest of its segment and
    /// every segment after it.
    pub fn remaining(&self) -> u128 {
        let later = self
            .segments
            .as_ref()
            .map_or(0, |p| p.planned_after(self.ordinal));
        u128::from(self.schedule.remaining()) + later
    }

    /// Validates everything. `fd_limit` is the open-file soft limit in force
    /// (after raising it), `cores` the default thread count.
    pub fn from_args(args: &Args, fd_limit: u64, cores: usize) -> Result<ScanConfig, ConfigError> {
        // Read and compiled before any probe: a bad probe file is a usage error.
        let services = ServiceOptions::from_args(args)?;
        let outputs = output_plan(args)?;
        let timing = timing_plan(args)?;
        if args.concurrency == Some(0) {
            return Err(ConfigError::Number {
                flag: "--concurrency",
                value: "0".into(),
                why: "at least 1 probe must be in flight",
            });
        }
        if args.threads == Some(0) {
            return Err(ConfigError::Number {
                flag: "--threads",
                value: "0".into(),
                why: "at least 1 thread",
            });
        }
        if let Some(t) = &args.scan_type {
            if t != "T" {
                let word = format!("-s{t}");
                return Err(ConfigError::Nmap(
                    crate::cli::nmap_refusal(&word).unwrap_or_else(|| {
                        format!("{word}: FastPort makes only TCP connects (-sT, its one scan type)")
                    }),
                ));
            }
        }
        if let Some(p) = args.ping.as_deref().filter(|&p| p != "n") {
            let word = format!("-P{p}");
            return Err(ConfigError::Nmap(
                crate::cli::nmap_refusal(&word).unwrap_or_default(),
            ));
        }
        if args.open && args.show != "open" {
            return Err(ConfigError::Conflict("--open", "--show"));
        }
        if args.fast && (args.ports.is_some() || args.top_ports.is_some()) {
            return Err(ConfigError::Conflict(
                "-F",
                if args.ports.is_some() {
                    "-p"
                } else {
                    "--top-ports"
                },
            ));
        }
        if args.quiet && args.verbose > 0 {
            return Err(ConfigError::Conflict("-q", "-v"));
        }
        if let Some(rate) = args.rate {
            if !(rate.is_finite() && rate >= 0.1) {
                return Err(ConfigError::Number {
                    flag: "--rate",
                    value: rate.to_string(),
                    why: "expected connects per second, at least 0.1",
                });
            }
        }
        let mut notes = Vec::new();
        if let Some(note) = services.as_ref().and_then(|s| s.note.clone()) {
            notes.push(note);
        }
        let shard = match &args.shard {
            // `--shard auto[/N]`: K/N from the job engine's environment.
            Some(s) => match crate::shard_env::parse_auto(s)? {
                Some(count) => {
                    let auto = crate::shard_env::detect(count, |k| std::env::var(k).ok())?;
                    notes.push(auto.to_string());
                    auto.shard
                }
                None => Shard::parse(s)?,
            },
            None => Shard::WHOLE,
        };
        let seed = args.seed.unwrap_or_else(crate::order::random_seed);

        let top_ports = args.top_ports.or(args.fast.then_some(100));
        // Read only when asked for: the ranking is a file on this machine.
        let ranking = top_ports.map(|_| {
            let nmapdir = std::env::var_os("NMAPDIR").map(PathBuf::from);
            Ranking::find(nmapdir.as_deref())
        });
        let (built, segments) = targets::build_segmented(&TargetArgs {
            targets: &args.targets,
            input_list: args.input_list.as_deref(),
            exclude: &args.exclude,
            exclude_file: args.exclude_file.as_deref(),
            resolve: !args.no_resolve,
            first_address_only: args.resolve_first,
            ports: args.ports.as_deref(),
            top_ports,
            exclude_ports: args.exclude_ports.as_deref(),
            ranking: ranking.as_ref(),
        })?;
        let space = built.space;

        for e in &built.unresolved {
            notes.push(format!("{e}: skipped"));
        }
        if args.verbose > 0 {
            for (given, note) in [
                (
                    args.nmap_no_dns,
                    "-n: FastPort never does reverse DNS lookups anyway",
                ),
                (
                    args.ping.is_some(),
                    "-Pn: FastPort never pings; every target is scanned anyway",
                ),
                (
                    args.scan_type.is_some(),
                    "-sT: a TCP connect scan is what FastPort always does",
                ),
                (
                    args.max_scan_delay.is_some(),
                    "--max-scan-delay: FastPort's only scan delay, for a host that limits its RSTs, comes from the rate the host answered at; the flag does not cap it",
                ),
            ] {
                if given {
                    notes.push(note.to_string());
                }
            }
        }
        if let Some(min) = args.min_rate {
            if !(min.is_finite() && min > 0.0) {
                return Err(ConfigError::Number {
                    flag: "--min-rate",
                    value: min.to_string(),
                    why: "expected connects per second, above 0",
                });
            }
            if let Some(max) = args.rate.filter(|&max| max < min) {
                return Err(ConfigError::RateBounds { min, max });
            }
            if args.verbose > 0 {
                notes.push(format!(
                    "--min-rate {min}: FastPort has no floor to enforce; it sends as fast as \
                     --concurrency, --rate and the answers allow"
                ));
            }
        }
        let budget = fd_budget(fd_limit);
        let concurrency = match args.concurrency.or(timing.max_concurrency) {
            Some(n) if n as u64 > budget => {
                notes.push(format!(
                    "--concurrency {n} is more than the open-file limit ({fd_limit}) allows; using {budget}"
                ));
                budget as usize
            }
            Some(n) => n,
            None => default_concurrency(fd_limit),
        };
        // The threads engine runs a thread per probe in flight; each costs
        // memory mappings (stack, guard, signal stack), and the kernel caps
        // those per process (vm.max_map_count) and threads system-wide.
        let concurrency = match (args.engine, crate::sys::thread_budget()) {
            (EngineKind::Threads, Some(max)) if concurrency as u64 > max => {
                notes.push(format!(
                    "--engine threads: {concurrency} threads is more than this system allows \
                     (vm.max_map_count, kernel.threads-max); using {max}"
                ));
                max as usize
            }
            _ => concurrency,
        };
        // No point in more in flight than there are probes (with -sV, than
        // the sockets their service sessions may hold: a session's lanes
        // count in flight too, and a cap of one per probe made them take
        // turns), nor in more threads than probes in flight.
        let per_probe = if services.is_some() {
            crate::service::conversation::Settings::default().parallel
        } else {
            1
        };
        let concurrency = concurrency
            .min(
                usize::try_from(space.len().saturating_mul(per_probe as u64)).unwrap_or(usize::MAX),
            )
            .max(1);
        let max_workers = cores.max(1) * WORKERS_PER_CORE;
        let asked = args.threads.unwrap_or(cores);
        let mut threads = asked.clamp(1, concurrency);
        if threads > max_workers {
            notes.push(format!(
                "--threads {asked} is more than {cores} cores can use; using {max_workers}"
            ));
            threads = max_workers;
        }
        let blocks = Blocks::new(space.len(), space.ports().len() as u64);
        let order = match args.order {
            OrderKind::Random => Order::random(blocks, seed),
            OrderKind::Sequential => Order::Sequential,
        };
        let mut schedule = Schedule::new(blocks, order, shard, Done::none());
        // Past u64::MAX probes: segment after segment, this run from the
        // first one the plan visits.
        let segments =
            segments.map(|cut| SegmentPlan::new(cut, args.order == OrderKind::Random, seed, shard));
        let mut space = space;
        if let Some(plan) = &segments {
            (space, schedule) = plan.at(0);
        }

        Ok(ScanConfig {
            space,
            segments,
            ordinal: 0,
            schedule,
            seed,
            engine: EngineConfig {
                kind: args.engine,
                timeout: timing.timeout,
                retries: timing.retries,
                adaptive: timing.adaptive,
                concurrency,
                threads,
                trace: None,
                services,
                unanswered_rate: None,
                rate: scan_delay_rate(args)?
                    .into_iter()
                    .chain(args.rate.or(timing.rate))
                    .reduce(f64::min),
            },
            outputs,
            fd_limit,
            notes,
            ranking: ranking.map(|r| r.source),
            names: std::sync::Arc::new(built.names),
            unresolved: built.unresolved.len(),
        })
    }
}

/// `--scan-delay D` as a rate: one connect per D, all hosts together.
fn scan_delay_rate(args: &Args) -> Result<Option<f64>, ConfigError> {
    let Some(text) = &args.scan_delay else {
        return Ok(None);
    };
    let delay = positive_duration("--scan-delay", text)?;
    Ok(Some(1.0 / delay.as_secs_f64()))
}

/// The value `text` of a duration flag, which must be longer than zero.
fn positive_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ConfigError::FlagDuration {
            flag,
            value: text.to_string(),
        })
}

/// The timing flags, checked and combined with the `-T` template.
struct TimingPlan {
    /// Fixed, or the initial RTT timeout.
    timeout: Duration,
    retries: u32,
    adaptive: Option<AdaptiveTiming>,
    max_concurrency: Option<usize>,
    rate: Option<f64>,
}

/// `--timeout` given: every attempt waits that long, `--retries` (default 1)
/// times more. Otherwise adaptive, from the template (default `-T3`, nmap's
/// normal) and the `*-rtt-timeout` flags.
fn timing_plan(args: &Args) -> Result<TimingPlan, ConfigError> {
    let template = args.timing.as_deref().map(Template::parse).transpose()?;
    let values = template.unwrap_or(Template::Normal).values();
    if let Some(n) = args.retries.filter(|&n| n > 100) {
        return Err(ConfigError::Number {
            flag: "--retries",
            value: n.to_string(),
            why: "at most 100",
        });
    }
    let duration = |flag, given: &Option<String>| {
        given
            .as_deref()
            .map(|s| positive_duration(flag, s))
            .transpose()
    };
    let initial = duration("--initial-rtt-timeout", &args.initial_rtt_timeout)?;
    let min = duration("--min-rtt-timeout", &args.min_rtt_timeout)?;
    let max = duration("--max-rtt-timeout", &args.max_rtt_timeout)?;
    let plan = |timeout, retries, adaptive| TimingPlan {
        timeout,
        retries,
        adaptive,
        max_concurrency: values.max_concurrency,
        rate: values.rate,
    };
    if let Some(text) = &args.timeout {
        let timeout = positive_duration("--timeout", text)?;
        for (flag, given) in [
            ("--initial-rtt-timeout", initial),
            ("--min-rtt-timeout", min),
            ("--max-rtt-timeout", max),
        ] {
            if given.is_some() {
                return Err(ConfigError::FixedAndAdaptive(flag));
            }
        }
        let retries = args.retries.unwrap_or(if template.is_some() {
            values.max_retries
        } else {
            1
        });
        return Ok(plan(timeout, retries, None));
    }
    let min_rtt = min.unwrap_or(values.min_rtt);
    let max_rtt = max.unwrap_or(values.max_rtt);
    if min_rtt > max_rtt {
        return Err(ConfigError::RttBounds {
            min: args.min_rtt_timeout.clone().unwrap_or_default(),
            max: args
                .max_rtt_timeout
                .clone()
                .unwrap_or_else(|| format!("{}ms (the template's)", max_rtt.as_millis())),
        });
    }
    // nmap: an initial timeout above the maximum raises nothing here; it is
    // kept within the bounds.
    let initial_rtt = initial
        .unwrap_or(values.initial_rtt)
        .clamp(min_rtt, max_rtt);
    let adaptive = AdaptiveTiming {
        initial_rtt,
        min_rtt,
        max_rtt,
        initial_window: values.initial_window,
    };
    Ok(plan(
        initial_rtt,
        args.retries.unwrap_or(values.max_retries),
        Some(adaptive),
    ))
}

fn output_plan(args: &Args) -> Result<OutputPlan, ConfigError> {
    let dest = |p: &Option<PathBuf>| p.as_deref().map(Dest::from_path);
    let mut normal = dest(&args.output_normal);
    let mut json = dest(&args.output_json);
    let mut xml = dest(&args.output_xml);
    let mut grepable = dest(&args.output_grepable);
    let csv = dest(&args.output_csv);
    let list = dest(&args.output_list);
    let stats = dest(&args.stats);
    if let Some(base) = &args.output_all {
        // -oA BASE stands for -oN BASE.txt -oX BASE.xml -oG BASE.gnmap -oJ BASE.jsonl.
        if base == Path::new("-") {
            return Err(ConfigError::OutputAllToStdout);
        }
        for (flag, slot, ext) in [
            ("-oN", &mut normal, ".txt"),
            ("-oX", &mut xml, ".xml"),
            ("-oG", &mut grepable, ".gnmap"),
            ("-oJ", &mut json, ".jsonl"),
        ] {
            if slot.is_some() {
                return Err(ConfigError::OutputTwice("-oA", flag));
            }
            let mut path = base.as_os_str().to_owned();
            path.push(ext);
            *slot = Some(Dest::File(path.into()));
        }
    }
    let claims = [
        ("-oN", &normal),
        ("-oJ", &json),
        ("-oX", &xml),
        ("-oG", &grepable),
        ("-oC", &csv),
        ("-oL", &list),
        ("--stats", &stats),
    ];
    let on_stdout: Vec<&'static str> = claims
        .iter()
        .filter(|(_, d)| **d == Some(Dest::Stdout))
        .map(|(flag, _)| *flag)
        .collect();
    if let [a, b, ..] = on_stdout[..] {
        return Err(ConfigError::StdoutTwice(a, b));
    }
    // The default text goes to stdout unless another output took stdout.
    let stdout_taken = claims
        .iter()
        .any(|(flag, d)| *flag != "-oN" && **d == Some(Dest::Stdout));
    if let Some(text) = &args.max_scan_delay {
        parse_duration(text).ok_or_else(|| ConfigError::FlagDuration {
            flag: "--max-scan-delay",
            value: text.clone(),
        })?;
    }
    let stats_every = match args.stats_every.as_deref() {
        Some(s) => Some(
            parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::StatsEvery(s.to_string()))?,
        ),
        None => None,
    };
    let mut text = Vec::new();
    match normal {
        Some(Dest::Stdout) => text.push(Dest::Stdout),
        Some(file) => {
            if !stdout_taken {
                text.push(Dest::Stdout);
            }
            text.push(file);
        }
        None if !stdout_taken => text.push(Dest::Stdout),
        None => {}
    }
    Ok(OutputPlan {
        summary_to_stderr: text.is_empty(),
        text,
        json,
        xml,
        grepable,
        csv,
        stats,
        show: Show::parse(&args.show)?,
        reason: args.reason || args.verbose >= 2,
        stats_every,
        open_only: args.open,
        quiet: args.quiet,
        list,
        trace: trace_plan(args)?,
    })
}

/// `--trace FILE` with its `--trace-sample` fraction (10⁻⁶ ≤ fraction ≤ 1),
/// in parts per million.
fn trace_plan(args: &Args) -> Result<Option<(PathBuf, u32)>, ConfigError> {
    let sample = args.trace_sample.unwrap_or(1.0);
    if !(1e-6..=1.0).contains(&sample) {
        return Err(ConfigError::Number {
            flag: "--trace-sample",
            value: sample.to_string(),
            why: "expected a fraction of the probes, from 0.000001 to 1",
        });
    }
    match &args.trace {
        Some(path) => Ok(Some((path.clone(), (sample * 1e6).round() as u32))),
        None if args.trace_sample.is_some() => Err(ConfigError::Number {
            flag: "--trace-sample",
            value: sample.to_string(),
            why: "samples the --trace: give --trace FILE too",
        }),
        None => Ok(None),
    }
}

/// Descriptors available for sockets.
pub fn fd_budget(fd_limit: u64) -> u64 {
    let reserve = (fd_limit / 4).clamp(RESERVED_FDS_MIN, RESERVED_FDS_MAX);
    fd_limit.saturating_sub(reserve).max(1)
}

/// Default probes in flight: three quarters of the descriptor budget, so
/// other needs (name lookups, outputs, the kernel's own limits) keep room.
pub fn default_concurrency(fd_limit: u64) -> usize {
    let n = (fd_budget(fd_limit) / 4 * 3).max(1);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h`, `250us`; a bare number is
/// milliseconds (nmap's convention).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let scale = match unit {
        "" | "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 86_400.0 * 365.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_from;

    fn config(line: &str) -> Result<ScanConfig, ConfigError> {
        match parse_from(crate::test_util::argv(line)) {
            Ok(args) => ScanConfig::from_args(&args, 1024, 2),
            // A refusal at parse time reads the same to the user.
            Err(e) => Err(ConfigError::Nmap(e.to_string())),
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Some(ms(500)));
        assert_eq!(parse_duration("500"), Some(ms(500)));
        assert_eq!(parse_duration("2s"), Some(ms(2000)));
        assert_eq!(parse_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_duration("1m"), Some(ms(60_000)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        for bad in [
            "", "s", "ms", "-1s", "1x", "1 s", "abc", ".", "1e9h", "1.2.3s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn show_lists() {
        assert_eq!(Show::parse("open").unwrap(), Show::OPEN);
        assert_eq!(Show::parse("all").unwrap(), Show::ALL);
        let s = Show::parse("open,filtered").unwrap();
        assert!(
            s.contains(State::Open) && s.contains(State::Filtered) && !s.contains(State::Closed)
        );
        assert!(Show::parse("opn").is_err());
        assert!(Show::parse("").is_err());
    }

    #[test]
    fn defaults_scan_localhost_1_to_1024() {
        let c = config("").unwrap();
        assert_eq!(c.space.len(), 1024);
        // Adaptive, nmap's -T3: initial 1 s, up to 10 retries when needed.
        assert_eq!(c.engine.timeout, Duration::from_secs(1));
        assert_eq!(c.engine.retries, 10);
        let a = c.engine.adaptive.unwrap();
        assert_eq!(
            (a.min_rtt, a.max_rtt),
            (Duration::from_millis(100), Duration::from_secs(10))
        );
        assert_eq!(c.engine.threads, 2);
        assert_eq!(c.engine.concurrency, default_concurrency(1024));
        assert_eq!(c.outputs.text, [Dest::Stdout]);
        assert!(!c.outputs.summary_to_stderr);
    }

    #[test]
    fn a_timeout_fixes_timing_and_templates_set_it_otherwise() {
        let ms = Duration::from_millis;
        let c = config("--timeout 250ms 127.0.0.1").unwrap();
        assert_eq!((c.engine.timeout, c.engine.retries), (ms(250), 1));
        assert!(c.engine.adaptive.is_none());
        for (line, rtts, retries) in [
            ("-T4 127.0.0.1", (ms(500), ms(100), ms(1250)), 6),
            (
                "-T insane --max-retries 4 --min-rtt-timeout 20ms 127.0.0.1",
                (ms(250), ms(20), ms(300)),
                4,
            ),
        ] {
            let c = config(line).unwrap();
            let a = c.engine.adaptive.unwrap();
            assert_eq!((a.initial_rtt, a.min_rtt, a.max_rtt), rtts, "{line}");
            assert_eq!(c.engine.retries, retries, "{line}");
        }
        let c = config("-T1 127.0.0.1").unwrap();
        assert_eq!(c.engine.concurrency, 1);
        assert_eq!(c.engine.rate, Some(1.0 / 15.0));
        let c = config("-T4 --timeout 1s 127.0.0.1").unwrap();
        assert!(c.engine.adaptive.is_none());
        assert_eq!(c.engine.retries, 6);
        for (line, msg) in [
            (
                "--timeout 1s --min-rtt-timeout 50ms 127.0.0.1",
                "--timeout fixes every attempt's wait and --min-rtt-timeout adapts it: give only one of them",
            ),
            (
                "--min-rtt-timeout 2s --max-rtt-timeout 1s 127.0.0.1",
                "--min-rtt-timeout 2s is above --max-rtt-timeout 1s",
            ),
            (
                "--max-rtt-timeout soon 127.0.0.1",
                "invalid --max-rtt-timeout \"soon\": expected a duration like 500ms, 2s or 1m",
            ),
            (
                "--timeout soon 127.0.0.1",
                "invalid --timeout \"soon\": expected a duration like 500ms, 2s or 1m",
            ),
            (
                "--timeout 0 127.0.0.1",
                "invalid --timeout \"0\": expected a duration like 500ms, 2s or 1m",
            ),
            (
                "--scan-delay 0s 127.0.0.1",
                "invalid --scan-delay \"0s\": expected a duration like 500ms, 2s or 1m",
            ),
            (
                "-T 9 127.0.0.1",
                "invalid -T \"9\": expected 0-5 or paranoid, sneaky, polite, normal, aggressive, insane",
            ),
        ] {
            assert_eq!(config(line).unwrap_err().to_string(), msg, "{line}");
        }
    }

    #[test]
    fn json_on_stdout_moves_the_summary_to_stderr() {
        let c = config("-oJ - 127.0.0.1").unwrap();
        assert!(c.outputs.text.is_empty());
        assert!(c.outputs.summary_to_stderr);
        let c = config("-oJ - -oN out.txt 127.0.0.1").unwrap();
        assert_eq!(c.outputs.text, [Dest::File("out.txt".into())]);
        let e = config("-oJ - --stats - 127.0.0.1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "-oJ and --stats both write to stdout: give one of them a file"
        );
    }

    #[test]
    fn concurrency_is_capped_by_the_fd_limit_and_the_work() {
        let c = config("--concurrency 100000 -p- 127.0.0.1").unwrap();
        assert_eq!(c.engine.concurrency as u64, fd_budget(1024));
        assert_eq!(c.notes.len(), 1);
        let c = config("--concurrency 500 -p 1-10 127.0.0.1").unwrap();
        assert_eq!(c.engine.concurrency, 10);
        let c = config("--concurrency 1 --threads 8 127.0.0.1").unwrap();
        assert_eq!(c.engine.threads, 1);
    }

    /// `--threads 100000` started a worker each (~2 MB) until the kernel's
    /// OOM killer ran.
    #[test]
    fn threads_100000_is_capped_to_what_the_cores_can_use() {
        let c = config("--threads 100000 -p- 127.0.0.1").unwrap();
        assert_eq!(c.engine.threads, 2 * WORKERS_PER_CORE);
        assert_eq!(
            c.notes,
            vec!["--threads 100000 is more than 2 cores can use; using 8".to_string()]
        );
        let c = config("--threads 3 -p- 127.0.0.1").unwrap();
        assert_eq!((c.engine.threads, c.notes.len()), (3, 0));
    }

    #[test]
    fn bad_numbers_are_named() {
        for (line, needle) in [
            ("--timeout 0 127.0.0.1", "--timeout \"0\""),
            ("--timeout fast 127.0.0.1", "--timeout \"fast\""),
            ("--concurrency 0 127.0.0.1", "--concurrency 0"),
            ("--threads 0 127.0.0.1", "--threads 0"),
            ("--retries 1000 127.0.0.1", "--retries 1000"),
            ("--show everything 127.0.0.1", "--show \"everything\""),
        ] {
            let e = config(line).unwrap_err().to_string();
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn output_all_names_four_files() {
        let c = config("-oA scans/run.1 127.0.0.1").unwrap();
        let file = |p: &str| Some(Dest::File(p.into()));
        assert_eq!(
            c.outputs.text,
            [Dest::Stdout, Dest::File("scans/run.1.txt".into())]
        );
        assert_eq!(c.outputs.xml, file("scans/run.1.xml"));
        assert_eq!(c.outputs.grepable, file("scans/run.1.gnmap"));
        assert_eq!(c.outputs.json, file("scans/run.1.jsonl"));
        assert_eq!(c.outputs.csv, None);
        for (line, msg) in [
            (
                "-oA run -oX other.xml 127.0.0.1",
                "-oA already writes the -oX output: give only one of them",
            ),
            (
                "-oA - 127.0.0.1",
                "-oA writes four files named after its BASENAME: it cannot write to stdout (\"-\")",
            ),
            (
                "-oX - -oC - 127.0.0.1",
                "-oX and -oC both write to stdout: give one of them a file",
            ),
            (
                "-oG - -oA run 127.0.0.1",
                "-oA already writes the -oG output: give only one of them",
            ),
            (
                "--stats-every soon 127.0.0.1",
                "invalid --stats-every \"soon\": expected a duration like 5s or 1m",
            ),
        ] {
            assert_eq!(config(line).unwrap_err().to_string(), msg, "{line}");
        }
    }

    /// The service flags reach the engine (they were once refused until
    /// the scan ran them); a bad probe file is one line naming it.
    #[test]
    fn service_flags_reach_the_engine() {
        assert!(config("127.0.0.1").unwrap().engine.services.is_none());
        for (line, intensity, banners_only) in [
            ("-sV 127.0.0.1", 7, false),
            ("--service-version 127.0.0.1", 7, false),
            ("--banners 127.0.0.1", 7, true),
            ("--version-intensity 3 127.0.0.1", 3, false),
            ("-sV --engine threads 127.0.0.1", 7, false),
        ] {
            let c = config(line).unwrap();
            let s = c.engine.services.as_ref().expect(line);
            assert_eq!(
                (s.intensity, s.banners_only),
                (intensity, banners_only),
                "{line}"
            );
        }
        // A session's lanes count in flight: a small scan's cap leaves
        // room for them (one per probe made them take turns).
        assert_eq!(config("-p 1-3 127.0.0.1").unwrap().engine.concurrency, 3);
        assert_eq!(
            config("-sV -p 1-3 127.0.0.1").unwrap().engine.concurrency,
            9
        );
        let e = config("--service-probes /nonexistent/probes 127.0.0.1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--service-probes /nonexistent/probes: "),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn nmap_flags_map_onto_fastports() {
        let c = config("-sT -Pn -n -T4 --open -p 1-1000 127.0.0.1").unwrap();
        assert_eq!(c.space.len(), 1000);
        assert!(c.outputs.open_only);
        assert_eq!(c.outputs.show, Show::OPEN);
        assert!(c.notes.is_empty(), "quiet unless -v: {:?}", c.notes);
        let c = config("-v -sT -Pn -n 127.0.0.1").unwrap();
        assert_eq!(c.notes.len(), 3, "{:?}", c.notes);
        let c = config("-F 127.0.0.1").unwrap();
        assert_eq!(c.space.ports().len(), 100);
        assert!(c.ranking.is_some());
        assert_eq!(config("127.0.0.1").unwrap().ranking, None);
        let c = config("--scan-delay 100ms --rate 50 127.0.0.1").unwrap();
        assert_eq!(c.engine.rate, Some(10.0));
        let c = config("--scan-delay 1ms --rate 50 127.0.0.1").unwrap();
        assert_eq!(c.engine.rate, Some(50.0));
        assert!(config("-vv 127.0.0.1").unwrap().outputs.reason);
        assert!(config("-q 127.0.0.1").unwrap().outputs.quiet);
        let c = config("-oL - 127.0.0.1").unwrap();
        assert_eq!(c.outputs.list, Some(Dest::Stdout));
        assert!(c.outputs.text.is_empty() && c.outputs.summary_to_stderr);
        for (line, msg) in [
            ("-sS 127.0.0.1", "-sS (SYN scan) needs raw packets"),
            ("-s S 127.0.0.1", "-sS (SYN scan) needs raw packets"),
            ("-s Q 127.0.0.1", "-sQ: FastPort makes only TCP connects"),
            ("-P S 127.0.0.1", "-PS: FastPort sends no discovery probes"),
            (
                "--open --show all 127.0.0.1",
                "--open and --show cannot be used together",
            ),
            ("-F -p 22 127.0.0.1", "-F and -p cannot be used together"),
            (
                "-F --top-ports 5 127.0.0.1",
                "-F and --top-ports cannot be used together",
            ),
            ("-q -v 127.0.0.1", "-q and -v cannot be used together"),
            (
                "--min-rate 100 --rate 10 127.0.0.1",
                "--min-rate 100 is above --rate 10",
            ),
            ("--min-rate 0 127.0.0.1", "invalid --min-rate 0"),
            (
                "--scan-delay soon 127.0.0.1",
                "invalid --scan-delay \"soon\"",
            ),
            (
                "--max-scan-delay soon 127.0.0.1",
                "invalid --max-scan-delay \"soon\"",
            ),
            ("-oL - -oJ - 127.0.0.1", "-oJ and -oL both write to stdout"),
        ] {
            let e = match config(line) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{line}: accepted"),
            };
            assert!(e.contains(msg), "{line}: {e}");
        }
    }

    #[test]
    fn any_output_on_stdout_moves_the_text_off_it() {
        for flag in ["-oX", "-oG", "-oC"] {
            let c = config(&format!("{flag} - -oN out.txt --stats-every 2s 127.0.0.1")).unwrap();
            assert_eq!(c.outputs.text, [Dest::File("out.txt".into())], "{flag}");
            assert_eq!(c.outputs.stats_every, Some(Duration::from_secs(2)));
        }
        let c = config("-oC - 127.0.0.1").unwrap();
        assert!(c.outputs.text.is_empty() && c.outputs.summary_to_stderr);
    }
}
