//! The fleet-wide per-user quota on three turnpike nodes sharing a real `redis-server`,
//! each on its own host in network namespaces the test creates: `relay.max_allocations_per_user` = 5 counts across the fleet under a
//! race of 3 nodes × 50 concurrent Allocates (the overshoot is printed and must be 0), a
//! slot given back on one node is free on another, a killed node's slots lapse after the
//! TTL (printed), and with Redis gone calls keep relaying while new Allocates follow each
//! node's `cluster.on_redis_down` ("open": the node's own count; "closed": 508); when
//! Redis returns, the counts reconcile. Also the Allocate latency with the cluster on
//! against off (p50/p99 printed, the cluster's p99 bounded).

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use stun::message::{METHOD_REFRESH, Setter};
use support::{
    Extra, FleetNet, FleetNode, HEARTBEAT, RawClient, Scratch, TTL, error_code, relays, wait_until,
};

const MAX: usize = 5;
const RACERS: usize = 50;

fn extra(cluster: &'static str) -> Extra<'static> {
    Extra {
        // Every racer's 401 comes from the test's one address at once.
        server: "unauthenticated_rate = 0\n",
        relay: "max_allocations_per_user = 5\n",
        cluster,
        ..Extra::default()
    }
}

fn node(
    net: &mut FleetNet,
    dir: &Scratch,
    name: &'static str,
    ports: &str,
    cluster: &'static str,
) -> FleetNode {
    net.node_with(dir, name, ports, Some("eu"), extra(cluster))
}

/// A new Allocate for `user` on `at`: the client (kept alive) and its error code.
fn allocate(at: &FleetNode, user: &str) -> (RawClient, Option<u16>) {
    let mut c = at.client(user);
    let code = error_code(&c.allocate());
    (c, code)
}

fn delete(c: &mut RawClient) {
    let attrs: Vec<Box<dyn Setter>> =
        vec![Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO))];
    assert_eq!(error_code(&c.exchange(METHOD_REFRESH, attrs, true)), None);
}

/// RACERS Allocates of one user on each node, all released by one barrier: the clients
/// that got an allocation, and the other answers' codes.
fn race(nodes: &[&FleetNode], user: &str) -> (Vec<RawClient>, Vec<Option<u16>>) {
    let clients: Vec<RawClient> = nodes
        .iter()
        .flat_map(|n| (0..RACERS).map(|_| n.client(user)))
        .collect();
    let gate = Arc::new(Barrier::new(clients.len()));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                let code = error_code(&c.allocate());
                (c, code)
            })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for h in handles {
        match h.join().unwrap() {
            (c, None) => won.push(c),
            (_, code) => lost.push(code),
        }
    }
    (won, lost)
}

fn quota_race(a: &FleetNode, b: &FleetNode, c: &FleetNode) {
    let (mut won, lost) = race(&[a, b, c], "racer");
    println!(
        "quota race: 3 nodes x {RACERS} concurrent Allocates of one user (max {MAX}): {} granted, overshoot {}, refused {:?}",
        won.len(),
        won.len() as i64 - MAX as i64,
        lost.iter()
            .fold(std::collections::BTreeMap::new(), |mut m, c| {
                *m.entry(*c).or_insert(0) += 1;
                m
            })
    );
    assert_eq!(won.len(), MAX, "the quota is the fleet's, not each node's");
    assert!(lost.iter().all(|c| *c == Some(486)), "{lost:?}");
    // A slot given back on one node can be taken on any other.
    delete(&mut won[0]);
    let (kept, code) = allocate(c, "racer");
    assert_eq!(code, None, "the slot given back is free fleet-wide");
    assert_eq!(allocate(b, "racer").1, Some(486));
    // Room for what follows (each node holds at most relay.max_allocations = 10).
    for mut cl in won.into_iter().skip(1).chain([kept]) {
        delete(&mut cl);
    }
}

/// SIGKILL a node holding a user's whole quota: another node grants the user again once
/// the dead node's slots lapse. How long that took.
fn dead_node_slots_lapse(a: &mut FleetNode, b: &FleetNode) -> Duration {
    let held: Vec<RawClient> = (0..MAX)
        .map(|_| allocate(a, "dora"))
        .map(|(c, code)| {
            assert_eq!(code, None);
            c
        })
        .collect();
    assert_eq!(allocate(b, "dora").1, Some(486));
    a.proc.0.kill().unwrap();
    let killed = Instant::now();
    let mut kept = Vec::new();
    wait_until("a killed node's slots lapse", TTL + 3 * HEARTBEAT, || {
        let (c, code) = allocate(b, "dora");
        kept.push(c);
        code.is_none()
    });
    drop(held);
    killed.elapsed()
}

