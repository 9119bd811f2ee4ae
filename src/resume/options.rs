//! The scan's options as a resume file keeps them: one typed serde struct,
//! [`ScanOptions`], written by [`ScanOptions::of`] and read back by
//! [`ScanOptions::into_args`], never clap's `Args` as a file format.
//!
//! Both conversions name every field of `Args` (no `..`): a flag added to
//! the command line does not compile until this file says how a resume
//! keeps it. Engine and order are enums; the outputs are a list of
//! `(format, path)` with absolute paths (a resume may run elsewhere).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::Args;
use crate::config::{Dest, OutputPlan};
use crate::engine::EngineKind;
use crate::order::OrderKind;
use crate::output::Format;

/// Every option of an interrupted scan, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanOptions {
    pub targets: TargetOptions,
    pub ports: PortOptions,
    pub timing: TimingOptions,
    pub engine: EngineKind,
    pub order: OrderKind,
    /// The seed the run drew or was given: the resumed run's order.
    pub seed: u64,
    /// `--shard K/N`, resolved (`auto` is not kept: its K/N is).
    pub shard: Option<String>,
    /// Where results go, by format, each once.
    pub outputs: Vec<SavedOutput>,
    pub report: ReportOptions,
    /// nmap flags accepted and ignored (they only earn a note with `-v`).
    pub nmap: NmapOptions,
    pub services: ServiceOptions,
}

/// What is scanned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOptions {
    pub operands: Vec<String>,
    pub input_list: Option<PathBuf>,
    pub exclude: Vec<String>,
    pub exclude_file: Option<PathBuf>,
    /// False with `--no-resolve`.
    pub resolve: bool,
    pub resolve_first: bool,
}

/// Which ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortOptions {
    pub ports: Option<String>,
    pub top_ports: Option<usize>,
    /// `-F`.
    pub fast: bool,
    pub exclude_ports: Option<String>,
}

/// How fast and how patiently, as typed (durations in their words).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingOptions {
    /// `-T`.
    pub template: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub initial_rtt_timeout: Option<String>,
    pub min_rtt_timeout: Option<String>,
    pub max_rtt_timeout: Option<String>,
    pub concurrency: Option<usize>,
    pub threads: Option<usize>,
    pub rate: Option<f64>,
    pub min_rate: Option<f64>,
    pub scan_delay: Option<String>,
    pub max_scan_delay: Option<String>,
    /// `--ignore-conntrack`.
    #[serde(default)]
    pub ignore_conntrack: bool,
}

/// What the outputs show, and the status lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    pub show: String,
    pub open: bool,
    pub reason: bool,
    pub verbose: u8,
    pub quiet: bool,
    pub stats_every: Option<String>,
    pub trace_sample: Option<f64>,
}

/// nmap's flags that FastPort accepts for muscle memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmapOptions {
    /// `-n`.
    pub no_dns: bool,
    /// `-P`.
    pub ping: Option<String>,
    /// `-s`.
    pub scan_type: Option<String>,
}

/// The service-detection flags (`-sV`, `--version-intensity`,
/// `--banners`, `--service-probes`): a resumed run detects services as the
/// interrupted one did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOptions {
    pub version: bool,
    pub intensity: Option<u8>,
    pub banners: bool,
    pub probes: Option<PathBuf>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOutput {
    pub format: Format,
    /// Absolute, or `-` for standard output.
    pub path: PathBuf,
}

