//! What the probe is asked to do: its credential, the user id it mints, its timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// Where the probe's credential comes from.
#[derive(Clone)]
pub enum Credentials {
    /// A TURN REST secret: the probe mints its own credentials (and can mint a long-lived
    /// one to tell clock skew from a wrong secret).
    Secret(String),
    Fixed {
        username: String,
        password: String,
    },
}

pub struct Options {
    pub credentials: Credentials,
    /// User id in minted usernames.
    pub user: String,
    /// Lifetime of the minted credential, as an app backend would issue it.
    pub ttl: Duration,
    /// Extra trusted CAs (PEM) for `turns:`.
    pub ca: Option<PathBuf>,
    /// How long to wait for each answer.
    pub timeout: Duration,
}
