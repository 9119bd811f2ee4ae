//! Human text, in the spirit of the tool FastPort grew from: a line per
//! shown port as soon as it is found (`[OPEN] 127.0.0.1:22 ssh`), then, at
//! the end, each host's ports sorted in nmap's shape (`PORT STATE SERVICE`
//! under a "Not shown: 1019 closed tcp ports (conn-refused)" line), then a
//! summary of counts, rate and latency percentiles.
//!
//! With `-sV` (or `--banners`) a line names what was found on the port
//! (`[OPEN] 127.0.0.1:22 ssh OpenSSH 9.2p1 (protocol 2.0)`; with
//! `--banners`, the table's name and the banner quoted, escaped) and the
//! table gains nmap's VERSION column. A port nothing named keeps the
//! table's name. Everything a service said is escaped already
//! ([`crate::service::escape`]): no byte of it reaches a terminal raw.
//!
//! Written to a file (`-oN`), the text starts with the command line and the
//! date and ends with nmap's "done at" line, as nmap's normal output does:
//! reports quote them. On a terminal the states are coloured, unless
//! `NO_COLOR` is set; never in a file or a pipe.

use std::io::{self, Write};
use std::time::SystemTime;

use super::ascii::{digits, pad, put_decimal, write_decimal, write_ip, write_target};
use super::dates::ctime;
use super::hosts::{HostExtras, HostRecord, PendingHosts};
use super::{Format, HeldHost, RunInfo, Sink, Writer};
use crate::classify::{LocalError, Reason, State};
use crate::config::Show;
use crate::probe::ProbeResult;
use crate::stats::Summary;
use crate::targets::{SERVICES, service_name};

/// How the text looks where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextStyle {
    /// ANSI colours (a terminal without `NO_COLOR`).
    pub color: bool,
    /// nmap's `#` header and footer lines (`-oN FILE`).
    pub header: bool,
}

impl TextStyle {
    /// Colour when `terminal` and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    pub fn color_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        terminal && no_color.is_none_or(|v| v.is_empty())
    }
}

pub struct TextSink {
    out: Writer,
    show: Show,
    reason: bool,
    style: TextStyle,
    run: RunInfo,
    now: fn() -> SystemTime,
    begun: bool,
    /// Hosts whose results are still coming (bounded by the probe order's
    /// blocks, as for the XML).
    pending: PendingHosts,
    /// Complete hosts with ports to show: the end-of-run table, in the
    /// order they completed. Hosts with nothing to show are only counted,
    /// so a sweep of a /8 that answers everywhere holds no memory per
    /// address.
    table: Vec<TableRow>,
    /// The table's shown ports, every host's in one buffer (a row's end
    /// where the next row's start): no allocation per host.
    ports: Vec<(u16, Reason)>,
    names: PortNames,
}

/// What the end table prints of one complete host, taken from its
/// [`HostRecord`] when it completes (88 bytes instead of the record's
/// 136 and its vector of ports: with `--show all` the table has a row
/// for every host that answered).
#[derive(Debug)]
struct TableRow {
    addr: std::net::IpAddr,
    up: bool,
    middlebox: bool,
    /// Whether a probe answered, so `latency_us` means something.
    answered: bool,
    /// Results still to come when the run stopped (zero: complete).
    remaining: u32,
    reasons: [u32; Reason::COUNT],
    /// The smoothed round-trip time, microseconds.
    latency_us: u64,
    /// Where the host's shown ports end in [`TextSink::ports`].
    ports_end: usize,
    /// `-sV`/`--banners`: its services.
    extras: Option<Box<HostExtras>>,
}

impl TableRow {
    fn results(&self) -> u64 {
        self.reasons.iter().map(|&n| u64::from(n)).sum()
    }
}

/// Hosts whose table rows are reserved up front (a /16: 5.8 MB of rows),
/// and shown ports (4 MB).
const TABLE_RESERVE_HOSTS: u64 = 1 << 16;
const TABLE_RESERVE_PORTS: usize = 1 << 20;

/// Flushed while the table is written, host by host, from this size on:
/// the table of a /16 is megabytes, and buffering it whole only costs
/// memory (the writer keeps whole hosts either way).
const TABLE_FLUSH_BYTES: usize = 64 * 1024;

impl TextSink {
    pub fn new(out: Writer, show: Show, reason: bool, run: &RunInfo, style: TextStyle) -> Self {
        // Room for the table of a scan of up to TABLE_RESERVE_HOSTS hosts
        // showing every port: only address space until rows are written,
        // and no copy of the table each time it doubles.
        let blocks = run.schedule.blocks();
        let hosts = blocks.total() / blocks.ports_per_host();
        let rows = usize::try_from(hosts.min(TABLE_RESERVE_HOSTS)).unwrap_or(0);
        let per_host = usize::try_from(blocks.ports_per_host()).unwrap_or(0);
        TextSink {
            // A continued file (a resume) has its header already.
            begun: out.continued(),
            out,
            show,
            reason,
            style,
            run: run.clone(),
            now: SystemTime::now,
            // A resumed run takes back the hosts the interrupted one held,
            // so each is written once, whole (as `-oX` and `-oG` do).
            pending: PendingHosts::for_run(run, show, false, |_| None),
            table: Vec::with_capacity(rows),
            ports: Vec::with_capacity(rows.saturating_mul(per_host).min(TABLE_RESERVE_PORTS)),
            names: PortNames::new(),
        }
    }

