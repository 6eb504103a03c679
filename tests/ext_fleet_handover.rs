//! Handovers (SIGURG, issue 18) of a node with `[cluster]`, two in a row, on a real
//! `redis-server` in network namespaces this test creates (`FleetNet`): a user holds
//! `relay.max_allocations_per_user` = 3 calls, two of them relaying at 50 packets/s.
//! Across both the calls go on (none lost, same relayed addresses), the user's live slots
//! in Redis stay exactly 3, sampled all along (with the node's record, and GET
//! /api/v1/nodes listing the node), right after each handover and one TTL later; then a
//! fourth Allocate gets 486, and after a Deallocate a new one gets through;
//! `turnpike_handover_total{result="took_over"}` counts both.

mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stun::message::*;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;

const MAX: i64 = 3;
const USER: &str = "ann";
const CHANNEL: u16 = 0x4000;
const ROUNDS: usize = 2;

/// Processes a handover started (not our children): killed by PID on drop.
struct Pids(Vec<u32>);

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) on a process this test's node started by handover.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// From Redis, at one instant: `USER`'s live fleet slots (lapsed members left out), and
/// whether node `node`'s record and its entry in the node list are there.
fn in_redis(net: &FleetNet, node: &str) -> (i64, bool) {
    let script = "local t = redis.call('TIME') \
        local now = t[1] * 1000 + math.floor(t[2] / 1000) \
        local live = redis.call('ZCOUNT', KEYS[1], now, '+inf') \
        local listed = redis.call('EXISTS', KEYS[2]) == 1 and redis.call('ZSCORE', KEYS[3], ARGV[1]) \
        return {live, listed and 1 or 0}";
    let url = net.redis_url();
    let out = net
        .on_redis_host("redis-cli")
        .args(["-u", &url, "EVAL", script, "3"])
        .arg(format!("turnpike:quota:{USER}"))
        .arg(format!("turnpike:node:{node}"))
        .args(["turnpike:nodes", node])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<i64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "redis-cli: {text:?}");
    (v[0], v[1] == 1)
}

fn live_slots(net: &FleetNet) -> i64 {
    in_redis(net, "a").0
}

/// Whether node `at`'s GET /api/v1/nodes lists `name`; Err says why it could not tell.
fn listed(at: &FleetNode, name: &str) -> Result<bool, String> {
    let bearer = format!("Bearer {FLEET_ADMIN}");
    let headers = [("Authorization", bearer.as_str())];
    let get = std::panic::catch_unwind(|| http_get(at.http, "GET", "/api/v1/nodes", &headers));
    let (status, _, body) = get.map_err(|e| {
        let why = e.downcast_ref::<String>().cloned();
        why.unwrap_or_else(|| "the request panicked".into())
    })?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v["nodes"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["name"] == name)))
}

fn allocate(at: &FleetNode) -> (RawClient, Option<u16>) {
    let mut c = at.client(USER);
    let code = error_code(&c.allocate());
    (c, code)
}

/// A call of `USER` through channel `CHANNEL` to `peer`, and its relayed address.
fn call(at: &FleetNode, peer: SocketAddr) -> (RawClient, SocketAddr) {
    let mut c = at.client(USER);
    let r = c.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let relay = turnpike::testkit::relayed(&r)[0];
    let pa = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let bind = c.exchange(
        METHOD_CHANNEL_BIND,
        vec![Box::new(ChannelNumber(CHANNEL)), Box::new(pa)],
        true,
    );
    assert_eq!(bind.typ.class, CLASS_SUCCESS_RESPONSE);
    (c, relay)
}

/// What a sampler saw: live slot counts, and how often the node was missing from Redis
/// (its record or the node list) or from GET /api/v1/nodes.
#[derive(Default)]
struct Samples {
    counts: Vec<i64>,
    unlisted: usize,
    /// Why GET /api/v1/nodes gave no answer, each time.
    unanswered: Vec<String>,
    taken: usize,
}

