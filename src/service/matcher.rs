//! Compiled match rules: which service, product and version a response names.
//!
//! Every pattern of a probe file is compiled once, by PCRE2 (the `pcre2` crate, JIT on), the
//! engine whose dialect the nmap-service-probes format is written in: look-around, atomic
//! groups, back-references, `\0` and `\xHH` escapes all mean what they mean to nmap. Each
//! pattern is compiled with `(*LIMIT_MATCH=…)(*LIMIT_DEPTH=…)` in front, so a banner that makes
//! a pattern backtrack costs at most that bound and then counts as no match (nmap sets the same
//! kind of limits on its PCRE).
//!
//! A prefilter keeps the per-banner cost low: most patterns start with `^` and a few literal
//! bytes. For every probe the rules are bucketed by the first byte they can match
//! ([`literal_prefix`]); a banner is tried only against the rules in its first byte's bucket
//! (plus the rules without a usable prefix), each checked first against its whole literal
//! prefix, in the file's order, so the first matching rule is the one nmap would pick.
//!
//! Order of the search for one response to probe P (nmap's): P's own rules, then the rules of
//! each probe P names in `fallback`, then (for a TCP probe) the NULL probe's. The first hard
//! `match` wins; a `softmatch` is kept and the search goes on for a hard match of the same
//! service only.

use super::probes::{Endian, Piece, Probe, ProbeFile, Protocol, Template};

/// nmap's PCRE match limit: the backtracking steps one pattern may take on one banner.
pub const MATCH_LIMIT: u32 = 100_000;
/// nmap's PCRE recursion limit (depth of nested backtracking frames).
pub const DEPTH_LIMIT: u32 = 10_000;

/// What a rule matching a response tells: the service and its version fields, templates
/// expanded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceMatch {
    pub service: String,
    /// Named by a `softmatch`: the service is known, the version is not.
    pub soft: bool,
    pub product: Option<String>,
    pub version: Option<String>,
    pub info: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
    /// CPE names as nmap prints them: `cpe:/a:vendor:product:version`.
    pub cpe: Vec<String>,
    /// Index of the probe whose rule matched (in [`Matcher::probes`]).
    pub probe: usize,
    /// Line of the rule in its file.
    pub line: usize,
}

/// A pattern that PCRE2 refused, left out of matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub error: String,
}

struct Rule {
    regex: pcre2::bytes::Regex,
    prefix: Vec<u8>,
    caseless: bool,
    /// Index into the probe's `literals`: a literal every match contains.
    literal: Option<u32>,
    /// Index into the probe's `matches`.
    index: u32,
}

struct CompiledProbe {
    rules: Vec<Rule>,
    /// For each first byte, the rules (indices into `rules`, ascending) that may match a
    /// response starting with it.
    buckets: Vec<Vec<u32>>,
    /// The rules that can match an empty response.
    empty: Vec<u32>,
    /// Probes whose rules are tried after this one's (explicit fallbacks, then NULL).
    fallback: Vec<usize>,
    /// The rules' required literals (ASCII case folded), found in a response in one pass.
    literals: Option<aho_corasick::AhoCorasick>,
    literal_count: usize,
}