    /// The same sink with a fixed clock, for exact tests.
    #[cfg(test)]
    fn with_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.now = now;
        self
    }

    fn begin(&mut self) -> io::Result<()> {
        if self.begun {
            return Ok(());
        }
        self.begun = true;
        if self.style.header {
            writeln!(
                self.out,
                "# FastPort {} scan initiated {} as: {}\n# {}",
                env!("CARGO_PKG_VERSION"),
                ctime(self.run.started),
                self.run.command_line.replace(['\n', '\r'], " "),
                self.run.order,
            )?;
        }
        Ok(())
    }

    /// Keeps a complete host's record for the table if it has ports to
    /// show (with `--open`: an open port).
    fn keep(&mut self, record: HostRecord) {
        let keep = if self.run.open_only {
            record.has_open_port()
        } else {
            !record.shown.is_empty()
        };
        if !keep {
            self.pending.recycle(record.shown);
            return;
        }
        self.ports.extend_from_slice(&record.shown);
        let latency = record.rtt_us();
        self.table.push(TableRow {
            addr: record.addr,
            up: record.status().up,
            middlebox: record.middlebox(),
            answered: latency.is_some(),
            remaining: record.remaining,
            reasons: record.reasons,
            latency_us: latency.map_or(0, |(srtt, _)| srtt),
            ports_end: self.ports.len(),
            extras: record.extras,
        });
        self.pending.recycle(record.shown);
    }

    /// Each host with ports to show, by address, its ports sorted, in
    /// nmap's shape.
    fn write_table(&mut self) -> io::Result<()> {
        for record in self.pending.drain_partial() {
            self.keep(record);
        }
        let table = std::mem::take(&mut self.table);
        let ports = std::mem::take(&mut self.ports);
        // Sorted by address through a small key per host, not by moving
        // the rows: the place in `table` breaks ties as a stable sort
        // of the rows would.
        let mut order: Vec<(std::net::IpAddr, usize)> =
            table.iter().enumerate().map(|(i, h)| (h.addr, i)).collect();
        order.sort_unstable();
        for &(_, i) in &order {
            let h = &table[i];
            let start = i.checked_sub(1).map_or(0, |prev| table[prev].ports_end);
            let shown = &ports[start..h.ports_end];
            let ip = h.addr;
            // The lines of every host from bytes (a /16's table has 65 536
            // of them); the rare ones through `writeln!`.
            self.out.write_all(b"\nFastPort scan report for ")?;
            match self.run.names.get(ip) {
                Some(name) => write!(self.out, "{name} ({ip})")?,
                None => write_ip(&mut self.out, ip)?,
            }
            match (h.up, h.answered) {
                (true, true) => {
                    self.out.write_all(b"\nHost is up (")?;
                    Seconds6(h.latency_us).write(&mut self.out)?;
                    self.out.write_all(b"s latency).\n")?;
                }
                (true, false) => self.out.write_all(b"\nHost is up.\n")?,
                (false, _) => self.out.write_all(b"\nHost did not answer.\n")?,
            }
            if h.remaining > 0 {
                writeln!(
                    self.out,
                    "Incomplete: {} of {} ports scanned (interrupted).",
                    h.results(),
                    h.results() + u64::from(h.remaining)
                )?;
            }
            if h.middlebox {
                writeln!(
                    self.out,
                    "Note: all {} ports answered syn-ack: likely a middlebox answering for the host, not open services.",
                    h.results()
                )?;
            }
            let hidden = not_shown(&h.reasons, self.show);
            if !hidden.is_empty() {
                writeln!(self.out, "Not shown: {hidden}")?;
            }
            let width = shown
                .iter()
                .map(|&(p, _)| digits(u64::from(p)) + 4)
                .max()
                .unwrap_or(0)
                .max(4);
            let state_width = shown
                .iter()
                .map(|(_, r)| r.state().as_str().len())
                .max()
                .unwrap_or(5)
                .max(5);
            let versions = self.run.service_detection;
            let service = |port: u16| h.extras.as_ref().and_then(|e| e.service(port));
            let service_of = |port: u16| match service(port).and_then(|s| s.name()) {
                Some(name) => name,
                None => service_name(port).unwrap_or("unknown").to_owned(),
            };
            let service_width = if versions {
                shown
                    .iter()
                    .map(|&(p, _)| service_of(p).len())
                    .max()
                    .unwrap_or(7)
                    .max(7)
            } else {
                0
            };
            // nmap's order with -sV: REASON before VERSION.
            let reason_width = shown
                .iter()
                .map(|(_, r)| r.as_str().len())
                .max()
                .unwrap_or(6)
                .max(6);
            if versions {
                write!(
                    self.out,
                    "{:<width$} {:<state_width$} {:<service_width$}",
                    "PORT", "STATE", "SERVICE"
                )?;
                if self.reason {
                    write!(self.out, " {:<reason_width$}", "REASON")?;
                }
                writeln!(self.out, " VERSION")?;
            } else {
                self.out.write_all(b"PORT")?;
                pad(&mut self.out, width.saturating_sub(4) + 1)?;
                self.out.write_all(b"STATE")?;
                pad(&mut self.out, state_width.saturating_sub(5) + 1)?;
                self.out.write_all(b"SERVICE")?;
                if self.reason {
                    self.out.write_all(b" REASON")?;
                }
                self.out.write_all(b"\n")?;
            }
            for &(port, reason) in shown {
                let state = reason.state();
                if versions {
                    // The state cell (padded inside its colour) and the
                    // port cell, written without a String each.
                    let padded = Painted {
                        color: self.style.color,
                        state,
                        text: state.as_str(),
                    };
                    let padded = format_args!("{padded:<state_width$}");
                    let version = service(port).map(|s| s.version_line()).unwrap_or_default();
                    let mut cell = format!("{:<service_width$}", service_of(port));
                    if self.reason {
                        cell.push_str(&format!(" {:<reason_width$}", reason.as_str()));
                    }
                    cell.push(' ');
                    cell.push_str(&version);
                    writeln!(
                        self.out,
                        "{:<width$} {} {}",
                        PortTcp(port),
                        padded,
                        cell.trim_end(),
                    )?;
                    continue;
                }
                let row = PortRow {
                    port,
                    width,
                    state,
                    state_width,
                    color: self.style.color,
                    name: self.names.get(port).unwrap_or("unknown"),
                    reason: self.reason.then_some(reason),
                };
                row.write(&mut self.out)?;
            }
            if self.out.buffered() >= TABLE_FLUSH_BYTES {
                self.out.flush()?;
            }
        }
        Ok(())
    }
}

