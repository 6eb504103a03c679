//! A network of hosts in network namespaces this test creates: one namespace holding a
//! bridge, and one per host joined to it by a veth pair, each host with its own address
//! in 198.51.100.0/24 (TEST-NET-2: nothing outside routes it) and no route anywhere else.
//! The test's own thread can enter a host (`enter`): sockets it opens from then on live
//! there, and so do the processes it spawns unless they move themselves
//! (`ip netns exec`). Dropping the network kills what still runs in its namespaces (all
//! started by this test) and deletes them.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Net {
    prefix: String,
    /// Namespaces made, bridge first: deleted in reverse.
    made: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// The bridge namespace; hosts come with `host`. Needs root.
    pub fn new() -> Net {
        let prefix = format!(
            "tn{}x{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            prefix,
            made: Vec::new(),
        };
        let br = net.ns("br");
        ip(&["netns", "add", &br]);
        net.made.push(br.clone());
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        net
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Host `name` at 198.51.100.`last`; its namespace's name.
    pub fn host(&mut self, name: &str, last: u8) -> String {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns]);
        self.made.push(ns.clone());
        let br = self.ns("br");
        // Interface names are global until moved (15 characters at most).
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let (h, b) = (format!("th{n}x{last}"), format!("tb{n}x{last}"));
        ip(&["link", "add", &h, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &h, "netns", &ns]);
        ip(&["link", "set", &b, "netns", &br]);
        ip(&["-n", &br, "link", "set", &b, "master", "br0", "up"]);
        let addr = format!("{}/24", Self::addr(last));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", &h]);
        ip(&["-n", &ns, "link", "set", &h, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    pub fn addr(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, last)
    }

    /// Moves the calling thread into host namespace `ns` (from `host`).
    pub fn enter(&self, ns: &str) {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns(2) on a namespace file this test created; it affects only the
        // calling thread (network namespaces may be entered by one thread of many).
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
    }

    /// `program` to be run inside host namespace `ns`.
    pub fn cmd(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output();
            let pids = pids.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            for pid in pids.unwrap_or_default().split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) on a process in a namespace only this test made.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
