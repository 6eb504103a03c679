//! Network namespaces a test creates (root), joined point to point by veth pairs, so a
//! test can build a routed topology (the fast path's: a router namespace between client,
//! server and peer) and attach programs to each interface; deleted on drop.
//! Code runs inside one through [`Netns::enter`]: a thread that joins the namespace, so
//! sockets and attachments made there belong to it, and the test process stays put.
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A fresh namespace with `lo` up; `role` makes its name readable in `ip netns`.
    pub fn new(role: &str) -> Netns {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("tp{}x{n}{role}", std::process::id());
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend(args);
        sh("ip", &all);
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend(args);
        sh("ip", &all);
    }

    /// A veth pair: `here` in this namespace with `addrs`, `there` in `other`.
    pub fn veth(&self, here: &str, other: &Netns, there: &str) {
        self.ip(&[
            "link",
            "add",
            here,
            "type",
            "veth",
            "peer",
            "name",
            there,
            "netns",
            &other.name,
        ]);
        self.ip(&["link", "set", here, "up"]);
        other.ip(&["link", "set", there, "up"]);
    }

    /// Adds an address (IPv6 without duplicate address detection, usable at once).
    pub fn addr(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }

    /// Runs `f` on a thread inside the namespace and returns what it returns.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(&path).unwrap();
                // SAFETY: setns on a valid namespace fd; it changes only this thread.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }
}

pub struct Topology {
    pub client: Netns,
    pub server: Netns,
    pub peer: Netns,
    pub router: Netns,
}

/// client c0 -- r1 router r0 -- s0 server; router r2 -- p0 peer. IPv4 10.11.x.0/24
/// and IPv6 fd11:x::/64, x = 1 (client), 0 (server), 2 (peer).
pub fn topology() -> Topology {
    let (client, server, peer, router) = (
        Netns::new("c"),
        Netns::new("s"),
        Netns::new("p"),
        Netns::new("r"),
    );
    for (ns, dev, rdev, x) in [
        (&client, "c0", "r1", 1),
        (&server, "s0", "r0", 0),
        (&peer, "p0", "r2", 2),
    ] {
        ns.veth(dev, &router, rdev);
        ns.addr(dev, &format!("10.11.{x}.2/24"));
        ns.addr(dev, &format!("fd11:{x}::2/64"));
        router.addr(rdev, &format!("10.11.{x}.1/24"));
        router.addr(rdev, &format!("fd11:{x}::1/64"));
        ns.ip(&["route", "add", "default", "via", &format!("10.11.{x}.1")]);
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd11:{x}::1"),
        ]);
    }
    router.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    );
    // Full checksums from the senders, as from a real NIC (veth defaults to partial).
    client.exec("ethtool", &["-K", "c0", "tx", "off"]);
    peer.exec("ethtool", &["-K", "p0", "tx", "off"]);
    // A veth takes the frames its peer sends with XDP_TX only when it has an XDP
    // program of its own (on this kernel GRO on r0 was not enough: frames vanished).
    router.ip(&[
        "link",
        "set",
        "dev",
        "r0",
        "xdpdrv",
        "obj",
        pass_program(),
        "sec",
        "xdp",
    ]);
    Topology {
        client,
        server,
        peer,
        router,
    }
}

/// An XDP program that passes everything, compiled once per test run.
pub fn pass_program() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdp-pass");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("pass.c");
        std::fs::write(
            &src,
            "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
             SEC(\"xdp\") int pass(struct xdp_md *c) { return XDP_PASS; }\n\
             char LICENSE[] SEC(\"license\") = \"GPL\";\n",
        )
        .unwrap();
        let obj = dir.join("pass.o").to_string_lossy().into_owned();
        let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
        let src = src.to_string_lossy().into_owned();
        sh(
            "clang",
            &["-O2", "-target", "bpf", &multiarch, "-c", &src, "-o", &obj],
        );
        obj
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
