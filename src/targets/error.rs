//! The one error type of target and port parsing.
//!
//! Like globset's `Error`, a [`TargetError`] keeps what the user typed (the
//! offending token), where it came from (an operand, a flag's value, a line of
//! a list file) and a [`TargetErrorKind`]; its `Display` is one line that
//! quotes the token, so `main` can print it as is.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A target, exclude or port specification the scanner cannot use.
#[derive(Debug)]
pub struct TargetError {
    // Boxed: parsers return `Result<_, TargetError>` on hot paths, and the
    // error is rare.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: TargetErrorKind,
    token: String,
    origin: Origin,
}

/// What is wrong with the token.
#[derive(Debug)]
#[non_exhaustive]
pub enum TargetErrorKind {
    /// Not an address, range, CIDR block or hostname.
    InvalidTarget,
    /// A CIDR block whose prefix length is not a number up to `max_prefix`.
    InvalidCidr {
        /// 32 for IPv4, 128 for IPv6.
        max_prefix: u8,
    },
    /// A range whose start lies above its end (`20-10`).
    ReversedRange,
    /// An address range with an IPv4 and an IPv6 end.
    MixedFamilies,
    /// An nmap octet-range target that expands into too many disjoint pieces.
    TooManyPieces,
    /// A hostname while name resolution is disabled (`-n`).
    HostnameNotAllowed,
    /// The system resolver knows no address for the hostname.
    Unresolvable(Option<io::Error>),
    /// A port number outside 1-65535.
    InvalidPort,
    /// A port item that is neither a number nor a range.
    InvalidPortSyntax,
    /// A port item for another protocol (`U:53`); FastPort scans TCP only.
    NotTcp,
    /// An empty item in a comma-separated list (`22,,80`).
    EmptyItem,
    /// Both `-p` and `--top-ports`.
    PortsAndTopPorts,
    /// `--top-ports 0`.
    InvalidTopPorts,
    /// `--top-ports N` beyond the ports the ranking in use ranks.
    TopPortsBeyondTable {
        /// How many ports the table ranks.
        table: usize,
    },
    /// An IPv6 address with a zone (`fe80::1%lo`).
    ZoneId,
    /// An IPv4 address in hex, octal or shortened form (`0x7f.0.0.1`),
    /// which tools and resolvers read differently.
    NotDottedDecimal,
    /// A list file holding binary data (a NUL byte), such as `/dev/zero`.
    NotText,
    /// `--exclude-ports` removed every port.
    NoPorts,
    /// No address is left to scan.
    NothingToScan {
        /// True when targets were given and the excludes removed all of them.
        all_excluded: bool,
    },
    /// More probes than a `u64` counts (or, for a scan that may be cut
    /// into segments, than 2¹²⁷).
    TooLarge {
        /// Number of addresses, `None` when even a `u128` cannot count them.
        hosts: Option<u128>,
        /// Number of ports per address.
        ports: usize,
        /// The limit is the segmented scan's, 2¹²⁷ probes, not 2⁶⁴.
        segmented: bool,
    },
    /// A list file (`-iL`, `--exclude-file`) could not be opened or read.
    Read(io::Error),
}

/// Where an offending token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A target operand on the command line (or no particular place).
    Operand,
    /// The value of a flag, such as `-p 22,70000`.
    Flag {
        /// The flag as the user writes it: `-p`, `--exclude`.
        flag: &'static str,
        /// The whole value given to the flag.
        value: String,
    },
    /// A line of a list file; `-` as path means standard input.
    File {
        /// `-iL` or `--exclude-file`.
        flag: &'static str,
        /// The path as given.
        path: PathBuf,
        /// 1-based line number, 0 when the file could not be opened.
        line: u64,
    },
}

impl TargetError {
    pub(crate) fn new(kind: TargetErrorKind, token: impl Into<String>) -> Self {
        TargetError {
            inner: Box::new(Inner {
                kind,
                token: token.into(),
                origin: Origin::Operand,
            }),
        }
    }

    /// Records where the token came from, unless a more precise origin is set.
    pub(crate) fn with_origin(mut self, origin: impl FnOnce() -> Origin) -> Self {
        if self.inner.origin == Origin::Operand {
            self.inner.origin = origin();
        }
        self
    }