/// Sets the flag when dropped: a sampler stops even when the test fails (panics) while it
/// runs, so that the scope around it ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Samples every 50 ms until `stop`.
fn sample(net: &FleetNet, at: &FleetNode, stop: &AtomicBool, into: &Mutex<Samples>) {
    while !stop.load(Ordering::Relaxed) {
        let (count, recorded) = in_redis(net, at.name);
        let seen = listed(at, at.name);
        let mut s = into.lock().unwrap();
        s.counts.push(count);
        s.unlisted += usize::from(!recorded || seen == Ok(false));
        if let Err(why) = seen {
            s.unanswered.push(why);
        }
        s.taken += 1;
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The relayed address of every allocation node `at` lists, sorted.
fn relays_of(at: &FleetNode) -> Vec<String> {
    let (status, v) = at.admin("GET", "/api/v1/sessions", "");
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<String> = (v["sessions"].as_array().unwrap().iter())
        .map(|s| s["relay"][0].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn a_cluster_node_hands_over_its_calls_and_its_fleet_quota_slots() {
    let dir = Scratch::new("fleet-handover");
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let extra = Extra {
        relay: "max_allocations_per_user = 3\n",
        ..Extra::default()
    };
    let a = net.node_with(&dir, "a", "46200-46249", Some("eu"), extra);
    let peer = net.peer();
    let (ch, relay1) = call(&a, peer);
    let (ch2, relay2) = call(&a, peer);
    let (mut idle, code) = allocate(&a);
    assert_eq!(code, None);
    assert_eq!(live_slots(&net), MAX);
    assert_eq!(allocate(&a).1, Some(486), "at the cap before the handover");
    let frame = |p: &[u8]| turnpike::testkit::channel_data(CHANNEL, p);
    let flows = [
        Flow::start(&ch.sock, a.udp, frame),
        Flow::start(&ch2.sock, a.udp, frame),
    ];
    std::thread::sleep(Duration::from_secs(1));
    let before = relays_of(&a);
    assert!(before.contains(&relay1.to_string()) && before.contains(&relay2.to_string()));

    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Samples::default());
    let mut pids = Pids(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| sample(&net, &a, &stop, &samples));
        let _stop = StopOnDrop(&stop);
        // Two in a row: the second process hands over slots it adopted, not claimed.
        for n in 1..=ROUNDS {
            std::thread::sleep(Duration::from_millis(500));
            let old = pids.0.last().copied().unwrap_or(a.proc.id());
            let t = Instant::now();
            // SAFETY: kill(2) on the node this test started or its handover's successor.
            unsafe { libc::kill(old as i32, libc::SIGURG) };
            wait_until("handover done", Duration::from_secs(15), || {
                a.lines.count("handover done") >= n
            });
            let done = &a.lines.all("handover done")[n - 1];
            pids.0.push(pid_in(done));
            eprintln!("handover {n} done after {:?}: {done}", t.elapsed());
            wait_until("the old process exits", Duration::from_secs(10), || {
                exited(old)
            });
            assert_eq!(live_slots(&net), MAX, "right after handover {n}");
        }
        // Once every name an old process wrote would have lapsed.
        std::thread::sleep(TTL + 2 * HEARTBEAT);
    });
    let s = samples.into_inner().unwrap();
    let (lo, hi) = (s.counts.iter().min(), s.counts.iter().max());
    eprintln!(
        "{} samples across {ROUNDS} handovers: live slots min {lo:?} max {hi:?}, node unlisted in {}",
        s.taken, s.unlisted
    );
    // Never below the truth; above it only if the old process refreshed its names in the
    // few milliseconds between the new one's adoption and its own giving back.
    assert_eq!(lo, Some(&MAX), "{:?}", s.counts);
    assert!(hi <= Some(&(2 * MAX)), "{:?}", s.counts);
    assert_eq!(s.unlisted, 0, "the node stays listed");
    assert!(
        s.unanswered.is_empty(),
        "GET /api/v1/nodes unanswered: {:?}",
        s.unanswered
    );
    assert_eq!(live_slots(&net), MAX, "one TTL after the handovers");

    assert_eq!(
        relays_of(&a),
        before,
        "the same allocations on the same relayed addresses"
    );
    for (flow, name) in flows.into_iter().zip(["call 1", "call 2"]) {
        let (sent, lost) = flow.finish();
        eprintln!("{name}: {sent} packets across {ROUNDS} handovers, {lost} lost");
        assert_eq!(lost, 0, "{name}");
    }
    // The quota is exact: full now, and a slot given back is free again.
    assert_eq!(allocate(&a).1, Some(486), "no slot lost in the handover");
    let zero: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    assert_eq!(error_code(&idle.exchange(METHOD_REFRESH, zero, true)), None);
    wait_until("the slot is given back", Duration::from_secs(2), || {
        live_slots(&net) == MAX - 1
    });
    let (_again, code) = allocate(&a);
    assert_eq!(code, None, "a slot given back after the handover is free");
    assert_eq!(live_slots(&net), MAX);
    let metrics = http_get(a.http, "GET", "/metrics", &[]).2;
    assert_eq!(
        metric(&metrics, "turnpike_handover_total{result=\"took_over\"}"),
        ROUNDS as f64
    );
    drop((ch, ch2));
}
