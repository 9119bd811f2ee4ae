//! The scanners the lab can run: how to find each, the command line that
//! points it at a world, and the parser for what it writes.
//!
//! | name                         | command                                                              | output                 |
//! |------------------------------|----------------------------------------------------------------------|------------------------|
//! | `fastport`, `fastport-ENGINE`| `fastport -n -p PORTS --show all -oJ FILE [--engine ENGINE] TARGETS` | JSON lines, every port |
//! | `floor`                      | `floor -p PORTS [--timeout-ms 0] TARGETS`                            | JSON lines, open only  |
//! | `floor-all`                  | the same with `--show all`                                           | JSON lines, every port |
//! | `nmap`                       | `nmap -sT -T5 -n -Pn --min-rate 50000 -p PORTS -oX FILE TARGETS`     | XML, every port        |
//! | `nmap-grep`                  | the same with `-oG FILE`                                             | greppable              |
//! | `rustscan`                   | `rustscan -b 4500 -t 1500 -g --no-config -a TARGETS -r/-p PORTS`     | `addr -> [ports]`, open only |
//!
//! Scenario `[args]` and the user's extra arguments go before the targets.

mod fastport_json;
mod nmap;
mod rustscan;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use fastport_json::parse as parse_fastport_json;
pub use nmap::{parse_grepable as parse_nmap_grepable, parse_xml as parse_nmap_xml};
pub use rustscan::parse as parse_rustscan;

use crate::score::{Coverage, Observation};
use crate::targets::PortSet;
use crate::world::World;

/// A scanner output that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the output, 0 when not known.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Which program a scanner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// FastPort, any engine.
    Fastport,
    /// The lab's syscall floor.
    Floor,
    /// nmap `-sT`.
    Nmap,
    /// RustScan.
    Rustscan,
}

impl Family {
    /// The name used for scenario `[args]` and binary lookup.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Fastport => "fastport",
            Family::Floor => "floor",
            Family::Nmap => "nmap",
            Family::Rustscan => "rustscan",
        }
    }
}

/// What a scanner writes and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// FastPort JSON lines, in the output file.
    FastportJson,
    /// FastPort JSON lines of open ports, on standard output (the floor).
    FloorOpen,
    /// FastPort JSON lines of every port, on standard output (`floor --show all`).
    FloorAll,
    /// nmap XML, in the output file.
    NmapXml,
    /// nmap greppable, in the output file.
    NmapGrepable,
    /// RustScan greppable, on standard output.
    RustscanGrepable,
}

/// A scanner by name, e.g. `fastport-threads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    /// The name reports use.
    pub name: String,
    /// The program.
    pub family: Family,
    /// Arguments the name implies (`--engine threads`).
    pub variant_args: Vec<String>,
    /// Its output.
    pub format: Format,
}

impl FromStr for Scanner {
    type Err = String;

    fn from_str(s: &str) -> Result<Scanner, String> {
        let (family, variant_args, format) = match s {
            "fastport" => (Family::Fastport, vec![], Format::FastportJson),
            "floor" => (Family::Floor, vec![], Format::FloorOpen),
            "floor-all" => (
                Family::Floor,
                vec!["--show".to_string(), "all".to_string()],
                Format::FloorAll,
            ),
            "nmap" => (Family::Nmap, vec![], Format::NmapXml),
            "nmap-grep" => (Family::Nmap, vec![], Format::NmapGrepable),
            "rustscan" => (Family::Rustscan, vec![], Format::RustscanGrepable),
            other => match other.strip_prefix("fastport-") {
                Some(engine) if !engine.is_empty() => (
                    Family::Fastport,
                    vec!["--engine".to_string(), engine.to_string()],
                    Format::FastportJson,
                ),
                _ => {
                    return Err(format!(
                        "unknown scanner {other:?} (fastport, fastport-ENGINE, floor, floor-all, nmap, nmap-grep, rustscan)"
                    ));
                }
            },
        };
        Ok(Scanner {
            name: s.to_string(),
            family,
            variant_args,
            format,
        })
    }
}

impl fmt::Display for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Where the lab looks for programs.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// FastPort, when given explicitly (`--fastport`).
    pub fastport: Option<PathBuf>,
    /// The floor (default: next to the running `fastport-lab`).
    pub floor: Option<PathBuf>,
}

