//! JSON lines (`-oJ`): one object per result, exactly
//! `{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}`,
//! for jq and scripts; a target given by name also has a `host` key beside
//! `addr`: `{"addr":"127.0.0.1","host":"localhost","port":22,...}`.
//!
//! With `-sV` or `--banners`, an open port's line goes on with what was
//! found (the keys of [`ServiceRecord`], absent ones left out):
//! `...,"rtt_us":53,"service":"ssh","product":"OpenSSH","version":"9.2p1",`
//! `"extrainfo":"protocol 2.0","cpe":["cpe:/a:openbsd:openssh:9.2p1"]}`; a port
//! found to speak TLS adds `"tunnel":"ssl"` and a `tls` object (`version`,
//! `cipher`, `alpn`, `subject`, `issuer`, `sans`, `not_before`, `not_after`,
//! `serial`). Without those flags the lines are exactly as above.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::ascii;
use super::hosts::{HeldHost, HostRecord, PendingHosts};
use super::{Format, RunInfo, Sink, Writer};
use crate::classify::{MIDDLEBOX_MIN_PORTS, Reason, State, answers_every_port, in_state};
use crate::config::Show;
use crate::probe::ProbeResult;
use crate::service::record::ServiceRecord;
use crate::targets::HostNames;

/// One line of `-oJ` output.
#[derive(Serialize)]
pub struct JsonLine<'a> {
    pub addr: IpAddr,
    /// The name the target was given by, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a str>,
    pub port: u16,
    pub state: &'static str,
    pub reason: &'static str,
    pub rtt_us: Option<u32>,
    /// `-sV`/`--banners`: the service's keys.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a ServiceRecord>,
    /// The router whose ICMP unreachable answered, when known (nmap's
    /// `reason_ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_ip: Option<IpAddr>,
}

impl<'a> From<&'a ProbeResult> for JsonLine<'a> {
    fn from(r: &'a ProbeResult) -> Self {
        JsonLine {
            addr: r.target.ip(),
            host: None,
            port: r.target.port(),
            state: r.reason.state().as_str(),
            reason: r.reason.as_str(),
            rtt_us: r.rtt_us,
            service: r.service.as_deref(),
            reason_ip: r.reason_ip,
        }
    }
}

impl JsonLine<'_> {
    /// Writes the line and its newline: the bytes `serde_json` writes for
    /// it (the tests hold the two equal), the fixed keys as bytes and the
    /// numbers from buffers on the stack. Serialized by serde a line cost
    /// ~1 500 instructions, a sixth of the whole run's on a /16 sweep;
    /// only what may need escaping (a target's name, the service keys)
    /// still goes through `serde_json`.
    pub fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(b"{\"addr\":\"")?;
        ascii::write_ip(out, self.addr)?;
        out.write_all(b"\"")?;
        if let Some(host) = self.host {
            out.write_all(b",\"host\":")?;
            serde_json::to_writer(&mut *out, host)?;
        }
        out.write_all(b",\"port\":")?;
        ascii::write_decimal(out, u64::from(self.port))?;
        // States and reasons are lowercase words and hyphens: nothing to
        // escape.
        out.write_all(b",\"state\":\"")?;
        out.write_all(self.state.as_bytes())?;
        out.write_all(b"\",\"reason\":\"")?;
        out.write_all(self.reason.as_bytes())?;
        out.write_all(b"\",\"rtt_us\":")?;
        match self.rtt_us {
            Some(us) => ascii::write_decimal(out, u64::from(us))?,
            None => out.write_all(b"null")?,
        }
        if let Some(service) = self.service {
            // Flattened: the record's own object without its braces.
            let object = serde_json::to_vec(service)?;
            if let [b'{', keys @ .., b'}'] = object.as_slice()
                && !keys.is_empty()
            {
                out.write_all(b",")?;
                out.write_all(keys)?;
            }
        }
        if let Some(ip) = self.reason_ip {
            out.write_all(b",\"reason_ip\":\"")?;
            ascii::write_ip(out, ip)?;
            out.write_all(b"\"")?;
        }
        out.write_all(b"}\n")
    }
}

/// The line that flags a host behind a middlebox (see the module's
/// documentation).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostLine {
    pub addr: IpAddr,
    /// The name the target was given by, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Every port answered SYN-ACK: likely a middlebox answering for the
    /// host, not open services.
    pub middlebox: bool,
    /// The host's results in this run.
    pub results: u64,
    /// How many of them were open.
    pub open: u64,
}

impl HostLine {
    /// The line of host `addr`, with `reasons` its results by reason, if
    /// they say it is behind a middlebox.
    pub fn new(addr: IpAddr, reasons: &[u64; Reason::COUNT]) -> Option<HostLine> {
        answers_every_port(reasons).then(|| HostLine {
            addr,
            host: None,
            middlebox: true,
            results: reasons.iter().sum(),
            open: in_state(reasons, State::Open),
        })
    }

