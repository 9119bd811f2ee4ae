//! nmap's grepable format (`-oG`), for `grep` and `awk`: one `Host:` line
//! per host with all its shown ports, written as soon as the host's last
//! probe reports ([`PendingHosts`]), between `#` comment lines that say
//! FastPort ran the scan.
//!
//! ```text
//! Host: 127.0.0.1 ()<TAB>Ports: 22/open/tcp//ssh///, 80/open/tcp//http///<TAB>Ignored State: closed (1022)
//! ```
//!
//! A host that answered SYN-ACK on every port is followed by a comment,
//! `# Note: ADDR: every port answered syn-ack: likely a middlebox ...`.
//!
//! The port fields are nmap's: `port/state/protocol/owner/service/rpc/version/`.
//! Like nmap, the line names only the largest state not shown.

use std::io::{self, Write};

use super::dates::ctime;
use super::hosts::{DocumentState, HostDocument, HostRecord, MIDDLEBOX_NOTE};
use super::{Format, RunInfo, Writer};
use crate::config::Show;
use crate::stats::Summary;
use crate::targets::service_name;

pub struct GrepableSink {
    out: Writer,
    doc: DocumentState,
    run: RunInfo,
}

impl GrepableSink {
    pub fn new(out: Writer, show: Show, run: &RunInfo) -> Self {
        // A continued file has its header.
        let doc = DocumentState::new(run, show, out.continued(), |h| h.grepable);
        GrepableSink {
            out,
            doc,
            run: run.clone(),
        }
    }
}

impl HostDocument for GrepableSink {
    const FORMAT: Format = Format::Grepable;

