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
    /// What became of the export; gone: resume.
    pub verdict: Receiver<Verdict>,
}

/// What became of a shard's export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No new process took over: resume as if nothing happened.
    Resume,
    /// A new process runs and has adopted the fleet slots (exec handover): forget what
    /// was exported and give back this process's names of its slots.
    TookOver,
    /// In systemd's store for a process not started yet: forget what was exported and
    /// leave its fleet slots for that process to adopt.
    Stored,
}
