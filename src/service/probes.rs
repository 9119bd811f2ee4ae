//! The nmap-service-probes file format, parsed into typed probes and match rules.
//!
//! Both FastPort's own database (`fastport-service-probes`) and any file a user loads with
//! `--service-probes` (nmap's own copy among them) are read by this one parser. It only parses:
//! the patterns are compiled by [`super::matcher`], the templates are parsed here into
//! [`Template`]s and expanded there.
//!
//! The format, one directive a line (`#` starts a comment):
//!
//! ```text
//! Probe TCP GetRequest q|GET / HTTP/1.0\r\n\r\n| [no-payload]
//! rarity 1
//! ports 80,8000-8010
//! sslports 443
//! totalwaitms 6000
//! tcpwrappedms 3000
//! fallback GetRequest,NULL
//! match http m|^HTTP/1\.[01] \d\d\d .*\r\nServer: nginx/([\d.]+)|s p/nginx/ v/$1/ cpe:/a:nginx:nginx:$1/
//! softmatch ftp m/^220 /
//! Exclude T:9100-9107
//! ```
//!
//! Every error names its 1-based line and what was wrong there.

use std::fmt;

/// Which transport a probe is sent over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Over a TCP connection.
    Tcp,
    /// As a UDP datagram.
    Udp,
}

/// A set of ports given as `21,23,80-90`: sorted, inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn parse(text: &str) -> Option<PortSet> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let p = part.parse().ok()?;
                    (p, p)
                }
            };
            if lo > hi {
                return None;
            }
            ranges.push((lo, hi));
        }
        ranges.sort_unstable();
        Some(PortSet { ranges })
    }
}

/// One piece of a version template such as `p/Apache httpd/ v/$1/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text copied as it is.
    Literal(Vec<u8>),
    /// `$N`: capture group N, its bytes as they are.
    Group(u8),
    /// `$P(N)`: capture group N with the unprintable bytes left out.
    Printable(u8),
    /// `$SUBST(N,"from","to")`: capture group N with every `from` replaced by `to`.
    Subst(u8, Vec<u8>, Vec<u8>),
    /// `$I(N,">")` or `$I(N,"<")`: capture group N read as an unsigned big- (`>`) or
    /// little-endian (`<`) integer, printed in decimal.
    Int(u8, Endian),
}

/// Byte order of a `$I()` template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Most significant byte first (`>`).
    Big,
    /// Least significant byte first (`<`).
    Little,
}

/// A parsed version-info template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// Literal text and substitutions, in order.
    pub pieces: Vec<Piece>,
}

impl Template {
    /// The highest capture group the template refers to (0 if none).
    pub fn max_group(&self) -> u8 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(_) => 0,
                Piece::Group(n)
                | Piece::Printable(n)
                | Piece::Subst(n, _, _)
                | Piece::Int(n, _) => *n,
            })
            .max()
            .unwrap_or(0)
    }
}

/// The version-info fields of a match line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionTemplates {
    /// `p/.../`: product name.
    pub product: Option<Template>,
    /// `v/.../`: version.
    pub version: Option<Template>,
    /// `i/.../`: extra information.
    pub info: Option<Template>,
    /// `h/.../`: host name.
    pub hostname: Option<Template>,
    /// `o/.../`: operating system.
    pub os: Option<Template>,
    /// `d/.../`: device type.
    pub device: Option<Template>,
    /// `cpe:/.../`: CPE names (the trailing `a` flag is accepted and dropped).
    pub cpe: Vec<Template>,
}

/// A `match` or `softmatch` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchRule {
    /// Service name, e.g. `http`, `ssh`, `ssl/http`.
    pub service: String,
    /// `softmatch`: names the service but keeps probing for a hard match.
    pub soft: bool,
    /// The pattern as written between the delimiters (PCRE syntax).
    pub pattern: Vec<u8>,
    /// `i` flag: case-insensitive.
    pub caseless: bool,
    /// `s` flag: `.` matches newlines.
    pub dotall: bool,
    /// The version fields to fill in from the match.
    pub templates: VersionTemplates,
    /// 1-based line in the file.
    pub line: usize,
}

