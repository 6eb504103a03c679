//! The service's life: start (settings computed once, startup checks, the shards, the
//! HTTP endpoint), signals (reload, drain, stop), the systemd notifications that go with
//! them, and the drain before exit. It sits above `http` and `runtime` and is the only
//! part that knows about both.
//!
//! Read top-down: `start` and `run` here; `reload` (SIGHUP), `drain` (SIGUSR1/2, SIGTERM),
//! `notify` (systemd), `checks` (what the host must allow before binding) and `logging`.

pub mod checks;
mod drain;
mod handover;
pub mod logging;
pub mod notify;
mod reload;

use handover::Stop;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::http::HttpState;
use crate::settings::Settings;

/// Runs the service on `config` until it is stopped: installs the logs, computes the
/// settings, announces a generated secret, and runs `run` on a tokio runtime. `reload`
/// produces the config a SIGHUP applies.
pub fn start(config: Config, reload: impl Fn() -> anyhow::Result<Config>) -> anyhow::Result<()> {
    logging::init(&config);
    let settings = Settings::new(config)?;
    if settings.secret_generated {
        announce_secret(&settings.secrets[0]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio runtime")?;
    rt.block_on(run(settings, reload))
}

/// Printed once on stdout (not the log), because nobody could use the server otherwise.
fn announce_secret(secret: &str) {
    // The running binary's own path: after `cargo run`, `turnpike` is not on PATH.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "turnpike".into());
    let exe = if exe
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        exe
    } else {
        format!("'{}'", exe.replace('\'', r"'\''"))
    };
    println!(
        "No auth secret configured; generated one for this run.\n\
         Mint a credential with:  TURNPIKE_SECRET='{secret}' {exe} credentials --user alice\n\
         or set auth.secrets in the config (or TURNPIKE_SECRET) to keep it across restarts."
    );
}

/// Runs the server until SIGTERM (drain, then stop) or SIGINT (stop now): starts the
/// shards and the HTTP endpoint, tells systemd, and handles SIGHUP (reload with the
/// config `reload` produces), SIGUSR1/SIGUSR2 (drain on/off).
pub async fn run(
    mut settings: Settings,
    reload: impl Fn() -> anyhow::Result<Config>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (node, incoming, http_listener) = handover::start_node(&settings)?;
    let mut fleet = handover::start_fleet(&settings, &node, incoming.as_ref()).await;
    let slots = fleet.as_ref().map(|f| f.slot_prefix.clone());
    let http = HttpState::with_fleet(
        node.clone(),
        &settings,
        fleet.as_ref().map(|f| f.admin.clone()),
    );
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let (http_task, http_fd) =
        start_http(&settings.config, &http, http_stopped, http_listener).await?;
    if let Some(i) = incoming {
        handover::took_over(i, fleet.as_mut(), &node.metrics).await;
    }
    let mut urg = signal(SignalKind::from_raw(libc::SIGURG))?;
    let mut restart = signal(SignalKind::from_raw(handover::restart_signal()))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    // Every listener and the relay range were bound above: now systemd may call us started.
    notify::ready("relaying");
    notify::spawn_watchdog(node.clone());
    let stop = loop {
        tokio::select! {
            _ = term.recv() => break Stop::Drain,
            // Ctrl-C: a person at a terminal wants it stopped now.
            _ = int.recv() => break Stop::Now,
            _ = urg.recv() => {
                if let Some(h) = handover::on_signal(&node, &settings, http_fd, slots.clone()).await {
                    break Stop::Handed(h);
                }
            }
            // systemd's RestartKillSignal=: hand over through its store (handover/store.rs).
            _ = restart.recv() => break handover::on_restart(&node, &settings, http_fd, slots).await,
            _ = usr1.recv() => drain::on_signal(&node, fleet.as_ref(), true).await,
            _ = usr2.recv() => drain::on_signal(&node, fleet.as_ref(), false).await,
            _ = hup.recv() => {
                if let Some(new) = reload::apply(&reload, &node, &http, &settings) {
                    settings = new;
                }
            }
        }
    };
    let timeout = settings.config.server.drain_timeout;
    let mut stop_http = Some(stop_http);
    if matches!(stop, Stop::Handed(handover::Handed::Over) | Stop::Stored) {
        // The new process answers on the same HTTP listener now (or will), and writes
        // the node's fleet record (same node name): this one must not delete it.
        let _ = stop_http.take().map(|s| s.send(()));
        fleet.as_ref().inspect(|f| f.hand_over());
    }
    match &stop {
        Stop::Drain => drain::then_stop(&node, fleet.as_ref(), timeout, &mut term, &mut int).await,
        Stop::Now | Stop::Stored => notify::stopping("stopping"),
        Stop::Handed(_) => handover::drain_quietly(&node, timeout).await,
    }
    tracing::info!("shutting down");
    let _ = stop_http.map(|s| s.send(()));
    if let Some(t) = http_task {
        let _ = t.await;
    }
    // The shards first: the allocations they end give their fleet quota slots back
    // through the fleet's task, which leaves after them.
    tokio::task::spawn_blocking(move || node.shutdown()).await?;
    if let Some(f) = fleet {
        f.leave().await;
    }
    // Only now may the new process read the listeners: this one has stopped.
    if let Stop::Handed(handover::Handed::Declined(next)) = stop {
        next.release();
    }
    Ok(())
}

/// Serves the HTTP endpoint (when enabled) until `stop` fires.
async fn start_http(
    cfg: &Config,
    http: &Arc<HttpState>,
    stop: tokio::sync::oneshot::Receiver<()>,
    adopted: Option<std::net::TcpListener>,
) -> anyhow::Result<(Option<tokio::task::JoinHandle<()>>, Option<RawFd>)> {
    if !cfg.http.enabled {
        return Ok((None, None));
    }
    let listener = match adopted {
        // The old process's, after a handover: same address, no gap for scrapes.
        Some(l) => {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)?
        }
        None => tokio::net::TcpListener::bind(cfg.http.listen)
            .await
            .with_context(|| format!("http.listen: binding {}", cfg.http.listen))?,
    };
    let fd = listener.as_raw_fd();
    let bound = listener.local_addr().unwrap_or(cfg.http.listen);
    tracing::info!(listen = %bound, "HTTP endpoint up (/metrics, /healthz, /readyz)");
    let state = http.clone();
    Ok((
        Some(tokio::spawn(async move {
            let stop = async {
                let _ = stop.await;
            };
            if let Err(e) = crate::http::serve(listener, state, stop).await {
                tracing::error!(error = %e, "HTTP endpoint failed");
            }
        })),
        Some(fd),
    ))
}
