//! What a simulated open port says once its handshake completes: a small
//! catalogue of services, so that service detection (`-sV`) can be measured
//! over the simulated latency and loss instead of only on loopback.
//!
//! A seeded share of open ports speaks ([`crate::config::Services`]). A
//! well-known port gets its own service (22 ssh, 25 smtp, 80 http, 6379
//! redis, ...); any other speaking port draws one from the catalogue. A
//! service either talks first (a greeting: ssh, smtp, ftp, pop3, imap) or
//! answers the first data the client sends (http to a `GET`, redis to a
//! `PING`). The responder stays stateless: the greeting goes out when the
//! handshake's final ACK arrives (its acknowledgment number proves it is
//! that ACK), the answer when the client's first data does, each one round
//! trip later, each lost with the profile's reply loss and then resent after
//! [`RESEND`] like a server's retransmission, at most [`SENDS`] times.
//!
//! The texts are made up for this catalogue, in each protocol's documented
//! shape (RFC 4253 §4.2, RFC 5321 §4.2, RFC 959, RFC 1939, RFC 9051,
//! RFC 9112, the RESP protocol).

use std::time::Duration;

/// How long a simulated server waits before resending lost data (Linux's
/// initial RTO).
pub const RESEND: Duration = Duration::from_secs(1);

/// How many times a simulated server sends its data before giving up.
pub const SENDS: u32 = 4;

/// One service of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Its name, as service detection would report it.
    pub name: &'static str,
    /// What it sends as soon as the connection is up, if it talks first.
    pub greeting: Option<&'static [u8]>,
    /// What it sends back to the client's first data, if anything.
    pub reply: Option<&'static [u8]>,
}

/// The catalogue, in a fixed order (a drawn index picks from it).
pub const CATALOGUE: [Service; 7] = [
    Service {
        name: "ssh",
        greeting: Some(b"SSH-2.0-OpenSSH_9.6 netsim\r\n"),
        reply: None,
    },
    Service {
        name: "smtp",
        greeting: Some(b"220 mail.netsim.test ESMTP ready\r\n"),
        reply: Some(b"502 5.5.2 Error: command not recognized\r\n"),
    },
    Service {
        name: "ftp",
        greeting: Some(b"220 netsim FTP server ready\r\n"),
        reply: Some(b"530 Please login with USER and PASS.\r\n"),
    },
    Service {
        name: "pop3",
        greeting: Some(b"+OK netsim POP3 server ready\r\n"),
        reply: None,
    },
    Service {
        name: "imap",
        greeting: Some(b"* OK [CAPABILITY IMAP4rev1] netsim IMAP server ready\r\n"),
        reply: None,
    },
    Service {
        name: "http",
        greeting: None,
        reply: Some(
            b"HTTP/1.1 200 OK\r\nServer: netsim\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
        ),
    },
    Service {
        name: "redis",
        greeting: None,
        reply: Some(b"+PONG\r\n"),
    },
];

/// The catalogue entry called `name`.
pub fn by_name(name: &str) -> Option<&'static Service> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// The service a well-known port runs, if the catalogue has it.
pub fn well_known(port: u16) -> Option<&'static Service> {
    let name = match port {
        22 => "ssh",
        25 | 465 | 587 => "smtp",
        21 | 2121 => "ftp",
        110 | 995 => "pop3",
        143 | 993 => "imap",
        80 | 81 | 3000 | 3128 | 8000 | 8008 | 8080 | 8081 | 8443 | 8888 => "http",
        6379 => "redis",
        _ => return None,
    };
    by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_says_something_and_fits_one_segment() {
        for s in &CATALOGUE {
            assert!(s.greeting.is_some() || s.reply.is_some(), "{}", s.name);
            for text in s.greeting.iter().chain(s.reply.iter()) {
                assert!(text.len() <= crate::wire::MAX_PAYLOAD, "{}", s.name);
            }
        }
        assert_eq!(well_known(22).unwrap().name, "ssh");
        assert_eq!(well_known(6379).unwrap().reply, Some(&b"+PONG\r\n"[..]));
        assert!(well_known(9).is_none());
        // An SSH greeting is "SSH-protoversion-softwareversion" and CR LF (RFC 4253 §4.2).
        assert!(
            by_name("ssh")
                .unwrap()
                .greeting
                .unwrap()
                .starts_with(b"SSH-2.0-")
        );
    }
}
