//! A peer's burst arrives whole and in order: relay sockets are read with recvmmsg in
//! batches (several per readiness event, over the fairness budget), and every packet of
//! every batch must reach the client with its own length and bytes, as ChannelData and as
//! Data indications.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use stun::attributes::ATTR_XOR_RELAYED_ADDRESS;
use stun::message::*;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turnpike::auth::mint_credential;

/// Packets in the burst: more than several recvmmsg batches and the per-turn budget.
const BURST: usize = 300;

fn payload(i: usize) -> Vec<u8> {
    // Lengths vary (1 byte to ~1.2 kB, one 60 kB datagram) so a slot mix-up shows.
    let len = if i == 7 { 60_000 } else { 1 + (i * 37) % 1200 };
    (0..len).map(|k| (i + k) as u8).collect()
}

/// The application bytes of a ChannelData message or a Data indication.
fn unwrap(b: &[u8]) -> Vec<u8> {
    if b[0] & 0xc0 == 0x40 {
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        return b[4..4 + len].to_vec();
    }
    let mut m = Message::new();
    m.raw = b.to_vec();
    m.decode().unwrap();
    assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    m.get(stun::attributes::ATTR_DATA).unwrap()
}

fn burst_reaches_the_client(channel: bool, ports: &str) {
    let (relay, server) = start(true, ports);
    let (username, password) = mint_credential(SECRET, "burst", 600, unix_now());
    let mut c = RawClient::new(server, username, password);
    let r = c.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    let a = r
        .attributes
        .0
        .iter()
        .find(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .unwrap();
    let relayed: SocketAddr =
        turnpike::proto::decode_xor_address(&a.value, &r.transaction_id.0).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = peer.local_addr().unwrap();
    let pa = PeerAddress {
        ip: p.ip(),
        port: p.port(),
    };
    let r = if channel {
        c.exchange(
            METHOD_CHANNEL_BIND,
            vec![Box::new(ChannelNumber(0x4000)), Box::new(pa)],
            true,
        )
    } else {
        c.exchange(METHOD_CREATE_PERMISSION, vec![Box::new(pa)], true)
    };
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    // Room for the whole burst at the client, so a loss here is the server's.
    let client = socket2::SockRef::from(&c.sock);
    client.set_recv_buffer_size(8 << 20).unwrap();
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for i in 0..BURST {
        peer.send_to(&payload(i), relayed).unwrap();
    }
    let mut buf = vec![0u8; 70_000];
    for i in 0..BURST {
        let (n, _) = c
            .sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("packet {i} of {BURST}: {e}"));
        assert_eq!(unwrap(&buf[..n]), payload(i), "packet {i}");
    }
    relay.shutdown();
}

#[test]
fn a_peer_burst_arrives_whole_and_in_order_as_channel_data() {
    burst_reaches_the_client(true, "53800-53849");
}

#[test]
fn a_peer_burst_arrives_whole_and_in_order_as_data_indications() {
    burst_reaches_the_client(false, "53850-53899");
}