/// One line of the table without `-sV`: `22/tcp   open  ssh`, with the
/// reason after it under `--reason`. Written piece by piece, the bytes
/// of `format!("{:<width$} {:<state_width$} {name}", ...)` (the state
/// padded inside its colour codes) without the formatting machinery: a
/// table of a /16 has a line for each of its hundreds of thousands of
/// shown ports.
struct PortRow<'a> {
    port: u16,
    width: usize,
    state: State,
    state_width: usize,
    color: bool,
    name: &'a str,
    reason: Option<Reason>,
}

impl PortRow<'_> {
    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut cell = [0u8; 9];
        let len = put_decimal(&mut cell, u64::from(self.port));
        cell[len..len + 4].copy_from_slice(b"/tcp");
        out.write_all(&cell[..len + 4])?;
        pad(out, self.width.saturating_sub(len + 4) + 1)?;
        if self.color {
            out.write_all(b"\x1b[")?;
            out.write_all(color_code(self.state).as_bytes())?;
            out.write_all(b"m")?;
        }
        let state = self.state.as_str();
        out.write_all(state.as_bytes())?;
        pad(out, self.state_width.saturating_sub(state.len()))?;
        if self.color {
            out.write_all(b"\x1b[0m")?;
        }
        out.write_all(b" ")?;
        out.write_all(self.name.as_bytes())?;
        if let Some(reason) = self.reason {
            out.write_all(b" ")?;
            out.write_all(reason.as_str().as_bytes())?;
        }
        out.write_all(b"\n")
    }
}

/// Every port's IANA name, by port: [`service_name`] as one index
/// instead of a binary search over thousands of names, for output that
/// names every result twice (its live line and its table line).
struct PortNames(Box<[u16]>);

impl PortNames {
    /// No name: no entry of [`SERVICES`] has this index.
    const NONE: u16 = u16::MAX;

    fn new() -> PortNames {
        let mut by_port = vec![PortNames::NONE; usize::from(u16::MAX) + 1];
        for (i, &(port, _)) in SERVICES.iter().enumerate().rev() {
            by_port[usize::from(port)] = u16::try_from(i).unwrap_or(PortNames::NONE);
        }
        PortNames(by_port.into_boxed_slice())
    }

    fn get(&self, port: u16) -> Option<&'static str> {
        let i = self.0[usize::from(port)];
        SERVICES.get(usize::from(i)).map(|&(_, name)| name)
    }
}

/// Microseconds as seconds with six decimals: the text of
/// `format!("{:.6}", us as f64 / 1e6)` (the quotient is within far less
/// than half a microsecond of the exact value, so it rounds to it),
/// without formatting a float.
struct Seconds6(u64);

