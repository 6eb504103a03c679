//! The core's metric counters by name, for the handover state: "relayed_bytes.udp.
//! client_to_peer" rather than an array index, so that a label added, moved or removed
//! in a later version cannot put a count under another label.

use std::collections::BTreeMap;

use crate::auth::AuthError;
use crate::relay::client::Transport;
use crate::relay::stats::{
    Counters, Direction, DropReason, EndReason, RequestMethod, result_label,
};

/// Every counter with its name. Destructured without `..`: a counter added to `Counters`
/// does not compile until it is named here, i.e. until the format carries it.
fn named(c: &mut Counters) -> Vec<(String, &mut u64)> {
    let Counters {
        relayed_bytes,
        relayed_packets,
        dropped,
        requests,
        auth_failures,
        allocations_created,
        allocations_ended,
        peer_denied,
        quota_rejections,
    } = c;
    let mut out = Vec::new();
    for (name, table) in [
        ("relayed_bytes", relayed_bytes),
        ("relayed_packets", relayed_packets),
    ] {
        for (t, row) in table.iter_mut().enumerate() {
            for (d, v) in row.iter_mut().enumerate() {
                let (t, d) = (Transport::LABELS[t], Direction::LABELS[d]);
                out.push((format!("{name}.{t}.{d}"), v));
            }
        }
    }
    for (m, row) in requests.iter_mut().enumerate() {
        for (code, v) in row.iter_mut().enumerate() {
            let (m, code) = (RequestMethod::LABELS[m], result_label(code));
            out.push((format!("requests.{m}.{code}"), v));
        }
    }
    push_row(&mut out, "dropped", &DropReason::LABELS, dropped);
    push_row(&mut out, "auth_failures", &AuthError::LABELS, auth_failures);
    push_row(
        &mut out,
        "allocations_created",
        &Transport::LABELS,
        allocations_created,
    );
    push_row(
        &mut out,
        "allocations_ended",
        &EndReason::LABELS,
        allocations_ended,
    );
    out.push(("peer_denied".into(), peer_denied));
    out.push(("quota_rejections".into(), quota_rejections));
    out
}

fn push_row<'a, const N: usize>(
    out: &mut Vec<(String, &'a mut u64)>,
    name: &str,
    labels: &[&str; N],
    row: &'a mut [u64; N],
) {
    for (label, v) in labels.iter().zip(row.iter_mut()) {
        out.push((format!("{name}.{label}"), v));
    }
}

/// The non-zero counters by name.
pub fn export(c: &Counters) -> BTreeMap<String, u64> {
    let mut copy = c.clone();
    named(&mut copy)
        .into_iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k, *v))
        .collect()
}

/// Adds exported counters to `c`. Returns the names this version does not have (a label
/// removed since the exporting version): their counts are not carried.
pub fn add(c: &mut Counters, exported: &BTreeMap<String, u64>) -> Vec<String> {
    let mut slots: BTreeMap<String, &mut u64> = named(c).into_iter().collect();
    let mut unknown = Vec::new();
    for (name, &n) in exported {
        match slots.get_mut(name) {
            Some(v) => **v = v.saturating_add(n),
            None => unknown.push(name.clone()),
        }
    }
    unknown
}

/// Sums exported counters (states of several shards merged into one).
pub fn sum(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (name, &n) in from {
        let v = into.entry(name.clone()).or_default();
        *v = v.saturating_add(n);
    }
}
