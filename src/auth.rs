//! The long-term credential mechanism (RFC 8489 §9.2) with TURN REST API credentials
//! (username `<unix-expiry>[:<user-id>]`, password `base64(HMAC-SHA1(secret, username))`),
//! static users, and stateless nonces. No clock reads: callers pass unix seconds.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use stun::integrity::MessageIntegrity;

type HmacSha1 = Hmac<Sha1>;

crate::label_table::label_table! {
    /// Why a request failed authentication. `label()` is the metric label and the text.
    pub enum AuthError {
        NoIntegrity = "no_integrity",
        BadIntegrity = "bad_integrity",
        Expired = "expired",
        UnknownUser = "unknown_user",
        StaleNonce = "stale_nonce",
        /// A REST credential whose expiry lies further ahead than `auth.max_credential_ttl`.
        TtlTooLong = "ttl_too_long",
        /// Its user id or username is revoked (`[cluster]` revocations).
        Revoked = "revoked",
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for AuthError {}

/// A long-term credential key: MD5(username ":" realm ":" password).
pub type Key = Vec<u8>;

mod nonce;

/// What happens to an allocation once the REST credential that created it expires.
/// Browsers never fetch a new credential mid-call, so by default the allocation's own
/// 5-tuple may keep signing with it, up to `max_session` after the allocation was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Refuse every request signed with an expired credential and end allocations when
    /// their credential expires.
    pub strict: bool,
    /// How long after its creation an allocation may outlive its credential.
    pub max_session_secs: u64,
    /// REST credentials expiring further ahead than this are refused (a year-9999 expiry
    /// is a credential that can never be revoked by waiting).
    pub max_ttl_secs: u64,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            strict: false,
            max_session_secs: 12 * 3600,
            max_ttl_secs: 30 * 86_400,
        }
    }
}

/// The keys a username may sign with, and when its credential expires (REST only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub keys: Vec<Key>,
    /// Unix seconds; None for static users, whose credentials do not expire.
    pub expiry: Option<u64>,
}

impl Credential {
    pub fn expired(&self, now_unix: u64) -> bool {
        self.expiry.is_some_and(|e| e < now_unix)
    }
}