impl Seconds6 {
    /// `format!("{}.{:06}", us / 1_000_000, us % 1_000_000)`, from bytes.
    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        write_decimal(out, self.0 / 1_000_000)?;
        let mut fraction = [b'.', b'0', b'0', b'0', b'0', b'0', b'0'];
        let micros = self.0 % 1_000_000;
        let len = digits(micros);
        put_decimal(&mut fraction[7 - len..], micros);
        out.write_all(&fraction)
    }
}

/// `tag(state)`, in its colour codes when `color`: the bytes of
/// [`Painted`] without a width.
fn write_tag(out: &mut impl Write, color: bool, state: State) -> io::Result<()> {
    if color {
        out.write_all(b"\x1b[")?;
        out.write_all(color_code(state).as_bytes())?;
        out.write_all(b"m")?;
        out.write_all(tag(state).as_bytes())?;
        out.write_all(b"\x1b[0m")
    } else {
        out.write_all(tag(state).as_bytes())
    }
}

/// `1019 closed tcp ports (conn-refused), 2 filtered tcp ports (no-response)`:
/// the states not shown, each with its most frequent reason.
fn not_shown(counts: &[u32; Reason::COUNT], show: Show) -> String {
    let mut parts = Vec::new();
    for state in State::ALL {
        if show.contains(state) {
            continue;
        }
        let of_state = || Reason::ALL.iter().filter(move |r| r.state() == state);
        let n: u64 = of_state().map(|r| u64::from(counts[r.index()])).sum();
        if n == 0 {
            continue;
        }
        let main = of_state()
            .max_by_key(|r| (counts[r.index()], std::cmp::Reverse(r.index())))
            .copied()
            .unwrap_or(Reason::NoResponse);
        let ports = if n == 1 { "port" } else { "ports" };
        parts.push(format!("{n} {} tcp {ports} ({main})", state.as_str()));
    }
    parts.join(", ")
}

/// Characters of a banner a live line shows (the JSON, XML and CSV
/// outputs keep it whole, up to its bound).
const BANNER_CHARS: usize = 160;

/// `s` cut to `max` characters, `...` saying so. The banner is escaped
/// already (ASCII), so the cut cannot split an escape into something raw.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

/// `text` in its state's colour when `color` (a terminal), written
/// straight to the output: no String per line.
struct Painted<'a> {
    color: bool,
    state: State,
    text: &'a str,
}

impl std::fmt::Display for Painted<'_> {
    /// A width pads the text inside the colour codes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.color {
            return f.pad(self.text);
        }
        write!(f, "\x1b[{}m", color_code(self.state))?;
        f.pad(self.text)?;
        f.write_str("\x1b[0m")
    }
}

/// `22/tcp`, padded as a `format!("{port}/tcp")` would be, from a buffer
/// on the stack.
struct PortTcp(u16);

impl std::fmt::Display for PortTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 9];
        let len = put_decimal(&mut buf, u64::from(self.0));
        buf[len..len + 4].copy_from_slice(b"/tcp");
        f.pad(std::str::from_utf8(&buf[..len + 4]).map_err(|_| std::fmt::Error)?)
    }
}

fn color_code(state: State) -> &'static str {
    match state {
        State::Open => "32",
        State::Closed => "31",
        State::Filtered => "33",
    }
}

fn tag(state: State) -> &'static str {
    match state {
        State::Open => "[OPEN]",
        State::Closed => "[CLOSED]",
        State::Filtered => "[FILTERED]",
    }
}

