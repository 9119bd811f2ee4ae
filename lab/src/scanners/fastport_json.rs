//! FastPort's JSON lines (`-oJ`), also what the floor prints:
//! `{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}`.

use std::net::IpAddr;

use serde::Deserialize;

use super::ParseError;
use crate::score::Observation;
use crate::truth::Reason;

#[derive(Deserialize)]
struct Line {
    addr: IpAddr,
    port: u16,
    state: String,
    reason: Option<Reason>,
}

/// Parses JSON lines; blank lines are skipped, anything else must be a port record.
pub fn parse(text: &str) -> Result<Vec<Observation>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line).map_err(|e| err(format!("{e}: {line}")))?;
        let IpAddr::V4(addr) = l.addr else {
            return Err(err(format!("the lab scans IPv4 only, got {}", l.addr)));
        };
        out.push(Observation {
            addr,
            port: l.port,
            state: l
                .state
                .parse()
                .map_err(|e: fastport_reasons::UnknownName| err(e.to_string()))?,
            reason: l.reason,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth::State;

    #[test]
    fn parses_the_documented_line_and_tolerates_extra_fields() {
        let text = concat!(
            r#"{"addr":"127.0.0.1","port":22,"state":"open","reason":"syn-ack","rtt_us":53}"#,
            "\n\n",
            r#"{"addr":"127.0.0.2","port":23,"state":"filtered","reason":"no-response","rtt_us":null,"host":"x"}"#,
            "\n"
        );
        let o = parse(text).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(
            (o[0].port, o[0].state, o[0].reason.clone()),
            (22, State::Open, Some(Reason::SynAck))
        );
        assert_eq!(o[1].reason, Some(Reason::NoResponse));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("{\"addr\":\"127.0.0.1\",\"port\":1,\"state\":\"open\"}\nnot json\n")
            .unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse(r#"{"addr":"127.0.0.1","port":1,"state":"ajar"}"#).unwrap_err();
        assert!(e.message.contains("ajar"));
        let e = parse(r#"{"addr":"::1","port":1,"state":"open"}"#).unwrap_err();
        assert!(e.message.contains("IPv4"));
    }
}
