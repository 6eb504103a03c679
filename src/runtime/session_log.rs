//! The one structured line per ended allocation that operators read.

use crate::auth::user_id;
use crate::relay::SessionSummary;

#[derive(Debug, Clone, Copy)]
pub struct SessionLogger {
    pub redact_client_address: bool,
}

/// The fields of a session line that are not plain counters: apart from the logging so a
/// test can read them without capturing a subscriber.
#[derive(Debug)]
struct LineFields<'a> {
    /// The user id an operator searches for, the same one quotas and the sessions API use.
    user: &'a str,
    client: String,
    relay: String,
}

impl SessionLogger {
    fn fields<'a>(&self, s: &'a SessionSummary) -> LineFields<'a> {
        let client = if self.redact_client_address {
            "redacted".to_owned()
        } else {
            s.client.addr.to_string()
        };
        let relay = [s.relay_v4, s.relay_v6]
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        LineFields {
            user: user_id(&s.username),
            client,
            relay,
        }
    }

    pub fn log(&self, s: &SessionSummary) {
        let LineFields {
            user,
            client,
            relay,
        } = self.fields(s);
        tracing::info!(
            target: "turnpike::session",
            user,
            client,
            relay,
            transport = s.client.transport.label(),
            duration_s = s.duration.as_secs_f64(),
            bytes_to_peer = s.traffic.bytes_to_peer,
            packets_to_peer = s.traffic.packets_to_peer,
            bytes_to_client = s.traffic.bytes_to_client,
            packets_to_client = s.traffic.packets_to_client,
            peers = s.peers_used,
            channels = s.channels_used,
            reason = s.reason.label(),
            "allocation ended"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::relay::stats::EndReason;
    use crate::relay::{ClientId, Transport};

    fn summary(username: &str) -> SessionSummary {
        SessionSummary {
            username: username.to_owned(),
            client: ClientId {
                transport: Transport::Udp,
                listener: 0,
                addr: "198.51.100.4:50000".parse().unwrap(),
            },
            relay_v4: Some("192.0.2.1:50000".parse().unwrap()),
            relay_v6: None,
            duration: Duration::from_secs(1),
            traffic: Default::default(),
            peers_used: 0,
            channels_used: 0,
            reason: EndReason::Deleted,
        }
    }

    const LOGGER: SessionLogger = SessionLogger {
        redact_client_address: false,
    };

    #[test]
    fn static_user_with_a_colon_is_logged_by_its_whole_name() {
        assert_eq!(LOGGER.fields(&summary("ops:alice")).user, "ops:alice");
    }

    #[test]
    fn rest_user_is_logged_by_the_id_after_its_expiry() {
        assert_eq!(LOGGER.fields(&summary("1700000000:alice")).user, "alice");
    }
}
