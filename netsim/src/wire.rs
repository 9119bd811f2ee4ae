//! The packets: what the kernel sends into the TUN device, parsed, and the
//! simulated hosts' answers, built. etherparse does the parsing, the lengths
//! and the checksums; this module only decides which fields go where.
//!
//! IPv4 only: the simulated range is 198.18.0.0/15, and anything else read
//! from the device (IPv6 router solicitations, say) is [`Incoming::Other`].

use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{
    Icmpv4Type, IpNumber, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice,
    icmpv4::DestUnreachableHeader,
};

use crate::model::ReplyKind;

/// The longest quote an ICMP error carries: a 60-byte IPv4 header (with
/// options) and the first 8 bytes of the TCP header (ports and sequence
/// number), as RFC 792 asks and Linux needs to find the socket.
pub const MAX_QUOTE: usize = 60 + 8;

/// Room for any packet this module builds: a 40-byte TCP/IP header and a
/// service's banner of at most [`MAX_PAYLOAD`] bytes (an ICMP error with a
/// full quote is 20 + 8 + 68 = 96 bytes).
pub const MAX_REPLY: usize = 40 + MAX_PAYLOAD;

/// The longest payload a simulated service sends in one segment.
pub const MAX_PAYLOAD: usize = 472;

/// The TTL of every simulated answer.
pub const TTL: u8 = 64;

/// The MSS the simulated hosts announce.
pub const MSS: u16 = 1460;

/// The window the simulated hosts announce.
pub const WINDOW: u16 = 64240;

/// A SYN from the scanner's kernel to a simulated host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    /// The scanner's end.
    pub client: SocketAddrV4,
    /// The simulated host's end.
    pub server: SocketAddrV4,
    /// The SYN's sequence number (the client's ISN).
    pub seq: u32,
    quote: [u8; MAX_QUOTE],
    quote_len: u8,
}

impl Syn {
    /// The SYN's IP header and first 8 TCP bytes, which an ICMP error quotes.
    pub fn quote(&self) -> &[u8] {
        &self.quote[..usize::from(self.quote_len)]
    }
}

/// A TCP segment after the SYN that carries a FIN or data. A simulated host
/// has no connection, so it answers with a stateless RST (RFC 793, "Reset
/// Generation", case 1), which also spares the kernel its FIN retransmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stray {
    /// The scanner's end.
    pub client: SocketAddrV4,
    /// The simulated host's end.
    pub server: SocketAddrV4,
    /// The segment's sequence number.
    pub seq: u32,
    /// Its acknowledgment number, when the ACK flag is set.
    pub ack: Option<u32>,
    /// Its sequence space: payload bytes plus one for a FIN.
    pub len: u32,
    /// Whether the FIN flag is set.
    pub fin: bool,
}

/// A bare ACK from the scanner: the handshake's last step, or the kernel
/// acknowledging a simulated service's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSegment {
    /// The scanner's end.
    pub client: SocketAddrV4,
    /// The simulated host's end.
    pub server: SocketAddrV4,
    /// Its sequence number.
    pub seq: u32,
    /// Its acknowledgment number.
    pub ack: u32,
}

/// What one packet from the device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A SYN to answer.
    Syn(Syn),
    /// The handshake's final ACK (or any bare ACK): consumed, or the cue
    /// for a speaking service's banner.
    Ack(AckSegment),
    /// A RST (FastPort closes open probes with one): consumed.
    Rst,
    /// A FIN or data: answered with a RST.
    Stray(Stray),
    /// Not IPv4 TCP, or a fragment: ignored.
    Other,
    /// Does not parse.
    Malformed,
}

/// Classifies a raw IPv4 packet as read from a TUN device (`IFF_NO_PI`).
pub fn parse(packet: &[u8]) -> Incoming {
    let Ok(sliced) = SlicedPacket::from_ip(packet) else {
        return Incoming::Malformed;
    };
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        return Incoming::Other;
    };
    if ip.is_payload_fragmented() {
        return Incoming::Other;
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return Incoming::Other;
    };
    let header = ip.header();
    let client = SocketAddrV4::new(header.source_addr(), tcp.source_port());
    let server = SocketAddrV4::new(header.destination_addr(), tcp.destination_port());
    if tcp.rst() {
        return Incoming::Rst;
    }
    if tcp.syn() {
        if tcp.ack() {
            // A SYN-ACK towards a simulated host: nothing here opened a connection.
            return Incoming::Other;
        }
        let quote_len = header.slice().len() + 8;
        let mut quote = [0u8; MAX_QUOTE];
        quote[..quote_len].copy_from_slice(&packet[..quote_len]);
        return Incoming::Syn(Syn {
            client,
            server,
            seq: tcp.sequence_number(),
            quote,
            quote_len: quote_len as u8,
        });
    }
    let len = tcp.payload().len() as u32 + u32::from(tcp.fin());
    if len == 0 {
        return Incoming::Ack(AckSegment {
            client,
            server,
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
        });
    }
    Incoming::Stray(Stray {
        client,
        server,
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        len,
        fin: tcp.fin(),
    })
}

