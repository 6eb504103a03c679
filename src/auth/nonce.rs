//! Stateless nonces (RFC 8489 §9.2): base64url(expiry ‖ MAC), bound to the client's
//! address or, for a redirect, to none; keyed so that nodes sharing a secret accept
//! each other's.

use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};

use super::{Authenticator, HmacSha1, Key};

/// Length of the nonce MAC. A nonce is base64url(expiry as u32 seconds ‖ MAC): 16
/// characters, so that the 401 an unauthenticated request gets stays small (amplification).
const NONCE_MAC_LEN: usize = 8;
const NONCE_LEN: usize = 16;

impl Authenticator {
    /// The nonce keys: with REST secrets, one derived from each, so every node sharing a
    /// secret accepts the others' nonces (a redirected browser signs its Allocate to the
    /// alternate with the nonce the redirecting node gave it) and a restarted node its own.
    /// The last secret mints: while a new secret is being added first on every node, the old
    /// one is the one all nodes share. Static users only: `process_key`, this process's own.
    pub(super) fn nonce_keys(secrets: &[String], process_key: [u8; 32]) -> Vec<Key> {
        if secrets.is_empty() {
            return vec![process_key.to_vec()];
        }
        secrets
            .iter()
            .map(|s| {
                let mut mac = HmacSha1::new_from_slice(s.as_bytes()).expect("any key length");
                mac.update(b"turnpike nonce key v1");
                mac.finalize().into_bytes().to_vec()
            })
            .collect()
    }

    /// A nonce that is valid for this client address until `now + nonce_lifetime`. It
    /// carries its own expiry and a MAC, so the server remembers nothing.
    pub fn mint_nonce(&self, now_unix: u64, client: SocketAddr) -> String {
        self.mint(now_unix, NonceScope::Client(client))
    }

    /// A nonce valid from any address, for a 300 Try Alternate: the client signs its
    /// Allocate to the alternate with it (libwebrtc does), and the alternate sees the
    /// client from another address when a symmetric NAT maps a new port towards it.
    pub fn mint_portable_nonce(&self, now_unix: u64) -> String {
        self.mint(now_unix, NonceScope::Anywhere)
    }

    fn mint(&self, now_unix: u64, scope: NonceScope) -> String {
        let expiry = (now_unix + self.nonce_lifetime_secs).min(u32::MAX as u64) as u32;
        let minting = self.nonce_keys.last().expect("at least one nonce key");
        let mut raw = [0u8; 4 + NONCE_MAC_LEN];
        raw[..4].copy_from_slice(&expiry.to_be_bytes());
        raw[4..].copy_from_slice(&nonce_mac(minting, expiry, scope));
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn check_nonce(&self, nonce: &str, now_unix: u64, client: SocketAddr) -> bool {
        self.nonce_expiry(nonce, client)
            .is_some_and(|expiry| expiry >= now_unix)
    }

    /// The expiry (unix seconds) of a nonce minted for `client` or for any address, by this
    /// node or one sharing a secret with it, stale or not; None for anything else.
    pub fn nonce_expiry(&self, nonce: &str, client: SocketAddr) -> Option<u64> {
        let mut raw = [0u8; 4 + NONCE_MAC_LEN];
        if nonce.len() != NONCE_LEN
            || URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) != Ok(raw.len())
        {
            return None;
        }
        let expiry = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let scopes = [NonceScope::Client(client), NonceScope::Anywhere];
        let minted = self.nonce_keys.iter().any(|key| {
            scopes.iter().any(|&scope| {
                // Constant time, so the MAC cannot be learned byte by byte.
                subtle::ConstantTimeEq::ct_eq(&raw[4..], &nonce_mac(key, expiry, scope)[..]).into()
            })
        });
        minted.then_some(expiry as u64)
    }
}

/// Whom a nonce is for: one client address, or anyone (a redirect's nonce).
#[derive(Clone, Copy)]
enum NonceScope {
    Client(SocketAddr),
    Anywhere,
}

