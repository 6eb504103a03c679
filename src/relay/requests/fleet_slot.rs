//! Fleet-wide per-user quota (`[cluster]`): between its local quota check and its relay
//! sockets, an Allocate waits for the fleet's count of the user's allocations. The core
//! asks through a command (`ClaimFleetSlot`) and the shell answers later
//! (`fleet_slot_answered`); nothing here waits, and a slot granted is given back with
//! `ReleaseFleetSlot` when its Allocate fails or its allocation ends. The slot is named by
//! the Allocate's token, which becomes the allocation's serial.

use super::*;
use crate::relay::command::FleetSlot;

impl Core {
    /// The pending Allocate `token` asks the fleet for a slot of `username`'s user id.
    pub(super) fn claim_fleet_slot(&mut self, token: u64, username: &str) {
        self.commands.push_back(Command::ClaimFleetSlot {
            token,
            user: user_id(username).to_owned(),
        });
    }

    /// The shell's answer to `Command::ClaimFleetSlot`. An answer for an Allocate that is
    /// gone (its client left) gives a granted slot straight back.
    pub fn fleet_slot_answered(&mut self, time: Time, token: u64, answer: FleetSlot) {
        let Some(p) = self.pending.get_mut(&token) else {
            if answer == FleetSlot::Granted {
                self.commands.push_back(Command::ReleaseFleetSlot { token });
            }
            return;
        };
        match answer {
            FleetSlot::Granted => {
                p.fleet_slot = true;
                self.request_next_bind(time.mono, token);
            }
            FleetSlot::Full => {
                self.counters.quota_rejections += 1;
                self.refuse_pending(token, Reject::of(StunError::AllocationQuotaReached));
            }
            FleetSlot::Unavailable => self.refuse_pending(
                token,
                Reject::new(StunError::InsufficientCapacity, "Fleet Quota Unavailable"),
            ),
        }
    }
}