/// Default FastPort binary, relative to the working directory.
pub const DEFAULT_FASTPORT: &str = "target/release/fastport";
/// Where the peers' install script puts RustScan (searched after `PATH`).
pub const PEERS_BIN: &str = "/opt/peers/bin";

/// Why a scanner cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Not installed: the scanner is skipped, which is not a failure.
    Skip(String),
    /// Asked for explicitly and not there: an error.
    Error(String),
}

fn find_in_path(program: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Scanner {
    /// What the output covers.
    pub fn coverage(&self) -> Coverage {
        match self.format {
            Format::FastportJson | Format::FloorAll | Format::NmapXml | Format::NmapGrepable => {
                Coverage::All
            }
            Format::FloorOpen | Format::RustscanGrepable => Coverage::OpenOnly,
        }
    }

    /// Finds the program.
    pub fn locate(&self, loc: &Locations) -> Result<PathBuf, Unavailable> {
        match self.family {
            Family::Fastport => match &loc.fastport {
                Some(p) if is_executable(p) => Ok(p.clone()),
                Some(p) => Err(Unavailable::Error(format!(
                    "no FastPort binary at {}",
                    p.display()
                ))),
                None => {
                    let p = PathBuf::from(DEFAULT_FASTPORT);
                    if is_executable(&p) {
                        Ok(p)
                    } else {
                        Err(Unavailable::Skip(format!(
                            "no FastPort binary at {DEFAULT_FASTPORT} (cargo build --release, or pass --fastport BIN)"
                        )))
                    }
                }
            },
            Family::Floor => {
                let p = match &loc.floor {
                    Some(p) => p.clone(),
                    None => std::env::current_exe()
                        .ok()
                        .and_then(|e| e.parent().map(|d| d.join("floor")))
                        .unwrap_or_else(|| PathBuf::from("floor")),
                };
                if is_executable(&p) {
                    Ok(p)
                } else {
                    Err(Unavailable::Error(format!(
                        "no floor binary at {} (cargo build -p fastport-lab --bins)",
                        p.display()
                    )))
                }
            }
            Family::Nmap => find_in_path("nmap", &[])
                .ok_or_else(|| Unavailable::Skip("nmap is not installed".into())),
            Family::Rustscan => find_in_path("rustscan", &[PEERS_BIN]).ok_or_else(|| {
                Unavailable::Skip(
                    "rustscan is not installed (not on PATH nor in the peers' bin directory)"
                        .into(),
                )
            }),
        }
    }

    /// The arguments that scan `world`, writing to `out` where the format is
    /// a file. `extra` (scenario `[args]` then the user's) come before the targets.
    pub fn args(&self, world: &World, out: &Path, extra: &[String]) -> Vec<OsString> {
        let ports = world.truth.ports.to_string();
        let targets = world.targets();
        let mut a: Vec<OsString> = Vec::new();
        let push =
            |a: &mut Vec<OsString>, items: &[&str]| a.extend(items.iter().map(OsString::from));
        match self.family {
            Family::Fastport => {
                push(&mut a, &["-n", "-p", &ports, "--show", "all", "-oJ"]);
                a.push(out.into());
            }
            Family::Floor => {
                push(&mut a, &["-p", &ports]);
                if !world.truth.has_silent_probes() {
                    // Nothing can hang: skip the setsockopt per probe.
                    push(&mut a, &["--timeout-ms", "0"]);
                }
            }
            Family::Nmap => {
                push(
                    &mut a,
                    &[
                        "-sT",
                        "-T5",
                        "-n",
                        "-Pn",
                        "--min-rate",
                        "50000",
                        "-p",
                        &ports,
                    ],
                );
                a.push(
                    if self.format == Format::NmapGrepable {
                        "-oG"
                    } else {
                        "-oX"
                    }
                    .into(),
                );
                a.push(out.into());
            }
            Family::Rustscan => {
                push(
                    &mut a,
                    &["-b", "4500", "-t", "1500", "-g", "--no-config", "-a"],
                );
                a.push(targets.join(",").into());
                a.extend(
                    rustscan_ports(&world.truth.ports)
                        .into_iter()
                        .map(OsString::from),
                );
            }
        }
        a.extend(self.variant_args.iter().map(OsString::from));
        a.extend(extra.iter().map(OsString::from));
        if self.family != Family::Rustscan {
            a.extend(targets.into_iter().map(OsString::from));
        }
        a
    }

    /// Parses the scanner's output (`text` is the output file, or standard
    /// output for formats written there). `ports` are the scanned ports, which
    /// greppable nmap output needs to expand its "Ignored State".
    pub fn parse(&self, text: &str, ports: &PortSet) -> Result<Vec<Observation>, ParseError> {
        match self.format {
            Format::FastportJson | Format::FloorOpen | Format::FloorAll => {
                parse_fastport_json(text)
            }
            Format::NmapXml => parse_nmap_xml(text),
            Format::NmapGrepable => parse_nmap_grepable(text, ports),
            Format::RustscanGrepable => parse_rustscan(text),
        }
    }

    /// Whether the parsed output comes from standard output rather than a file.
    pub fn reads_stdout(&self) -> bool {
        matches!(
            self.format,
            Format::FloorOpen | Format::FloorAll | Format::RustscanGrepable
        )
    }
}

/// RustScan takes one range (`-r A-B`) or a list (`-p A,B,C`), not both.
fn rustscan_ports(ports: &PortSet) -> Vec<String> {
    match ports.ranges() {
        [r] if r.start() != r.end() => vec!["-r".into(), format!("{}-{}", r.start(), r.end())],
        _ => {
            let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            vec!["-p".into(), list.join(",")]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{FULL, Scenario};

    fn world() -> World {
        let s = Scenario::parse(
            r#"name = "t"
               hosts = ["127.0.0.0/31", "127.0.0.9"]
               ports = "1-5,80""#,
            FULL,
            "t",
        )
        .unwrap();
        World::build(&s, 0).unwrap()
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn names_map_to_families_and_engines() {
        let s: Scanner = "fastport-threads".parse().unwrap();
        assert_eq!(s.family, Family::Fastport);
        assert_eq!(s.variant_args, ["--engine", "threads"]);
        assert_eq!(
            "nmap-grep".parse::<Scanner>().unwrap().format,
            Format::NmapGrepable
        );
        assert!("zmap".parse::<Scanner>().is_err());
        assert_eq!(
            "rustscan".parse::<Scanner>().unwrap().coverage(),
            Coverage::OpenOnly
        );
    }

    #[test]
    fn command_lines_follow_each_scanners_syntax() {
        let w = world();
        let out = Path::new("/tmp/o");
        let fp = strings("fastport-mio".parse::<Scanner>().unwrap().args(
            &w,
            out,
            &["--retries".into(), "0".into()],
        ));
        assert_eq!(
            fp,
            [
                "-n",
                "-p",
                "1-5,80",
                "--show",
                "all",
                "-oJ",
                "/tmp/o",
                "--engine",
                "mio",
                "--retries",
                "0",
                "127.0.0.0/31",
                "127.0.0.9"
            ]
        );
        let nm = strings("nmap".parse::<Scanner>().unwrap().args(&w, out, &[]));
        assert_eq!(
            nm,
            [
                "-sT",
                "-T5",
                "-n",
                "-Pn",
                "--min-rate",
                "50000",
                "-p",
                "1-5,80",
                "-oX",
                "/tmp/o",
                "127.0.0.0/31",
                "127.0.0.9"
            ]
        );
        let rs = strings("rustscan".parse::<Scanner>().unwrap().args(&w, out, &[]));
        assert_eq!(
            rs,
            [
                "-b",
                "4500",
                "-t",
                "1500",
                "-g",
                "--no-config",
                "-a",
                "127.0.0.0/31,127.0.0.9",
                "-p",
                "1,2,3,4,5,80"
            ]
        );
        let fl = strings("floor".parse::<Scanner>().unwrap().args(&w, out, &[]));
        assert_eq!(
            fl,
            [
                "-p",
                "1-5,80",
                "--timeout-ms",
                "0",
                "127.0.0.0/31",
                "127.0.0.9"
            ]
        );
        assert_eq!(
            rustscan_ports(&"1-65535".parse().unwrap()),
            ["-r", "1-65535"]
        );
    }
}
