//! A property of the kernel fast path's routes over generated sessions (proptest): after
//! any sequence of ChannelBind, CreatePermission, Refresh, delete and time steps (many
//! landing 1 ms either side of a permission's or a channel's expiry), the kernel holds a
//! route for exactly the channels on which userspace itself would relay ChannelData.
//! The fake shell fails the test on a route added twice or removed when absent.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use stun::message::*;
use turn::proto::lifetime::Lifetime;

use super::*;
use crate::testkit::harness::{Harness, config, harness_with};
use crate::testkit::{channel_data, peer};

#[derive(Debug, Clone)]
enum Op {
    Allocate(u16),
    Bind {
        client: u16,
        channel: u16,
        peer: u16,
    },
    Permit {
        client: u16,
        peer: u16,
    },
    KeepAlive(u16),
    Delete(u16),
    Advance(u64),
}

/// Time steps in ms: around a permission's (300 s) and a channel's (600 s) lifetime.
const STEPS: [u64; 9] = [
    1_000, 100_000, 299_999, 300_000, 300_001, 599_999, 600_000, 600_001, 1,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..3u16).prop_map(Op::Allocate),
        (1..3u16, 0..3u16, 0..3u16).prop_map(|(client, channel, peer)| Op::Bind {
            client,
            channel,
            peer
        }),
        (1..3u16, 0..3u16).prop_map(|(client, peer)| Op::Permit { client, peer }),
        (1..3u16).prop_map(Op::KeepAlive),
        (1..3u16).prop_map(Op::Delete),
        (0..STEPS.len()).prop_map(|i| Op::Advance(STEPS[i])),
    ]
}

fn peer_of(i: u16) -> std::net::SocketAddr {
    peer(&format!("198.51.100.{}:{}", 9 + i, 5000 + i))
}

fn refresh(h: &mut Harness, c: ClientId, secs: u64) {
    let creds = h.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(secs)))];
    h.request(c, METHOD_REFRESH, attrs, Some(&creds));
}

fn step(h: &mut Harness, op: &Op) {
    let has = |h: &Harness, c| h.server.has_allocation(&c);
    match *op {
        Op::Allocate(i) if !has(h, h.client(i)) => {
            let c = h.client(i);
            h.allocate(c, "bob");
            // Long-lived, so that channels and permissions expire inside it.
            refresh(h, c, 3600);
        }
        Op::Bind {
            client,
            channel,
            peer,
        } if has(h, h.client(client)) => {
            let c = h.client(client);
            h.bind_channel(c, "bob", 0x4000 + channel, peer_of(peer));
        }
        Op::Permit { client, peer } if has(h, h.client(client)) => {
            let c = h.client(client);
            h.permit(c, "bob", &[peer_of(peer)]);
        }
        Op::KeepAlive(i) if has(h, h.client(i)) => refresh(h, h.client(i), 3600),
        Op::Delete(i) if has(h, h.client(i)) => refresh(h, h.client(i), 0),
        Op::Advance(ms) => h.advance(Duration::from_millis(ms)),
        _ => {}
    }
}

/// The kernel's routes are exactly the channels userspace relays ChannelData on now.
fn check(h: &mut Harness) -> Result<(), TestCaseError> {
    let got: HashSet<_> = (h.shell.kernel.values())
        .map(|(r, _)| (r.client, r.channel, r.peer))
        .collect();
    prop_assert_eq!(got.len(), h.shell.kernel.len(), "one route per binding");
    let channels: Vec<_> = (h.server.allocations())
        .flat_map(|a| a.channels.iter().map(|(ch, b)| (a.client, *ch, b.peer)))
        .collect();
    let mut relayed = HashSet::new();
    for (c, ch, p) in channels {
        let cd = channel_data(ch, b"x");
        if let ClientAction::Forward { peer, .. } = h.server.handle_client_packet(h.time(), c, &cd)
        {
            prop_assert_eq!(peer, p);
            relayed.insert((c, ch, p));
        }
    }
    prop_assert_eq!(got, relayed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn kernel_routes_are_exactly_the_channels_userspace_relays(
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut h = harness_with(CoreConfig { fastpath: true, ..config() });
        for op in &ops {
            step(&mut h, op);
            check(&mut h)?;
        }
        h.server.shutdown(h.time());
        h.advance(Duration::ZERO);
        prop_assert!(h.shell.kernel.is_empty(), "routes left after shutdown");
    }
}