impl Sink for TextSink {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        self.begin()?;
        let ip = r.target.ip();
        let started = self.run.started;
        if let Some(record) = self
            .pending
            .add(r, shown, || super::dates::unix_secs(started))
        {
            self.keep(record);
        }
        if !shown {
            return Ok(());
        }
        let state = r.reason.state();
        let table = self.names.get(r.target.port()).unwrap_or("unknown");
        let tag = Painted {
            color: self.style.color,
            state,
            text: tag(state),
        };
        match r.service.as_deref() {
            Some(found) if found.service.is_some() => {
                write!(self.out, "{tag} {} {}", r.target, found.summary())?
            }
            Some(found) => match found.banner.as_deref() {
                Some(banner) => write!(
                    self.out,
                    "{tag} {} {table} \"{}\"",
                    r.target,
                    clip(banner, BANNER_CHARS)
                )?,
                None => write!(self.out, "{tag} {} {table}", r.target)?,
            },
            _ => {
                // The common line, `[CLOSED] 127.0.3.4:5432 postgresql`,
                // from bytes: one per shown result.
                write_tag(&mut self.out, self.style.color, state)?;
                self.out.write_all(b" ")?;
                write_target(&mut self.out, r.target)?;
                self.out.write_all(b" ")?;
                self.out.write_all(table.as_bytes())?;
            }
        }
        if let Some(name) = self.run.names.get(ip) {
            write!(self.out, " ({name})")?;
        }
        if self.reason {
            self.out.write_all(b" reason=")?;
            self.out.write_all(r.reason.as_str().as_bytes())?;
            if let Some(us) = r.rtt_us {
                self.out.write_all(b" rtt=")?;
                write_decimal(&mut self.out, u64::from(us))?;
                self.out.write_all(b"us")?;
            }
        }
        self.out.write_all(b"\n")
    }

    fn warm(&mut self, batch: &[ProbeResult]) {
        self.pending.warm(batch);
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Stopped to be resumed: the hosts in progress stay out of the table
    /// (their live lines are written) and go to the resume file; the
    /// resumed run writes each of them once, whole.
    fn hold(&mut self) {
        self.pending.hold();
    }

    fn enter_segment(&mut self, schedule: &crate::order::Schedule) {
        self.pending.enter_segment(schedule);
    }

    fn take_held(&mut self) -> Option<(Format, Vec<HeldHost>, [u64; 2])> {
        let (pending, counts) = self.pending.take_held()?;
        Some((Format::Text, pending, counts))
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        self.begin()?;
        self.write_table()?;
        let (_, up) = self.pending.counts();
        write_summary(&mut self.out, summary)?;
        writeln!(
            self.out,
            "  hosts up: {up} of {} (answered on at least one port)",
            summary.hosts
        )?;
        let middleboxes = self.pending.middleboxes();
        if middleboxes > 0 {
            writeln!(
                self.out,
                "  hosts answering syn-ack on every port (likely middleboxes): {middleboxes}"
            )?;
        }
        if self.run.unresolved > 0 {
            writeln!(
                self.out,
                "  names not resolved (skipped): {}",
                self.run.unresolved
            )?;
        }
        if let Some(ranking) = &self.run.ranking {
            writeln!(self.out, "  port ranking: {ranking}")?;
        }
        if self.style.header {
            writeln!(
                self.out,
                "# FastPort {} at {} -- {} IP address{} ({up} host{} up) scanned in {:.2} seconds",
                if summary.interrupted {
                    "interrupted"
                } else {
                    "done"
                },
                ctime((self.now)()),
                summary.hosts,
                if summary.hosts == 1 { "" } else { "es" },
                if up == 1 { "" } else { "s" },
                summary.elapsed.as_secs_f64(),
            )?;
        }
        self.out.flush()
    }
}

