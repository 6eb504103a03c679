//! The handover state's byte format: what it refuses (bad magic, corrupt data, a newer
//! version) and that version 1 stays readable (a checked-in fixture).

use super::*;
use crate::relay::handover::{self, HandoverError};
use crate::testkit::EvenPortR;

/// Written once by `write_v1_fixture` (the state of `handover::busy_core`
/// plus carol's EVEN-PORT reservation) and never rewritten: a later format version must
/// go on reading it. A new version gets its own `v2.state` beside it.
const V1_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/handover/v1.state"
);

/// Writes the v1 fixture: with TURNPIKE_WRITE_V1_FIXTURE=1 set, by hand, and only while
/// version 1 is the newest.
fn write_v1_fixture() {
    assert_eq!(handover::format::VERSION, 1);
    let (mut a, _, _, _) = super::handover::busy_core();
    let (c2, creds) = (a.client(2), a.creds("carol"));
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    assert_success(&a.request(c2, METHOD_ALLOCATE, attrs, Some(&creds)));
    let bytes = handover::encode(&a.server.export_state(a.time()));
    std::fs::create_dir_all(std::path::Path::new(V1_FIXTURE).parent().unwrap()).unwrap();
    std::fs::write(V1_FIXTURE, bytes).unwrap();
}

#[test]
fn handover_reads_the_v1_fixture() {
    if std::env::var_os("TURNPIKE_WRITE_V1_FIXTURE").is_some() {
        write_v1_fixture();
    }
    let bytes = std::fs::read(V1_FIXTURE).expect("the checked-in v1 fixture");
    assert_eq!(&bytes[8..12], &1u32.to_be_bytes());
    let state = handover::decode(&bytes).expect("version 1 stays readable");
    assert_eq!(state.exported_unix, 1_800_000_100);
    assert_eq!(state.allocations.len(), 2);
    let bob = state
        .allocations
        .iter()
        .find(|a| a.username.ends_with(":bob"))
        .unwrap();
    assert_eq!(bob.channels.len(), 1);
    assert_eq!(bob.channels[0].number, 0x4001);
    assert_eq!(bob.permissions.len(), 2);
    assert_eq!(bob.traffic.packets_to_peer, 3);
    assert_eq!(state.reservations.len(), 1);
    assert_eq!(state.counters["allocations_created.udp"], 2);
    // Imported 5 s later, bob's channel relays from the same address.
    let mut b = harness_with(CoreConfig {
        relay_v4: Some(RelayFamily {
            bind: "10.0.0.5".parse().unwrap(),
            advertised: "203.0.113.5".parse().unwrap(),
        }),
        ports: 50000..=50099,
        ..config()
    });
    b.unix = state.exported_unix + 5;
    let (client, relay, peer) = (bob.client.addr, bob.relay_v4.unwrap(), bob.channels[0].peer);
    let report = b.server.import_state(b.time(), state);
    assert_eq!((report.imported, report.reservations), (2, 1));
    assert!(report.not_imported.is_empty() && !report.token_key_changed);
    let c = ClientId {
        transport: Transport::Udp,
        listener: 0,
        addr: client,
    };
    let cd = channel_data(0x4001, b"x");
    assert_eq!(
        b.server.handle_client_packet(b.time(), c, &cd),
        ClientAction::Forward {
            relay,
            peer,
            payload: b"x"
        }
    );
}

#[test]
fn handover_rejects_bad_magic_corrupt_and_future_states() {
    let mut a = harness();
    a.allocate(a.client(1), "bob");
    let good = handover::encode(&a.server.export_state(a.time()));
    assert_eq!(
        handover::decode(b"GET / HTTP/1.1\r\n"),
        Err(HandoverError::BadMagic)
    );
    assert_eq!(handover::decode(b""), Err(HandoverError::BadMagic));
    let truncated = handover::decode(&good[..good.len() - 1]).unwrap_err();
    assert_eq!(truncated.label(), "corrupt");
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(
        handover::decode(&flipped),
        Err(HandoverError::Corrupt("checksum mismatch".into()))
    );
    let mut future = good.clone();
    future[8..12].copy_from_slice(&7u32.to_be_bytes());
    let e = handover::decode(&future).unwrap_err();
    assert_eq!(e, HandoverError::FutureVersion { found: 7 });
    assert_eq!(
        e.to_string(),
        "written by a newer turnpike: state version 7, this one reads up to 1"
    );
    let mut zero = good;
    zero[8..12].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        handover::decode(&zero).unwrap_err().label(),
        "unknown_version"
    );
}

#[test]
fn handover_names_the_field_of_a_body_that_is_not_version_1() {
    let body = br#"{"exported_unix":1}"#;
    let e = handover::decode(&v1_blob(body)).unwrap_err();
    assert!(e.to_string().contains("missing field `token_key`"), "{e}");
}

/// A version 1 envelope around `body`, with a correct length and checksum.
fn v1_blob(body: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    let mut out = b"TPKSTATE".to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&sha1::Sha1::digest(body));
    out.extend_from_slice(body);
    out
}

/// The cost of the format at scale: 10,000 allocations, each with two permissions and a
/// channel. Bounds the size and prints it (`--nocapture`); times belong in a benchmark,
/// not a unit test.
#[test]
fn handover_encodes_ten_thousand_allocations() {
    let (a, _, _, _) = super::handover::busy_core();
    let mut state = a.server.export_state(a.time());
    let one = state.allocations.pop().unwrap();
    state.allocations = (0..10_000u16)
        .map(|i| {
            let mut x = one.clone();
            x.client.addr.set_port(10_000 + i);
            x.relay_v4.as_mut().unwrap().set_port(40_000 + i);
            x.serial = i as u64 + 1;
            x
        })
        .collect();
    let bytes = handover::encode(&state);
    let decoded = handover::decode(&bytes).unwrap();
    let mut b = harness_with(CoreConfig {
        ports: 40_000..=50_000,
        ..config()
    });
    b.unix = a.unix;
    let report = b.server.import_state(b.time(), decoded);
    assert_eq!(report.imported, 10_000);
    println!("10,000 allocations: {} bytes", bytes.len());
    assert!(bytes.len() < 10_000 * 1_000, "{} bytes", bytes.len());
}
