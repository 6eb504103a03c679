//! Every STUN/TURN error code this server sends, with its reason phrase, declared once
//! (RFC 8489 §14.8, RFC 8656 §18.3).

/// An error response's code. `reason()` is the registered phrase; a rejection may carry a
/// more specific one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    TryAlternate = 0,
    BadRequest,
    Unauthorized,
    Forbidden,
    UnknownAttribute,
    AllocationMismatch,
    StaleNonce,
    AddressFamilyNotSupported,
    WrongCredentials,
    UnsupportedTransportProtocol,
    PeerAddressFamilyMismatch,
    AllocationQuotaReached,
    ServerError,
    InsufficientCapacity,
}

impl StunError {
    /// Every code, in the order of their discriminants (the metric array's index).
    pub const ALL: [StunError; 14] = [
        StunError::TryAlternate,
        StunError::BadRequest,
        StunError::Unauthorized,
        StunError::Forbidden,
        StunError::UnknownAttribute,
        StunError::AllocationMismatch,
        StunError::StaleNonce,
        StunError::AddressFamilyNotSupported,
        StunError::WrongCredentials,
        StunError::UnsupportedTransportProtocol,
        StunError::PeerAddressFamilyMismatch,
        StunError::AllocationQuotaReached,
        StunError::ServerError,
        StunError::InsufficientCapacity,
    ];

    pub fn code(self) -> u16 {
        match self {
            StunError::TryAlternate => 300,
            StunError::BadRequest => 400,
            StunError::Unauthorized => 401,
            StunError::Forbidden => 403,
            StunError::UnknownAttribute => 420,
            StunError::AllocationMismatch => 437,
            StunError::StaleNonce => 438,
            StunError::AddressFamilyNotSupported => 440,
            StunError::WrongCredentials => 441,
            StunError::UnsupportedTransportProtocol => 442,
            StunError::PeerAddressFamilyMismatch => 443,
            StunError::AllocationQuotaReached => 486,
            StunError::ServerError => 500,
            StunError::InsufficientCapacity => 508,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            StunError::TryAlternate => "Try Alternate",
            StunError::BadRequest => "Bad Request",
            StunError::Unauthorized => "Unauthorized",
            StunError::Forbidden => "Forbidden",
            StunError::UnknownAttribute => "Unknown Attribute",
            StunError::AllocationMismatch => "Allocation Mismatch",
            StunError::StaleNonce => "Stale Nonce",
            StunError::AddressFamilyNotSupported => "Address Family not Supported",
            StunError::WrongCredentials => "Wrong Credentials",
            StunError::UnsupportedTransportProtocol => "Unsupported Transport Protocol",
            StunError::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            StunError::AllocationQuotaReached => "Allocation Quota Reached",
            StunError::ServerError => "Server Error",
            StunError::InsufficientCapacity => "Insufficient Capacity",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_sits_at_its_own_index_once() {
        let mut codes: Vec<u16> = StunError::ALL.iter().map(|e| e.code()).collect();
        for (i, e) in StunError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        codes.dedup();
        assert_eq!(codes.len(), StunError::ALL.len());
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted by code");
    }
}
