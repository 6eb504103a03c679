//! The new process's side of a handover: read what the old one passed (`ENV`), take its
//! listeners, relay sockets and states, or decline them and say why.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::relay::handover::decode;
use crate::runtime::adopt::{Adopted, AdoptedShard, listener_order};
use crate::runtime::shard::Listeners;
use crate::settings::Settings;

use super::payload::{self, ENV, Manifest};
use super::store::STATE_NAME;

/// What a process started by a handover was given.
pub(crate) struct Incoming {
    /// To the old process (an exec handover); None from systemd's store.
    sock: Option<UnixStream>,
    old_pid: u32,
    pub adopted: Option<Adopted>,
    pub http: Option<std::net::TcpListener>,
    /// Why the state was not taken (then the shards start empty).
    declined: Option<String>,
    handovers: Vec<(String, u64)>,
    /// Names to take out of systemd's store once the shards run: until then a new
    /// process that fails leaves them there for the next one `Restart=` starts.
    stored: Vec<String>,
    /// How the old process named its fleet quota slots (`[cluster]`), to take them over.
    pub fleet_slots: Option<String>,
}

/// Reads what the old process passed, if this process was started by a handover (exec,
/// or systemd's store after a restart).
pub(crate) fn incoming(s: &Settings) -> Option<Incoming> {
    let Ok(v) = std::env::var(ENV) else {
        return from_store(s);
    };
    let (memfd, sock) = v.split_once(',')?;
    let (memfd, sock): (RawFd, RawFd) = (memfd.parse().ok()?, sock.parse().ok()?);
    // SAFETY: both were inherited for this process alone (the old one named them here).
    let (file, sock) = unsafe {
        (
            std::fs::File::from_raw_fd(memfd),
            UnixStream::from_raw_fd(sock),
        )
    };
    let bytes = read_memfd(file);
    let parsed = bytes.and_then(|b| {
        let (m, states) = payload::read(&b)?;
        let states = states.into_iter().map(<[u8]>::to_vec).collect();
        Ok((m, states))
    });
    from_payload(s, parsed, Some(sock))
}

/// The payload: the offset is shared with the old process's descriptor, so read from 0.
fn read_memfd(file: std::fs::File) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0; file.metadata().map(|m| m.len() as usize).unwrap_or(0)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| format!("reading the payload: {e}"))?;
    Ok(bytes)
}

type Parsed = Result<(Manifest, Vec<Vec<u8>>), String>;

fn from_payload(s: &Settings, parsed: Parsed, sock: Option<UnixStream>) -> Option<Incoming> {
    let (m, states) = match parsed {
        Ok(p) => p,
        Err(why) => {
            // Nothing says which descriptors are what: bind afresh once the old one is gone.
            return Some(Incoming {
                sock,
                old_pid: 0,
                adopted: None,
                http: None,
                declined: Some(why),
                handovers: Vec::new(),
                stored: Vec::new(),
                fleet_slots: None,
            });
        }
    };
    let http = m
        .http
        // SAFETY: named by the old process as its HTTP listener, inherited by us alone.
        .map(|fd| unsafe { std::net::TcpListener::from_raw_fd(fd) });
    let states: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
    let (adopted, declined) = adopt(s, &m, &states);
    Some(Incoming {
        sock,
        old_pid: m.old_pid,
        adopted,
        http,
        declined,
        handovers: m.handovers,
        stored: Vec::new(),
        fleet_slots: m.fleet_slots,
    })
}

/// Takes every descriptor the manifest names; the states too when this config and
/// version can use them, else says why not.
fn adopt(s: &Settings, m: &Manifest, states: &[&[u8]]) -> (Option<Adopted>, Option<String>) {
    let ours: Vec<(String, SocketAddr)> = listener_order(s)
        .into_iter()
        .map(|(t, a)| (t.label().to_owned(), a))
        .collect();
    let mut why = None;
    if ours != m.listeners {
        why = Some(format!(
            "the listeners changed ({:?} -> {ours:?})",
            m.listeners
        ));
    } else if m.shards.len() != s.port_slices.len() {
        why = Some(format!(
            "the shard count changed ({} -> {})",
            m.shards.len(),
            s.port_slices.len()
        ));
    }
    let mut decoded = Vec::new();
    for st in states {
        match decode(st) {
            Ok(d) => decoded.push(d),
            Err(e) if why.is_none() => why = Some(format!("the state cannot be read: {e}")),
            Err(_) => {}
        }
    }
    let tls = |i: usize| {
        let tcp = s.config.server.listen_tcp.len();
        if i < tcp {
            crate::relay::Transport::Tcp
        } else {
            crate::relay::Transport::Tls
        }
    };
    let mut token_key = None;
    let mut shards = Vec::new();
    let mut decoded = decoded.into_iter();
    for sh in &m.shards {
        // SAFETY (this block): every descriptor was named by the old process and
        // inherited by this one alone; each is taken once.
        let listeners = Listeners {
            udp: sh
                .udp
                .iter()
                .map(|fd| unsafe { std::net::UdpSocket::from_raw_fd(*fd) })
                .collect(),
            tcp: sh
                .tcp
                .iter()
                .enumerate()
                .map(|(i, fd)| (unsafe { std::net::TcpListener::from_raw_fd(*fd) }, tls(i)))
                .collect(),
        };
        let relays: Vec<_> = sh
            .relays
            .iter()
            .map(|(a, fd)| (*a, unsafe { std::net::UdpSocket::from_raw_fd(*fd) }))
            .collect();
        let state = if why.is_none() { decoded.next() } else { None };
        token_key = token_key.or(state.as_ref().map(|st| st.token_key.0));
        shards.push(AdoptedShard {
            listeners,
            // Declined: the relay sockets are closed here.
            relays: if why.is_none() { relays } else { Vec::new() },
            state,
        });
    }
    // Listeners that are not ours would serve the wrong addresses: bind afresh instead.
    let usable = ours == m.listeners && m.shards.len() == s.port_slices.len();
    let adopted = usable.then_some(Adopted { shards, token_key });
    (adopted, why)
}