/// A `Probe` line and the directives and matches that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The probe's name (`NULL`, `GetRequest`, ...).
    pub name: String,
    /// The bytes sent (escapes decoded). Empty for the NULL probe.
    pub payload: Vec<u8>,
    /// `no-payload`: only for the UDP payload scan, never sent as a version probe.
    pub no_payload: bool,
    /// 1 (common) to 9 (rare). A probe without a `rarity` line counts as 1.
    pub rarity: u8,
    /// `ports`: where the probe is tried first.
    pub ports: PortSet,
    /// `sslports`: the same, inside a TLS tunnel.
    pub sslports: PortSet,
    /// How long to wait for an answer, if the probe says.
    pub total_wait_ms: Option<u32>,
    /// Closed within this long without data: `tcpwrapped`.
    pub tcpwrapped_ms: Option<u32>,
    /// Probes whose matches are also tried on this probe's answer.
    pub fallback: Vec<String>,
    /// The `match` and `softmatch` rules, in file order.
    pub matches: Vec<MatchRule>,
    /// 1-based line of the `Probe` directive.
    pub line: usize,
}

impl Probe {
    /// The NULL probe: send nothing, wait for a banner.
    pub fn is_null(&self) -> bool {
        self.payload.is_empty() && self.protocol == Protocol::Tcp
    }
}

/// A whole probe file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeFile {
    /// The probes, in file order.
    pub probes: Vec<Probe>,
    /// The `Exclude` directive, as written (ports never version-probed).
    pub exclude: Option<String>,
    /// The TCP ports of `Exclude` (`T:9100-9107`; entries without a protocol count for
    /// both, `U:` entries and the entries after them for UDP only).
    pub exclude_tcp: PortSet,
}

/// What was wrong on a line of a probe file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A directive the format does not have.
    #[error("unknown directive {0:?}")]
    UnknownDirective(String),
    /// A directive before the first `Probe` line.
    #[error("{0:?} before any Probe line")]
    OutsideProbe(String),
    /// A `Probe` line of the wrong shape.
    #[error("Probe line needs `Probe TCP|UDP NAME q|PAYLOAD|`")]
    BadProbeLine,
    /// A protocol other than TCP or UDP.
    #[error("unknown protocol {0:?} (TCP or UDP)")]
    BadProtocol(String),
    /// A string or pattern without its closing delimiter.
    #[error("unterminated {0} (no closing delimiter)")]
    Unterminated(&'static str),
    /// A bad escape in a probe string.
    #[error("bad escape in probe string: {0}")]
    BadEscape(String),
    /// A `match` line of the wrong shape.
    #[error("match line needs `match SERVICE m/PATTERN/[si] [FIELDS]`")]
    BadMatchLine,
    /// A pattern flag other than `s` and `i`.
    #[error("unknown pattern flag {0:?} (s or i)")]
    BadFlag(char),
    /// An unknown version field.
    #[error("unknown version field starting {0:?}")]
    BadField(String),
    /// A version template that does not parse.
    #[error("bad template: {0}")]
    BadTemplate(String),
    /// A number that does not parse.
    #[error("bad number {0:?}")]
    BadNumber(String),
    /// A rarity outside 1-9.
    #[error("rarity {0} out of range (1-9)")]
    BadRarity(u32),
    /// A port list that does not parse.
    #[error("bad port list {0:?}")]
    BadPorts(String),
    /// A probe name used twice for one protocol.
    #[error("probe name {0:?} used twice for one protocol")]
    DuplicateProbe(String),
    /// A fallback naming no probe.
    #[error("fallback {0:?} names no probe")]
    UnknownFallback(String),
}

/// A probe file error: where and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong on it.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

