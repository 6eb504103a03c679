//! The self-test page (GET /selftest) in headless Chromium: "works" for UDP, TCP and TLS
//! against a healthy turnpike, and the failure in words against one whose relay port
//! range is blocked by nftables in a network namespace (root). The script lives in
//! tests/browser/selftest.mjs; its screenshots land in target/tmp/.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The script takes ~25 s; stopped if it takes far longer.
const DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn selftest_page_reads_works_for_a_healthy_server_and_names_a_blocked_relay_range() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run scripts/install-test-deps.sh"
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
    const SHOTS: [&str; 2] = ["selftest-healthy.png", "selftest-blocked-relay-range.png"];
    // Old screenshots must not pass for new ones.
    for shot in SHOTS {
        let _ = std::fs::remove_file(shots.join(shot));
    }
    let t = Instant::now();
    let mut child = Command::new("node")
        .arg(dir.join("selftest.mjs"))
        .current_dir(&dir)
        .env("TURNPIKE_BIN", env!("CARGO_BIN_EXE_turnpike"))
        .env("SCREENSHOT_DIR", shots)
        .spawn()
        .expect("running node");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > DEADLINE {
            // SIGTERM first: the script removes its namespace and processes on it.
            // SAFETY: kill(2) on the PID of the child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("selftest.mjs did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "selftest.mjs failed ({status}); its output is above"
    );
    for shot in SHOTS {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {shot} missing or empty");
    }
}
