//! What browsers report about their calls (client/turnpike.js through
//! `POST /api/v1/reports`): the label vocabulary, each value from a fixed list (anything
//! else is `other`, so no client can grow the label set), and the families it is counted
//! in. Every series exists from the start, so dashboards and alerts see zeros, not gaps.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::label_table::label_table;

/// `parse` for the report label tables: a value not in the table is `Other`, so no
/// client can grow a metric's label set.
macro_rules! parse_or_other {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn parse(s: &str) -> Self {
                $name::ALL.into_iter().find(|x| x.label() == s).unwrap_or($name::Other)
            }
        }
    )*};
}

label_table! {
    /// How a connection ended up.
    pub enum Outcome {
        Connected = "connected",
        Failed = "failed",
        Closed = "closed",
        Other = "other",
    }
}
label_table! {
    /// Connected: the selected pair's path, seen from the reporting end (the least direct
    /// of its two candidates; `relay_peer` when only the other end relays). Failed or
    /// closed: the best candidate type that end had gathered; `none` if it had none.
    pub enum Path {
        Host = "host",
        Srflx = "srflx",
        Prflx = "prflx",
        RelayUdp = "relay_udp",
        RelayTcp = "relay_tcp",
        RelayTls = "relay_tls",
        RelayPeer = "relay_peer",
        None = "none",
        Other = "other",
    }
}
label_table! {
    /// The browser family.
    pub enum Browser {
        Chrome = "chrome",
        Firefox = "firefox",
        Safari = "safari",
        Edge = "edge",
        Other = "other",
    }
}
label_table! {
    /// Why a report was refused (`turnpike_client_reports_refused_total{reason}`).
    pub enum Refusal {
        TooLarge = "too_large",
        Unsigned = "unsigned",
        Malformed = "malformed",
        UnknownUser = "unknown_user",
        Expired = "expired",
        BadSignature = "bad_signature",
        RateLimited = "rate_limited",
    }
}

parse_or_other!(Outcome, Path, Browser);

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::TooLarge => 413,
            Refusal::Unsigned | Refusal::UnknownUser | Refusal::Expired | Refusal::BadSignature => {
                401
            }
            Refusal::RateLimited => 429,
            Refusal::Malformed => 400,
        }
    }
}

/// Time to connect, in seconds: ICE completes in tens of milliseconds on a LAN and takes
/// seconds through TURN over TCP/TLS or after a slow credential fetch.
const CONNECT_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 4.0, 7.0, 15.0,
];

/// The report families of the registry.
pub struct ClientMetrics {
    connections: IntCounterVec,
    connect_seconds: HistogramVec,
    refused: IntCounterVec,
}

impl ClientMetrics {
    pub(super) fn register(r: &Registry) -> ClientMetrics {
        let connections = IntCounterVec::new(
            Opts::new(
                "turnpike_client_connections_total",
                format!(
                    "WebRTC connections reported by browsers (client/turnpike.js), by outcome \
                     ({}), path ({}) and browser ({}).",
                    Outcome::LISTED,
                    Path::LISTED,
                    Browser::LISTED,
                ),
            ),
            &["outcome", "path", "browser"],
        )
        .expect("valid metric");
        let connect_seconds = HistogramVec::new(
            HistogramOpts::new(
                "turnpike_client_connect_seconds",
                "Time from the start of a reported connection to connected, by path.",
            )
            .buckets(CONNECT_BUCKETS.to_vec()),
            &["path"],
        )
        .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "turnpike_client_reports_refused_total",
                format!("Browser reports refused, by reason ({}).", Refusal::LISTED),
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [&connections, &refused] {
            r.register(Box::new(c.clone())).expect("unique metric");
        }
        r.register(Box::new(connect_seconds.clone()))
            .expect("unique metric");
        for o in Outcome::ALL {
            for p in Path::ALL {
                for b in Browser::ALL {
                    connections.with_label_values(&[o.label(), p.label(), b.label()]);
                }
            }
        }
        for p in Path::ALL {
            connect_seconds.with_label_values(&[p.label()]);
        }
        for x in Refusal::ALL {
            refused.with_label_values(&[x.label()]);
        }
        ClientMetrics {
            connections,
            connect_seconds,
            refused,
        }
    }

    /// Counts one accepted report.
    pub fn report(
        &self,
        outcome: Outcome,
        path: Path,
        browser: Browser,
        connect_secs: Option<f64>,
    ) {
        self.connections
            .with_label_values(&[outcome.label(), path.label(), browser.label()])
            .inc();
        if let Some(s) = connect_secs {
            self.connect_seconds
                .with_label_values(&[path.label()])
                .observe(s);
        }
    }

    pub fn refused(&self, why: Refusal) {
        self.refused.with_label_values(&[why.label()]).inc();
    }
}
