//! The long-term credential mechanism (RFC 8489 §9.2) with TURN REST API credentials
//! (username `<unix-expiry>[:<user-id>]`, password `base64(HMAC-SHA1(secret, username))`),
//! static users, and stateless nonces. No clock reads: callers pass unix seconds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use stun::integrity::MessageIntegrity;

type HmacSha1 = Hmac<Sha1>;

/// Why a request failed authentication. The string is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no_integrity")]
    NoIntegrity,
    #[error("bad_integrity")]
    BadIntegrity,
    #[error("expired")]
    Expired,
    #[error("unknown_user")]
    UnknownUser,
    #[error("stale_nonce")]
    StaleNonce,
}

impl AuthError {
    pub fn label(self) -> &'static str {
        match self {
            AuthError::NoIntegrity => "no_integrity",
            AuthError::BadIntegrity => "bad_integrity",
            AuthError::Expired => "expired",
            AuthError::UnknownUser => "unknown_user",
            AuthError::StaleNonce => "stale_nonce",
        }
    }
}

/// A long-term credential key: MD5(username ":" realm ":" password).
pub type Key = Vec<u8>;

pub struct Authenticator {
    realm: String,
    secrets: Vec<String>,
    /// Static users, keyed by name, holding their precomputed long-term key.
    users: HashMap<String, Key>,
    nonce_key: [u8; 32],
    nonce_lifetime_secs: u64,
}

/// Length of the nonce MAC, hex-encoded twice over.
const NONCE_MAC_LEN: usize = 12;