/// A probe file with every pattern compiled.
pub struct Matcher {
    file: ProbeFile,
    compiled: Vec<CompiledProbe>,
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("probes", &self.file.probes.len())
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

impl Matcher {
    /// Compiles every pattern of `file`. Patterns PCRE2 refuses are left out and listed in
    /// [`Matcher::skipped`].
    pub fn new(file: ProbeFile) -> Matcher {
        let mut skipped = Vec::new();
        let null = file
            .probes
            .iter()
            .position(|p| p.is_null() && p.protocol == Protocol::Tcp);
        let mut compiled = Vec::with_capacity(file.probes.len());
        for (pi, probe) in file.probes.iter().enumerate() {
            let mut rules = Vec::with_capacity(probe.matches.len());
            let mut literal_ids: std::collections::HashMap<Vec<u8>, u32> = Default::default();
            let mut literals: Vec<Vec<u8>> = Vec::new();
            for (index, m) in probe.matches.iter().enumerate() {
                match compile(&m.pattern, m.caseless, m.dotall) {
                    Ok(regex) => {
                        let prefix = literal_prefix(&m.pattern);
                        let required = required_literal(&m.pattern).to_ascii_lowercase();
                        // Worth a lookup only if it says more than the prefix already does.
                        let literal = (required.len() >= MIN_LITERAL
                            && required.len() > prefix.len())
                        .then(|| {
                            *literal_ids.entry(required.clone()).or_insert_with(|| {
                                literals.push(required);
                                literals.len() as u32 - 1
                            })
                        });
                        rules.push(Rule {
                            regex,
                            prefix,
                            caseless: m.caseless,
                            literal,
                            index: index as u32,
                        })
                    }
                    Err(error) => skipped.push(Skipped {
                        line: m.line,
                        error,
                    }),
                }
            }
            let literal_count = literals.len();
            let literals = (!literals.is_empty())
                .then(|| {
                    aho_corasick::AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build(&literals)
                        .ok()
                })
                .flatten();
            let literal_count = if literals.is_some() { literal_count } else { 0 };
            let mut buckets = vec![Vec::new(); 256];
            let mut empty = Vec::new();
            for (ri, rule) in rules.iter().enumerate() {
                let ri = ri as u32;
                match rule.prefix.first() {
                    None => {
                        empty.push(ri);
                        buckets.iter_mut().for_each(|b| b.push(ri));
                    }
                    Some(&b) if rule.caseless && b.is_ascii_alphabetic() => {
                        buckets[b.to_ascii_lowercase() as usize].push(ri);
                        buckets[b.to_ascii_uppercase() as usize].push(ri);
                    }
                    Some(&b) => buckets[b as usize].push(ri),
                }
            }
            buckets.iter_mut().for_each(|b| b.shrink_to_fit());
            let mut fallback: Vec<usize> = probe
                .fallback
                .iter()
                .filter_map(|name| {
                    file.probes
                        .iter()
                        .position(|p| &p.name == name && p.protocol == probe.protocol)
                })
                .filter(|&f| f != pi)
                .collect();
            if let Some(n) = null
                && probe.protocol == Protocol::Tcp
                && n != pi
                && !fallback.contains(&n)
            {
                fallback.push(n);
            }
            compiled.push(CompiledProbe {
                rules,
                buckets,
                empty,
                fallback,
                literals,
                literal_count,
            });
        }
        Matcher {
            file,
            compiled,
            skipped,
        }
    }

    /// The probes, in file order.
    pub fn probes(&self) -> &[Probe] {
        &self.file.probes
    }

    /// The parsed file.
    pub fn file(&self) -> &ProbeFile {
        &self.file
    }

    /// Whether the file's `Exclude` directive keeps TCP `port` from being version-probed
    /// (the driver then reports the port without a conversation).
    pub fn is_excluded(&self, port: u16) -> bool {
        self.file.exclude_tcp.contains(port)
    }

    /// Patterns that did not compile.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Number of patterns compiled.
    pub fn compiled_rules(&self) -> usize {
        self.compiled.iter().map(|p| p.rules.len()).sum()
    }

    /// Number of compiled rules with a literal prefix of at least `min_len` bytes (the ones
    /// the prefilter can rule out without running PCRE2).
    pub fn prefixed_rules(&self, min_len: usize) -> usize {
        self.compiled
            .iter()
            .flat_map(|p| &p.rules)
            .filter(|r| r.prefix.len() >= min_len)
            .count()
    }

    /// Index of the probe named `name` for `protocol`.
    pub fn probe_index(&self, protocol: Protocol, name: &str) -> Option<usize> {
        self.file
            .probes
            .iter()
            .position(|p| p.protocol == protocol && p.name == name)
    }

    /// Whether probe `probe` (or its fallbacks) has a hard match for `service`: after a
    /// softmatch only such probes are worth sending.
    pub fn can_name(&self, probe: usize, service: &str) -> bool {
        std::iter::once(probe)
            .chain(self.compiled[probe].fallback.iter().copied())
            .any(|p| {
                self.file.probes[p]
                    .matches
                    .iter()
                    .any(|m| !m.soft && m.service == service)
            })
    }

