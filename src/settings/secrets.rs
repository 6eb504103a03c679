//! The REST secrets in force, by the one precedence every part uses.

use base64::Engine;

use crate::config::{Config, env_secret};

/// The REST secrets in force: the config's (with `auth.secrets_file`'s) when it names any
/// secret or static user; else, on a reload, those `kept` in force; else TURNPIKE_SECRET;
/// else one generated for this run. A config with only static users has no REST secret
/// and wants none. True with the secrets when one was generated.
pub fn in_force(cfg: &Config, kept: Option<&[String]>) -> (Vec<String>, bool) {
    if !cfg.auth.secrets.is_empty() || !cfg.auth.users.is_empty() {
        return (cfg.auth.secret_strings(), false);
    }
    if let Some(kept) = kept {
        return (kept.to_vec(), false);
    }
    if let Some(s) = env_secret() {
        return (vec![s], false);
    }
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    (vec![secret], true)
}
