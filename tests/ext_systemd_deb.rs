//! The shipped systemd unit is valid and hardened (systemd-analyze, offline: no running
//! systemd needed).

mod support;

use std::process::Command;

use support::{BIN, Scratch};

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = Scratch::new("unit");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/turnpike.service"
    ))
    .unwrap()
    // verify checks that ExecStart exists: point it at the binary this test built.
    .replace("/usr/bin/turnpike", BIN);
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
}

/// Builds the .deb with cargo-deb from the binary this test run built (no second, release
/// build: the package layout is what is under test) and prints its contents. `version`
/// overrides the package's version (an upgrade's newer package).
fn build_deb(dir: &std::path::Path, name: &str, version: Option<&str>) -> std::path::PathBuf {
    let _one_at_a_time = DEB.lock().unwrap_or_else(|e| e.into_inner());
    let deb = dir.join(name);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "deb",
        "--profile",
        "dev",
        "--no-build",
        "--strip",
        "--fast",
        "-q",
    ]);
    if let Some(v) = version {
        cmd.args(["--deb-version", v]);
    }
    let out = cmd
        .arg("-o")
        .arg(&deb)
        .output()
        .expect("cargo-deb (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    // Straight to stderr, past the test harness's capture: the package listing belongs in
    // the test output.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "dpkg-deb -c {name}:\n{list}");
    for path in [
        "./usr/bin/turnpike",
        "./etc/turnpike/turnserver.toml",
        "./usr/lib/systemd/system/turnpike.service",
        "./usr/share/doc/turnpike/examples/turnpike-fastpath.conf",
    ] {
        assert!(list.contains(path), "{path} missing from the package");
    }
    deb
}

/// A tmpfs with an overlay of the machine's root inside, unmounted and removed on drop.
struct Overlay {
    base: std::path::PathBuf,
    merged: std::path::PathBuf,
    /// The container's machine name: tests boot their containers side by side.
    machine: String,
}

/// Tells apart the overlays (and containers) of tests running at once.
static OVERLAYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The newer package's version: the crate's, with the patch level one up.
static NEXT_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let v: Vec<u64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    format!("{}.{}.{}-1", v[0], v[1], v[2] + 1)
});
/// `cargo deb` writes under target/ whatever `-o` says: one at a time.
static DEB: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Overlay {
    fn new() -> Overlay {
        let n = OVERLAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let machine = format!("tpdeb{}x{n}", std::process::id());
        let base = std::env::temp_dir().join(format!("turnpike-nspawn-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=1g",
                "tmpfs",
                base.to_str().unwrap(),
            ],
        );
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir(base.join(d)).unwrap();
        }
        let merged = base.join("merged");
        let opts = format!(
            "lowerdir=/,upperdir={0}/upper,workdir={0}/work",
            base.display()
        );
        let o = Overlay {
            base,
            merged,
            machine,
        };
        sh(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &opts,
                o.merged.to_str().unwrap(),
            ],
        );
        o
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
        let _ = Command::new("umount").arg(&self.base).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[track_caller]
fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Boots systemd (PID 1) in a container over an overlay of this machine's root with the
/// .deb and `probe` (a script of tests/deploy/) run as a oneshot unit that powers off at
/// its end; returns the probe's log, which must end in PROBE-DONE. The probe finds the
/// package at /opt/probe/turnpike.deb and, the same with a newer version (`NEXT_VERSION`),
/// at /opt/probe/turnpike-next.deb.
fn boot_with_probe(probe_script: &str) -> String {
    boot_with_probe_args(probe_script, &[])
}

