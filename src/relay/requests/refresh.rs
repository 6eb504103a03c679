//! Refresh (RFC 8656 §8): extend or delete the caller's allocation.

use super::*;

impl Core {
    /// The caller's allocation, or 437 / 441.
    pub(super) fn own_allocation(&self, client: ClientId, username: &str) -> Result<usize, Reject> {
        let &idx = self
            .by_client
            .get(&client)
            .ok_or(Reject::of(StunError::AllocationMismatch))?;
        if self.allocations[idx].username != username {
            return Err(Reject::of(StunError::WrongCredentials));
        }
        Ok(idx)
    }

    pub(super) fn refresh(&mut self, ctx: &Ctx) -> Result<(), Reject> {
        let (now, client, msg, req) = (ctx.now, ctx.client, ctx.msg, ctx.req);
        let (username, key) = (ctx.who.username.as_str(), &ctx.who.key);
        let idx = self.own_allocation(client, username)?;
        let r = RefreshRequest::parse(msg);
        let zero = r.deletes();
        if let Some(family) = r.family {
            let a = &self.allocations[idx];
            let matches = match family {
                Ok(Family::V4) => a.relay_v4.is_some(),
                Ok(Family::V6) => a.relay_v6.is_some(),
                Err(()) => false,
            };
            if !matches {
                return Err(Reject::of(StunError::PeerAddressFamilyMismatch));
            }
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
        self.respond(client, req, vec![Box::new(Lifetime(lifetime))], Some(key));
        Ok(())
    }
}
