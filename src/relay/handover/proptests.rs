//! Property: for any state a core can hold, export -> encode -> decode -> import ->
//! export gives back the same state (nothing lost, nothing moved, no deadline shifted).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;

use super::format::*;
use super::{counters, decode, encode};
use crate::relay::CoreConfig;
use crate::relay::stats::Counters;
use crate::testkit::harness::{config, harness_with};

const RATE: u64 = 10_000;

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
}

fn permissions() -> impl Strategy<Value = Vec<PermissionState>> {
    prop::collection::btree_map(0u8..40, 1u64..=300_000, 0..5).prop_map(|m| {
        m.into_iter()
            .map(|(n, remaining_ms)| PermissionState {
                peer_ip: ip(n),
                remaining_ms,
            })
            .collect()
    })
}

/// Bindings with distinct numbers and distinct peers; some expired and cooling down.
fn channels() -> impl Strategy<Value = Vec<ChannelState>> {
    prop::collection::btree_map(0x4000u16..0x4010, -299_999i64..=600_000, 0..4).prop_map(|m| {
        m.into_iter()
            .map(|(number, remaining_ms)| ChannelState {
                number,
                peer: SocketAddr::new(ip(200), number),
                remaining_ms,
            })
            .collect()
    })
}

prop_compose! {
    fn allocation()(
        user in prop::sample::select(vec!["1800086400:bob", "carol", "1800000000:dave"]),
        created_unix in 1_700_000_000u64..1_800_000_000,
        age_ms in 0u64..600_000,
        lifetime_remaining_ms in 0u64..3_600_000,
        session_end in prop::option::of((0u64..86_400_000, any::<bool>())),
        permissions in permissions(),
        channels in channels(),
        tid in any::<[u8; 12]>(),
        response in prop::collection::vec(any::<u8>(), 20..120),
        traffic in any::<[u64; 4]>(),
        used in any::<(u32, u32)>(),
        units in 0..=RATE * 1_000_000,
        transport in prop::sample::select(vec![
            TransportState::Udp, TransportState::Tcp, TransportState::Tls,
        ]),
        listener in 0u16..4,
    ) -> AllocationState {
        AllocationState {
            client: ClientState {
                transport,
                listener,
                addr: "192.0.2.1:1".parse().unwrap(),
            },
            username: user.to_string(),
            relay_v4: None,
            relay_v6: None,
            created_unix,
            age_ms,
            lifetime_remaining_ms,
            session_end: session_end.map(|(remaining_ms, strict)| SessionEndState {
                remaining_ms,
                reason: if strict {
                    SessionEndReason::CredentialExpired
                } else {
                    SessionEndReason::MaxSession
                },
            }),
            serial: 0,
            permissions,
            channels,
            allocate_transaction: tid,
            allocate_response: response,
            traffic: TrafficState {
                bytes_to_peer: traffic[0],
                packets_to_peer: traffic[1],
                bytes_to_client: traffic[2],
                packets_to_client: traffic[3],
            },
            peers_used: used.0,
            channels_used: used.1,
            bandwidth: Some(BucketState { rate_bytes_per_sec: RATE, units }),
        }
    }
}

prop_compose! {
    /// Allocations on distinct clients, relay ports and serials; reservations on ports
    /// above theirs; some counters.
    fn core_state()(
        mut allocations in prop::collection::vec(allocation(), 0..6),
        serials in prop::collection::btree_set(1u64..1000, 6),
        reservations in prop::collection::btree_map(
            any::<[u8; 8]>(),
            (1u64..=30_000, prop::option::of(Just("carol".to_string()))),
            0..3,
        ),
        counts in any::<[u64; 5]>(),
    ) -> CoreState {
        let serials: Vec<u64> = serials.into_iter().collect();
        for (i, a) in allocations.iter_mut().enumerate() {
            a.client.addr = SocketAddr::new(ip(20), 40000 + i as u16);
            a.relay_v4 = Some(SocketAddr::new("10.0.0.5".parse().unwrap(), 50000 + i as u16));
            a.serial = serials[i];
        }
        let mut reservations: Vec<ReservationState> = reservations
            .into_iter()
            .enumerate()
            .map(|(i, (token, (remaining_ms, user)))| ReservationState {
                token,
                addr: SocketAddr::new("10.0.0.5".parse().unwrap(), 50090 + i as u16),
                remaining_ms,
                user,
            })
            .collect();
        reservations.sort_by_key(|r| (r.remaining_ms, r.token));
        let mut c = Counters::default();
        c.relayed_bytes[0][1] = counts[0];
        c.dropped[2] = counts[1];
        c.requests[1][0] = counts[2];
        c.allocations_ended[3] = counts[3];
        c.quota_rejections = counts[4];
        CoreState {
            exported_unix: 1_800_000_000,
            token_key: SecretKey([5; 32]),
            allocations,
            reservations,
            counters: counters::export(&c),
        }
    }
}

fn bandwidth_config() -> CoreConfig {
    CoreConfig {
        max_bytes_per_sec_per_allocation: Some(RATE),
        ..config()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn handover_round_trip_is_the_identity(state in core_state()) {
        let decoded = decode(&encode(&state)).expect("decodes");
        prop_assert_eq!(&decoded, &state);
        let mut h = harness_with(bandwidth_config());
        // Far enough from the clock's origin for any age to be subtracted.
        h.now += Duration::from_secs(3600);
        h.unix = state.exported_unix;
        let report = h.server.import_state(h.time(), decoded);
        prop_assert_eq!(report.imported, state.allocations.len());
        prop_assert_eq!(report.reservations, state.reservations.len());
        let relays: BTreeSet<SocketAddr> = report.relays.into_iter().collect();
        let expected: BTreeSet<SocketAddr> =
            state.allocations.iter().filter_map(|a| a.relay_v4).collect();
        prop_assert_eq!(relays, expected);
        let again = h.server.export_state(h.time());
        prop_assert_eq!(again, state.clone());
        let mut per_user: BTreeMap<&str, usize> = BTreeMap::new();
        let users = state.allocations.iter().map(|a| a.username.as_str());
        let reserved = state.reservations.iter().filter_map(|r| r.user.as_deref());
        for u in users.chain(reserved) {
            *per_user.entry(crate::auth::user_id(u)).or_default() += 1;
        }
        for (u, n) in per_user {
            prop_assert_eq!(h.server.cfg.quotas.user_in_use(u), n);
        }
    }
}
