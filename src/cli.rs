//! The command line as typed: clap's derive of every flag, close to the
//! words the user wrote. Nothing here is validated beyond its type;
//! [`crate::config`] turns these raw flags into a checked
//! [`crate::config::ScanConfig`] (ripgrep's low-level/high-level split).
//!
//! nmap users type `-iL`, `-oN`, `-p-`: single-dash words clap cannot
//! declare. [`normalize_args`] rewrites them to their long spellings before
//! clap sees them, so both spellings work and `--help` shows both.
//!
//! The first word decides the mode at parse time ([`mode`], as ripgrep
//! decides its own): `fastport merge FILE...` joins shards,
//! `fastport completions SHELL` and `fastport manpage` print documents
//! generated from this very definition ([`command`], which lists every
//! mode, so `--help`, the man page and the completions name them all), and
//! anything else is a scan.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::engine::EngineKind;
use crate::order::OrderKind;

/// FastPort: a fast TCP connect port scanner (one non-blocking event loop per core).
///
/// With no arguments it scans localhost ports 1-1024 and prints each open port.
#[derive(Debug, Clone, Parser)]
#[command(name = "fastport", version = VERSION, about, long_about = None)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Targets: addresses, CIDR blocks (198.18.0.0/24), ranges (198.18.0.1-20,
    /// 198.18.0.1-198.18.1.5) or hostnames. Default: localhost.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Read targets from FILE (`-` for stdin), one or more per line. Also -iL.
    #[arg(long = "input-list", value_name = "FILE", help_heading = "Targets")]
    pub input_list: Option<PathBuf>,

    /// Comma-separated targets to leave out.
    #[arg(long, value_name = "LIST", help_heading = "Targets")]
    pub exclude: Vec<String>,

    /// Read targets to leave out from FILE.
    #[arg(long = "exclude-file", value_name = "FILE", help_heading = "Targets")]
    pub exclude_file: Option<PathBuf>,

    /// Never resolve hostnames: a name is then an error. (nmap's -n, which
    /// only turns off reverse lookups, is accepted too: FastPort never does
    /// reverse lookups.)
    #[arg(long = "no-resolve", help_heading = "Targets")]
    pub no_resolve: bool,

    /// Scan only the first address of a name that has several, as nmap does
    /// by default. Default: every address of the name's family (IPv4 when
    /// it has any), as nmap's --resolve-all.
    #[arg(long = "resolve-first", help_heading = "Targets")]
    pub resolve_first: bool,

    /// nmap's "no reverse DNS": FastPort never looks names up in reverse,
    /// so -n changes nothing; accepted so nmap command lines work.
    #[arg(short = 'n', help_heading = "Targets")]
    pub nmap_no_dns: bool,

    /// nmap's "skip host discovery": FastPort never pings, it scans every
    /// target, so -Pn changes nothing. Other -P probes are refused.
    #[arg(short = 'P', value_name = "n", help_heading = "Targets")]
    pub ping: Option<String>,

    /// Scan type: only `T`, TCP connect (what FastPort always does), as in
    /// nmap's -sT. -sS, -sU and the others need raw sockets and are refused
    /// with a word on what to use instead.
    #[arg(short = 's', value_name = "T", help_heading = "Ports")]
    pub scan_type: Option<String>,

    /// Fast mode, as nmap's -F: the 100 highest-ranked ports (--top-ports 100).
    #[arg(short = 'F', help_heading = "Ports")]
    pub fast: bool,

    /// Ports: 22,80,1000-2000; `-p-` for 1-65535. Default: 1-1024.
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "SPEC",
        help_heading = "Ports"
    )]
    pub ports: Option<String>,

    /// Scan the N ports most likely open: ranked by an installed nmap-services
    /// file ($NMAPDIR, /usr/local/share/nmap, /usr/share/nmap) when there is
    /// one, else by FastPort's built-in list. The summary says which.
    #[arg(long = "top-ports", value_name = "N", help_heading = "Ports")]
    pub top_ports: Option<usize>,

    /// Ports to leave out.
    #[arg(long = "exclude-ports", value_name = "SPEC", help_heading = "Ports")]
    pub exclude_ports: Option<String>,

    /// Fix how long every attempt waits (500ms, 2s, 1m; a bare number is
    /// milliseconds) and turn adaptive timing off. Default: adaptive, learnt
    /// from the answers (see -T and the *-rtt-timeout flags).
    #[arg(long, value_name = "DURATION", help_heading = "Timing")]
    pub timeout: Option<String>,

    /// Extra attempts for a port that did not answer: exactly N with
    /// --timeout (default 1), at most N when adaptive (default: the -T
    /// template's, 10 for -T3), which retries only as often as the loss it
    /// measures calls for. Also --max-retries.
    #[arg(
        long,
        visible_alias = "max-retries",
        value_name = "N",
        help_heading = "Timing"
    )]
    pub retries: Option<u32>,

    /// Timing template, nmap's -T0 … -T5 (paranoid, sneaky, polite, normal,
    /// aggressive, insane): RTT timeouts, retries, parallelism. Default: 3.
    #[arg(
        short = 'T',
        long = "timing",
        value_name = "0-5|NAME",
        help_heading = "Timing"
    )]
    pub timing: Option<String>,

    /// Adaptive timing: an attempt's wait before any answer was timed (default: the template's, 1s).
    #[arg(
        long = "initial-rtt-timeout",
        value_name = "DURATION",
        help_heading = "Timing"
    )]
    pub initial_rtt_timeout: Option<String>,

    /// Adaptive timing: the shortest wait, however fast the answers (default: the template's, 100ms).
    #[arg(
        long = "min-rtt-timeout",
        value_name = "DURATION",
        help_heading = "Timing"
    )]
    pub min_rtt_timeout: Option<String>,

    /// Adaptive timing: the longest wait (default: the template's, 10s).
    #[arg(
        long = "max-rtt-timeout",
        value_name = "DURATION",
        help_heading = "Timing"
    )]
    pub max_rtt_timeout: Option<String>,

    /// Probes in flight, all threads together. Default: derived from the open-file limit.
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub concurrency: Option<usize>,

    /// How probes wait: `mio`, one event loop per core (default), or
    /// `threads`, one blocking OS thread per probe in flight (--concurrency threads).
    #[arg(long, value_enum, default_value_t = EngineKind::Mio, help_heading = "Timing")]
    pub engine: EngineKind,

    /// Worker threads, each running one event loop. Default: the number of cores.
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub threads: Option<usize>,

    /// At most PPS new connects per second, all workers together. Also --max-rate.
    #[arg(
        long,
        visible_alias = "max-rate",
        value_name = "PPS",
        help_heading = "Timing"
    )]
    pub rate: Option<f64>,

    /// Where connection tracking (nf_conntrack) is active in this network
    /// namespace, FastPort keeps unanswered connects under what its table
    /// can hold (each holds an entry for 120 s); this lifts that limit.
    #[arg(long = "ignore-conntrack", help_heading = "Timing")]
    pub ignore_conntrack: bool,

    /// nmap's --min-rate: accepted, but FastPort has no floor to enforce; it
    /// sends as fast as --concurrency, --rate and the answers allow.
    #[arg(long = "min-rate", value_name = "PPS", help_heading = "Timing")]
    pub min_rate: Option<f64>,

    /// nmap's --scan-delay: wait at least DURATION between connects, i.e.
    /// --rate 1/DURATION (for all hosts together, stricter than nmap's per host).
    #[arg(long = "scan-delay", value_name = "DURATION", help_heading = "Timing")]
    pub scan_delay: Option<String>,

    /// nmap's --max-scan-delay: accepted and ignored. FastPort's adaptive
    /// timing slows down by shrinking its window; its only scan delay, for a
    /// host that limits its RSTs, comes from the rate the host answered at.
    #[arg(
        long = "max-scan-delay",
        value_name = "DURATION",
        help_heading = "Timing"
    )]
    pub max_scan_delay: Option<String>,

    /// Probe order: `random`, a seeded permutation of hosts × ports that
    /// spreads the load over hosts (default), or `sequential`, each host's
    /// ports in turn.
    #[arg(long, value_enum, default_value_t = OrderKind::Random, help_heading = "Scan order")]
    pub order: OrderKind,

    /// Seed of the random order, for a reproducible run (and the same for
    /// every shard). Default: random, printed in the summary.
    #[arg(long, value_name = "N", help_heading = "Scan order")]
    pub seed: Option<u64>,

    /// Probe only shard K of N (1-based, masscan's spelling): N runs with the
    /// same --seed, on N machines, cover the scan exactly once. `auto` (or
    /// `auto/N`) reads K/N from a Slurm job array, a Kubernetes Indexed Job
    /// or GNU parallel (docs/SHARDING.md).
    #[arg(long, value_name = "K/N", help_heading = "Scan order")]
    pub shard: Option<String>,

    /// Continue the run that was interrupted and wrote FILE (with its options).
    #[arg(long, value_name = "FILE", help_heading = "Scan order")]
    pub resume: Option<PathBuf>,

    /// Write the human-readable text to FILE (`-` for stdout). Also -oN.
    #[arg(long = "output-normal", value_name = "FILE", help_heading = "Output")]
    pub output_normal: Option<PathBuf>,

    /// Write JSON lines to FILE (`-` for stdout). Also -oJ.
    #[arg(long = "output-json", value_name = "FILE", help_heading = "Output")]
    pub output_json: Option<PathBuf>,

    /// Write nmap XML to FILE (`-` for stdout), for ndiff, Metasploit, libnmap. Also -oX.
    #[arg(long = "output-xml", value_name = "FILE", help_heading = "Output")]
    pub output_xml: Option<PathBuf>,

    /// Write nmap's grepable format to FILE (`-` for stdout): a Host: line per host. Also -oG.
    #[arg(long = "output-grepable", value_name = "FILE", help_heading = "Output")]
    pub output_grepable: Option<PathBuf>,

    /// Write CSV (addr,port,state,reason,rtt_us) to FILE (`-` for stdout). Also -oC.
    #[arg(long = "output-csv", value_name = "FILE", help_heading = "Output")]
    pub output_csv: Option<PathBuf>,

    /// Write one `addr:port` line per shown port (`host:port` for a target
    /// given by name) to FILE (`-` for stdout), nothing else: for `| sort`,
    /// `| wc -l`, `| xargs`. With `-oL -` the summary goes to stderr. Also -oL.
    #[arg(long = "output-list", value_name = "FILE", help_heading = "Output")]
    pub output_list: Option<PathBuf>,

    /// Write BASENAME.txt, BASENAME.xml, BASENAME.gnmap and BASENAME.jsonl. Also -oA.
    #[arg(long = "output-all", value_name = "BASENAME", help_heading = "Output")]
    pub output_all: Option<PathBuf>,

    /// When stderr is not a terminal, print a status line there every DURATION (5s, 1m).
    #[arg(long = "stats-every", value_name = "DURATION", help_heading = "Output")]
    pub stats_every: Option<String>,

    /// Which results to write: a comma list of open, closed, filtered, or `all`.
    #[arg(
        long,
        value_name = "STATES",
        default_value = "open",
        help_heading = "Output"
    )]
    pub show: String,

    /// Show only open ports, as nmap's --open: hosts without one are left out
    /// of the XML and grepable outputs too.
    #[arg(long, help_heading = "Output")]
    pub open: bool,

    /// More detail: -v prints notes about nmap flags that change nothing;
    /// -vv also adds the reason and latency to the text (like --reason).
    #[arg(short = 'v', action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,

    /// Quiet: no progress bar, status lines or notes on stderr; errors still.
    #[arg(short = 'q', long = "quiet", help_heading = "Output")]
    pub quiet: bool,

    /// Add the reason (syn-ack, conn-refused, ...) and latency to the text output.
    #[arg(long, help_heading = "Output")]
    pub reason: bool,

    /// Write the run summary as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub stats: Option<PathBuf>,

    /// Record every probe's life (launch, connect, readiness, SO_ERROR,
    /// deadline, retry, close) and the engine's decisions to FILE, with
    /// microsecond timestamps; `fastport report` draws it.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub trace: Option<PathBuf>,

    /// Trace only this fraction of the probes (0.01: one in a hundred),
    /// chosen by a hash of the probe index seeded with --seed. Default: 1.
    #[arg(
        long = "trace-sample",
        value_name = "FRACTION",
        help_heading = "Output"
    )]
    pub trace_sample: Option<f64>,

    // Service detection (crate::service): validated by service::ServiceOptions::from_args.
    /// Keep talking to each open port to name its service and version. Also -sV.
    #[arg(long = "service-version", help_heading = "Services")]
    pub service_version: bool,

    /// Which probes service detection sends: 0 (only those meant for the port)
    /// to 9 (all of them), as nmap's rarity. Default 7. Implies -sV.
    #[arg(
        long = "version-intensity",
        value_name = "0-9",
        value_parser = clap::value_parser!(u8).range(0..=9),
        help_heading = "Services"
    )]
    pub version_intensity: Option<u8>,

    /// Print what each open port's service says by itself (its banner), unmatched.
    #[arg(long, help_heading = "Services")]
    pub banners: bool,

    /// Read service probes from FILE (nmap-service-probes format, e.g. your own
    /// copy of nmap's) instead of FastPort's own database. Implies -sV.
    #[arg(
        long = "service-probes",
        value_name = "FILE",
        help_heading = "Services"
    )]
    pub service_probes: Option<PathBuf>,
}

