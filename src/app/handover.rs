//! Restart without dropping calls (issue 18): on SIGURG the running process starts the
//! binary at its own path (a new version after an upgrade) with the same arguments, and
//! hands it every listener, every relay socket of a UDP allocation and the shards' states.
//!
//! The old process's side, in order: every shard exports and stands still (nothing read
//! meanwhile: packets wait in the socket buffers); the descriptors are inherited across
//! exec, named in a manifest that travels with the states in a memfd (`payload`); the new
//! process imports, starts its shards on them and says `took-over` over a socketpair.
//! Only then do the old shards forget what they exported, the old process names the new
//! one systemd's main PID (`MAINPID=`, allowed under `NotifyAccess=main`) and leaves.
//! If the new one exits, says nothing for `ANSWER_TIMEOUT` or cannot start, the old
//! shards resume as if nothing happened: the old process never stops relaying before
//! the new one took over.
//!
//! Not handed over: TCP/TLS client connections. The old process keeps serving them (and
//! their allocations, which are left out of the state) until they end or
//! `server.drain_timeout` passes; their listeners go to the new process, which accepts
//! every new connection. Handing over a TLS session would need kernel TLS.
//!
//! With `[cluster]` the new process adopts the fleet quota slots of the allocations it
//! imported (fleet/quota.rs) before it says `took-over`; the old one then gives its names
//! of them back and stops its heartbeat without deleting the node's record, which the
//! new process (same node name) writes from now on. Through systemd's store the old one
//! leaves its slots for the next process to adopt when it starts.
//!
//! A new process that cannot read the state (corrupt, a future version, another shard
//! count or other listeners) says `declined <why>` and logs it; the old one then drains
//! as on SIGTERM, names the new one main PID and exits, and the new one starts empty on
//! the listeners it inherited. Two processes never read the same listener at once.
//!
//! Two ways in. SIGURG (this exec handover) is the one for containers and the
//! foreground; SIGURG because it is ignored by default, so a turnpike that predates
//! handover does nothing on it. Under systemd, `systemctl restart` goes through the file
//! descriptor store instead (store.rs, the unit's `RestartKillSignal=`): the same export,
//! manifest and adoption, but the old process exits before systemd starts the new one.
//! That is weaker when the new binary fails, but the new main process is systemd's own
//! child: after an exec handover it is not, and systemd 252 then SIGKILLs it at once on
//! the next restart (seen in tests/ext_systemd_deb.rs; a stop kills the same way).

mod incoming;
mod payload;
mod store;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::runtime::Node;
use crate::runtime::adopt::listener_order;
use crate::runtime::handover::Exported;
use crate::runtime::shard::export::Verdict;
use crate::settings::Settings;

use incoming::Incoming;
use payload::{ENV, Manifest, ShardFds};
pub(super) use store::restart_signal;

/// Test hook: "corrupt" or "future" spoils the states this process hands over, so that
/// a test can watch the new process decline them.
const TEST_STATE: &str = "TURNPIKE_TEST_HANDOVER_STATE";
/// How long the new process may take to start and take over (below the shards' own
/// limit on standing still, 30 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the signal loop ended.
pub(super) enum Stop {
    /// SIGTERM: drain, then exit.
    Drain,
    /// SIGINT: exit now.
    Now,
    /// Everything is in systemd's store for the next process: exit now, leaving the
    /// node's fleet record and quota slots to it.
    Stored,
    /// SIGURG: a new process took over (or will, once this one has drained).
    Handed(Handed),
}

/// How a handover ended for the old process.
pub(super) enum Handed {
    /// The new process serves everything but this process's TCP/TLS connections.
    Over,
    /// The new process could not read the state: drain, then `Successor::release`.
    Declined(Successor),
}

/// A new process waiting for this one to drain and exit.
pub(super) struct Successor {
    pid: u32,
    sock: UnixStream,
}

impl Successor {
    /// Makes the new process systemd's main process, and lets it start.
    pub(super) fn release(self) {
        super::notify::main_pid(self.pid);
        drop(self.sock);
    }
}

/// systemd's RestartKillSignal= (store.rs): `Stop::Stored` once everything is in the
/// store (the UDP allocations are forgotten here, what stays ends); else `Stop::Drain`,
/// as on SIGTERM. `fleet_slots`: how this process names its fleet quota slots.
pub(super) async fn on_restart(
    node: &Arc<Node>,
    s: &Settings,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> Stop {
    match stored(node, s, http, fleet_slots).await {
        true => Stop::Stored,
        false => Stop::Drain,
    }
}

async fn stored(
    node: &Arc<Node>,
    s: &Settings,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        tracing::warn!("restart signal without systemd's store: draining");
        return false;
    }
    let listeners = listener_order(s)
        .into_iter()
        .map(|(t, a)| (t.label().to_owned(), a))
        .collect();
    let n = node.clone();
    let run = move || -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let exported = n
            .export_for_handover()
            .context("a shard did not answer the export")?;
        let stored = write_payload(&n, &exported, listeners, http, fleet_slots)
            .and_then(|(m, memfd)| store::store_all(&m, memfd.as_raw_fd()));
        // The next process starts once this one exits: it adopts the fleet slots then.
        exported.settle(match stored {
            Ok(()) => Verdict::Stored,
            Err(_) => Verdict::Resume,
        });
        stored?;
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            "restart: sockets and calls are in systemd's store for the next process"
        );
        Ok(())
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "restart: could not use systemd's store: draining"
            );
            false
        }
        Err(_) => false,
    }
}