    /// Matches `response` (what came back for probe `probe`). With `soft_service` set (a
    /// softmatch already named the service), only hard matches for that service count.
    ///
    /// Returns the first hard match or, failing that, the first softmatch.
    pub fn match_response(
        &self,
        probe: usize,
        response: &[u8],
        soft_service: Option<&str>,
    ) -> Option<ServiceMatch> {
        let mut soft: Option<ServiceMatch> = None;
        for p in std::iter::once(probe).chain(self.compiled[probe].fallback.iter().copied()) {
            if let Some(hit) = self.match_in(p, response, soft_service, &mut soft) {
                return Some(hit);
            }
        }
        soft
    }

    fn match_in(
        &self,
        p: usize,
        response: &[u8],
        soft_service: Option<&str>,
        soft: &mut Option<ServiceMatch>,
    ) -> Option<ServiceMatch> {
        let cp = &self.compiled[p];
        let candidates = match response.first() {
            Some(&b) => &cp.buckets[b as usize],
            None => &cp.empty,
        };
        // Which required literals the response contains (one pass over it).
        let mut present = vec![false; cp.literal_count];
        if let Some(ac) = &cp.literals {
            for hit in ac.find_overlapping_iter(response) {
                present[hit.pattern().as_usize()] = true;
            }
        }
        for &ri in candidates {
            let rule = &cp.rules[ri as usize];
            if !starts_with(response, &rule.prefix, rule.caseless) {
                continue;
            }
            if let Some(l) = rule.literal
                && cp.literals.is_some()
                && !present[l as usize]
            {
                continue;
            }
            let m = &self.file.probes[p].matches[rule.index as usize];
            if let Some(s) = soft_service.or(soft.as_ref().map(|s| s.service.as_str())) {
                if m.soft || m.service != s {
                    continue;
                }
            }
            // An error here is the match or depth limit: a pattern that backtracks past the
            // bound counts as no match.
            if !rule.regex.is_match(response).unwrap_or(false) {
                continue;
            }
            let hit = self.expand(p, rule, response);
            if m.soft {
                if soft.is_none() {
                    *soft = Some(hit);
                }
                continue;
            }
            return Some(hit);
        }
        None
    }