/// `fastport --version`: the crate version and the commit it was built from
/// (see build.rs), e.g. `0.1.0 (commit 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FASTPORT_COMMIT"),
    ")"
);

/// `fastport merge`: join shards' results and summaries into one.
#[derive(Debug, Clone, Parser)]
#[command(name = "fastport merge", version = VERSION)]
#[command(
    about = "Join the -oJ results and --stats summaries of shards (--shard K/N) into one scan's result"
)]
pub struct MergeArgs {
    /// The shards' JSON-lines files (-oJ) and --stats files, in any order.
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Where the joined result lines go (`-` or absent: stdout). Also -oJ.
    #[arg(long = "output-json", value_name = "FILE")]
    pub output_json: Option<PathBuf>,

    /// Where the merged --stats summary goes.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,

    // The scan's other formats, written from the shards' JSON lines (see
    // merge::formats): one document for the whole scan, hosts merged.
    /// Write the human-readable text to FILE (`-` for stdout). Also -oN.
    #[arg(long = "output-normal", value_name = "FILE")]
    pub output_normal: Option<PathBuf>,

    /// Write one nmap XML document to FILE (`-` for stdout); needs the
    /// shards' --stats files and every result (--show all). Also -oX.
    #[arg(long = "output-xml", value_name = "FILE")]
    pub output_xml: Option<PathBuf>,

