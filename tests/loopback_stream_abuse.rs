//! One abusive TCP client against the real binary (spawned, so its CPU time can be read
//! from /proc): megabytes of pipelined requests must cost linear CPU and must not stall
//! the shard's other clients; a listener out of file descriptors must pick waiting
//! connections up again once descriptors are free.
//!
//! TURNPIKE_BIN=/path/to/turnpike runs these against another build (e.g. an older one).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Proc, bin, free_tcp_port, free_udp_port};

/// The server process, killed (by its PID) when dropped.
struct Server {
    child: Proc,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl Server {
    /// One shard, so the abusive connection and the UDP probes share it.
    fn start(ports: &str) -> Server {
        let (udp, tcp) = (free_udp_port(), free_tcp_port());
        let child = Proc::spawn(
            Command::new(bin())
                .args(["--shards", "1", "--relay-ip", "127.0.0.1", "--ports", ports])
                .args(["--listen", &format!("127.0.0.1:{udp}")])
                .args(["--listen-tcp", &format!("127.0.0.1:{tcp}")])
                .args(["--http-listen", &format!("127.0.0.1:{}", free_tcp_port())])
                .env("TURNPIKE_SECRET", "abuse-test-secret")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let s = Server {
            child,
            udp: format!("127.0.0.1:{udp}").parse().unwrap(),
            tcp: format!("127.0.0.1:{tcp}").parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(s.tcp).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// utime + stime of the server process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which may hold spaces): state is field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (f[0] + f[1]) as f64 / hz
    }
}

/// A 20-byte Binding request whose transaction id carries `n`.
fn binding(n: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[1] = 1;
    m[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    m[16..20].copy_from_slice(&n.to_be_bytes());
    m
}

/// Sends a Binding over UDP and returns how long the answer took.
fn udp_probe(sock: &UdpSocket, server: SocketAddr, n: u32) -> Option<Duration> {
    let t = Instant::now();
    sock.send_to(&binding(n), server).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) if len >= 20 && buf[16..20] == n.to_be_bytes() => {
                return Some(t.elapsed());
            }
            Ok(_) => {} // a late answer to an earlier probe
            Err(_) => return None,
        }
    }
}

/// Reads framed STUN responses until EOF or timeout: counts them and publishes the
/// transaction id of the latest.
fn read_responses(mut s: TcpStream, count: Arc<AtomicUsize>, latest: Arc<AtomicU32>) {
    let mut head = [0u8; 20];
    let mut body = vec![0u8; 65536];
    while s.read_exact(&mut head).is_ok() {
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if s.read_exact(&mut body[..len]).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let id = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
        latest.store(id, Ordering::Release);
    }
}

/// Transaction ids of the end markers, after the flood's.
const MARK: u32 = 0xFFFF_0000;

#[test]
fn pipelined_bindings_over_tcp_cost_linear_cpu_and_do_not_stall_udp_clients() {
    let server = Server::start("56000-56099");
    const TOTAL: usize = 4 << 20;
    let n = (TOTAL / 20) as u32;
    let mut flood = Vec::with_capacity(TOTAL);
    for i in 0..n {
        flood.extend_from_slice(&binding(i));
    }
    let conn = TcpStream::connect(server.tcp).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (count, latest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU32::new(0)));
    let reader = {
        let (c, count, latest) = (conn.try_clone().unwrap(), count.clone(), latest.clone());
        std::thread::spawn(move || read_responses(c, count, latest))
    };
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(
        udp_probe(&probe, server.udp, u32::MAX).is_some(),
        "UDP works before"
    );

