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

use std::sync::OnceLock;

use super::probes::{Endian, Piece, Probe, ProbeFile, Protocol, Template};

thread_local! {
    /// Per thread: which required literals of the probe being matched the response holds.
    static PRESENT: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// nmap's PCRE match limit: the backtracking steps one pattern may take on one banner.
pub const MATCH_LIMIT: u32 = 100_000;
/// nmap's PCRE recursion limit (depth of nested backtracking frames).
pub const DEPTH_LIMIT: u32 = 10_000;

/// What a rule matching a response tells: the service and its version fields, templates
/// expanded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceMatch {
    /// The service name (`ssh`, `http`, ...).
    pub service: String,
    /// Named by a `softmatch`: the service is known, the version is not.
    pub soft: bool,
    /// The product name (`p/.../`).
    pub product: Option<String>,
    /// The product's version (`v/.../`).
    pub version: Option<String>,
    /// Extra information (`i/.../`).
    pub info: Option<String>,
    /// The host's name, as the service gave it (`h/.../`).
    pub hostname: Option<String>,
    /// The operating system (`o/.../`).
    pub os: Option<String>,
    /// The device type (`d/.../`).
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
    /// Line of the rule in its file.
    pub line: usize,
    /// What PCRE2 said.
    pub error: String,
}

struct Rule {
    /// Compiled on first use (`None`: PCRE2 refused the pattern).
    regex: OnceLock<Option<pcre2::bytes::Regex>>,
    prefix: Vec<u8>,
    caseless: bool,
    /// Indices into the probe's `literals`: literals every match contains.
    literals: Box<[u32]>,
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
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("probes", &self.file.probes.len())
            .field("rules", &self.rules())
            .finish()
    }
}

