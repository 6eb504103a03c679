//! The credential diagnosis: an Allocate with the configured credential and, when the
//! server answers 401, why: a wrong secret, an expired credential, or a server clock so
//! far ahead that a fresh credential has already expired there.

use std::time::Instant;

use serde_json::json;
use stun::message::Message;

use super::ctx::Ctx;
use super::outcome::{TURN_STEPS, skip_rest, step};
use super::wire::{accepted, allocate, refused, set_credential};
use crate::auth::{mint_credential, rest_expiry};
use crate::probe::client::{Client, ReqError};
use crate::probe::options::{Credentials, Options};
use crate::probe::report::{Report, Verdict};

pub(super) type Credential = (String, String);

/// The verdict of the Clock skew step, reported after the Allocate step.
pub(super) struct Skew {
    pub verdict: Verdict,
    pub detail: String,
    pub problem: Option<&'static str>,
}

/// What authenticating left: the Allocate response, the credential the server took (to
/// go on with) and the clock-skew verdict.
pub(super) struct Authenticated {
    pub alloc: Result<Message, ReqError>,
    pub creds: Credential,
    pub skew: Skew,
}

/// Allocates on `a` (its nonce already learnt) with the configured credential. On a 401
/// with a secret, finds the skew and allocates again with a credential the server takes;
/// `None` when the 401 stands (a failed Allocate step is reported, timed from `t`).
pub(super) fn authenticate(
    ctx: &Ctx,
    a: &mut Client,
    t: Instant,
    rep: &mut Report,
) -> Option<Authenticated> {
    let opts = ctx.opts;
    let now = unix_now();
    let first = match &opts.credentials {
        Credentials::Secret(s) => mint_credential(s, &opts.user, opts.ttl.as_secs(), now),
        Credentials::Fixed { username, password } => (username.clone(), password.clone()),
    };
    set_credential(a, &first);
    let alloc = allocate(a);
    if !refused(&alloc) {
        let skew = no_skew(opts, &first, now);
        return Some(Authenticated {
            alloc,
            creds: first,
            skew,
        });
    }
    let t_auth = Instant::now();
    match &opts.credentials {
        Credentials::Secret(secret) => {
            let mint = |ttl: u64| mint_credential(secret, &opts.user, ttl, now);
            let Some((lo, hi)) = find_skew(ctx, &mint) else {
                wrong_secret(rep, t, t_auth);
                return None;
            };
            // Go on with a credential the server takes, to check the rest. Ten minutes
            // past the skew when it was found to the minute (a lifetime cap leaves room
            // for that), else the one known to work.
            let creds = mint(if hi - lo <= 60 { hi + 600 } else { hi });
            set_credential(a, &creds);
            Some(Authenticated {
                alloc: allocate(a),
                creds,
                skew: skew_found(opts, lo, hi),
            })
        }
        Credentials::Fixed { username, .. } => {
            fixed_refused(username, now, t, rep);
            None
        }
    }
}

/// The verdict when the first credential was accepted: the skew is below its lifetime.
fn no_skew(opts: &Options, first: &Credential, now: u64) -> Skew {
    let left = rest_expiry(&first.0).map_or(0, |e| e.saturating_sub(now));
    let detail = match &opts.credentials {
        Credentials::Secret(_) => format!(
            "a credential valid for {} from this machine's clock was accepted: the server's clock is less than that ahead",
            human_secs(opts.ttl.as_secs())
        ),
        Credentials::Fixed { .. } if left > 0 => format!(
            "the credential, valid for {} more by this machine's clock, was accepted: the server's clock is less than that ahead",
            human_secs(left)
        ),
        Credentials::Fixed { .. } => "the credential was accepted".to_owned(),
    };
    Skew {
        verdict: Verdict::Pass,
        detail,
        problem: None,
    }
}