/// Starts the node: on what the previous process handed over when this one was started
/// by a handover, else on listeners bound here after the startup checks. The
/// `Incoming` is to be finished once the HTTP endpoint runs (on the returned listener).
pub(super) fn start_node(
    s: &Settings,
) -> anyhow::Result<(Arc<Node>, Option<Incoming>, Option<std::net::TcpListener>)> {
    let mut incoming = incoming::incoming(s);
    // Refuse to start on what would only show later as 508s or a silently shared port
    // (after a handover the listeners are the old process's, in use by design).
    match &mut incoming {
        None => super::checks::startup(s)?,
        Some(i) => {
            super::checks::relay_range(s)?;
            i.before_start(s.config.server.drain_timeout);
        }
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let adopted = incoming.as_mut().and_then(|i| i.adopted.take());
    let http = incoming.as_mut().and_then(|i| i.http.take());
    let node = Arc::new(Node::start_adopting(s, metrics, adopted)?);
    Ok((node, incoming, http))
}

/// Joins the fleet (`[cluster]`), taking over the fleet quota slots of the process that
/// handed over to this one (`incoming`), if any. Returns once the first heartbeat has
/// read the fleet, so that HTTP, started next, never answers from an empty view.
pub(super) async fn start_fleet(
    s: &Settings,
    node: &Arc<Node>,
    incoming: Option<&Incoming>,
) -> Option<crate::fleet::Fleet> {
    let previous = incoming.and_then(|i| i.fleet_slots.clone());
    let c = s.cluster.clone()?;
    let mut fleet = crate::fleet::Fleet::start(node.clone(), c, previous);
    fleet.first_beat().await;
    Some(fleet)
}

/// How long a new process waits for Redis to take the handed-over fleet slots before it
/// answers `took-over` anyway (the old one waits `ANSWER_TIMEOUT` for that answer).
const ADOPT_LIMIT: Duration = Duration::from_secs(5);

/// The new process, once its shards and HTTP endpoint run: tells the old one it took
/// over. The old one gives its names of the fleet slots back when told, so ours must be
/// in Redis first, or the user's count would dip.
pub(super) async fn took_over(
    incoming: Incoming,
    fleet: Option<&mut crate::fleet::Fleet>,
    metrics: &crate::metrics::Metrics,
) {
    if let Some(f) = fleet {
        f.slots_adopted(ADOPT_LIMIT).await;
    }
    incoming.finish(metrics);
}

/// SIGURG: hands everything over to a new process. None when this process goes on
/// serving (the handover failed or is not possible; the log says why).
pub(super) async fn on_signal(
    node: &Arc<Node>,
    s: &Settings,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> Option<Handed> {
    let result = |r: &str| node.metrics.handovers.with_label_values(&[r]).inc();
    tracing::info!("handover requested (SIGURG): starting the new process");
    let listeners = listener_order(s)
        .into_iter()
        .map(|(t, a)| (t.label().to_owned(), a))
        .collect();
    let n = node.clone();
    let run = move || hand_over(&n, listeners, http, fleet_slots);
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(h)) => Some(h),
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "handover failed: still serving");
            result("failed");
            None
        }
        Err(_) => None,
    }
}

fn hand_over(
    node: &Node,
    listeners: Vec<(String, std::net::SocketAddr)>,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> anyhow::Result<Handed> {
    let started = Instant::now();
    let exported = node
        .export_for_handover()
        .context("a shard did not answer the export")?;
    let (mut child, sock) = match launch(node, &exported, listeners, http, fleet_slots) {
        Ok(c) => c,
        Err(e) => {
            exported.settle(Verdict::Resume);
            return Err(e);
        }
    };
    let answer = read_answer(&sock);
    match answer.as_deref() {
        Some("took-over") => {
            let (moved, kept) = exported
                .shards
                .iter()
                .fold((0, 0), |(m, k), s| (m + s.allocations, k + s.kept));
            // It says so only after adopting the fleet slots.
            exported.settle(Verdict::TookOver);
            super::notify::main_pid(child.id());
            let _ = (&sock).write_all(b"mainpid\n");
            tracing::info!(
                new_pid = child.id(),
                allocations = moved,
                kept_tcp_tls = kept,
                duration_ms = started.elapsed().as_millis() as u64,
                "handover done: the new process serves; this one keeps its TCP/TLS connections until they end"
            );
            Ok(Handed::Over)
        }
        Some(d) if d.starts_with("declined") => {
            exported.settle(Verdict::Resume);
            let why = d.trim_start_matches("declined").trim();
            tracing::warn!(
                new_pid = child.id(),
                why,
                "handover declined by the new process: draining, then it starts empty"
            );
            node.metrics
                .handovers
                .with_label_values(&["declined"])
                .inc();
            Ok(Handed::Declined(Successor {
                pid: child.id(),
                sock,
            }))
        }
        other => {
            exported.settle(Verdict::Resume);
            // Our own child: make sure it is gone before the shards read again.
            let _ = child.kill();
            let status = child.wait();
            anyhow::bail!("the new process did not take over (answer {other:?}, exit {status:?})")
        }
    }
}

/// One line from the new process, None on EOF, error or timeout.
fn read_answer(sock: &UnixStream) -> Option<String> {
    sock.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    let mut line = String::new();
    match BufReader::new(sock).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim().to_owned()),
        _ => None,
    }
}

