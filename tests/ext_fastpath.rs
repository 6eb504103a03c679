//! The kernel fast path (issue 19, phase 1): the XDP program on crafted frames through
//! BPF_PROG_TEST_RUN (every rewrite compared byte by byte with a frame built here, and
//! its checksums verified independently), and end to end in network namespaces over veth
//! pairs. Root only; clang comes from scripts/install-test-deps.sh (build.rs compiles
//! the program with it).

mod support;

use support::frames::{CLIENT_MAC, Frame, SERVER_MAC, assert_checksums_valid};
use turnpike::fastpath::{AttachMode, ChannelRoute, Counters, FastPath};

/// A program and its verdicts: every crafted-frame test runs on both.
#[derive(Clone, Copy, Debug)]
struct Hook {
    mode: AttachMode,
    pass: u32,
    relay: u32,
}

const HOOKS: [Hook; 2] = [
    // h.pass, h.relay
    Hook {
        mode: AttachMode::Xdp,
        pass: 2,
        relay: 3,
    },
    // TC_ACT_OK, TC_ACT_REDIRECT
    Hook {
        mode: AttachMode::Tc,
        pass: 0,
        relay: 7,
    },
];

const CLIENT: &str = "192.0.2.10:40000";
const LISTENER: &str = "198.51.100.1:3478";
const RELAY: &str = "198.51.100.1:50000";
const PEER: &str = "203.0.113.7:9000";
const CLIENT6: &str = "[2001:db8:c::10]:40000";
const LISTENER6: &str = "[2001:db8:5::1]:3478";
const RELAY6: &str = "[2001:db8:5::1]:50000";
const PEER6: &str = "[2001:db8:9::7]:9000";
const CHANNEL: u16 = 0x4001;

fn route(id: u64, client: &str, listener: &str, relay: &str, peer: &str) -> ChannelRoute {
    ChannelRoute {
        id,
        client: client.parse().unwrap(),
        listener: listener.parse().unwrap(),
        channel: CHANNEL,
        relay: relay.parse().unwrap(),
        peer: peer.parse().unwrap(),
        client_next_hop: None,
        peer_next_hop: None,
    }
}

fn loaded(routes: &[ChannelRoute]) -> FastPath {
    let mut fp = FastPath::load(1500).expect("load the fast path (root, clang at build)");
    for r in routes {
        fp.add(r).unwrap();
    }
    fp
}

fn channel_data(channel: u16, data: &[u8], padding: usize) -> Vec<u8> {
    let mut m = channel.to_be_bytes().to_vec();
    m.extend((data.len() as u16).to_be_bytes());
    m.extend(data);
    m.extend(std::iter::repeat_n(0xee, padding));
    m
}

/// The frame the relay itself would send: from the server's MAC back to the sender's,
/// TTL 64, DF, the incoming TOS and (IPv4 to IPv4) identification.
fn sent(src: &str, dst: &str, payload: &[u8], from: &Frame) -> Frame {
    let mut f = Frame::new(src, dst, payload);
    f.src_mac = SERVER_MAC;
    f.dst_mac = CLIENT_MAC;
    f.tos = from.tos;
    f.ip_id = if from.src.is_ipv4() && f.src.is_ipv4() {
        from.ip_id
    } else {
        0
    };
    f
}

fn assert_tx(h: Hook, fp: &mut FastPath, input: &Frame, expected: &Frame) {
    let (verdict, out) = fp.test_run(h.mode, &input.bytes()).unwrap();
    assert_eq!(verdict, h.relay, "{h:?}: verdict for {input:?}");
    assert_checksums_valid(&out);
    assert_eq!(out, expected.bytes(), "rewritten frame, byte by byte");
}

fn assert_pass(h: Hook, fp: &mut FastPath, frame: &[u8], what: &str) {
    let (verdict, out) = fp.test_run(h.mode, frame).unwrap();
    assert_eq!(verdict, h.pass, "{h:?} {what}: verdict");
    assert_eq!(out, frame, "{h:?} {what}: the frame goes up unchanged");
}

#[test]
fn client_to_peer_ipv4_strips_the_header_and_rewrites_to_relay_and_peer() {
    for h in HOOKS {
        let mut fp = loaded(&[route(1, CLIENT, LISTENER, RELAY, PEER)]);
        let data = b"hello, peer";
        let mut input = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, data, 1));
        input.tos = 0xb8; // EF: carried over
        assert_tx(h, &mut fp, &input, &sent(RELAY, PEER, data, &input));
        // Unpadded, and an odd length padded to 4 bytes: the padding leaves the checksum too.
        for (len, pad) in [(5, 0), (5, 3), (6, 2), (0, 0), (1, 3)] {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            let input = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, &data, pad));
            assert_tx(h, &mut fp, &input, &sent(RELAY, PEER, &data, &input));
        }
    }
}