    /// The host line `line` is, if it is one rather than a result line
    /// (it has no `port`); `fastport merge` passes over such lines and
    /// writes its own.
    pub fn parse(line: &str) -> Option<HostLine> {
        if !line.contains("\"middlebox\"") || line.contains("\"port\"") {
            return None;
        }
        serde_json::from_str(line).ok()
    }
}

pub struct JsonLinesSink {
    out: Writer,
    names: Arc<HostNames>,
    /// Result lines written (for the `--stats` document: merge checks a
    /// shard's file against it); host lines are not counted.
    lines: Arc<AtomicU64>,
    /// The hosts in progress, for the middlebox line; `None` when a host
    /// gets too few ports to be flagged.
    hosts: Option<PendingHosts>,
}

impl JsonLinesSink {
    pub fn new(out: Writer) -> Self {
        JsonLinesSink {
            out,
            names: Arc::default(),
            lines: Arc::default(),
            hosts: None,
        }
    }

    /// Flags the hosts of `run` behind a middlebox (with a line after
    /// their last result), when it scans enough ports per host for that.
    /// Only counts are kept per host (no port lists): the resume file
    /// takes its held hosts from a per-host format when there is one
    /// ([`super::Outputs::take_held`]).
    pub fn with_hosts(mut self, run: &RunInfo) -> Self {
        if run.ports_per_host >= MIDDLEBOX_MIN_PORTS {
            self.hosts = Some(PendingHosts::for_run(run, Show::OPEN, false, |_| None));
        }
        self
    }

    /// Writes `record`'s host line if it is a middlebox's.
    fn host_line(&mut self, record: &HostRecord) -> io::Result<()> {
        let Some(mut line) = HostLine::new(record.addr, &record.reasons.map(u64::from)) else {
            return Ok(());
        };
        line.host = self.names.get(record.addr).map(str::to_string);
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    /// Writes `host` for the targets given by name.
    pub fn with_names(mut self, names: &Arc<HostNames>) -> Self {
        self.names = Arc::clone(names);
        self
    }

    /// A shared count of the lines written.
    pub fn lines(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lines)
    }
}

impl Sink for JsonLinesSink {
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()> {
        if shown {
            let mut line = JsonLine::from(r);
            line.host = self.names.get(r.target.ip());
            line.write_line(&mut self.out)?;
            self.lines.fetch_add(1, Ordering::Relaxed);
        }
        let Some(hosts) = &mut self.hosts else {
            return Ok(());
        };
        let Some(record) = hosts.add(r, false, || super::dates::unix_secs(SystemTime::now()))
        else {
            return Ok(());
        };
        self.host_line(&record)
    }

