//! The pieces of a result line written from bytes on the stack: addresses,
//! `address:port` targets and decimals, each exactly as its `Display`
//! writes it, without the formatting machinery. The live text lines and
//! the JSON lines write one of each per result: on a sweep of a /16 that
//! is hundreds of thousands of lines, on the writer thread that shares
//! the cores with the probe loops.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `ip` as its `Display` writes it; IPv6 through `Display` (rare in large
/// sweeps, and its `::` shortening is not worth writing twice).
pub fn write_ip(out: &mut impl Write, ip: IpAddr) -> io::Result<()> {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let n = put_ipv4(&mut buf, v4);
            out.write_all(&buf[..n])
        }
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

/// `target` as its `Display` writes it (`127.0.0.1:22`, `[::1]:22`).
pub fn write_target(out: &mut impl Write, target: SocketAddr) -> io::Result<()> {
    let SocketAddr::V4(v4) = target else {
        return write!(out, "{target}");
    };
    let mut buf = [0u8; 21];
    let mut n = put_ipv4(&mut buf, *v4.ip());
    buf[n] = b':';
    n += 1;
    n += put_decimal(&mut buf[n..], u64::from(v4.port()));
    out.write_all(&buf[..n])
}

/// `n` in decimal.
pub fn write_decimal(out: &mut impl Write, n: u64) -> io::Result<()> {
    let mut buf = [0u8; 20];
    let len = put_decimal(&mut buf, n);
    out.write_all(&buf[..len])
}

/// `n` spaces.
pub fn pad(out: &mut impl Write, n: usize) -> io::Result<()> {
    const SPACES: &[u8] = &[b' '; 16];
    let mut left = n;
    while left > 0 {
        let k = left.min(SPACES.len());
        out.write_all(&SPACES[..k])?;
        left -= k;
    }
    Ok(())
}

/// Writes `ip` in dotted decimal at the start of `buf` (15 bytes at
/// most); returns its length.
fn put_ipv4(buf: &mut [u8], ip: Ipv4Addr) -> usize {
    let [a, b, c, d] = ip.octets();
    let mut n = put_octet(buf, a);
    for octet in [b, c, d] {
        buf[n] = b'.';
        n += 1 + put_octet(&mut buf[n + 1..], octet);
    }
    n
}

/// Writes `octet` in decimal at the start of `buf`; returns its length.
fn put_octet(buf: &mut [u8], octet: u8) -> usize {
    let (hundreds, tens, ones) = (octet / 100, octet / 10 % 10, octet % 10);
    if hundreds > 0 {
        buf[..3].copy_from_slice(&[b'0' + hundreds, b'0' + tens, b'0' + ones]);
        3
    } else if tens > 0 {
        buf[..2].copy_from_slice(&[b'0' + tens, b'0' + ones]);
        2
    } else {
        buf[0] = b'0' + ones;
        1
    }
}

/// Writes `n` in decimal at the start of `buf`; returns its length.
pub fn put_decimal(buf: &mut [u8], mut n: u64) -> usize {
    let len = digits(n);
    for i in (0..len).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    len
}

/// Decimal digits of `n`, as `n.to_string().len()` counts them.
pub fn digits(n: u64) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        10_000..=99_999 => 5,
        _ => 5 + digits(n / 100_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut got = Vec::new();
        write(&mut got).unwrap();
        String::from_utf8(got).unwrap()
    }

    /// Each piece written from bytes is what `Display` writes.
    #[test]
    fn pieces_written_from_bytes_are_their_display() {
        let targets = [
            "0.0.0.0:0",
            "127.0.0.1:22",
            "127.0.3.4:5432",
            "198.18.10.200:9200",
            "255.255.255.255:65535",
            "240.9.99.100:7",
            "[::1]:22",
            "[2001:2::5]:443",
        ];
        let every_octet = (0..=255u8).flat_map(|o| {
            [0u16, 9, 10, 99, 100, 999, 1000, 65535]
                .map(move |port| SocketAddr::from(([o, 255 - o, o / 3, 10], port)).to_string())
        });
        for t in targets.map(String::from).into_iter().chain(every_octet) {
            let target: SocketAddr = t.parse().unwrap();
            assert_eq!(text(|o| write_target(o, target)), target.to_string());
            assert_eq!(text(|o| write_ip(o, target.ip())), target.ip().to_string());
        }
        let numbers = [
            0,
            9,
            10,
            99,
            100,
            65_535,
            99_999,
            100_000,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for n in numbers.into_iter().chain((0..100_000).step_by(7)) {
            assert_eq!(text(|o| write_decimal(o, n)), n.to_string());
            assert_eq!(digits(n), n.to_string().len());
        }
    }
}
