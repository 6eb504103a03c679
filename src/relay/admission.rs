//! Whether a new allocation may be made here: a draining node and a full one send new
//! clients elsewhere (RFC 8489 §10, 300 Try Alternate with ALTERNATE-SERVER) while every
//! existing allocation keeps relaying and refreshing.

use std::net::SocketAddr;

use crate::proto::error_code::StunError;
use crate::proto::reject::Reject;

use stun::attributes::{ATTR_ALTERNATE_DOMAIN, ATTR_ALTERNATE_SERVER};
use stun::message::{Message, Setter};

use super::alternate::Alternate;
use super::client::{ClientId, Transport};
use super::core_state::Core;

/// Why a new allocation is not made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 300 Try Alternate, naming that node in ALTERNATE-SERVER.
    Redirect(Alternate),
    /// Refused outright, with nowhere to send the client.
    Refuse(Reject),
}

impl Refusal {
    /// The error response it is answered with.
    pub fn reject(&self) -> Reject {
        match *self {
            Refusal::Redirect(_) => Reject::of(StunError::TryAlternate),
            Refusal::Refuse(reject) => reject,
        }
    }
}

impl Core {
    /// Draining: new Allocates are refused, existing allocations carry on.
    pub fn set_draining(&mut self, draining: bool) {
        self.admission.draining = draining;
    }

    /// The fleet's revocations in force (`[cluster]`), checked in authentication.
    pub fn set_revocations(&mut self, revoked: std::sync::Arc<super::revocation::Revocations>) {
        self.admission.revoked = revoked;
    }

    pub fn is_draining(&self) -> bool {
        self.admission.draining
    }

    /// The nodes named in ALTERNATE-SERVER (`server.alternate`, `server.alternate_tls`, the
    /// fleet registry's).
    pub fn set_alternates(&mut self, alternates: Vec<Alternate>) {
        self.admission.alternates = alternates;
    }

    /// Checked first in Allocate. A draining node answers 300 with an alternate, else 403
    /// (an administrative refusal: 486 would tell the client its user hit a quota, 508
    /// that a retry might succeed). A full node redirects when it has somewhere to send
    /// the client; otherwise Allocate goes on to its usual 486.
    pub(super) fn refuse_new_allocation(&mut self, client: ClientId) -> Option<Refusal> {
        let full = self.cfg.quotas.is_full();
        if !self.admission.draining && !full {
            return None;
        }
        match self.alternate_for(client) {
            Some(alt) => {
                if !self.admission.draining {
                    self.counters.quota_rejections += 1;
                }
                Some(Refusal::Redirect(alt))
            }
            None if self.admission.draining => Some(Refusal::Refuse(Reject::new(
                StunError::Forbidden,
                "Server Draining",
            ))),
            None => None,
        }
    }

    /// One of the alternates for the client's transport, preferring its address family,
    /// spread over the list by the client's port so that one node does not take every
    /// redirected client.
    fn alternate_for(&self, client: ClientId) -> Option<Alternate> {
        let tls = client.transport == Transport::Tls;
        let fits: Vec<&Alternate> = self
            .admission
            .alternates
            .iter()
            .filter(|a| a.domain.is_some() == tls)
            .collect();
        let same: Vec<&Alternate> = fits
            .iter()
            .copied()
            .filter(|a| a.addr.is_ipv4() == client.addr.is_ipv4())
            .collect();
        let pool = if same.is_empty() { fits } else { same };
        (!pool.is_empty()).then(|| pool[client.addr.port() as usize % pool.len()].clone())
    }
}

/// ALTERNATE-SERVER (0x8023): plain STUN address encoding, not XOR'd (RFC 8489 §14.15).
pub struct AlternateServer(pub SocketAddr);

impl Setter for AlternateServer {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        stun::addr::MappedAddress {
            ip: self.0.ip(),
            port: self.0.port(),
        }
        .add_to_as(m, ATTR_ALTERNATE_SERVER)
    }
}