    let cpu0 = server.cpu_seconds();
    let started = Instant::now();
    // The flood, then a marker Binding: its answer comes after every earlier one was
    // handled. (Resent if it was dropped because the client read too slowly.)
    let writer = {
        let (mut c, latest) = (conn.try_clone().unwrap(), latest.clone());
        std::thread::spawn(move || {
            c.write_all(&flood).unwrap();
            let t = Instant::now();
            for k in 0..30 {
                c.write_all(&binding(MARK + k)).unwrap();
                let wait = Instant::now() + Duration::from_secs(2);
                while Instant::now() < wait {
                    if latest.load(Ordering::Acquire) == MARK + k {
                        return Some(t);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            None
        })
    };
    // UDP Bindings while the flood is handled, every 20 ms (bounded: 90 s at most).
    let mut rtts = Vec::new();
    let mut unanswered = 0;
    let mut k = 0;
    while !writer.is_finished() && started.elapsed() < Duration::from_secs(90) {
        match udp_probe(&probe, server.udp, k) {
            Some(d) => rtts.push(d),
            None => unanswered += 1,
        }
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = writer.join().unwrap();
    let took = started.elapsed();
    let cpu = server.cpu_seconds() - cpu0;
    let answered = count.load(Ordering::Relaxed);
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    reader.join().unwrap();
    rtts.sort();
    let median = rtts.get(rtts.len() / 2).copied();
    eprintln!(
        "{n} pipelined Bindings: {answered} answered in {took:?}, server CPU {cpu:.2} s; \
         UDP probes: {} answered (median {median:?}, max {:?}), {unanswered} unanswered",
        rtts.len(),
        rtts.last()
    );
    assert!(done.is_some(), "the server got through the flood");
    // Answers may be dropped (bounded queue) only if this reader fell far behind.
    assert!(
        answered as u32 >= n / 2,
        "the Bindings were answered ({answered} of {n})"
    );
    assert!(cpu < 1.0, "4 MB of Bindings cost {cpu:.2} s of server CPU");
    assert_eq!(
        unanswered, 0,
        "UDP Bindings went unanswered during the flood"
    );
    assert!(
        median.is_some_and(|m| m < Duration::from_millis(50)),
        "UDP Binding median answer time {median:?} during the flood"
    );
}

/// Open descriptor numbers of process `pid`.
fn open_fds(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A TCP Binding round trip on `s`: true when answered within its read timeout.
fn tcp_binding(s: &mut TcpStream, n: u32) -> bool {
    s.write_all(&binding(n)).unwrap();
    let mut head = [0u8; 20];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    let mut body = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
    s.read_exact(&mut body).is_ok() && head[16..20] == n.to_be_bytes()
}

#[test]
fn connection_waiting_while_out_of_descriptors_is_accepted_once_one_is_free() {
    let server = Server::start("56100-56199");
    let pid = server.child.id();
    let connect = || {
        let s = TcpStream::connect(server.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    let mut first = connect();
    assert!(tcp_binding(&mut first, 1));
    // The readiness probes' connections are closed by now; what is open stays open.
    std::thread::sleep(Duration::from_millis(300));
    let fds = open_fds(pid);
    let limit = fds.iter().max().unwrap() + 1;
    let lim = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    // SAFETY: plain syscall on a process we started; `lim` outlives the call.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    // Fill the free numbers below the limit, if any: then every number is taken.
    let mut fillers = Vec::new();
    for i in 0..(limit as usize - fds.len()) {
        let mut s = connect();
        assert!(tcp_binding(&mut s, 100 + i as u32), "filler {i} served");
        fillers.push(s);
    }
    let mut waiting = connect();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        !tcp_binding(&mut waiting, 2),
        "no descriptor is free, so this connection cannot have been accepted yet"
    );
    // One descriptor comes free; nobody else connects.
    drop(first);
    waiting
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let t = Instant::now();
    let mut head = [0u8; 20];
    let answered = waiting.read_exact(&mut head).is_ok();
    eprintln!(
        "waiting connection answered: {answered} after {:?}",
        t.elapsed()
    );
    assert!(
        answered,
        "the waiting connection was accepted once a descriptor was free"
    );
    assert_eq!(head[16..20], 2u32.to_be_bytes());
}
