//! nmap's outputs: XML (`-oX`) and greppable (`-oG`).
//!
//! nmap lists "interesting" ports one by one and folds the rest into
//! `<extraports state=... count=...>`. Since 7.x each `<extrareasons>` also
//! carries the folded ports (`ports="1-21,23-79"`), so the XML says something
//! about every port. Greppable output only gives `Ignored State: closed (105)`:
//! the lab expands it to every unlisted scanned port when there is exactly one
//! ignored state, and leaves them missing otherwise.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::ParseError;
use crate::score::Observation;
use crate::targets::PortSet;
use crate::truth::{Reason, State};

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ParseError> {
    for a in e.attributes() {
        let a = a.map_err(|err| ParseError {
            line: 0,
            message: format!("bad XML attribute: {err}"),
        })?;
        if a.key.as_ref() == name.as_bytes() {
            let v = a.unescape_value().map_err(|err| ParseError {
                line: 0,
                message: format!("bad XML attribute value: {err}"),
            })?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn state(s: &str) -> Result<State, ParseError> {
    s.parse()
        .map_err(|e: fastport_reasons::UnknownName| ParseError {
            line: 0,
            message: e.to_string(),
        })
}

/// Parses `-oX` output. Hosts other than IPv4 are an error; `<hosthint>`
/// blocks (which repeat addresses before the scan) are ignored.
pub fn parse_xml(text: &str) -> Result<Vec<Observation>, ParseError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut in_host = false;
    let mut addr: Option<Ipv4Addr> = None;
    let mut port: Option<u16> = None;
    let mut extra_state: Option<State> = None;
    let xml_error = |e: quick_xml::Error, pos: u64| ParseError {
        line: 0,
        message: format!("XML error at byte {pos}: {e}"),
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| xml_error(e, reader.buffer_position()))?;
        let (e, is_start) = match &ev {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(e) => {
                match e.name().as_ref() {
                    b"host" => {
                        in_host = false;
                        addr = None;
                    }
                    b"port" => port = None,
                    b"extraports" => extra_state = None,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match e.name().as_ref() {
            b"host" if is_start => in_host = true,
            b"address" if in_host => {
                if attr(e, "addrtype")?.as_deref() == Some("ipv4") {
                    let a = attr(e, "addr")?.unwrap_or_default();
                    addr = Some(a.parse().map_err(|_| ParseError {
                        line: 0,
                        message: format!("bad address {a:?}"),
                    })?);
                } else if addr.is_none() && attr(e, "addrtype")?.as_deref() == Some("ipv6") {
                    return Err(ParseError {
                        line: 0,
                        message: "the lab scans IPv4 only".into(),
                    });
                }
            }
            b"port" if in_host => {
                if attr(e, "protocol")?.as_deref() != Some("tcp") {
                    continue;
                }
                let p = attr(e, "portid")?.unwrap_or_default();
                port = Some(p.parse().map_err(|_| ParseError {
                    line: 0,
                    message: format!("bad portid {p:?}"),
                })?);
            }
            b"state" if in_host => {
                let (Some(a), Some(p)) = (addr, port) else {
                    continue;
                };
                out.push(Observation {
                    addr: a,
                    port: p,
                    state: state(&attr(e, "state")?.unwrap_or_default())?,
                    reason: attr(e, "reason")?.map(|r| Reason::from(r.as_str())),
                });
            }
            b"extraports" if in_host => {
                extra_state = Some(state(&attr(e, "state")?.unwrap_or_default())?);
            }
            b"extrareasons" if in_host => {
                let (Some(a), Some(s)) = (addr, extra_state) else {
                    continue;
                };
                if attr(e, "proto")?.as_deref().is_some_and(|p| p != "tcp") {
                    continue;
                }
                let Some(ports) = attr(e, "ports")? else {
                    continue; // older nmap: the folded ports are not named
                };
                let ports: PortSet = ports.parse().map_err(|err| ParseError {
                    line: 0,
                    message: format!("extrareasons ports: {err}"),
                })?;
                let reason = attr(e, "reason")?.map(|r| Reason::from(r.as_str()));
                out.extend(ports.iter().map(|p| Observation {
                    addr: a,
                    port: p,
                    state: s,
                    reason: reason.clone(),
                }));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Parses `-oG` output. `scanned` are the ports of the scan, used to expand a
/// single "Ignored State" to every port the host line does not list.
pub fn parse_grepable(text: &str, scanned: &PortSet) -> Result<Vec<Observation>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let Some(rest) = line.strip_prefix("Host: ") else {
            continue;
        };
        let mut fields = rest.split('\t');
        let host = fields.next().unwrap_or_default();
        let a = host.split_whitespace().next().unwrap_or_default();
        let addr = match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4,
            _ => return Err(err(format!("not an IPv4 address: {a:?}"))),
        };
        let mut listed = HashSet::new();
        let mut ignored: Option<String> = None;
        let mut has_ports = false;
        for f in fields {
            if let Some(ports) = f.strip_prefix("Ports: ") {
                has_ports = true;
                for entry in ports.split(", ").map(str::trim).filter(|e| !e.is_empty()) {
                    let parts: Vec<&str> = entry.split('/').collect();
                    if parts.len() < 3 {
                        return Err(err(format!("bad port entry {entry:?}")));
                    }
                    if parts[2] != "tcp" {
                        continue;
                    }
                    let port: u16 = parts[0]
                        .parse()
                        .map_err(|_| err(format!("bad port in {entry:?}")))?;
                    listed.insert(port);
                    out.push(Observation {
                        addr,
                        port,
                        state: parts[1]
                            .parse()
                            .map_err(|e: fastport_reasons::UnknownName| err(e.to_string()))?,
                        reason: None,
                    });
                }
            } else if let Some(ig) = f.strip_prefix("Ignored State: ") {
                ignored = Some(ig.to_string());
            }
        }
        if let (true, Some(ig)) = (has_ports, ignored) {
            // "closed (105)"; several states would read "closed (5), filtered (3)"? nmap
            // names only one, so only that case can be expanded.
            let name = ig.split_whitespace().next().unwrap_or_default();
            if let Ok(s) = name.parse::<State>() {
                out.extend(scanned.iter().filter(|p| !listed.contains(p)).map(|port| {
                    Observation {
                        addr,
                        port,
                        state: s,
                        reason: None,
                    }
                }));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from a real nmap 7.93 -sT run inside a lab namespace.
    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<nmaprun scanner="nmap" args="nmap -sT" version="7.93" xmloutputversion="1.05">
<hosthint><status state="up" reason="unknown-response" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/></hosthint>
<host starttime="1" endtime="1"><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<hostnames>
</hostnames>
<ports><extraports state="closed" count="5">
<extrareasons reason="conn-refused" count="5" proto="tcp" ports="1-3,5,7"/>
</extraports>
<port protocol="tcp" portid="4"><state state="open" reason="syn-ack" reason_ttl="0"/><service name="x" method="table" conf="3"/></port>
<port protocol="tcp" portid="6"><state state="filtered" reason="no-response" reason_ttl="0"/><service name="y" method="table" conf="3"/></port>
</ports>
</host>
<host><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="198.18.2.1" addrtype="ipv4"/>
<ports><extraports state="filtered" count="7">
<extrareasons reason="admin-prohibited" count="7" proto="tcp" ports="1-7"/>
</extraports>
</ports>
</host>
<runstats><finished time="1" elapsed="0.15" exit="success"/><hosts up="2" down="0" total="2"/></runstats>
</nmaprun>
"#;

    #[test]
    fn xml_ports_and_folded_extraports_are_all_observed() {
        let o = parse_xml(XML).unwrap();
        assert_eq!(o.len(), 14);
        let find = |a: &str, p: u16| {
            o.iter()
                .find(|x| x.addr.to_string() == a && x.port == p)
                .unwrap()
                .clone()
        };
        assert_eq!(
            (find("127.0.0.1", 4).state, find("127.0.0.1", 4).reason),
            (State::Open, Some(Reason::SynAck))
        );
        assert_eq!(find("127.0.0.1", 7).reason, Some(Reason::ConnRefused));
        assert_eq!(find("127.0.0.1", 6).reason, Some(Reason::NoResponse));
        assert_eq!(find("198.18.2.1", 3).reason, Some(Reason::AdminProhibited));
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(
            parse_xml("<nmaprun><host><address addr=\"1.2.3\" addrtype=\"ipv4\"/></host>").is_err()
        );
    }

    const GNMAP: &str = "# Nmap 7.93 scan initiated\n\
Host: 127.0.0.1 ()\tStatus: Up\n\
Host: 127.0.0.1 ()\tPorts: 2/open/tcp//ssh///, 5/filtered/tcp//upnp///\tIgnored State: closed (5)\n\
Host: 198.18.1.1 ()\tPorts: \tIgnored State: filtered (7)\n\
# Nmap done\n";

    #[test]
    fn grepable_expands_the_ignored_state() {
        let o = parse_grepable(GNMAP, &"1-7".parse().unwrap()).unwrap();
        assert_eq!(o.len(), 14);
        assert_eq!(o.iter().filter(|x| x.state == State::Open).count(), 1);
        assert_eq!(o.iter().filter(|x| x.state == State::Closed).count(), 5);
        assert_eq!(o.iter().filter(|x| x.state == State::Filtered).count(), 8);
    }

    /// A target given by name (`Host: addr (name)`, `<hostnames>`) and
    /// `--open`'s missing hosts, as nmap and FastPort write them.
    #[test]
    fn named_hosts_and_open_only_output_parse() {
        let gnmap = "# FastPort 0.1.0 scan initiated\n\
Host: 127.0.0.1 (localhost)\tStatus: Up\n\
Host: 127.0.0.1 (localhost)\tPorts: 2/open/tcp//ssh///\tIgnored State: closed (6)\n";
        let o = parse_grepable(gnmap, &"1-7".parse().unwrap()).unwrap();
        assert_eq!(o.len(), 7);
        assert!(o.iter().all(|x| x.addr.to_string() == "127.0.0.1"));
        let xml = XML.replace(
            "<hostnames>\n</hostnames>",
            "<hostnames>\n<hostname name=\"localhost\" type=\"user\"/>\n</hostnames>",
        );
        assert_eq!(parse_xml(&xml).unwrap().len(), 14);
    }
}
