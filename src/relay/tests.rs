//! Unit tests of the relay core, one per protocol rule, with injected time: no sockets.
//! They drive the core through the test kit's harness (`crate::testkit`).

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqfamily::RequestedAddressFamily;
use turn::proto::reqtrans::RequestedTransport;

use super::peer_policy::PeerPolicy;
use super::stats::{DropReason, EndReason};
use super::*;
use crate::auth::{AuthError, Authenticator, mint_credential, rest_password};
use crate::proto::{ATTR_ADDITIONAL_ADDRESS_FAMILY, ATTR_ADDRESS_ERROR_CODE, decode_xor_address};
pub use crate::testkit::harness::*;
pub use crate::testkit::shell::{framed, is_data_indication};
pub use crate::testkit::wire::*;

mod allocate;
mod auth;
mod binding;
mod channel;
mod expiry;
mod fastpath;
mod fleet_handover;
mod fleet_quota;
mod handover;
mod handover_format;
mod handover_shards;
mod lifecycle;
mod limits;
mod permission;
mod refresh;
mod revocation;
mod timers;