fn main_flow(dir: &Scratch) {
    let mut net = FleetNet::new();
    let redis = net.redis();
    let mut a = node(&mut net, dir, "a", "46000-46049", "");
    let b = node(&mut net, dir, "b", "46050-46099", "");
    let closed = "on_redis_down = \"closed\"\n";
    let c = node(&mut net, dir, "c", "46100-46149", closed);
    quota_race(&a, &b, &c);
    let lapse = dead_node_slots_lapse(&mut a, &b);
    println!("quota: a SIGKILLed node's slots came back after {lapse:?} (ttl {TTL:?})");
    assert!(
        lapse >= TTL / 2,
        "slots lapse by TTL, not at once: {lapse:?}"
    );
    redis_outage(&net, &b, &c, redis);
}

/// Redis killed: a call keeps relaying; "open" b grants on its own count (5, then 486),
/// "closed" c refuses with 508. Redis back: b's allocations are recounted, so c refuses
/// the same user with 486.
fn redis_outage(net: &FleetNet, b: &FleetNode, c: &FleetNode, redis: support::Proc) {
    let peer = net.peer();
    let (mut call, code) = allocate(b, "call");
    assert_eq!(code, None);
    drop(redis);
    wait_until("c refuses while Redis is down", 3 * HEARTBEAT, || {
        allocate(c, "erin").1 == Some(508)
    });
    assert!(relays(&mut call, peer), "the call relays with Redis down");
    let held: Vec<RawClient> = (0..MAX)
        .map(|_| allocate(b, "erin"))
        .map(|(cl, code)| {
            assert_eq!(code, None, "fail open: the node's own quota");
            cl
        })
        .collect();
    assert_eq!(
        allocate(b, "erin").1,
        Some(486),
        "the node's own quota still holds"
    );
    let _redis = net.redis();
    // Until b's next heartbeat writes its slots back, a Redis that came back empty counts
    // none of them: c may grant in that window (each grant is given straight back here).
    let mut window = 0;
    let took = wait_until(
        "counts reconcile after Redis returns",
        3 * HEARTBEAT + TTL,
        || {
            let (mut cl, code) = allocate(c, "erin");
            if code.is_none() {
                window += 1;
                delete(&mut cl);
            }
            code == Some(486)
        },
    );
    println!(
        "quota: counts reconciled {took:?} after Redis came back empty ({window} Allocates granted before)"
    );
    assert!(relays(&mut call, peer));
    drop(held);
}

/// p50 and p99 of `n` Allocates (401 exchange included) of distinct users on `at`.
fn allocate_latency(at: &FleetNode, n: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let (mut cl, code) = allocate(at, &format!("lat{i}"));
            let took = t.elapsed();
            assert_eq!(code, None);
            delete(&mut cl);
            took
        })
        .collect();
    times.sort();
    (times[n / 2], times[n * 99 / 100])
}

#[test]
fn the_per_user_quota_counts_across_the_fleet_and_follows_redis_outages() {
    let dir = Scratch::new("fleet-quota");
    main_flow(&dir);
}

#[test]
fn allocate_latency_with_the_cluster_on_and_off() {
    let dir = Scratch::new("fleet-latency");
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let on = node(&mut net, &dir, "on", "46200-46249", "");
    let off = net.node_with(&dir, "off", "46250-46299", None, extra(""));
    let n = 400;
    let (_, _) = allocate_latency(&on, 20); // warm both paths up
    let (_, _) = allocate_latency(&off, 20);
    let (on50, on99) = allocate_latency(&on, n);
    let (off50, off99) = allocate_latency(&off, n);
    println!(
        "allocate latency over {n} Allocates (401 + signed Allocate): cluster on p50 {on50:?} p99 {on99:?}; off p50 {off50:?} p99 {off99:?}"
    );
    assert!(
        on99 < off99 + Duration::from_millis(200),
        "the claim is bounded"
    );
}

/// A node stopped (SIGINT: no drain) gives its users' slots back as it exits, rather
/// than leaving them to lapse after the TTL.
#[test]
fn a_node_that_stops_gives_its_slots_back_at_once() {
    let dir = Scratch::new("fleet-stop");
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let x = node(&mut net, &dir, "x", "46300-46349", "");
    let y = node(&mut net, &dir, "y", "46350-46399", "");
    let held: Vec<RawClient> = (0..MAX)
        .map(|_| allocate(&x, "ivy"))
        .map(|(c, code)| {
            assert_eq!(code, None);
            c
        })
        .collect();
    assert_eq!(allocate(&y, "ivy").1, Some(486));
    support::signal(&x.proc.0, libc::SIGINT);
    let stopped = std::time::Instant::now();
    let mut kept = Vec::new();
    wait_until("ivy's slots back", TTL, || {
        let (c, code) = allocate(&y, "ivy");
        kept.push(c);
        code.is_none()
    });
    let took = stopped.elapsed();
    println!("quota: a stopped node's slots came back {took:?} after SIGINT (ttl {TTL:?})");
    assert!(took < TTL / 2, "given back, not lapsed: {took:?}");
    drop(held);
}
