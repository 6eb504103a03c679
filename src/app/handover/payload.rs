//! What the old process passes to the new one besides the descriptors themselves: a
//! manifest naming every descriptor (by number: they are inherited across exec) and each
//! shard's state, in one memfd. `MAGIC`, then the manifest's length (u64, big endian),
//! the manifest (JSON), then the shards' states back to back (their lengths are in it).

use std::net::SocketAddr;
use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

/// The variable that tells a process it was started by a handover: "MEMFD,SOCKET".
pub(super) const ENV: &str = "TURNPIKE_HANDOVER";

/// Says what the rest is; a later layout takes another magic.
pub(super) const MAGIC: &[u8; 8] = b"TPHOVER1";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub old_pid: u32,
    /// The old process's listeners as its config named them (transport label, address),
    /// UDP then TCP then TLS: a new config that names others cannot take them over.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The HTTP endpoint's listener.
    pub http: Option<RawFd>,
    pub shards: Vec<ShardFds>,
    /// `turnpike_handover_total` so far, by result: the new process carries it on.
    pub handovers: Vec<(String, u64)>,
    /// `[cluster]`: how the old process named its fleet quota slots (`<node>/<boot>`),
    /// so that the new one takes each over (absent from a turnpike before this field).
    #[serde(default)]
    pub fleet_slots: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ShardFds {
    pub udp: Vec<RawFd>,
    pub tcp: Vec<RawFd>,
    pub relays: Vec<(SocketAddr, RawFd)>,
    pub state_len: usize,
}

impl Manifest {
    /// Every descriptor named here.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut out: Vec<RawFd> = self.http.into_iter().collect();
        for s in &self.shards {
            out.extend(&s.udp);
            out.extend(&s.tcp);
            out.extend(s.relays.iter().map(|(_, fd)| *fd));
        }
        out
    }
}

impl Manifest {
    /// Renumbers every descriptor through `map` (the store hands them back under new
    /// numbers); Err names the first one missing.
    pub fn renumber(&mut self, map: impl Fn(RawFd) -> Option<RawFd>) -> Result<(), RawFd> {
        let one = |fd: &mut RawFd| -> Result<(), RawFd> {
            *fd = map(*fd).ok_or(*fd)?;
            Ok(())
        };
        if let Some(fd) = &mut self.http {
            one(fd)?;
        }
        for s in &mut self.shards {
            s.udp.iter_mut().try_for_each(one)?;
            s.tcp.iter_mut().try_for_each(one)?;
            s.relays.iter_mut().try_for_each(|(_, fd)| one(fd))?;
        }
        Ok(())
    }
}

pub(super) fn write(m: &Manifest, states: &[Vec<u8>]) -> Vec<u8> {
    let json = serde_json::to_vec(m).expect("plain data serializes");
    let mut out = Vec::with_capacity(16 + json.len() + states.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u64).to_be_bytes());
    out.extend_from_slice(&json);
    for s in states {
        out.extend_from_slice(s);
    }
    out
}

/// The manifest and each shard's state bytes (still to be decoded).
pub(super) fn read(bytes: &[u8]) -> Result<(Manifest, Vec<&[u8]>), String> {
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err("not a turnpike handover payload (bad magic)".into());
    }
    let len = bytes
        .get(8..16)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("payload truncated")?;
    let json = bytes.get(16..16 + len).ok_or("payload truncated")?;
    let m: Manifest = serde_json::from_slice(json).map_err(|e| format!("manifest: {e}"))?;
    let mut at = 16 + len;
    let mut states = Vec::new();
    for s in &m.shards {
        states.push(bytes.get(at..at + s.state_len).ok_or("payload truncated")?);
        at += s.state_len;
    }
    Ok((m, states))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            old_pid: 7,
            listeners: vec![("udp".into(), "127.0.0.1:3478".parse().unwrap())],
            http: Some(9),
            shards: vec![
                ShardFds {
                    udp: vec![10],
                    tcp: vec![11],
                    relays: vec![("127.0.0.1:50000".parse().unwrap(), 12)],
                    state_len: 3,
                },
                ShardFds {
                    udp: vec![13],
                    tcp: vec![],
                    relays: vec![],
                    state_len: 2,
                },
            ],
            handovers: vec![("took_over".into(), 2)],
            fleet_slots: Some("edge-1/0badcafe".into()),
        }
    }

    #[test]
    fn payload_round_trips_each_shards_state_in_order() {
        let bytes = write(&manifest(), &[b"abc".to_vec(), b"de".to_vec()]);
        let (m, states) = read(&bytes).unwrap();
        assert_eq!(states, [&b"abc"[..], &b"de"[..]]);
        assert_eq!(m.fds(), [9, 10, 11, 12, 13]);
        assert_eq!(m.handovers, [("took_over".to_string(), 2)]);
        assert_eq!(m.fleet_slots.as_deref(), Some("edge-1/0badcafe"));
    }

    #[test]
    fn a_manifest_from_before_fleet_slots_reads_as_none() {
        // What a turnpike without [cluster] handover support wrote.
        let json = br#"{"old_pid":7,"listeners":[],"http":null,"shards":[],"handovers":[]}"#;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(json.len() as u64).to_be_bytes());
        bytes.extend_from_slice(json);
        let (m, _) = read(&bytes).unwrap();
        assert_eq!(m.fleet_slots, None);
    }

    #[test]
    fn a_truncated_or_foreign_payload_is_refused() {
        let bytes = write(&manifest(), &[b"abc".to_vec(), b"de".to_vec()]);
        assert!(read(&bytes[..bytes.len() - 1]).is_err());
        assert!(read(b"NOTOURS!rest").is_err());
    }

    #[test]
    fn renumber_maps_every_descriptor_and_names_a_missing_one() {
        let mut m = manifest();
        m.renumber(|fd| Some(fd + 100)).unwrap();
        assert_eq!(m.fds(), [109, 110, 111, 112, 113]);
        let mut m = manifest();
        assert_eq!(m.renumber(|fd| (fd != 12).then_some(fd)), Err(12));
    }
}
