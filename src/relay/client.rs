//! Who a client is to the core: the transport it came over and its 5-tuple.

use std::net::SocketAddr;

crate::label_table::label_table! {
    /// How a client reaches this server: the `transport` metric label.
    pub enum Transport {
        Udp = "udp",
        Tcp = "tcp",
        Tls = "tls",
    }
}

/// A client's 5-tuple as the shell knows it: the transport, which listener (or accepted
/// connection's listener) it came in on, and its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    pub transport: Transport,
    pub listener: u16,
    pub addr: SocketAddr,
}
