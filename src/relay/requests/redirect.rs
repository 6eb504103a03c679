//! Redirects (RFC 8489 §10, 300 Try Alternate): what a draining or full node answers a
//! new Allocate, before the challenge or after it.

use super::*;
use crate::relay::admission::{AlternateDomain, AlternateServer, Refusal};
use crate::relay::alternate::Alternate;

/// ALTERNATE-DOMAIN for an alternate reached over TLS: the name to verify its
/// certificate against.
fn alternate_domain(alt: &Alternate) -> Option<Box<dyn Setter>> {
    Some(Box::new(AlternateDomain(alt.domain.clone()?)))
}

impl Core {
    /// A first, unsigned Allocate at a node that redirects (draining or full, with an
    /// alternate) gets its 300 at once, before the 401 challenge, and carries no REALM or
    /// NONCE. libwebrtc keeps the REALM and NONCE a 300 gives it and signs its Allocate to
    /// the alternate with them: a nonce the alternate never minted earns a 438 there, which
    /// Chromium treats as fatal on Allocate. Redirected before it was challenged, a browser
    /// meets the alternate fresh (401, then its signed Allocate), whatever the alternate
    /// runs. RFC 8489 §10 lets a 300 go unauthenticated; the client learns nothing it
    /// could not get from the credential API, the node keeps no state, and the answer
    /// draws on the same per-source budget as a 401 (no more amplification). A signed
    /// Allocate that reaches a redirecting node still gets the signed 300 after
    /// authentication (`allocate`).
    pub(super) fn redirected_unsigned(
        &mut self,
        client: ClientId,
        req: RequestInfo,
        credentials: &Credentials,
    ) -> bool {
        if credentials.is_signed() || self.by_client.contains_key(&client) {
            return false;
        }
        let Some(refusal) = self.refuse_new_allocation(client) else {
            return false;
        };
        let Refusal::Redirect(alt) = &refusal else {
            return false;
        };
        let mut extra: Attrs = vec![Box::new(AlternateServer(alt.addr))];
        extra.extend(alternate_domain(alt));
        self.respond_error(client, req, refusal.reject(), None, extra);
        true
    }

    /// What a signed 300 carries: the alternate, and REALM with a NONCE that is valid from
    /// any address. libwebrtc signs its Allocate to the alternate with this REALM and
    /// NONCE and treats the 438 a nonce bound to this node's view of it would get there
    /// as fatal; an alternate sharing a REST secret accepts this one (`auth::nonce_keys`).
    pub(super) fn redirect_attrs(&self, alt: &Alternate, unix: u64) -> Attrs {
        let auth = &self.cfg.auth;
        let mut attrs: Attrs = vec![
            Box::new(AlternateServer(alt.addr)),
            Box::new(TextAttribute::new(ATTR_REALM, auth.realm().to_owned())),
            Box::new(TextAttribute::new(
                ATTR_NONCE,
                auth.mint_portable_nonce(unix),
            )),
        ];
        attrs.extend(alternate_domain(alt));
        attrs
    }
}
