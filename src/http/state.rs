//! What every handler reads: the node, the API settings (swapped whole on reload) and the
//! browser reports' limits.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::reports;
use crate::fleet::admin::FleetAdmin;
use crate::runtime::Node;
use crate::settings::Settings;

/// What the credential API needs; swapped as a whole on reload.
pub(super) struct Api {
    pub(super) token: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) ttl: Duration,
    pub(super) max_ttl: Duration,
    pub(super) uris: Vec<String>,
    pub(super) cors_origins: Vec<String>,
    pub(super) admin_token: Option<String>,
    pub(super) selftest: bool,
    /// Serve the browser module and take its reports (`http.client`).
    pub(super) client: bool,
    /// Who may sign a report: every REST secret in force, the static users.
    pub(super) secrets: Vec<String>,
    pub(super) users: Vec<(String, String)>,
    pub(super) max_credential_ttl_secs: u64,
}

pub struct HttpState {
    pub(super) node: Arc<Node>,
    pub(super) api: RwLock<Api>,
    /// Browser reports' rate limits live across reloads.
    pub(super) reports: reports::Reports,
    /// The fleet (`[cluster]`): GET /api/v1/nodes and load-aware credentials from its
    /// registry, fleet-wide ends, revocations and the fleet sessions view.
    pub(super) fleet: Option<Arc<FleetAdmin>>,
}

impl HttpState {
    pub fn new(node: Arc<Node>, settings: &Settings) -> Arc<HttpState> {
        Self::with_fleet(node, settings, None)
    }

    /// `new`, with the fleet when `[cluster]` is on.
    pub fn with_fleet(
        node: Arc<Node>,
        settings: &Settings,
        fleet: Option<Arc<FleetAdmin>>,
    ) -> Arc<HttpState> {
        Arc::new(HttpState {
            node,
            api: RwLock::new(Self::api_from(settings)),
            reports: reports::Reports::default(),
            fleet,
        })
    }

    /// The URIs a credential carries: the fleet's best nodes for a caller in `region`
    /// when `[cluster]` is on (own URIs when none qualifies), else `own` (the configured ones).
    pub(super) fn credential_uris(&self, region: Option<&str>, own: &[String]) -> Vec<String> {
        match &self.fleet {
            Some(f) => f
                .registry
                .credential_uris(region, crate::runtime::clock::unix_ms()),
            None => own.to_vec(),
        }
    }

    pub(super) fn api(&self) -> std::sync::RwLockReadGuard<'_, Api> {
        self.api.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn node(&self) -> &Node {
        &self.node
    }

    fn api_from(settings: &Settings) -> Api {
        let cfg = &settings.config;
        Api {
            token: cfg
                .http
                .credentials_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            secret: settings.secrets.first().cloned(),
            ttl: cfg.http.credentials_ttl,
            max_ttl: cfg.http.credentials_max_ttl,
            uris: settings.uris.clone(),
            cors_origins: cfg.http.cors_origins.clone(),
            admin_token: cfg.http.admin_token.as_ref().map(|t| t.expose().to_owned()),
            selftest: cfg.http.selftest,
            client: cfg.http.client,
            secrets: settings.secrets.clone(),
            users: cfg
                .auth
                .users
                .iter()
                .map(|u| (u.username.clone(), u.password.clone()))
                .collect(),
            max_credential_ttl_secs: cfg.auth.expiry_policy().max_ttl_secs,
        }
    }

    pub fn reload(&self, settings: &Settings) {
        *self.api.write().unwrap_or_else(|e| e.into_inner()) = Self::api_from(settings);
    }
}