/// ALTERNATE-DOMAIN (0x8003, RFC 8489 §14.16): the alternate's DNS name, as UTF-8 (the
/// stun crate's TextAttribute refuses this type). Names come validated from the config
/// or a `turns:` URI, so they fit its 255 bytes.
pub struct AlternateDomain(pub String);

impl Setter for AlternateDomain {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        if self.0.len() > 255 {
            return Err(stun::Error::Other("ALTERNATE-DOMAIN over 255 bytes".into()));
        }
        m.add(ATTR_ALTERNATE_DOMAIN, self.0.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use stun::addr::MappedAddress;
    use stun::attributes::{
        ATTR_ALTERNATE_DOMAIN, ATTR_ALTERNATE_SERVER, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE,
        ATTR_REALM,
    };
    use stun::integrity::MessageIntegrity;
    use stun::message::*;
    use stun::textattrs::TextAttribute;
    use turn::proto::lifetime::Lifetime;

    use crate::relay::alternate::Alternate;
    use crate::relay::{ClientId, Transport};
    use crate::testkit::harness::*;
    use crate::testkit::*;

    fn alternate(m: &Message) -> Option<SocketAddr> {
        let mut a = MappedAddress::default();
        a.get_from_as(m, ATTR_ALTERNATE_SERVER).ok()?;
        Some(SocketAddr::new(a.ip, a.port))
    }

    fn plain(addrs: &[&str]) -> Vec<Alternate> {
        addrs.iter().map(|a| Alternate::plain(peer(a))).collect()
    }

    fn try_allocate(h: &mut Harness, n: u16, user: &str) -> Message {
        let c = h.creds(user);
        h.request(
            h.client(n),
            METHOD_ALLOCATE,
            Harness::allocate_attrs(),
            Some(&c),
        )
    }

    #[test]
    fn draining_refuses_new_allocate_with_300_and_alternate_server_signed() {
        let mut h = harness();
        h.server
            .set_alternates(plain(&["[2001:db8::9]:3478", "192.0.2.9:3478"]));
        h.server.set_draining(true);
        let r = try_allocate(&mut h, 1, "u1");
        assert_eq!(error_code(&r), Some(300));
        // Same family as the (IPv4) client, in the plain (not XOR) encoding.
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:3478")));
        let raw = r.get(stun::attributes::ATTR_ALTERNATE_SERVER).unwrap();
        assert_eq!(&raw[4..8], &[192, 0, 2, 9]);
        // The nonce it carries works from another address: the client's NAT maps a new
        // port towards the alternate, which shares this node's secret.
        let nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
        let other = peer("198.51.100.99:4000");
        assert!(h.server.cfg.auth.check_nonce(&nonce, h.unix, other));
        // Authenticated, so the client may trust the redirect (RFC 8489 §10).
        let c = h.creds("u1");
        let mut r = r;
        MessageIntegrity::new_long_term_integrity(c.username, REALM.into(), c.password)
            .check(&mut r)
            .expect("300 carries a valid MESSAGE-INTEGRITY");
    }

    fn unsigned_allocate(h: &mut Harness, n: u16) -> Message {
        h.request(
            h.client(n),
            METHOD_ALLOCATE,
            Harness::allocate_attrs(),
            None,
        )
    }

    #[test]
    fn redirecting_node_answers_unsigned_allocate_with_300_before_the_challenge() {
        let mut h = harness();
        h.server.set_alternates(plain(&["192.0.2.9:3478"]));
        assert_eq!(error_code(&unsigned_allocate(&mut h, 1)), Some(401));
        h.server.set_draining(true);
        let r = unsigned_allocate(&mut h, 2);
        assert_eq!(error_code(&r), Some(300));
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:3478")));
        // Nothing the client would carry to the alternate: it must meet it fresh.
        for attr in [ATTR_NONCE, ATTR_REALM, ATTR_MESSAGE_INTEGRITY] {
            assert!(!r.contains(attr), "{attr} in an unsigned 300");
        }
        // No alternate to name: the challenge as usual, then 403 once signed.
        h.server.set_alternates(vec![]);
        assert_eq!(error_code(&unsigned_allocate(&mut h, 3)), Some(401));
        assert_eq!(error_code(&try_allocate(&mut h, 3, "u3")), Some(403));
    }

    #[test]
    fn full_node_answers_unsigned_allocate_with_300_before_the_challenge() {
        let mut cfg = config();
        cfg.quotas = std::sync::Arc::new(crate::relay::quota::Quotas::new(1, 5));
        let mut h = harness_with(cfg);
        h.server.set_alternates(plain(&["192.0.2.9:3478"]));
        h.allocate(h.client(1), "u1");
        let r = unsigned_allocate(&mut h, 2);
        assert_eq!(error_code(&r), Some(300));
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:3478")));
        assert!(!r.contains(ATTR_NONCE));
    }

    #[test]
    fn unsigned_allocate_on_own_allocation_is_challenged_not_redirected() {
        let mut h = harness();
        h.allocate(h.client(1), "u1");
        h.server.set_alternates(plain(&["192.0.2.9:3478"]));
        h.server.set_draining(true);
        assert_eq!(error_code(&unsigned_allocate(&mut h, 1)), Some(401));
    }

    #[test]
    fn draining_without_alternates_gets_403_and_existing_allocation_refreshes() {
        let mut h = harness();
        h.allocate(h.client(1), "u1");
        h.server.set_draining(true);
        assert_eq!(error_code(&try_allocate(&mut h, 2, "u2")), Some(403));
        let c = h.creds("u1");
        let r = h.request(
            h.client(1),
            METHOD_REFRESH,
            vec![Box::new(Lifetime(std::time::Duration::from_secs(600)))],
            Some(&c),
        );
        assert_success(&r);
        h.server.set_draining(false);
        h.allocate(h.client(2), "u2");
    }

    #[test]
    fn full_node_redirects_when_it_has_alternates_else_486() {
        let mut cfg = config();
        cfg.quotas = std::sync::Arc::new(crate::relay::quota::Quotas::new(1, 5));
        let mut h = harness_with(cfg);
        h.allocate(h.client(1), "u1");
        assert_eq!(error_code(&try_allocate(&mut h, 2, "u2")), Some(486));
        h.server.set_alternates(plain(&["192.0.2.9:3478"]));
        let r = try_allocate(&mut h, 3, "u3");
        assert_eq!(error_code(&r), Some(300));
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:3478")));
    }

    #[test]
    fn tls_clients_go_to_tls_alternates_with_alternate_domain_and_others_never() {
        let mut h = harness();
        let tls_alt = Alternate::tls(peer("192.0.2.9:5349"), "turn-b.example.com");
        let mut alts = plain(&["192.0.2.9:3478"]);
        alts.push(tls_alt);
        h.server.set_alternates(alts);
        h.server.set_draining(true);
        let tls = ClientId {
            transport: Transport::Tls,
            ..h.client(7)
        };
        let r = h.request(tls, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
        assert_eq!(error_code(&r), Some(300));
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:5349")));
        assert_eq!(r.get(ATTR_ALTERNATE_DOMAIN).unwrap(), b"turn-b.example.com");
        // A UDP client gets the plain alternate and no ALTERNATE-DOMAIN.
        let r = unsigned_allocate(&mut h, 8);
        assert_eq!(alternate(&r), Some(peer("192.0.2.9:3478")));
        assert!(!r.contains(ATTR_ALTERNATE_DOMAIN));
        // No TLS alternate: a TLS client is refused rather than sent to a plain port.
        h.server.set_alternates(plain(&["192.0.2.9:3478"]));
        let r = h.request(tls, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
        assert_eq!(
            error_code(&r),
            Some(401),
            "challenged, then refused once signed"
        );
    }
}