#[test]
fn peer_to_client_ipv4_gains_an_unpadded_header() {
    for h in HOOKS {
        let mut fp = loaded(&[route(1, CLIENT, LISTENER, RELAY, PEER)]);
        for len in [0usize, 1, 5, 1200] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let input = Frame::new(PEER, RELAY, &data);
            let expected = sent(LISTENER, CLIENT, &channel_data(CHANNEL, &data, 0), &input);
            assert_tx(h, &mut fp, &input, &expected);
        }
    }
}

#[test]
fn ipv6_both_ways() {
    for h in HOOKS {
        let mut fp = loaded(&[route(1, CLIENT6, LISTENER6, RELAY6, PEER6)]);
        let mut input = Frame::new(CLIENT6, LISTENER6, &channel_data(CHANNEL, b"abcde", 3));
        input.tos = 0x28;
        assert_tx(h, &mut fp, &input, &sent(RELAY6, PEER6, b"abcde", &input));
        let input = Frame::new(PEER6, RELAY6, b"reply");
        let expected = sent(
            LISTENER6,
            CLIENT6,
            &channel_data(CHANNEL, b"reply", 0),
            &input,
        );
        assert_tx(h, &mut fp, &input, &expected);
    }
}

#[test]
fn ipv6_client_with_an_ipv4_relay_and_back() {
    for h in HOOKS {
        let mut fp = loaded(&[
            route(1, CLIENT6, LISTENER6, RELAY, PEER),
            route(2, CLIENT, LISTENER, RELAY6, PEER6),
        ]);
        let input = Frame::new(
            CLIENT6,
            LISTENER6,
            &channel_data(CHANNEL, b"six to four", 1),
        );
        assert_tx(
            h,
            &mut fp,
            &input,
            &sent(RELAY, PEER, b"six to four", &input),
        );
        let input = Frame::new(PEER, RELAY, b"four to six");
        let expected = sent(
            LISTENER6,
            CLIENT6,
            &channel_data(CHANNEL, b"four to six", 0),
            &input,
        );
        assert_tx(h, &mut fp, &input, &expected);
        let input = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, b"4 to 6", 2));
        assert_tx(h, &mut fp, &input, &sent(RELAY6, PEER6, b"4 to 6", &input));
        let input = Frame::new(PEER6, RELAY6, b"6 to 4");
        let expected = sent(
            LISTENER,
            CLIENT,
            &channel_data(CHANNEL, b"6 to 4", 0),
            &input,
        );
        assert_tx(h, &mut fp, &input, &expected);
    }
}

#[test]
fn an_ethernet_trailer_is_trimmed() {
    for h in HOOKS {
        // Real NICs hand short frames up padded to 60 bytes; the IP length is what counts.
        let mut fp = loaded(&[route(1, CLIENT, LISTENER, RELAY, PEER)]);
        let input = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, b"hi", 0));
        let mut bytes = input.bytes();
        bytes.resize(60, 0);
        let (verdict, out) = fp.test_run(h.mode, &bytes).unwrap();
        assert_eq!(verdict, h.relay);
        assert_eq!(out, sent(RELAY, PEER, b"hi", &input).bytes());
    }
}

#[test]
fn next_hop_mac_from_the_route() {
    for h in HOOKS {
        let mut r = route(1, CLIENT, LISTENER, RELAY, PEER);
        r.peer_next_hop = Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        let mut fp = loaded(&[r]);
        let input = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, b"x", 0));
        let mut expected = sent(RELAY, PEER, b"x", &input);
        expected.dst_mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        assert_tx(h, &mut fp, &input, &expected);
        // The other direction has no next hop: back to the sender's MAC.
        let input = Frame::new(PEER, RELAY, b"y");
        assert_tx(
            h,
            &mut fp,
            &input,
            &sent(LISTENER, CLIENT, &channel_data(CHANNEL, b"y", 0), &input),
        );
    }
}