/// Parses a whole probe file.
pub fn parse(text: &[u8]) -> Result<ProbeFile, ParseError> {
    let mut file = ProbeFile::default();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = trim(raw);
        if raw.is_empty() || raw[0] == b'#' {
            continue;
        }
        parse_line(&mut file, raw, line).map_err(|kind| ParseError { line, kind })?;
    }
    // Fallbacks must name a probe of the file.
    for probe in &file.probes {
        for name in &probe.fallback {
            if !file.probes.iter().any(|p| &p.name == name) {
                return Err(ParseError {
                    line: probe.line,
                    kind: ParseErrorKind::UnknownFallback(name.clone()),
                });
            }
        }
    }
    Ok(file)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| b.is_ascii_whitespace()) {
        Some(p) => (&s[..p], trim(&s[p..])),
        None => (s, &[]),
    }
}

fn text(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

fn number(s: &[u8]) -> Result<u32, ParseErrorKind> {
    let t = text(s);
    t.trim().parse().map_err(|_| ParseErrorKind::BadNumber(t))
}

fn current<'a>(file: &'a mut ProbeFile, directive: &[u8]) -> Result<&'a mut Probe, ParseErrorKind> {
    file.probes
        .last_mut()
        .ok_or_else(|| ParseErrorKind::OutsideProbe(text(directive)))
}

fn parse_line(file: &mut ProbeFile, raw: &[u8], line: usize) -> Result<(), ParseErrorKind> {
    let (directive, rest) = split_word(raw);
    match directive {
        b"Exclude" => {
            let spec = text(rest);
            file.exclude_tcp =
                exclude_tcp(&spec).ok_or_else(|| ParseErrorKind::BadPorts(spec.clone()))?;
            file.exclude = Some(spec);
        }
        b"Probe" => {
            let probe = parse_probe(rest, line)?;
            if file
                .probes
                .iter()
                .any(|p| p.name == probe.name && p.protocol == probe.protocol)
            {
                return Err(ParseErrorKind::DuplicateProbe(probe.name));
            }
            file.probes.push(probe);
        }
        b"match" | b"softmatch" => {
            let rule = parse_match(rest, directive == b"softmatch", line)?;
            current(file, directive)?.matches.push(rule);
        }
        b"rarity" => {
            let n = number(rest)?;
            if !(1..=9).contains(&n) {
                return Err(ParseErrorKind::BadRarity(n));
            }
            current(file, directive)?.rarity = n as u8;
        }
        b"ports" | b"sslports" => {
            let set =
                PortSet::parse(&text(rest)).ok_or_else(|| ParseErrorKind::BadPorts(text(rest)))?;
            let probe = current(file, directive)?;
            if directive == b"ports" {
                probe.ports = set;
            } else {
                probe.sslports = set;
            }
        }
        b"totalwaitms" => current(file, directive)?.total_wait_ms = Some(number(rest)?),
        b"tcpwrappedms" => current(file, directive)?.tcpwrapped_ms = Some(number(rest)?),
        b"fallback" => {
            let names = text(rest)
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            current(file, directive)?.fallback = names;
        }
        other => return Err(ParseErrorKind::UnknownDirective(text(other))),
    }
    Ok(())
}

/// The TCP part of an `Exclude` port list, as nmap's `-p` syntax reads it: `T:` and `U:`
/// switch the protocol for the entries that follow.
fn exclude_tcp(spec: &str) -> Option<PortSet> {
    let mut tcp = String::new();
    let mut proto_tcp = true;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let part = if let Some(p) = part.strip_prefix("T:") {
            proto_tcp = true;
            p
        } else if let Some(p) = part.strip_prefix("U:") {
            proto_tcp = false;
            p
        } else {
            part
        };
        if proto_tcp {
            if !tcp.is_empty() {
                tcp.push(',');
            }
            tcp.push_str(part);
        }
    }
    PortSet::parse(&tcp)
}

