//! A burst arrives whole and in order, both ways: relay sockets and the listener are read
//! with recvmmsg in batches (several per readiness event, over the fairness budget), runs
//! of equal-sized datagrams for one destination leave as one GSO send, and every packet
//! must reach the other side with its own length and bytes, as ChannelData and as Send/Data
//! indications.

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
    // Runs of equal lengths (GSO segments), a shorter one ending a run, an empty one, a
    // longer one breaking a run, lengths that vary (1 byte to ~1.2 kB) and one 60 kB datagram, so a
    // slot or segment mix-up shows.
    let len = match i % 16 {
        _ if i == 7 => 60_000,
        0..=5 => 1000,
        6 => 300,
        7..=9 => 1000,
        10 => 0,
        11 => 1200,
        _ => 1 + (i * 37) % 1200,
    };
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
    // And the client's burst to the peer, sent back to back.
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..BURST {
        let m = if channel {
            turnpike::testkit::channel_data(0x4000, &payload(i))
        } else {
            turnpike::testkit::send_indication(p, &payload(i))
        };
        c.sock.send_to(&m, server).unwrap();
    }
    for i in 0..BURST {
        let (n, from) = peer
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("client packet {i} of {BURST}: {e}"));
        assert_eq!(
            (from, &buf[..n]),
            (relayed, &payload(i)[..]),
            "client packet {i}"
        );
    }
    relay.shutdown();
}

#[test]
fn bursts_arrive_whole_and_in_order_both_ways_as_channel_data() {
    burst_reaches_the_client(true, "53800-53849");
}

#[test]
fn bursts_arrive_whole_and_in_order_both_ways_as_indications() {
    burst_reaches_the_client(false, "53850-53899");
}