    fn expand(&self, p: usize, rule: &Rule, response: &[u8]) -> ServiceMatch {
        let m = &self.file.probes[p].matches[rule.index as usize];
        let mut locs = rule.regex.capture_locations();
        let found = rule
            .regex
            .captures_read(&mut locs, response)
            .ok()
            .flatten()
            .is_some();
        let groups: Vec<Option<&[u8]>> = (0..locs.len())
            .map(|i| {
                if found {
                    locs.get(i).map(|(s, e)| &response[s..e])
                } else {
                    None
                }
            })
            .collect();
        let t = &m.templates;
        // A field that expands to nothing (an optional group that did not take part) is
        // absent, as in nmap's output; a CPE loses the `:` left by an empty last part.
        let ex = |t: &Option<Template>| {
            t.as_ref()
                .map(|t| expand(t, &groups))
                .filter(|s| !s.trim().is_empty())
        };
        ServiceMatch {
            service: m.service.clone(),
            soft: m.soft,
            product: ex(&t.product),
            version: ex(&t.version),
            info: ex(&t.info),
            hostname: ex(&t.hostname),
            os: ex(&t.os),
            device: ex(&t.device),
            cpe: t
                .cpe
                .iter()
                .map(|c| format!("cpe:/{}", expand(c, &groups).trim_end_matches(':')))
                .collect(),
            probe: p,
            line: m.line,
        }
    }
}

fn starts_with(s: &[u8], prefix: &[u8], caseless: bool) -> bool {
    s.len() >= prefix.len()
        && if caseless {
            s[..prefix.len()].eq_ignore_ascii_case(prefix)
        } else {
            s.starts_with(prefix)
        }
}

/// Compiles a pattern as nmap does (no UTF, bytes in and out), with the match and depth
/// limits in front.
pub fn compile(
    pattern: &[u8],
    caseless: bool,
    dotall: bool,
) -> Result<pcre2::bytes::Regex, String> {
    let mut text = format!("(*LIMIT_MATCH={MATCH_LIMIT})(*LIMIT_DEPTH={DEPTH_LIMIT})");
    // Bytes above 0x7f are written as `\x{HH}` so that the pattern (a Rust string) stands for
    // the same bytes; after a lone backslash the escape's own backslash is already there.
    let mut escaped = false;
    for &b in pattern {
        if b < 0x80 {
            text.push(b as char);
            escaped = b == b'\\' && !escaped;
        } else {
            if !escaped {
                text.push('\\');
            }
            text.push_str(&format!("x{{{b:02x}}}"));
            escaped = false;
        }
    }
    pcre2::bytes::RegexBuilder::new()
        .caseless(caseless)
        .dotall(dotall)
        .jit_if_available(true)
        .build(&text)
        .map_err(|e| e.to_string())
}

/// The literal bytes every match of `pattern` starts with, if it is anchored with `^` and has
/// no top-level alternation; empty otherwise. Conservative: it stops at the first byte it is
/// not sure of, and drops a literal made optional by a following `?`, `*` or `{`.
pub fn literal_prefix(pattern: &[u8]) -> Vec<u8> {
    if pattern.first() != Some(&b'^') || has_top_level_alternation(pattern) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < pattern.len() {
        let (byte, used) = match pattern[i] {
            b'\\' => match escaped_literal(&pattern[i + 1..]) {
                Some((b, n)) => (b, n + 1),
                None => break,
            },
            b'.' | b'[' | b'(' | b')' | b'|' | b'?' | b'*' | b'+' | b'{' | b'$' | b'^' => break,
            b => (b, 1),
        };
        match pattern.get(i + used) {
            Some(b'?' | b'*' | b'{') => break,
            Some(b'+') => {
                out.push(byte);
                break;
            }
            _ => out.push(byte),
        }
        i += used;
    }
    out
}

/// Shortest required literal worth looking up.
const MIN_LITERAL: usize = 3;

/// The longest run of literal bytes that every match of `pattern` contains, outside any
/// group and not made optional by a quantifier; empty when there is none or the pattern
/// is beyond this simple reading (top-level `|`, inline options, `\Q`, named references).
/// It is looked up ASCII-caselessly, which is always safe.
pub fn required_literal(pattern: &[u8]) -> Vec<u8> {
    if has_top_level_alternation(pattern) {
        return Vec::new();
    }
    let (mut best, mut cur) = (Vec::new(), Vec::new());
    let flush = |best: &mut Vec<u8>, cur: &mut Vec<u8>| {
        if cur.len() > best.len() {
            *best = std::mem::take(cur);
        } else {
            cur.clear();
        }
    };
    let mut i = 0;
    while i < pattern.len() {
        let (byte, used) = match pattern[i] {
            b'\\' => {
                let rest = &pattern[i + 1..];
                match rest.first() {
                    None => break,
                    Some(b'Q' | b'E' | b'k' | b'g' | b'c' | b'p' | b'P' | b'o' | b'N') => {
                        return Vec::new();
                    }
                    Some(b'x') if rest.get(1) == Some(&b'{') => {
                        let Some(end) = rest.iter().position(|&b| b == b'}') else {
                            return Vec::new();
                        };
                        flush(&mut best, &mut cur);
                        i += end + 2;
                        continue;
                    }
                    Some(d) if d.is_ascii_digit() && *d != b'0' => {
                        // A back-reference.
                        flush(&mut best, &mut cur);
                        i += 1 + rest.iter().take_while(|b| b.is_ascii_digit()).count();
                        continue;
                    }
                    _ => {}
                }
                match escaped_literal(rest) {
                    Some((b, n)) => (b, n + 1),
                    None => {
                        // \d, \s, \b, ...: not a literal byte.
                        flush(&mut best, &mut cur);
                        i += 2;
                        continue;
                    }
                }
            }
            b'[' => {
                flush(&mut best, &mut cur);
                let Some(end) = class_end(pattern, i) else {
                    return Vec::new();
                };
                i = end + 1;
                continue;
            }
            b'(' => {
                if pattern.get(i + 1) == Some(&b'?')
                    && pattern
                        .get(i + 2)
                        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'-' || *b == b'^')
                {
                    // An inline option changes how the rest reads.
                    return Vec::new();
                }
                flush(&mut best, &mut cur);
                let Some(end) = group_end(pattern, i) else {
                    return Vec::new();
                };
                i = end + 1;
                continue;
            }
            b'{' => {
                flush(&mut best, &mut cur);
                let quant = pattern[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || **b == b',')
                    .count();
                i += 1;
                if quant > 0 && pattern.get(i + quant) == Some(&b'}') {
                    i += quant + 1;
                }
                continue;
            }
            b'.' | b'^' | b'$' | b'?' | b'*' | b'+' | b'|' | b')' | b']' => {
                flush(&mut best, &mut cur);
                i += 1;
                continue;
            }
            b => (b, 1),
        };
        match pattern.get(i + used) {
            Some(b'?' | b'*' | b'{') => flush(&mut best, &mut cur),
            Some(b'+') => {
                cur.push(byte);
                flush(&mut best, &mut cur);
            }
            _ => cur.push(byte),
        }
        i += used;
    }
    flush(&mut best, &mut cur);
    best
}

