//! Call outcomes reported by browsers (client/turnpike.js, `POST /api/v1/reports`): what
//! share of calls needs the relay and how many fail, including the calls that never
//! reached it. A report is signed with the TURN credential its connection used, so only
//! holders of a live credential can send one; every label value comes from a fixed list
//! (anything else is `other`), so no client can grow the metric's label set.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha1::Sha1;

use crate::auth::{rest_expiry, rest_password};
pub use crate::metrics::client::{Browser, Outcome, Path, Refusal};
use crate::relay::rate_limit::PrefixLimiter;

/// The largest body accepted: a report is a few hundred bytes.
pub const MAX_BODY: usize = 4096;
/// Reports per second per user id (twice that as a burst): one per connection, and a
/// mesh call of a few peers makes a few connections at once.
const PER_USER_RATE: u32 = 2;
/// Reports per second per source /24 or /56 (twice that as a burst): an office behind
/// one NAT address reports for all its users.
const PER_SOURCE_RATE: u32 = 20;

/// The body as the module sends it; unknown fields are ignored (newer modules).
#[derive(Deserialize)]
struct Body {
    username: String,
    outcome: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    browser: String,
    connect_ms: Option<f64>,
    #[serde(default)]
    gathered: Vec<String>,
}

/// An accepted report, its labels from the fixed lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub username: String,
    pub outcome: Outcome,
    pub path: Path,
    pub browser: Browser,
    /// Seconds to connect, for connected ones.
    pub connect_secs: Option<f64>,
    /// Candidate types gathered, as path labels (at most the list's length, no repeats).
    pub gathered: Vec<Path>,
}

/// Who may sign: the REST secrets in force and the static users' passwords.
pub struct Signers<'a> {
    pub secrets: &'a [String],
    pub users: &'a [(String, String)],
    /// A REST credential further ahead than this is refused, as on the TURN side.
    pub max_ttl_secs: u64,
}

impl Signers<'_> {
    /// The passwords `username` may sign with, if its credential is live now.
    fn passwords(&self, username: &str, now_unix: u64) -> Result<Vec<String>, Refusal> {
        if let Some(expiry) = rest_expiry(username)
            && !self.secrets.is_empty()
        {
            if expiry < now_unix || expiry > now_unix.saturating_add(self.max_ttl_secs) {
                return Err(Refusal::Expired);
            }
            return Ok(self
                .secrets
                .iter()
                .map(|s| rest_password(s, username))
                .collect());
        }
        self.users
            .iter()
            .find(|(u, _)| u == username)
            .map(|(_, p)| vec![p.clone()])
            .ok_or(Refusal::UnknownUser)
    }
}

/// Checks one report: size, signature, liveness of its credential, then the rate limits.
pub struct Reports {
    per_user: Mutex<PrefixLimiter>,
    per_source: Mutex<PrefixLimiter>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            per_user: Mutex::new(PrefixLimiter::new(PER_USER_RATE)),
            per_source: Mutex::new(PrefixLimiter::new(PER_SOURCE_RATE)),
        }
    }
}

impl Reports {
    /// The report in `body`, signed by `signature` (base64 HMAC-SHA1 of the body keyed
    /// with the credential's password), or why it is refused. The source is limited
    /// before any HMAC work, the user once the signature holds.
    pub fn check(
        &self,
        body: &[u8],
        signature: Option<&str>,
        signers: &Signers,
        source: IpAddr,
        now: Instant,
        now_unix: u64,
    ) -> Result<Report, Refusal> {
        if body.len() > MAX_BODY {
            return Err(Refusal::TooLarge);
        }
        let signature = signature.ok_or(Refusal::Unsigned)?;
        if !lock(&self.per_source).allow(now, source) {
            return Err(Refusal::RateLimited);
        }
        let b: Body = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
        let passwords = signers.passwords(&b.username, now_unix)?;
        if !passwords.iter().any(|p| signed_by(body, signature, p)) {
            return Err(Refusal::BadSignature);
        }
        if !lock(&self.per_user).allow_key(now, crate::auth::user_id(&b.username)) {
            return Err(Refusal::RateLimited);
        }
        let mut gathered: Vec<Path> = b.gathered.iter().map(|g| Path::parse(g)).collect();
        gathered.sort_by_key(|p| *p as usize);
        gathered.dedup();
        let outcome = Outcome::parse(&b.outcome);
        Ok(Report {
            username: b.username,
            outcome,
            path: Path::parse(&b.path),
            browser: Browser::parse(&b.browser),
            connect_secs: b
                .connect_ms
                .filter(|ms| outcome == Outcome::Connected && ms.is_finite() && *ms >= 0.0)
                .map(|ms| ms / 1000.0),
            gathered,
        })
    }
}

