//! CreatePermission (RFC 8656 §9) and the peer checks ChannelBind shares.

use super::*;

impl Core {
    /// Family and policy checks for a peer (RFC 8656 §9.1; our peer policy). Permissions
    /// are per IP, so CreatePermission checks the IP; ChannelBind names the peer's port
    /// too, and the server's own services are refused there (`with_port`).
    pub(super) fn check_peer(
        &mut self,
        alloc_idx: usize,
        peer: &SocketAddr,
        with_port: bool,
    ) -> Result<(), Reject> {
        // Policy first, so every attempt at a forbidden address is counted as one.
        let permitted = if with_port {
            self.cfg.policy.permits_peer(*peer)
        } else {
            self.cfg.policy.permits(peer.ip())
        };
        if !permitted {
            self.counters.peer_denied += 1;
            tracing::debug!(peer = %peer, "peer address denied by policy");
            return Err(Reject::of(StunError::Forbidden));
        }
        if self.allocations[alloc_idx].relay_for(peer).is_none() {
            return Err(Reject::of(StunError::PeerAddressFamilyMismatch));
        }
        Ok(())
    }

    pub(super) fn create_permission(
        &mut self,
        ctx: &Ctx,
        r: Result<CreatePermissionRequest, Reject>,
    ) -> Result<(), Reject> {
        let idx = self.own_allocation(ctx)?;
        let now = ctx.at.now;
        let peers = r?.peers;
        // All or nothing (RFC 8656 §9.2): check every peer before installing any.
        for p in &peers {
            self.check_peer(idx, p, false)?;
        }
        let a = &mut self.allocations[idx];
        let new = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip()))
            .count();
        if a.permissions.len() + new > self.cfg.max_permissions {
            return Err(Reject::new(
                StunError::InsufficientCapacity,
                "Too many permissions",
            ));
        }
        for p in &peers {
            a.permit(now, p.ip());
        }
        self.schedule(idx, now + crate::relay::allocation::PERMISSION_LIFETIME);
        // A refreshed permission brings its channel back into the kernel.
        self.kernel_sync(idx, Some(now));
        self.respond_signed(ctx, vec![]);
        Ok(())
    }
}
