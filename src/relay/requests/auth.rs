//! Authentication of a request (RFC 8489 §9.2.4) and the credential-expiry policy.

use super::*;

impl Core {
    /// The long-term credential check (RFC 8489 §9.2.4) and the credential-expiry policy.
    /// Sends the 400/401/438 itself and returns None on failure. Nothing is stored for a
    /// client that fails.
    pub(super) fn authenticate(&mut self, request: Unverified) -> Option<Authenticated> {
        let Unverified {
            at:
                Arrival {
                    now,
                    unix,
                    client,
                    req,
                },
            mut msg,
            credentials,
            deletes,
        } = request;
        let (username, nonce) = match credentials {
            Credentials::Signed {
                username, nonce, ..
            } => (username, nonce),
            Credentials::Unsigned => {
                self.auth_failure(client, req, unix, AuthError::NoIntegrity);
                return None;
            }
            Credentials::Malformed(reject) => {
                self.respond_error(client, req, reject, None, vec![]);
                return None;
            }
        };
        let nonce_expiry = self.cfg.auth.nonce_expiry(&nonce, client.addr);
        let nonce_ok = nonce_expiry.is_some_and(|e| e >= unix);
        // A stale nonce is answered before any HMAC work, except for a deletion: a
        // Refresh(0) signed with the allocation's key is honoured, since answering 438 to a
        // client that is leaving only makes its allocation linger (browsers do not retry).
        // Its nonce must still be one we minted for this client while this allocation
        // lived, so a Refresh(0) recorded from an earlier allocation cannot be replayed.
        if !(nonce_ok || (deletes && self.is_own_deletion(client, &username, nonce_expiry))) {
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
            .find(|k| MessageIntegrity(k.clone()).check(&mut msg).is_ok())
        else {
            let e = if nonce_ok {
                AuthError::BadIntegrity
            } else {
                AuthError::StaleNonce
            };
            self.auth_failure(client, req, unix, e);
            return None;
        };
        let expired = cred.expiry.is_some_and(|e| e < unix);
        // A revoked user makes nothing new, and cannot lean on the lenient expiry path.
        if (expired || req.method == METHOD_ALLOCATE)
            && self.admission.revoked.revokes(&username, unix)
        {
            self.auth_failure(client, req, unix, AuthError::Revoked);
            return None;
        }
        if expired && !self.may_outlive_credential(now, req, client, &username) {
            self.auth_failure(client, req, unix, AuthError::Expired);
            return None;
        }
        Some(Authenticated {
            username,
            key,
            expiry: cred.expiry,
        })
    }

    /// Whether a deletion (Refresh, LIFETIME 0) is of the caller's own allocation, with a
    /// nonce minted for it that was valid at some time during the allocation's life.
    fn is_own_deletion(&self, client: ClientId, username: &str, nonce_expiry: Option<u64>) -> bool {
        let Some(nonce_expiry) = nonce_expiry else {
            return false;
        };
        self.by_client.get(&client).is_some_and(|&i| {
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
