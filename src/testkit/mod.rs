//! One test kit, shared by the core's unit tests and proptests, the RFC 5769 vectors, the
//! integration tests in `tests/`, the fuzz crate and the load generator
//! (`examples/loadgen/`). Built for `cargo test` and behind the `testkit` feature (the
//! crate's dev-dependency on itself turns it on for `tests/` and `examples/`); never in
//! the server.
//!
//! - [`wire`]: what a client sends (requests signed or not, Send indications,
//!   ChannelData) and reads back (error code, relayed addresses, lifetime). Re-exported
//!   here.
//! - [`shell`]: a fake shell that carries out the core's commands without sockets, and
//!   frames Data indications as the real one does.
//! - [`harness`]: one core inside the fake shell, with time moved by hand and a client
//!   that signs like a real one.

pub mod harness;
pub mod shell;
pub mod wire;

pub use wire::*;

/// Where a test's time starts. The core never reads the clock; its tests take one starting
/// point here and from there move time by hand.
pub fn start_time() -> std::time::Instant {
    std::time::Instant::now()
}
