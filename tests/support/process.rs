//! The turnpike binary as a child process: where it is, a guard that stops it, signals,
//! and the lines it prints, collected so a test can wait for one.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary this test run built.
pub const BIN: &str = env!("CARGO_BIN_EXE_turnpike");

/// The binary under test: `TURNPIKE_BIN` when set (another build, an older one say), else
/// this run's.
pub fn bin() -> String {
    std::env::var("TURNPIKE_BIN").unwrap_or_else(|_| BIN.into())
}

/// A process this test started; killed (by its own PID) and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to a child this test started.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the PID of a child this test started.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// The lines a child prints on its piped stdout and stderr, collected as they come (the
/// child never blocks on a full pipe).
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Starts collecting what `child` prints on whichever of stdout and stderr is piped.
    pub fn collect(child: &mut Child) -> Lines {
        let lines = Lines::default();
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>);
        for pipe in [out, err].into_iter().flatten() {
            let l = lines.0.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            });
        }
        lines
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Every line so far containing `needle`.
    pub fn all(&self, needle: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The first line containing `needle`, waiting up to `within` for it.
    #[track_caller]
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self.0.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                t.elapsed() < within,
                "no line with {needle:?} within {within:?}:\n{}",
                self.0.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The new process's PID in a handover's log line (`new_pid=N`, or `"new_pid":N` in JSON).
pub fn pid_in(line: &str) -> u32 {
    line.split("new_pid")
        .nth(1)
        .map(|s| s.trim_start_matches(['=', '"', ':']))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no new_pid in {line}"))
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}
