//! A refused request: the one shape every "no" takes, from the wire reader to the core's
//! method handlers and its admission check.

use super::error_code::StunError;

/// The error code to answer with and the reason phrase to send: the registered one, or a
/// more specific one that helps a developer reading a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub code: StunError,
    pub reason: &'static str,
}

impl Reject {
    /// With the registered reason phrase.
    pub fn of(code: StunError) -> Self {
        Reject {
            code,
            reason: code.reason(),
        }
    }

    /// With a reason phrase of its own.
    pub fn new(code: StunError, reason: &'static str) -> Self {
        Reject { code, reason }
    }
}
