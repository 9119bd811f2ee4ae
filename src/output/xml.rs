//! nmap XML (`-oX`), for ndiff, Metasploit, python-libnmap and every other
//! tool that reads nmap's format.
//!
//! The document follows nmap.dtd and nmap's layout: one `<host>` per
//! address (never one per port, which broke consumers of masscan's XML),
//! with `<status>`, `<address>`, `<ports>` (an `<extraports>` per state not
//! shown, then a `<port>` per shown port, its service from the built-in
//! table) and `<times>` from the host's smoothed round-trip time. A host is
//! written as soon as its last probe reports ([`PendingHosts`]); the run ends
//! with `<runstats>`, also when interrupted, so the file is always
//! well-formed.
//!
//! # How FastPort names itself
//!
//! nmap.dtd allows exactly one value for `<nmaprun scanner>`: `nmap`. Any
//! other value makes the file invalid, and consumers that validate or check
//! the attribute reject it. So `scanner="nmap"` here names the *format*,
//! and everything else says who wrote it: `version="FastPort 0.1.0"`,
//! `args` holds FastPort's own command line, and two comments before the
//! root element say that FastPort, not Nmap, wrote the file.

use std::io::{self, Write};
use std::net::IpAddr;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::dates::{ctime, unix_secs};
use super::hosts::MIDDLEBOX_NOTE;
use super::hosts::{DocumentState, HostDocument, HostRecord};
use super::{Format, RunInfo, Writer};
use crate::config::Show;
use crate::service::record::ServiceRecord;
use crate::stats::Summary;
use crate::targets::service_name;

/// The nmap XML output format version this file follows.
const XML_OUTPUT_VERSION: &str = "1.05";

pub struct XmlSink {
    xml: quick_xml::Writer<Writer>,
    doc: DocumentState,
    run: RunInfo,
}

impl XmlSink {
    pub fn new(out: Writer, show: Show, run: &RunInfo) -> Self {
        // A continued file has its prologue and `<scaninfo>`: hosts
        // follow where the earlier run's `<runstats>` was cut off.
        let doc = DocumentState::new(run, show, out.continued(), |h| h.xml);
        XmlSink {
            xml: quick_xml::Writer::new(out),
            doc,
            run: run.clone(),
        }
    }

    fn nl(&mut self) -> io::Result<()> {
        self.xml.get_mut().write_all(b"\n")
    }

    /// An event on a line of its own (nmap writes one element a line).
    fn line(&mut self, event: Event<'_>) -> io::Result<()> {
        self.xml.write_event(event)?;
        self.nl()
    }

    /// `<!-- text -->` on a line of its own, any `--` in it defused.
    fn comment_line(&mut self, text: &str) -> io::Result<()> {
        self.line(Event::Comment(BytesText::from_escaped(comment_safe(text))))
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let el = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.xml.write_event(Event::Empty(el))
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let el = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.xml.write_event(Event::Start(el))
    }

    fn end(&mut self, name: &str) -> io::Result<()> {
        self.xml.write_event(Event::End(BytesEnd::new(name)))
    }

    fn empty_line(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        self.empty(name, attrs)?;
        self.nl()
    }

    fn start_line(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        self.start(name, attrs)?;
        self.nl()
    }

    fn end_line(&mut self, name: &str) -> io::Result<()> {
        self.end(name)?;
        self.nl()
    }

    /// nmap's `<service>` of a probed port (`-sV`): `name product version
    /// extrainfo ostype tunnel="ssl" method="probed" conf="10"`, then a
    /// `<cpe>` per CPE name. The values are escaped for a terminal already;
    /// the writer escapes them for XML.
    fn probed_service(&mut self, found: &ServiceRecord) -> io::Result<()> {
        let name = found.service.as_deref().unwrap_or("unknown");
        let mut attrs: Vec<(&str, &str)> = vec![("name", name)];
        for (key, value) in [
            ("product", &found.product),
            ("version", &found.version),
            ("extrainfo", &found.extrainfo),
            ("ostype", &found.ostype),
            ("tunnel", &found.tunnel),
        ] {
            if let Some(value) = value {
                attrs.push((key, value));
            }
        }
        attrs.push(("method", "probed"));
        attrs.push(("conf", "10"));
        if found.cpe.is_empty() {
            return self.empty("service", &attrs);
        }
        self.start("service", &attrs)?;
        for cpe in &found.cpe {
            self.start("cpe", &[])?;
            self.xml.write_event(Event::Text(BytesText::new(cpe)))?;
            self.end("cpe")?;
        }
        self.end("service")
    }
}

