//! The shipped systemd unit is valid and hardened (systemd-analyze, offline: no running
//! systemd needed).

use std::process::Command;

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = std::env::temp_dir().join(format!("turnpike-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/turnpike.service"
    ))
    .unwrap()
    // verify checks that ExecStart exists: point it at the binary this test built.
    .replace("/usr/bin/turnpike", env!("CARGO_BIN_EXE_turnpike"));
    let path = dir.join("turnpike.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) must be installed");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for turnpike.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level} (want <= 2.0):\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
