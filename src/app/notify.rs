//! systemd's service notification protocol (`Type=notify`, sd_notify(3)). Every call is a
//! no-op when the process was not started by systemd (no NOTIFY_SOCKET).
//!
//! READY=1 is sent once listeners and relay ports are proven bindable; RELOADING=1 (with
//! MONOTONIC_USEC, which systemd 253's `Type=notify-reload` requires) and READY=1 bracket
//! a reload; STOPPING=1 starts the drain. WATCHDOG=1 is sent only while every shard loop
//! keeps turning, so a stuck shard gets the service restarted.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::runtime::Node;

/// Cleared once this process has named another one main PID (a handover): systemd then
/// listens to that one only, so this one stops pinging.
static MAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(t) = NotifyState::monotonic_usec_now() {
        states.push(t);
    }
    send(&states);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Hands the service over to process `pid` (a handover's new process, in our cgroup).
pub fn main_pid(pid: u32) {
    send(&[
        NotifyState::MainPid(pid),
        NotifyState::Status("relaying (handed over)"),
    ]);
    MAIN.store(false, std::sync::atomic::Ordering::Relaxed);
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Every shard's heartbeat moved since `last` (which is updated). A stopped shard counts
/// as stuck.
pub fn shards_alive(node: &Node, last: &mut Vec<u64>) -> bool {
    let now: Vec<u64> = node.status.iter().map(|s| s.heartbeat()).collect();
    let alive = last.len() == now.len()
        && node
            .status
            .iter()
            .zip(now.iter().zip(last.iter()))
            .all(|(s, (n, l))| s.is_running() && n != l);
    *last = now;
    alive
}

/// When systemd set WatchdogSec: pings at a third of it, each time only if every shard
/// loop turned since the last check (shards beat once a second, so WatchdogSec must be
/// several seconds; the shipped unit uses 30 s).
pub fn spawn_watchdog(node: Arc<Node>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 3).max(Duration::from_millis(1500));
    tokio::spawn(async move {
        let mut last: Vec<u64> = node.status.iter().map(|s| s.heartbeat()).collect();
        send(&[NotifyState::Watchdog]);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            if !MAIN.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if shards_alive(&node, &mut last) {
                send(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("a shard loop has stopped turning: withholding the watchdog ping");
            }
        }
    });
}
