//! A TLS client tunnel driven without a socket, and the server certificate's fields.
//!
//! When a port answers like TLS (a hard `ssl` match, [`super::conversation::Verdict::Tls`]),
//! the driver opens a connection, wraps it in a [`TlsClient`] and runs a new
//! [`super::conversation::Conversation`] in [`super::conversation::Tunnel::Tls`] mode over the
//! plaintext side: the probes run again inside the tunnel and a match is reported as
//! `ssl/<service>` ([`tunnelled`]).
//!
//! [`TlsClient`] is rustls' `ClientConnection` with the socket left out, as rustls'
//! `tlsclient-mio` example drives it: bytes from the socket go into
//! [`TlsClient::read_tls`], bytes for the socket come out of [`TlsClient::write_tls`].
//!
//! A scanner wants to see every server, not to trust it: the certificate verifier accepts any
//! certificate and any handshake signature ([`AcceptAnyCertificate`]). Nothing learnt through
//! such a tunnel is authenticated, and nothing secret is ever sent in it.
//!
//! Versions: TLS 1.3 and TLS 1.2 (rustls implements no older version). A server that speaks
//! only SSL 3.0, TLS 1.0 or TLS 1.1 refuses the handshake (a `protocol_version` alert or a
//! closed connection): [`TlsClient::read_tls`] returns the error, the port stays named `ssl`
//! from the plaintext ClientHello probe, and its services are not probed inside the tunnel.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::matcher::ServiceMatch;

/// Why a tunnel could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the client configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    /// The handshake or a record failed.
    #[error("TLS handshake or record: {0}")]
    Protocol(rustls::Error),
    /// Moving bytes through rustls's buffers failed.
    #[error("TLS buffer: {0}")]
    Io(std::io::Error),
}

/// A certificate verifier that accepts every certificate and every signature: FastPort
/// inspects servers, it does not trust them.
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    schemes: Vec<SignatureScheme>,
}

/// The handshake signature checks of [`ServerCertVerifier`], TLS 1.2's and TLS 1.3's alike:
/// each accepts any signature.
macro_rules! accept_any_signature {
    ($($check:ident),+) => {$(
        fn $check(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
    )+};
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    accept_any_signature!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The client configuration every tunnel shares: TLS 1.2 and 1.3, any certificate, the
/// given ALPN offers (e.g. `http/1.1`; offering `h2` would make an HTTP/1 probe fail).
pub fn client_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { schemes }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// What the handshake told about the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: Option<String>,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: Option<String>,
    /// The protocol the server chose by ALPN, if any.
    pub alpn: Option<String>,
    /// The leaf certificate, if it parsed.
    pub certificate: Option<CertInfo>,
}

/// The fields of a certificate a scan reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514 style, e.g. `CN=example.org, O=Example`.
    pub subject: String,
    /// The issuer, in the same style.
    pub issuer: String,
    /// `DNS:name`, `IP:address`, `email:…`, `URI:…`.
    pub sans: Vec<String>,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    /// Serial number, hex bytes separated by `:`.
    pub serial: String,
}

/// Parses a DER certificate's reportable fields (`None` if it is not a certificate).
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(s) => sans.push(format!("DNS:{s}")),
                GeneralName::RFC822Name(s) => sans.push(format!("email:{s}")),
                GeneralName::URI(s) => sans.push(format!("URI:{s}")),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    };
                    sans.push(format!("IP:{}", ip.unwrap_or_else(|| "?".into())));
                }
                _ => {}
            }
        }
    }
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.tbs_certificate.raw_serial_as_string(),
    })
}

/// A match found inside a TLS tunnel, named as nmap names it: `ssl/http`.
pub fn tunnelled(mut m: ServiceMatch) -> ServiceMatch {
    if !m.service.starts_with("ssl/") && m.service != "ssl" {
        m.service = format!("ssl/{}", m.service);
    }
    m
}