fn parse_probe(rest: &[u8], line: usize) -> Result<Probe, ParseErrorKind> {
    let (proto, rest) = split_word(rest);
    let protocol = match proto {
        b"TCP" => Protocol::Tcp,
        b"UDP" => Protocol::Udp,
        b"" => return Err(ParseErrorKind::BadProbeLine),
        other => return Err(ParseErrorKind::BadProtocol(text(other))),
    };
    let (name, rest) = split_word(rest);
    if name.is_empty() {
        return Err(ParseErrorKind::BadProbeLine);
    }
    let (payload, after) = delimited(rest, b'q', "probe string", ParseErrorKind::BadProbeLine)?;
    let payload = unescape(payload)?;
    let no_payload = match trim(after) {
        b"" => false,
        b"no-payload" => true,
        _ => return Err(ParseErrorKind::BadProbeLine),
    };
    Ok(Probe {
        protocol,
        name: text(name),
        payload,
        no_payload,
        rarity: 1,
        ports: PortSet::default(),
        sslports: PortSet::default(),
        total_wait_ms: None,
        tcpwrapped_ms: None,
        fallback: Vec::new(),
        matches: Vec::new(),
        line,
    })
}

/// Decodes a probe string's C-style escapes: `\\ \0 \a \b \f \n \r \t \v \xHH`; any other
/// escaped character stands for itself.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, ParseErrorKind> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err(ParseErrorKind::BadEscape("trailing backslash".into()));
        };
        i += 1;
        out.push(match e {
            b'0' => 0,
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            b'x' => {
                let hex = s.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(v) = v else {
                    return Err(ParseErrorKind::BadEscape(format!(
                        "\\x{}",
                        text(&s[i..(i + 2).min(s.len())])
                    )));
                };
                i += 2;
                v
            }
            other => other,
        });
    }
    Ok(out)
}

/// A string in nmap's `q|...|` or `m=...=` form: `letter`, then any byte
/// as the delimiter. The string and what follows its closing delimiter;
/// `bad` when `rest` does not start with the letter and a delimiter.
fn delimited<'a>(
    rest: &'a [u8],
    letter: u8,
    what: &'static str,
    bad: ParseErrorKind,
) -> Result<(&'a [u8], &'a [u8]), ParseErrorKind> {
    let [first, delim, body @ ..] = rest else {
        return Err(bad);
    };
    if *first != letter {
        return Err(bad);
    }
    let end = body
        .iter()
        .position(|b| b == delim)
        .ok_or(ParseErrorKind::Unterminated(what))?;
    Ok((&body[..end], &body[end + 1..]))
}

fn parse_match(rest: &[u8], soft: bool, line: usize) -> Result<MatchRule, ParseErrorKind> {
    let (service, rest) = split_word(rest);
    if service.is_empty() {
        return Err(ParseErrorKind::BadMatchLine);
    }
    let (pattern, body) = delimited(rest, b'm', "pattern", ParseErrorKind::BadMatchLine)?;
    let pattern = pattern.to_vec();
    let mut i = 0;
    let (mut caseless, mut dotall) = (false, false);
    while let Some(&f) = body.get(i) {
        match f {
            b'i' => caseless = true,
            b's' => dotall = true,
            b if b.is_ascii_whitespace() => break,
            other => return Err(ParseErrorKind::BadFlag(other as char)),
        }
        i += 1;
    }
    let templates = parse_fields(&body[i..])?;
    Ok(MatchRule {
        service: text(service),
        soft,
        pattern,
        caseless,
        dotall,
        templates,
        line,
    })
}

fn parse_fields(mut s: &[u8]) -> Result<VersionTemplates, ParseErrorKind> {
    let mut t = VersionTemplates::default();
    loop {
        s = trim(s);
        if s.is_empty() {
            return Ok(t);
        }
        let (key, after) = if s.starts_with(b"cpe:") {
            ("cpe", &s[4..])
        } else {
            let k = match s[0] {
                b'p' => "p",
                b'v' => "v",
                b'i' => "i",
                b'h' => "h",
                b'o' => "o",
                b'd' => "d",
                _ => return Err(ParseErrorKind::BadField(text(&s[..s.len().min(8)]))),
            };
            (k, &s[1..])
        };
        let Some((&delim, body)) = after.split_first() else {
            return Err(ParseErrorKind::BadField(text(s)));
        };
        let end = body
            .iter()
            .position(|&b| b == delim)
            .ok_or(ParseErrorKind::Unterminated("version field"))?;
        let template = parse_template(&body[..end])?;
        s = &body[end + 1..];
        match key {
            "p" => t.product = Some(template),
            "v" => t.version = Some(template),
            "i" => t.info = Some(template),
            "h" => t.hostname = Some(template),
            "o" => t.os = Some(template),
            "d" => t.device = Some(template),
            _ => {
                // `cpe:/a:vendor:product/a`: the `a` flag (auto-generated CPE) is dropped.
                if s.first() == Some(&b'a') {
                    s = &s[1..];
                }
                t.cpe.push(template);
            }
        }
        if !s.is_empty() && !s[0].is_ascii_whitespace() {
            return Err(ParseErrorKind::BadField(text(&s[..s.len().min(8)])));
        }
    }
}

