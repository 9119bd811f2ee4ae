//! JSON lines (`-oJ`): one object per result, exactly
//! `{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}`,
//! for jq and scripts.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{Sink, Writer};
use crate::probe::ProbeResult;
use crate::stats::Summary;

/// One line of `-oJ` output.
#[derive(Serialize)]
pub struct JsonLine {
    pub addr: IpAddr,
    pub port: u16,
    pub state: &'static str,
    pub reason: &'static str,
    pub rtt_us: Option<u32>,
}

impl From<&ProbeResult> for JsonLine {
    fn from(r: &ProbeResult) -> Self {
        JsonLine {
            addr: r.target.ip(),
            port: r.target.port(),
            state: r.reason.state().as_str(),
            reason: r.reason.as_str(),
            rtt_us: r.rtt_us,
        }
    }
}

pub struct JsonLinesSink {
    out: Writer,
    /// Lines written (for the `--stats` document: merge checks a shard's
    /// file against it).
    lines: Arc<AtomicU64>,
}

impl JsonLinesSink {
    pub fn new(out: Writer) -> Self {
        JsonLinesSink {
            out,
            lines: Arc::default(),
        }
    }

    /// A shared count of the lines written.
    pub fn lines(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lines)
    }
}

impl Sink for JsonLinesSink {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        if !shown {
            return Ok(());
        }
        serde_json::to_writer(&mut self.out, &JsonLine::from(r))?;
        self.out.write_all(b"\n")?;
        self.lines.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _summary: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;

    #[test]
    fn lines_have_exactly_the_documented_keys() {
        let open = ProbeResult {
            index: 0,
            target: "127.0.0.1:22".parse().unwrap(),
            reason: Reason::SynAck,
            rtt_us: Some(53),
        };
        assert_eq!(
            serde_json::to_string(&JsonLine::from(&open)).unwrap(),
            r#"{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}"#
        );
        let silent = ProbeResult {
            index: 1,
            target: "[::1]:8080".parse().unwrap(),
            reason: Reason::NoResponse,
            rtt_us: None,
        };
        assert_eq!(
            serde_json::to_string(&JsonLine::from(&silent)).unwrap(),
            r#"{"addr":"::1","port":8080,"state":"filtered","reason":"no-response","rtt_us":null}"#
        );
    }
}