/// Frames the program must leave to the socket path, each with the reason.
fn not_for_the_fast_path() -> Vec<(&'static str, Vec<u8>)> {
    let cd = |ch, data: &[u8], pad| channel_data(ch, data, pad);
    let bytes = |f: &Frame| f.bytes();
    let mut v = vec![
        (
            "unknown channel",
            bytes(&Frame::new(CLIENT, LISTENER, &cd(0x4002, b"abc", 1))),
        ),
        (
            "no binding for this client",
            bytes(&Frame::new(
                "192.0.2.11:40000",
                LISTENER,
                &cd(CHANNEL, b"a", 3),
            )),
        ),
        (
            "other client port",
            bytes(&Frame::new(
                "192.0.2.10:40001",
                LISTENER,
                &cd(CHANNEL, b"a", 3),
            )),
        ),
        (
            "other port",
            bytes(&Frame::new(
                CLIENT,
                "198.51.100.1:3479",
                &cd(CHANNEL, b"a", 3),
            )),
        ),
        (
            "peer not bound",
            bytes(&Frame::new("203.0.113.8:9000", RELAY, b"data")),
        ),
        (
            "peer's other port",
            bytes(&Frame::new("203.0.113.7:9001", RELAY, b"data")),
        ),
        (
            "short: 2 bytes",
            bytes(&Frame::new(CLIENT, LISTENER, &[0x40, 0x01])),
        ),
        (
            "length beyond the datagram",
            bytes(&Frame::new(
                CLIENT,
                LISTENER,
                &cd(CHANNEL, b"abcdef", 0)[..8],
            )),
        ),
        (
            "more than padding after the data",
            bytes(&Frame::new(CLIENT, LISTENER, &cd(CHANNEL, b"abcd", 4))),
        ),
        (
            "ChannelData from the peer to the listener",
            bytes(&Frame::new(PEER, LISTENER, &cd(CHANNEL, b"abcd", 0))),
        ),
    ];
    // A STUN Binding request (top bits 00) from a bound client to the listener.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    v.push(("STUN request", bytes(&Frame::new(CLIENT, LISTENER, &stun))));
    // A Send indication is STUN too (0x0016).
    stun[1] = 0x16;
    v.push((
        "Send indication",
        bytes(&Frame::new(CLIENT, LISTENER, &stun)),
    ));
    let mut frag = Frame::new(CLIENT, LISTENER, &cd(CHANNEL, b"abcd", 0));
    frag.frag = 0x2000; // more fragments
    v.push(("first fragment", frag.bytes()));
    frag.frag = 0x0010; // a later fragment
    v.push(("later fragment", frag.bytes()));
    v.push((
        "IPv4 options",
        with_ipv4_options(&Frame::new(CLIENT, LISTENER, &cd(CHANNEL, b"ab", 2))),
    ));
    v.push((
        "IPv6 extension header",
        with_hop_by_hop(&Frame::new(CLIENT6, LISTENER6, &cd(CHANNEL, b"ab", 2))),
    ));
    let mut no_sum = bytes(&Frame::new(CLIENT, LISTENER, &cd(CHANNEL, b"ab", 2)));
    no_sum[40..42].copy_from_slice(&[0, 0]);
    v.push(("UDP without a checksum", no_sum));
    let full = bytes(&Frame::new(CLIENT, LISTENER, &cd(CHANNEL, b"abcdefgh", 0)));
    v.push((
        "truncated: IP length beyond the frame",
        full[..full.len() - 2].to_vec(),
    ));
    v.push(("only an Ethernet header", full[..14].to_vec()));
    let mut arp = full.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    v.push(("not IP", arp));
    v
}

/// Inserts a 4-byte NOP option: IHL 6, lengths and checksum fixed, so only the option
/// makes the program refuse it.
fn with_ipv4_options(f: &Frame) -> Vec<u8> {
    let mut b = f.bytes();
    b.splice(34..34, [1, 1, 1, 1]);
    b[14] = 0x46;
    let tot = u16::from_be_bytes([b[16], b[17]]) + 4;
    b[16..18].copy_from_slice(&tot.to_be_bytes());
    b[24..26].copy_from_slice(&[0, 0]);
    let c = support::frames::checksum(&b[14..38]);
    b[24..26].copy_from_slice(&c.to_be_bytes());
    b
}

/// Inserts an 8-byte hop-by-hop header (next header UDP, PadN).
fn with_hop_by_hop(f: &Frame) -> Vec<u8> {
    let mut b = f.bytes();
    b.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
    b[20] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([b[18], b[19]]) + 8;
    b[18..20].copy_from_slice(&plen.to_be_bytes());
    b
}

