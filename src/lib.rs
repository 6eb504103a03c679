//! turnpike: a TURN/STUN relay server.
pub mod auth;
pub mod config;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod proto;
pub mod relay;
pub mod runtime;