/// A fresh credential was refused: either the secret differs or the server's clock is so
/// far ahead that it has already expired there. Longer-lived credentials tell them apart.
/// Servers may also refuse a credential that lives too long (turnpike:
/// auth.max_credential_ttl, 30 days by default), so the lifetimes double from the fresh
/// one: the first accepted is at most twice the skew, within any such cap for skews up to
/// a month; a few long steps cover bigger ones on uncapped servers. Then halving finds the
/// skew to the minute. Returns (lo, hi]: the skew's bounds in seconds, `None` when no
/// lifetime was accepted.
fn find_skew(ctx: &Ctx, mint: &impl Fn(u64) -> Credential) -> Option<(u64, u64)> {
    let mut lo = ctx.opts.ttl.as_secs();
    let mut hi = None;
    for ttl in ladder(ctx.opts.ttl.as_secs()) {
        match accepted(ctx, &mint(ttl)) {
            Some(true) => {
                hi = Some(ttl);
                break;
            }
            Some(false) => lo = ttl,
            None => break,
        }
    }
    let mut hi = hi?;
    for _ in 0..30 {
        if hi - lo <= 60 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        match accepted(ctx, &mint(mid)) {
            Some(true) => hi = mid,
            Some(false) => lo = mid,
            None => break,
        }
    }
    Some((lo, hi))
}

/// The credential lifetimes to try: doubling from the fresh one up to 29 days, then a few
/// long steps up to ten years.
fn ladder(ttl: u64) -> Vec<u64> {
    let mut ladder = Vec::new();
    let mut ttl = ttl.max(60) * 2;
    while ttl < 29 * 86400 {
        ladder.push(ttl);
        ttl *= 2;
    }
    ladder.extend([29, 90, 365, 3 * 365, 10 * 365].map(|d| d * 86400));
    ladder
}

fn skew_found(opts: &Options, lo: u64, hi: u64) -> Skew {
    Skew {
        verdict: Verdict::Fail,
        detail: format!(
            "the server's clock is about {} ahead of this machine's: a credential valid for {} is already expired there, one valid for {} works. Fix the time (NTP) on the server or the credential issuer",
            // The skew lies in (lo, hi]: the middle, to the minute.
            human_secs(((lo + hi) / 2 + 30) / 60 * 60),
            human_secs(opts.ttl.as_secs()),
            human_secs(hi)
        ),
        problem: Some("clock_skew"),
    }
}

/// Every lifetime was refused: the secret is wrong, and the clock is not the cause.
fn wrong_secret(rep: &mut Report, t: Instant, t_auth: Instant) {
    rep.push(step(
        "Allocate",
        t,
        Verdict::Fail,
        "401 Unauthorized: the secret is wrong - the server refused a fresh credential and longer-lived ones (up to ten years) too, so its clock is not the cause. The secret in the app backend (or --secret) differs from the server's (turnpike: auth.secrets, coturn: static-auth-secret)".into(),
        Some("wrong_secret"),
        json!(null),
    ));
    rep.push(step(
        "Clock skew",
        t_auth,
        Verdict::Skip,
        "not the cause of the 401 (longer-lived credentials were refused too)".into(),
        None,
        json!(null),
    ));
    skip_rest(rep, &TURN_STEPS[3..], "no allocation");
}

/// A fixed credential was refused: expired by this machine's clock, or wrong.
fn fixed_refused(username: &str, now: u64, t: Instant, rep: &mut Report) {
    let (problem, detail) = match rest_expiry(username) {
        Some(exp) if exp <= now => (
            "credential_expired",
            format!(
                "401 Unauthorized: this credential expired {} ago by this machine's clock",
                human_secs(now - exp)
            ),
        ),
        _ => (
            "wrong_secret",
            "401 Unauthorized: wrong password, or the secret that minted it differs from the server's, or the server's clock is ahead of the issuer's (use --secret to tell these apart)".to_owned(),
        ),
    };
    rep.push(step(
        "Allocate",
        t,
        Verdict::Fail,
        detail,
        Some(problem),
        json!(null),
    ));
    skip_rest(rep, &TURN_STEPS[2..], "no allocation");
}

fn human_secs(s: u64) -> String {
    if s >= 86400 {
        format!("{}d {}h", s / 86400, s % 86400 / 3600)
    } else if s >= 3600 {
        match s % 3600 / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h {m}m", s / 3600),
        }
    } else if s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The probe's wall clock, unix seconds.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
