//! The sans-IO relay core: every STUN/TURN decision, no sockets and no clock reads. The
//! shell feeds it packets with the current time and carries out what it decides.
//!
//! The drive loop (one per shard, in `runtime::shard`):
//!
//! 1. A client packet: `handle_client_packet(time, client, bytes)`. ChannelData and
//!    Send indications come back at once as `ClientAction::Forward { relay, peer, payload }`
//!    (a borrowed slice: the shell sends it from that relay socket) or `Drop(reason)`.
//!    Everything else is a STUN request; its answers and side effects are queued as
//!    `Command`s and the call returns `Handled`.
//! 2. A peer packet on a relay socket: `handle_peer_packet(time, relay, peer, payload)`
//!    answers `PeerAction::ChannelData` or `DataIndication` (the shell frames it in place
//!    with `proto`, no allocation) or `Drop`.
//! 3. After either, and after timers: drain `poll_command()` until it is empty. Commands
//!    send a STUN message, bind a relay socket (answer with `relay_bound`, which may queue
//!    further commands: keep draining), release one, add or remove a channel binding in
//!    the kernel fast path (answer a removal with `fastpath_removed` and its final
//!    counters), or report an ended session.
//! 4. Timers: sleep until `poll_timeout()`, then call `handle_timeout(time)`; it expires
//!    only what is due (a deadline heap), never walks every allocation.
//! 5. A TCP/TLS connection closed: `client_disconnected` (its allocation ends with it).
//! 6. With the kernel fast path: before publishing counters or describing sessions, pass
//!    each installed route's kernel totals to `fastpath_traffic`.
//!
//! Every input carries one `Time` (the shell's monotonic clock and its wall clock in
//! seconds, read once per event); the core never reads a clock, so tests move time by
//! hand.
//!
//! This file only declares the parts and re-exports the vocabulary (`Core` in
//! `core_state`, `ClientId`, `Time`, `Command`, ...), each in its own file: the parts import
//! those files, never this one, so no part imports a file that imports it back.

mod action;
mod address_family;
pub mod admission;
pub mod allocation;
mod alternate;
pub mod bandwidth;
mod client;
mod command;
mod core_config;
mod core_state;
mod fast_map;
mod fastpath_binding;
pub mod handover;
mod kernel_bindings;
mod kernel_route;
mod lifecycle;
mod path;
pub mod peer_policy;
pub mod ports;
pub mod quota;
pub mod rate_limit;
mod requests;
pub mod revocation;
pub mod stats;
mod time;

pub use action::{ClientAction, PeerAction};
pub use address_family::AddrFamily;
pub use alternate::Alternate;
pub use client::{ClientId, Transport};
pub use command::{Command, FleetSlot, SessionSummary};
pub use core_config::{CoreConfig, RelayFamily};
pub use core_state::Core;
pub use fast_map::FastMap;
pub use kernel_route::KernelRoute;
pub use time::Time;

#[cfg(test)]
mod fastpath_proptests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
