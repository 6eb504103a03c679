//! Every STUN/TURN error code this server sends, with its reason phrase, declared once
//! (RFC 8489 §14.8, RFC 8656 §18.3).

crate::label_table::label_table! {
    /// An error response's code. `reason()` is the registered phrase; a rejection may carry
    /// a more specific one. `label()` is the code as the `code` label of request metrics.
    pub enum StunError {
        TryAlternate = 300 "Try Alternate",
        BadRequest = 400 "Bad Request",
        Unauthorized = 401 "Unauthorized",
        Forbidden = 403 "Forbidden",
        UnknownAttribute = 420 "Unknown Attribute",
        AllocationMismatch = 437 "Allocation Mismatch",
        StaleNonce = 438 "Stale Nonce",
        AddressFamilyNotSupported = 440 "Address Family not Supported",
        WrongCredentials = 441 "Wrong Credentials",
        UnsupportedTransportProtocol = 442 "Unsupported Transport Protocol",
        PeerAddressFamilyMismatch = 443 "Peer Address Family Mismatch",
        AllocationQuotaReached = 486 "Allocation Quota Reached",
        ServerError = 500 "Server Error",
        InsufficientCapacity = 508 "Insufficient Capacity",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_labelled_by_their_number() {
        let codes = StunError::ALL.map(StunError::code);
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted by code");
        for e in StunError::ALL {
            assert_eq!(e.label(), e.code().to_string());
            assert!(!e.reason().is_empty());
        }
    }
}
