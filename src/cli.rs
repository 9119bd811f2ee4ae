//! The command line as typed: clap's derive of every flag, close to the
//! words the user wrote. Nothing here is validated beyond its type;
//! [`crate::config`] turns these raw flags into a checked
//! [`crate::config::ScanConfig`] (ripgrep's low-level/high-level split).
//!
//! nmap users type `-iL`, `-oN`, `-p-`: single-dash words clap cannot
//! declare. [`normalize_args`] rewrites them to their long spellings before
//! clap sees them, so both spellings work and `--help` shows both.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// FastPort: a fast TCP connect port scanner (one non-blocking event loop per core).
///
/// With no arguments it scans localhost ports 1-1024 and prints each open port.
#[derive(Debug, Clone, Parser)]
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

    /// How long one attempt waits for an answer: 500ms, 2s, 1m; a bare number is milliseconds.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        help_heading = "Timing"
    )]
    pub timeout: String,

    /// Extra attempts for a port that did not answer.
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Timing")]
    pub retries: u32,

    /// Probes in flight, all threads together. Default: derived from the open-file limit.
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub concurrency: Option<usize>,

    /// Worker threads, each running one event loop. Default: the number of cores.
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub threads: Option<usize>,

    /// Write the human-readable text to FILE (`-` for stdout). Also -oN.
    #[arg(long = "output-normal", value_name = "FILE", help_heading = "Output")]
    pub output_normal: Option<PathBuf>,

    /// Write JSON lines to FILE (`-` for stdout). Also -oJ.
    #[arg(long = "output-json", value_name = "FILE", help_heading = "Output")]
    pub output_json: Option<PathBuf>,

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

const AFTER_HELP: &str = "\
nmap spellings also work: -iL FILE, -oN FILE, -oJ FILE, -p- (all ports).

Examples:
  fastport                                 localhost, ports 1-1024
  fastport -p- 127.0.0.1                   every port of one host
  fastport -p 22,80,443 10.0.0.0/24        three ports on a /24
  fastport --top-ports 100 -oJ out.jsonl example.org
  fastport -p- --show all --reason -oJ - 127.0.0.1 | jq .";

/// nmap's single-dash words and the long flags they stand for.
const NMAP_SPELLINGS: &[(&str, &str)] = &[
    ("-iL", "--input-list"),
    ("-oN", "--output-normal"),
    ("-oJ", "--output-json"),
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
        assert_eq!(a.timeout, "1s");
        assert_eq!(a.retries, 1);
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
    fn arguments_after_double_dash_are_kept() {
        let argv = normalize_args(["fastport", "--", "-p-"].map(OsString::from));
        assert_eq!(argv[2], OsString::from("-p-"));
    }
}