impl Incoming {
    /// Before the shards start: when declined, tells the old process why and waits
    /// until it has drained and exited (it goes on reading the listeners until then).
    pub(crate) fn before_start(&mut self, drain: Duration) {
        let Some(why) = &self.declined else { return };
        tracing::warn!(
            old_pid = self.old_pid,
            why = why.as_str(),
            "handover: not taking the calls over; the old process drains, then this one starts empty"
        );
        // From the store there is no old process left to wait for.
        let Some(sock) = &self.sock else { return };
        let _ = (&*sock).write_all(format!("declined {why}\n").as_bytes());
        let _ = sock.set_read_timeout(Some(drain + Duration::from_secs(60)));
        let mut rest = Vec::new();
        let _ = (&*sock).read_to_end(&mut rest);
    }

    /// Once the shards run: tells the old process, and waits (bounded) until it has
    /// made this process systemd's main process, so that READY=1 is accepted.
    pub(crate) fn finish(self, metrics: &Metrics) {
        super::store::remove(&self.stored);
        for (result, n) in &self.handovers {
            metrics.handovers.with_label_values(&[result]).inc_by(*n);
        }
        if self.declined.is_some() {
            return;
        }
        metrics.handovers.with_label_values(&["took_over"]).inc();
        if let Some(sock) = &self.sock {
            let _ = (&*sock).write_all(b"took-over\n");
            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let _ = BufReader::new(sock).read_line(&mut line);
        }
        tracing::info!(
            old_pid = self.old_pid,
            "handover: took over from the old process"
        );
    }
}

/// After `systemctl restart`: what the previous process put in systemd's store (see
/// store.rs). Empties the store and closes what it does not use.
fn from_store(s: &Settings) -> Option<Incoming> {
    if std::env::var("LISTEN_PID").ok()? != std::process::id().to_string() {
        return None;
    }
    let n: RawFd = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let names: Vec<String> = names.split(':').map(str::to_owned).collect();
    let fds: Vec<(RawFd, String)> = (0..n)
        .map(|i| (3 + i, names.get(i as usize).cloned().unwrap_or_default()))
        .collect();
    let state = fds.iter().find(|(_, n)| n == STATE_NAME).map(|(fd, _)| *fd);
    let by_name: std::collections::HashMap<&str, RawFd> =
        fds.iter().map(|(fd, n)| (n.as_str(), *fd)).collect();
    let old_to_new = |old: RawFd| by_name.get(format!("fd{old}").as_str()).copied();
    let parsed = match state {
        // SAFETY: passed by systemd for this process alone, taken once.
        Some(fd) => read_memfd(unsafe { std::fs::File::from_raw_fd(fd) }).and_then(|b| {
            let (mut m, states) = payload::read(&b)?;
            m.renumber(old_to_new)
                .map_err(|fd| format!("descriptor {fd} missing from the store"))?;
            Ok((m, states.into_iter().map(<[u8]>::to_vec).collect()))
        }),
        None => Err("no state in systemd's store".into()),
    };
    // What the manifest does not name is closed: a stray socket would keep its port.
    let used: std::collections::HashSet<RawFd> = parsed
        .as_ref()
        .map(|(m, _)| m.fds().into_iter().collect())
        .unwrap_or_default();
    for (fd, _) in &fds {
        if Some(*fd) != state && !used.contains(fd) {
            // SAFETY: passed by systemd for this process alone and used by nothing.
            drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(*fd) });
        }
    }
    if state.is_none() {
        // Nothing to take over: only empty the store.
        super::store::remove(&names);
        return None;
    }
    tracing::info!(
        descriptors = fds.len(),
        "restart: taking over from systemd's store"
    );
    let mut incoming = from_payload(s, parsed, None)?;
    incoming.stored = names;
    Some(incoming)
}
