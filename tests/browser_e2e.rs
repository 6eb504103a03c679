//! End-to-end calls with real WebRTC stacks, driven from here so `cargo test` runs them:
//! headless Chromium through turnpike on loopback (UDP, TCP, TLS, wrong credential), two
//! Chromiums behind simulated NATs in network namespaces (root), and aiortc. The scripts
//! live in tests/browser/ and start turnpike themselves (TURNPIKE_BIN).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// The browser tests share 2 cores: one at a time keeps their timings meaningful.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(program: &str, script: &str) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let bin =
        std::env::var("TURNPIKE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_turnpike").into());
    let program = dir.join(program);
    let program = if program.exists() {
        program
    } else {
        program.file_name().unwrap().into()
    };
    assert!(
        dir.join("node_modules/playwright-core").exists() && dir.join(".venv/bin/python").exists(),
        "browser test dependencies missing: run scripts/install-test-deps.sh"
    );
    let t = Instant::now();
    let out = Command::new(&program)
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("TURNPIKE_BIN", bin)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("{script} ({:.1}s):\n{text}", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "{script} failed:\n{text}");
}

#[test]
fn chromium_calls_through_turnpike_on_loopback() {
    run("node", "loopback.mjs");
}

#[test]
fn chromium_behind_symmetric_nats_connects_only_through_turnpike() {
    run("node", "nat.mjs");
}

#[test]
fn aiortc_relay_only_call() {
    run(".venv/bin/python", "aiortc_relay.py");
}