    fn flush_out(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn doc(&mut self) -> &mut DocumentState {
        &mut self.doc
    }

    fn begin(&mut self) -> io::Result<()> {
        if !self.doc.begin() {
            return Ok(());
        }
        writeln!(
            self.out,
            "# FastPort {} scan initiated {} as: {}\n# {}",
            env!("CARGO_PKG_VERSION"),
            ctime(self.run.started),
            one_line(&self.run.command_line),
            self.run.order,
        )
    }

    fn write_host(&mut self, h: &HostRecord) -> io::Result<()> {
        // --open: nmap leaves out hosts without an open port.
        if self.run.open_only && !h.has_open_port() {
            return Ok(());
        }
        // nmap's status line, the one scripts grep for up hosts.
        let name = self.run.names.get(h.addr).unwrap_or("");
        writeln!(
            self.out,
            "Host: {} ({name})\tStatus: {}",
            h.addr,
            if h.status().up { "Up" } else { "Down" }
        )?;
        write!(self.out, "Host: {} ({name})\tPorts: ", h.addr)?;
        for (i, &(port, reason)) in h.shown.iter().enumerate() {
            // -sV: nmap's name (`ssl|http`: a `/` would end the field) and
            // version fields, with the separators nmap's own output avoids.
            let found = h.service(port);
            let name = found
                .and_then(|s| s.name())
                .unwrap_or_else(|| service_name(port).unwrap_or("unknown").to_owned());
            let version = found.map(|s| s.version_line()).unwrap_or_default();
            write!(
                self.out,
                "{}{port}/{}/tcp//{}//{}/",
                if i == 0 { "" } else { ", " },
                reason.state(),
                grepable_field(&name),
                grepable_field(&version),
            )?;
        }
        if let Some(ignored) = h.ignored(self.doc.hosts.show()).first() {
            write!(
                self.out,
                "\tIgnored State: {} ({})",
                ignored.state, ignored.count
            )?;
        }
        self.out.write_all(b"\n")?;
        // A comment, which grepable readers skip; no `Host:` in it, so a
        // `grep Host:` does not take it for a host.
        if h.middlebox() {
            writeln!(self.out, "# Note: {}: {MIDDLEBOX_NOTE}", h.addr)?;
        }
        Ok(())
    }

    fn write_footer(&mut self, summary: &Summary) -> io::Result<()> {
        let (seen, up) = self.doc.hosts.counts();
        writeln!(
            self.out,
            "# FastPort {} at {} -- {} IP address{} ({} host{} up) scanned in {:.2} seconds",
            if summary.interrupted {
                "interrupted"
            } else {
                "done"
            },
            ctime((self.doc.now)()),
            seen,
            if seen == 1 { "" } else { "es" },
            up,
            if up == 1 { "" } else { "s" },
            summary.elapsed.as_secs_f64(),
        )?;
        self.out.flush()
    }
}

/// The header is one line: line breaks in the command line become spaces.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// A value fit for a grepable port field: `/` becomes `|` and `,` a
/// space (they separate fields and ports), tabs a space (they separate
/// sections), as nmap's own grepable output does.
fn grepable_field(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '/' => '|',
            ',' | '\t' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;
    use crate::output::Sink;
    use crate::output::hosts::tests::result;
    use crate::output::tests::{capture, feed, run_info, summary};
    use std::time::SystemTime;
    use std::time::{Duration, UNIX_EPOCH};

    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_959_142)
    }

    #[test]
    fn one_line_per_host_with_its_shown_ports() {
        let (out, text) = capture();
        let mut sink = GrepableSink::new(out, Show::OPEN, &run_info()).with_clock(fixed_clock);
        for r in [
            result(2, "127.0.0.1:443", Reason::ConnRefused, Some(10)),
            result(1, "127.0.0.1:80", Reason::SynAck, Some(10)),
            result(3, "[::1]:22", Reason::ConnRefused, Some(10)),
            result(0, "127.0.0.1:22", Reason::SynAck, Some(10)),
            result(4, "[::1]:80", Reason::ConnRefused, Some(10)),
            result(5, "[::1]:443", Reason::NoResponse, None),
        ] {
            feed(&mut sink, Show::OPEN, &r);
        }
        sink.finish(&summary(false, 6, Duration::from_millis(20)))
            .unwrap();
        assert_eq!(
            text(),
            "# FastPort 0.1.0 scan initiated Sun Nov 29 13:32:20 2026 as: fastport -p 22,80,443 --show open,filtered -oX - 127.0.0.1 ::1\n\
             # order random, seed 42\n\
             Host: 127.0.0.1 ()\tStatus: Up\n\
             Host: 127.0.0.1 ()\tPorts: 22/open/tcp//ssh///, 80/open/tcp//http///\tIgnored State: closed (1)\n\
             Host: ::1 ()\tStatus: Up\n\
             Host: ::1 ()\tPorts: \tIgnored State: closed (2)\n\
             # FastPort done at Sun Nov 29 13:32:22 2026 -- 2 IP addresses (2 hosts up) scanned in 0.02 seconds\n"
        );
    }

    #[test]
    fn interrupted_hosts_are_written_with_what_they_have() {
        let (out, text) = capture();
        let mut sink = GrepableSink::new(out, Show::ALL, &run_info()).with_clock(fixed_clock);
        feed(
            &mut sink,
            Show::ALL,
            &result(4, "[::1]:80", Reason::NoResponse, None),
        );
        sink.abandon(&summary(true, 6, Duration::from_secs(3)))
            .unwrap();
        let text = text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[1], "# order random, seed 42");
        assert_eq!(lines[2], "Host: ::1 ()\tStatus: Down");
        assert_eq!(lines[3], "Host: ::1 ()\tPorts: 80/filtered/tcp//http///");
        assert_eq!(
            lines[4],
            "# FastPort interrupted at Sun Nov 29 13:32:22 2026 -- 1 IP address (0 hosts up) scanned in 3.00 seconds"
        );
    }

    /// A service's name and version keep the grepable fields apart: `/`
    /// becomes `|` (nmap's `ssl|http`), `,` and tab a space.
    #[test]
    fn service_fields_cannot_break_the_port_list() {
        assert_eq!(grepable_field("ssl/http"), "ssl|http");
        assert_eq!(grepable_field("a, b\tc/d"), "a  b c|d");
    }
}