#[test]
fn everything_else_goes_up_unchanged() {
    for h in HOOKS {
        let mut fp = loaded(&[
            route(1, CLIENT, LISTENER, RELAY, PEER),
            route(2, CLIENT6, LISTENER6, RELAY6, PEER6),
        ]);
        for (what, frame) in not_for_the_fast_path() {
            // The kernel builds no skb of an IPv4 frame without an IP header (EINVAL).
            if matches!(h.mode, AttachMode::Tc) && what == "only an Ethernet header" {
                continue;
            }
            assert_pass(h, &mut fp, &frame, what);
        }
        assert_eq!(
            fp.counters(1).unwrap(),
            Counters::default(),
            "nothing counted"
        );
    }
}

#[test]
fn a_packet_longer_than_the_mtu_once_rewritten_goes_up() {
    for h in HOOKS {
        let mut fp = FastPath::load(1500).unwrap();
        fp.add(&route(1, CLIENT, LISTENER, RELAY, PEER)).unwrap();
        // 1472 bytes of payload fill a 1500-byte IPv4 packet; the header would overflow it.
        assert_pass(
            h,
            &mut fp,
            &Frame::new(PEER, RELAY, &[9; 1472]).bytes(),
            "1472 + 4",
        );
        let input = Frame::new(PEER, RELAY, &[9; 1468]);
        let expected = sent(
            LISTENER,
            CLIENT,
            &channel_data(CHANNEL, &[9; 1468], 0),
            &input,
        );
        assert_tx(h, &mut fp, &input, &expected);
    }
}

#[test]
fn counters_per_binding_and_direction_and_removal_stops_forwarding() {
    for h in HOOKS {
        let (a, b) = (
            route(7, CLIENT, LISTENER, RELAY, PEER),
            route(8, CLIENT6, LISTENER6, RELAY6, PEER6),
        );
        let mut fp = loaded(&[a, b]);
        let to_peer = Frame::new(CLIENT, LISTENER, &channel_data(CHANNEL, b"12345", 3)).bytes();
        let to_client = Frame::new(PEER, RELAY, b"1234567890").bytes();
        for _ in 0..3 {
            assert_eq!(fp.test_run(h.mode, &to_peer).unwrap().0, h.relay);
        }
        assert_eq!(fp.test_run(h.mode, &to_client).unwrap().0, h.relay);
        let six = Frame::new(PEER6, RELAY6, b"x").bytes();
        assert_eq!(fp.test_run(h.mode, &six).unwrap().0, h.relay);
        let want = Counters {
            client_to_peer_packets: 3,
            client_to_peer_bytes: 15,
            peer_to_client_packets: 1,
            peer_to_client_bytes: 10,
        };
        assert_eq!(fp.counters(7).unwrap(), want);
        assert_eq!(fp.counters(8).unwrap().peer_to_client_packets, 1);
        assert_eq!(
            fp.remove(&a).unwrap(),
            want,
            "removal returns the final counters"
        );
        assert_pass(h, &mut fp, &to_peer, "after removal, client to peer");
        assert_pass(h, &mut fp, &to_client, "after removal, peer to client");
        assert_eq!(fp.counters(7).unwrap(), Counters::default(), "forgotten");
        assert_eq!(
            fp.test_run(h.mode, &six).unwrap().0,
            h.relay,
            "the other binding stays"
        );
        fp.remove(&a).expect("removing twice is harmless");
    }
}

// End to end: client, server and peer each in a namespace, joined by a router namespace,
// the server on one interface (a cloud VM's shape). The program on the server's interface
// relays real datagrams; the test only installs and removes the binding.

mod e2e {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use super::support::veth::{Netns, topology};
    use super::*;
    use turnpike::fastpath::{AttachMode, Mode};

    fn socket(ns: &Netns, addr: &str) -> UdpSocket {
        let addr: SocketAddr = addr.parse().unwrap();
        ns.enter(|| {
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s
        })
    }

    fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = s.recv_from(&mut buf).expect("a datagram");
        (buf[..n].to_vec(), from)
    }

    fn nothing_more(s: &UdpSocket, what: &str) {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        assert!(s.recv_from(&mut buf).is_err(), "{what} got a datagram");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }

    fn relays_and_stops_after_removal(mode: AttachMode, v6: bool) {
        let t = topology();
        let a = |x: u8, port: u16| {
            if v6 {
                format!("[fd11:{x}::2]:{port}")
            } else {
                format!("10.11.{x}.2:{port}")
            }
        };
        let (c_addr, l_addr, r_addr, p_addr) = (a(1, 40000), a(0, 3478), a(0, 50000), a(2, 9000));
        let client = socket(&t.client, &c_addr);
        let listener = socket(&t.server, &l_addr);
        let relay_sock = socket(&t.server, &r_addr);
        let peer = socket(&t.peer, &p_addr);
        let mut fp = t.server.enter(|| {
            let mut fp = FastPath::load(1500).unwrap();
            assert_eq!(fp.attach("s0", Mode::Only(mode)).unwrap(), mode);
            fp
        });
        let cd = channel_data(CHANNEL, b"hello", 3);
        // No binding yet: ChannelData goes up to the listener socket.
        client.send_to(&cd, &l_addr).unwrap();
        assert_eq!(recv(&listener), (cd.clone(), c_addr.parse().unwrap()));

        let r = route(1, &c_addr, &l_addr, &r_addr, &p_addr);
        fp.add(&r).unwrap();
        client.send_to(&cd, &l_addr).unwrap();
        assert_eq!(
            recv(&peer),
            (b"hello".to_vec(), r_addr.parse().unwrap()),
            "at the peer"
        );
        peer.send_to(b"world!", &r_addr).unwrap();
        let want = channel_data(CHANNEL, b"world!", 0);
        assert_eq!(
            recv(&client),
            (want, l_addr.parse().unwrap()),
            "at the client"
        );
        nothing_more(&listener, "the listener socket (the kernel relayed it)");
        nothing_more(&relay_sock, "the relay socket (the kernel relayed it)");
        let counted = fp.remove(&r).unwrap();
        assert_eq!(counted.client_to_peer_packets, 1);
        assert_eq!(counted.client_to_peer_bytes, 5);
        assert_eq!(counted.peer_to_client_packets, 1);
        assert_eq!(counted.peer_to_client_bytes, 6);

        // Removed: both directions go up to the server's sockets again.
        client.send_to(&cd, &l_addr).unwrap();
        assert_eq!(recv(&listener).0, cd, "after removal, at the listener");
        peer.send_to(b"again", &r_addr).unwrap();
        assert_eq!(
            recv(&relay_sock).0,
            b"again",
            "after removal, at the relay socket"
        );
        nothing_more(&peer, "the peer");
        nothing_more(&client, "the client");
        t.server.enter(|| fp.detach().unwrap());
    }

    #[test]
    fn native_xdp_on_veth_relays_ipv4() {
        relays_and_stops_after_removal(AttachMode::Xdp, false);
    }

    #[test]
    fn native_xdp_on_veth_relays_ipv6() {
        relays_and_stops_after_removal(AttachMode::Xdp, true);
    }

    #[test]
    fn generic_xdp_relays_ipv4() {
        relays_and_stops_after_removal(AttachMode::XdpGeneric, false);
    }

    #[test]
    fn tc_relays_ipv4() {
        relays_and_stops_after_removal(AttachMode::Tc, false);
    }

    #[test]
    fn tc_relays_ipv6() {
        relays_and_stops_after_removal(AttachMode::Tc, true);
    }

    #[test]
    fn auto_takes_native_xdp_on_veth_and_names_every_refusal() {
        let t = topology();
        t.server.enter(|| {
            let mut fp = FastPath::load(1500).unwrap();
            assert_eq!(fp.attach("s0", Mode::Auto).unwrap(), AttachMode::Xdp);
            assert_eq!(fp.attached(), Some(("s0", AttachMode::Xdp)));
            fp.detach().unwrap();
            assert_eq!(fp.attached(), None);
            // Loopback has no native XDP: auto falls back to generic XDP.
            let err = fp
                .attach("lo", Mode::Only(AttachMode::Xdp))
                .unwrap_err()
                .to_string();
            eprintln!("native XDP on lo: {err}");
            assert!(
                err.contains("os error"),
                "the kernel's errno is named: {err}"
            );
            assert_eq!(fp.attach("lo", Mode::Auto).unwrap(), AttachMode::XdpGeneric);
            fp.detach().unwrap();
            let err = fp.attach("nosuch0", Mode::Auto).unwrap_err().to_string();
            eprintln!("no such interface: {err}");
            for mode in ["xdp:", "xdp-generic:", "tc:"] {
                assert!(err.contains(mode), "{err}");
            }
        });
    }
}
