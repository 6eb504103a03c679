//! What `import-coturn` could not carry over, and why.

/// A coturn option that has no turnpike equivalent (or a value that cannot be used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// 1-based line in the coturn file; 0 for a default coturn applies without a line.
    pub line: usize,
    pub option: String,
    pub reason: String,
}

impl std::fmt::Display for Unmapped {
    // The option's value is never shown: it may be a password or a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "`{}`: {}", self.option, self.reason)
        } else {
            write!(f, "line {} `{}`: {}", self.line, self.option, self.reason)
        }
    }
}
