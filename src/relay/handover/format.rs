//! The handover state as bytes: an envelope (magic, `version: u32`) around a JSON body.
//!
//! Version 1 (`VERSION`): `MAGIC` (8 bytes) | version (u32 BE) | body length (u64 BE) |
//! SHA-1 of the body (20 bytes) | body (UTF-8 JSON of `CoreState`). Everything after the
//! version belongs to that version, so a later one may change it.
//!
//! Why JSON: it is already a dependency, it names every field (a reader rejects a body
//! that is not exactly version 1 with the field it choked on: `deny_unknown_fields`), and
//! an operator can read a state that failed with `tail -c +41 | jq`. The cost, measured
//! (`handover_encodes_ten_thousand_allocations`): 10,000 allocations with two permissions
//! and a channel each are 8 MB, encoded in 0.3 s and decoded in 0.2 s by a debug build
//! (several times less in release), per shard and in parallel across shards. A compact
//! format (postcard, bincode) would be several times smaller and faster but is neither
//! self-describing nor a dependency yet: it is the version 2 to write if the handover gap
//! of large nodes says so; `decode` would keep reading this one.
//!
//! The types here are the format, independent of the core's own types, so that a
//! refactor of `Allocation` cannot change what a state file means: a change to any of
//! them is a new version, and `decode` keeps reading the old ones (converting them).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// "turnpike handover state".
pub const MAGIC: [u8; 8] = *b"TPKSTATE";
/// The version `encode` writes and the newest `decode` reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 20;

/// A relay core's state, as one shard exported it (or a split of several, `split`).
/// Durations (`*_ms`) count from `exported_unix`: the importer subtracts the time that
/// has passed since, so a deadline never travels as another process's `Instant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreState {
    /// Wall clock (unix seconds) at export.
    pub exported_unix: u64,
    /// The key RESERVATION-TOKENs (and static users' nonces) are signed with: the new
    /// process should start with it, or those in flight stop working (see `ImportReport`).
    pub token_key: SecretKey,
    pub allocations: Vec<AllocationState>,
    pub reservations: Vec<ReservationState>,
    /// The core's metric counters by name (`counters.rs`); zeros left out. The importer
    /// adds them to its own, so Prometheus counters continue across a handover.
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationState {
    pub client: ClientState,
    pub username: String,
    /// Relay addresses as bound (not as advertised).
    pub relay_v4: Option<SocketAddr>,
    pub relay_v6: Option<SocketAddr>,
    /// Wall clock at creation: a stale nonce may delete it only if minted during its life.
    pub created_unix: u64,
    /// How long it had lived at export (its session duration continues from there).
    pub age_ms: u64,
    pub lifetime_remaining_ms: u64,
    /// When the credential-expiry policy ends it regardless of refreshes.
    pub session_end: Option<SessionEndState>,
    /// Tells its timers from an earlier allocation's; the token of its fleet slot.
    pub serial: u64,
    pub permissions: Vec<PermissionState>,
    /// Channel bindings; `channel_by_peer` is their inverse and is rebuilt from them.
    pub channels: Vec<ChannelState>,
    /// The Allocate that created it and its exact success response (retransmissions).
    #[serde(with = "b64")]
    pub allocate_transaction: [u8; 12],
    #[serde(with = "b64")]
    pub allocate_response: Vec<u8>,
    pub traffic: TrafficState,
    pub peers_used: u32,
    pub channels_used: u32,
    /// Its own bandwidth bucket, when the exporting server had one.
    pub bandwidth: Option<BucketState>,
}

/// The 5-tuple as the shell knows it. `listener` indexes the shell's listener list, so
/// it means the same only if the new process has the same listeners in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientState {
    pub transport: TransportState,
    pub listener: u16,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportState {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionEndState {
    pub remaining_ms: u64,
    pub reason: SessionEndReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    CredentialExpired,
    MaxSession,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionState {
    pub peer_ip: IpAddr,
    pub remaining_ms: u64,
}

/// `remaining_ms` is negative for a binding that expired and is cooling down (RFC 8656
/// §12: its number and peer stay taken for 300 s more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    pub number: u16,
    pub peer: SocketAddr,
    pub remaining_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficState {
    pub bytes_to_peer: u64,
    pub packets_to_peer: u64,
    pub bytes_to_client: u64,
    pub packets_to_client: u64,
}

/// A token bucket's level in byte-microseconds (a byte costs 1,000,000), refilled up to
/// the export, and the rate it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketState {
    pub rate_bytes_per_sec: u64,
    pub units: u64,
}

/// A port held by an EVEN-PORT R bit for the RTCP allocation that redeems its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationState {
    #[serde(with = "b64")]
    pub token: [u8; 8],
    pub addr: SocketAddr,
    pub remaining_ms: u64,
    /// The user whose quota slot it holds; None once redeemed on another shard (it then
    /// only keeps the port from being handed out until it expires).
    pub user: Option<String>,
}

/// A 32-byte key; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKey(#[serde(with = "b64")] pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why a state could not be read. The new process then starts empty and says this; the
/// old one drains as it does without a handover.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoverError {
    #[error("not a turnpike handover state (bad magic)")]
    BadMagic,
    #[error("written by a newer turnpike: state version {found}, this one reads up to {VERSION}")]
    FutureVersion { found: u32 },
    #[error("state version {found} was never written by a turnpike release")]
    UnknownVersion { found: u32 },
    #[error("corrupt handover state: {0}")]
    Corrupt(String),
}

impl HandoverError {
    /// A short label for a `result` metric label or a log field.
    pub fn label(&self) -> &'static str {
        match self {
            HandoverError::BadMagic => "bad_magic",
            HandoverError::FutureVersion { .. } => "future_version",
            HandoverError::UnknownVersion { .. } => "unknown_version",
            HandoverError::Corrupt(_) => "corrupt",
        }
    }
}

/// The state in the current version's format.
pub fn encode(state: &CoreState) -> Vec<u8> {
    let body = serde_json::to_vec(state).expect("plain data serializes");
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&digest(&body));
    out.extend_from_slice(&body);
    out
}

/// Reads a state of this version or an older one.
pub fn decode(bytes: &[u8]) -> Result<CoreState, HandoverError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(HandoverError::BadMagic);
    }
    let Some(v) = bytes.get(8..12) else {
        return Err(HandoverError::Corrupt(
            "truncated before the version".into(),
        ));
    };
    match u32::from_be_bytes(v.try_into().expect("4 bytes")) {
        1 => decode_v1(&bytes[12..]),
        found if found > VERSION => Err(HandoverError::FutureVersion { found }),
        found => Err(HandoverError::UnknownVersion { found }),
    }
}

fn decode_v1(rest: &[u8]) -> Result<CoreState, HandoverError> {
    let corrupt = |why: String| HandoverError::Corrupt(why);
    if rest.len() < 28 {
        return Err(corrupt("truncated header".into()));
    }
    let len = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let body = &rest[28..];
    if body.len() as u64 != len {
        return Err(corrupt(format!(
            "body is {} bytes, header says {len}",
            body.len()
        )));
    }
    if digest(body)[..] != rest[8..28] {
        return Err(corrupt("checksum mismatch".into()));
    }
    serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
}

fn digest(body: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(body).into()
}

/// Byte strings as base64 text (JSON arrays of numbers are 3-4x larger).
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes.as_ref()))
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<Vec<u8>>,
    {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = STANDARD.decode(text.as_bytes()).map_err(D::Error::custom)?;
        let len = bytes.len();
        T::try_from(bytes).map_err(|_| D::Error::custom(format!("unexpected length {len}")))
    }
}
