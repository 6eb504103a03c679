//! The PROXY v2 header rules (haproxy's proxy-protocol.txt §2.2), one test each.

use std::io::{self, Read};
use std::net::SocketAddr;

use ppp::v2::{Builder, Command, Protocol, Version};

use super::{HeaderRead, MAX_TLV_BYTES, Parsed, ProxyError, Step, parse};

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxy(src: &str, dst: &str) -> Builder {
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (addr(src), addr(dst)),
    )
}

/// A header from its fixed fields and the bytes after them.
fn raw(version_command: u8, family_protocol: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[version_command, family_protocol]);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

#[test]
fn proxy_over_tcp4_names_the_client_address() {
    let h = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    assert_eq!(h.len(), 28);
    assert_eq!(parse(&h), Ok(Parsed::Done(Some(addr("203.0.113.7:4242")))));
}

#[test]
fn proxy_over_tcp6_names_the_client_address() {
    let h = proxy("[2001:db8::7]:4242", "[2001:db8::1]:3478")
        .build()
        .unwrap();
    assert_eq!(
        parse(&h),
        Ok(Parsed::Done(Some(addr("[2001:db8::7]:4242"))))
    );
}

#[test]
fn local_command_keeps_the_sockets_own_address() {
    let h = raw(0x20, 0x00, &[]);
    assert_eq!(parse(&h), Ok(Parsed::Done(None)));
    // LOCAL ignores whatever address block it carries.
    let h = raw(0x20, 0x11, &[0; 12]);
    assert_eq!(parse(&h), Ok(Parsed::Done(None)));
}

#[test]
fn tlvs_after_the_addresses_are_skipped() {
    let h = proxy("203.0.113.7:4242", "10.0.0.5:3478")
        .write_tlv(0x05u8, b"connection-id-123")
        .unwrap()
        .write_tlv(0xEAu8, &[7; 40])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(parse(&h), Ok(Parsed::Done(Some(addr("203.0.113.7:4242")))));
}

#[test]
fn bytes_after_the_header_are_not_part_of_it() {
    let mut h = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    h.extend_from_slice(&[0x16, 3, 1]);
    assert_eq!(parse(&h), Ok(Parsed::Done(Some(addr("203.0.113.7:4242")))));
}

#[test]
fn a_stream_that_does_not_start_with_the_signature_is_refused_at_once() {
    // STUN straight from a listed source, the v1 text form, a TLS ClientHello.
    for start in [&[0u8, 1, 0, 0][..], b"PROXY TCP4 ", &[0x16, 3, 1]] {
        assert_eq!(parse(start), Err(ProxyError::BadSignature), "{start:?}");
    }
    let mut h = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    h[11] = b'X';
    assert_eq!(parse(&h), Err(ProxyError::BadSignature));
}

#[test]
fn a_version_other_than_2_is_refused() {
    assert_eq!(
        parse(&raw(0x11, 0x11, &[0; 12])),
        Err(ProxyError::BadVersion)
    );
}

#[test]
fn a_command_other_than_local_or_proxy_is_refused() {
    assert_eq!(
        parse(&raw(0x22, 0x11, &[0; 12])),
        Err(ProxyError::BadCommand)
    );
}

#[test]
fn proxy_for_udp_unix_or_unspec_is_unsupported() {
    for family_protocol in [0x12, 0x22, 0x31, 0x00, 0x41] {
        let h = raw(0x21, family_protocol, &[0; 216]);
        assert_eq!(
            parse(&h),
            Err(ProxyError::Unsupported),
            "{family_protocol:#x}"
        );
    }
}

#[test]
fn a_length_too_short_for_the_addresses_is_refused() {
    assert_eq!(parse(&raw(0x21, 0x11, &[0; 8])), Err(ProxyError::BadLength));
    assert_eq!(
        parse(&raw(0x21, 0x21, &[0; 12])),
        Err(ProxyError::BadLength)
    );
}

#[test]
fn a_truncated_header_asks_for_exactly_the_rest() {
    let h = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    assert_eq!(parse(&[]), Ok(Parsed::Need(16)));
    assert_eq!(parse(&h[..5]), Ok(Parsed::Need(16)));
    assert_eq!(parse(&h[..16]), Ok(Parsed::Need(28)));
    assert_eq!(parse(&h[..27]), Ok(Parsed::Need(28)));
}

#[test]
fn more_than_512_bytes_of_tlvs_is_refused_from_the_fixed_part() {
    let at_limit = proxy("203.0.113.7:4242", "10.0.0.5:3478")
        .write_tlv(0xEAu8, &vec![0; MAX_TLV_BYTES - 3])
        .unwrap()
        .build()
        .unwrap();
    assert!(matches!(parse(&at_limit), Ok(Parsed::Done(Some(_)))));
    let over = raw(0x21, 0x11, &vec![0; 12 + MAX_TLV_BYTES + 1]);
    assert_eq!(parse(&over[..16]), Err(ProxyError::TooLong));
    let mut huge = raw(0x21, 0x11, &[]);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(&huge), Err(ProxyError::TooLong));
}

/// A socket that hands out its bytes `chunk` at a time, then would block (or ends).
struct Trickle {
    data: Vec<u8>,
    chunk: usize,
    eof: bool,
    reads: Vec<usize>,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.push(buf.len());
        if self.data.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        Ok(n)
    }
}

fn trickle(data: &[u8], chunk: usize, eof: bool) -> Trickle {
    Trickle {
        data: data.to_vec(),
        chunk,
        eof,
        reads: vec![],
    }
}

#[test]
fn the_header_is_read_exactly_and_what_follows_stays_in_the_socket() {
    let mut bytes = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    bytes.extend_from_slice(b"STUN");
    let mut sock = trickle(&bytes, 5, false);
    let mut r = HeaderRead::default();
    let step = r.read(&mut sock).unwrap();
    assert_eq!(step, Step::Done(Some(addr("203.0.113.7:4242"))));
    assert_eq!(sock.data, b"STUN", "no byte past the header was taken");
    assert!(sock.reads.iter().all(|&n| n <= 16), "{:?}", sock.reads);
}

#[test]
fn a_header_in_pieces_waits_for_the_rest() {
    let bytes = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    let mut r = HeaderRead::default();
    assert_eq!(
        r.read(&mut trickle(&bytes[..20], 7, false)),
        Ok(Step::Waiting)
    );
    let step = r.read(&mut trickle(&bytes[20..], 7, false));
    assert_eq!(step, Ok(Step::Done(Some(addr("203.0.113.7:4242")))));
}

#[test]
fn a_connection_closed_mid_header_is_truncated_and_before_it_a_probe() {
    let bytes = proxy("203.0.113.7:4242", "10.0.0.5:3478").build().unwrap();
    let mut r = HeaderRead::default();
    assert_eq!(
        r.read(&mut trickle(&bytes[..20], 64, true)),
        Err(ProxyError::Truncated)
    );
    let mut r = HeaderRead::default();
    assert_eq!(r.read(&mut trickle(&[], 64, true)), Ok(Step::Closed));
}