    /// Write nmap's grepable format to FILE (`-` for stdout); needs what
    /// -oX needs. Also -oG.
    #[arg(long = "output-grepable", value_name = "FILE")]
    pub output_grepable: Option<PathBuf>,

    /// Write CSV to FILE (`-` for stdout). Also -oC.
    #[arg(long = "output-csv", value_name = "FILE")]
    pub output_csv: Option<PathBuf>,

    /// Which results -oN, -oX, -oG and -oC write (-oJ keeps every line):
    /// a comma list of open, closed, filtered, or `all`.
    #[arg(long, value_name = "STATES", default_value = "open")]
    pub show: String,

    /// Where the results are sorted on disk for those formats (default: the
    /// temporary directory, TMPDIR).
    #[arg(long = "sort-dir", value_name = "DIR")]
    pub sort_dir: Option<PathBuf>,
}

impl MergeArgs {
    /// Parses the words after `fastport merge` (nmap spellings included).
    pub fn parse_from<I>(args: I) -> Result<MergeArgs, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        MergeArgs::try_parse_from(normalize_args(args))
    }
}

/// `fastport report`: draw summaries, results and traces into one HTML page.
#[derive(Debug, Clone, Parser)]
#[command(name = "fastport report", version)]
#[command(
    about = "Draw --stats summaries, -oJ results and --trace files into one self-contained HTML page"
)]
pub struct ReportArgs {
    /// --stats summaries (each starts a run; several are overlaid), and the
    /// -oJ results and --trace files that belong to the summary before them.
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Where the page goes (`-` for stdout).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "report.html"
    )]
    pub output: PathBuf,

    /// Write only the plot NAME, as a standalone SVG image (for documents;
    /// a wrong NAME lists the plots these inputs make).
    #[arg(long, value_name = "NAME")]
    pub plot: Option<String>,
}

