//! How a step's outcome goes into the report, and which later steps a failure skips.

use std::time::Instant;

use crate::probe::report::{Report, Step, Verdict};

/// The steps after the connection, in order; a failed step skips those after it.
pub(super) const TURN_STEPS: [&str; 5] = [
    "Binding",
    "Allocate",
    "Clock skew",
    "Relayed round trip",
    "Refresh",
];

pub(super) fn skip_rest(rep: &mut Report, names: &[&'static str], why: &str) {
    for name in names {
        rep.skip(name, why);
    }
}

pub(super) fn step(
    name: &'static str,
    t: Instant,
    verdict: Verdict,
    detail: String,
    problem: Option<&'static str>,
    data: serde_json::Value,
) -> Step {
    Step {
        name,
        verdict,
        ms: t.elapsed().as_millis() as u64,
        detail,
        problem,
        data,
    }
}
