//! Draining: stop admitting new allocations while the existing ones keep relaying, on
//! SIGUSR1 (until SIGUSR2) and before exit on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::Fleet;
use crate::runtime::Node;

use super::notify;

/// SIGUSR1 (`on`) or SIGUSR2: starts or ends draining, telling systemd and the log.
pub(super) async fn on_signal(node: &Arc<Node>, fleet: Option<&Fleet>, on: bool) {
    set_draining(node, fleet, on).await;
    if on {
        notify::status("draining (SIGUSR1): new allocations refused");
        tracing::info!(
            "draining on SIGUSR1: /readyz reports 503, new Allocates are refused; SIGUSR2 resumes"
        );
    } else {
        notify::status("relaying");
        tracing::info!("drain ended on SIGUSR2: accepting new allocations");
    }
}

/// Starts or ends draining; returns once every shard applied it. The fleet registry
/// hears of it at once, not at the next heartbeat.
async fn set_draining(node: &Arc<Node>, fleet: Option<&Fleet>, on: bool) {
    let n = node.clone();
    let _ = tokio::task::spawn_blocking(move || n.drain(on)).await;
    if let Some(f) = fleet {
        f.beat_now();
    }
}

/// SIGTERM: /readyz turns 503 and new Allocates go elsewhere at once; existing allocations
/// keep relaying until they end or `timeout` passes (or a second SIGTERM/SIGINT comes).
pub(super) async fn then_stop(
    node: &Arc<Node>,
    fleet: Option<&Fleet>,
    timeout: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    set_draining(node, fleet, true).await;
    notify::stopping("draining");
    let deadline = tokio::time::Instant::now() + timeout;
    let count = || {
        let n = node.clone();
        async move {
            tokio::task::spawn_blocking(move || n.allocation_count())
                .await
                .unwrap_or(0)
        }
    };
    let n = count().await;
    tracing::info!(
        allocations = n,
        timeout_s = timeout.as_secs_f64(),
        "draining: new allocations refused, existing ones keep relaying"
    );
    let mut n = n;
    while n > 0 {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(allocations = n, "drain timeout: ending the remaining allocations");
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
        n = count().await;
    }
    tracing::info!("drained: no allocation left");
}
