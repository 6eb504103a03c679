//! Where the logs go: `log.format` and `log.level` on stderr, each line with its journal
//! priority when stderr is systemd's journal stream (`<3>` error ... `<7>` debug,
//! sd-daemon(3)), so `journalctl -p warning` finds warnings; plain lines otherwise.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogFormat};

/// Installs the process's log subscriber as the config says.
pub fn init(cfg: &Config) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; the journal gets `<N>` priorities instead.
    let writer = Stderr {
        journal: stderr_is_journal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match cfg.log.format {
        LogFormat::Text => builder.with_env_filter(filter).init(),
        LogFormat::Json => builder.json().with_env_filter(filter).init(),
        LogFormat::Logfmt => {
            use tracing_subscriber::prelude::*;
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_logfmt::builder().layer().with_writer(writer))
                .init()
        }
    }
}

/// stderr is the journal when JOURNAL_STREAM names its device and inode.
pub fn stderr_is_journal() -> bool {
    std::env::var("JOURNAL_STREAM").is_ok_and(|v| names_file(&v, std::io::stderr().as_fd()))
}

/// Whether `stream` (JOURNAL_STREAM's `<device>:<inode>`) names the file open at `fd`.
fn names_file(stream: &str, fd: BorrowedFd<'_>) -> bool {
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    // A duplicate of the fd is the safe way to a `File`, and so to its metadata.
    let Ok(meta) = fd
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
    else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

pub fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        _ => b"<7>",
    }
}

#[derive(Clone, Copy)]
pub struct Stderr {
    pub journal: bool,
}

pub struct Line {
    prefix: Option<&'static [u8]>,
}

impl Write for Line {
    /// The formatter hands over one whole event per write: prefix and line go out together.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if let Some(p) = self.prefix {
            err.write_all(p)?;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { prefix: None }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            prefix: self.journal.then(|| priority(meta.level())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_the_device_and_inode_of_the_fd() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let m = f.metadata().unwrap();
        assert!(names_file(&format!("{}:{}", m.dev(), m.ino()), f.as_fd()));
        assert!(!names_file(
            &format!("{}:{}", m.dev(), m.ino() + 1),
            f.as_fd()
        ));
        assert!(!names_file(&m.ino().to_string(), f.as_fd()));
    }
}
