//! One client's allocation: its relayed addresses, permissions and channel bindings.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::client::ClientId;
use super::fast_map::FastMap;

/// RFC 8656 §9: a permission lasts 300 s unless refreshed.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: a channel binding lasts 600 s unless refreshed.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// RFC 8656 §12: after a binding expires, neither its number nor its peer may be rebound
/// to anything else for another 300 s, so late packets cannot reach the wrong peer.
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
pub struct ChannelBinding {
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// Traffic totals for one allocation, reported when it ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_to_peer: u64,
    pub packets_to_peer: u64,
    pub bytes_to_client: u64,
    pub packets_to_client: u64,
}

#[derive(Debug)]
pub struct Allocation {
    pub client: ClientId,
    pub username: String,
    pub relay_v4: Option<SocketAddr>,
    pub relay_v6: Option<SocketAddr>,
    pub created: Instant,
    /// Unix seconds at creation: a stale nonce may still delete this allocation only if it
    /// was minted during its life.
    pub created_unix: u64,
    pub expires: Instant,
    /// When the credential-expiry policy ends it regardless of refreshes, and why.
    pub session_end: Option<(Instant, super::stats::EndReason)>,
    /// Tells this allocation's timer entries from those of an earlier one in its slot.
    pub serial: u64,
    /// The time of its live entry in the core's deadline heap.
    pub scheduled: Instant,
    /// Bandwidth budgets, when configured (boxed: most servers set none).
    pub limits: Option<Box<super::bandwidth::Limits>>,
    pub permissions: FastMap<IpAddr, Instant>,
    pub channels: FastMap<u16, ChannelBinding>,
    pub channel_by_peer: FastMap<SocketAddr, u16>,
    /// The Allocate that created it and the exact success response, for retransmissions.
    pub allocate_transaction: [u8; 12],
    pub allocate_response: Vec<u8>,
    pub traffic: Traffic,
    /// Distinct peer IPs and channels ever used, for the session log line.
    pub peers_used: u32,
    pub channels_used: u32,
}

impl Allocation {
    pub fn relay_for(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        if peer.is_ipv4() {
            self.relay_v4
        } else {
            self.relay_v6
        }
    }

    pub fn has_permission(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions.get(&ip).is_some_and(|&exp| exp > now)
    }

    /// Installs or refreshes the permission for `ip`.
    pub fn permit(&mut self, now: Instant, ip: IpAddr) {
        if self
            .permissions
            .insert(ip, now + PERMISSION_LIFETIME)
            .is_none()
        {
            self.peers_used += 1;
        }
    }

    /// The peer bound to `channel`, if the binding is live.
    pub fn channel_peer(&self, now: Instant, channel: u16) -> Option<SocketAddr> {
        self.channels
            .get(&channel)
            .filter(|b| b.expires > now)
            .map(|b| b.peer)
    }

    /// The live channel bound to `peer`.
    pub fn peer_channel(&self, now: Instant, peer: &SocketAddr) -> Option<u16> {
        let ch = *self.channel_by_peer.get(peer)?;
        self.channel_peer(now, ch).map(|_| ch)
    }

    /// RFC 8656 §12.2: a number bound (or cooling down) for another peer, or a peer bound
    /// to another number, is refused; the same pair refreshes.
    pub fn bind_channel(&mut self, now: Instant, channel: u16, peer: SocketAddr) -> bool {
        if let Some(b) = self.channels.get(&channel)
            && b.peer != peer
        {
            return false;
        }
        if let Some(&other) = self.channel_by_peer.get(&peer)
            && other != channel
        {
            return false;
        }
        let fresh = self
            .channels
            .insert(
                channel,
                ChannelBinding {
                    peer,
                    expires: now + CHANNEL_LIFETIME,
                },
            )
            .is_none();
        if fresh {
            self.channels_used += 1;
        }
        self.channel_by_peer.insert(peer, channel);
        self.permit(now, peer.ip());
        true
    }

    /// Drops expired permissions and bindings past their cool-down.
    pub fn expire(&mut self, now: Instant) {
        self.permissions.retain(|_, exp| *exp > now);
        let peers = &mut self.channel_by_peer;
        self.channels.retain(|_, b| {
            let keep = b.expires + CHANNEL_COOLDOWN > now;
            if !keep {
                peers.remove(&b.peer);
            }
            keep
        });
    }

    /// The earliest time something in it is due: its own expiry or session end, a
    /// permission's expiry, or a binding's end of cool-down.
    pub fn next_deadline(&self) -> Instant {
        let own = self
            .session_end
            .map_or(self.expires, |(end, _)| end.min(self.expires));
        let permissions = self.permissions.values().copied();
        let channels = self.channels.values().map(|b| b.expires + CHANNEL_COOLDOWN);
        permissions.chain(channels).fold(own, Instant::min)
    }

    pub fn live_channels(&self, now: Instant) -> usize {
        self.channels.values().filter(|b| b.expires > now).count()
    }

    pub fn live_permissions(&self, now: Instant) -> usize {
        self.permissions.values().filter(|&&e| e > now).count()
    }
}