/// Writes the payload to a memfd and starts the new process with it and every
/// descriptor it names.
fn launch(
    node: &Node,
    exported: &Exported,
    listeners: Vec<(String, std::net::SocketAddr)>,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> anyhow::Result<(std::process::Child, UnixStream)> {
    let (manifest, memfd) = write_payload(node, exported, listeners, http, fleet_slots)?;
    spawn(&manifest, memfd)
}

/// The manifest and a memfd holding it with every shard's state.
fn write_payload(
    node: &Node,
    exported: &Exported,
    listeners: Vec<(String, std::net::SocketAddr)>,
    http: Option<RawFd>,
    fleet_slots: Option<String>,
) -> anyhow::Result<(Manifest, OwnedFd)> {
    let spoil = std::env::var(TEST_STATE).ok();
    let mut states = Vec::new();
    let mut shards = Vec::new();
    for e in &exported.shards {
        let mut state = e.state.clone();
        match spoil.as_deref() {
            Some("corrupt") => *state.last_mut().expect("a state is never empty") ^= 0xff,
            // The version follows the 8-byte magic.
            Some("future") => state[8..12].copy_from_slice(&u32::MAX.to_be_bytes()),
            _ => {}
        }
        shards.push(ShardFds {
            udp: e.udp.clone(),
            tcp: e.tcp.iter().map(|(fd, _)| *fd).collect(),
            relays: e.relays.clone(),
            state_len: state.len(),
        });
        states.push(state);
    }
    let handovers = ["took_over", "declined", "failed"]
        .iter()
        .map(|r| {
            (
                r.to_string(),
                node.metrics.handovers.with_label_values(&[r]).get(),
            )
        })
        .collect();
    let manifest = Manifest {
        old_pid: std::process::id(),
        listeners,
        http,
        shards,
        handovers,
        fleet_slots,
    };
    let memfd = memfd(&payload::write(&manifest, &states))?;
    Ok((manifest, memfd))
}

/// Starts the new process with the payload and every descriptor the manifest names.
fn spawn(manifest: &Manifest, memfd: OwnedFd) -> anyhow::Result<(std::process::Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair().context("socketpair")?;
    let mut fds = manifest.fds();
    fds.extend([memfd.as_raw_fd(), theirs.as_raw_fd()]);
    let mut cmd = std::process::Command::new(own_path());
    cmd.args(std::env::args_os().skip(1))
        .env(ENV, format!("{},{}", memfd.as_raw_fd(), theirs.as_raw_fd()))
        // systemd's WATCHDOG_PID names this process: without it the new one pings too
        // (once it is the main process, the only one systemd listens to).
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only fcntl, which is async-signal-safe, on a list
    // built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the new process")?;
    Ok((child, ours))
}

/// The binary to start: the path this one was started by (after an upgrade, the new
/// file there; /proc/self/exe would name the replaced one).
fn own_path() -> std::path::PathBuf {
    match std::env::args_os().next() {
        Some(a) if a.to_string_lossy().contains('/') => a.into(),
        _ => std::env::current_exe().unwrap_or_else(|_| "turnpike".into()),
    }
}

fn memfd(bytes: &[u8]) -> anyhow::Result<OwnedFd> {
    // SAFETY: a constant C string; the descriptor returned is ours alone.
    let fd = unsafe { libc::memfd_create(c"turnpike-handover".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).context("writing the handover state")?;
    Ok(f.into())
}

/// After a handover: serves what stayed here (TCP/TLS connections, or everything when
/// the new process declined) until it ends or `timeout` passes. Says nothing to systemd:
/// it is the new process's service now, or will be.
pub(super) async fn drain_quietly(node: &Arc<Node>, timeout: Duration) {
    let n = node.clone();
    let _ = tokio::task::spawn_blocking(move || n.drain(true)).await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = node.clone();
        let left = tokio::task::spawn_blocking(move || n.allocation_count())
            .await
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(
                allocations = left,
                "drain timeout after handover: ending the rest"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