/// Index of the `]` closing the class that opens at `start`.
fn class_end(p: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b'\\' => i += 2,
            b'[' if p.get(i + 1) == Some(&b':') => {
                let close = p[i + 2..].windows(2).position(|w| w == b":]")?;
                i += close + 4;
            }
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Index of the `)` closing the group that opens at `start`.
fn group_end(p: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < p.len() {
        match p[i] {
            b'\\' => i += 1,
            b'[' => i = class_end(p, i)?,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The byte an escape (the text after a backslash) stands for, and its length, if it is one
/// literal byte.
fn escaped_literal(s: &[u8]) -> Option<(u8, usize)> {
    let &c = s.first()?;
    Some(match c {
        b'0' => {
            // `\0`, `\0N`, `\0NN`: octal.
            let digits = s[1..]
                .iter()
                .take(2)
                .take_while(|d| (b'0'..=b'7').contains(d))
                .count();
            let mut v: u32 = 0;
            for &d in &s[1..1 + digits] {
                v = v * 8 + u32::from(d - b'0');
            }
            (u8::try_from(v).ok()?, 1 + digits)
        }
        b'x' => {
            let hex = s.get(1..3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            (
                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?,
                3,
            )
        }
        b'r' => (b'\r', 1),
        b'n' => (b'\n', 1),
        b't' => (b'\t', 1),
        b'f' => (12, 1),
        b'e' => (27, 1),
        b'a' => (7, 1),
        c if c.is_ascii_punctuation() => (c, 1),
        _ => return None,
    })
}

fn has_top_level_alternation(pattern: &[u8]) -> bool {
    let mut depth = 0i32;
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 1,
            b'[' if !in_class => {
                in_class = true;
                // `[]...]` and `[^]...]`: a leading `]` is literal.
                if pattern.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if pattern.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => depth -= 1,
            b'|' if !in_class && depth == 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Expands a template with the capture groups of a match.
pub fn expand(t: &Template, groups: &[Option<&[u8]>]) -> String {
    let group = |n: u8| groups.get(n as usize).copied().flatten().unwrap_or(&[]);
    let mut out: Vec<u8> = Vec::new();
    for piece in &t.pieces {
        match piece {
            Piece::Literal(l) => out.extend_from_slice(l),
            Piece::Group(n) => out.extend_from_slice(group(*n)),
            Piece::Printable(n) => {
                out.extend(group(*n).iter().filter(|b| (0x20..0x7f).contains(*b)))
            }
            Piece::Subst(n, from, to) => {
                let g = group(*n);
                let mut i = 0;
                while i < g.len() {
                    if !from.is_empty() && g[i..].starts_with(from) {
                        out.extend_from_slice(to);
                        i += from.len();
                    } else {
                        out.push(g[i]);
                        i += 1;
                    }
                }
            }
            Piece::Int(n, endian) => {
                let g = group(*n);
                let g = &g[..g.len().min(8)];
                let fold = |v: u64, b: &u8| (v << 8) | u64::from(*b);
                let v = match endian {
                    Endian::Big => g.iter().fold(0, fold),
                    Endian::Little => g.iter().rev().fold(0, fold),
                };
                out.extend_from_slice(v.to_string().as_bytes());
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::probes::{parse, parse_template};
    use super::*;

    #[test]
    fn prefix_extraction() {
        assert_eq!(literal_prefix(br"^SSH-([\d.]+)"), b"SSH-");
        assert_eq!(literal_prefix(br"^\0\x01ab?c"), b"\0\x01a");
        assert_eq!(literal_prefix(br"^220 .*"), b"220 ");
        assert_eq!(literal_prefix(br"^a+b"), b"a");
        assert_eq!(literal_prefix(br"^\*\.x\d"), b"*.x");
        assert_eq!(literal_prefix(br"^ab|cd"), b"");
        assert_eq!(literal_prefix(br"^(ab|cd)"), b"");
        assert_eq!(literal_prefix(br"^a[|]b"), b"a");
        assert_eq!(literal_prefix(br"HTTP"), b"");
        assert_eq!(literal_prefix(br"^\012x"), b"\nx");
    }

    #[test]
    fn required_literal_extraction() {
        let lit = |p: &[u8]| String::from_utf8(required_literal(p)).unwrap();
        assert_eq!(
            lit(br"^HTTP/1\.[01] \d\d\d .*\r\nServer: Apache/([\d.]+)"),
            "\r\nServer: Apache/"
        );
        assert_eq!(lit(br"^SSH-([\d.]+)-OpenSSH_([\w.]+)"), "-OpenSSH_");
        assert_eq!(lit(br"abc(?:longer literal)?de"), "abc");
        assert_eq!(lit(br"^x[[:alpha:]]yyyy"), "yyyy");
        assert_eq!(lit(br"^ab{2,3}cdef"), "cdef");
        assert_eq!(lit(br"^abcd?ef"), "abc");
        assert_eq!(lit(br"^a(?i)bcdef"), "");
        assert_eq!(lit(br"^abc|defgh"), "");
        assert_eq!(lit(br"^\x{41}\1zzz"), "zzz");
        assert_eq!(lit(br"^\Qab\E"), "");
    }

    #[test]
    fn required_literal_prefilter_keeps_file_order() {
        let m = matcher(
            "Probe TCP NULL q||\n\
             match a m|^HTTP/1\\.[01] .*Server: Apache|s p/apache/\n\
             match b m|^HTTP/1\\.[01] .*server: nginx|si p/nginx/\n\
             match c m|^HTTP/1\\.[01] | p/generic/\n",
        );
        let name = |b: &[u8]| m.match_response(0, b, None).unwrap().product.unwrap();
        assert_eq!(name(b"HTTP/1.1 200 OK\r\nServer: Apache\r\n"), "apache");
        assert_eq!(name(b"HTTP/1.1 200 OK\r\nSERVER: NGINX\r\n"), "nginx");
        assert_eq!(name(b"HTTP/1.1 200 OK\r\nServer: apache\r\n"), "generic");
    }

    #[test]
    fn templates_expand() {
        let g: Vec<Option<&[u8]>> = vec![
            None,
            Some(b"2_4_1"),
            Some(b"a\x01b"),
            Some(b"\x01\x02"),
            None,
        ];
        let t = parse_template(br#"$SUBST(1,"_",".") $P(2) $I(3,">") $I(3,"<") [$4]"#).unwrap();
        assert_eq!(expand(&t, &g), "2.4.1 ab 258 513 []");
    }

    fn matcher(text: &str) -> Matcher {
        Matcher::new(parse(text.as_bytes()).unwrap())
    }

    #[test]
    fn first_hard_match_wins_softmatch_narrows() {
        let m = matcher(
            "Probe TCP NULL q||\n\
             softmatch ftp m/^220 /\n\
             match smtp m/^220 .*SMTP/ p/generic smtp/\n\
             match ftp m/^220 ProFTPD ([\\d.]+)/ p/ProFTPD/ v/$1/\n\
             match ftp m/^220 [A-Z]/ p/later/\n",
        );
        let hit = m
            .match_response(0, b"220 ProFTPD 1.3.8 Server\r\n", None)
            .unwrap();
        // The softmatch named ftp first; the smtp rule is skipped, the ProFTPD rule wins.
        assert_eq!((hit.service.as_str(), hit.soft), ("ftp", false));
        assert_eq!(hit.version.as_deref(), Some("1.3.8"));
        // An earlier softmatch for smtp: only smtp rules count, the ftp softmatch is passed over.
        let smtp = m
            .match_response(0, b"220 mx SMTP ready\r\n", Some("smtp"))
            .unwrap();
        assert_eq!(smtp.product.as_deref(), Some("generic smtp"));
        // Only the softmatch: the answer is soft.
        let soft = m.match_response(0, b"220 something\r\n", None).unwrap();
        assert_eq!((soft.service.as_str(), soft.soft), ("ftp", true));
        assert_eq!(soft.line, 2);
        assert!(m.match_response(0, b"hello", None).is_none());
        assert!(m.match_response(0, b"", None).is_none());
    }

    #[test]
    fn optional_group_that_did_not_match_leaves_the_field_out() {
        let m = matcher(
            "Probe TCP NULL q||\nmatch ftp m|^220 ProFTPD(?: ([\\w.]+))? Server| p/ProFTPD/ v/$1/ cpe:/a:proftpd:proftpd:$1/\n",
        );
        let hit = m
            .match_response(0, b"220 ProFTPD Server (Debian)\r\n", None)
            .unwrap();
        assert_eq!(hit.version, None);
        assert_eq!(hit.cpe, vec!["cpe:/a:proftpd:proftpd".to_string()]);
        let hit = m
            .match_response(0, b"220 ProFTPD 1.3.8 Server\r\n", None)
            .unwrap();
        assert_eq!(hit.version.as_deref(), Some("1.3.8"));
        assert_eq!(hit.cpe, vec!["cpe:/a:proftpd:proftpd:1.3.8".to_string()]);
    }

    #[test]
    fn fallback_and_null_rules_apply_to_other_probes() {
        let m = matcher(
            "Probe TCP NULL q||\nmatch ssh m/^SSH-2\\.0-/ p/ssh/\n\
             Probe TCP Other q|x|\nmatch a m/^A/\n\
             Probe TCP Third q|y|\nfallback Other\nmatch b m/^B/\n",
        );
        assert_eq!(m.match_response(2, b"A!", None).unwrap().service, "a");
        assert_eq!(
            m.match_response(2, b"SSH-2.0-x", None).unwrap().service,
            "ssh"
        );
        assert!(m.match_response(1, b"B", None).is_none());
    }

    #[test]
    fn caseless_prefix_and_high_bytes() {
        let m =
            matcher("Probe TCP NULL q||\nmatch web m|^http/1|i\nmatch bin m|^\\xff\\xfe\u{e9}|\n");
        assert_eq!(
            m.match_response(0, b"HTTP/1.1", None).unwrap().service,
            "web"
        );
        // A raw byte 0xe9 in the file (here written through a char) stands for itself, as
        // the file's line is read as bytes.
        assert!(m.skipped().is_empty());
    }

    #[test]
    fn catastrophic_backtracking_is_bounded_and_no_match() {
        let m = matcher("Probe TCP NULL q||\nmatch evil m/^(a+)+$/\n");
        let mut banner = vec![b'a'; 40];
        banner.push(b'!');
        assert!(m.match_response(0, &banner, None).is_none());
        // The limit is what stopped it: PCRE2 reports the match limit, not a plain no-match.
        let re = compile(b"^(a+)+$", false, false).unwrap();
        let err = re.is_match(&banner).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
