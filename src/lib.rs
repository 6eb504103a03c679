//! turnpike: a TURN/STUN relay server for WebRTC.
//!
//! Where things live:
//! - [`relay`]: the sans-IO core. Every STUN/TURN decision (allocations, permissions,
//!   channels, quotas, peer policy, timers) with no sockets and no clock reads: the shell
//!   passes packets and the time in, and carries out what comes back. Its module docs
//!   describe the drive loop. Unit tests live in `src/relay/tests*`, named after the rule
//!   they check.
//! - [`proto`]: wire formats. STUN messages go through webrtc-rs `stun` and the
//!   `turn::proto` attribute types; ChannelData and Send/Data indications are read and
//!   framed by hand, in place, because they are the relay path.
//! - [`auth`]: long-term credentials, TURN REST usernames, stateless nonces and the
//!   credential-expiry policy.
//! - [`runtime`]: the I/O shell. One thread per shard runs a mio loop over its listener,
//!   relay sockets and TCP/TLS connections and owns its core; tokio runs signals and HTTP.
//! - [`config`]: `turnserver.toml` into typed values (unknown keys are errors).
//! - [`metrics`], [`http`]: Prometheus metrics, health, the credential and sessions APIs.
//! - `testkit` (tests and the `testkit` feature only): the one test kit, wire builders, a
//!   fake shell and the core harness, for the tests, the fuzz crate and the load generator.
//! - [`probe`]: `turnpike probe`, a client of the public protocol that names what is wrong
//!   with a deployment.
pub mod auth;
pub mod config;
pub mod http;
pub mod import_coturn;
pub mod metrics;
pub mod probe;
pub mod proto;
pub mod relay;
pub mod runtime;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
