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

use serde::Serialize;

use super::{Sink, Writer};
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

pub struct JsonLinesSink {
    out: Writer,
    names: Arc<HostNames>,
    /// Lines written (for the `--stats` document: merge checks a shard's
    /// file against it).
    lines: Arc<AtomicU64>,
}

impl JsonLinesSink {
    pub fn new(out: Writer) -> Self {
        JsonLinesSink {
            out,
            names: Arc::default(),
            lines: Arc::default(),
        }
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
        if !shown {
            return Ok(());
        }
        let mut line = JsonLine::from(r);
        line.host = self.names.get(r.target.ip());
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.lines.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
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
            service: None,
            reason_ip: None,
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
            service: None,
            reason_ip: None,
        };
        assert_eq!(
            serde_json::to_string(&JsonLine::from(&silent)).unwrap(),
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
            serde_json::to_string(&JsonLine::from(&routed)).unwrap(),
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
            serde_json::to_string(&JsonLine::from(&r)).unwrap(),
            r#"{"addr":"127.0.0.1","port":443,"state":"open","reason":"syn-ack","rtt_us":53,"service":"http","product":"nginx","cpe":["cpe:/a:igor_sysoev:nginx"],"tunnel":"ssl","tls":{"alpn":"http/1.1","sans":["DNS:a.test"]}}"#
        );
        // Read back, as `fastport merge` does.
        let back: ServiceRecord =
            serde_json::from_str(&serde_json::to_string(&JsonLine::from(&r)).unwrap()).unwrap();
        assert_eq!(Some(&back), r.service.as_deref());
    }
}