pub struct Authenticator {
    realm: String,
    secrets: Vec<String>,
    /// Static users, keyed by name, holding their precomputed long-term key.
    users: HashMap<String, Key>,
    /// The keys nonces are checked with; the last one mints (see `nonce_keys`).
    nonce_keys: Vec<Key>,
    nonce_lifetime_secs: u64,
    expiry: ExpiryPolicy,
}

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
            nonce_keys: Self::nonce_keys(&secrets, nonce_key),
            secrets,
            users,
            nonce_lifetime_secs,
            expiry: ExpiryPolicy::default(),
        }
    }

    pub fn with_expiry_policy(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    pub fn expiry_policy(&self) -> ExpiryPolicy {
        self.expiry
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The keys a request signed as `username` may have used: one per REST secret (so a
    /// secret can be rotated while old credentials still work), or the static user's key.
    /// An expired REST credential still yields its keys: whether it may be used on an
    /// existing allocation is the core's decision (`ExpiryPolicy`).
    pub fn keys_for(&self, username: &str, now_unix: u64) -> Result<Credential, AuthError> {
        if let Some(expiry) = rest_expiry(username)
            && !self.secrets.is_empty()
        {
            if expiry > now_unix.saturating_add(self.expiry.max_ttl_secs) {
                return Err(AuthError::TtlTooLong);
            }
            let keys = self
                .secrets
                .iter()
                .map(|s| long_term_key(username, &self.realm, &rest_password(s, username)))
                .collect();
            return Ok(Credential {
                keys,
                expiry: Some(expiry),
            });
        }
        self.users
            .get(username)
            .map(|k| Credential {
                keys: vec![k.clone()],
                expiry: None,
            })
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

/// The user id of `username`: the one key that quotas, the per-user bandwidth cap, the
/// session log and the sessions API agree on, so every credential minted for one user counts
/// and is ended as that user.
///
/// - A REST name `<expiry>:<id>` (expiry as `rest_expiry` reads it) yields `<id>`, colons
///   and all: `1700000000:ops:alice` is `ops:alice`.
/// - Anything else is its own id, whole: static names (`ops:alice` stays `ops:alice`), a bare
///   `<expiry>` with no colon, and the empty username.
/// - An empty id (`1700000000:`) is no id: the whole name is kept, so such credentials neither
///   share one count with each other nor with a user named "".
pub fn user_id(username: &str) -> &str {
    match username.split_once(':') {
        Some((_, id)) if !id.is_empty() && rest_expiry(username).is_some() => id,
        _ => username,
    }
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
        let keys = a.keys_for("2000000000:bob", 1_999_000_000).unwrap().keys;
        assert_eq!(keys.len(), 2);
        let old = long_term_key(
            "2000000000:bob",
            "turnpike",
            &rest_password("old-secret", "2000000000:bob"),
        );
        assert!(keys.contains(&old));
    }

    #[test]
    fn expired_rest_credential_is_flagged_for_the_core_to_judge() {
        let a = auth();
        assert!(a.keys_for("100:bob", 101).unwrap().expired(101));
        assert!(a.keys_for("100", 101).unwrap().expired(101));
        assert!(!a.keys_for("100", 100).unwrap().expired(100));
        assert!(!a.keys_for("alice", 0).unwrap().expired(u64::MAX));
    }

    #[test]
    fn rest_expiry_beyond_max_credential_ttl_is_refused() {
        let a = auth().with_expiry_policy(ExpiryPolicy {
            max_ttl_secs: 3600,
            ..Default::default()
        });
        assert!(a.keys_for("4600:bob", 1000).is_ok());
        assert_eq!(a.keys_for("4601:bob", 1000), Err(AuthError::TtlTooLong));
        // Year 9999 and 2^63: the classic never-expiring credentials.
        assert_eq!(
            a.keys_for("253402300799:bob", 1000),
            Err(AuthError::TtlTooLong)
        );
        assert_eq!(
            a.keys_for("9223372036854775808:bob", 1000),
            Err(AuthError::TtlTooLong)
        );
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
    fn rest_name_yields_the_id_after_its_expiry() {
        assert_eq!(user_id("1700000000:alice"), "alice");
    }

    #[test]
    fn static_name_with_a_colon_is_its_own_user_id() {
        assert_eq!(user_id("ops:alice"), "ops:alice");
        assert_eq!(user_id("-5:alice"), "-5:alice");
        assert_eq!(user_id(":alice"), ":alice");
    }

    #[test]
    fn rest_id_keeps_its_own_colons() {
        assert_eq!(user_id("1700000000:ops:alice"), "ops:alice");
    }

    #[test]
    fn bare_expiry_is_its_own_user_id() {
        assert_eq!(user_id("1700000000"), "1700000000");
    }

    #[test]
    fn empty_id_keeps_the_whole_name_so_it_merges_with_no_one() {
        assert_eq!(user_id("1700000000:"), "1700000000:");
        assert_ne!(user_id("1700000000:"), user_id("1700000001:"));
        assert_ne!(user_id("1700000000:"), user_id(""));
    }

    #[test]
    fn empty_username_is_the_empty_user_id() {
        assert_eq!(user_id(""), "");
    }

    #[test]
    fn static_users_and_unknown_users() {
        let a = auth();
        assert_eq!(
            a.keys_for("alice", 0).unwrap().keys,
            vec![long_term_key("alice", "turnpike", "wonderland")]
        );
        assert_eq!(a.keys_for("mallory", 0), Err(AuthError::UnknownUser));
    }

    #[test]
    fn minted_credential_verifies() {
        let (u, p) = mint_credential("new-secret", "carol", 3600, 1_000);
        assert_eq!(u, "4600:carol");
        let keys = auth().keys_for(&u, 1_000).unwrap().keys;
        assert_eq!(keys[0], long_term_key(&u, "turnpike", &p));
    }
}
