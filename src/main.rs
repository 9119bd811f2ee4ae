//! The `fastport` binary: parse, validate, scan, and map the outcome to an
//! exit status. All the work lives in the library.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fastport::config::ScanConfig;
use fastport::output::{Outputs, RunInfo};
use fastport::stats::StatsDocument;
use fastport::trace::{Sampler, TraceSink};
use fastport::{cli, report, resume, scan, sys};

/// Exit status for bad input (as clap and nmap use).
const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C (128 + SIGINT), also after SIGTERM or SIGHUP:
/// an interrupted run, whichever signal stopped it.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The first word decides: a document, a merge, or a scan.
    let args = match cli::mode(&argv) {
        Ok(cli::Mode::Document(doc)) => {
            return match cli::write_document(doc, &mut io::stdout().lock()) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    eprintln!("fastport: cannot write: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            };
        }
        Ok(cli::Mode::Merge(args)) => return merge(&args, &argv),
        Ok(cli::Mode::Report(args)) => return report(&args),
        Ok(cli::Mode::Scan(args)) => *args,
        Err(e) => return clap_error(&e),
    };
    install_panic_hook();
    // First: a signal while the run starts up (names resolving, outputs
    // opening) must stop it as cleanly as one during the scan.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("fastport: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `--resume FILE`: the interrupted run's options, seed and progress.
    let (args, resumed) = match resume::resolve(args, &argv) {
        Ok(resolved) => resolved,
        Err(e) => return usage_error(&e),
    };

    let limit = match sys::raise_fd_limit() {
        Ok(limit) => limit.soft,
        Err(e) => {
            eprintln!("fastport: cannot read the open-file limit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut config = match ScanConfig::from_args(&args, limit, cores) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    if let Some(resumed) = &resumed {
        if let Err(e) = resumed.apply(&mut config) {
            return usage_error(&e);
        }
    }
    // `--shard auto` is resolved once: a resumed run (resubmitted outside
    // the job array) keeps this K/N, whatever its own environment.
    let args = cli::Args {
        shard: args
            .shard
            .as_ref()
            .map(|_| config.schedule.shard.to_string()),
        ..args
    };
    // Connection tracking in this namespace: said once, and unanswered
    // connects kept under what its table holds (docs/TIMING.md).
    if !args.ignore_conntrack {
        if let Some(table) = fastport::timing::conntrack::Conntrack::detect() {
            let per_s = table.unanswered_per_s();
            config.engine.unanswered_rate = Some(per_s);
            config.notes.push(format!(
                "connection tracking is active here (nf_conntrack: {} of {} entries in use); \
                 keeping unanswered connects under {per_s:.0}/s, which its table holds for \
                 120 s each (--ignore-conntrack lifts this)",
                table.count, table.max
            ));
        }
    }
    if !config.outputs.quiet {
        for note in &config.notes {
            eprintln!("fastport: note: {note}");
        }
    }
    let earlier = match resumed.as_ref().map(resumed_earlier).transpose() {
        Ok(e) => e.flatten(),
        Err(e) => return usage_error(&e),
    };
    let mut run = RunInfo::new(&config, argv);
    run.held = resumed.as_ref().and_then(resume::Resumed::held);
    let continuing = resumed
        .as_ref()
        .map(resume::Resumed::continuing)
        .unwrap_or_default();
    // Until this run ends and rewrites it, its resume file must not be
    // resumed: the outputs are about to be cut back and grow past what it
    // records (a kill or a crash would otherwise let a later resume write
    // results twice).
    if let Some(r) = &resumed {
        if let Err(e) = r.make_stale(resume::UNFINISHED_RESUME) {
            return usage_error(&e);
        }
    }
    let mut outputs = match Outputs::open_continuing(&config.outputs, &run, &continuing) {
        Ok(outputs) => outputs,
        Err(e) => {
            // Nothing was written: the file may be resumed as it was.
            if let Some(r) = &resumed {
                if let Err(e) = r.restore() {
                    eprintln!("fastport: {e}");
                }
            }
            return usage_error(&e);
        }
    };
    // `--trace FILE`: created with the outputs, before any probe; each
    // engine worker records into it.
    let trace = match &config.outputs.trace {
        Some((path, sample)) => {
            match TraceSink::create(path, Sampler::from_ppm(*sample, config.seed)) {
                Ok(sink) => Some(sink),
                Err(e) => {
                    return usage_error(&format_args!("cannot write \"{}\": {e}", path.display()));
                }
            }
        }
        None => None,
    };

    let mut config = config;
    config.engine.trace = trace.clone();
    let scanned = scan::run(&config, &mut outputs, &signals.stop, earlier.as_ref());
    if let Some(Err(e)) = trace.as_ref().map(|t| t.flush()) {
        eprintln!("fastport: cannot write the trace: {e}");
    }
    match scanned {
        Ok(outcome) => {
            // From here no signal ends the process: the resume file is saved.
            signals.saving();
            let stopped = signals.stop.load(std::sync::atomic::Ordering::SeqCst);
            let saved = save_progress(&args, &config, resumed.as_ref(), &outcome, stopped);
            let resume_with = |path: &std::path::Path| {
                format!(
                    "continue with: fastport --resume {} (it continues the output files)",
                    path.display()
                )
            };
            if let Some(message) = &outcome.panicked {
                // A bug, not the user's doing: one line, the progress kept.
                let location = PANIC_AT
                    .get()
                    .map_or(String::new(), |at| format!(" at {at}"));
                let next = saved.as_deref().map_or_else(
                    || "nothing is lost".to_string(),
                    |path| format!("its outputs are closed; {}", resume_with(path)),
                );
                eprintln!(
                    "fastport: internal error: a worker panicked{location} ({message}); {next}"
                );
                return ExitCode::FAILURE;
            }
            if let Some(path) = &saved {
                eprintln!("fastport: interrupted; {}", resume_with(path));
            }
            exit_status(outcome)
        }
        Err(e) => {
            eprintln!("fastport: {e}");
            ExitCode::FAILURE
        }
    }
}

/// After the scan: an interrupted run writes its resume file (a new name,
/// or the file it resumed) and returns where; a resumed run that ended
/// marks its file finished, or stale when its outputs may now be ahead of
/// it.
fn save_progress(
    args: &cli::Args,
    config: &ScanConfig,
    resumed: Option<&resume::Resumed>,
    outcome: &scan::ScanOutcome,
    stopped: bool,
) -> Option<std::path::PathBuf> {
    // A signal after the last probe reported leaves nothing to resume.
    let complete = outcome.summary.stats.results() >= outcome.summary.planned;
    if stopped && !complete && outcome.output_error.is_none() {
        let so_far = StatsDocument::new(&outcome.summary, Some(outcome.record.clone()));
        let file = resume::file_for(
            args,
            config,
            resume::StoppedAt {
                segment: outcome.ordinal,
                done: &outcome.done,
                in_flight: &outcome.in_flight,
            },
            outcome.record.parts,
            so_far,
            outcome.held.clone(),
        );
        let written = match resumed {
            Some(r) => resume::write(&r.path, &file).map(|()| r.path.clone()),
            None => resume::write_new(resume::candidate_paths(config.schedule.shard), &file),
        };
        match written {
            Ok(path) => return Some(path),
            Err(e) => {
                eprintln!("fastport: {e}");
                if let Some(n) = outcome
                    .held
                    .as_ref()
                    .map(|h| h.pending.len())
                    .filter(|&n| n > 0)
                {
                    eprintln!(
                        "fastport: the {n} hosts in progress are in no -oX/-oG file (their results are in the line formats)"
                    );
                }
            }
        }
    } else if let Some(r) = resumed {
        let marked = match &outcome.output_error {
            // The outputs were continued and then failed: the file no
            // longer matches them (it stays stale, saying why).
            Some(e) => r.make_stale(&format!("the run that resumed it failed to write ({e})")),
            None if complete => r.finish(),
            // Ended early without a signal: as above.
            None => r.make_stale("the run that resumed it ended before its last probe"),
        };
        if let Err(e) = marked {
            eprintln!("fastport: {e}");
        }
    }
    None
}

/// Where a worker panicked, recorded by the panic hook for the one line
/// the run ends with.
static PANIC_AT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A worker's panic is caught at its boundary and ends the run cleanly
/// (see `engine`): the hook only records where it happened, and main says
/// it in one line. Any other thread's panic is reported as Rust does.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("fastport-worker") || n.starts_with("fastport-probe"));
        if worker {
            if let Some(at) = info.location() {
                let _ = PANIC_AT.set(format!("{}:{}", at.file(), at.line()));
            }
        } else {
            default(info);
        }
    }));
}

