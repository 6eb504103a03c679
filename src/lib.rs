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
//! - [`config`]: `turnserver.toml` into typed values (unknown keys are errors).
//! - [`settings`]: what the config means on this host (port slices, relay addresses,
//!   secrets in force, URIs, TLS), computed once at start and at reload; every part reads it.
//! - [`runtime`]: the I/O shell. A [`runtime::Node`] is the running process: one thread
//!   per shard runs a mio loop over its listeners, relay sockets and TCP/TLS connections
//!   and owns its core.
//! - [`fastpath`]: the kernel fast path's loader: an XDP (or TC) program, built from
//!   `bpf/fastpath.bpf.c`, that relays UDP ChannelData for the channel bindings the shell
//!   installs in its maps.
//! - [`metrics`], [`http`]: Prometheus metrics, health, the credential and sessions APIs.
//! - [`app`]: the service's life: start, signals (tokio), reload, drain, systemd
//!   notifications, startup checks, logging.
//! - `testkit` (tests and the `testkit` feature only): the one test kit, wire builders, a
//!   fake shell and the core harness, for the tests, the fuzz crate and the load generator.
//! - `label_table`: the macro that declares every STUN error code and metric label enum
//!   from one table.
//!
//! Imports flow one way: label_table <- proto <- auth <- relay <- (config, settings,
//! metrics, fastpath) <- runtime <- http <- app (`scripts/check_imports.py` checks it, and
//! that no two files import each other).
//! - [`probe`]: `turnpike probe`, a client of the public protocol that names what is wrong
//!   with a deployment.
pub mod app;
pub mod auth;
pub mod config;
pub mod fastpath;
pub mod fleet;
pub mod http;
pub mod import_coturn;
mod label_table;
pub mod metrics;
pub mod probe;
pub mod proto;
pub mod relay;
pub mod runtime;
pub mod settings;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
