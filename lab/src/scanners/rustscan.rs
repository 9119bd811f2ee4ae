//! RustScan's greppable output (`-g`): one line per host with open ports,
//! `127.0.0.1 -> [22,80]`. Other lines (warnings) are ignored.

use std::net::Ipv4Addr;

use super::ParseError;
use crate::score::Observation;
use crate::truth::State;

/// Parses `-g` output into open observations (no reasons).
pub fn parse(text: &str) -> Result<Vec<Observation>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((addr, rest)) = line.split_once(" -> ") else {
            continue;
        };
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let addr: Ipv4Addr = addr
            .trim()
            .parse()
            .map_err(|_| err(format!("not an IPv4 address: {addr:?}")))?;
        let list = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| err(format!("expected [ports], got {rest:?}")))?;
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port = p.parse().map_err(|_| err(format!("not a port: {p:?}")))?;
            out.push(Observation {
                addr,
                port,
                state: State::Open,
                reason: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_skips_chatter() {
        let text =
            "[~] warning: file limit\n127.0.0.1 -> [22,80]\n127.0.0.2 -> [443]\n127.0.0.3 -> []\n";
        let o = parse(text).unwrap();
        let got: Vec<(String, u16)> = o.iter().map(|o| (o.addr.to_string(), o.port)).collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1".into(), 22),
                ("127.0.0.1".into(), 80),
                ("127.0.0.2".into(), 443)
            ]
        );
        assert_eq!(parse("127.0.0.1 -> [x]").unwrap_err().line, 1);
    }
}
