//! A fleet of three turnpike nodes sharing a real `redis-server` (Debian's, started
//! here), each on its own host in network namespaces the test creates: the node registry (GET /api/v1/nodes), load- and region-aware credentials, dropout of
//! a killed and of a draining node (latencies printed), ALTERNATE-SERVER from the
//! registry, and a Redis outage and return.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use stun::attributes::ATTR_ALTERNATE_SERVER;
use support::{
    BIN, Extra, FLEET_ADMIN, FLEET_TOKEN, FleetNet, FleetNode, HEARTBEAT, Proc, RawClient, Scratch,
    TTL, error_code, free_udp_port, http_get, json, metric, relays, signal, wait_until,
};

type Node = FleetNode;
const TOKEN: &str = FLEET_TOKEN;
const ADMIN: &str = FLEET_ADMIN;

/// The names in node `at`'s GET /api/v1/nodes.
fn listed(at: &Node) -> Vec<String> {
    let bearer = format!("Bearer {ADMIN}");
    let v = json(at.http, "/api/v1/nodes", &[("Authorization", &bearer)]);
    let mut names: Vec<String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The URIs of a credential from node `at`'s API (`query` appended).
fn credential_uris(at: &Node, query: &str) -> Vec<String> {
    let bearer = format!("Bearer {TOKEN}");
    let path = format!("/api/v1/credentials?user=alice{query}");
    let v = json(at.http, &path, &[("Authorization", &bearer)]);
    serde_json::from_value(v["uris"].clone()).unwrap()
}

fn cluster_up(at: &Node) -> f64 {
    let (_, _, text) = http_get(at.http, "GET", "/metrics", &[]);
    metric(&text, "turnpike_cluster_up")
}

fn client(at: &Node) -> RawClient {
    at.client("bob")
}

/// Node `at`'s answer to an Allocate: unsigned first (a node may redirect before
/// authentication), signed after a 401.
fn redirect_from(at: &Node) -> stun::message::Message {
    use stun::message::{Message, Setter};
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(turn::proto::reqtrans::RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })];
    let m = support::build_request(stun::message::METHOD_ALLOCATE, &attrs, None);
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(&m.raw, at.udp).unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).unwrap();
    let mut r = Message::new();
    r.raw = buf[..n].to_vec();
    r.decode().unwrap();
    if error_code(&r) == Some(401) {
        return client(at).allocate();
    }
    r
}

fn alternate(r: &stun::message::Message) -> SocketAddr {
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(r, ATTR_ALTERNATE_SERVER).unwrap();
    SocketAddr::new(alt.ip, alt.port)
}

/// Every node lists the fleet; credentials follow load, then region.
fn registry_and_credentials(a: &Node, b: &Node, c: &Node) -> (RawClient, RawClient) {
    let all = vec!["a".to_string(), "b".into(), "c".into()];
    // Every node started (and registered) above: two heartbeats later A sees them all.
    let took = wait_until(
        "A lists all three nodes",
        2 * HEARTBEAT + Duration::from_millis(300),
        || listed(a) == all,
    );
    println!("A lists all three nodes {took:?} after the last one registered");
    let bearer = format!("Bearer {ADMIN}");
    let v = json(a.http, "/api/v1/nodes", &[("Authorization", &bearer)]);
    for n in v["nodes"].as_array().unwrap() {
        for key in [
            "allocations",
            "relay_ports_in_use",
            "relay_ports_total",
            "bits_per_second",
        ] {
            assert!(n[key].is_u64(), "{key} in {n}");
        }
        assert_eq!(n["draining"], false, "{n}");
        assert!(
            n["last_heartbeat_age_ms"].as_u64().unwrap() <= 2 * 500,
            "{n}"
        );
    }
    // Equal load: by name. One allocation on A makes B the least loaded, one on B then C.
    assert_eq!(credential_uris(a, "")[0], a.uri());
    let mut on_a = client(a);
    assert_eq!(error_code(&on_a.allocate()), None);
    wait_until("B least loaded", 3 * HEARTBEAT, || {
        credential_uris(a, "")[0] == b.uri()
    });
    let mut on_b = client(b);
    assert_eq!(error_code(&on_b.allocate()), None);
    wait_until("C least loaded", 3 * HEARTBEAT, || {
        credential_uris(a, "")[0] == c.uri()
    });
    // The caller's region first, by query parameter or by header.
    assert_eq!(credential_uris(a, "&region=eu")[0], a.uri());
    let bearer = format!("Bearer {TOKEN}");
    let h = [
        ("Authorization", bearer.as_str()),
        ("X-Turnpike-Region", "eu"),
    ];
    let v = json(a.http, "/api/v1/credentials?user=alice", &h);
    assert_eq!(v["iceServers"][0]["urls"][0], a.uri());
    (on_a, on_b)
}