impl Matcher {
    /// Prepares `file` for matching: the prefilters are built now, each pattern is compiled
    /// the first time a response reaches it (most never are: a full-size file's patterns,
    /// all compiled and JIT-ed, take tens of MiB). Patterns PCRE2 refuses never match; they
    /// are listed by [`Matcher::skipped`].
    pub fn new(file: ProbeFile) -> Matcher {
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
                let prefix = literal_prefix(&m.pattern);
                let lower_prefix = prefix.to_ascii_lowercase();
                let ids: Box<[u32]> = required_literals(&m.pattern)
                    .into_iter()
                    .map(|l| l.to_ascii_lowercase())
                    // Worth a lookup only if the prefix check does not already tell.
                    .filter(|l| !lower_prefix.windows(l.len()).any(|w| w == l.as_slice()))
                    .map(|l| {
                        *literal_ids.entry(l.clone()).or_insert_with(|| {
                            literals.push(l);
                            literals.len() as u32 - 1
                        })
                    })
                    .collect();
                rules.push(Rule {
                    regex: OnceLock::new(),
                    prefix,
                    caseless: m.caseless,
                    literals: ids,
                    index: index as u32,
                });
            }
            let literal_count = literals.len();
            let literals = (!literals.is_empty())
                .then(|| {
                    aho_corasick::AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        // The compact automaton: a DFA over thousands of literals costs MiB.
                        .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
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
        Matcher { file, compiled }
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

    /// Patterns that PCRE2 refuses (they never match). Compiles every pattern not compiled
    /// yet: for checking a file, not for the scan's path.
    pub fn skipped(&self) -> Vec<Skipped> {
        let mut out = Vec::new();
        for (p, cp) in self.compiled.iter().enumerate() {
            for rule in &cp.rules {
                if self.regex(p, rule).is_none() {
                    let m = &self.file.probes[p].matches[rule.index as usize];
                    out.push(Skipped {
                        line: m.line,
                        error: compile(&m.pattern, m.caseless, m.dotall)
                            .err()
                            .unwrap_or_default(),
                    });
                }
            }
        }
        out
    }

    /// Number of patterns PCRE2 accepts. Compiles every pattern not compiled yet, like
    /// [`Matcher::skipped`].
    pub fn compiled_rules(&self) -> usize {
        self.compiled
            .iter()
            .enumerate()
            .flat_map(|(p, cp)| cp.rules.iter().map(move |r| (p, r)))
            .filter(|&(p, r)| self.regex(p, r).is_some())
            .count()
    }

    /// Number of `match` and `softmatch` rules in the file.
    pub fn rules(&self) -> usize {
        self.compiled.iter().map(|p| p.rules.len()).sum()
    }

    /// Number of patterns compiled so far: each is compiled the first time a response gets
    /// past the prefilters to it, so a scan compiles only the few its services reach.
    pub fn compiled_so_far(&self) -> usize {
        self.compiled
            .iter()
            .flat_map(|p| &p.rules)
            .filter(|r| r.regex.get().is_some())
            .count()
    }

    /// The compiled pattern of `rule` (of probe `p`), compiling it on first use.
    fn regex<'a>(&self, p: usize, rule: &'a Rule) -> Option<&'a pcre2::bytes::Regex> {
        rule.regex
            .get_or_init(|| {
                let m = &self.file.probes[p].matches[rule.index as usize];
                compile(&m.pattern, m.caseless, m.dotall).ok()
            })
            .as_ref()
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

    /// The probes whose rules an answer to `probe` is matched against, in order: `probe`
    /// itself, then its fallbacks (explicit ones, then NULL).
    fn tried_for(&self, probe: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(probe).chain(self.compiled[probe].fallback.iter().copied())
    }

    /// Whether probe `probe` (or its fallbacks) has a hard match for `service`: after a
    /// softmatch only such probes are worth sending.
    pub fn can_name(&self, probe: usize, service: &str) -> bool {
        self.tried_for(probe).any(|p| {
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
        self.search(probe, response, soft_service, true)
    }

    /// The rules (their lines) the prefilters let through to PCRE2 for `response` to probe
    /// `probe` (its rules, its fallbacks' and NULL's), and how many rules there are: what a
    /// banner costs, for benchmarks.
    pub fn prefilter_survivors(&self, probe: usize, response: &[u8]) -> (Vec<usize>, usize) {
        let (mut through, mut all) = (Vec::new(), 0);
        for p in self.tried_for(probe) {
            let cp = &self.compiled[p];
            all += cp.rules.len();
            let mut present = vec![0u64; cp.literal_count.div_ceil(64)];
            if let Some(ac) = &cp.literals {
                for hit in ac.find_overlapping_iter(response) {
                    let i = hit.pattern().as_usize();
                    present[i / 64] |= 1 << (i % 64);
                }
            }
            let candidates = match response.first() {
                Some(&b) => &cp.buckets[b as usize],
                None => &cp.empty,
            };
            through.extend(
                candidates
                    .iter()
                    .map(|&ri| &cp.rules[ri as usize])
                    .filter(|r| starts_with(response, &r.prefix, r.caseless))
                    .filter(|r| {
                        cp.literals.is_none()
                            || r.literals
                                .iter()
                                .all(|&l| present[l as usize / 64] & (1 << (l % 64)) != 0)
                    })
                    .map(|r| self.file.probes[p].matches[r.index as usize].line),
            );
        }
        (through, all)
    }

    /// [`Matcher::match_response`] without the prefilters: every rule in order through
    /// PCRE2. The reference the prefilters are tested against; far slower.
    pub fn match_response_exhaustive(
        &self,
        probe: usize,
        response: &[u8],
        soft_service: Option<&str>,
    ) -> Option<ServiceMatch> {
        self.search(probe, response, soft_service, false)
    }

    fn search(
        &self,
        probe: usize,
        response: &[u8],
        soft_service: Option<&str>,
        filtered: bool,
    ) -> Option<ServiceMatch> {
        let mut soft: Option<ServiceMatch> = None;
        for p in self.tried_for(probe) {
            let hit = if filtered {
                self.match_in(p, response, soft_service, &mut soft)
            } else {
                let all: Vec<u32> = (0..self.compiled[p].rules.len() as u32).collect();
                self.try_rules(p, &all, response, None, soft_service, &mut soft)
            };
            if hit.is_some() {
                return hit;
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
        PRESENT.with_borrow_mut(|present| {
            let mut literals = Literals {
                ac: cp.literals.as_ref(),
                count: cp.literal_count,
                response,
                found: present,
                scanned: false,
            };
            self.try_rules(
                p,
                candidates,
                response,
                Some(&mut literals),
                soft_service,
                soft,
            )
        })
    }

    /// Tries `candidates` (rules of probe `p`) in order; with `present` (the required
    /// literals found in `response`), the prefilters first.
    fn try_rules(
        &self,
        p: usize,
        candidates: &[u32],
        response: &[u8],
        mut literals: Option<&mut Literals<'_>>,
        soft_service: Option<&str>,
        soft: &mut Option<ServiceMatch>,
    ) -> Option<ServiceMatch> {
        let cp = &self.compiled[p];
        for &ri in candidates {
            let rule = &cp.rules[ri as usize];
            if let Some(literals) = literals.as_deref_mut() {
                if !starts_with(response, &rule.prefix, rule.caseless)
                    || !literals.all_present(&rule.literals)
                {
                    continue;
                }
            }
            let m = &self.file.probes[p].matches[rule.index as usize];
            if let Some(s) = soft_service.or(soft.as_ref().map(|s| s.service.as_str())) {
                if m.soft || m.service != s {
                    continue;
                }
            }
            let Some(regex) = self.regex(p, rule) else {
                continue;
            };
            // An error here is the match or depth limit: a pattern that backtracks past the
            // bound counts as no match.
            if !regex.is_match(response).unwrap_or(false) {
                continue;
            }
            let hit = self.expand(p, regex, rule.index, response);
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

    fn expand(
        &self,
        p: usize,
        regex: &pcre2::bytes::Regex,
        index: u32,
        response: &[u8],
    ) -> ServiceMatch {
        let m = &self.file.probes[p].matches[index as usize];
        let mut locs = regex.capture_locations();
        let found = regex
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

/// The required literals of one probe's rules found in a response: scanned for (one
/// Aho-Corasick pass) only when a rule past the prefix check first asks.
struct Literals<'a> {
    ac: Option<&'a aho_corasick::AhoCorasick>,
    count: usize,
    response: &'a [u8],
    /// A bit per literal, kept per thread so that matching allocates nothing once warm.
    found: &'a mut Vec<u64>,
    scanned: bool,
}

impl Literals<'_> {
    fn all_present(&mut self, ids: &[u32]) -> bool {
        let Some(ac) = self.ac else {
            return true;
        };
        if ids.is_empty() {
            return true;
        }
        if !self.scanned {
            self.scanned = true;
            self.found.clear();
            self.found.resize(self.count.div_ceil(64), 0);
            for hit in ac.find_overlapping_iter(self.response) {
                let i = hit.pattern().as_usize();
                self.found[i / 64] |= 1 << (i % 64);
            }
        }
        ids.iter()
            .all(|&l| self.found[l as usize / 64] & (1 << (l % 64)) != 0)
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

/// Most required literals kept per rule (the longest ones).
const MAX_LITERALS: usize = 4;

/// Runs of literal bytes (each at least `MIN_LITERAL` long, longest first, at most
/// `MAX_LITERALS`) that every match of `pattern` contains. Groups are read into when they
/// must take part (not made optional by `?`, `*`, `{0`; no `|` of their own; not a negative
/// look-around); anything beyond this simple reading (`\Q`, named references, `(?x)`, a
/// pattern with a top-level `|`) yields none. They are looked up ASCII-caselessly, which is
/// always safe: a caseless lookup finds a superset.
pub fn required_literals(pattern: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if has_top_level_alternation(pattern) || !collect_required(pattern, &mut out) {
        return Vec::new();
    }
    out.retain(|l| l.len() >= MIN_LITERAL);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out.truncate(MAX_LITERALS);
    out
}

/// The longest of [`required_literals`] (empty when there is none).
pub fn required_literal(pattern: &[u8]) -> Vec<u8> {
    required_literals(pattern)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Pushes onto `out` every maximal literal run of the sequence `p` (which has no `|` at its
/// own level) and of the groups in it that must take part. False when `p` is beyond this
/// reading: then nothing found may be trusted.
fn collect_required(p: &[u8], out: &mut Vec<Vec<u8>>) -> bool {
    let mut cur: Vec<u8> = Vec::new();
    let flush = |cur: &mut Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    let mut i = 0;
    while i < p.len() {
        let (byte, used) = match p[i] {
            b'\\' => {
                let rest = &p[i + 1..];
                match rest.first() {
                    None => break,
                    Some(b'Q' | b'E' | b'k' | b'g' | b'c' | b'p' | b'P' | b'o' | b'N') => {
                        return false;
                    }
                    Some(b'x') if rest.get(1) == Some(&b'{') => {
                        let Some(end) = rest.iter().position(|&b| b == b'}') else {
                            return false;
                        };
                        flush(&mut cur, out);
                        i += end + 2;
                        continue;
                    }
                    Some(d) if d.is_ascii_digit() && *d != b'0' => {
                        // A back-reference.
                        flush(&mut cur, out);
                        i += 1 + rest.iter().take_while(|b| b.is_ascii_digit()).count();
                        continue;
                    }
                    _ => {}
                }
                match escaped_literal(rest) {
                    Some((b, n)) => (b, n + 1),
                    None => {
                        // \d, \s, \b, ...: not a literal byte.
                        flush(&mut cur, out);
                        i += 2;
                        continue;
                    }
                }
            }
            b'[' => {
                flush(&mut cur, out);
                let Some(end) = class_end(p, i) else {
                    return false;
                };
                i = end + 1;
                continue;
            }
            b'(' => {
                flush(&mut cur, out);
                let Some(end) = group_end(p, i) else {
                    return false;
                };
                let inner = &p[i + 1..end];
                let optional = match p.get(end + 1) {
                    Some(b'?' | b'*') => true,
                    Some(b'{') => p.get(end + 2) == Some(&b'0') || p.get(end + 2) == Some(&b','),
                    _ => false,
                };
                let body = match group_body(inner) {
                    Err(()) => return false,
                    Ok(body) => body,
                };
                if let Some(body) = body
                    && !optional
                    && !has_top_level_alternation(body)
                    && !collect_required(body, out)
                {
                    return false;
                }
                i = end + 1;
                continue;
            }
            b'{' => {
                flush(&mut cur, out);
                let quant = p[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || **b == b',')
                    .count();
                i += 1;
                if quant > 0 && p.get(i + quant) == Some(&b'}') {
                    i += quant + 1;
                }
                continue;
            }
            b'.' | b'^' | b'$' | b'?' | b'*' | b'+' | b'|' | b')' | b']' => {
                flush(&mut cur, out);
                i += 1;
                continue;
            }
            b => (b, 1),
        };
        match p.get(i + used) {
            Some(b'?' | b'*' | b'{') => flush(&mut cur, out),
            Some(b'+') => {
                cur.push(byte);
                flush(&mut cur, out);
            }
            _ => cur.push(byte),
        }
        i += used;
    }
    flush(&mut cur, out);
    true
}

/// What of a group (the text between its parentheses) every match of it contains: its
/// body, or `None` for a group that consumes nothing required (a negative look-around, a
/// comment, an inline option, a conditional, a verb). `Err` for what this reading does not
/// follow (`(?x)`, recursion).
fn group_body(inner: &[u8]) -> Result<Option<&[u8]>, ()> {
    if inner.first() == Some(&b'*') {
        return Ok(None);
    }
    if inner.first() != Some(&b'?') {
        return Ok(Some(inner));
    }
    let rest = &inner[1..];
    match rest {
        [b'|', ..] => Ok(None),
        [b':' | b'>' | b'=', ..] => Ok(Some(&rest[1..])),
        [b'<', b'=', ..] => Ok(Some(&rest[2..])),
        [b'!', ..] | [b'<', b'!', ..] | [b'#', ..] | [b'(', ..] => Ok(None),
        [b'<' | b'\'' | b'P', ..] => {
            // A named group: `(?<name>…)`, `(?'name'…)`, `(?P<name>…)`; `(?P=name)` and
            // `(?P>name)` refer to one.
            let (open, close) = match rest {
                [b'P', b'<', ..] => (2, b'>'),
                [b'<', ..] => (1, b'>'),
                [b'\'', ..] => (1, b'\''),
                _ => return Err(()),
            };
            let name_end = rest[open..].iter().position(|&b| b == close).ok_or(())?;
            Ok(Some(&rest[open + name_end + 1..]))
        }
        _ => {
            // Inline options: `(?i)`, `(?-s:…)`; anything else (`(?R)`, `(?1)`, ...) is
            // beyond this reading.
            let n = rest.iter().take_while(|b| b"imsnxU-^J".contains(b)).count();
            if n == 0 || rest[..n].contains(&b'x') {
                return Err(());
            }
            match rest.get(n) {
                None => Ok(None),
                Some(b':') => Ok(Some(&rest[n + 1..])),
                Some(_) => Err(()),
            }
        }
    }
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
        assert_eq!(lit(br"^a(?i)bcdef"), "bcdef");
        assert_eq!(lit(br"^a(?x) bcdef"), "");
        assert_eq!(lit(br"^abc|defgh"), "");
        assert_eq!(lit(br"^\x{41}\1zzz"), "zzz");
        assert_eq!(lit(br"^\Qab\E"), "");
    }

    #[test]
    fn required_literals_read_into_groups_that_must_match() {
        let lits = |p: &[u8]| -> Vec<String> {
            required_literals(p)
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        };
        assert_eq!(
            lits(br"^HTTP/1\.[01] \d+ .*\r\nServer: (Apache)/([\d.]+) \(Debian\)"),
            ["\r\nServer: ", " (Debian)", "HTTP/1.", "Apache"]
        );
        // Optional groups, groups with their own `|` and negative look-arounds do not count;
        // positive look-arounds, atomic and named groups, and `+` on a group do.
        assert_eq!(
            lits(br"^x(?:optional)?y(?:one|two)z(?!never)"),
            Vec::<String>::new()
        );
        assert_eq!(
            lits(br"(?=look)(?>atomic)(?<name>named)(?:plus)+(?i:fold)"),
            ["atomic", "named", "fold", "look", "plus"][..4]
        );
        assert_eq!(lits(br"(?|ab|cd)efg"), ["efg"]);
        assert_eq!(lits(br"(?1)abc"), Vec::<String>::new());
        // A group made optional by `{0,` does not count; `{2}` does.
        assert_eq!(lits(br"(?:abc){0,2}(?:defg){2}"), ["defg"]);
    }

    proptest::proptest! {
        /// The prefilters (first byte, literal prefix, required literals) only ever skip rules
        /// that could not match: on banners stitched from the fragments FastPort's own rules
        /// look for, the answer is the exhaustive one's.
        #[test]
        fn prefilters_never_change_the_answer(
            parts in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..8),
            probe in 0usize..64,
        ) {
            let m = &*BUILTIN;
            let probe = probe % m.probes().len();
            let banner: Vec<u8> = parts.iter().flat_map(|&i| FRAGMENTS[i].iter().copied()).collect();
            proptest::prop_assert_eq!(
                m.match_response(probe, &banner, None),
                m.match_response_exhaustive(probe, &banner, None)
            );
        }
    }

    static BUILTIN: std::sync::LazyLock<Matcher> =
        std::sync::LazyLock::new(crate::service::builtin);

    const FRAGMENTS: &[&[u8]] = &[
        b"SSH-2.0-",
        b"OpenSSH_9.2p1",
        b" Debian-2",
        b"\r\n",
        b"220 ",
        b"(vsFTPd 3.0.3)",
        b"ESMTP ",
        b"Exim 4.96",
        b"Postfix",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 404 Not Found",
        b"Server: ",
        b"server: ",
        b"nginx/1.22.1",
        b"NGINX",
        b"Apache/2.4.62 (Debian)",
        b"<title>",
        b"</title>",
        b"SimpleHTTP/0.6 Python/3.11.7",
        b"+OK ",
        b"* OK ",
        b"Dovecot (Debian) ready.",
        b"$120",
        b"# Server",
        b"redis_version:7.0.15",
        b"VERSION 1.6.18",
        b"\x20\x02\0\0",
        b"\x90\x03\0\x01\0",
        b"\x31\x2d\0\x13$SYS/broker/version",
        b"mosquitto version 2.0.11",
        b"R\0\0\0\x08\0\0\0\0",
        b"E\0\0\0dSFATAL\0",
        b"J\0\0\0\x0a",
        b"5.5.5-10.11.19-MariaDB",
        b"\0",
        b"\x16\x03\x03",
        b"\x15\x03\x03\0\x02\x02\x0a",
        b"RFB 003.008\n",
        b"\xff\xfd\x18",
        b"login: ",
        b" ",
        b"x",
    ];

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
