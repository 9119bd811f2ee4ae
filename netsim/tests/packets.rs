//! Every packet the responder emits is well formed: a property over random
//! SYNs (addresses, ports, sequence numbers, IP and TCP options), checked
//! with etherparse and with an independent RFC 1071 checksum.

use std::net::Ipv4Addr;
use std::time::Instant;

use etherparse::{
    IpHeaders, Ipv4Header, Ipv4Options, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement,
    TransportSlice,
};
use fastport_netsim::wire::{self, MAX_REPLY};
use fastport_netsim::{Action, Fractions, Latency, Model, Preset, ReplyKind, Responder};
use proptest::prelude::*;

/// RFC 1071: the ones'-complement sum of 16-bit words; a packet part with a
/// correct checksum sums to 0xFFFF, so this returns 0 for it.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// A model where every answer kind is common and everything is due at once.
fn model(seed: u64) -> Model {
    let mut c = Preset::Far.config();
    c.fractions = Fractions {
        open: 0.25,
        filtered: 0.0,
        host_unreach: 0.25,
        admin_prohibited: 0.25,
    };
    c.latency = Latency::Fixed { ms: 0.0 };
    Model::new(c, seed).unwrap()
}

fn tcp_options() -> impl Strategy<Value = Vec<TcpOptionElement>> {
    prop::collection::vec(
        prop_oneof![
            any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
            Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
            (any::<u32>(), any::<u32>()).prop_map(|(a, b)| TcpOptionElement::Timestamp(a, b)),
            (0u8..15).prop_map(TcpOptionElement::WindowScale),
            Just(TcpOptionElement::Noop),
        ],
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_answer_to_a_syn_parses_and_has_valid_checksums(
        seed in any::<u64>(),
        host in 0u32..65536,
        port in 1u16..,
        sport in 1u16..,
        seq in any::<u32>(),
        ip_option_words in 0usize..=10,
        options in tcp_options(),
    ) {
        let server = Ipv4Addr::from(0xC612_0000 + host);
        let client = Ipv4Addr::new(198, 19, 255, 254);
        let mut ip = Ipv4Header::new(0, 64, etherparse::ip_number::TCP, client.octets(), server.octets()).unwrap();
        // Options of NOPs (and a final end-of-list), 4 to 40 bytes.
        let mut opts = vec![1u8; ip_option_words * 4];
        if let Some(last) = opts.last_mut() { *last = 0; }
        ip.options = Ipv4Options::try_from(&opts[..]).unwrap();
        let mut syn = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
            .tcp(sport, port, seq, 64240)
            .syn()
            .options(&options)
            .unwrap()
            .write_to_vec(&mut syn, &[])
            .unwrap();

        let m = model(seed);
        let t0 = Instant::now();
        let mut r = Responder::new(m.clone(), false);
        let action = r.handle(t0, &syn);
        let expected = m.state(server, port).reply().unwrap();
        prop_assert_eq!(action, Action::Scheduled(expected, t0));
        let mut buf = [0u8; MAX_REPLY];
        let n = r.poll_transmit(t0, &mut buf).unwrap();
        prop_assert!(r.poll_transmit(t0, &mut buf).is_none());
        let reply = &buf[..n];

        let sliced = SlicedPacket::from_ip(reply).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else { panic!("not IPv4") };
        let header = ip.header();
        let from = match expected {
            ReplyKind::SynAck | ReplyKind::Rst => server,
            _ => wire::router_of(server),
        };
        prop_assert_eq!(header.source_addr(), from);
        prop_assert_eq!(header.destination_addr(), client);
        prop_assert_eq!(usize::from(header.total_len()), n);
        prop_assert_eq!(internet_checksum(&[header.slice()]), 0);
        prop_assert!(wire::checksums_valid(reply));
        let l4 = &reply[header.slice().len()..];
        match (&sliced.transport, expected) {
            (Some(TransportSlice::Tcp(tcp)), ReplyKind::SynAck | ReplyKind::Rst) => {
                let pseudo = [&server.octets()[..], &client.octets(), &[0, 6], &(l4.len() as u16).to_be_bytes()].concat();
                prop_assert_eq!(internet_checksum(&[&pseudo, l4]), 0);
                prop_assert_eq!((tcp.source_port(), tcp.destination_port()), (port, sport));
                prop_assert_eq!(tcp.acknowledgment_number(), seq.wrapping_add(1));
                prop_assert!(tcp.ack());
                prop_assert_eq!(tcp.syn(), expected == ReplyKind::SynAck);
                prop_assert_eq!(tcp.rst(), expected == ReplyKind::Rst);
            }
            (Some(TransportSlice::Icmpv4(icmp)), ReplyKind::IcmpHostUnreach | ReplyKind::IcmpAdminProhibited) => {
                prop_assert_eq!(internet_checksum(&[l4]), 0);
                let code = if expected == ReplyKind::IcmpHostUnreach { 1 } else { 13 };
                prop_assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, code));
                let ihl = 20 + ip_option_words * 4;
                prop_assert_eq!(icmp.payload(), &syn[..ihl + 8]);
            }
            (other, kind) => prop_assert!(false, "{:?} for {:?}", other, kind),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_responder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut r = Responder::new(model(1), false);
        let t0 = Instant::now();
        r.handle(t0, &bytes);
        let mut buf = [0u8; MAX_REPLY];
        while let Some(n) = r.poll_transmit(t0, &mut buf) {
            prop_assert!(wire::checksums_valid(&buf[..n]));
        }
    }
}

/// How many SYNs a second the responder's core handles (parse, decide,
/// queue, build the answer), without the device's system calls:
/// `cargo test --release -p fastport-netsim --test netsim -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement, not a check: run it by name, in release"]
fn responder_core_throughput() {
    let m = Model::new(Preset::InternetLike.config(), 1).unwrap();
    let syns: Vec<Vec<u8>> = (0..200_000u32)
        .map(|i| {
            let mut v = Vec::new();
            PacketBuilder::ipv4(
                [198, 19, 255, 254],
                Ipv4Addr::from(0xC612_0000 + i / 100).octets(),
                64,
            )
            .tcp(
                40000 + (i % 20000) as u16,
                fastport_netsim::config::TOP_100_PORTS[(i % 100) as usize],
                i,
                64240,
            )
            .syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write_to_vec(&mut v, &[])
            .unwrap();
            v
        })
        .collect();
    let mut r = Responder::new(m, false);
    let t0 = Instant::now();
    let mut buf = [0u8; MAX_REPLY];
    let mut sent = 0;
    for syn in &syns {
        r.handle(t0, syn);
    }
    let later = t0 + std::time::Duration::from_secs(120);
    while r.poll_transmit(later, &mut buf).is_some() {
        sent += 1;
    }
    let took = t0.elapsed();
    eprintln!(
        "{} SYNs in, {sent} answers out in {:.1} ms: {:.0} SYNs/s",
        syns.len(),
        took.as_secs_f64() * 1000.0,
        syns.len() as f64 / took.as_secs_f64()
    );
}
