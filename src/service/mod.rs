//! Service and version detection (`-sV`): what a port's service says, and what it is.
//!
//! The parts, in the order a conversation uses them:
//!
//! - [`probes`] parses the nmap-service-probes format (FastPort's own database, or any file
//!   given with `--service-probes`) into typed probes and match rules.
//! - [`matcher`] compiles every rule once (PCRE2, the dialect the format is written in) with
//!   a literal-prefix prefilter and backtracking limits, and names the service a response
//!   belongs to.
//! - [`conversation`] is the per-connection machine: bytes and `now` in, actions out (connect,
//!   send, wait, close, verdict). It never touches a socket or reads a clock.
//! - [`tls`] drives rustls without a socket to open a TLS tunnel inside which the probes run
//!   again, and reads the server certificate's fields.
//! - [`options`] validates the `-sV`, `--version-intensity`, `--banners` and
//!   `--service-probes` flags into the database and settings a scan uses.
//! - [`record`] turns a verdict into the fields the outputs write, escaped.
//! - [`escape`] makes banners (hostile input) safe for a terminal, JSON, XML and CSV.
//!
//! docs/SERVICES.md tells how a service is decided and why the database is FastPort's own.

pub mod conversation;
pub mod escape;
pub mod matcher;
pub mod options;
pub mod probes;
pub mod record;
pub mod tls;

pub use matcher::{Matcher, ServiceMatch};
pub use probes::{ParseError, ProbeFile};

/// FastPort's own probe database, in the nmap-service-probes format (MIT OR Apache-2.0,
/// written for this project).
pub const BUILTIN_PROBES: &str = include_str!("fastport-service-probes");