    pub(crate) fn in_flag(self, flag: &'static str, value: &str) -> Self {
        self.with_origin(|| Origin::Flag {
            flag,
            value: value.to_owned(),
        })
    }

    pub(crate) fn in_file(self, flag: &'static str, path: &Path, line: u64) -> Self {
        self.with_origin(|| Origin::File {
            flag,
            path: path.to_owned(),
            line,
        })
    }

    /// What is wrong.
    pub fn kind(&self) -> &TargetErrorKind {
        &self.inner.kind
    }

    /// The offending text as the user typed it (empty for errors about the
    /// whole scan, such as [`TargetErrorKind::NothingToScan`]).
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Where the token came from.
    pub fn origin(&self) -> &Origin {
        &self.inner.origin
    }

    /// The 1-based line of the list file the token is on, if it came from one.
    pub fn line(&self) -> Option<u64> {
        match self.inner.origin {
            Origin::File { line, .. } if line > 0 => Some(line),
            _ => None,
        }
    }
}

impl std::error::Error for TargetError {}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TargetErrorKind as K;
        let Inner {
            kind,
            token,
            origin,
        } = &*self.inner;
        let at = OriginSuffix(origin);
        match kind {
            K::InvalidTarget => write!(f, "invalid target {token:?}{at}"),
            K::InvalidCidr { max_prefix } => write!(
                f,
                "invalid CIDR {token:?}{at}: prefix length must be 0-{max_prefix}"
            ),
            K::ReversedRange => write!(f, "reversed range {token:?}{at}: start is above end"),
            K::MixedFamilies => write!(f, "invalid range {token:?}{at}: mixes IPv4 and IPv6"),
            K::TooManyPieces => write!(
                f,
                "invalid target {token:?}{at}: expands to too many separate ranges"
            ),
            K::HostnameNotAllowed => {
                write!(f, "cannot use hostname {token:?}{at} with --no-resolve")
            }
            K::Unresolvable(None) => write!(f, "cannot resolve hostname {token:?}{at}"),
            K::Unresolvable(Some(e)) => {
                let reason = io_reason(e);
                // std prefixes getaddrinfo's message with this; it adds nothing here.
                let reason = reason
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&reason);
                write!(f, "cannot resolve hostname {token:?}{at}: {reason}")
            }
            K::InvalidPort => write!(f, "invalid port {token:?}{at}: ports are 1-65535"),
            K::InvalidPortSyntax => write!(
                f,
                "invalid port {token:?}{at}: expected a port or a range like 1000-2000"
            ),
            K::NotTcp => write!(
                f,
                "invalid port {token:?}{at}: FastPort scans TCP ports only"
            ),
            K::EmptyItem => match origin {
                Origin::Flag { flag, value } => {
                    write!(f, "empty item in \"{flag} {}\"", value.escape_debug())
                }
                _ => write!(f, "empty item{at}"),
            },
            K::PortsAndTopPorts => write!(f, "-p and --top-ports cannot be used together"),
            K::InvalidTopPorts => write!(f, "invalid --top-ports {token:?}: must be at least 1"),
            K::TopPortsBeyondTable { table } => write!(
                f,
                "--top-ports {token}: the port ranking ranks only {table} ports; give at most {table}, or -p- for every port"
            ),
            K::ZoneId => write!(
                f,
                "invalid target {token:?}{at}: IPv6 zone (scope) IDs such as %eth0 are not supported; give the address without it"
            ),
            K::NotDottedDecimal => write!(
                f,
                "invalid target {token:?}{at}: write IPv4 addresses in dotted decimal (hex, octal and shortened forms are read differently by different tools)"
            ),
            K::NotText => write!(
                f,
                "not a list of targets{at}: it holds binary data (a NUL byte)"
            ),
            K::NoPorts => write!(f, "no ports left to scan after --exclude-ports {token:?}"),
            K::NothingToScan { all_excluded: true } => {
                write!(f, "nothing to scan: every target address is excluded")
            }
            K::NothingToScan {
                all_excluded: false,
            } => write!(f, "nothing to scan: no target addresses given"),
            K::TooLarge {
                hosts,
                ports,
                segmented,
            } => {
                let s = if *ports == 1 { "" } else { "s" };
                match hosts {
                    Some(h) => write!(f, "scan too large: {h} addresses")?,
                    None => write!(f, "scan too large: at least 2^128 addresses")?,
                }
                if *segmented {
                    write!(
                        f,
                        " x {ports} port{s} is more than the 2^127 probes a scan may hold"
                    )
                } else {
                    write!(f, " x {ports} port{s} is more than 2^64 probes")
                }
            }
            K::Read(e) => match origin {
                Origin::File { flag, path, line } => {
                    write!(f, "cannot read {flag} {}", FileName(path))?;
                    if *line > 0 {
                        write!(f, " at line {line}")?;
                    }
                    write!(f, ": {}", io_reason(e))
                }
                _ => write!(f, "cannot read {token:?}: {}", io_reason(e)),
            },
        }
    }
}

