//! What an output writes about a port's service: a conversation's [`Verdict`] turned into
//! the fields every format shares (nmap's `<service>` attributes), every string already
//! made safe with [`super::escape`].
//!
//! The sinks (text, JSON lines, XML, grepable, CSV) take a [`ServiceRecord`] and only lay
//! its fields out; none of them sees a raw banner.

use serde::{Deserialize, Serialize};

use super::conversation::Verdict;
use super::escape;
use super::matcher::ServiceMatch;
use super::tls::TlsInfo;

/// Raw bytes of a banner kept for the outputs (escaped, it may be up to 4× longer).
pub const BANNER_LIMIT: usize = 512;

/// A port's service, as the outputs write it. Strings are escaped with [`escape::text`]
/// (match fields) or [`escape::bytes`] (the banner): safe for a terminal; XML and CSV
/// writers still apply their own quoting.
///
/// The same type is the JSON lines keys (serde: absent fields left out), what a resume
/// file keeps of a held host's services, and what `fastport merge` reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceRecord {
    /// `ssh`, `http`, `tcpwrapped`; `None` when nothing named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The product name, escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The product's version, escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Extra information, escaped (nmap's `extrainfo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extrainfo: Option<String>,
    /// The operating system, escaped (nmap's `ostype`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostype: Option<String>,
    /// CPE names, escaped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpe: Vec<String>,
    /// `Some("ssl")` when the service was found inside (or as) TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// What the service said, escaped and bounded (`--banners`, or an unrecognized answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// What the TLS handshake showed, when the port speaks TLS and the handshake succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRecord>,
}

/// A TLS handshake's facts ([`TlsInfo`]) as the outputs write them, every string escaped
/// with [`escape::text`] (a certificate's names are chosen by whoever made it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsRecord {
    /// `TLSv1_3`, `TLSv1_2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The negotiated cipher suite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// The protocol the server chose by ALPN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// The leaf certificate's subject (`CN=example.org, O=Example`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Its subject alternative names (`DNS:name`, `IP:address`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// Start of validity, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// End of validity, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// Serial number, hex bytes separated by `:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl TlsRecord {
    /// The handshake's facts, escaped.
    pub fn from_info(info: &TlsInfo) -> TlsRecord {
        let cert = info.certificate.as_ref();
        TlsRecord {
            version: clean(&info.version),
            cipher: clean(&info.cipher),
            alpn: clean(&info.alpn),
            subject: cert.map(|c| escape::text(&c.subject)),
            issuer: cert.map(|c| escape::text(&c.issuer)),
            sans: cert.map_or_else(Vec::new, |c| {
                c.sans.iter().map(|s| escape::text(s)).collect()
            }),
            not_before: cert.map(|c| c.not_before),
            not_after: cert.map(|c| c.not_after),
            serial: cert.map(|c| escape::text(&c.serial)),
        }
    }
}

fn clean(s: &Option<String>) -> Option<String> {
    s.as_deref().map(escape::text)
}

fn banner(raw: &[u8]) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    Some(escape::bytes(&raw[..raw.len().min(BANNER_LIMIT)]))
}

impl ServiceRecord {
    /// The fields for `verdict`.
    pub fn from_verdict(verdict: &Verdict) -> ServiceRecord {
        match verdict {
            Verdict::Matched(m) | Verdict::Soft(m) | Verdict::Tls(m) => {
                ServiceRecord::from_match(m)
            }
            Verdict::Unrecognized { response, .. } => ServiceRecord {
                banner: banner(response),
                ..ServiceRecord::default()
            },
            Verdict::Banner(raw) => ServiceRecord {
                banner: banner(raw),
                ..ServiceRecord::default()
            },
            Verdict::Tcpwrapped => ServiceRecord {
                service: Some("tcpwrapped".to_owned()),
                ..ServiceRecord::default()
            },
            Verdict::Silent => ServiceRecord::default(),
        }
    }

    fn from_match(m: &ServiceMatch) -> ServiceRecord {
        let (service, tunnel) = match m.service.strip_prefix("ssl/") {
            Some(inner) => (inner.to_owned(), Some("ssl")),
            None => (m.service.clone(), None),
        };
        ServiceRecord {
            service: Some(escape::text(&service)),
            product: clean(&m.product),
            version: clean(&m.version),
            extrainfo: clean(&m.info),
            ostype: clean(&m.os),
            cpe: m.cpe.iter().map(|c| escape::text(c)).collect(),
            tunnel: tunnel.map(str::to_owned),
            banner: None,
            tls: None,
        }
    }

