//! Shared by the integration tests, once: the turnpike binary as a child process
//! (`process`), scratch directories, free ports, turnpike in this process (`inproc`), a raw
//! STUN/TURN client and an echo peer (`client`), a call counting lost packets (`flow`), a
//! minimal HTTP client (`http`), TURN over TCP/TLS with a test certificate (`stream`), a
//! fleet of nodes sharing a redis-server in network namespaces (`fleet`, `netns`), the
//! deploy kit's files and the tools that check them (`deploy`), the Kubernetes manifests
//! and their init script (`kubernetes`), Ethernet frames with independently computed
//! checksums for the fast path (`frames`), network namespaces joined point to point by
//! veth pairs, routed (`veth`). Wire builders come from the crate's test kit
//! (`turnpike::testkit`).
#![allow(dead_code, unused_imports)]

mod client;
mod deploy;
mod fleet;
mod flow;
pub mod frames;
mod http;
mod inproc;
pub mod kubernetes;
pub mod netns;
mod ports;
mod process;
mod scratch;
mod stream;
pub mod veth;

pub use client::*;
pub use deploy::*;
pub use fleet::*;
pub use flow::*;
pub use http::*;
pub use inproc::*;
pub use ports::*;
pub use process::*;
pub use scratch::*;
pub use stream::*;
pub use turnpike::testkit::error_code;

pub const SECRET: &str = "integration-secret";

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