/// Parses a template body such as `Apache httpd $1 ($P(2))`.
pub fn parse_template(s: &[u8]) -> Result<Template, ParseErrorKind> {
    let mut pieces = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    let bad = |m: &str| ParseErrorKind::BadTemplate(format!("{m} in {:?}", text(s)));
    while i < s.len() {
        if s[i] != b'$' {
            lit.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        let (piece, used) = if let Some(d) = rest.first().filter(|d| d.is_ascii_digit()) {
            (Piece::Group(d - b'0'), 2)
        } else if rest.starts_with(b"P(") {
            let (args, used) = call_args(&rest[1..]).ok_or_else(|| bad("bad $P()"))?;
            let n = group_arg(args.first()).ok_or_else(|| bad("bad $P() group"))?;
            (Piece::Printable(n), 2 + used)
        } else if rest.starts_with(b"SUBST(") {
            let (args, used) = call_args(&rest[5..]).ok_or_else(|| bad("bad $SUBST()"))?;
            let n = group_arg(args.first()).ok_or_else(|| bad("bad $SUBST() group"))?;
            let (Some(from), Some(to)) = (quoted(args.get(1)), quoted(args.get(2))) else {
                return Err(bad("$SUBST() needs two quoted strings"));
            };
            (Piece::Subst(n, from, to), 6 + used)
        } else if rest.starts_with(b"I(") {
            let (args, used) = call_args(&rest[1..]).ok_or_else(|| bad("bad $I()"))?;
            let n = group_arg(args.first()).ok_or_else(|| bad("bad $I() group"))?;
            let endian = match quoted(args.get(1)).as_deref() {
                Some(b">") => Endian::Big,
                Some(b"<") => Endian::Little,
                _ => return Err(bad("$I() needs \">\" or \"<\"")),
            };
            (Piece::Int(n, endian), 2 + used)
        } else {
            // A lone `$` is literal text.
            lit.push(b'$');
            i += 1;
            continue;
        };
        if !lit.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut lit)));
        }
        pieces.push(piece);
        i += used;
    }
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(Template { pieces })
}

/// `(a,"b",c)` starting at `(`: the comma-separated arguments (quotes respected) and the
/// number of bytes used, closing parenthesis included.
fn call_args(s: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    if s.first() != Some(&b'(') {
        return None;
    }
    let mut args = Vec::new();
    let mut start = 1;
    let mut in_quote = false;
    for (i, &b) in s.iter().enumerate().skip(1) {
        match b {
            b'"' => in_quote = !in_quote,
            b',' if !in_quote => {
                args.push(trim(&s[start..i]));
                start = i + 1;
            }
            b')' if !in_quote => {
                args.push(trim(&s[start..i]));
                return Some((args, i + 1));
            }
            _ => {}
        }
    }
    None
}

fn group_arg(a: Option<&&[u8]>) -> Option<u8> {
    match a? {
        [d] if d.is_ascii_digit() => Some(d - b'0'),
        _ => None,
    }
}

