//! End-to-end calls with real WebRTC stacks, driven from here so `cargo test` runs them:
//! headless Chromium through turnpike on loopback (UDP, TCP, TLS, wrong credential), and
//! across a SIGURG handover (UDP, TCP, SIGKILL as the negative control), two
//! Chromiums behind simulated NATs in network namespaces (root), both browsers redirected
//! by a draining or full node (namespaces, root), calls in a two-node fleet relayed where
//! one node's credential API sends them, before and after a drain (namespaces, Redis,
//! root), headless Firefox (alone and with Chromium) in a namespace of its own, calls in
//! both browsers whose credential expires mid-call (lenient, strict and max-session
//! policies), the self-test page (GET /selftest) against a healthy server and one whose
//! relay range nftables blocks, aiortc, and a Chromium call whose relayed packets the
//! kernel fast path (native XDP) carries (namespaces, root). The scripts live in
//! tests/browser/ and start turnpike themselves (TURNPIKE_BIN).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The browser tests share 2 cores: one at a time keeps their timings meaningful.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long one script may take before it is stopped (they take 7-90 s).
const DEADLINE: Duration = Duration::from_secs(300);

fn run(program: &str, script: &str) {
    run_with(program, script, &[]);
}

/// `run` with extra environment variables for the script.
fn run_with(program: &str, script: &str, env: &[(&str, &std::ffi::OsStr)]) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let bin = support::bin();
    let local = dir.join(program);
    let program = if local.exists() {
        local
    } else {
        program.into()
    };
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && dir.join("node_modules/puppeteer-core").exists()
            && dir.join(".venv/bin/python").exists(),
        "browser test dependencies missing: run scripts/install-test-deps.sh"
    );
    let t = Instant::now();
    // Output streams through as the script runs, so a stuck case shows where it is.
    let mut child = Command::new(&program)
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("TURNPIKE_BIN", bin)
        .envs(env.iter().copied())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > DEADLINE {
            // SIGTERM first: the scripts tear down their namespaces and processes on it.
            support::signal(&child, libc::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{script}: {:.1}s", t.elapsed().as_secs_f64());
    assert!(
        status.success(),
        "{script} failed ({status}); its output is above"
    );
}

#[test]
fn chromium_calls_through_turnpike_on_loopback() {
    run("node", "loopback.mjs");
}

/// A relay-only Chromium call (data channels, fake camera and microphone) across a SIGURG
/// handover: over UDP it stays connected on the same candidate pair with no ICE restart and
/// its data keeps flowing through the new process; over TCP it stays with the old process
/// while the new one serves a new UDP call; SIGKILL and a restart (the negative control)
/// breaks the call and the same checks say so.
#[test]
fn chromium_calls_survive_a_sigurg_handover() {
    run("node", "handover.mjs");
}

/// A relay-only Chromium (turnpike over UDP) calls one with host candidates only, media and
/// a data channel, with `[fastpath]` on native XDP behind a router: /metrics says the kernel
/// carried at least 80% of each direction's packets; once the sessions API ends the
/// allocation it carries none, and with the fast path off the call works with none
/// (root: network namespaces, BPF).
#[test]
fn chromium_call_is_relayed_by_the_kernel_fastpath() {
    run("node", "fastpath.mjs");
}

#[test]
fn chromium_behind_symmetric_nats_connects_only_through_turnpike() {
    run("node", "nat.mjs");
}

/// Draining and full nodes send relay-only calls in both browsers to their alternate,
/// which takes them at the first try (root: network namespaces, symmetric NATs).
#[test]
fn chromium_and_firefox_follow_a_draining_or_full_nodes_redirect_at_the_first_try() {
    run("node", "redirect.mjs");
}

/// A fleet of two nodes sharing a redis-server: each page gets its credential from node
/// A's API for its region and the call is relayed by node B; B drains and leaves A's
/// credentials within the TTL, a second call lands on A and the first one goes on
/// (root: network namespaces, symmetric NATs).
#[test]
fn chromium_calls_go_to_the_fleet_node_the_credential_api_names_before_and_after_a_drain() {
    run("node", "fleet_call.mjs");
}

/// client/turnpike.js in Chromium and Firefox on one network, behind cone NATs, behind
/// symmetric NATs and with the relay unreachable: each end reports how it connected and
/// /metrics counts exactly that; early candidates connect with the module and fail
/// without it (root: network namespaces).
#[test]
fn browser_module_connects_calls_and_reports_how_each_connected() {
    run("node", "module.mjs");
}

/// The README's example app (examples/call/index.html) in two Chromium tabs: both show
/// "connected", turnpike counts both reports, and target/tmp/example-call.png shows it.
#[test]
fn example_app_connects_in_two_tabs_and_reports_both() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = shots.join("example-call.png");
    let _ = std::fs::remove_file(&shot);
    run_with(
        "node",
        "example_call.mjs",
        &[("SCREENSHOT_DIR", shots.as_os_str())],
    );
    let len = std::fs::metadata(&shot).map_or(0, |m| m.len());
    assert!(
        len > 2_000,
        "screenshot {} missing or empty",
        shot.display()
    );
}

#[test]
fn firefox_calls_through_turnpike_and_with_chromium() {
    run("node", "firefox.mjs");
}

#[test]
fn calls_outlive_their_credential_unless_strict_chromium_and_firefox() {
    run("node", "expiry.mjs");
}

#[test]
fn aiortc_relay_only_call() {
    run(".venv/bin/python", "aiortc_relay.py");
}

/// "works" for UDP, TCP and TLS against a healthy turnpike, and the failure in words against
/// one whose relay port range is blocked by nftables in a network namespace (root). Its
/// screenshots land in target/tmp/.
#[test]
fn selftest_page_reads_works_for_a_healthy_server_and_names_a_blocked_relay_range() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    const SHOTS: [&str; 2] = ["selftest-healthy.png", "selftest-blocked-relay-range.png"];
    // Old screenshots must not pass for new ones.
    for shot in SHOTS {
        let _ = std::fs::remove_file(shots.join(shot));
    }
    run_with(
        "node",
        "selftest.mjs",
        &[("SCREENSHOT_DIR", shots.as_os_str())],
    );
    for shot in SHOTS {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {shot} missing or empty");
    }
}
