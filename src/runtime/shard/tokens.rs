//! How a shard's poll tells its sockets apart: one token range per kind of socket.

use mio::Token;

/// Interrupts the poll for a control message.
pub const WAKER: Token = Token(usize::MAX);
// Token ranges: UDP listeners from 0, then TCP/TLS listeners, relay sockets and client
// connections, each from its base (the slab key or listener index added).
pub const TCP_LISTENER_BASE: usize = 1 << 12;
pub const RELAY_BASE: usize = 1 << 16;
pub const CONN_BASE: usize = 1 << 32;