/// `boot_with_probe`, with more `systemd-nspawn` options.
fn boot_with_probe_args(probe_script: &str, nspawn: &[&str]) -> String {
    let overlay = Overlay::new();
    let root = &overlay.merged;
    let probe = root.join("opt/probe");
    let results = root.join("opt/results");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::create_dir_all(&results).unwrap();
    for (name, version) in [
        ("turnpike.deb", None),
        ("turnpike-next.deb", Some(NEXT_VERSION.as_str())),
    ] {
        let deb = build_deb(&overlay.base, name, version);
        std::fs::copy(&deb, probe.join(name)).unwrap();
    }
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/deploy")
            .join(probe_script),
        probe.join("probe.sh"),
    )
    .unwrap();
    // Whatever the machine has installed at these paths must not get in the way. Container
    // images ship a policy-rc.d that forbids starting services, which a real host has not;
    // a machine id of its own keeps the container's journal apart from the host's.
    let _ = std::fs::remove_dir_all(root.join("etc/turnpike"));
    let _ = std::fs::remove_file(root.join("usr/sbin/policy-rc.d"));
    let id: [u8; 16] = std::array::from_fn(|i| {
        (std::process::id() as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8 * 17)
    });
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(root.join("etc/machine-id"), format!("{id}\n")).unwrap();
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
    std::fs::write(
        units.join("turnpike-probe.service"),
        "[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nTimeoutStartSec=300\n\
         ExecStart=/opt/probe/probe.sh\nExecStopPost=/bin/systemctl --no-block poweroff\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/turnpike-probe.service",
        units.join("multi-user.target.wants/turnpike-probe.service"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args([
            "-k",
            "10",
            "360",
            "systemd-nspawn",
            "-q",
            "--boot",
            "--private-network",
        ])
        .args([
            "--register=no",
            "--keep-unit",
            "--machine",
            &overlay.machine,
        ])
        .args(nspawn)
        .arg("-D")
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("systemd-nspawn (package systemd-container) must be installed");
    let log = std::fs::read_to_string(results.join("probe.log")).unwrap_or_default();
    assert!(
        log.contains("PROBE-DONE"),
        "probe did not finish (nspawn {:?}):\n{log}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    log
}

/// The value of `STEP <name> <value>` in a probe's log.
fn step_in(log: &str, name: &str) -> String {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("STEP {name} ")))
        .unwrap_or_else(|| panic!("no step {name} in:\n{log}"))
        .to_owned()
}

/// The package under real systemd as PID 1 (systemd-nspawn over an overlay of this
/// machine's root, private network: traffic stays on the container's loopback):
/// `dpkg -i`, the service is active only once it relays, a bad reload fails and the old
/// config keeps serving, a start that cannot relay fails, and `systemctl stop` drains.
#[test]
fn deb_installs_and_runs_under_systemd_as_pid1() {
    let log = boot_with_probe("probe.sh");
    let step = |name: &str| step_in(&log, name);
    let expect = [
        ("install", "0"),
        ("active", "0"),
        ("secrets_mode", "root:turnpike:640"),
        ("service_user", "turnpike"),
        ("binding", "0"),
        ("reload_good", "0"),
        ("relay", "0"),
        ("relay_lost", "0"),
        ("active_after_bad_reload", "0"),
        ("relay_after_bad_reload", "0"),
        ("relay_after_bad_reload_lost", "0"),
        ("restart_good", "0"),
        ("stopping_state", "deactivating"),
        ("long_relay", "0"),
        ("long_relay_lost", "0"),
        ("stopped", "inactive"),
        ("main_status", "0"),
        ("tls_credential_start", "0"),
        ("tls_handshake", "0"),
        ("journal_ansi", "0"),
        ("journal_dump", "0"),
    ];
    for (name, want) in expect {
        assert_eq!(step(name), want, "step {name}:\n{log}");
    }
    for name in ["reload_bad", "restart_unrelayable", "new_allocate"] {
        assert_ne!(step(name), "0", "step {name} should fail:\n{log}");
    }
    let warnings: u32 = step("journal_warnings").parse().unwrap();
    assert!(
        warnings >= 1,
        "no warning at priority 4 in the journal:\n{log}"
    );
    // The call that was up kept the node draining past its own end, until the timeout.
    let drain: u64 = step("drain_seconds").parse().unwrap();
    assert!((5..=30).contains(&drain), "drain took {drain} s:\n{log}");
}