impl ReportArgs {
    /// Parses the words after `fastport report`.
    pub fn parse_from<I>(args: I) -> Result<ReportArgs, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        ReportArgs::try_parse_from(args)
    }
}

const AFTER_HELP: &str = "\
nmap spellings also work: -iL FILE, -oN FILE, -oJ FILE, -oX FILE, -oG FILE,
-oC FILE, -oL FILE, -oA BASENAME, -p- (all ports), -sT, -sV, -Pn, -n, -F,
--open, -v, --min-rate, --scan-delay, --max-scan-delay. Flags that need raw packets
(-sS, -sU, -O, -A, --script...) are refused with what to use instead.

Unlike nmap (its 1000 most common ports), FastPort scans ports 1-1024 by
default; -F or --top-ports N pick ranked ports instead.

Commands (as the first word):
  fastport merge FILE...                   join shards' -oJ results and --stats summaries
  fastport completions SHELL               bash, zsh, fish, elvish or powershell
  fastport manpage                         the manual page (roff)

Examples:
  fastport                                 localhost, ports 1-1024
  fastport -p- 127.0.0.1                   every port of one host
  fastport -sT -Pn -T4 --open -p 1-1000 127.0.0.1   as nmap users type it
  fastport -oL - 198.18.0.0/24 | sort      addr:port lines only, summary on stderr
  fastport -p 22,80,443 198.18.0.0/24      three ports on a /24
  fastport --top-ports 100 -oJ out.jsonl example.org
  fastport -p- --show all --reason -oJ - 127.0.0.1 | jq .
  fastport -oA scan 198.18.0.0/24          scan.txt, .xml, .gnmap and .jsonl
  fastport merge -oJ all.jsonl --stats all.json s1.jsonl s1.json s2.jsonl s2.json
  fastport manpage | man -l -              this help as a manual page";

