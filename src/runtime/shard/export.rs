//! What a shard hands over in a process handover, and how the shell asks for it
//! (handover.rs does it).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::mpsc::{Receiver, Sender};

use crate::relay::Transport;

/// What one shard hands over: its state (UDP allocations only: TCP/TLS connections stay
/// with the old process, see app/handover.rs) and the descriptors the new process needs.
pub struct ShardExport {
    pub index: usize,
    /// `relay::handover::encode` of the state.
    pub state: Vec<u8>,
    /// Listeners in order (the SO_REUSEPORT group and `listener` indexes depend on it).
    pub udp: Vec<RawFd>,
    pub tcp: Vec<(RawFd, Transport)>,
    /// Relay sockets of the exported allocations, by bound address.
    pub relays: Vec<(SocketAddr, RawFd)>,
    pub allocations: usize,
    /// TCP/TLS allocations that stay with this process.
    pub kept: usize,
}

pub struct HandOverRequest {
    pub reply: Sender<ShardExport>,
    /// True: the new process took over (forget what was exported); false or gone: resume.
    pub verdict: Receiver<bool>,
}
