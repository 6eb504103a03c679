//! SIGHUP: the config reloaded, all or nothing, with systemd told.

use crate::config::Config;
use crate::http::HttpState;
use crate::runtime::Node;
use crate::settings::Settings;

use super::notify;

/// Applies the config `reload` produces, all or nothing, telling systemd. Allocations
/// stay: credentials, peer policy, TLS certificate, alternates, the drain timeout and the
/// credential API change; listeners and port ranges need a restart. Returns the new
/// settings when the reload took.
pub(super) fn apply(
    reload: &impl Fn() -> anyhow::Result<Config>,
    node: &Node,
    http: &HttpState,
    running: &Settings,
) -> Option<Settings> {
    notify::reloading();
    let result = reload().and_then(|new| running.reload(new));
    match result {
        Ok(settings) => {
            node.reload(&settings);
            http.reload(&settings);
            tracing::info!("configuration reloaded");
            notify::ready("relaying; configuration reloaded");
            Some(settings)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the running configuration");
            notify::ready("relaying; last reload failed, running configuration kept");
            None
        }
    }
}