/// SIGUSR1 on B: it leaves A's credentials at once and answers 300 naming a node from
/// the registry; SIGKILL on C: it leaves /nodes and the credentials within the TTL.
fn dropouts(a: &Node, b: &Node, c: &Node) {
    signal(&b.proc.0, libc::SIGUSR1);
    let t = Instant::now();
    wait_until("drained B out of the credentials", TTL, || {
        !credential_uris(a, "").contains(&b.uri())
    });
    println!("dropout after drain (SIGUSR1): {:?}", t.elapsed());
    let r = redirect_from(b);
    assert_eq!(error_code(&r), Some(300));
    let alt = alternate(&r);
    assert!(
        alt == a.udp || alt == c.udp,
        "ALTERNATE-SERVER {alt} is not a live node"
    );
    signal(&c.proc.0, libc::SIGKILL);
    let t = Instant::now();
    wait_until("killed C out of /nodes", TTL + 2 * HEARTBEAT, || {
        !listed(a).contains(&c.name.to_string())
    });
    println!(
        "dropout after SIGKILL: {:?} (ttl {TTL:?}, heartbeat {HEARTBEAT:?})",
        t.elapsed()
    );
    assert!(!credential_uris(a, "").contains(&c.uri()));
}

/// `turnpike credentials` with A's config: the fleet's URIs, or A's own (with a note on
/// stderr) when Redis does not answer.
fn cli_uris(a: &Node) -> (Vec<String>, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&a.config)
        .args(["credentials", "--user", "carol"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uris = serde_json::from_value(v["uris"].clone()).unwrap();
    (uris, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Redis killed: relaying goes on, cluster_up turns 0, credentials fall back to A's own
/// URIs. Redis back on the same port: A and B re-register within two heartbeats.
fn outage(a: &Node, b: &Node, on_a: &mut RawClient, net: &FleetNet, redis_proc: Proc) {
    signal(&b.proc.0, libc::SIGUSR2);
    wait_until("B back in the credentials", TTL, || {
        credential_uris(a, "").contains(&b.uri())
    });
    let (uris, _) = cli_uris(a);
    assert!(uris.contains(&b.uri()), "{uris:?}");
    drop(redis_proc);
    let peer = net.peer();
    assert!(relays(on_a, peer), "relaying stopped with Redis gone");
    wait_until("cluster_up 0", 3 * HEARTBEAT, || cluster_up(a) == 0.0);
    let t = Instant::now();
    wait_until(
        "credentials fall back to A's own",
        TTL + 2 * HEARTBEAT,
        || credential_uris(a, "") == vec![a.uri()],
    );
    println!(
        "credentials on A fell back to its own URIs {:?} after cluster_up 0",
        t.elapsed()
    );
    assert!(relays(on_a, peer), "relaying stopped with Redis gone");
    a.lines
        .wait_for("cluster: Redis unreachable", Duration::from_secs(1));
    let (uris, err) = cli_uris(a);
    assert_eq!(uris, vec![a.uri()]);
    assert!(err.contains("Redis unreachable"), "{err}");
    let _redis = net.redis();
    let t = Instant::now();
    wait_until(
        "A and B re-registered",
        2 * HEARTBEAT + Duration::from_millis(1500),
        || listed(a) == ["a", "b"] && cluster_up(a) == 1.0,
    );
    println!("re-registered {:?} after Redis came back", t.elapsed());
    a.lines
        .wait_for("cluster: Redis reachable again", Duration::from_secs(1));
    assert_eq!(
        a.lines.count("cluster: Redis unreachable"),
        1,
        "one warn line per outage"
    );
}

#[test]
fn three_nodes_share_a_registry_in_redis_and_survive_its_outage() {
    let dir = Scratch::new(&format!("fleet-{}", free_udp_port()));
    let mut net = FleetNet::new();
    let redis_proc = net.redis();
    let a = net.node(&dir, "a", "eu", "41000-41049");
    let b = net.node(&dir, "b", "us", "41050-41099");
    let c = net.node(&dir, "c", "us", "41100-41149");
    let (mut on_a, _on_b) = registry_and_credentials(&a, &b, &c);
    dropouts(&a, &b, &c);
    outage(&a, &b, &mut on_a, &net, redis_proc);
}

/// A full node's 300 names a live node with room: not another full one, not the static
/// `server.alternate`.
#[test]
fn a_full_node_redirects_to_a_live_node_with_room() {
    let dir = Scratch::new(&format!("fleet-full-{}", free_udp_port()));
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let one = Extra {
        max_allocations: 1,
        ..Extra::default()
    };
    let a = net.node_with(&dir, "a", "41400-41449", Some("eu"), one);
    let b = net.node_with(&dir, "b", "41450-41499", Some("eu"), one);
    let c = net.node(&dir, "c", "eu", "41500-41549");
    let (mut on_a, mut on_b) = (client(&a), client(&b));
    assert_eq!(error_code(&on_a.allocate()), None);
    assert_eq!(error_code(&on_b.allocate()), None);
    // The fleet learns B is full from B's next record (one heartbeat).
    let bearer = format!("Bearer {ADMIN}");
    let took = wait_until("A's registry has B full", 4 * HEARTBEAT, || {
        let v = json(a.http, "/api/v1/nodes", &[("Authorization", &bearer)]);
        let nodes = v["nodes"].as_array().unwrap().clone();
        nodes.iter().any(|n| n["name"] == "b" && n["full"] == true)
    });
    println!("A's registry has B full {took:?} after its allocation");
    for _ in 0..10 {
        let r = redirect_from(&a);
        assert_eq!(error_code(&r), Some(300));
        assert_eq!(alternate(&r), c.udp, "a full or static alternate");
    }
    // C killed: no live node with room is left, so the static alternate stands in (from
    // the heartbeat after C's record passes the TTL).
    drop(c);
    let stat: SocketAddr = "192.0.2.9:3478".parse().unwrap();
    wait_until(
        "A falls back to server.alternate",
        TTL + 3 * HEARTBEAT,
        || alternate(&redirect_from(&a)) == stat,
    );
}

/// A node answers HTTP only once its first heartbeat has read the fleet, so even its very
/// first GET /api/v1/nodes lists it, and a credential names the other node too (a process
/// just started by a handover answered both from an empty view). Five cold starts, each
/// polled from the moment its HTTP port accepts.
#[test]
fn a_starting_node_answers_from_the_fleet_it_read() {
    let dir = Scratch::new(&format!("fleet-first-{}", free_udp_port()));
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let b = net.node(&dir, "b", "eu", "41650-41699");
    let unready = Extra {
        unready: true,
        ..Extra::default()
    };
    let mut a = net.node_with(&dir, "a", "41600-41649", Some("eu"), unready);
    let bearer = format!("Bearer {ADMIN}");
    for start in 1..=5 {
        let t = Instant::now();
        while std::net::TcpStream::connect_timeout(&a.http, Duration::from_millis(100)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "start {start}: no HTTP"
            );
            std::thread::sleep(Duration::from_micros(300));
        }
        let first = json(a.http, "/api/v1/nodes", &[("Authorization", &bearer)]);
        let uris = credential_uris(&a, "");
        println!(
            "start {start}: first answer after {:?}: {first}",
            t.elapsed()
        );
        let names: Vec<&str> = (first["nodes"].as_array().unwrap().iter())
            .filter_map(|n| n["name"].as_str())
            .collect();
        assert!(
            names.contains(&"a") && names.contains(&"b"),
            "start {start}: {first}"
        );
        assert!(uris.contains(&b.uri()), "start {start}: {uris:?}");
        a.restart_with(false);
    }
}