impl HostDocument for XmlSink {
    const FORMAT: Format = Format::Xml;

    fn flush_out(&mut self) -> io::Result<()> {
        self.xml.get_mut().flush()
    }

    fn doc(&mut self) -> &mut DocumentState {
        &mut self.doc
    }

    /// The prologue and everything before the first host, once.
    fn begin(&mut self) -> io::Result<()> {
        if !self.doc.begin() {
            return Ok(());
        }
        let args = xml_chars(&self.run.command_line);
        let start = unix_secs(self.run.started).to_string();
        let startstr = ctime(self.run.started);
        let version = format!("FastPort {}", env!("CARGO_PKG_VERSION"));

        self.line(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let stylesheet = format!(
            "xml-stylesheet href=\"{}\" type=\"text/xsl\"",
            self.run.stylesheet
        );
        self.line(Event::PI(quick_xml::events::BytesPI::new(stylesheet)))?;
        self.line(Event::DocType(BytesText::from_escaped("nmaprun")))?;
        let initiated = format!(" {version} scan initiated {startstr} as: {args} ");
        self.comment_line(&initiated)?;
        self.comment_line(
            " Written by FastPort, not Nmap, in Nmap's XML format: nmap.dtd allows only scanner=\"nmap\" ",
        )?;
        let order = format!(" {} ", self.run.order);
        self.comment_line(&order)?;
        if let Some(ranking) = &self.run.ranking {
            let note = format!(" port ranking: {} ", xml_chars(ranking));
            self.comment_line(&note)?;
        }
        self.start_line(
            "nmaprun",
            &[
                ("scanner", "nmap"),
                ("args", &args),
                ("start", &start),
                ("startstr", &startstr),
                ("version", &version),
                ("xmloutputversion", XML_OUTPUT_VERSION),
            ],
        )?;
        let numservices = self.run.ports_per_host.to_string();
        let services = self.run.services.clone();
        self.empty_line(
            "scaninfo",
            &[
                ("type", "connect"),
                ("protocol", "tcp"),
                ("numservices", &numservices),
                ("services", &services),
            ],
        )?;
        self.empty_line("verbose", &[("level", "0")])?;
        self.empty_line("debugging", &[("level", "0")])
    }

    fn write_host(&mut self, h: &HostRecord) -> io::Result<()> {
        // --open: nmap leaves out hosts without an open port.
        if self.run.open_only && !h.has_open_port() {
            return Ok(());
        }
        let now = unix_secs((self.doc.now)());
        let status = h.status();
        let show = self.doc.hosts.show();
        let starttime = h.first_seen.to_string();
        let endtime = now.to_string();
        let mut attrs = vec![("starttime", starttime.as_str()), ("endtime", &endtime)];
        let mut note = String::new();
        if h.remaining > 0 {
            // Interrupted before every port of this host reported.
            note = format!(
                "incomplete: {} of {} ports scanned",
                h.results(),
                h.results() + u64::from(h.remaining)
            );
            attrs.push(("timedout", "true"));
        }
        if h.middlebox() {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(MIDDLEBOX_NOTE);
        }
        if !note.is_empty() {
            attrs.push(("comment", &note));
        }
        self.start("host", &attrs)?;
        self.empty_line(
            "status",
            &[
                ("state", if status.up { "up" } else { "down" }),
                ("reason", status.reason.as_str()),
                ("reason_ttl", "0"),
            ],
        )?;
        let addr = h.addr.to_string();
        let addrtype = match h.addr {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        };
        self.empty_line("address", &[("addr", &addr), ("addrtype", addrtype)])?;
        if let Some(name) = self.run.names.get(h.addr) {
            // The name the user gave, as nmap records it (type="user").
            let name = name.to_string();
            self.start_line("hostnames", &[])?;
            self.empty_line("hostname", &[("name", &name), ("type", "user")])?;
            self.end_line("hostnames")?;
        }

        self.start("ports", &[])?;
        for ignored in h.ignored(show) {
            let count = ignored.count.to_string();
            self.start_line(
                "extraports",
                &[("state", ignored.state.as_str()), ("count", &count)],
            )?;
            for (reason, n) in &ignored.reasons {
                let n = n.to_string();
                self.empty_line(
                    "extrareasons",
                    &[("reason", reason.as_str()), ("count", &n), ("proto", "tcp")],
                )?;
            }
            self.end_line("extraports")?;
        }
        for &(port, reason) in &h.shown {
            let portid = port.to_string();
            self.start("port", &[("protocol", "tcp"), ("portid", &portid)])?;
            let reason_ip = h.reason_ip(port).map(|ip| ip.to_string());
            let state = [
                ("state", reason.state().as_str()),
                ("reason", reason.as_str()),
                ("reason_ttl", "0"),
                ("reason_ip", reason_ip.as_deref().unwrap_or_default()),
            ];
            let n = if reason_ip.is_some() { 4 } else { 3 };
            self.empty("state", &state[..n])?;
            match h.service(port).filter(|s| s.service.is_some()) {
                Some(found) => self.probed_service(found)?,
                None => self.empty(
                    "service",
                    &[
                        ("name", service_name(port).unwrap_or("unknown")),
                        ("method", "table"),
                        ("conf", "3"),
                    ],
                )?,
            }
            self.end_line("port")?;
        }
        self.end_line("ports")?;

        if let Some((srtt, rttvar)) = h.rtt_us() {
            let to = self.run.timeout_for(srtt, rttvar).to_string();
            let (srtt, rttvar) = (srtt.to_string(), rttvar.to_string());
            self.empty_line(
                "times",
                &[("srtt", &srtt), ("rttvar", &rttvar), ("to", &to)],
            )?;
        }
        self.end_line("host")
    }

    fn write_footer(&mut self, summary: &Summary) -> io::Result<()> {
        let now = (self.doc.now)();
        let (seen, up) = self.doc.hosts.counts();
        let timestr = ctime(now);
        let time = unix_secs(now).to_string();
        let elapsed = format!("{:.2}", summary.elapsed.as_secs_f64());
        let text = format!(
            "{} IP address{} ({} host{} up) scanned in {elapsed} seconds",
            seen,
            if seen == 1 { "" } else { "es" },
            up,
            if up == 1 { "" } else { "s" },
        );
        let (line, exit, errormsg) = if summary.interrupted {
            (
                format!("FastPort interrupted at {timestr}; {text}"),
                "error",
                Some(match self.doc.hosts.held() {
                    0 => format!(
                        "interrupted after {} of {} probes",
                        // The summary's count: a resumed run's counts every part.
                        summary.stats.results(),
                        summary.planned
                    ),
                    held => format!(
                        "interrupted after {} of {} probes; {held} host{} in progress kept in the resume file, written whole by --resume",
                        summary.stats.results(),
                        summary.planned,
                        if held == 1 { "" } else { "s" },
                    ),
                }),
            )
        } else {
            (
                format!("FastPort done at {timestr}; {text}"),
                "success",
                None,
            )
        };
        self.start("runstats", &[])?;
        let mut attrs = vec![
            ("time", time.as_str()),
            ("timestr", &timestr),
            ("summary", &line),
            ("elapsed", &elapsed),
            ("exit", exit),
        ];
        if let Some(msg) = &errormsg {
            attrs.push(("errormsg", msg));
        }
        self.empty("finished", &attrs)?;
        let (up_s, down_s, total_s) = (up.to_string(), (seen - up).to_string(), seen.to_string());
        self.empty_line(
            "hosts",
            &[("up", &up_s), ("down", &down_s), ("total", &total_s)],
        )?;
        self.end_line("runstats")?;
        self.end_line("nmaprun")?;
        self.xml.get_mut().flush()
    }
}

/// Replaces characters XML 1.0 cannot hold (control characters other than
/// tab, newline and carriage return; U+FFFE, U+FFFF) with U+FFFD, so a
/// command line with odd bytes still makes a well-formed document.
fn xml_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// A comment may not contain `--`: written as nmap writes it, `-&#45;`.
fn comment_safe(s: &str) -> String {
    s.replace("--", "-&#45;")
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

    const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet href="https://svn.nmap.org/nmap/docs/nmap.xsl" type="text/xsl"?>
<!DOCTYPE nmaprun>
<!-- FastPort 0.1.0 scan initiated Sun Nov 29 13:32:20 2026 as: fastport -p 22,80,443 -&#45;show open,filtered -oX - 127.0.0.1 ::1 -->
<!-- Written by FastPort, not Nmap, in Nmap's XML format: nmap.dtd allows only scanner="nmap" -->
<!-- order random, seed 42 -->
<nmaprun scanner="nmap" args="fastport -p 22,80,443 --show open,filtered -oX - 127.0.0.1 ::1" start="1795959140" startstr="Sun Nov 29 13:32:20 2026" version="FastPort 0.1.0" xmloutputversion="1.05">
<scaninfo type="connect" protocol="tcp" numservices="3" services="22,80,443"/>
<verbose level="0"/>
<debugging level="0"/>
"#;

    #[test]
    fn hosts_are_written_as_nmap_writes_them() {
        let (out, text) = capture();
        let mut sink = XmlSink::new(out, Show::parse("open,filtered").unwrap(), &run_info())
            .with_clock(fixed_clock);
        // Host 0: 127.0.0.1, ports 22 80 443 at indices 0 1 2; host 1: ::1 at 3 4 5.
        for r in [
            result(1, "127.0.0.1:80", Reason::ConnRefused, Some(40)),
            result(3, "[::1]:22", Reason::ConnRefused, Some(30)),
            result(0, "127.0.0.1:22", Reason::SynAck, Some(100)),
            result(2, "127.0.0.1:443", Reason::NoResponse, None),
        ] {
            feed(&mut sink, Show::parse("open,filtered").unwrap(), &r);
        }
        sink.flush().unwrap();
        let first = text();
        assert!(
            first.ends_with("</host>\n"),
            "127.0.0.1 is written at once:\n{first}"
        );
        assert!(
            !first.contains("addr=\"::1\""),
            "::1 is still pending:\n{first}"
        );

        for r in [
            result(5, "[::1]:443", Reason::ConnRefused, Some(50)),
            result(4, "[::1]:80", Reason::SynAck, Some(70)),
        ] {
            feed(&mut sink, Show::parse("open,filtered").unwrap(), &r);
        }
        sink.finish(&summary(false, 6, Duration::from_millis(1234)))
            .unwrap();
        let want = HEAD.to_string()
            + r#"<host starttime="1795959142" endtime="1795959142"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<ports><extraports state="closed" count="1">
<extrareasons reason="conn-refused" count="1" proto="tcp"/>
</extraports>
<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" method="table" conf="3"/></port>
<port protocol="tcp" portid="443"><state state="filtered" reason="no-response" reason_ttl="0"/><service name="https" method="table" conf="3"/></port>
</ports>
<times srtt="47" rttvar="30" to="1000000"/>
</host>
<host starttime="1795959142" endtime="1795959142"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="::1" addrtype="ipv6"/>
<ports><extraports state="closed" count="2">
<extrareasons reason="conn-refused" count="2" proto="tcp"/>
</extraports>
<port protocol="tcp" portid="80"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="http" method="table" conf="3"/></port>
</ports>
<times srtt="36" rttvar="21" to="1000000"/>
</host>
<runstats><finished time="1795959142" timestr="Sun Nov 29 13:32:22 2026" summary="FastPort done at Sun Nov 29 13:32:22 2026; 2 IP addresses (2 hosts up) scanned in 1.23 seconds" elapsed="1.23" exit="success"/><hosts up="2" down="0" total="2"/>
</runstats>
</nmaprun>
"#;
        assert_eq!(text(), want);
    }

    #[test]
    fn an_interrupted_scan_still_closes_the_document() {
        let (out, text) = capture();
        let mut sink = XmlSink::new(out, Show::OPEN, &run_info()).with_clock(fixed_clock);
        feed(
            &mut sink,
            Show::OPEN,
            &result(0, "127.0.0.1:22", Reason::SynAck, Some(100)),
        );
        feed(
            &mut sink,
            Show::OPEN,
            &result(4, "[::1]:80", Reason::NoResponse, None),
        );
        let mut interrupted = summary(true, 6, Duration::from_millis(500));
        interrupted.stats.record(Reason::SynAck, Some(100));
        interrupted.stats.record(Reason::NoResponse, None);
        sink.abandon(&interrupted).unwrap();
        sink.finish(&interrupted).unwrap(); // a second close writes nothing
        let want = HEAD.to_string()
            + r#"<host starttime="1795959142" endtime="1795959142" timedout="true" comment="incomplete: 1 of 3 ports scanned"><status state="up" reason="syn-ack" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" method="table" conf="3"/></port>
</ports>
<times srtt="100" rttvar="50" to="1000000"/>
</host>
<runstats><finished time="1795959142" timestr="Sun Nov 29 13:32:22 2026" summary="FastPort interrupted at Sun Nov 29 13:32:22 2026; 2 IP addresses (1 host up) scanned in 0.50 seconds" elapsed="0.50" exit="error" errormsg="interrupted after 2 of 6 probes"/><hosts up="1" down="1" total="2"/>
</runstats>
</nmaprun>
"#;
        assert_eq!(text(), want);
    }

    #[test]
    fn odd_characters_in_the_command_line_stay_well_formed() {
        assert_eq!(xml_chars("a\u{1}b\tc"), "a\u{FFFD}b\tc");
        assert_eq!(comment_safe("--a ---b"), "-&#45;a -&#45;-b");
        let (out, text) = capture();
        let mut run = run_info();
        run.command_line = "fastport <&\"> \u{7}".into();
        let mut sink = XmlSink::new(out, Show::OPEN, &run).with_clock(fixed_clock);
        sink.finish(&summary(false, 0, Duration::ZERO)).unwrap();
        let text = text();
        assert!(
            text.contains(r#"args="fastport &lt;&amp;&quot;&gt; �""#),
            "{text}"
        );
    }

    /// `-sV`: a probed port's `<service>` is nmap's (`method="probed"
    /// conf="10"`, `tunnel="ssl"`, `<cpe>` children), its values escaped;
    /// a port nothing named keeps the table's entry.
    #[test]
    fn probed_services_are_written_as_nmap_writes_them() {
        use crate::service::record::ServiceRecord;
        let (out, text) = capture();
        let mut sink = XmlSink::new(out, Show::OPEN, &run_info()).with_clock(fixed_clock);
        let mut ssh = result(0, "127.0.0.1:22", Reason::SynAck, Some(100));
        ssh.service = Some(Box::new(ServiceRecord {
            service: Some("ssh".into()),
            product: Some("Open\"SSH<".into()),
            version: Some("9.2p1".into()),
            cpe: vec!["cpe:/a:openbsd:openssh:9.2p1".into()],
            ..ServiceRecord::default()
        }));
        let mut https = result(2, "127.0.0.1:443", Reason::SynAck, Some(100));
        https.service = Some(Box::new(ServiceRecord {
            service: Some("http".into()),
            product: Some("nginx".into()),
            tunnel: Some("ssl".into()),
            ..ServiceRecord::default()
        }));
        let mut silent = result(1, "127.0.0.1:80", Reason::SynAck, Some(100));
        silent.service = Some(Box::default());
        for r in [ssh, silent, https] {
            feed(&mut sink, Show::OPEN, &r);
        }
        sink.finish(&summary(false, 3, Duration::from_secs(2)))
            .unwrap();
        let doc = text();
        assert!(doc.contains(r#"<port protocol="tcp" portid="22"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="ssh" product="Open&quot;SSH&lt;" version="9.2p1" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service></port>"#), "{doc}");
        assert!(
            doc.contains(r#"<service name="http" method="table" conf="3"/>"#),
            "{doc}"
        );
        assert!(
            doc.contains(
                r#"<service name="http" product="nginx" tunnel="ssl" method="probed" conf="10"/>"#
            ),
            "{doc}"
        );
    }
}
