//! Human text, in the spirit of the tool FastPort grew from: a line per
//! shown port as soon as it is found (`[OPEN] 127.0.0.1:22 ssh`), then a
//! summary of counts, rate and latency percentiles.

use std::io::{self, Write};

use super::{Sink, Writer};
use crate::classify::{LocalError, Reason, State};
use crate::probe::ProbeResult;
use crate::stats::Summary;
use crate::targets::service_name;

pub struct TextSink {
    out: Writer,
    reason: bool,
}

impl TextSink {
    pub fn new(out: Writer, reason: bool) -> Self {
        TextSink { out, reason }
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
        if !shown {
            return Ok(());
        }
        let state = r.reason.state();
        let service = service_name(r.target.port()).unwrap_or("unknown");
        write!(self.out, "{} {} {}", tag(state), r.target, service)?;
        if self.reason {
            write!(self.out, " reason={}", r.reason)?;
            if let Some(us) = r.rtt_us {
                write!(self.out, " rtt={us}us")?;
            }
        }
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        write_summary(&mut self.out, summary)?;
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