/// nmap's single-dash words and the long flags they stand for.
const NMAP_SPELLINGS: &[(&str, &str)] = &[
    ("-iL", "--input-list"),
    ("-oN", "--output-normal"),
    ("-oJ", "--output-json"),
    ("-oX", "--output-xml"),
    ("-oG", "--output-grepable"),
    ("-oC", "--output-csv"),
    ("-oL", "--output-list"),
    ("-oA", "--output-all"),
    ("-sV", "--service-version"),
];

/// Rewrites nmap-style spellings into ones clap understands: `-iL F` →
/// `--input-list F`, `-iLF` → `--input-list=F`, `-p-` → `--ports=-`.
/// Arguments after `--` are left alone.
pub fn normalize_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        if rest {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        if s == "-p-" {
            out.push("--ports=-".into());
            continue;
        }
        if let Some(&(short, long)) = NMAP_SPELLINGS
            .iter()
            .find(|(short, _)| s.starts_with(short))
        {
            let value = &s[short.len()..];
            if value.is_empty() {
                out.push(long.into());
            } else {
                out.push(format!("{long}={value}").into());
            }
            continue;
        }
        out.push(arg);
    }
    out
}

/// Parses the process's command line (after nmap-style normalisation).
/// An nmap flag FastPort cannot honour is refused with one line saying why
/// and what to use instead, before clap could call it unexpected.
pub fn parse_from<I>(args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = OsString>,
{
    let argv = normalize_args(args);
    let words = argv
        .iter()
        .skip(1)
        .map_while(|a| a.to_str().filter(|&w| w != "--"));
    for word in words {
        if let Some(why) = nmap_refusal(word) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{why}\n"),
            ));
        }
    }
    Args::try_parse_from(argv)
}

/// Why FastPort refuses an nmap flag it cannot honour, and what to use
/// instead; `None` for any other word. `word` is one command-line word
/// (`-sS`, `-O`, `--script=vuln`).
pub fn nmap_refusal(word: &str) -> Option<String> {
    const RAW: &str =
        "needs raw packets, and FastPort makes only full TCP connects (-sT, its one scan type)";
    let flag = word.split_once('=').map_or(word, |(flag, _)| flag);
    let why = match flag {
        "-sS" => format!("-sS (SYN scan) {RAW}: drop -sS or write -sT; for a SYN scan use nmap -sS"),
        "-sU" => "-sU: FastPort scans TCP only; for UDP use nmap -sU".to_string(),
        "-sA" | "-sW" | "-sM" | "-sN" | "-sF" | "-sX" | "-sY" | "-sZ" | "-sO" | "-sI" => {
            format!("{flag} {RAW}; use nmap {flag} for that scan")
        }
        "-sn" => "-sn (host discovery without a port scan): FastPort never pings and always scans ports; use nmap -sn".to_string(),
        "-sL" => "-sL (list the targets): FastPort has no list scan; use nmap -sL".to_string(),
        "-sC" | "--script" | "--script-args" => format!(
            "{flag}: NSE scripts are nmap's; run nmap --script on the open ports FastPort finds (-oL - lists them)"
        ),
        "-O" | "--osscan-guess" | "--osscan-limit" => {
            format!("{flag} (OS detection) {RAW}; use nmap -O")
        }
        "-A" => "-A means -O -sV -sC --traceroute; of those FastPort does only -sV (give it alone), or run nmap -A on the open ports FastPort finds".to_string(),
        "--traceroute" => format!("--traceroute {RAW}; use nmap --traceroute or traceroute"),
        "-D" | "-S" | "-f" | "--mtu" | "--spoof-mac" | "--badsum" | "--data-length" | "--ttl"
        | "-g" | "--source-port" | "--ip-options" => {
            format!("{flag} shapes packets, which {RAW}")
        }
        f if f.starts_with("-P") && f != "-Pn" && f.len() > 2 => format!(
            "{f}: FastPort sends no discovery probes; it never pings and scans every target (as nmap -Pn): drop {f}"
        ),
        "--host-timeout" => "--host-timeout: FastPort does not give up on a host part-way; bound each probe with --max-rtt-timeout and --max-retries, or the whole run with timeout(1)".to_string(),
        _ => return None,
    };
    Some(why)
}

