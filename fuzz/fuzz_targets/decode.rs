//! Raw client bytes through every decoder a packet meets: ChannelData framing, the Send
//! indication reader, `stun::message` and the typed request the handlers read
//! (`Request::parse`, `Credentials::parse`), and finally the core itself (which must
//! answer or drop, never panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stun::message::Message;
use turnpike::proto::channel_data::{MAX_CHANNEL, MAX_CHANNEL_RFC5766, MIN_CHANNEL};
use turnpike::proto::request::{Credentials, Request, Unreadable};
use turnpike::proto::{channel_data, decode_xor_address, indication};
use turnpike_fuzz::{Driver, Setup, clients};

fuzz_target!(|data: &[u8]| {
    if let Some(cd) = channel_data::parse(data) {
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        assert_eq!(cd.payload.len(), len);
        assert_eq!(cd.payload, &data[4..4 + len]);
        assert!(channel_data::is_channel_data(data));
    }
    if let Some(s) = indication::parse_send(data) {
        let range = data.as_ptr_range();
        assert!(s.data.is_empty() || range.contains(&s.data.as_ptr()));
    }
    if data.len() >= 12 {
        let tid: [u8; 12] = data[..12].try_into().unwrap();
        let _ = decode_xor_address(&data[12..], &tid);
    }
    let mut m = Message::new();
    m.raw = data.to_vec();
    if m.decode().is_ok() {
        // What the core reads of a request, on whatever attributes came.
        turnpike::proto::ignore_after_integrity(&mut m);
        for max in [MAX_CHANNEL, MAX_CHANNEL_RFC5766] {
            check_request(Request::parse(&m, max), max);
        }
        if let Credentials::Signed { username, .. } = Credentials::parse(&m) {
            assert!(username.len() <= 513);
        }
    }
    // The core, with one live allocation so ChannelData and Send take the relay path.
    let mut d = Driver::new(Setup {
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
    d.establish();
    for c in clients().into_iter().take(2) {
        d.client_packet(c, data);
        d.check();
    }
});

/// What `Request::parse` promises its handlers.
fn check_request(r: Result<Request, Unreadable>, max_channel: u16) {
    match r {
        Ok(Request::ChannelBind(Ok(c))) => {
            assert!((MIN_CHANNEL..=max_channel).contains(&c.channel));
        }
        Ok(Request::CreatePermission(Ok(p))) => assert!(!p.peers.is_empty()),
        Err(Unreadable::UnknownAttributes(types)) => assert!(!types.is_empty()),
        _ => {}
    }
}
