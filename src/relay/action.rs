//! The relay path's routing decisions, returned directly so that no packet allocates.

use std::net::SocketAddr;

use super::client::ClientId;
use super::stats::DropReason;

/// The relay path's answer to a client packet.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction<'a> {
    /// Send `payload` from the relay socket `relay` to `peer`.
    Forward {
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &'a [u8],
    },
    /// A control message: whatever it needs is in the command queue.
    Handled,
    Drop(DropReason),
}

/// The relay path's answer to a packet from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Prefix the payload with a ChannelData header for `channel` and send it to `client`.
    ChannelData {
        client: ClientId,
        channel: u16,
    },
    /// No channel is bound to this peer: frame the payload as a Data indication
    /// (`proto::indication::frame_data_indication`) with this transaction id and send it
    /// to `client`.
    DataIndication {
        client: ClientId,
        transaction_id: [u8; 12],
    },
    Drop(DropReason),
}
