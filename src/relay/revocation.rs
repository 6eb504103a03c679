//! Revoked users and usernames (`[cluster]` revocations): the small set the fleet task
//! pushes to every shard, checked in authentication against the request's unix time. An
//! entry stops counting at its `until` by itself, so a node cut off from Redis keeps
//! enforcing what it knew until it expires, and no request ever waits on the network.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::auth::user_id;

/// Whom a revocation covers: a user id (every credential minted for it, REST or static
/// username alike) or one exact username.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    User(String),
    Username(String),
}

impl Subject {
    /// `user:<id>` or `username:<name>`: its member name in Redis.
    pub fn key(&self) -> String {
        match self {
            Subject::User(u) => format!("user:{u}"),
            Subject::Username(u) => format!("username:{u}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Subject> {
        match key.split_once(':')? {
            ("user", u) => Some(Subject::User(u.into())),
            ("username", u) => Some(Subject::Username(u.into())),
            _ => None,
        }
    }
}

/// One revocation: `subject` is refused until `until` (unix seconds, exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(flatten)]
    pub subject: Subject,
    pub until: u64,
}

/// The revocations a shard enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    users: HashMap<String, u64>,
    usernames: HashMap<String, u64>,
}

impl Revocations {
    pub fn new(list: &[Revocation]) -> Revocations {
        let mut r = Revocations::default();
        for v in list {
            let (map, name) = match &v.subject {
                Subject::User(u) => (&mut r.users, u),
                Subject::Username(u) => (&mut r.usernames, u),
            };
            let until = map.entry(name.clone()).or_insert(0);
            *until = (*until).max(v.until);
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.usernames.is_empty()
    }

    /// Whether `username` (or its user id) is revoked at `unix`.
    pub fn revokes(&self, username: &str, unix: u64) -> bool {
        if self.is_empty() {
            return false;
        }
        let live = |until: Option<&u64>| until.is_some_and(|&u| unix < u);
        live(self.usernames.get(username)) || live(self.users.get(user_id(username)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_revocation_covers_every_credential_of_that_user_until_it_ends() {
        let r = Revocations::new(&[Revocation {
            subject: Subject::User("bob".into()),
            until: 1000,
        }]);
        assert!(r.revokes("2000:bob", 999));
        assert!(r.revokes("bob", 999));
        assert!(!r.revokes("2000:alice", 999));
        assert!(!r.revokes("2000:bob", 1000));
    }

    #[test]
    fn a_username_revocation_covers_that_exact_name_only() {
        let r = Revocations::new(&[Revocation {
            subject: Subject::Username("2000:bob".into()),
            until: 1000,
        }]);
        assert!(r.revokes("2000:bob", 10));
        assert!(!r.revokes("2001:bob", 10));
    }

    #[test]
    fn revocation_json_names_its_subject_kind() {
        let v = Revocation {
            subject: Subject::User("bob".into()),
            until: 7,
        };
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"{"user":"bob","until":7}"#);
        assert_eq!(serde_json::from_str::<Revocation>(&j).unwrap(), v);
        assert_eq!(Subject::from_key(&v.subject.key()), Some(v.subject));
    }
}