/// What the command line asks for, decided by its first word.
#[derive(Debug)]
pub enum Mode {
    /// A scan (any first word but the ones below).
    Scan(Box<Args>),
    /// `fastport merge FILE...`.
    Merge(Box<MergeArgs>),
    /// `fastport report FILE... -o PAGE.html`.
    Report(Box<ReportArgs>),
    /// `fastport completions SHELL`, `fastport manpage`.
    Document(Document),
}

/// Parses the process's command line into its [`Mode`]. Only the very first
/// word selects a mode, so a host named like one is scanned when anything
/// comes before it: `fastport -- merge`.
pub fn mode(argv: &[OsString]) -> Result<Mode, clap::Error> {
    if let Some(request) = document_request(argv) {
        return request.map(Mode::Document);
    }
    if argv.get(1).and_then(|a| a.to_str()) == Some("merge") {
        let words =
            std::iter::once(OsString::from("fastport merge")).chain(argv[2..].iter().cloned());
        return MergeArgs::parse_from(words).map(|m| Mode::Merge(Box::new(m)));
    }
    if argv.get(1).and_then(|a| a.to_str()) == Some("report") {
        let words =
            std::iter::once(OsString::from("fastport report")).chain(argv[2..].iter().cloned());
        return ReportArgs::parse_from(words).map(|r| Mode::Report(Box::new(r)));
    }
    parse_from(argv.iter().cloned()).map(|args| Mode::Scan(Box::new(args)))
}

/// A document about FastPort itself, asked for by the first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `fastport completions SHELL`: a completion script.
    Completions(clap_complete::Shell),
    /// `fastport manpage`: the manual page, in roff.
    Manpage,
}

/// Recognises `completions SHELL` and `manpage` as the first argument.
/// Only the very first word counts, so a host with one of these names is
/// still scanned when anything comes before it: `fastport -- manpage`.
pub fn document_request(argv: &[OsString]) -> Option<Result<Document, clap::Error>> {
    let first = argv.get(1)?.to_str()?;
    let sub = document_commands().find(|c| c.get_name() == first)?;
    let words = std::iter::once(OsString::from(format!("fastport {first}")))
        .chain(argv[2..].iter().cloned());
    let matches = match sub.try_get_matches_from(words) {
        Ok(m) => m,
        Err(e) => return Some(Err(e)),
    };
    // By name, not by asking for a "shell" argument: clap reports an
    // argument the subcommand lacks as an error only in debug builds (a
    // release `fastport manpage` once asked for a shell).
    if first == "manpage" {
        return Some(Ok(Document::Manpage));
    }
    Some(match matches.get_one::<clap_complete::Shell>("shell") {
        Some(&shell) => Ok(Document::Completions(shell)),
        None => Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "completions needs a shell: bash, zsh, fish, elvish or powershell\n",
        )),
    })
}

/// Writes a document to `out`.
pub fn write_document(doc: Document, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = command();
    match doc {
        Document::Completions(shell) => {
            clap_complete::generate(shell, &mut cmd, "fastport", out);
            Ok(())
        }
        Document::Manpage => manpage(cmd, out),
    }
}

/// The manual page: clap_mangen's sections, except that the commands are
/// described here instead of pointing at fastport-merge(1) and the like,
/// pages that do not exist.
fn manpage(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    writeln!(
        out,
        "The first word may name a command instead of a target (write \\fB\\-\\-\\fR before a host named like one)."
    )?;
    for sub in cmd.get_subcommands() {
        let usage = sub
            .get_arguments()
            .filter(|a| a.is_positional())
            .map(|a| {
                let name = a.get_value_names().and_then(|v| v.first()).map_or_else(
                    || a.get_id().to_string().to_uppercase(),
                    ToString::to_string,
                );
                format!(" \\fI{name}\\fR")
            })
            .collect::<String>();
        writeln!(out, ".TP\n\\fBfastport {}\\fR{usage}", sub.get_name())?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", roff_text(&about.to_string()))?;
        }
        for opt in sub
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
        {
            let long = opt.get_long().unwrap_or_default();
            let help = opt.get_help().map(|h| h.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".RS\n.TP\n\\fB\\-\\-{}\\fR\n{}\n.RE",
                roff_text(long),
                roff_text(&help)
            )?;
        }
    }
    man.render_extra_section(out)?;
    man.render_version_section(out)?;
    man.render_authors_section(out)
}

