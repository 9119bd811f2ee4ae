//! The command line as typed: clap's derive of every flag, close to the
//! words the user wrote. Nothing here is validated beyond its type;
//! [`crate::config`] turns these raw flags into a checked
//! [`crate::config::ScanConfig`] (ripgrep's low-level/high-level split).
//!
//! nmap users type `-iL`, `-oN`, `-p-`: single-dash words clap cannot
//! declare. [`normalize_args`] rewrites them to their long spellings before
//! clap sees them, so both spellings work and `--help` shows both.
//!
//! Two first words ask for a document instead of a scan ([`document_request`]):
//! `fastport completions SHELL` and `fastport manpage`, both generated from
//! this very definition.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// FastPort: a fast TCP connect port scanner (one non-blocking event loop per core).
///
/// With no arguments it scans localhost ports 1-1024 and prints each open port.
// Serde: a resume file records every option (see `crate::resume`).
#[derive(Debug, Clone, Parser, serde::Serialize, serde::Deserialize)]
#[command(name = "fastport", version, about, long_about = None)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Targets: addresses, CIDR blocks (10.0.0.0/24), ranges (10.0.0.1-20,
    /// 10.0.0.1-10.0.1.5) or hostnames. Default: localhost.
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

    /// Never resolve hostnames.
    #[arg(short = 'n', help_heading = "Targets")]
    pub no_resolve: bool,

    /// Ports: 22,80,1000-2000; `-p-` for 1-65535. Default: 1-1024.
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "SPEC",
        help_heading = "Ports"
    )]
    pub ports: Option<String>,

    /// Scan the N ports most often found open (nmap's frequency table).
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
    /// template's, 10 for -T3), which retries only as often as the host has
    /// shown it needs. Also --max-retries.
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
    #[arg(long, value_enum, default_value_t = EngineArg::Mio, help_heading = "Timing")]
    pub engine: EngineArg,

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

    /// Probe order: `random`, a seeded permutation of hosts × ports that
    /// spreads the load over hosts (default), or `sequential`, each host's
    /// ports in turn.
    #[arg(long, value_enum, default_value_t = OrderArg::Random, help_heading = "Scan order")]
    pub order: OrderArg,

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

    /// Add the reason (syn-ack, conn-refused, ...) and latency to the text output.
    #[arg(long, help_heading = "Output")]
    pub reason: bool,

    /// Write the run summary as JSON to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub stats: Option<PathBuf>,
}

/// `fastport merge`: join shards' results and summaries into one.
#[derive(Debug, Clone, Parser)]
#[command(name = "fastport merge", version)]
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

/// `--engine` values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum EngineArg {
    /// One mio event loop per worker thread.
    Mio,
    /// One blocking OS thread per probe in flight.
    Threads,
}

/// `--order` values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum OrderArg {
    /// A seeded random permutation of host blocks and of the probes within each.
    Random,
    /// Address by address, port by port.
    Sequential,
}

const AFTER_HELP: &str = "\
nmap spellings also work: -iL FILE, -oN FILE, -oJ FILE, -oX FILE, -oG FILE,
-oC FILE, -oA BASENAME, -p- (all ports).

Examples:
  fastport                                 localhost, ports 1-1024
  fastport -p- 127.0.0.1                   every port of one host
  fastport -p 22,80,443 10.0.0.0/24        three ports on a /24
  fastport --top-ports 100 -oJ out.jsonl example.org
  fastport -p- --show all --reason -oJ - 127.0.0.1 | jq .
  fastport -oA scan 10.0.0.0/24            scan.txt, .xml, .gnmap and .jsonl
  fastport completions bash                also zsh, fish, elvish, powershell
  fastport manpage | man -l -              this help as a manual page";

/// nmap's single-dash words and the long flags they stand for.
const NMAP_SPELLINGS: &[(&str, &str)] = &[
    ("-iL", "--input-list"),
    ("-oN", "--output-normal"),
    ("-oJ", "--output-json"),
    ("-oX", "--output-xml"),
    ("-oG", "--output-grepable"),
    ("-oC", "--output-csv"),
    ("-oA", "--output-all"),
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
pub fn parse_from<I>(args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = OsString>,
{
    Args::try_parse_from(normalize_args(args))
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
        Document::Manpage => clap_mangen::Man::new(cmd).render(out),
    }
}

/// The whole command line interface: the scan's flags, and the document
/// words as subcommands so completions and the man page show them.
pub fn command() -> clap::Command {
    Args::command()
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

    fn parse(line: &str) -> Args {
        let argv = std::iter::once("fastport")
            .chain(line.split_whitespace())
            .map(OsString::from);
        parse_from(argv).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

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
        let a = parse("-p- -iL hosts.txt -oN out.txt -oJ - 10.0.0.1");
        assert_eq!(a.ports.as_deref(), Some("-"));
        assert_eq!(a.input_list, Some(PathBuf::from("hosts.txt")));
        assert_eq!(a.output_normal, Some(PathBuf::from("out.txt")));
        assert_eq!(a.output_json, Some(PathBuf::from("-")));
        assert_eq!(a.targets, ["10.0.0.1"]);
        let b = parse("-oJout.jsonl -p 22,80 -n");
        assert_eq!(b.output_json, Some(PathBuf::from("out.jsonl")));
        assert_eq!(b.ports.as_deref(), Some("22,80"));
        assert!(b.no_resolve);
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
        let argv = |line: &str| -> Vec<OsString> {
            std::iter::once("fastport")
                .chain(line.split_whitespace())
                .map(OsString::from)
                .collect()
        };
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
        assert!(String::from_utf8(out).unwrap().contains("--output-all"));
    }
}
