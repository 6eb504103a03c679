//! Writes the seed corpus for the `decode` target: one real packet of each kind a client
//! sends (Binding, Allocate, CreatePermission, ChannelBind, Refresh, Send, ChannelData).
//! `cargo run --example seeds` from fuzz/; the output is committed under seeds/decode/.

use std::net::SocketAddr;

use stun::attributes::ATTR_DATA;
use stun::message::*;
use turnpike_fuzz::{Attr, Driver, Setup, clients, req, xor_peer_tid};

fn main() {
    let d = Driver::new(Setup {
        ports: 3,
        max_allocations: 3,
        max_per_user: 3,
        max_permissions: 3,
        max_channels: 3,
        strict_channels: false,
        ipv6: true,
        two_shards: false,
        unauthenticated_rate: 0,
        bps_per_allocation: 0,
        bps_per_user: 0,
        seed: 1,
    });
    let c = clients()[0];
    let peer: SocketAddr = "198.51.100.9:1000".parse().unwrap();
    let transport = Attr::Raw(0x0019, vec![17, 0, 0, 0]);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("binding", d.signed(c, 0, req(METHOD_BINDING), &[])),
        (
            "allocate",
            d.signed(c, 0, req(METHOD_ALLOCATE), &[transport]),
        ),
        (
            "create_permission",
            d.signed(c, 1, req(METHOD_CREATE_PERMISSION), &[Attr::Peer(peer)]),
        ),
        (
            "channel_bind",
            d.signed(
                c,
                1,
                req(METHOD_CHANNEL_BIND),
                &[Attr::Raw(0x000C, vec![0x40, 0, 0, 0]), Attr::Peer(peer)],
            ),
        ),
        (
            "refresh",
            d.signed(
                c,
                2,
                req(METHOD_REFRESH),
                &[Attr::Raw(0x000D, vec![0, 0, 2, 88])],
            ),
        ),
        (
            "channel_data",
            vec![
                0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
            ],
        ),
    ];
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
    m.new_transaction_id().unwrap();
    m.write_header();
    let (t, v) = xor_peer_tid(peer, &m.transaction_id.0);
    m.add(stun::attributes::AttrType(t), &v);
    m.add(ATTR_DATA, b"hello");
    seeds.push(("send", m.raw));
    std::fs::create_dir_all("seeds/decode").unwrap();
    for (name, bytes) in seeds {
        std::fs::write(format!("seeds/decode/{name}"), bytes).unwrap();
    }
}