/// Text safe in a roff paragraph: backslashes and hyphens escaped, no line
/// starting with a control character.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The whole command line interface: the scan's flags, and the words
/// `merge`, `completions` and `manpage` as subcommands so completions and
/// the man page show them.
pub fn command() -> clap::Command {
    Args::command()
        .subcommand(MergeArgs::command().name("merge"))
        .subcommands(document_commands())
        .disable_help_subcommand(true)
}

fn document_commands() -> impl Iterator<Item = clap::Command> {
    use clap::{Arg, Command, value_parser};
    [
        Command::new("completions")
            .about("Print a shell completion script (bash, zsh, fish, elvish, powershell)")
            .arg(
                // Not `required`: a missing shell gets a one-line error that names the choices.
                Arg::new("shell")
                    .value_name("SHELL")
                    .value_parser(value_parser!(clap_complete::Shell)),
            ),
        Command::new("manpage").about("Print the manual page (roff): fastport manpage | man -l -"),
    ]
    .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::{args as parse, argv, assert_has};

    #[test]
    fn no_arguments_means_defaults() {
        let a = parse("");
        assert!(a.targets.is_empty());
        assert_eq!(a.ports, None);
        assert_eq!(a.timeout, None);
        assert_eq!(a.retries, None);
        assert_eq!(a.timing, None);
        assert_eq!(a.show, "open");
    }

    #[test]
    fn nmap_spellings_are_understood() {
        let a = parse("-p- -iL hosts.txt -oN out.txt -oJ - 198.18.0.1");
        assert_eq!(a.ports.as_deref(), Some("-"));
        assert_eq!(a.input_list, Some(PathBuf::from("hosts.txt")));
        assert_eq!(a.output_normal, Some(PathBuf::from("out.txt")));
        assert_eq!(a.output_json, Some(PathBuf::from("-")));
        assert_eq!(a.targets, ["198.18.0.1"]);
        let b = parse("-oJout.jsonl -p 22,80 -n");
        assert_eq!(b.output_json, Some(PathBuf::from("out.jsonl")));
        assert_eq!(b.ports.as_deref(), Some("22,80"));
        assert!(
            b.nmap_no_dns && !b.no_resolve,
            "-n is nmap's: no reverse DNS"
        );
    }

    /// `fastport -sT -Pn -T4 --open -p 1-1000 127.0.0.1` once failed on `-s`.
    #[test]
    fn nmap_command_line_failed_on_dash_s() {
        let a = parse("-sT -Pn -T4 --open -p 1-1000 127.0.0.1");
        assert_eq!(a.scan_type.as_deref(), Some("T"));
        assert_eq!(a.ping.as_deref(), Some("n"));
        assert_eq!(a.timing.as_deref(), Some("4"));
        assert!(a.open);
        assert_eq!(a.ports.as_deref(), Some("1-1000"));
        let b = parse("-F -vv -n --min-rate 100 --scan-delay 10ms --max-scan-delay 1s");
        assert!(b.fast && b.nmap_no_dns);
        assert_eq!(b.verbose, 2);
        assert_eq!(b.min_rate, Some(100.0));
        assert_eq!(b.scan_delay.as_deref(), Some("10ms"));
        assert_eq!(b.max_scan_delay.as_deref(), Some("1s"));
        assert!(parse("-q").quiet && parse("--quiet").quiet);
        assert_eq!(parse("-v").verbose, 1);
        let c = parse("-oL - --no-resolve 127.0.0.1");
        assert_eq!(c.output_list, Some(PathBuf::from("-")));
        assert!(c.no_resolve);
    }

    #[test]
    fn nmap_flags_fastport_cannot_honour_say_why_in_one_line() {
        for (line, needle) in [
            ("-sS 127.0.0.1", "-sS (SYN scan) needs raw packets"),
            ("-sU 127.0.0.1", "FastPort scans TCP only"),
            ("-O 127.0.0.1", "-O (OS detection)"),
            ("-A 127.0.0.1", "-A means -O -sV -sC --traceroute"),
            (
                "--script vuln 127.0.0.1",
                "--script: NSE scripts are nmap's",
            ),
            (
                "--script=vuln 127.0.0.1",
                "--script: NSE scripts are nmap's",
            ),
            (
                "-PS22 127.0.0.1",
                "-PS22: FastPort sends no discovery probes",
            ),
            ("--host-timeout 5m 127.0.0.1", "--host-timeout"),
            ("-sn 127.0.0.1", "never pings"),
        ] {
            let e = parse_from(argv(line)).unwrap_err().to_string();
            assert!(e.contains(needle), "{line}: {e}");
            assert_eq!(e.trim_end().lines().count(), 1, "{line}: {e}");
            assert!(!e.contains("unexpected argument"), "{line}: {e}");
        }
        // After `--` a word is a target, whatever it looks like.
        let argv = ["fastport", "--", "-O"].map(OsString::from);
        assert!(parse_from(argv).is_ok());
    }

    #[test]
    fn timing_templates_have_nmaps_spellings() {
        for line in ["-T4", "-T 4", "--timing 4", "--timing=4"] {
            assert_eq!(parse(line).timing.as_deref(), Some("4"), "{line}");
        }
        assert_eq!(parse("-T insane").timing.as_deref(), Some("insane"));
        let a = parse(
            "--max-retries 3 --min-rtt-timeout 50ms --max-rtt-timeout 2s --initial-rtt-timeout 300ms",
        );
        assert_eq!(a.retries, Some(3));
        assert_eq!(a.min_rtt_timeout.as_deref(), Some("50ms"));
        assert_eq!(a.max_rtt_timeout.as_deref(), Some("2s"));
        assert_eq!(a.initial_rtt_timeout.as_deref(), Some("300ms"));
    }

    #[test]
    fn arguments_after_double_dash_are_kept() {
        let argv = normalize_args(["fastport", "--", "-p-"].map(OsString::from));
        assert_eq!(argv[2], OsString::from("-p-"));
    }

    #[test]
    fn nmap_output_spellings() {
        let a = parse("-oX a.xml -oGa.gnmap -oC - -oA base --stats-every 5s");
        assert_eq!(a.output_xml, Some(PathBuf::from("a.xml")));
        assert_eq!(a.output_grepable, Some(PathBuf::from("a.gnmap")));
        assert_eq!(a.output_csv, Some(PathBuf::from("-")));
        assert_eq!(a.output_all, Some(PathBuf::from("base")));
        assert_eq!(a.stats_every.as_deref(), Some("5s"));
    }

    #[test]
    fn document_words_count_only_first() {
        let doc = |line: &str| document_request(&argv(line)).map(|r| r.ok());
        assert_eq!(
            doc("completions bash"),
            Some(Some(Document::Completions(clap_complete::Shell::Bash)))
        );
        assert_eq!(doc("manpage"), Some(Some(Document::Manpage)));
        assert_eq!(doc("completions"), Some(None));
        assert_eq!(doc("completions tcsh"), Some(None));
        assert_eq!(doc("manpage extra"), Some(None));
        assert_eq!(doc("-- manpage"), None);
        assert_eq!(doc("-p 22 manpage"), None);
        assert_eq!(doc("127.0.0.1 manpage"), None);
        assert_eq!(doc(""), None);
    }

    #[test]
    fn documents_are_generated() {
        command().debug_assert();
        let mut out = Vec::new();
        write_document(Document::Manpage, &mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH fastport"),
            "{man}"
        );
        let mut out = Vec::new();
        write_document(Document::Completions(clap_complete::Shell::Bash), &mut out).unwrap();
        let bash = String::from_utf8(out).unwrap();
        assert!(bash.contains("--output-all"));
        assert!(bash.contains("merge"), "completions offer merge");
    }

    /// The man page named fastport-completions(1) and fastport-manpage(1),
    /// pages that do not exist, and no command listed merge.
    #[test]
    fn man_page_lists_every_command_and_names_no_missing_page() {
        let mut out = Vec::new();
        write_document(Document::Manpage, &mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        assert!(
            !man.contains("fastport\\-merge(1)") && !man.contains("(1)\n"),
            "{man}"
        );
        for word in ["merge", "completions", "manpage"] {
            assert!(
                man.contains(&format!("\\fBfastport {word}\\fR")),
                "{word}: {man}"
            );
        }
        assert!(
            man.contains("\\-\\-output\\-json"),
            "merge's options: {man}"
        );
        let help = command().render_long_help().to_string();
        assert_has(&help, "fastport merge FILE...");
    }

    #[test]
    fn the_first_word_decides_the_mode() {
        assert!(matches!(mode(&argv("merge a.jsonl")), Ok(Mode::Merge(m)) if m.inputs.len() == 1));
        assert!(matches!(
            mode(&argv("manpage")),
            Ok(Mode::Document(Document::Manpage))
        ));
        assert!(matches!(mode(&argv("-p 22 127.0.0.1")), Ok(Mode::Scan(_))));
        assert!(matches!(mode(&argv("-- merge")), Ok(Mode::Scan(a)) if a.targets == ["merge"]));
        assert!(mode(&argv("merge")).is_err(), "merge needs files");
    }
}
