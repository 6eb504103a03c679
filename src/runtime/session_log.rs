//! The one structured line per ended allocation that operators read.

use crate::relay::SessionSummary;

#[derive(Debug, Clone, Copy)]
pub struct SessionLogger {
    pub redact_client_address: bool,
}

impl SessionLogger {
    pub fn log(&self, s: &SessionSummary) {
        // REST usernames are "<expiry>:<user-id>"; the id is what an operator searches for.
        let user = s
            .username
            .split_once(':')
            .map_or(s.username.as_str(), |(_, id)| id);
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