fn ipv4(from: Ipv4Addr, to: Ipv4Addr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ipv4(from.octets(), to.octets(), TTL)
}

/// The router in front of `host`'s /24, which sends the ICMP errors of
/// the hosts behind it: the /24's `.254`. A connect scanner that reads its
/// socket's error queue (`IP_RECVERR`) learns this address (nmap's
/// `reason_ip`), not the target's.
pub fn router_of(host: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = host.octets();
    Ipv4Addr::new(a, b, c, 254)
}

/// Writes the answer of `kind` to `syn` into `buf` (at least [`MAX_REPLY`]
/// bytes) and returns its length. `isn` is used by a SYN-ACK only.
pub fn build_reply(kind: ReplyKind, syn: &Syn, isn: u32, buf: &mut [u8]) -> usize {
    let (server, client) = (syn.server, syn.client);
    let ip = ipv4(*server.ip(), *client.ip());
    let written = match kind {
        ReplyKind::SynAck => ip
            .tcp(server.port(), client.port(), isn, WINDOW)
            .syn()
            .ack(syn.seq.wrapping_add(1))
            .options(&[TcpOptionElement::MaximumSegmentSize(MSS)])
            .expect("an MSS option fits in a TCP header")
            .write_to_slice(buf, &[]),
        // RFC 793: a SYN to a closed port gets <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>.
        ReplyKind::Rst => ip
            .tcp(server.port(), client.port(), 0, 0)
            .rst()
            .ack(syn.seq.wrapping_add(1))
            .write_to_slice(buf, &[]),
        ReplyKind::IcmpHostUnreach | ReplyKind::IcmpAdminProhibited => {
            let code = if kind == ReplyKind::IcmpHostUnreach {
                DestUnreachableHeader::Host
            } else {
                DestUnreachableHeader::FilterProhibited
            };
            ipv4(router_of(*server.ip()), *client.ip())
                .icmpv4(Icmpv4Type::DestinationUnreachable(code))
                .write_to_slice(buf, syn.quote())
        }
    };
    written.expect("the reply buffer holds MAX_REPLY bytes")
}

/// Writes the stateless RST answering `stray` into `buf` and returns its length.
pub fn build_reset(stray: &Stray, buf: &mut [u8]) -> usize {
    let (server, client) = (stray.server, stray.client);
    let tcp = ipv4(*server.ip(), *client.ip());
    let written = match stray.ack {
        // RFC 793: if the segment has an ACK, the reset takes its sequence number from it.
        Some(ack) => tcp.tcp(server.port(), client.port(), ack, 0).rst(),
        None => tcp
            .tcp(server.port(), client.port(), 0, 0)
            .rst()
            .ack(stray.seq.wrapping_add(stray.len)),
    }
    .write_to_slice(buf, &[]);
    written.expect("the reply buffer holds MAX_REPLY bytes")
}

/// Writes a data segment from `server` to `client` (PSH-ACK, sequence
/// `seq`, acknowledging `ack`) carrying `payload` (at most [`MAX_PAYLOAD`]
/// bytes) into `buf` and returns its length: a simulated service talking.
pub fn build_data(
    server: SocketAddrV4,
    client: SocketAddrV4,
    seq: u32,
    ack: u32,
    payload: &[u8],
    buf: &mut [u8],
) -> usize {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    ipv4(*server.ip(), *client.ip())
        .tcp(server.port(), client.port(), seq, WINDOW)
        .psh()
        .ack(ack)
        .write_to_slice(buf, payload)
        .expect("the reply buffer holds MAX_REPLY bytes")
}

