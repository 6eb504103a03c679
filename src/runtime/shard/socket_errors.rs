//! What a socket error means for a shard: read on or not, and which drop it counts as.

use std::io::ErrorKind;

use crate::relay::Core;
use crate::relay::stats::DropReason;

/// After a receive/accept error: true when it concerned one datagram or connection (an
/// ICMP error, a connection reset before accept) and the socket may hold more; false
/// otherwise (e.g. out of file descriptors), so the loop does not spin on it.
pub(super) fn keep_reading(e: &std::io::Error) -> bool {
    match e.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::Interrupted => true,
        _ => {
            tracing::debug!(error = %e, "socket error");
            false
        }
    }
}

/// Counts the datagrams a batched send dropped: refused, or a full socket buffer.
pub(super) fn record_dropped(core: &mut Core, failed: usize, blocked: usize) {
    for _ in 0..failed {
        core.record_send_failure(DropReason::SendError);
    }
    for _ in 0..blocked {
        core.record_send_failure(DropReason::BufferFull);
    }
}

pub(super) fn send_drop_reason(e: &std::io::Error) -> DropReason {
    if e.kind() == ErrorKind::WouldBlock {
        DropReason::BufferFull
    } else {
        DropReason::SendError
    }
}
