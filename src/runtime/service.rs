//! The server's life as a service: start, signals (reload, drain, stop), the systemd
//! notifications that go with them, and the drain before exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{Relay, checks, notify};
use crate::config::Config;
use crate::http::HttpState;
use crate::metrics::Metrics;

/// The REST secrets a reloaded config brings; one without any keeps those in force
/// (generated at start, or TURNPIKE_SECRET as it was then).
fn reloaded_secrets(new: &Config, running: &[String]) -> Vec<String> {
    if new.auth.secrets.is_empty() && new.auth.users.is_empty() {
        running.to_vec()
    } else {
        new.auth.secret_strings()
    }
}

/// Runs the server until SIGTERM (drain, then stop) or SIGINT (stop now): starts the
/// shards and the HTTP endpoint, tells systemd, and handles SIGHUP (reload with the
/// config `reload` produces), SIGUSR1/SIGUSR2 (drain on/off).
pub async fn run(
    cfg: Config,
    secrets: Vec<String>,
    reload: impl Fn() -> anyhow::Result<Config>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Refuse to start on what would only show later as 508s or a silently shared port.
    checks::startup(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    let relay = Arc::new(Relay::start(&cfg, &secrets, metrics)?);
    let http = HttpState::new(relay.clone(), &cfg, &secrets);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = start_http(&cfg, &http, http_stopped).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    // Every listener and the relay range were bound above: now systemd may call us started.
    notify::ready("relaying");
    notify::spawn_watchdog(relay.clone());
    let mut drain_timeout = cfg.server.drain_timeout;
    let drain = loop {
        tokio::select! {
            _ = term.recv() => break true,
            // Ctrl-C: a person at a terminal wants it stopped now.
            _ = int.recv() => break false,
            _ = usr1.recv() => {
                set_draining(&relay, true).await;
                notify::status("draining (SIGUSR1): new allocations refused");
                tracing::info!("draining on SIGUSR1: /readyz reports 503, new Allocates are refused; SIGUSR2 resumes");
            }
            _ = usr2.recv() => {
                set_draining(&relay, false).await;
                notify::status("relaying");
                tracing::info!("drain ended on SIGUSR2: accepting new allocations");
            }
            _ = hup.recv() => {
                if let Some(t) = reload_now(&reload, &relay, &http, &secrets) {
                    drain_timeout = t;
                }
            }
        }
    };
    if drain {
        drain_then_stop(&relay, drain_timeout, &mut term, &mut int).await;
    } else {
        notify::stopping("stopping");
    }
    tracing::info!("shutting down");
    let _ = stop_http.send(());
    if let Some(t) = http_task {
        let _ = t.await;
    }
    tokio::task::spawn_blocking(move || relay.shutdown()).await?;
    Ok(())
}

/// Serves the HTTP endpoint (when enabled) until `stop` fires.
async fn start_http(
    cfg: &Config,
    http: &Arc<HttpState>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !cfg.http.enabled {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("http.listen: binding {}", cfg.http.listen))?;
    let bound = listener.local_addr().unwrap_or(cfg.http.listen);
    tracing::info!(listen = %bound, "HTTP endpoint up (/metrics, /healthz, /readyz)");
    let state = http.clone();
    Ok(Some(tokio::spawn(async move {
        let stop = async {
            let _ = stop.await;
        };
        if let Err(e) = crate::http::serve(listener, state, stop).await {
            tracing::error!(error = %e, "HTTP endpoint failed");
        }
    })))
}

/// SIGHUP: applies the config `reload` produces, all or nothing, telling systemd.
/// Allocations stay: credentials, peer policy, TLS certificate, alternates and the
/// credential API change; listeners and port ranges need a restart. Returns the new
/// drain timeout when the reload took.
fn reload_now(
    reload: &impl Fn() -> anyhow::Result<Config>,
    relay: &Relay,
    http: &HttpState,
    secrets: &[String],
) -> Option<Duration> {
    notify::reloading();
    let result = reload().and_then(|new| {
        let new_secrets = reloaded_secrets(&new, secrets);
        relay.reload(&new, &new_secrets)?;
        http.reload(&new, &new_secrets);
        Ok(new.server.drain_timeout)
    });
    match result {
        Ok(t) => {
            tracing::info!("configuration reloaded");
            notify::ready("relaying; configuration reloaded");
            Some(t)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the running configuration");
            notify::ready("relaying; last reload failed, running configuration kept");
            None
        }
    }
}

/// Starts or ends draining; returns once every shard applied it.
async fn set_draining(relay: &Arc<Relay>, on: bool) {
    let r = relay.clone();
    let _ = tokio::task::spawn_blocking(move || r.drain(on)).await;
}

/// SIGTERM: /readyz turns 503 and new Allocates go elsewhere at once; existing allocations
/// keep relaying until they end or `timeout` passes (or a second SIGTERM/SIGINT comes).
async fn drain_then_stop(
    relay: &Arc<Relay>,
    timeout: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    set_draining(relay, true).await;
    notify::stopping("draining");
    let deadline = tokio::time::Instant::now() + timeout;
    let count = || {
        let r = relay.clone();
        async move {
            tokio::task::spawn_blocking(move || r.allocation_count())
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