/// ` in "-p 22,70000"` or ` on line 3 of -iL file "hosts.txt"`.
struct OriginSuffix<'a>(&'a Origin);

impl fmt::Display for OriginSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Origin::Operand => Ok(()),
            Origin::Flag { flag, value } => write!(f, " in \"{flag} {}\"", value.escape_debug()),
            Origin::File { flag, path, line } => {
                write!(f, " on line {line} of {flag} {}", FileName(path))
            }
        }
    }
}

/// `file "hosts.txt"`, or `standard input` for `-`.
struct FileName<'a>(&'a Path);

impl fmt::Display for FileName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Path::new("-") {
            f.write_str("standard input")
        } else {
            write!(f, "file {:?}", self.0.display().to_string())
        }
    }
}

/// The OS message without Rust's ` (os error N)` suffix: users know the
/// message, not the number.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => match text.strip_suffix(&format!(" (os error {code})")) {
            Some(stripped) => stripped.to_owned(),
            None => text,
        },
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_names_file_without_os_error_number() {
        let e = TargetError::new(
            TargetErrorKind::Read(io::Error::from_raw_os_error(2)),
            "x.txt",
        )
        .in_file("-iL", Path::new("x.txt"), 0);
        assert_eq!(
            e.to_string(),
            "cannot read -iL file \"x.txt\": No such file or directory"
        );
        assert_eq!(e.line(), None);
    }

    #[test]
    fn origin_is_set_once() {
        let e = TargetError::new(TargetErrorKind::InvalidTarget, "a")
            .in_file("-iL", Path::new("h"), 3)
            .in_flag("--exclude", "a");
        assert_eq!(e.line(), Some(3));
        assert_eq!(
            e.to_string(),
            "invalid target \"a\" on line 3 of -iL file \"h\""
        );
    }

    #[test]
    fn stdin_is_named() {
        let e =
            TargetError::new(TargetErrorKind::InvalidTarget, "a").in_file("-iL", Path::new("-"), 1);
        assert_eq!(
            e.to_string(),
            "invalid target \"a\" on line 1 of -iL standard input"
        );
    }

    #[test]
    fn too_large_is_one_line() {
        let e = TargetError::new(
            TargetErrorKind::TooLarge {
                hosts: Some(1 << 96),
                ports: 1,
                segmented: false,
            },
            "",
        );
        assert_eq!(
            e.to_string(),
            "scan too large: 79228162514264337593543950336 addresses x 1 port is more than 2^64 probes"
        );
    }
}

#[cfg(test)]
mod one_line_tests {
    use crate::targets::{TargetArgs, build};

    /// Found by the fuzzer: a flag value with a line break (`-p "$(cat f)"`)
    /// must not split the message over lines.
    #[test]
    fn flag_values_with_line_breaks_stay_on_one_line() {
        let cases = [
            TargetArgs {
                ports: Some("\n"),
                ..TargetArgs::default()
            },
            TargetArgs {
                ports: Some("22,\r\n99999"),
                ..TargetArgs::default()
            },
            TargetArgs {
                exclude: &["!\r".to_string()],
                targets: &["127.0.0.1".to_string()],
                ..TargetArgs::default()
            },
        ];
        for args in cases {
            let msg = build(&args).unwrap_err().to_string();
            assert!(!msg.contains(['\n', '\r']), "{msg:?}");
        }
    }
}
