//! The list form (`-oL`), for pipes: one `addr:port` line per shown port
//! (`[v6]:port` for IPv6), nothing else: no header, no summary. So
//! `fastport -oL - NET | sort`, `| wc -l` and `| xargs` see results only;
//! the summary goes to stderr when this list takes stdout.

use std::io::{self, Write};

use super::{Sink, Writer};
use crate::probe::ProbeResult;

pub struct ListSink {
    out: Writer,
}

impl ListSink {
    pub fn new(out: Writer) -> Self {
        ListSink { out }
    }
}

impl Sink for ListSink {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        if !shown {
            return Ok(());
        }
        writeln!(self.out, "{}", r.target)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;
    use crate::output::tests::capture;

    fn result(target: &str, reason: Reason) -> ProbeResult {
        ProbeResult {
            index: 0,
            target: target.parse().unwrap(),
            reason,
            rtt_us: Some(10),
            service: None,
            reason_ip: None,
        }
    }

    #[test]
    fn list_is_one_address_and_port_per_shown_result() {
        let (out, text) = capture();
        let mut sink = ListSink::new(out);
        for (t, r) in [
            ("127.0.0.1:22", Reason::SynAck),
            ("127.0.0.1:23", Reason::ConnRefused),
            ("[::1]:80", Reason::SynAck),
        ] {
            sink.result(&result(t, r), r == Reason::SynAck).unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(text(), "127.0.0.1:22\n[::1]:80\n");
    }
}