fn quoted(a: Option<&&[u8]>) -> Option<Vec<u8>> {
    let a = a?;
    let inner = a.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    unescape(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_with_directives_and_matches() {
        let f = parse(
            b"# comment\nProbe TCP GetRequest q|GET / HTTP/1.0\\r\\n\\r\\n|\nrarity 2\nports 80,8000-8010\n\
              sslports 443\ntotalwaitms 6000\ntcpwrappedms 3000\nfallback NULL\n\
              match http m|^HTTP/1\\.[01] \\d+ .*\\r\\nServer: nginx/([\\d.]+)|si p/nginx/ v/$1/ cpe:/a:nginx:nginx:$1/a\n\
              softmatch http m=^HTTP/=\nProbe TCP NULL q||\n",
        )
        .unwrap();
        assert_eq!(f.probes.len(), 2);
        let p = &f.probes[0];
        assert_eq!(p.payload, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(p.rarity, 2);
        assert!(p.ports.contains(80) && p.ports.contains(8005) && !p.ports.contains(81));
        assert!(p.sslports.contains(443));
        assert_eq!((p.total_wait_ms, p.tcpwrapped_ms), (Some(6000), Some(3000)));
        assert_eq!(p.fallback, vec!["NULL".to_string()]);
        let m = &p.matches[0];
        assert!(m.caseless && m.dotall && !m.soft);
        assert_eq!(
            m.templates.product.as_ref().unwrap().pieces,
            vec![Piece::Literal(b"nginx".to_vec())]
        );
        assert_eq!(
            m.templates.version.as_ref().unwrap().pieces,
            vec![Piece::Group(1)]
        );
        assert_eq!(m.templates.cpe.len(), 1);
        assert!(p.matches[1].soft);
        assert_eq!(p.matches[1].pattern, b"^HTTP/");
        assert!(f.probes[1].is_null());
    }

    #[test]
    fn exclude_directive_tcp_ports() {
        let f = parse(b"Exclude T:9100-9107,30,U:53,54\nProbe TCP NULL q||\n").unwrap();
        assert!(f.exclude_tcp.contains(9100) && f.exclude_tcp.contains(9107));
        assert!(f.exclude_tcp.contains(30));
        assert!(!f.exclude_tcp.contains(53) && !f.exclude_tcp.contains(54));
        let e = parse(b"Exclude T:9100-x\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadPorts(_)));
    }

    #[test]
    fn probe_string_escapes() {
        assert_eq!(unescape(br"a\r\n\0\x41\\\t\|").unwrap(), b"a\r\n\0A\\\t|");
        assert!(matches!(
            unescape(br"\xZZ"),
            Err(ParseErrorKind::BadEscape(_))
        ));
        assert!(matches!(unescape(b"\\"), Err(ParseErrorKind::BadEscape(_))));
    }

    #[test]
    fn template_functions() {
        let t = parse_template(br#"v$1 $P(2) $SUBST(3,"_",".") $I(4,">") $I(5,"<") $"#).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal(b"v".to_vec()),
                Piece::Group(1),
                Piece::Literal(b" ".to_vec()),
                Piece::Printable(2),
                Piece::Literal(b" ".to_vec()),
                Piece::Subst(3, b"_".to_vec(), b".".to_vec()),
                Piece::Literal(b" ".to_vec()),
                Piece::Int(4, Endian::Big),
                Piece::Literal(b" ".to_vec()),
                Piece::Int(5, Endian::Little),
                Piece::Literal(b" $".to_vec()),
            ]
        );
        assert_eq!(t.max_group(), 5);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(b"Probe TCP NULL q||\nrarity 12\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ParseErrorKind::BadRarity(12));
        assert_eq!(e.to_string(), "line 2: rarity 12 out of range (1-9)");
        let e = parse(b"match x m/a/\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::OutsideProbe(_)));
        let e = parse(b"Probe TCP NULL q||\nmatch x m/abc\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (2, ParseErrorKind::Unterminated("pattern"))
        );
        let e = parse(b"Probe TCP NULL q||\nmatch x m/a/x\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadFlag('x'));
        let e = parse(b"Probe TCP NULL q||\nfallback Nope\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::UnknownFallback("Nope".into()));
        let e = parse(b"Probe TCP A q||\nProbe TCP A q|x|\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (2, ParseErrorKind::DuplicateProbe("A".into()))
        );
        let e = parse(b"Probe TCP NULL q||\nbogus 1\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::UnknownDirective("bogus".into()));
        let e = parse(b"Probe TCP NULL q||\nmatch x m/a/ z/q/\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadField(_)));
    }
}