impl Authenticator {
    pub fn new(
        realm: &str,
        secrets: Vec<String>,
        users: &[(String, String)],
        nonce_key: [u8; 32],
        nonce_lifetime_secs: u64,
    ) -> Self {
        let users = users
            .iter()
            .map(|(u, p)| (u.clone(), long_term_key(u, realm, p)))
            .collect();
        Authenticator {
            realm: realm.to_owned(),
            secrets,
            users,
            nonce_key,
            nonce_lifetime_secs,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A nonce that is valid for this client address until `now + nonce_lifetime`. It
    /// carries its own expiry and a MAC, so the server remembers nothing.
    pub fn mint_nonce(&self, now_unix: u64, client: SocketAddr) -> String {
        let expiry = now_unix + self.nonce_lifetime_secs;
        let mac = self.nonce_mac(expiry, client);
        let mut s = format!("{expiry:016x}");
        for b in mac {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn check_nonce(&self, nonce: &str, now_unix: u64, client: SocketAddr) -> bool {
        if nonce.len() != 16 + 2 * NONCE_MAC_LEN || !nonce.is_ascii() {
            return false;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return false;
        };
        if expiry < now_unix {
            return false;
        }
        let expected = self.nonce_mac(expiry, client);
        let mut got = [0u8; NONCE_MAC_LEN];
        for (i, b) in got.iter_mut().enumerate() {
            match u8::from_str_radix(&nonce[16 + 2 * i..18 + 2 * i], 16) {
                Ok(v) => *b = v,
                Err(_) => return false,
            }
        }
        // Constant time, so the MAC cannot be learned byte by byte.
        got.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn nonce_mac(&self, expiry: u64, client: SocketAddr) -> [u8; NONCE_MAC_LEN] {
        let mut mac = HmacSha1::new_from_slice(&self.nonce_key).expect("any key length");
        mac.update(&expiry.to_be_bytes());
        match client.ip() {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&client.port().to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; NONCE_MAC_LEN];
        out.copy_from_slice(&full[..NONCE_MAC_LEN]);
        out
    }

    /// The keys a request signed as `username` may have used: one per REST secret (so a
    /// secret can be rotated while old credentials still work), or the static user's key.
    pub fn keys_for(&self, username: &str, now_unix: u64) -> Result<Vec<Key>, AuthError> {
        if let Some(expiry) = rest_expiry(username)
            && !self.secrets.is_empty()
        {
            if expiry < now_unix {
                return Err(AuthError::Expired);
            }
            return Ok(self
                .secrets
                .iter()
                .map(|s| long_term_key(username, &self.realm, &rest_password(s, username)))
                .collect());
        }
        self.users
            .get(username)
            .map(|k| vec![k.clone()])
            .ok_or(AuthError::UnknownUser)
    }
}

/// The expiry of a REST API username, if it is one: the part before the first ':' must be
/// unix seconds.
pub fn rest_expiry(username: &str) -> Option<u64> {
    let ts = username.split(':').next()?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

/// The REST API password: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Mints a REST API credential for `user_id` valid for `ttl_secs` from `now_unix`.
pub fn mint_credential(
    secret: &str,
    user_id: &str,
    ttl_secs: u64,
    now_unix: u64,
) -> (String, String) {
    let username = if user_id.is_empty() {
        format!("{}", now_unix + ttl_secs)
    } else {
        format!("{}:{user_id}", now_unix + ttl_secs)
    };
    let password = rest_password(secret, &username);
    (username, password)
}

pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    MessageIntegrity::new_long_term_integrity(
        username.to_owned(),
        realm.to_owned(),
        password.to_owned(),
    )
    .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            "turnpike",
            vec!["new-secret".into(), "old-secret".into()],
            &[("alice".into(), "wonderland".into())],
            [7; 32],
            600,
        )
    }

    fn client() -> SocketAddr {
        "198.51.100.4:50000".parse().unwrap()
    }

    #[test]
    fn rest_password_matches_the_turn_rest_api_draft() {
        // Value computed independently: printf '1700000000:bob' | openssl dgst -sha1 -hmac s -binary | base64
        assert_eq!(
            rest_password("s", "1700000000:bob"),
            "ZZ/urSo/Efk5JiQ4mhPBdfwxuq8="
        );
    }

    #[test]
    fn every_configured_secret_yields_a_key_so_secrets_can_rotate() {
        let a = auth();
        let keys = a.keys_for("2000000000:bob", 1_900_000_000).unwrap();
        assert_eq!(keys.len(), 2);
        let old = long_term_key(
            "2000000000:bob",
            "turnpike",
            &rest_password("old-secret", "2000000000:bob"),
        );
        assert!(keys.contains(&old));
    }

    #[test]
    fn expired_rest_credential_is_refused() {
        let a = auth();
        assert_eq!(a.keys_for("100:bob", 101), Err(AuthError::Expired));
        assert_eq!(a.keys_for("100", 101), Err(AuthError::Expired));
        assert!(a.keys_for("100", 100).is_ok());
    }

    #[test]
    fn username_without_user_id_is_a_rest_credential() {
        assert_eq!(rest_expiry("1700000000"), Some(1_700_000_000));
        assert_eq!(rest_expiry("1700000000:a:b"), Some(1_700_000_000));
        assert_eq!(rest_expiry("alice"), None);
        assert_eq!(rest_expiry(":x"), None);
        assert_eq!(rest_expiry("-5:x"), None);
    }

    #[test]
    fn static_users_and_unknown_users() {
        let a = auth();
        assert_eq!(
            a.keys_for("alice", 0).unwrap(),
            vec![long_term_key("alice", "turnpike", "wonderland")]
        );
        assert_eq!(a.keys_for("mallory", 0), Err(AuthError::UnknownUser));
    }

    #[test]
    fn nonce_is_bound_to_client_address_and_expires() {
        let a = auth();
        let n = a.mint_nonce(1000, client());
        assert!(a.check_nonce(&n, 1000, client()));
        assert!(a.check_nonce(&n, 1600, client()));
        assert!(!a.check_nonce(&n, 1601, client()), "expired nonce");
        assert!(!a.check_nonce(&n, 1000, "198.51.100.4:50001".parse().unwrap()));
        let mut forged = n.clone();
        forged.replace_range(0..16, &format!("{:016x}", 99_999u64));
        assert!(!a.check_nonce(&forged, 1000, client()), "extended expiry");
        assert!(!a.check_nonce("garbage", 1000, client()));
        assert!(!a.check_nonce(&"é".repeat(20), 1000, client()));
    }

    #[test]
    fn minted_credential_verifies() {
        let (u, p) = mint_credential("new-secret", "carol", 3600, 1_000);
        assert_eq!(u, "4600:carol");
        let keys = auth().keys_for(&u, 1_000).unwrap();
        assert_eq!(keys[0], long_term_key(&u, "turnpike", &p));
    }
}