fn nonce_mac(key: &[u8], expiry: u32, scope: NonceScope) -> [u8; NONCE_MAC_LEN] {
    let mut mac = HmacSha1::new_from_slice(key).expect("any key length");
    mac.update(&expiry.to_be_bytes());
    // The inputs differ in length (6 or 18 bytes against 3), so no address's MAC is a
    // portable nonce's.
    match scope {
        NonceScope::Client(client) => {
            match client.ip() {
                IpAddr::V4(ip) => mac.update(&ip.octets()),
                IpAddr::V6(ip) => mac.update(&ip.octets()),
            }
            mac.update(&client.port().to_be_bytes());
        }
        NonceScope::Anywhere => mac.update(b"any"),
    }
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; NONCE_MAC_LEN];
    out.copy_from_slice(&full[..NONCE_MAC_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            "turnpike",
            vec!["new-secret".into(), "old-secret".into()],
            &[],
            [7; 32],
            600,
        )
    }

    fn client() -> SocketAddr {
        "198.51.100.4:50000".parse().unwrap()
    }

    #[test]
    fn nonce_is_bound_to_client_address_and_expires() {
        let a = auth();
        let n = a.mint_nonce(1000, client());
        assert!(a.check_nonce(&n, 1000, client()));
        assert!(a.check_nonce(&n, 1600, client()));
        assert!(!a.check_nonce(&n, 1601, client()), "expired nonce");
        assert!(!a.check_nonce(&n, 1000, "198.51.100.4:50001".parse().unwrap()));
        assert_eq!(n.len(), 16, "small, so a 401 stays small");
        let mut raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        raw[..4].copy_from_slice(&99_999u32.to_be_bytes());
        let forged = URL_SAFE_NO_PAD.encode(raw);
        assert!(!a.check_nonce(&forged, 1000, client()), "extended expiry");
        assert!(!a.check_nonce("garbage", 1000, client()));
        assert!(!a.check_nonce(&"é".repeat(20), 1000, client()));
    }

    fn node(secrets: &[&str], process_key: u8) -> Authenticator {
        let secrets = secrets.iter().map(|s| s.to_string()).collect();
        Authenticator::new("turnpike", secrets, &[], [process_key; 32], 600)
    }

    #[test]
    fn nodes_sharing_a_secret_accept_each_others_nonces() {
        let (a, b) = (node(&["s1"], 1), node(&["s1"], 2));
        let n = a.mint_nonce(1000, client());
        assert!(b.check_nonce(&n, 1000, client()));
        assert!(!b.check_nonce(&n, 1000, "198.51.100.5:50000".parse().unwrap()));
        assert!(!node(&["other"], 1).check_nonce(&n, 1000, client()));
    }

    #[test]
    fn nonce_minted_by_the_oldest_secret_passes_a_node_still_without_the_new_one() {
        let rotating = node(&["new", "old"], 1);
        let n = rotating.mint_portable_nonce(1000);
        assert!(node(&["old"], 2).check_nonce(&n, 1000, client()));
        assert!(rotating.check_nonce(
            &node(&["new"], 3).mint_nonce(1000, client()),
            1000,
            client()
        ));
    }

    #[test]
    fn portable_nonce_is_valid_from_any_address_and_expires() {
        let a = node(&["s1"], 1);
        let n = a.mint_portable_nonce(1000);
        for c in ["198.51.100.4:50000", "203.0.113.7:1", "[2001:db8::1]:3478"] {
            assert!(a.check_nonce(&n, 1600, c.parse().unwrap()));
        }
        assert!(!a.check_nonce(&n, 1601, client()), "expired nonce");
        assert_ne!(n, a.mint_nonce(1000, client()));
    }

    #[test]
    fn static_users_only_nonces_are_this_process_alone() {
        let n = node(&[], 1).mint_nonce(1000, client());
        assert!(node(&[], 1).check_nonce(&n, 1000, client()));
        assert!(!node(&[], 2).check_nonce(&n, 1000, client()));
    }
}