fn lock(m: &Mutex<PrefixLimiter>) -> std::sync::MutexGuard<'_, PrefixLimiter> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `signature` is base64(HMAC-SHA1(password, body)), compared in constant time.
fn signed_by(body: &[u8], signature: &str, password: &str) -> bool {
    let Ok(given) = BASE64.decode(signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha1>::new_from_slice(password.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// base64(HMAC-SHA1(password, body)): what client/turnpike.js sends (tests sign with it).
pub fn sign(body: &[u8], password: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(password.as_bytes()).expect("any key length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signers() -> (Vec<String>, Vec<(String, String)>) {
        (
            vec!["new".into(), "old".into()],
            vec![("ops:alice".into(), "pw".into())],
        )
    }

    fn body(username: &str, outcome: &str) -> Vec<u8> {
        format!(
            r#"{{"v":1,"username":"{username}","outcome":"{outcome}","path":"relay_udp","browser":"firefox","connect_ms":420,"gathered":["host","relay_udp","host","bogus"]}}"#
        )
        .into_bytes()
    }

    fn check(r: &Reports, body: &[u8], sig: Option<&str>) -> Result<Report, Refusal> {
        let (secrets, users) = signers();
        let s = Signers {
            secrets: &secrets,
            users: &users,
            max_ttl_secs: 86_400,
        };
        let now = crate::runtime::clock::now();
        r.check(body, sig, &s, "198.51.100.7".parse().unwrap(), now, NOW)
    }

    #[test]
    fn report_signed_with_a_live_rest_credential_is_accepted_with_its_labels() {
        let u = format!("{}:bob", NOW + 600);
        let b = body(&u, "connected");
        // Signed with the older secret's password: rotation keeps working.
        let r = check(
            &Reports::default(),
            &b,
            Some(&sign(&b, &rest_password("old", &u))),
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::Connected);
        assert_eq!(r.path, Path::RelayUdp);
        assert_eq!(r.browser, Browser::Firefox);
        assert_eq!(r.connect_secs, Some(0.42));
        assert_eq!(r.gathered, vec![Path::Host, Path::RelayUdp, Path::Other]);
    }

    #[test]
    fn static_user_signs_with_its_password() {
        let b = body("ops:alice", "failed");
        let r = check(&Reports::default(), &b, Some(&sign(&b, "pw"))).unwrap();
        assert_eq!((r.outcome, r.connect_secs), (Outcome::Failed, None));
    }

    #[test]
    fn unsigned_wrongly_signed_expired_and_unknown_reports_are_refused() {
        let r = Reports::default();
        let u = format!("{}:bob", NOW + 600);
        let b = body(&u, "connected");
        assert_eq!(check(&r, &b, None), Err(Refusal::Unsigned));
        assert_eq!(
            check(&r, &b, Some(&sign(&b, "guess"))),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(&r, &b, Some("not base64!")),
            Err(Refusal::BadSignature)
        );
        // The signature covers the body: a changed outcome does not verify.
        let sig = sign(&b, &rest_password("new", &u));
        assert_eq!(
            check(&r, &body(&u, "failed"), Some(&sig)),
            Err(Refusal::BadSignature)
        );
        let old = format!("{}:bob", NOW - 1);
        let b = body(&old, "connected");
        let sig = sign(&b, &rest_password("new", &old));
        assert_eq!(check(&r, &b, Some(&sig)), Err(Refusal::Expired));
        let b = body("mallory", "connected");
        assert_eq!(
            check(&r, &b, Some(&sign(&b, "x"))),
            Err(Refusal::UnknownUser)
        );
    }

    #[test]
    fn oversized_and_malformed_bodies_are_refused() {
        let r = Reports::default();
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(check(&r, &big, Some("x")), Err(Refusal::TooLarge));
        assert_eq!(check(&r, b"{", Some("x")), Err(Refusal::Malformed));
        assert_eq!(
            check(&r, br#"{"outcome":"connected"}"#, Some("x")),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn unknown_label_values_are_other() {
        assert_eq!(Outcome::parse("exploded"), Outcome::Other);
        assert_eq!(Path::parse("relay_quic"), Path::Other);
        assert_eq!(Browser::parse("netscape"), Browser::Other);
        for p in Path::ALL {
            assert_eq!(Path::parse(p.label()), p);
        }
    }

    #[test]
    fn one_user_is_limited_to_its_burst_of_reports() {
        let r = Reports::default();
        let u = format!("{}:bob", NOW + 600);
        let b = body(&u, "connected");
        let sig = sign(&b, &rest_password("new", &u));
        let accepted = (0..10)
            .filter(|_| check(&r, &b, Some(&sig)).is_ok())
            .count();
        assert_eq!(accepted, 2 * PER_USER_RATE as usize);
        assert_eq!(check(&r, &b, Some(&sig)), Err(Refusal::RateLimited));
    }

    #[test]
    fn one_source_is_limited_before_any_signature_work() {
        let r = Reports::default();
        let b = body("mallory", "connected");
        let refused: Vec<_> = (0..100).map(|_| check(&r, &b, Some("x"))).collect();
        let limited = refused
            .iter()
            .filter(|x| **x == Err(Refusal::RateLimited))
            .count();
        assert_eq!(limited, 100 - 2 * PER_SOURCE_RATE as usize);
    }
}