/// One TLS client connection with no socket: see the module documentation.
pub struct TlsClient {
    conn: ClientConnection,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsClient {
    /// A client for `server` (a host name is sent as SNI; an address is not).
    pub fn new(
        config: Arc<ClientConfig>,
        server: ServerName<'static>,
    ) -> Result<TlsClient, TlsError> {
        let conn = ClientConnection::new(config, server).map_err(TlsError::Config)?;
        Ok(TlsClient { conn })
    }

    /// Feeds bytes read from the socket and processes the records they complete.
    pub fn read_tls(&mut self, mut bytes: &[u8]) -> Result<(), TlsError> {
        while !bytes.is_empty() {
            let n = self.conn.read_tls(&mut bytes).map_err(TlsError::Io)?;
            self.conn
                .process_new_packets()
                .map_err(TlsError::Protocol)?;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Appends the bytes to write to the socket (handshake and encrypted records).
    pub fn write_tls(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        while self.conn.wants_write() {
            self.conn.write_tls(out).map_err(TlsError::Io)?;
        }
        Ok(())
    }

    /// Whether the socket has bytes to take ([`TlsClient::write_tls`]).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues plaintext (a probe) to encrypt; it goes out once the handshake is done.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), TlsError> {
        self.conn
            .writer()
            .write_all(plaintext)
            .map_err(TlsError::Io)
    }

    /// Appends the plaintext received so far to `out`; true if the server closed the tunnel
    /// (close_notify).
    pub fn receive(&mut self, out: &mut Vec<u8>) -> Result<bool, TlsError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                // The peer closed the TCP stream without close_notify: treat as closed.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(TlsError::Io(e)),
            }
        }
    }

    /// What the handshake told (complete once [`TlsClient::is_handshaking`] is false).
    pub fn info(&self) -> TlsInfo {
        TlsInfo {
            version: self.conn.protocol_version().map(|v| format!("{v:?}")),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            certificate: self
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| cert_info(c.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    use super::super::conversation::{Action, Conversation, Settings, Tunnel, Verdict};
    use super::*;

    // A self-signed test certificate made for these tests (CN=fastport.test, SANs
    // fastport.test, www.fastport.test, 127.0.0.1; serial 4242; P-256 key).
    const CERT: &[u8] = include_bytes!("testdata/cert.der");
    const KEY: &[u8] = include_bytes!("testdata/key.der");

    fn server(versions: &[&'static rustls::SupportedProtocolVersion]) -> ServerConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(CERT.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(KEY.to_vec())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(client: &mut TlsClient, server: &mut ServerConnection) {
        for _ in 0..10 {
            let mut to_server = Vec::new();
            client.write_tls(&mut to_server).unwrap();
            let mut rd = &to_server[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            if to_server.is_empty() && to_client.is_empty() {
                return;
            }
            client.read_tls(&to_client).unwrap();
        }
    }

    fn client() -> TlsClient {
        let config = client_config(&[b"http/1.1"]).unwrap();
        TlsClient::new(config, ServerName::try_from("fastport.test").unwrap()).unwrap()
    }

    #[test]
    fn handshake_accepts_self_signed_and_reports_the_certificate() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut c = client();
            let mut s = server(&[version]);
            pump(&mut c, &mut s);
            assert!(!c.is_handshaking());
            let info = c.info();
            let expected = if version == &rustls::version::TLS13 {
                "TLSv1_3"
            } else {
                "TLSv1_2"
            };
            assert_eq!(info.version.as_deref(), Some(expected));
            assert_eq!(info.alpn.as_deref(), Some("http/1.1"));
            let cert = info.certificate.unwrap();
            assert_eq!(cert.subject, "CN=fastport.test, O=FastPort Tests");
            assert_eq!(cert.issuer, cert.subject);
            assert_eq!(
                cert.sans,
                vec!["DNS:fastport.test", "DNS:www.fastport.test", "IP:127.0.0.1"]
            );
            assert_eq!(cert.not_after - cert.not_before, 3650 * 86400);
            assert_eq!(cert.serial, "10:92");
        }
    }

    #[test]
    fn garbage_from_the_server_is_an_error_not_a_panic() {
        let mut c = client();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        assert!(!hello.is_empty());
        assert!(c.read_tls(b"SSH-2.0-OpenSSH_9.6\r\n").is_err());
    }

    #[test]
    fn probes_run_again_inside_the_tunnel() {
        let matcher = Arc::new(super::super::builtin());
        let t0 = Instant::now();
        let mut c = client();
        let mut s = server(&[&rustls::version::TLS13]);
        pump(&mut c, &mut s);
        let settings = Settings {
            tunnel: Tunnel::Tls,
            parallel: 1,
            rtt: Duration::from_millis(1),
            ..Settings::default()
        };
        let mut conv = Conversation::new(matcher.clone(), 8443, settings, t0);
        // The HTTP server says nothing first.
        let t1 = conv.next_deadline().unwrap();
        conv.handle_timeout(t1);
        let Some(Action::Send { lane: 0, probe }) = conv.poll_action() else {
            panic!()
        };
        assert_eq!(matcher.probes()[probe].name, "HTTPGet");
        c.send(conv.payload(probe)).unwrap();
        pump(&mut c, &mut s);
        let mut request = Vec::new();
        let _ = s.reader().read_to_end(&mut request);
        assert!(request.starts_with(b"GET / HTTP/1.0\r\n"));
        s.writer()
            .write_all(b"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        pump(&mut c, &mut s);
        let mut plain = Vec::new();
        c.receive(&mut plain).unwrap();
        conv.handle_data(0, &plain, t1 + Duration::from_millis(2));
        let Some(Verdict::Matched(m)) = conv.verdict().cloned() else {
            panic!("{:?}", conv.verdict())
        };
        let m = tunnelled(m);
        assert_eq!(
            (
                m.service.as_str(),
                m.product.as_deref(),
                m.version.as_deref()
            ),
            ("ssl/http", Some("nginx"), Some("1.25.3"))
        );
    }
}