/// The earlier parts of a resumed scan, from its resume file.
fn resumed_earlier(r: &resume::Resumed) -> Result<Option<scan::Earlier>, resume::ResumeError> {
    let Some(doc) = &r.file.so_far else {
        return Ok(None);
    };
    let summary = doc
        .to_summary()
        .map_err(|why| resume::ResumeError::Format {
            path: r.path.clone(),
            why: format!("its \"so_far\" summary: {why}"),
        })?;
    Ok(Some(scan::Earlier {
        summary,
        parts: r.file.parts,
        json_lines: doc.run.as_ref().and_then(|run| run.json_lines),
    }))
}

/// The exit status of a scan that ran.
fn exit_status(outcome: scan::ScanOutcome) -> ExitCode {
    match outcome.output_error {
        // A closed pipe (`fastport | head`) is the reader saying "enough".
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("fastport: cannot write output: {e}");
            ExitCode::FAILURE
        }
        None if outcome.summary.interrupted => ExitCode::from(EXIT_INTERRUPTED),
        None => ExitCode::SUCCESS,
    }
}

/// --help and --version go to stdout; any other clap error is one line.
fn clap_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    // One line, like every other usage error: clap's first line.
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    usage_error(&format_args!("{first} (see --help)"))
}

/// `fastport merge FILE...`: joins shards' results and summaries. Every
/// check runs before a byte is written; files are written whole or not at
/// all.
fn merge(args: &cli::MergeArgs, argv: &[std::ffi::OsString]) -> ExitCode {
    use fastport::merge::{
        check_not_an_input, check_results, copy_results, is_stats_file, merge_stats,
        write_atomically,
    };
    let mut results = Vec::new();
    let mut summaries = Vec::new();
    for path in &args.inputs {
        match is_stats_file(path) {
            Ok(true) => summaries.push(path.clone()),
            Ok(false) => results.push(path.clone()),
            Err(e) => return usage_error(&e),
        }
    }
    let out = args
        .output_json
        .as_deref()
        .filter(|p| *p != std::path::Path::new("-"));
    for target in out.iter().chain(args.stats.as_deref().iter()) {
        if let Err(e) = check_not_an_input(target, &args.inputs) {
            return usage_error(&e);
        }
    }
    // Check everything first: a refusal writes nothing.
    let merged = if summaries.is_empty() {
        None
    } else {
        match merge_stats(&summaries) {
            Ok(m) => Some(m),
            Err(e) => return usage_error(&e),
        }
    };
    let lines = match check_results(&results) {
        Ok(n) => n,
        Err(e) => return usage_error(&e),
    };
    let sort_dir = args.sort_dir.clone().unwrap_or_else(std::env::temp_dir);
    let ports_per_host = merged.as_ref().map(|m| m.summary.ports_per_host);
    let middleboxes =
        match fastport::merge::formats::check_overlaps(&results, &sort_dir, ports_per_host) {
            Ok(hosts) => hosts,
            Err(e) => return usage_error(&e),
        };
    if let Some(m) = &merged {
        if !results.is_empty() {
            if let Err(e) = m.check_lines(lines) {
                return usage_error(&e);
            }
        }
    }
    // -oN/-oX/-oG/-oC: the results sorted by host and replayed through the
    // scan's writers (merge::formats), checked whole before they are written.
    let formats = match fastport::merge::formats::FormatPlan::from_args(args, argv) {
        Ok(plan) => plan,
        Err(e) => return usage_error(&e),
    };
    for target in formats.files() {
        if let Err(e) = check_not_an_input(target, &args.inputs) {
            return usage_error(&e);
        }
    }
    if formats.any() {
        let summary = merged.as_ref().map(|m| &m.summary);
        if let Err(e) = fastport::merge::formats::write(&results, &formats, summary) {
            return usage_error(&e);
        }
    }
    let written = match out {
        Some(p) => write_atomically(p, |w| copy_results(&results, &middleboxes, w, p)),
        // Another format took the place of JSON lines on stdout.
        None if args.output_json.is_none() && formats.any() => Ok(()),
        None => {
            let mut stdout = io::BufWriter::new(io::stdout().lock());
            match copy_results(
                &results,
                &middleboxes,
                &mut stdout,
                std::path::Path::new("stdout"),
            ) {
                Err(fastport::merge::MergeError::Write { source, .. })
                    if source.kind() == io::ErrorKind::BrokenPipe =>
                {
                    Ok(())
                }
                r => r,
            }
        }
    };
    if let Err(e) = written {
        eprintln!("fastport: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(m) = &merged {
        if let Some(path) = &args.stats {
            let text = serde_json::to_string_pretty(&m.to_document()).unwrap_or_default();
            let r = write_atomically(path, |w| {
                w.write_all(text.as_bytes())
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(|source| fastport::merge::MergeError::Write {
                        path: path.clone(),
                        source,
                    })
            });
            if let Err(e) = r {
                eprintln!("fastport: {e}");
                return ExitCode::FAILURE;
            }
        }
        let _ = fastport::output::write_summary(&mut io::stderr().lock(), &m.summary);
        if !m.missing.is_empty() {
            eprintln!(
                "fastport: note: shards {:?} of {} are missing: the result is partial",
                m.missing,
                m.shards[0].n()
            );
        }
    } else if !results.is_empty() {
        eprintln!(
            "fastport: note: without the shards' --stats files, merge cannot check that the results are complete"
        );
    }
    eprintln!(
        "fastport: merged {lines} result lines from {} files and {} summaries",
        results.len(),
        summaries.len()
    );
    ExitCode::SUCCESS
}

/// `fastport report FILE... -o PAGE`: one self-contained HTML page.
fn report(args: &cli::ReportArgs) -> ExitCode {
    match report::write_report(&args.inputs, &args.output, args.plot.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ report::ReportError::Write { .. }) => {
            eprintln!("fastport: {e}");
            ExitCode::FAILURE
        }
        Err(e) => usage_error(&e),
    }
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(io::stderr(), "fastport: {e}");
    ExitCode::from(EXIT_USAGE)
}

