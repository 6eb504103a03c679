//! Authentication of a request (RFC 8489 §9.2.4) and the credential-expiry policy.

use super::*;

impl Core {
    /// The long-term credential check (RFC 8489 §9.2.4) and the credential-expiry policy.
    /// Sends the 400/401/438 itself and returns None on failure. Nothing is stored for a
    /// client that fails.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        msg: &mut Message,
        req: RequestInfo,
        unix: u64,
        client: ClientId,
    ) -> Option<Authenticated> {
        if !msg.contains(ATTR_MESSAGE_INTEGRITY) {
            self.auth_failure(client, req, unix, AuthError::NoIntegrity);
            return None;
        }
        let (username, nonce) = self.credential_attributes(msg, req, client)?;
        let nonce_expiry = self.cfg.auth.nonce_expiry(&nonce, client.addr);
        let nonce_ok = nonce_expiry.is_some_and(|e| e >= unix);
        // A stale nonce is answered before any HMAC work, except for a deletion: a
        // Refresh(0) signed with the allocation's key is honoured, since answering 438 to a
        // client that is leaving only makes its allocation linger (browsers do not retry).
        // Its nonce must still be one we minted for this client while this allocation
        // lived, so a Refresh(0) recorded from an earlier allocation cannot be replayed.
        if !nonce_ok && !self.is_own_deletion(msg, req, client, &username, nonce_expiry) {
            self.auth_failure(client, req, unix, AuthError::StaleNonce);
            return None;
        }
        let cred = match self.cfg.auth.keys_for(&username, unix) {
            Ok(c) => c,
            Err(e) => {
                self.auth_failure(client, req, unix, e);
                return None;
            }
        };
        let Some(key) = cred
            .keys
            .into_iter()
            .find(|k| MessageIntegrity(k.clone()).check(msg).is_ok())
        else {
            let e = if nonce_ok {
                AuthError::BadIntegrity
            } else {
                AuthError::StaleNonce
            };
            self.auth_failure(client, req, unix, e);
            return None;
        };
        if cred.expiry.is_some_and(|e| e < unix)
            && !self.may_outlive_credential(now, req, client, &username)
        {
            self.auth_failure(client, req, unix, AuthError::Expired);
            return None;
        }
        Some(Authenticated {
            username,
            key,
            expiry: cred.expiry,
        })
    }

    /// USERNAME and NONCE of a signed request (REALM must be there too), or the 400 sent.
    fn credential_attributes(
        &mut self,
        msg: &Message,
        req: RequestInfo,
        client: ClientId,
    ) -> Option<(String, String)> {
        let text = |m: &Message, t| TextAttribute::get_from_as(m, t).ok().map(|a| a.text);
        let (Some(username), Some(_realm), Some(nonce)) = (
            text(msg, ATTR_USERNAME),
            text(msg, ATTR_REALM),
            text(msg, ATTR_NONCE),
        ) else {
            let reject = Reject::of(StunError::BadRequest);
            self.respond_error(client, req, reject, None, vec![]);
            return None;
        };
        // RFC 8489 §14.3: USERNAME is under 513 bytes.
        if username.len() > MAX_USERNAME_LEN {
            let reject = Reject::new(StunError::BadRequest, "USERNAME too long");
            self.respond_error(client, req, reject, None, vec![]);
            return None;
        }
        Some((username, nonce))
    }

    /// Whether this request deletes the caller's own allocation (Refresh, LIFETIME 0) with
    /// a nonce minted for it that was valid at some time during the allocation's life.
    pub(super) fn is_own_deletion(
        &self,
        msg: &Message,
        req: RequestInfo,
        client: ClientId,
        username: &str,
        nonce_expiry: Option<u64>,
    ) -> bool {
        let Some(nonce_expiry) = nonce_expiry else {
            return false;
        };
        req.method == METHOD_REFRESH
            && RefreshRequest::parse(msg).deletes()
            && self.by_client.get(&client).is_some_and(|&i| {
                let a = &self.allocations[i];
                a.username == username && nonce_expiry >= a.created_unix
            })
    }

    /// The lenient expiry policy: an expired credential still works for requests on the
    /// allocation it created, from that allocation's own 5-tuple, until the session limit.
    pub(super) fn may_outlive_credential(
        &self,
        now: Instant,
        req: RequestInfo,
        client: ClientId,
        username: &str,
    ) -> bool {
        if self.cfg.auth.expiry_policy().strict || req.method == METHOD_ALLOCATE {
            return false;
        }
        self.by_client.get(&client).is_some_and(|&i| {
            let a = &self.allocations[i];
            a.username == username && a.session_end.is_none_or(|(end, _)| now < end)
        })
    }

    pub(super) fn auth_failure(
        &mut self,
        client: ClientId,
        req: RequestInfo,
        unix: u64,
        e: AuthError,
    ) {
        self.counters.auth_failures[e as usize] += 1;
        tracing::debug!(client = %client.addr, reason = e.label(), "authentication failed");
        // No reason phrase on the challenge: the code says it all, and this is the answer
        // every unauthenticated request gets, so every byte is amplification.
        let reject = match e {
            AuthError::StaleNonce => Reject::of(StunError::StaleNonce),
            AuthError::NoIntegrity => Reject::new(StunError::Unauthorized, ""),
            _ => Reject::of(StunError::Unauthorized),
        };
        let attrs: Attrs = vec![
            Box::new(TextAttribute::new(
                ATTR_REALM,
                self.cfg.auth.realm().to_owned(),
            )),
            Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.cfg.auth.mint_nonce(unix, client.addr),
            )),
        ];
        self.respond_error(client, req, reject, None, attrs);
    }
}
