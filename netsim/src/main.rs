//! `fastport-netsim`: the simulated network's command line. Flags are parsed
//! by clap into raw [`Args`], then turned once into a [`Model`] and
//! [`Options`]; `main` maps errors to exit codes.

use std::ffi::OsString;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Parser, Subcommand};
use fastport_netsim::{
    Model, ModelConfig, NetConfig, NetsimError, Options, Preset, SKIP_EXIT, Stop, TIMEOUT_EXIT,
    netns,
};

/// A simulated network of remote hosts (latency, loss, ICMP) behind a TUN
/// device in a private network namespace, for measuring FastPort.
#[derive(Debug, Parser)]
#[command(name = "fastport-netsim", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run COMMAND against the simulated network, inside a private network
    /// namespace, then print what the simulator injected. In COMMAND's
    /// arguments, {hosts} and {ports} stand for the simulated hosts and ports.
    Run(RunArgs),
    /// Print the ground truth of every host × port as JSON lines, in
    /// FastPort's shape.
    Truth(ModelArgs),
    /// Print a built-in profile as TOML, to start a custom one from.
    Profile {
        /// internet-like, far or lossy.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// A built-in profile (internet-like, far, lossy) or a TOML file.
    #[arg(long, default_value = "internet-like")]
    profile: String,
    /// The seed: the same seed gives the same network.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The simulated hosts instead of the profile's (a CIDR inside 198.18.0.0/15).
    #[arg(long, value_name = "CIDR")]
    hosts: Option<String>,
    /// The ports instead of the profile's: 22,80,8000-8100, top100 or -.
    #[arg(long, value_name = "SPEC")]
    ports: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Write what was injected as JSON to FILE on exit.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Include every SYN, its fate and timing in the record (large for big scans).
    #[arg(long, requires = "record")]
    record_log: bool,
    /// Stop (and kill COMMAND) after this long: 90s, 500ms, 2m; a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    max_time: String,
    /// SYNs per target for the oracle's bounds and accuracy in the summary
    /// and record (0: no oracle).
    #[arg(long, value_name = "K", default_value_t = fastport_netsim::sim::DEFAULT_ORACLE_TRIES)]
    oracle_tries: u32,
    /// The TUN device's name.
    #[arg(long, value_name = "NAME", default_value = "fpsim0")]
    device: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

impl ModelArgs {
    fn model(&self) -> Result<Model, NetsimError> {
        let mut config = ModelConfig::load(&self.profile)?;
        if let Some(h) = &self.hosts {
            config.hosts = h.parse()?;
        }
        if let Some(p) = &self.ports {
            config.ports = p.parse()?;
        }
        Ok(Model::new(config, self.seed)?)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}: expected a number and a unit (500ms, 90s, 2m)")
    })?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {unit:?} (ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Run(run) => cmd_run(&run),
        Cmd::Truth(model) => cmd_truth(&model),
        Cmd::Profile { name } => match Preset::from_name(&name) {
            Some(p) => {
                print!("{}", p.config().to_toml());
                Ok(0)
            }
            None => Err(format!(
                "unknown profile {name:?}: internet-like, far or lossy"
            )),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("fastport-netsim: {message}");
            ExitCode::from(1)
        }
    }
}

fn cmd_truth(args: &ModelArgs) -> Result<u8, String> {
    let model = args.model().map_err(|e| e.to_string())?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = (|| -> io::Result<()> {
        for t in model.truth() {
            serde_json::to_writer(&mut out, &t)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    })();
    match written {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(format!("writing the truth: {e}")),
    }
}

fn cmd_run(args: &RunArgs) -> Result<u8, String> {
    // Validate everything before making a namespace, so mistakes fail fast.
    let model = args.model.model().map_err(|e| e.to_string())?;
    let max_time = parse_duration(&args.max_time)?;
    let net = NetConfig {
        device: args.device.clone(),
        ..NetConfig::default()
    };
    if model.config().hosts.contains(net.source) {
        return Err(format!(
            "the hosts {} include {}, the scanner's own source address: \
             use a smaller block (198.18.0.0/16 is the largest that avoids it)",
            model.config().hosts,
            net.source
        ));
    }
    if !netns::inside() {
        if let Err(why) = netns::probe() {
            if netns::under_ci() {
                return Err(format!(
                    "cannot make a network namespace with a TUN device: {why}"
                ));
            }
            eprintln!(
                "fastport-netsim: skipped: cannot make a network namespace with a TUN device: {why}"
            );
            return Ok(SKIP_EXIT as u8);
        }
        let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
        let status = netns::reexec(&argv).map_err(|e| e.to_string())?;
        return Ok(exit_code(status));
    }
    let options = Options {
        net,
        log: args.record_log,
        max_time,
        oracle_tries: args.oracle_tries,
    };
    let hosts = model.config().hosts.to_string();
    let ports = model.config().ports.to_string();
    let argv: Vec<OsString> = args
        .command
        .iter()
        .map(|a| match a.to_str() {
            Some(s) => s
                .replace("{hosts}", &hosts)
                .replace("{ports}", &ports)
                .into(),
            None => a.clone(),
        })
        .collect();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let outcome =
        fastport_netsim::run_command(model, &options, &mut command).map_err(|e| e.to_string())?;
    if let Some(path) = &args.record {
        let json = serde_json::to_string_pretty(&outcome.record).expect("a record serializes");
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("writing the record to {}: {e}", path.display()))?;
    }
    eprintln!("{}", outcome.record.summary());
    if outcome.stop == Stop::MaxTime {
        eprintln!(
            "fastport-netsim: --max-time {} ran out: the command was killed",
            args.max_time
        );
        return Ok(TIMEOUT_EXIT as u8);
    }
    Ok(exit_code(outcome.status))
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
