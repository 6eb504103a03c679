//! `Secret`: a string from the config that must never reach a log.

use serde::Deserialize;

/// A secret string (REST secret, bearer token): deserializes like a string, never prints.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
