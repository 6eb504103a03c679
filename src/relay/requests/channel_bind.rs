//! ChannelBind (RFC 8656 §12).

use super::*;

impl Core {
    pub(super) fn channel_bind(&mut self, ctx: &Ctx) -> Result<(), Reject> {
        let (now, client, msg, req) = (ctx.now, ctx.client, ctx.msg, ctx.req);
        let (username, key) = (ctx.who.username.as_str(), &ctx.who.key);
        let idx = self.own_allocation(client, username)?;
        let max = if self.cfg.strict_channel_numbers {
            MAX_CHANNEL
        } else {
            MAX_CHANNEL_RFC5766
        };
        let ChannelBindRequest { channel, peer } = ChannelBindRequest::parse(msg, max)?;
        self.check_peer(idx, &peer, true)?;
        let a = &mut self.allocations[idx];
        if !a.permissions.contains_key(&peer.ip())
            && a.permissions.len() >= self.cfg.max_permissions
        {
            return Err(Reject::new(
                StunError::InsufficientCapacity,
                "Too many permissions",
            ));
        }
        if !a.channels.contains_key(&channel) && a.channels.len() >= self.cfg.max_channels {
            return Err(Reject::new(
                StunError::InsufficientCapacity,
                "Too many channels",
            ));
        }
        if !a.bind_channel(now, channel, peer) {
            return Err(Reject::new(
                StunError::BadRequest,
                "Channel already bound differently",
            ));
        }
        // The permission it installs is due first.
        self.schedule(idx, now + crate::relay::allocation::PERMISSION_LIFETIME);
        self.respond(client, req, vec![], Some(key));
        Ok(())
    }
}
