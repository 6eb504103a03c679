//! A fake shell: what `runtime::shard` does with the core's commands, without sockets.
//! Relay "sockets" are a set of addresses (a bind of a busy or held port fails, a release
//! of one not held fails the test), responses are collected, ended sessions kept. Data
//! indications are framed in place the way the shell frames them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use stun::message::Message;

use crate::proto::indication::{DATA_INDICATION_HEADROOM, frame_data_indication};
use crate::relay::allocation::Traffic;
use crate::relay::{
    ClientId, Command, Core, FleetSlot, KernelRoute, PeerAction, SessionSummary, Time,
};

/// The fleet's count for `ClaimFleetSlot`, shared by the shells of several "nodes":
/// slots by (node, token), at most `max_per_user` per user id; `down` answers
/// `Unavailable` (fail closed) without counting.
#[derive(Default)]
pub struct FakeFleet {
    pub max_per_user: usize,
    pub down: bool,
    pub slots: HashMap<(usize, u64), String>,
    /// Names a handover took over: giving one back later is a no-op (Redis's ZREM of a
    /// member already gone), not a double release.
    pub renamed: HashSet<(usize, u64)>,
}

impl FakeFleet {
    fn claim(&mut self, node: usize, token: u64, user: String) -> FleetSlot {
        if self.down {
            return FleetSlot::Unavailable;
        }
        if self.slots.values().filter(|u| **u == user).count() >= self.max_per_user {
            return FleetSlot::Full;
        }
        self.slots.insert((node, token), user);
        FleetSlot::Granted
    }

    /// A handover's slot: node `previous`'s slot `was` becomes `node`'s `token` (no cap
    /// check), or goes when `token` is None. Fails the test when `previous` never held it
    /// for that user.
    fn adopt(&mut self, node: usize, previous: usize, token: Option<u64>, was: u64, user: String) {
        let held = self.slots.remove(&(previous, was));
        assert_eq!(held.as_ref(), Some(&user), "adopted slot {was} not held");
        self.renamed.insert((previous, was));
        if let Some(t) = token {
            assert!(
                self.slots.insert((node, t), user).is_none(),
                "slot {t} taken"
            );
        }
    }
}

#[derive(Default)]
pub struct FakeShell {
    /// Ports the fake shell refuses to bind (already in use by another process).
    pub busy_ports: HashSet<u16>,
    /// The relay sockets it holds.
    pub bound: HashSet<SocketAddr>,
    /// The summaries of the sessions that ended, in order.
    pub ended: Vec<SessionSummary>,
    /// The fleet this shell's node belongs to, and the node's number in it.
    pub fleet: Option<(Arc<Mutex<FakeFleet>>, usize)>,
    /// The node whose state this one imported (its fleet slots are adopted from it).
    pub fleet_previous: Option<usize>,
    /// Routes in the kernel fast path by id, with the running totals its counters hold
    /// (a test sets them). Adding one twice or removing one not there fails the test.
    pub kernel: HashMap<u64, (KernelRoute, Traffic)>,
    /// Every route ever added, in order.
    pub kernel_added: Vec<KernelRoute>,
}

impl FakeShell {
    /// Plays the shell as runtime::shard does: drains the queue, binding relay sockets
    /// (failing on busy ports) and collecting what goes to clients, then reports the
    /// binds, until the core is idle.
    pub fn run(&mut self, server: &mut Core, time: Time) -> Vec<(ClientId, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut binds = Vec::new();
            let mut claims = Vec::new();
            let mut removed = Vec::new();
            while let Some(cmd) = server.poll_command() {
                match cmd {
                    Command::SendToClient { client, data } => out.push((client, data)),
                    Command::BindRelay { token, addr } => {
                        let ok = !self.busy_ports.contains(&addr.port()) && self.bound.insert(addr);
                        binds.push((token, addr, ok));
                    }
                    Command::ReleaseRelay { addr } => {
                        assert!(self.bound.remove(&addr), "released {addr} twice");
                    }
                    Command::AllocationEnded(s) => self.ended.push(*s),
                    Command::FastPathAdd(r) => {
                        let old = self.kernel.insert(r.id, (r, Traffic::default()));
                        assert!(old.is_none(), "route {r:?} added twice");
                        self.kernel_added.push(r);
                    }
                    Command::FastPathRemove(r) => {
                        let (_, totals) = self.kernel.remove(&r.id).expect("removed twice");
                        removed.push((r.id, totals));
                    }
                    Command::ClaimFleetSlot { token, user } => {
                        let (fleet, node) = self.fleet.as_ref().expect("a claim needs a fleet");
                        claims.push((token, fleet.lock().unwrap().claim(*node, token, user)));
                    }
                    Command::ReleaseFleetSlot { token } => {
                        let (fleet, node) = self.fleet.as_ref().expect("a release needs a fleet");
                        let mut f = fleet.lock().unwrap();
                        let held = f.slots.remove(&(*node, token));
                        let renamed = f.renamed.remove(&(*node, token));
                        assert!(
                            held.is_some() || renamed,
                            "released fleet slot {token} twice"
                        );
                    }
                    Command::AdoptFleetSlot { token, was, user } => {
                        let (fleet, node) = self.fleet.as_ref().expect("adopting needs a fleet");
                        let from = self.fleet_previous.expect("adopting needs a previous node");
                        fleet.lock().unwrap().adopt(*node, from, token, was, user);
                    }
                }
            }
            if binds.is_empty() && claims.is_empty() && removed.is_empty() {
                return out;
            }
            for (id, totals) in removed {
                server.fastpath_removed(id, totals);
            }
            for (token, answer) in claims {
                server.fleet_slot_answered(time, token, answer);
            }
            for (token, addr, ok) in binds {
                server.relay_bound(time, token, addr, ok);
            }
        }
    }
}

impl FakeShell {
    /// Reports the kernel's running totals of every installed route, as the shell does at
    /// each status publish.
    pub fn read_kernel(&self, server: &mut Core) {
        for (id, (_, totals)) in &self.kernel {
            server.fastpath_traffic(*id, *totals);
        }
    }
}

/// Frames `payload` from `from` as a Data indication with transaction id `id`, in place
/// as the shell does, and decodes the result.
pub fn data_indication(id: &[u8; 12], from: SocketAddr, payload: &[u8]) -> Message {
    let at = DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; at + payload.len() + 3];
    buf[at..at + payload.len()].copy_from_slice(payload);
    let r = frame_data_indication(&mut buf, at, payload.len(), from, id);
    let mut m = Message::new();
    m.raw = buf[r].to_vec();
    m.decode().expect("a decodable Data indication");
    m
}

/// Whether the core told the shell to send `c` a Data indication.
pub fn is_data_indication(act: &PeerAction, c: ClientId) -> bool {
    matches!(act, PeerAction::DataIndication { client, .. } if *client == c)
}

/// The Data indication `act` tells the shell to send, framed and decoded.
pub fn framed(act: PeerAction, from: SocketAddr, payload: &[u8]) -> (ClientId, Message) {
    let PeerAction::DataIndication {
        client,
        transaction_id,
    } = act
    else {
        panic!("expected a Data indication, got {act:?}");
    };
    (client, data_indication(&transaction_id, from, payload))
}
