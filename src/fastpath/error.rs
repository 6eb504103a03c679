//! Why the fast path could not load, attach or update its maps: the shell logs it and
//! stays on the socket path.
use aya::maps::MapError;
use aya::programs::ProgramError;

use super::mode::AttachMode;

#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error("this build has no BPF program (clang was missing when it was built)")]
    NotBuilt,
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("BPF program: {0}")]
    Program(#[from] ProgramError),
    #[error("BPF map: {0}")]
    Map(#[from] MapError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot attach to {interface}: {}", .tried.iter().map(|(m, e)| format!("{}: {e}", m.label())).collect::<Vec<_>>().join("; "))]
    Attach {
        interface: String,
        tried: Vec<(AttachMode, String)>,
    },
}

/// An error with its causes, "a: b: c": aya's syscall errors keep the errno in a source.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !s.contains(&c_text) {
            s = format!("{s}: {c_text}");
        }
        cause = c.source();
    }
    s
}
