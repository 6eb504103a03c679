//! Refresh (RFC 8656 §8): extend or delete the caller's allocation.

use super::*;

impl Core {
    /// The caller's allocation, or 437 / 441.
    pub(super) fn own_allocation(&self, ctx: &Ctx) -> Result<usize, Reject> {
        let &idx = self
            .by_client
            .get(&ctx.at.client)
            .ok_or(Reject::of(StunError::AllocationMismatch))?;
        if self.allocations[idx].username != ctx.who.username {
            return Err(Reject::of(StunError::WrongCredentials));
        }
        Ok(idx)
    }

    pub(super) fn refresh(&mut self, ctx: &Ctx, r: RefreshRequest) -> Result<(), Reject> {
        let idx = self.own_allocation(ctx)?;
        let now = ctx.at.now;
        let zero = r.deletes();
        let a = &self.allocations[idx];
        let family_matches = match r.family {
            RequestedFamily::Absent => true,
            RequestedFamily::Asked(Family::V4) => a.relay_v4.is_some(),
            RequestedFamily::Asked(Family::V6) => a.relay_v6.is_some(),
            RequestedFamily::Unsupported => false,
        };
        if !family_matches {
            return Err(Reject::of(StunError::PeerAddressFamilyMismatch));
        }
        let lifetime = if zero {
            self.remove_allocation(now, idx, EndReason::Deleted);
            Duration::ZERO
        } else {
            let l = self.granted_lifetime(r.lifetime);
            self.allocations[idx].expires = now + l;
            self.schedule(idx, now + l);
            l
        };
        self.respond_signed(ctx, vec![Box::new(Lifetime(lifetime))]);
        Ok(())
    }
}
