//! The relay path: ChannelData and Send indications from clients, datagrams from peers.
//! No allocation and no lock per packet; the answer is a routing decision.

use std::net::SocketAddr;
use std::time::Instant;

use super::action::{ClientAction, PeerAction};
use super::client::ClientId;
use super::core_state::Core;
use super::stats::{Direction, DropReason};
use super::time::Time;
use crate::proto::ClientMessage;

impl Core {
    /// A packet from a client. ChannelData and Send indications are answered with a
    /// routing decision and nothing allocated; everything else goes through the STUN path.
    pub fn handle_client_packet<'a>(
        &mut self,
        time: Time,
        client: ClientId,
        packet: &'a [u8],
    ) -> ClientAction<'a> {
        let (now, unix) = (time.mono, time.unix);
        match crate::proto::decode(packet) {
            ClientMessage::ChannelData(cd) => {
                self.relay_to_peer(now, client, cd.channel, None, cd.payload)
            }
            ClientMessage::Send(s) => self.relay_to_peer(now, client, 0, Some(s.peer), s.data),
            ClientMessage::Malformed => {
                self.counters.drop(DropReason::Malformed);
                ClientAction::Drop(DropReason::Malformed)
            }
            ClientMessage::Stun => {
                self.handle_stun(now, unix, client, packet);
                ClientAction::Handled
            }
        }
    }

    /// `channel` is used when `peer` is None (ChannelData); otherwise a Send indication.
    pub(super) fn relay_to_peer<'a>(
        &mut self,
        now: Instant,
        client: ClientId,
        channel: u16,
        peer: Option<SocketAddr>,
        payload: &'a [u8],
    ) -> ClientAction<'a> {
        let Some(&idx) = self.by_client.get(&client) else {
            self.counters.drop(DropReason::NoAllocation);
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        let alloc = &mut self.allocations[idx];
        let peer = match peer {
            Some(p) => p,
            None => match alloc.channel_peer(now, channel) {
                Some(p) => p,
                None => {
                    self.counters.drop(DropReason::NoChannel);
                    return ClientAction::Drop(DropReason::NoChannel);
                }
            },
        };
        // Permissions are checked against the policy when installed, so one check here;
        // a Send indication names a port, which must not be one of our own services
        // (channels were checked when bound).
        let own_service = channel == 0 && self.cfg.policy.is_own_service(peer);
        let relay = match alloc.relay_for(&peer) {
            Some(r) if alloc.has_permission(now, peer.ip()) && !own_service => r,
            _ => {
                // Only on the drop path: say whether policy is why no permission exists.
                let reason = if self.cfg.policy.permits(peer.ip()) && !own_service {
                    DropReason::NoPermission
                } else {
                    DropReason::DeniedPeer
                };
                self.counters.drop(reason);
                return ClientAction::Drop(reason);
            }
        };
        if let Some(l) = &mut alloc.limits
            && !l.take(now, payload.len())
        {
            self.counters.drop(DropReason::RateLimit);
            return ClientAction::Drop(DropReason::RateLimit);
        }
        alloc.traffic.bytes_to_peer += payload.len() as u64;
        alloc.traffic.packets_to_peer += 1;
        self.counters
            .relayed(client.transport, Direction::ClientToPeer, payload.len());
        ClientAction::Forward {
            relay,
            peer,
            payload,
        }
    }

    /// A packet that arrived on relay socket `relay` from `peer`.
    pub fn handle_peer_packet(
        &mut self,
        time: Time,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> PeerAction {
        let now = time.mono;
        let table = if relay.is_ipv4() {
            &self.by_relay_v4
        } else {
            &self.by_relay_v6
        };
        let Some(&idx) = table.get(&relay.port()) else {
            self.counters.drop(DropReason::NoAllocation);
            return PeerAction::Drop(DropReason::NoAllocation);
        };
        let alloc = &mut self.allocations[idx];
        if !alloc.has_permission(now, peer.ip()) {
            self.counters.drop(DropReason::NoPermission);
            return PeerAction::Drop(DropReason::NoPermission);
        }
        let channel = alloc.peer_channel(now, &peer);
        if channel.is_none()
            && payload.len() > crate::proto::indication::MAX_DATA_INDICATION_PAYLOAD
        {
            self.counters.drop(DropReason::Malformed);
            return PeerAction::Drop(DropReason::Malformed);
        }
        if let Some(l) = &mut alloc.limits
            && !l.take(now, payload.len())
        {
            self.counters.drop(DropReason::RateLimit);
            return PeerAction::Drop(DropReason::RateLimit);
        }
        alloc.traffic.bytes_to_client += payload.len() as u64;
        alloc.traffic.packets_to_client += 1;
        let client = alloc.client;
        self.counters
            .relayed(client.transport, Direction::PeerToClient, payload.len());
        if let Some(channel) = channel {
            return PeerAction::ChannelData { client, channel };
        }
        // Unique per indication without a random draw per packet: a random prefix drawn
        // once, then a counter.
        self.indications += 1;
        let mut transaction_id = self.indication_prefix;
        transaction_id[4..].copy_from_slice(&self.indications.to_be_bytes());
        PeerAction::DataIndication {
            client,
            transaction_id,
        }
    }
}