/// The end-of-run summary: what was scanned, how fast, what was found, and
/// how long answers took.
pub fn write_summary(w: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let st = &s.stats;
    writeln!(w)?;
    let hosts = if s.hosts == 1 { "host" } else { "hosts" };
    write!(
        w,
        "{} {} {} x {} ports: {} results in {:.3}s ({:.0} probes/s, {} attempts; engine {}, {} threads, {} in flight)",
        if s.interrupted {
            "Interrupted after"
        } else {
            "Scanned"
        },
        s.hosts,
        hosts,
        s.ports_per_host,
        st.results(),
        s.elapsed.as_secs_f64(),
        s.probes_per_sec(),
        st.attempts,
        s.engine,
        s.threads,
        s.concurrency,
    )?;
    if s.interrupted {
        write!(w, " of {} planned", s.planned)?;
    }
    writeln!(w)?;
    write!(w, "  order {}, seed {}", s.order, s.seed)?;
    if s.shard.n() > 1 {
        write!(w, ", shard {}", s.shard)?;
    }
    writeln!(w)?;
    let t = &st.timing;
    let ms = |us: u64| us as f64 / 1000.0;
    if t.adaptive {
        writeln!(
            w,
            "  timing adaptive: srtt {:.3} ms, rttvar {:.3} ms, timeout {:.0} ms, window {}, {:.3} probes/port",
            ms(t.srtt_us),
            ms(t.rttvar_us),
            ms(t.timeout_us),
            t.window,
            st.probes_per_port(),
        )?;
        if t.rst_limited_hosts > 0 {
            writeln!(
                w,
                "  hosts limiting their RSTs: {} (paced; {} held ports tried again)",
                t.rst_limited_hosts, t.rst_limited_retries,
            )?;
        }
    } else {
        writeln!(
            w,
            "  timing fixed: timeout {:.0} ms, {:.3} probes/port",
            ms(t.timeout_us),
            st.probes_per_port(),
        )?;
    }
    for state in State::ALL {
        let n = st.state_count(state);
        write!(w, "  {:<9}{:>10}", state.as_str(), n)?;
        let mut first = true;
        for r in Reason::ALL.iter().filter(|r| r.state() == state) {
            let k = st.reasons[r.index()];
            if k > 0 {
                write!(w, "{}{} {}", if first { "   " } else { ", " }, r, k)?;
                first = false;
            }
        }
        writeln!(w)?;
    }
    let local = st.local_error_total();
    write!(w, "  local-error retries: {local}")?;
    if local > 0 {
        let parts: Vec<String> = LocalError::ALL
            .iter()
            .filter(|e| st.local_errors[e.index()] > 0)
            .map(|e| format!("{e} {}", st.local_errors[e.index()]))
            .collect();
        write!(w, " ({})", parts.join(", "))?;
    }
    writeln!(w)?;
    let mut header = false;
    for (r, p) in s.latencies() {
        if !header {
            writeln!(
                w,
                "  {:<28}{:>9}{:>10}{:>10}{:>10}{:>10}",
                "connect latency (us)", "count", "p50", "p90", "p99", "max"
            )?;
            header = true;
        }
        let name = format!("{}/{}", r.state(), r);
        writeln!(
            w,
            "  {:<28}{:>9}{:>10}{:>10}{:>10}{:>10}",
            name, p.count, p.p50, p.p90, p.p99, p.max
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{capture, run_info, summary};
    use std::time::Duration;

    fn fixed_clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_959_142)
    }

    /// Host 0 is 127.0.0.1 (ports 22, 80, 443 at indices 0-2), host 1 ::1
    /// (3-5), as `run_info()`'s schedule numbers them.
    fn result(target: &str, reason: Reason, rtt_us: Option<u32>) -> ProbeResult {
        let target: std::net::SocketAddr = target.parse().unwrap();
        let host = u64::from(target.is_ipv6());
        let port = [22, 80, 443]
            .iter()
            .position(|&p| p == target.port())
            .unwrap() as u64;
        ProbeResult {
            index: host * 3 + port,
            target,
            reason,
            rtt_us,
            service: None,
            reason_ip: None,
        }
    }

    /// 127.0.0.1's table when 22 and 80 are open and 443 closed (as
    /// [`feed`] has it), its latency `seconds`.
    fn localhost_table(seconds: &str) -> String {
        format!(
            "FastPort scan report for 127.0.0.1\n\
             Host is up ({seconds}s latency).\n\
             Not shown: 1 closed tcp port (conn-refused)\n\
             PORT   STATE SERVICE\n\
             22/tcp open  ssh\n\
             80/tcp open  http\n"
        )
    }

    /// A plain sink of `run` showing the open ports, with `--reason` when
    /// `reason`; and what it wrote.
    fn open_ports_sink(run: &RunInfo, reason: bool) -> (TextSink, impl Fn() -> String + use<>) {
        let (out, text) = capture();
        let sink = TextSink::new(out, Show::OPEN, reason, run, TextStyle::default());
        (sink, text)
    }

    /// A sink in colour, showing `show`, that has been given 127.0.0.1:22
    /// open; and what it wrote.
    fn coloured_open_ssh(show: Show) -> (TextSink, impl Fn() -> String) {
        let (out, text) = capture();
        let style = TextStyle {
            color: true,
            header: false,
        };
        let mut sink = TextSink::new(out, show, false, &run_info(), style);
        sink.result(&result("127.0.0.1:22", Reason::SynAck, Some(1)), true)
            .unwrap();
        (sink, text)
    }

    fn feed(sink: &mut TextSink) {
        for (t, r, rtt) in [
            ("127.0.0.1:443", Reason::ConnRefused, Some(40)),
            ("127.0.0.1:80", Reason::SynAck, Some(50)),
            ("[::1]:22", Reason::NoResponse, None),
            ("127.0.0.1:22", Reason::SynAck, Some(30)),
            ("[::1]:80", Reason::NoResponse, None),
            ("[::1]:443", Reason::NoResponse, None),
        ] {
            let res = result(t, r, rtt);
            let shown = sink.show.contains(r.state());
            sink.result(&res, shown).unwrap();
        }
    }

    /// `-sV`: the live line names the service; the table has nmap's
    /// VERSION column, after REASON with `--reason`; an unnamed port keeps
    /// the table's name.
    #[test]
    fn service_detection_names_the_service_in_line_and_table() {
        use crate::service::record::ServiceRecord;
        let mut run = run_info();
        run.service_detection = true;
        let (mut sink, text) = open_ports_sink(&run, true);
        let mut ssh = result("127.0.0.1:22", Reason::SynAck, Some(30));
        ssh.service = Some(Box::new(ServiceRecord {
            service: Some("ssh".into()),
            product: Some("OpenSSH".into()),
            version: Some("9.2p1".into()),
            extrainfo: Some("protocol 2.0".into()),
            ..ServiceRecord::default()
        }));
        let mut https = result("127.0.0.1:443", Reason::SynAck, Some(40));
        https.service = Some(Box::new(ServiceRecord {
            service: Some("http".into()),
            product: Some("nginx".into()),
            tunnel: Some("ssl".into()),
            ..ServiceRecord::default()
        }));
        let mut silent = result("127.0.0.1:80", Reason::SynAck, Some(50));
        silent.service = Some(Box::default());
        for r in [ssh, silent, https] {
            sink.result(&r, true).unwrap();
        }
        sink.finish(&summary(false, 3, Duration::from_millis(20)))
            .unwrap();
        let text = text();
        let want = "[OPEN] 127.0.0.1:22 ssh OpenSSH 9.2p1 (protocol 2.0) reason=syn-ack rtt=30us\n\
                    [OPEN] 127.0.0.1:80 http reason=syn-ack rtt=50us\n\
                    [OPEN] 127.0.0.1:443 ssl/http nginx reason=syn-ack rtt=40us\n\
                    \n\
                    FastPort scan report for 127.0.0.1\n\
                    Host is up (0.000033s latency).\n\
                    PORT    STATE SERVICE  REASON  VERSION\n\
                    22/tcp  open  ssh      syn-ack OpenSSH 9.2p1 (protocol 2.0)\n\
                    80/tcp  open  http     syn-ack\n\
                    443/tcp open  ssl/http syn-ack nginx\n";
        assert!(text.starts_with(want), "{text}");
    }

    /// Results came out only as live lines, unsorted, with no per-host view.
    #[test]
    fn results_are_sorted_per_host_in_nmaps_shape_after_the_live_lines() {
        let (mut sink, text) = open_ports_sink(&run_info(), false);
        feed(&mut sink);
        sink.finish(&summary(false, 6, Duration::from_millis(20)))
            .unwrap();
        let text = text();
        let want = format!(
            "[OPEN] 127.0.0.1:80 http\n[OPEN] 127.0.0.1:22 ssh\n\n{}",
            localhost_table("0.000039")
        );
        assert!(text.starts_with(&want), "{text}");
        assert!(!text.contains("::1"), "a silent host is not listed: {text}");
        assert!(
            text.contains("  hosts up: 1 of 2 (answered on at least one port)\n"),
            "{text}"
        );
        assert!(!text.contains('#') && !text.contains('\x1b'), "{text}");
    }

    #[test]
    fn normal_output_file_starts_with_the_command_line_and_date() {
        let (out, text) = capture();
        let style = TextStyle {
            color: false,
            header: true,
        };
        let mut sink =
            TextSink::new(out, Show::ALL, true, &run_info(), style).with_clock(fixed_clock);
        feed(&mut sink);
        sink.finish(&summary(false, 6, Duration::from_millis(20)))
            .unwrap();
        let text = text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "# FastPort 0.1.0 scan initiated Sun Nov 29 13:32:20 2026 as: fastport -p 22,80,443 --show open,filtered -oX - 127.0.0.1 ::1"
        );
        assert_eq!(lines[1], "# order random, seed 42");
        assert_eq!(
            *lines.last().unwrap(),
            "# FastPort done at Sun Nov 29 13:32:22 2026 -- 2 IP addresses (1 host up) scanned in 0.02 seconds"
        );
        assert!(text.contains("FastPort scan report for ::1\nHost did not answer.\nPORT    STATE    SERVICE REASON\n22/tcp  filtered ssh no-response\n"), "{text}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(TextStyle::color_for(true, None));
        assert!(TextStyle::color_for(true, Some(OsStr::new(""))));
        assert!(!TextStyle::color_for(true, Some(OsStr::new("1"))));
        assert!(!TextStyle::color_for(false, None));
        let (mut sink, text) = coloured_open_ssh(Show::OPEN);
        sink.flush().unwrap();
        assert_eq!(text(), "\x1b[32m[OPEN]\x1b[0m 127.0.0.1:22 ssh\n");
    }

    #[test]
    fn table_cells_written_in_place_match_the_strings_they_replace() {
        // The port and state cells are written from the stack; the bytes
        // are those of `format!("{port}/tcp")` and of the padded state in
        // its colour codes.
        for port in [0u16, 7, 22, 443, 9200, 65535] {
            for width in [0usize, 4, 9, 12] {
                assert_eq!(
                    format!("{:<width$}|", PortTcp(port)),
                    format!("{:<width$}|", format!("{port}/tcp"))
                );
            }
        }
        for state in State::ALL {
            for color in [false, true] {
                let painted = Painted {
                    color,
                    state,
                    text: state.as_str(),
                };
                let padded = format!("{:<8}", state.as_str());
                let want = if color {
                    format!("\x1b[{}m{padded}\x1b[0m", color_code(state))
                } else {
                    padded
                };
                assert_eq!(format!("{painted:<8}"), want);
            }
        }
    }

    /// A table line written piece by piece is the line the format string
    /// wrote.
    #[test]
    fn port_rows_are_the_formatted_lines() {
        for port in [0u16, 7, 22, 443, 9200, 65535] {
            for width in [4usize, 6, 9, 20] {
                for state in State::ALL {
                    for state_width in [5usize, 6, 8, 21] {
                        for color in [false, true] {
                            for reason in [None, Some(Reason::NoResponse)] {
                                let row = PortRow {
                                    port,
                                    width,
                                    state,
                                    state_width,
                                    color,
                                    name: "http-alt",
                                    reason,
                                };
                                let mut got = Vec::new();
                                row.write(&mut got).unwrap();
                                let painted = Painted {
                                    color,
                                    state,
                                    text: state.as_str(),
                                };
                                let mut want = format!(
                                    "{:<width$} {painted:<state_width$} http-alt",
                                    format!("{port}/tcp")
                                );
                                if let Some(reason) = reason {
                                    want.push_str(&format!(" {reason}"));
                                }
                                want.push('\n');
                                assert_eq!(String::from_utf8(got).unwrap(), want);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Tags written from bytes are the ones `Display` wrote.
    #[test]
    fn tags_written_from_bytes_are_their_display() {
        for state in State::ALL {
            for color in [false, true] {
                let mut got = Vec::new();
                write_tag(&mut got, color, state).unwrap();
                let want = Painted {
                    color,
                    state,
                    text: tag(state),
                };
                assert_eq!(String::from_utf8(got).unwrap(), want.to_string());
            }
        }
    }

    /// Latencies written from integers read as the float formatting wrote
    /// them.
    #[test]
    fn latency_seconds_are_the_float_formatting() {
        let some = (0..2_000_000u64).step_by(7).chain([
            999_999,
            1_000_000,
            1_000_001,
            59_999_999,
            u64::from(u32::MAX),
        ]);
        for us in some {
            let want = format!("{:.6}", us as f64 / 1e6);
            let mut bytes = Vec::new();
            Seconds6(us).write(&mut bytes).unwrap();
            assert_eq!(String::from_utf8(bytes).unwrap(), want, "{us}");
        }
    }

    /// A row per host with ports to show: whole host records made a /16's
    /// `--show all` table 17 MB.
    #[test]
    fn table_rows_stay_small() {
        assert!(std::mem::size_of::<TableRow>() <= 88);
    }

    /// Every port's name by index is the name the search finds.
    #[test]
    fn names_by_port_are_the_searched_names() {
        let names = PortNames::new();
        for port in 0..=u16::MAX {
            assert_eq!(names.get(port), service_name(port), "{port}");
        }
    }

    #[test]
    fn colour_in_the_table_pads_the_state_inside_its_codes() {
        let (mut sink, text) = coloured_open_ssh(Show::ALL);
        sink.finish(&summary(false, 1, Duration::from_millis(20)))
            .unwrap();
        assert!(
            text().contains("\nPORT   STATE SERVICE\n22/tcp \x1b[32mopen \x1b[0m ssh\n"),
            "{}",
            text()
        );
    }

    #[test]
    fn open_only_leaves_hosts_without_an_open_port_out_of_the_table() {
        let mut run = run_info();
        run.open_only = true;
        let (mut sink, text) = open_ports_sink(&run, false);
        // ::1 answers but has no open port; 127.0.0.1 has one.
        for (t, r) in [
            ("[::1]:22", Reason::ConnRefused),
            ("[::1]:80", Reason::ConnRefused),
            ("[::1]:443", Reason::ConnRefused),
            ("127.0.0.1:22", Reason::SynAck),
            ("127.0.0.1:80", Reason::ConnRefused),
            ("127.0.0.1:443", Reason::ConnRefused),
        ] {
            sink.result(&result(t, r, Some(5)), r == Reason::SynAck)
                .unwrap();
        }
        sink.finish(&summary(false, 6, Duration::from_millis(20)))
            .unwrap();
        let text = text();
        assert!(text.contains("report for 127.0.0.1\n"), "{text}");
        assert!(!text.contains("::1"), "{text}");
        assert!(text.contains("hosts up: 2 of 2"), "{text}");
    }

    /// An interrupted run printed a host in progress in its table (as
    /// incomplete), and the resumed run, counting only its own results,
    /// printed the host's remaining ports as if they were all of it (here
    /// its two open ports vanished). Now the interrupted run holds the host
    /// for the resume file, as `-oX`/`-oG` do, and the resumed run writes it
    /// once, whole.
    #[test]
    fn a_host_cut_by_an_interrupt_is_written_once_whole_by_the_resumed_run() {
        let (mut sink, text) = open_ports_sink(&run_info(), false);
        for t in ["127.0.0.1:22", "127.0.0.1:80"] {
            sink.result(&result(t, Reason::SynAck, Some(30)), true)
                .unwrap();
        }
        sink.hold();
        sink.finish(&summary(true, 6, Duration::from_millis(20)))
            .unwrap();
        let first = text();
        assert!(first.contains("[OPEN] 127.0.0.1:22 ssh\n"), "{first}");
        assert!(!first.contains("report for"), "{first}");
        let (format, pending, _) = sink.take_held().unwrap();
        assert_eq!(format, Format::Text);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].host, 0);

        let run = crate::output::tests::resumed(run_info(), (6, 3), 2, pending);
        let (mut sink, text) = open_ports_sink(&run, false);
        sink.result(
            &result("127.0.0.1:443", Reason::ConnRefused, Some(40)),
            false,
        )
        .unwrap();
        sink.finish(&summary(false, 4, Duration::from_millis(20)))
            .unwrap();
        let second = text();
        assert!(second.contains(&localhost_table("0.000031")), "{second}");
        assert!(!second.contains("Incomplete"), "{second}");
    }
}
