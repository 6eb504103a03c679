//! The fake shell: feeds each packet to the shard that owns it, checks what the core
//! decided, and carries out its commands (sends, binds, releases), binding relay "sockets"
//! in a set and answering binds late or failing them when the fuzzer says so.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use turnpike::relay::peer_policy::PeerPolicy;
use turnpike::relay::{ClientAction, ClientId, Command, FleetSlot, PeerAction};
use turnpike::testkit::shell::data_indication;

use crate::{Attr, Driver, PORT_BASE};

fn relay_ip(i: u8) -> IpAddr {
    if i.is_multiple_of(2) {
        "10.0.0.5".parse().unwrap()
    } else {
        "2001:db8::5".parse().unwrap()
    }
}

impl Driver {
    /// Both clocks move on by `d`, and the shards' timers run.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
        self.timeout();
    }

    /// A sweep leaves no allocation more than one sweep interval past its lifetime.
    fn timeout(&mut self) {
        let time = self.time();
        for s in &mut self.shards {
            s.handle_timeout(time);
        }
        self.drain();
        for a in self.allocations() {
            assert!(
                a.expires + Duration::from_secs(1) > self.now,
                "allocation outlived its lifetime"
            );
        }
    }

    pub(crate) fn request(&mut self, client: u8, user: u8, typ: MessageType, attrs: &[Attr]) {
        let c = Self::client(client);
        let p = self.signed(c, user, typ, attrs);
        self.client_packet(c, &p);
        self.last_request = Some((c, p));
    }

    pub fn client_packet(&mut self, client: ClientId, packet: &[u8]) {
        let (now, unix) = (self.now, self.unix);
        let s = self.shard_of(client);
        match self.shards[s].handle_client_packet(
            turnpike::relay::Time { mono: now, unix },
            client,
            packet,
        ) {
            ClientAction::Forward {
                relay,
                peer,
                payload,
            } => {
                self.tally.forwarded += 1;
                assert_eq!(
                    self.bound.get(&relay),
                    Some(&s),
                    "forwarded from {relay}, not a socket of shard {s}"
                );
                assert_eq!(
                    relay.is_ipv4(),
                    peer.is_ipv4(),
                    "relay family != peer family"
                );
                assert!(
                    PeerPolicy::default().permits(peer.ip()),
                    "forwarded to denied peer {peer}"
                );
                // Zero-copy: the payload is a slice of the packet, never more.
                let range = packet.as_ptr_range();
                assert!(
                    payload.is_empty() || range.contains(&payload.as_ptr()),
                    "payload is not a slice of the packet"
                );
            }
            ClientAction::Handled => {}
            ClientAction::Drop(r) => self.tally.drops[r as usize] += 1,
        }
        self.drain();
    }

    pub fn peer_packet(&mut self, relay: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        let s = self.shard_of_relay(relay);
        let time = self.time();
        match self.shards[s].handle_peer_packet(time, relay, peer, payload) {
            PeerAction::ChannelData { client, channel } => {
                self.tally.to_client += 1;
                assert!(
                    (0x4000..=0x7FFE).contains(&channel),
                    "bad channel {channel:#x}"
                );
                assert!(self.has_allocation(&client));
            }
            PeerAction::DataIndication {
                client,
                transaction_id,
            } => {
                self.tally.to_client += 1;
                assert!(self.has_allocation(&client));
                // The shell frames the payload in place; the result must be a valid Data
                // indication carrying exactly the payload.
                let m = data_indication(&transaction_id, peer, payload);
                assert_eq!(m.get(ATTR_DATA).unwrap(), payload);
            }
            PeerAction::Drop(r) => self.tally.drops[r as usize] += 1,
        }
        self.drain();
    }

    /// Plays the shell: carries out every queued command.
    pub fn drain(&mut self) {
        // A bind answered may queue more commands on its shard: go round until all are idle.
        while let Some((shard, cmd)) =
            (0..self.shards.len()).find_map(|i| self.shards[i].poll_command().map(|c| (i, c)))
        {
            match cmd {
                Command::SendToClient { client: _, data } => {
                    let mut m = Message::new();
                    m.raw = data;
                    m.decode().expect("the server sends only decodable STUN");
                    if m.typ.class == CLASS_SUCCESS_RESPONSE || m.typ.class == CLASS_ERROR_RESPONSE
                    {
                        self.tally.responses += 1;
                    }
                    if let Ok(t) = m.get(ATTR_RESERVATION_TOKEN) {
                        self.last_token = Some(t);
                    }
                }
                Command::BindRelay { token, addr } => {
                    // A shard picks from its own slice, but a RESERVATION-TOKEN is redeemed
                    // by whichever shard the Allocate lands on: any slice then.
                    assert!(
                        (self.port_ranges.iter()).any(|r| (r.0..=r.1).contains(&addr.port())),
                        "bind outside the port range: {addr}"
                    );
                    if self.defer {
                        self.deferred.push_back((shard, token, addr));
                    } else {
                        self.bind(shard, token, addr);
                    }
                }
                Command::ReleaseRelay { addr } => {
                    let owner = self.bound.remove(&addr);
                    assert_eq!(owner, Some(shard), "shard {shard} released {addr}");
                }
                Command::AllocationEnded(_) => self.tally.ended += 1,
                Command::FastPathAdd(r) => {
                    assert_eq!(r.client.transport, turnpike::relay::Transport::Udp);
                    assert!(self.kernel.insert((shard, r.id)), "route {r:?} added twice");
                }
                Command::FastPathRemove(r) => {
                    assert!(self.kernel.remove(&(shard, r.id)), "route {r:?} not installed");
                    self.shards[shard].fastpath_removed(r.id, Default::default());
                }
                Command::ClaimFleetSlot { token, .. } => {
                    self.fleet_slots.insert((shard, token));
                    let time = self.time();
                    self.shards[shard].fleet_slot_answered(time, token, FleetSlot::Granted);
                }
                Command::ReleaseFleetSlot { token } => {
                    let held = self.fleet_slots.remove(&(shard, token));
                    assert!(held, "shard {shard} gave back fleet slot {token} it did not hold");
                }
                // Only a handover's import asks this, and the fuzz targets import nothing.
                Command::AdoptFleetSlot { .. } => panic!("a fleet slot adopted without an import"),
            }
        }
    }

    pub(crate) fn bind(&mut self, shard: usize, token: u64, addr: SocketAddr) {
        // Like the OS: a port held by another socket, or one marked busy, fails to bind.
        let ok = !self.busy.remove(&addr.port()) && !self.bound.contains_key(&addr);
        if ok {
            self.bound.insert(addr, shard);
        }
        let time = self.time();
        self.shards[shard].relay_bound(time, token, addr, ok);
    }

    pub(crate) fn answer_deferred(&mut self) {
        while let Some((shard, token, addr)) = self.deferred.pop_front() {
            self.bind(shard, token, addr);
            self.drain();
        }
    }

    /// Where an `Op::Peer` lands: relay address `relay` of the live allocations, or any
    /// port of a relay IP.
    pub(crate) fn peer_target(&self, relay: u8, any_port: Option<u16>) -> SocketAddr {
        let relays: Vec<SocketAddr> = self
            .allocations()
            .flat_map(|a| [a.relay_v4, a.relay_v6])
            .flatten()
            .collect();
        match any_port {
            Some(port) => SocketAddr::new(relay_ip(relay), port),
            None if relays.is_empty() => SocketAddr::new(relay_ip(relay), PORT_BASE),
            None => relays[relay as usize % relays.len()],
        }
    }
}