/// How long a stop may take before a further signal ends the process at
/// once (the run is stuck: a name that does not resolve, an output that
/// blocks).
const STUCK_AFTER: Duration = Duration::from_secs(1);

/// Ctrl-C, SIGTERM or SIGHUP (the terminal closed) asks the scan to stop
/// cleanly: outputs closed, a resume file written. Stopping takes
/// milliseconds, and a second signal then is ignored, so an impatient
/// second Ctrl-C never costs the resume file; one that comes when the run
/// has not stopped after [`STUCK_AFTER`] ends it at once, unless the resume
/// file is being saved.
struct Signals {
    /// Set by any of the three signals (and by the engine when an output
    /// fails).
    stop: Arc<AtomicBool>,
    /// Held by the watchdog while it ends the process; set once saving
    /// began.
    saving: Arc<Mutex<bool>>,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::flag;
        let stop = Arc::new(AtomicBool::new(false));
        let again = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            flag::register(sig, Arc::clone(&stop))?;
            flag::register(sig, Arc::clone(&again))?;
        }
        let saving = Arc::new(Mutex::new(false));
        let (watch_stop, watch_saving) = (Arc::clone(&stop), Arc::clone(&saving));
        // The watchdog opens nothing: it leaves the descriptor table to the
        // scan before the scan opens anything, so that the engine's one
        // growth of the table does not wait for an RCU grace period (as
        // growing a table two threads share does: 9-15 ms). Only the
        // descriptors open now (stdio) are copied into its own.
        let (unshared_tx, unshared) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                // Best effort: sharing only costs that wait.
                let _ = sys::unshare_fd_table();
                let _ = unshared_tx.send(());
                watchdog(&watch_stop, &again, &watch_saving)
            })?;
        let _ = unshared.recv();
        Ok(Signals { stop, saving })
    }

    /// The resume file is being saved: no signal ends the process now.
    fn saving(&self) {
        *self.saving.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

/// Waits for a first signal, then ends the process on a later one if the
/// run has not stopped within [`STUCK_AFTER`] and is not saving.
fn watchdog(stop: &AtomicBool, again: &AtomicBool, saving: &Mutex<bool>) {
    const TICK: Duration = Duration::from_millis(20);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
    }
    again.store(false, Ordering::SeqCst);
    let first = Instant::now();
    loop {
        std::thread::sleep(TICK);
        if again.swap(false, Ordering::SeqCst) && first.elapsed() >= STUCK_AFTER {
            let saving = saving.lock().unwrap_or_else(PoisonError::into_inner);
            if *saving {
                return;
            }
            eprintln!(
                "fastport: the run did not stop within {} s of the first signal; exiting without a resume file",
                STUCK_AFTER.as_secs()
            );
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
}
