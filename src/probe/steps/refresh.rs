//! The Refresh step: the allocation's lifetime can be extended.

use std::time::{Duration, Instant};

use serde_json::json;
use stun::message::METHOD_REFRESH;
use turn::proto::lifetime::Lifetime;

use super::outcome::step;
use super::wire::lifetime;
use crate::probe::client::{Client, error_of, is_success};
use crate::probe::report::{Report, Verdict};

pub(super) fn run(a: &mut Client, rep: &mut Report) {
    let t = Instant::now();
    let r = a.signed(
        METHOD_REFRESH,
        &[Box::new(Lifetime(Duration::from_secs(600)))],
    );
    match r {
        Ok(m) if is_success(&m) => rep.push(step(
            "Refresh",
            t,
            Verdict::Pass,
            format!(
                "allocation refreshed, lifetime {} s",
                lifetime(&m).unwrap_or(0)
            ),
            None,
            json!({"lifetime_s": lifetime(&m)}),
        )),
        other => rep.push(step(
            "Refresh",
            t,
            Verdict::Fail,
            match other {
                Ok(m) => format!("Refresh refused: {:?}", error_of(&m)),
                Err(e) => format!("no Refresh response: {e}"),
            },
            Some("refresh_failed"),
            json!(null),
        )),
    }
}