    /// The service's name as nmap's SERVICE column shows it: `ssh`, `ssl/http`.
    pub fn name(&self) -> Option<String> {
        let s = self.service.as_deref()?;
        Some(match &self.tunnel {
            Some(t) => format!("{t}/{s}"),
            None => s.to_owned(),
        })
    }

    /// Product, version and extra information as nmap's VERSION column shows
    /// them: `OpenSSH 9.2p1 (protocol 2.0)`; empty when none is known.
    pub fn version_line(&self) -> String {
        self.version_parts().collect::<Vec<_>>().join(" ")
    }

    /// The words of [`version_line`](Self::version_line): product, version,
    /// `(extra information)`, each when known.
    fn version_parts(&self) -> impl Iterator<Item = String> + '_ {
        let extrainfo = self.extrainfo.iter().map(|e| format!("({e})"));
        self.product
            .iter()
            .chain(&self.version)
            .cloned()
            .chain(extrainfo)
    }

    /// The service as one line's tail, nmap's way: `ssh OpenSSH 9.2p1 (protocol 2.0)`,
    /// `ssl/http nginx 1.25.3`; the banner (quoted) when nothing was named.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .name()
            .into_iter()
            .chain(self.version_parts())
            .collect();
        if parts.is_empty()
            && let Some(b) = &self.banner
        {
            parts.push(format!("\"{b}\""));
        }
        parts.join(" ")
    }

    /// The JSON lines keys (`service`, `product`, `version`, `extrainfo`, `ostype`, `cpe`,
    /// `tunnel`, `banner`, `tls`), absent ones left out.
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(o)) => o,
            _ => serde_json::Map::new(),
        }
    }

    /// Whether nothing at all is known (a silent port).
    pub fn is_empty(&self) -> bool {
        self == &ServiceRecord::default()
    }

    /// nmap XML's `<service>` element (attributes as nmap writes them: name, product, version,
    /// extrainfo, ostype, tunnel, method, conf; then `<cpe>` children). `None` when nothing
    /// was named: the writer keeps its table entry (`method="table"`).
    pub fn xml(&self) -> Option<String> {
        let name = self.service.as_deref()?;
        let mut out = format!("<service name=\"{}\"", escape::xml(name));
        for (k, v) in [
            ("product", &self.product),
            ("version", &self.version),
            ("extrainfo", &self.extrainfo),
            ("ostype", &self.ostype),
        ] {
            if let Some(v) = v {
                out.push_str(&format!(" {k}=\"{}\"", escape::xml(v)));
            }
        }
        if let Some(t) = &self.tunnel {
            out.push_str(&format!(" tunnel=\"{}\"", escape::xml(t)));
        }
        out.push_str(" method=\"probed\" conf=\"10\"");
        if self.cpe.is_empty() {
            out.push_str("/>");
        } else {
            out.push('>');
            for c in &self.cpe {
                out.push_str(&format!("<cpe>{}</cpe>", escape::xml(c)));
            }
            out.push_str("</service>");
        }
        Some(out)
    }

    /// CSV cells, in the order `service,product,version,extrainfo,tunnel,banner`, each
    /// quoted by [`escape::csv_cell`] (formulas defused).
    pub fn csv_cells(&self) -> [String; 6] {
        let cell = |v: Option<&str>| escape::csv_cell(v.unwrap_or(""));
        [
            cell(self.service.as_deref()),
            cell(self.product.as_deref()),
            cell(self.version.as_deref()),
            cell(self.extrainfo.as_deref()),
            cell(self.tunnel.as_deref()),
            cell(self.banner.as_deref()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh() -> ServiceMatch {
        ServiceMatch {
            service: "ssh".into(),
            product: Some("OpenSSH".into()),
            version: Some("9.2p1".into()),
            info: Some("protocol 2.0".into()),
            cpe: vec!["cpe:/a:openbsd:openssh:9.2p1".into()],
            ..ServiceMatch::default()
        }
    }

    #[test]
    fn a_match_reads_as_nmap_prints_it() {
        let r = ServiceRecord::from_verdict(&Verdict::Matched(ssh()));
        assert_eq!(r.summary(), "ssh OpenSSH 9.2p1 (protocol 2.0)");
        let j = serde_json::Value::Object(r.json()).to_string();
        assert_eq!(
            j,
            r#"{"cpe":["cpe:/a:openbsd:openssh:9.2p1"],"extrainfo":"protocol 2.0","product":"OpenSSH","service":"ssh","version":"9.2p1"}"#
        );
    }

    #[test]
    fn xml_service_element_is_nmaps() {
        let r = ServiceRecord::from_verdict(&Verdict::Matched(ssh()));
        assert_eq!(
            r.xml().unwrap(),
            "<service name=\"ssh\" product=\"OpenSSH\" version=\"9.2p1\" extrainfo=\"protocol 2.0\" method=\"probed\" conf=\"10\"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service>"
        );
        let m = ServiceMatch {
            service: "ssl/http".into(),
            product: Some("a\"<b>&".into()),
            ..ServiceMatch::default()
        };
        assert_eq!(
            ServiceRecord::from_verdict(&Verdict::Matched(m))
                .xml()
                .unwrap(),
            "<service name=\"http\" product=\"a&quot;&lt;b&gt;&amp;\" tunnel=\"ssl\" method=\"probed\" conf=\"10\"/>"
        );
        assert_eq!(ServiceRecord::from_verdict(&Verdict::Silent).xml(), None);
    }

    #[test]
    fn csv_cells_defuse_formulas() {
        let r = ServiceRecord::from_verdict(&Verdict::Banner(b"=cmd|' /C calc'!A0".to_vec()));
        let cells = r.csv_cells();
        assert_eq!(cells[5], "\"'=cmd|' /C calc'!A0\"");
        assert_eq!(cells[0], "");
    }

    #[test]
    fn a_tunnelled_match_names_its_tunnel() {
        let m = ServiceMatch {
            service: "ssl/http".into(),
            product: Some("nginx".into()),
            ..ServiceMatch::default()
        };
        let r = ServiceRecord::from_verdict(&Verdict::Matched(m));
        assert_eq!(
            (r.service.as_deref(), r.tunnel.as_deref()),
            (Some("http"), Some("ssl"))
        );
        assert_eq!(r.summary(), "ssl/http nginx");
    }

    #[test]
    fn hostile_banner_is_escaped_and_bounded() {
        let mut raw = b"\x1b[2J=HYPERLINK(\"x\")\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'A', 4096));
        let r = ServiceRecord::from_verdict(&Verdict::Banner(raw));
        let b = r.banner.as_deref().unwrap();
        assert!(b.starts_with("\\x1b[2J=HYPERLINK(\"x\")\\r\\n"), "{b}");
        assert!(!b.contains('\x1b'));
        assert_eq!(b.matches('A').count(), BANNER_LIMIT - 21);
        assert_eq!(r.service, None);
    }

    #[test]
    fn control_characters_in_match_fields_are_escaped() {
        let m = ServiceMatch {
            service: "http".into(),
            product: Some("evil\x1b]0;pwned\x07".into()),
            ..ServiceMatch::default()
        };
        let r = ServiceRecord::from_verdict(&Verdict::Matched(m));
        assert_eq!(r.product.as_deref(), Some("evil\\x1b]0;pwned\\x07"));
    }

    #[test]
    fn summary_is_the_name_then_the_version_line_else_the_banner() {
        let text = |s: &str| Some(s.to_owned());
        for (r, summary, version_line) in [
            (
                ServiceRecord {
                    product: text("nginx"),
                    extrainfo: text("Ubuntu"),
                    banner: text("hi"),
                    ..ServiceRecord::default()
                },
                "nginx (Ubuntu)",
                "nginx (Ubuntu)",
            ),
            (
                ServiceRecord {
                    service: text("http"),
                    tunnel: text("ssl"),
                    version: text("1.25"),
                    ..ServiceRecord::default()
                },
                "ssl/http 1.25",
                "1.25",
            ),
            (
                ServiceRecord {
                    tunnel: text("ssl"),
                    banner: text("hi"),
                    ..ServiceRecord::default()
                },
                "\"hi\"",
                "",
            ),
        ] {
            assert_eq!(r.summary(), summary, "{r:?}");
            assert_eq!(r.version_line(), version_line, "{r:?}");
        }
    }

    #[test]
    fn tcpwrapped_and_silent() {
        assert_eq!(
            ServiceRecord::from_verdict(&Verdict::Tcpwrapped).summary(),
            "tcpwrapped"
        );
        assert_eq!(ServiceRecord::from_verdict(&Verdict::Silent).summary(), "");
    }
}
