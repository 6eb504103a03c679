//! `turnpike probe`: checks a TURN server from the outside, the way a browser meets it,
//! and names the mistake when there is one (wrong secret, clock skew, private or wrong
//! relay address, closed relay ports, a certificate for another name, a closed TCP
//! listener). A client of the public protocol only, so it checks coturn as well.

pub mod client;
mod options;
pub mod report;
pub mod steps;
pub mod tls;
pub mod uri;

pub use options::{Credentials, Options};
use report::Report;
use uri::TurnUri;

/// Probes every URI in turn. Bad URIs are an error before anything is sent.
pub fn run(uris: &[String], opts: &Options) -> anyhow::Result<Vec<Report>> {
    let parsed: Vec<TurnUri> = uris
        .iter()
        .map(|u| TurnUri::parse(u).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let roots = tls::roots(opts.ca.as_deref())?;
    Ok(parsed
        .iter()
        .map(|u| steps::probe(u, opts, &roots))
        .collect())
}

/// The JSON document `--json` prints.
pub fn json(reports: &[Report]) -> String {
    let ok = reports.iter().all(|r| r.ok);
    format!("{:#}", serde_json::json!({"ok": ok, "results": reports}))
}