fn absolute(path: &Path) -> PathBuf {
    if path == Path::new("-") {
        return path.to_path_buf();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn dest_path(dest: Option<&Dest>) -> Option<PathBuf> {
    match dest? {
        Dest::Stdout => Some(PathBuf::from("-")),
        Dest::File(p) => Some(absolute(p)),
    }
}

impl ScanOptions {
    /// The options of a run of `args` (as resolved: seed drawn, shard
    /// fixed) whose outputs are `plan`: `-oA` spelled out, paths absolute.
    pub fn of(args: &Args, seed: u64, plan: &OutputPlan) -> ScanOptions {
        let Args {
            targets,
            input_list,
            exclude,
            exclude_file,
            no_resolve,
            resolve_first,
            nmap_no_dns,
            ping,
            scan_type,
            fast,
            ports,
            top_ports,
            exclude_ports,
            timeout,
            retries,
            timing,
            initial_rtt_timeout,
            min_rtt_timeout,
            max_rtt_timeout,
            concurrency,
            engine,
            threads,
            rate,
            min_rate,
            scan_delay,
            max_scan_delay,
            ignore_conntrack,
            order,
            seed: _,
            shard,
            resume: _,
            // The outputs are taken from the plan (-oA expanded there).
            output_normal: _,
            output_json: _,
            output_xml: _,
            output_grepable: _,
            output_csv: _,
            output_list,
            output_all: _,
            stats_every,
            show,
            open,
            verbose,
            quiet,
            reason,
            stats: _,
            trace,
            trace_sample,
            service_version,
            version_intensity,
            banners,
            service_probes,
        } = args.clone();
        let normal = plan.text.iter().find(|d| matches!(d, Dest::File(_)));
        let mut outputs: Vec<SavedOutput> = [
            (Format::Text, dest_path(normal)),
            (Format::Json, dest_path(plan.json.as_ref())),
            (Format::Xml, dest_path(plan.xml.as_ref())),
            (Format::Grepable, dest_path(plan.grepable.as_ref())),
            (Format::Csv, dest_path(plan.csv.as_ref())),
            (Format::List, output_list.as_deref().map(absolute)),
            (Format::Stats, dest_path(plan.stats.as_ref())),
            (Format::Trace, trace.as_deref().map(absolute)),
        ]
        .into_iter()
        .filter_map(|(format, path)| {
            Some(SavedOutput {
                format,
                path: path?,
            })
        })
        .collect();
        outputs.sort_by_key(|o| o.format);
        ScanOptions {
            targets: TargetOptions {
                operands: targets,
                input_list: input_list.as_deref().map(absolute),
                exclude,
                exclude_file: exclude_file.as_deref().map(absolute),
                resolve: !no_resolve,
                resolve_first,
            },
            ports: PortOptions {
                ports,
                top_ports,
                fast,
                exclude_ports,
            },
            timing: TimingOptions {
                template: timing,
                timeout,
                retries,
                initial_rtt_timeout,
                min_rtt_timeout,
                max_rtt_timeout,
                concurrency,
                threads,
                rate,
                min_rate,
                scan_delay,
                max_scan_delay,
                ignore_conntrack,
            },
            engine,
            order,
            seed,
            shard,
            outputs,
            report: ReportOptions {
                show,
                open,
                reason,
                verbose,
                quiet,
                stats_every,
                trace_sample,
            },
            nmap: NmapOptions {
                no_dns: nmap_no_dns,
                ping,
                scan_type,
            },
            services: ServiceOptions {
                version: service_version,
                intensity: version_intensity,
                banners,
                probes: service_probes,
            },
        }
    }

    /// The output of `format`, if the run wrote one.
    pub fn output(&self, format: Format) -> Option<&Path> {
        self.outputs
            .iter()
            .find(|o| o.format == format)
            .map(|o| o.path.as_path())
    }

    /// The command line of the resumed run: these options, its seed, no
    /// `--resume`.
    pub fn into_args(self) -> Args {
        let output = |format| self.output(format).map(Path::to_path_buf);
        Args {
            output_normal: output(Format::Text),
            output_json: output(Format::Json),
            output_xml: output(Format::Xml),
            output_grepable: output(Format::Grepable),
            output_csv: output(Format::Csv),
            output_list: output(Format::List),
            stats: output(Format::Stats),
            trace: output(Format::Trace),
            output_all: None,
            targets: self.targets.operands,
            input_list: self.targets.input_list,
            exclude: self.targets.exclude,
            exclude_file: self.targets.exclude_file,
            no_resolve: !self.targets.resolve,
            resolve_first: self.targets.resolve_first,
            nmap_no_dns: self.nmap.no_dns,
            ping: self.nmap.ping,
            scan_type: self.nmap.scan_type,
            fast: self.ports.fast,
            ports: self.ports.ports,
            top_ports: self.ports.top_ports,
            exclude_ports: self.ports.exclude_ports,
            timeout: self.timing.timeout,
            retries: self.timing.retries,
            timing: self.timing.template,
            initial_rtt_timeout: self.timing.initial_rtt_timeout,
            min_rtt_timeout: self.timing.min_rtt_timeout,
            max_rtt_timeout: self.timing.max_rtt_timeout,
            concurrency: self.timing.concurrency,
            engine: self.engine,
            threads: self.timing.threads,
            rate: self.timing.rate,
            min_rate: self.timing.min_rate,
            scan_delay: self.timing.scan_delay,
            max_scan_delay: self.timing.max_scan_delay,
            ignore_conntrack: self.timing.ignore_conntrack,
            order: self.order,
            seed: Some(self.seed),
            shard: self.shard,
            resume: None,
            stats_every: self.report.stats_every,
            show: self.report.show,
            open: self.report.open,
            verbose: self.report.verbose,
            quiet: self.report.quiet,
            reason: self.report.reason,
            trace_sample: self.report.trace_sample,
            service_version: self.services.version,
            version_intensity: self.services.intensity,
            banners: self.services.banners,
            service_probes: self.services.probes,
        }
    }
}