/// Issue 18 under real systemd 252: the package's upgrade (`dpkg -i` of a newer version,
/// which restarts the unit) and `systemctl restart`, both through the file descriptor store,
/// and then `systemctl kill --kill-who=main -s URG turnpike` (exec handover) each hand a
/// channel call and a Send-indication call (turnutils_uclient, 50 packets/s) over to a new main
/// process: both calls finish, fewer than 100 ms of packets lost per call, the sessions
/// API lists the same allocations with counters gone on, the old process is gone, and the unit stays active past a watchdog period. Also a restart
/// whose first new process fails: the calls go on with the one `Restart=` starts next.
#[test]
fn upgrade_and_sigurg_hand_calls_over_under_systemd() {
    let log = boot_with_probe("probe_handover.sh");
    let step = |name: &str| step_in(&log, name);
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.starts_with("STEP"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(step("install"), "0", "{log}");
    assert_eq!(step("restart"), "0", "{log}");
    assert_eq!(step("upgraded_to"), *NEXT_VERSION, "{log}");
    for how in ["upgrade", "restart", "signal"] {
        for s in ["trigger", "new_main_pid", "chan", "ind", "active"] {
            assert_eq!(step(&format!("{how}_{s}")), "0", "{how}_{s}:\n{log}");
        }
        // The sessions API lists the same allocations, their counters gone on.
        let before: u32 = step(&format!("{how}_sessions_before")).parse().unwrap();
        assert!(before >= 2, "{how}: {before} sessions before:\n{log}");
        assert_eq!(
            step(&format!("{how}_sessions_kept")),
            before.to_string(),
            "{how}: sessions after the handover:\n{log}"
        );
        assert_ne!(
            step(&format!("{how}_old_alive")),
            "0",
            "old process still there:\n{log}"
        );
        for call in ["chan", "ind"] {
            let lost: u64 = step(&format!("{how}_{call}_lost")).parse().unwrap();
            // Fewer than 100 ms worth at 50 packets/s.
            assert!(lost < 5, "{how}: {call} lost {lost}:\n{log}");
        }
    }
    // A restart whose new process fails once: the calls go on once Restart= has started
    // one that works (the packets of the gap wait in the socket buffers).
    for s in ["trigger", "new_main_pid", "chan", "ind", "active"] {
        assert_eq!(step(&format!("failing_{s}")), "0", "failing_{s}:\n{log}");
    }
    // The first restart (a config change, no calls yet), the upgrade's, the admin's and
    // the one after the failed start.
    assert_eq!(step("store_takeovers"), "4", "{log}");
    assert_eq!(step("active_after_watchdog"), "0", "{log}");
    // Only the one after the failed start.
    assert_eq!(step("restarts"), "1", "{log}");
}

/// Issue 18's figures under real systemd 252: 20 `systemctl restart`s in a row while 200
/// background calls relay at 5 packets/s each (over 200 descriptors in the store), each restart with a channel call and a
/// Send-indication call of its own (turnutils_uclient, 50 packets/s). Prints the median
/// and worst packets lost per call, restart duration and gap (old shards standing still
/// to the new process having taken over); every restart goes through the store, keeps
/// both calls under 100 ms of loss, and systemd never had to restart the service.
#[test]
fn twenty_restarts_under_load_keep_the_calls() {
    let log = boot_with_probe("probe_restarts.sh");
    let step = |name: &str| step_in(&log, name);
    let rounds: Vec<&str> = log.lines().filter(|l| l.starts_with("ROUND")).collect();
    let shown = log
        .lines()
        .filter(|l| l.starts_with("STEP") || l.contains("Total"));
    eprintln!(
        "{}\n{}",
        rounds.join("\n"),
        shown.collect::<Vec<_>>().join("\n")
    );
    assert_eq!(rounds.len(), 20, "{log}");
    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_owned()
    };
    let mut figures: [Vec<u64>; 4] = Default::default();
    for line in &rounds {
        for (key, want) in [("rc", "0"), ("calls", "0/0"), ("new_pid", "yes")] {
            assert_eq!(field(line, key), want, "{line}:\n{log}");
        }
        for (i, key) in ["chan_lost", "ind_lost", "restart_ms", "gap_ms"]
            .iter()
            .enumerate()
        {
            let v: u64 = field(line, key)
                .parse()
                .unwrap_or_else(|_| panic!("{key} in {line}:\n{log}"));
            figures[i].push(v);
        }
    }
    for (i, key) in ["chan_lost", "ind_lost", "restart_ms", "gap_ms"]
        .iter()
        .enumerate()
    {
        let v = &mut figures[i];
        v.sort();
        eprintln!(
            "20 restarts: {key} median {} worst {}",
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    // Fewer than 100 ms worth (5 packets at 50/s) per call and restart.
    for lost in figures[0].iter().chain(&figures[1]) {
        assert!(*lost < 5, "lost {lost}:\n{log}");
    }
    assert_eq!(step("install"), "0", "{log}");
    assert_eq!(step("restart"), "0", "{log}");
    assert_eq!(step("active"), "0", "{log}");
    // The load's 200 calls, 700 packets each, across all 20 restarts: under 1% lost.
    assert_eq!(step("load"), "0", "{log}");
    let load_lost: u64 = step("load_lost").parse().unwrap();
    eprintln!("load: {load_lost} of 140000 packets lost over 20 restarts");
    assert!(load_lost < 1400, "load lost {load_lost}:\n{log}");
    // Every allocation went through the store 20 times and is still there.
    let sessions: u64 = step("sessions_end").parse().unwrap();
    assert!(
        sessions >= 200,
        "{sessions} sessions after the restarts:\n{log}"
    );
    // The config change's restart, then the 20.
    assert_eq!(step("store_takeovers"), "21", "{log}");
    assert_eq!(step("restarts"), "0", "{log}");
}

/// Issue 19 under real systemd 252: the packaged, hardened unit cannot load the fast path
/// (mode "off", the journal says why, the call relays on the socket path); with the
/// drop-in the package ships, native XDP relays the call's ChannelData in the kernel, the
/// service still runs as its own user, and the relayed totals count every packet (the
/// restart between the two hands the first call's totals over).
#[test]
fn fast_path_under_systemd_takes_the_documented_drop_in() {
    // The container may load BPF programs only with these (nspawn's defaults lack them).
    let log = boot_with_probe_args(
        "probe_fastpath.sh",
        &[
            "--capability=CAP_BPF,CAP_PERFMON",
            "--system-call-filter=bpf",
        ],
    );
    let step = |name: &str| step_in(&log, name);
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.starts_with("STEP"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for name in ["install", "topology", "plain_restart", "fast_restart"] {
        assert_eq!(step(name), "0", "{name}:\n{log}");
    }
    assert_eq!(step("plain_mode_off"), "1", "{log}");
    assert_ne!(step("plain_said_why"), "0", "{log}");
    assert_eq!(step("fast_mode_xdp"), "1", "{log}");
    assert_eq!(step("fast_user"), "turnpike", "{log}");
    let n = |name: &str| -> u64 {
        step(name)
            .parse()
            .unwrap_or_else(|_| panic!("{name}:\n{log}"))
    };
    for call in ["plain", "fast"] {
        assert_eq!(step(&format!("{call}_call")), "0", "{call}:\n{log}");
        assert_eq!(n(&format!("{call}_lost")), 0, "{call}:\n{log}");
    }
    assert_eq!(n("plain_kernel"), 0, "{log}");
    // Each call's 200 messages each way (the restart between them handed the totals
    // over), almost all of the fast call's in the kernel.
    assert_eq!(
        (n("plain_to_peer"), n("plain_to_client")),
        (200, 200),
        "{log}"
    );
    assert_eq!(
        (n("fast_to_peer"), n("fast_to_client")),
        (400, 400),
        "{log}"
    );
    assert!(
        n("fast_kernel") >= 300,
        "kernel relayed {}:\n{log}",
        n("fast_kernel")
    );
}
