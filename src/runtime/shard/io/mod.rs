//! The UDP syscalls of the relay path, below the shard and knowing nothing of TURN:
//! recvmmsg/sendmmsg batches (`batch`), GSO runs and sends (`gso`), and the socket options
//! listeners and relay sockets are created with (`sockets`).

pub mod batch;
pub mod gso;
pub mod sockets;

/// One datagram slot of a batch buffer: the largest UDP payload plus room for a
/// ChannelData or Data indication header and padding.
pub const SLOT: usize = 65536 + 64;
