//! Binding (RFC 8489 §3): the client's address as this server sees it. No credentials:
//! STUN clients ask it unauthenticated.

use super::*;

impl Core {
    pub(super) fn binding(&mut self, client: ClientId, req: RequestInfo) {
        let attrs: Attrs = vec![Box::new(XorMappedAddress {
            ip: client.addr.ip(),
            port: client.addr.port(),
        })];
        self.respond(client, req, attrs, None);
    }
}