/// Whether `packet` is an IPv4 packet whose IP checksum and TCP or ICMP
/// checksum are right (for tests, and for checking what a kernel sent).
pub fn checksums_valid(packet: &[u8]) -> bool {
    let Ok(sliced) = SlicedPacket::from_ip(packet) else {
        return false;
    };
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        return false;
    };
    let header = ip.header();
    if header.to_header().calc_header_checksum() != header.header_checksum() {
        return false;
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp
            .calc_checksum_ipv4(header.source(), header.destination())
            .is_ok_and(|sum| sum == tcp.checksum()),
        Some(TransportSlice::Icmpv4(icmp)) => {
            icmp.icmp_type().calc_checksum(icmp.payload()) == icmp.checksum()
        }
        _ => header.protocol() != IpNumber::TCP && header.protocol() != IpNumber::ICMP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN as Linux sends it (options and all), built with etherparse.
    pub(crate) fn syn_packet(client: SocketAddrV4, server: SocketAddrV4, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(client.ip().octets(), server.ip().octets(), 64)
            .tcp(client.port(), server.port(), seq, 64240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(1, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write_to_vec(&mut v, &[])
            .unwrap();
        v
    }

    fn ends() -> (SocketAddrV4, SocketAddrV4) {
        (
            "198.19.255.254:40000".parse().unwrap(),
            "198.18.0.5:80".parse().unwrap(),
        )
    }

    #[test]
    fn a_syn_parses_with_its_quote() {
        let (c, s) = ends();
        let p = syn_packet(c, s, 1000);
        assert!(checksums_valid(&p));
        let Incoming::Syn(syn) = parse(&p) else {
            panic!("not a SYN: {:?}", parse(&p));
        };
        assert_eq!((syn.client, syn.server, syn.seq), (c, s, 1000));
        assert_eq!(syn.quote(), &p[..28]);
    }

    #[test]
    fn replies_answer_the_syn() {
        let (c, s) = ends();
        let Incoming::Syn(syn) = parse(&syn_packet(c, s, u32::MAX)) else {
            unreachable!()
        };
        let mut buf = [0u8; MAX_REPLY];
        for kind in ReplyKind::ALL {
            let n = build_reply(kind, &syn, 77, &mut buf);
            let p = &buf[..n];
            assert!(checksums_valid(p), "{kind:?}");
            let sliced = SlicedPacket::from_ip(p).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
                unreachable!()
            };
            // TCP answers come from the host, ICMP errors from its router.
            let from = match sliced.transport {
                Some(TransportSlice::Tcp(_)) => *s.ip(),
                _ => router_of(*s.ip()),
            };
            assert_eq!(ip.header().source_addr(), from, "{kind:?}");
            assert_eq!(ip.header().destination_addr(), *c.ip());
            match (kind, &sliced.transport) {
                (ReplyKind::SynAck, Some(TransportSlice::Tcp(t))) => {
                    assert!(t.syn() && t.ack() && !t.rst());
                    assert_eq!((t.sequence_number(), t.acknowledgment_number()), (77, 0));
                    assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
                }
                (ReplyKind::Rst, Some(TransportSlice::Tcp(t))) => {
                    assert!(t.rst() && t.ack() && !t.syn());
                    assert_eq!(t.acknowledgment_number(), 0);
                }
                (_, Some(TransportSlice::Icmpv4(i))) => {
                    let code = if kind == ReplyKind::IcmpHostUnreach {
                        1
                    } else {
                        13
                    };
                    assert_eq!((i.type_u8(), i.code_u8()), (3, code));
                    assert_eq!(i.payload(), syn.quote());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn acks_rsts_fins_and_others_are_told_apart() {
        let (c, s) = ends();
        let seg = |f: &dyn Fn(
            etherparse::PacketBuilderStep<etherparse::TcpHeader>,
        ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
                   payload: &[u8]| {
            let mut v = Vec::new();
            f(
                PacketBuilder::ipv4(c.ip().octets(), s.ip().octets(), 64).tcp(
                    c.port(),
                    s.port(),
                    500,
                    1000,
                ),
            )
            .write_to_vec(&mut v, payload)
            .unwrap();
            v
        };
        assert!(matches!(
            parse(&seg(&|t| t.ack(9), &[])),
            Incoming::Ack(AckSegment { ack: 9, .. })
        ));
        assert_eq!(parse(&seg(&|t| t.rst().ack(9), &[])), Incoming::Rst);
        assert_eq!(parse(&seg(&|t| t.syn().ack(9), &[])), Incoming::Other);
        let fin = parse(&seg(&|t| t.fin().ack(9), &[]));
        let Incoming::Stray(stray) = fin else {
            panic!("{fin:?}")
        };
        assert_eq!((stray.seq, stray.ack, stray.len), (500, Some(9), 1));
        let mut buf = [0u8; MAX_REPLY];
        let n = build_reset(&stray, &mut buf);
        assert!(checksums_valid(&buf[..n]));
        {
            let sliced = SlicedPacket::from_ip(&buf[..n]).unwrap();
            let Some(TransportSlice::Tcp(t)) = &sliced.transport else {
                unreachable!()
            };
            assert!(t.rst() && !t.ack());
            assert_eq!(t.sequence_number(), 9);
        }
        let data = parse(&seg(&|t| t, b"hello"));
        let Incoming::Stray(stray) = data else {
            panic!("{data:?}")
        };
        let n = build_reset(&stray, &mut buf);
        let sliced = SlicedPacket::from_ip(&buf[..n]).unwrap();
        let Some(TransportSlice::Tcp(t)) = &sliced.transport else {
            unreachable!()
        };
        assert!(t.rst() && t.ack());
        assert_eq!(t.acknowledgment_number(), 505);
        let mut udp = Vec::new();
        PacketBuilder::ipv4(c.ip().octets(), s.ip().octets(), 64)
            .udp(1, 2)
            .write_to_vec(&mut udp, &[])
            .unwrap();
        assert_eq!(parse(&udp), Incoming::Other);
        assert_eq!(parse(&[0x60, 0, 0]), Incoming::Malformed);
        assert_eq!(parse(&[]), Incoming::Malformed);
    }
}