    fn warm(&mut self, batch: &[ProbeResult]) {
        if let Some(hosts) = &self.hosts {
            hosts.warm(batch);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Hosts cut short (another output failed, or an interrupt not to be
    /// resumed) are judged on what came in, as `-oX` writes them.
    fn finish(&mut self, _summary: &crate::stats::Summary) -> io::Result<()> {
        let partial = self
            .hosts
            .as_mut()
            .map(PendingHosts::drain_partial)
            .unwrap_or_default();
        for record in &partial {
            self.host_line(record)?;
        }
        self.flush()
    }

    fn hold(&mut self) {
        if let Some(hosts) = &mut self.hosts {
            hosts.hold();
        }
    }

    fn take_held(&mut self) -> Option<(Format, Vec<HeldHost>, [u64; 2])> {
        let (pending, counts) = self.hosts.as_mut()?.take_held()?;
        Some((Format::Json, pending, counts))
    }

    fn enter_segment(&mut self, schedule: &crate::order::Schedule) {
        if let Some(hosts) = &mut self.hosts {
            hosts.enter_segment(schedule);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;

    /// The line `write` writes, checked against `serde_json`'s.
    fn written(line: &JsonLine) -> String {
        let mut out = Vec::new();
        line.write_line(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let serde = serde_json::to_string(line).unwrap();
        assert_eq!(out, format!("{serde}\n"));
        serde
    }

    /// Every reason, both families, a name to escape, a router's address
    /// and a service record with nothing in it: the bytes are serde's.
    #[test]
    fn lines_written_from_bytes_are_serdes() {
        use crate::service::record::ServiceRecord;
        let empty = ServiceRecord::default();
        let named = ServiceRecord {
            service: Some("ht\"tp\u{1}\u{e9}".into()),
            ..ServiceRecord::default()
        };
        for reason in Reason::ALL {
            for target in ["127.0.0.1:22", "0.0.0.0:0", "[2001:2::1]:65535"] {
                for rtt_us in [None, Some(0), Some(u32::MAX)] {
                    for host in [None, Some("a.test"), Some("we\"ird\\\n\u{7f}\u{e9}")] {
                        for service in [None, Some(&empty), Some(&named)] {
                            for reason_ip in [None, Some("198.18.0.254".parse().unwrap())] {
                                let target: std::net::SocketAddr = target.parse().unwrap();
                                written(&JsonLine {
                                    addr: target.ip(),
                                    host,
                                    port: target.port(),
                                    state: reason.state().as_str(),
                                    reason: reason.as_str(),
                                    rtt_us,
                                    service,
                                    reason_ip,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lines_have_exactly_the_documented_keys() {
        let open = ProbeResult {
            index: 0,
            target: "127.0.0.1:22".parse().unwrap(),
            reason: Reason::SynAck,
            rtt_us: Some(53),
            service: None,
            reason_ip: None,
        };
        assert_eq!(
            written(&JsonLine::from(&open)),
            r#"{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}"#
        );
        let silent = ProbeResult {
            index: 1,
            target: "[::1]:8080".parse().unwrap(),
            reason: Reason::NoResponse,
            rtt_us: None,
            service: None,
            reason_ip: None,
        };
        assert_eq!(
            written(&JsonLine::from(&silent)),
            r#"{"addr":"::1","port":8080,"state":"filtered","reason":"no-response","rtt_us":null}"#
        );
        // A router's unreachable: its sender, only when known.
        let routed = ProbeResult {
            index: 2,
            target: "198.18.12.1:80".parse().unwrap(),
            reason: Reason::HostUnreach,
            rtt_us: Some(10_000),
            reason_ip: Some("198.18.12.254".parse().unwrap()),
            service: None,
        };
        assert_eq!(
            written(&JsonLine::from(&routed)),
            r#"{"addr":"198.18.12.1","port":80,"state":"filtered","reason":"host-unreach","rtt_us":10000,"reason_ip":"198.18.12.254"}"#
        );
    }

    #[test]
    fn a_target_given_by_name_has_a_host_key_beside_addr() {
        let (out, text) = crate::output::tests::capture();
        let names = Arc::new(HostNames::new(&[(
            "localhost".into(),
            vec!["127.0.0.1".parse().unwrap()],
        )]));
        let mut sink = JsonLinesSink::new(out).with_names(&names);
        for target in ["127.0.0.1:22", "127.0.0.2:22"] {
            let r = ProbeResult {
                index: 0,
                target: target.parse().unwrap(),
                reason: Reason::SynAck,
                rtt_us: Some(5),
                service: None,
                reason_ip: None,
            };
            sink.result(&r, true).unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(
            text(),
            "{\"addr\":\"127.0.0.1\",\"host\":\"localhost\",\"port\":22,\"state\":\"open\",\"reason\":\"syn-ack\",\"rtt_us\":5}\n\
             {\"addr\":\"127.0.0.2\",\"port\":22,\"state\":\"open\",\"reason\":\"syn-ack\",\"rtt_us\":5}\n"
        );
    }

    /// `-sV`: the service keys follow the plain ones, absent ones left out.
    #[test]
    fn service_keys_follow_the_plain_ones() {
        use crate::service::record::{ServiceRecord, TlsRecord};
        let mut r = ProbeResult {
            index: 0,
            target: "127.0.0.1:443".parse().unwrap(),
            reason: Reason::SynAck,
            rtt_us: Some(53),
            service: None,
            reason_ip: None,
        };
        r.service = Some(Box::new(ServiceRecord {
            service: Some("http".into()),
            product: Some("nginx".into()),
            tunnel: Some("ssl".into()),
            cpe: vec!["cpe:/a:igor_sysoev:nginx".into()],
            tls: Some(TlsRecord {
                alpn: Some("http/1.1".into()),
                sans: vec!["DNS:a.test".into()],
                ..TlsRecord::default()
            }),
            ..ServiceRecord::default()
        }));
        assert_eq!(
            written(&JsonLine::from(&r)),
            r#"{"addr":"127.0.0.1","port":443,"state":"open","reason":"syn-ack","rtt_us":53,"service":"http","product":"nginx","cpe":["cpe:/a:igor_sysoev:nginx"],"tunnel":"ssl","tls":{"alpn":"http/1.1","sans":["DNS:a.test"]}}"#
        );
        // Read back, as `fastport merge` does.
        let back: ServiceRecord = serde_json::from_str(&written(&JsonLine::from(&r))).unwrap();
        assert_eq!(Some(&back), r.service.as_deref());
    }

    /// Two hosts × 20 ports (enough to be flagged), results in index order.
    fn twenty_ports() -> RunInfo {
        crate::output::tests::sequential(40, 20)
    }

    /// Port `p` of host `h` (127.0.0.{h+1}) of [`twenty_ports`].
    fn at(h: u64, p: u64, reason: Reason) -> ProbeResult {
        ProbeResult {
            index: h * 20 + p,
            target: format!("127.0.0.{}:{}", h + 1, 1000 + p).parse().unwrap(),
            reason,
            rtt_us: reason.answered().then_some(40),
            service: None,
            reason_ip: None,
        }
    }

    fn summary() -> crate::stats::Summary {
        crate::output::tests::summary(false, 40, std::time::Duration::from_millis(5))
    }

    /// A host open on all of its 20 ports gets a host line right after its
    /// last result line; a host with one closed port gets none; the count
    /// of result lines leaves host lines out (merge checks it).
    #[test]
    fn a_host_open_on_every_port_gets_a_middlebox_line_after_its_last_result() {
        let (out, text) = crate::output::tests::capture();
        let mut sink = JsonLinesSink::new(out).with_hosts(&twenty_ports());
        let lines = sink.lines();
        for p in 0..20 {
            sink.result(&at(0, p, Reason::SynAck), true).unwrap();
            let other = if p == 7 {
                Reason::ConnRefused
            } else {
                Reason::SynAck
            };
            sink.result(&at(1, p, other), true).unwrap();
        }
        sink.finish(&summary()).unwrap();
        let text = text();
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), 41, "{text}");
        assert_eq!(lines.load(Ordering::Relaxed), 40);
        // Host 0's last result is line 39 (1-based): its flag follows.
        assert!(all[38].contains("\"port\":1019"), "{text}");
        assert_eq!(
            all[39],
            r#"{"addr":"127.0.0.1","middlebox":true,"results":20,"open":20}"#
        );
        assert_eq!(
            HostLine::parse(all[39]).unwrap().addr.to_string(),
            "127.0.0.1"
        );
        assert!(all.iter().filter(|l| l.contains("middlebox")).count() == 1);
        // A result line is never taken for a host line.
        assert!(all.iter().filter(|l| HostLine::parse(l).is_some()).count() == 1);
    }

    /// With `--show open` the closed port has no line, and the host is
    /// still judged on every result: not a middlebox. A scan of fewer ports
    /// per host than a middlebox needs keeps no hosts at all.
    #[test]
    fn hosts_are_judged_on_every_result_and_only_when_they_can_be_flagged() {
        let (out, text) = crate::output::tests::capture();
        let mut sink = JsonLinesSink::new(out).with_hosts(&twenty_ports());
        for p in 0..20 {
            let r = if p == 3 {
                Reason::ConnRefused
            } else {
                Reason::SynAck
            };
            sink.result(&at(0, p, r), r == Reason::SynAck).unwrap();
        }
        sink.finish(&summary()).unwrap();
        let text = text();
        assert_eq!(text.lines().count(), 19, "{text}");
        assert!(!text.contains("middlebox"), "{text}");

        let (out, _) = crate::output::tests::capture();
        let few = JsonLinesSink::new(out).with_hosts(&crate::output::tests::run_info());
        assert!(few.hosts.is_none());
    }

    /// Interrupted halfway through a middlebox's ports, the run writes no
    /// verdict on half a host: it holds the host for the resume file, and
    /// the resumed run flags it once its last port is in, counting both
    /// parts.
    #[test]
    fn a_middlebox_cut_by_an_interrupt_is_flagged_by_the_resumed_run() {
        let (out, text) = crate::output::tests::capture();
        let mut sink = JsonLinesSink::new(out).with_hosts(&twenty_ports());
        for p in 0..12 {
            sink.result(&at(0, p, Reason::SynAck), true).unwrap();
        }
        sink.hold();
        sink.finish(&summary()).unwrap();
        assert!(!text().contains("middlebox"));
        let (format, pending, _) = sink.take_held().unwrap();
        assert_eq!(format, Format::Json);
        assert_eq!(pending.len(), 1);

        let run = crate::output::tests::resumed(twenty_ports(), (40, 20), 12, pending);
        let (out, text) = crate::output::tests::capture();
        let mut sink = JsonLinesSink::new(out).with_hosts(&run);
        for p in 12..20 {
            sink.result(&at(0, p, Reason::SynAck), true).unwrap();
        }
        for p in 0..20 {
            sink.result(&at(1, p, Reason::ConnRefused), true).unwrap();
        }
        sink.finish(&summary()).unwrap();
        let text = text();
        assert_eq!(text.lines().count(), 8 + 1 + 20, "{text}");
        assert!(
            text.contains(r#"{"addr":"127.0.0.1","middlebox":true,"results":20,"open":20}"#),
            "{text}"
        );
    }
}
