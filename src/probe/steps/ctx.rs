//! What every step of one URI's probe reads: the URI, the options, the trusted roots and
//! the server address DNS gave.

use std::net::SocketAddr;

use crate::probe::options::Options;
use crate::probe::uri::TurnUri;

/// Per URI: everything learned so far that later steps need.
pub(super) struct Ctx<'a> {
    pub(super) uri: &'a TurnUri,
    pub(super) opts: &'a Options,
    pub(super) roots: &'a rustls::RootCertStore,
    pub(super) server: SocketAddr,
}
