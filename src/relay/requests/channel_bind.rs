//! ChannelBind (RFC 8656 §12).

use super::*;

impl Core {
    pub(super) fn channel_bind(
        &mut self,
        ctx: &Ctx,
        r: Result<ChannelBindRequest, Reject>,
    ) -> Result<(), Reject> {
        let idx = self.own_allocation(ctx)?;
        let now = ctx.at.now;
        let ChannelBindRequest { channel, peer } = r?;
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
        self.kernel_sync(idx, Some(now));
        self.respond_signed(ctx, vec![]);
        Ok(())
    }
}
