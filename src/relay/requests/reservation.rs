//! EVEN-PORT's R bit: the next port, held for the RTCP allocation that redeems it.

use std::net::SocketAddr;
use std::time::Duration;

/// How long a port reserved by EVEN-PORT's R bit waits for its RESERVATION-TOKEN.
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// A port held for an RTCP allocation by an EVEN-PORT R bit (RFC 8656 §7.1.2).
pub struct Reservation {
    pub addr: SocketAddr,
}
