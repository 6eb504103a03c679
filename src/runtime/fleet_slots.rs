//! How shards reach the fleet's per-user count (`[cluster]`): every shard sends its
//! core's `ClaimFleetSlot` / `ReleaseFleetSlot` / `AdoptFleetSlot` into one queue, which the fleet task reads
//! (`Node::take_slot_requests`); the answer comes back on the shard's control queue
//! (`Node::answer_fleet_slot`). The queue never blocks a shard.

use tokio::sync::mpsc;

/// A shard's request to the fleet. A slot is named by (shard, token).
#[derive(Debug, PartialEq, Eq)]
pub enum SlotRequest {
    Claim {
        shard: usize,
        token: u64,
        user: String,
    },
    Release {
        shard: usize,
        token: u64,
    },
    /// A slot the previous process held (named by its serial `was` in this shard), taken
    /// over as `token`, or given back when None (`Command::AdoptFleetSlot`).
    Adopt {
        shard: usize,
        token: Option<u64>,
        was: u64,
        user: String,
    },
}

pub type SlotSender = mpsc::UnboundedSender<SlotRequest>;
pub type SlotReceiver = mpsc::UnboundedReceiver<SlotRequest>;