/// The built-in database, parsed and compiled.
pub fn builtin() -> Matcher {
    // The file is part of the source tree and tested to parse: a failure is a build bug.
    Matcher::new(probes::parse(BUILTIN_PROBES.as_bytes()).expect("built-in probe file parses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (probe, response, service, product, version): what FastPort's own database names on
    /// responses shaped as each protocol's specification and each server's documentation
    /// describe them.
    type Case = (
        &'static str,
        &'static [u8],
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );
    const CASES: &[Case] = &[
        ("NULL", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "ssh", Some("OpenSSH"), Some("9.2p1")),
        ("NULL", b"SSH-2.0-dropbear_2022.83\r\n", "ssh", Some("Dropbear sshd"), Some("2022.83")),
        ("NULL", b"SSH-2.0-Go\r\n", "ssh", Some("Go x/crypto/ssh server"), None),
        ("NULL", b"220 (vsFTPd 3.0.3)\r\n", "ftp", Some("vsftpd"), Some("3.0.3")),
        ("NULL", b"220 ProFTPD 1.3.8 Server (Debian) [::ffff:127.0.0.1]\r\n", "ftp", Some("ProFTPD"), Some("1.3.8")),
        ("NULL", b"220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n", "smtp", Some("Postfix smtpd"), None),
        ("NULL", b"220 mail.example.org ESMTP Exim 4.96 Tue, 01 Dec 2026 10:00:00 +0000\r\n", "smtp", Some("Exim smtpd"), Some("4.96")),
        ("NULL", b"+OK Dovecot (Debian) ready.\r\n", "pop3", Some("Dovecot pop3d"), None),
        ("NULL", b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n", "imap", Some("Dovecot imapd"), None),
        ("NULL", b"J\0\0\0\x0a8.0.36\0\x08\0\0\0abcdefgh\0\xff\xff\xff\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0ijklmnopqrst\0caching_sha2_password\0", "mysql", Some("MySQL"), Some("8.0.36")),
        ("NULL", b"Y\0\0\0\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\0\x05\0\0\0abcdefgh\0\xfe\xf7\x2d\x02\0\xff\x81\x15\0\0\0\0\0\0\x1d\0\0\0ijklmnopqrst\0mysql_native_password\0", "mysql", Some("MariaDB"), Some("10.11.6")),
        ("NULL", b"RFB 003.008\n", "vnc", Some("VNC"), None),
        ("NULL", b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27", "telnet", None, None),
        ("HTTPGet", b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: x\r\nContent-Type: text/html\r\n\r\n<html><head><title>Welcome to nginx!</title></head>", "http", Some("nginx"), Some("1.22.1")),
        ("HTTPGet", b"HTTP/1.1 404 Not Found\r\nDate: x\r\nServer: Apache/2.4.62 (Debian)\r\nContent-Length: 0\r\n\r\n", "http", Some("Apache httpd"), Some("2.4.62")),
        ("HTTPGet", b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n", "http", Some("SimpleHTTPServer"), Some("0.6")),
        ("HTTPGet", b"HTTP/1.1 200 OK\r\nServer: Weird/1\r\n\r\n<title>Router admin</title>", "http", Some("Weird/1"), None),
        ("HTTPGet", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"name\" : \"n1\", \"cluster_name\" : \"es\", \"version\" : { \"number\" : \"8.11.3\", \"build_flavor\" : \"default\" }, \"tagline\" : \"You Know, for Search\"}", "elasticsearch", Some("Elasticsearch REST API"), Some("8.11.3")),
        ("HTTPGet", b"\x15\x03\x03\0\x02\x02\x0a", "ssl", Some("TLS"), None),
        ("TLSClientHello", b"\x16\x03\x03\0\x5a\x02\0\0\x56\x03\x03rest", "ssl", Some("TLS"), None),
        ("RTSPOptions", b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: GStreamer RTSP server\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n", "rtsp", Some("GStreamer rtspd"), None),
        ("SIPOptions", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP localhost\r\nServer: Asterisk PBX 20.5.0\r\nContent-Length: 0\r\n\r\n", "sip", Some("Asterisk"), Some("20.5.0")),
        ("RedisInfo", b"$3000\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\nos:Linux 6.1.0 x86_64\r\n", "redis", Some("Redis key-value store"), Some("7.0.15")),
        ("RedisInfo", b"-NOAUTH Authentication required.\r\n", "redis", Some("Redis key-value store"), None),
        ("MemcachedVersion", b"VERSION 1.6.18\r\n", "memcached", Some("Memcached"), Some("1.6.18")),
        ("MongoIsMaster", b"\xc8\0\0\0\x10\x27\0\0PF\0\0\x01\0\0\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\xa4\0\0\0\x08ismaster\0\x01\x10maxWireVersion\0\x15\0\0\0\0", "mongodb", Some("MongoDB"), None),
        ("MQTTConnect", b"\x20\x02\0\0\x90\x03\0\x01\0\x31\x2d\0\x13$SYS/broker/versionmosquitto version 2.0.11", "mqtt", Some("Mosquitto"), Some("2.0.11")),
        ("MQTTConnect", b"\x20\x02\0\x05", "mqtt", Some("MQTT broker"), None),
        ("AMQPHeader", b"\x01\0\0\0\0\x01\x2c\0\x0a\0\x0a\0\x09\0\0\x01\x07\x0ccapabilities F\0\0\0\0\x07productS\0\0\0\x08RabbitMQ\x07versionS\0\0\0\x0612.1.0\x08platformS\0\0\0\x04Erlang", "amqp", Some("RabbitMQ"), Some("12.1.0")),
        ("LDAPBind", b"0\x0c\x02\x01\x01a\x07\x0a\x01\0\x04\0\x04\0", "ldap", Some("LDAP"), None),
        ("RDPNegotiate", b"\x03\0\0\x13\x0e\xd0\0\0\x12\x34\0\x02\x1f\x08\0\x02\0\0\0", "ms-wbt-server", Some("RDP"), None),
        ("DNSVersionBind", b"\0\x3c\x137\x84\0\0\x01\0\x01\0\0\0\0\x07version\x04bind\0\0\x10\0\x03\xc0\x0c\0\x10\0\x03\0\0\0\0\0\x13\x129.18.28-1~deb12u2", "domain", Some("ISC BIND"), Some("9.18.28-1~deb12u2")),
        ("SMBNegotiate", b"\0\0\0\xf8\xfeSMB@\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x41\0\x01\0\xff\x02\0\0", "microsoft-ds", Some("SMB"), None),
        ("KafkaApiVersions", b"\0\0\x01\x9e\0\0\x0f\xa0\0\0\0\0\0\x3c\0\0\0\0\0\x09\0\x01\0\0\0\x0c", "kafka", Some("Apache Kafka"), None),
        ("X11Setup", b"\0\x16\x0b\0\0\0\x06\0No protocol specified\n\0\0", "X11", Some("X11 server"), None),
        ("PostgresStartup", b"E\0\0\0\x64SFATAL\0VFATAL\0C28000\0Mno pg_hba.conf entry for host\0Fauth.c\0L543\0RClientAuthentication\0\0", "postgresql", Some("PostgreSQL DB"), None),
        ("PostgresStartup", b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0", "postgresql", Some("PostgreSQL DB"), None),
    ];

    #[test]
    fn builtin_database_parses_and_every_pattern_compiles() {
        let m = builtin();
        assert!(m.skipped().is_empty(), "{:?}", m.skipped());
        assert!(m.compiled_rules() > 100);
    }

    #[test]
    fn builtin_database_names_every_listed_service() {
        let m = builtin();
        for &(probe, response, service, product, version) in CASES {
            let p = m.probe_index(probes::Protocol::Tcp, probe).unwrap();
            let hit = m.match_response(p, response, None);
            let hit = hit
                .unwrap_or_else(|| panic!("{probe}: no match for {:?}", escape::bytes(response)));
            assert_eq!(
                (
                    hit.service.as_str(),
                    hit.product.as_deref(),
                    hit.version.as_deref()
                ),
                (service, product, version),
                "{probe}: {}",
                escape::bytes(response)
            );
            assert!(!hit.soft, "{probe}: soft match for {service}");
        }
    }

    #[test]
    fn builtin_database_covers_the_services_it_promises() {
        let file = builtin();
        let named: std::collections::HashSet<&str> = file
            .probes()
            .iter()
            .flat_map(|p| p.matches.iter().map(|m| m.service.as_str()))
            .collect();
        for s in [
            "ssh",
            "http",
            "ssl",
            "ftp",
            "smtp",
            "pop3",
            "imap",
            "mysql",
            "postgresql",
            "redis",
            "memcached",
            "mongodb",
            "mqtt",
            "amqp",
            "ldap",
            "ms-wbt-server",
            "vnc",
            "telnet",
            "domain",
            "sip",
            "rtsp",
            "microsoft-ds",
            "netbios-ssn",
            "elasticsearch",
            "kafka",
            "X11",
        ] {
            assert!(named.contains(s), "no rule names {s}");
        }
    }
}
