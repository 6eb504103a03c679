//! Fleet-wide commands on three turnpike nodes sharing a real `redis-server`, each on its
//! own host in network namespaces the test creates: DELETE /api/v1/sessions on one
//! node ends a user's allocation on another (latency printed), revocations refuse a user
//! on every node (also after a restart) until lifted or expired, and GET
//! /api/v1/sessions?scope=fleet lists every node's allocations with the node's name; with
//! Redis gone, known revocations stay in force and new ones are refused (503).

mod support;

use std::time::{Duration, Instant};

use stun::message::{METHOD_REFRESH, Setter};
use support::{
    FleetNet, FleetNode, HEARTBEAT, RawClient, Scratch, error_code, free_udp_port, http_get,
    metric, relays, sends_through, wait_until,
};

/// The user ids in node `at`'s own sessions list.
fn users_on(at: &FleetNode) -> Vec<String> {
    let (status, v) = at.admin("GET", "/api/v1/sessions", "");
    assert_eq!(status, 200, "{v}");
    let list = v["sessions"].as_array().unwrap();
    list.iter()
        .map(|s| s["user"].as_str().unwrap().to_owned())
        .collect()
}

/// A new Allocate for `user` on `at`: its error code (None: allocated).
fn allocate_code(at: &FleetNode, user: &str) -> Option<u16> {
    error_code(&at.client(user).allocate())
}

fn refresh(c: &mut RawClient) -> Option<u16> {
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(turn::proto::lifetime::Lifetime(
        Duration::from_secs(600),
    ))];
    error_code(&c.exchange(METHOD_REFRESH, attrs, true))
}

/// Every node's allocations, listed on A with their node.
fn fleet_view(a: &FleetNode, b: &FleetNode, c: &FleetNode) -> Vec<RawClient> {
    let mut clients = Vec::new();
    for n in [a, b, c] {
        let mut cl = n.client(&format!("viewer-{}", n.name));
        assert_eq!(error_code(&cl.allocate()), None);
        clients.push(cl);
    }
    let want = ["a:viewer-a", "b:viewer-b", "c:viewer-c"];
    let mut seen = Vec::new();
    let took = wait_until("A lists the fleet's sessions", 3 * HEARTBEAT, || {
        let (status, v) = a.admin("GET", "/api/v1/sessions?scope=fleet", "");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["complete"], true, "{v}");
        seen = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s["node"].as_str().unwrap(),
                    s["user"].as_str().unwrap()
                )
            })
            .collect();
        seen.sort();
        seen == want
    });
    println!("scope=fleet on A lists {seen:?} ({took:?} after the last Allocate)");
    clients
}

/// DELETE on A ends dave's allocation on C: its next Send relays nothing, its Refresh
/// gets 437.
fn end_everywhere(a: &FleetNode, c: &FleetNode, peer: std::net::SocketAddr, nodes: u64) {
    let mut dave = c.client("dave");
    assert_eq!(error_code(&dave.allocate()), None);
    assert!(relays(&mut dave, peer));
    let t = Instant::now();
    let (status, v) = a.admin("DELETE", "/api/v1/sessions?user=dave", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ended"], 0, "{v}");
    assert_eq!(v["fleet"]["published"], true, "{v}");
    assert!(v["fleet"]["nodes_heard"].as_u64().unwrap() >= nodes, "{v}");
    wait_until(
        "dave's allocation ended on C",
        Duration::from_secs(2),
        || !users_on(c).contains(&"dave".to_string()),
    );
    println!(
        "DELETE on A ended dave's allocation on C in {:?}",
        t.elapsed()
    );
    assert!(!sends_through(&mut dave, peer), "relayed after the end");
    assert_eq!(refresh(&mut dave), Some(437));
}

/// A revokes eve: her allocation on B ends, every node answers her Allocate 401 (B also
/// after a restart), C lists the revocation; lifted on A, C allocates for her again.
fn revoke_everywhere(a: &FleetNode, b: &mut FleetNode, c: &FleetNode) {
    let mut on_b = b.client("eve");
    assert_eq!(error_code(&on_b.allocate()), None);
    let t = Instant::now();
    let (status, v) = a.admin("POST", "/api/v1/revocations", r#"{"user":"eve","ttl":60}"#);
    assert_eq!(status, 201, "{v}");
    for n in [a, &*b, c] {
        wait_until(
            &format!("eve refused on {}", n.name),
            Duration::from_secs(2),
            || allocate_code(n, "eve") == Some(401),
        );
    }
    println!(
        "revocation on A in force on every node in {:?}",
        t.elapsed()
    );
    wait_until(
        "eve's allocation ended on B",
        Duration::from_secs(2),
        || !users_on(b).contains(&"eve".to_string()),
    );
    assert_eq!(refresh(&mut on_b), Some(437));
    let (_, _, text) = http_get(c.http, "GET", "/metrics", &[]);
    assert!(metric(&text, r#"turnpike_auth_failures_total{reason="revoked"}"#) >= 1.0);
    let (status, v) = c.admin("GET", "/api/v1/revocations", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revocations"][0]["user"], "eve", "{v}");
    b.restart();
    assert_eq!(
        allocate_code(b, "eve"),
        Some(401),
        "B forgot eve after a restart"
    );
    assert_eq!(allocate_code(b, "mallory-not-revoked"), None);
    let (status, v) = a.admin("DELETE", "/api/v1/revocations?user=eve", "");
    assert_eq!(
        (status, &v["lifted"]),
        (200, &serde_json::json!(true)),
        "{v}"
    );
    wait_until("eve admitted on C again", Duration::from_secs(2), || {
        allocate_code(c, "eve").is_none()
    });
}

/// A revocation with ttl 2 s: refused at once, gone (and admitted again) after it.
fn revocation_expires(a: &FleetNode, b: &FleetNode) {
    let (status, v) = a.admin("POST", "/api/v1/revocations", r#"{"user":"frank","ttl":2}"#);
    assert_eq!(status, 201, "{v}");
    wait_until("frank refused on B", Duration::from_secs(2), || {
        allocate_code(b, "frank") == Some(401)
    });
    let t = Instant::now();
    wait_until("frank's revocation gone", Duration::from_secs(4), || {
        let (_, v) = b.admin("GET", "/api/v1/revocations", "");
        v["revocations"].as_array().unwrap().is_empty()
    });
    println!(
        "a 2 s revocation left B's list {:?} after the check began",
        t.elapsed()
    );
    assert_eq!(allocate_code(b, "frank"), None);
}

/// Redis gone: a revocation already known stays in force; a new one cannot be made.
fn redis_outage(a: &FleetNode, c: &FleetNode, redis: support::Proc) {
    let (status, v) = a.admin("POST", "/api/v1/revocations", r#"{"user":"gina","ttl":60}"#);
    assert_eq!(status, 201, "{v}");
    wait_until("gina refused on C", Duration::from_secs(2), || {
        allocate_code(c, "gina") == Some(401)
    });
    drop(redis);
    let (status, _) = a.admin("POST", "/api/v1/revocations", r#"{"user":"hank","ttl":60}"#);
    assert_eq!(status, 503);
    c.lines
        .wait_for("cluster: Redis unreachable", Duration::from_secs(3));
    assert_eq!(
        allocate_code(c, "gina"),
        Some(401),
        "forgotten with Redis gone"
    );
    assert_eq!(allocate_code(c, "hank"), None);
}

#[test]
fn fleet_commands_end_and_revoke_a_user_on_every_node() {
    let dir = Scratch::new(&format!("revoke-{}", free_udp_port()));
    let mut net = FleetNet::new();
    let redis_proc = net.redis();
    let a = net.node(&dir, "a", "eu", "41200-41249");
    let mut b = net.node(&dir, "b", "us", "41250-41299");
    let c = net.node(&dir, "c", "us", "41300-41349");
    let _viewers = fleet_view(&a, &b, &c);
    end_everywhere(&a, &c, net.peer(), 3);
    revoke_everywhere(&a, &mut b, &c);
    revocation_expires(&a, &b);
    redis_outage(&a, &c, redis_proc);
}

/// The Redis ports of `node`'s fleet command subscriptions, from Redis's CLIENT LIST.
fn subscription_ports(net: &FleetNet, node: &FleetNode) -> Vec<u16> {
    let out = net
        .on_redis_host("redis-cli")
        .args(["-h", "198.51.100.10", "CLIENT", "LIST"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let host = format!("addr={}:", node.udp.ip());
    list.lines()
        .filter(|l| l.contains(&host) && l.contains(" sub=1 "))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix(&host)))
        .map(|p| p.parse().unwrap())
        .collect()
}

/// A subscription whose connection goes silent (every packet of it dropped on Redis's
/// host, no reset: a NAT or firewall that forgot it) is noticed by its PING going
/// unanswered, and renewed: a DELETE made afterwards still ends the user's allocation.
#[test]
fn a_silently_dead_subscription_is_noticed_and_renewed() {
    let dir = Scratch::new(&format!("silent-{}", free_udp_port()));
    let mut net = FleetNet::new();
    let _redis = net.redis();
    let a = net.node(&dir, "a", "eu", "41400-41449");
    let c = net.node(&dir, "c", "eu", "41450-41499");
    let ports = subscription_ports(&net, &c);
    assert_eq!(ports.len(), 1, "one subscription per node");
    let port = ports[0];
    let ip = c.udp.ip().to_string();
    let rules = format!(
        "table inet silent {{\n\
         chain in {{ type filter hook input priority 0; ip saddr {ip} tcp sport {port} drop; }}\n\
         chain out {{ type filter hook output priority 0; ip daddr {ip} tcp dport {port} drop; }}\n\
         }}\n"
    );
    let ok = net
        .on_redis_host("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            use std::io::Write;
            p.stdin.take().unwrap().write_all(rules.as_bytes())?;
            p.wait()
        });
    assert!(ok.unwrap().success(), "nft");
    let t = Instant::now();
    c.lines
        .wait_for("fleet command subscription not answering", 4 * HEARTBEAT);
    println!("a silent subscription noticed after {:?}", t.elapsed());
    // Redis still counts the dead connection among the subscribers until it gives up on
    // it: wait for the new one.
    wait_until("C subscribed again", 2 * HEARTBEAT, || {
        subscription_ports(&net, &c).iter().any(|p| *p != port)
    });
    end_everywhere(&a, &c, net.peer(), 2);
}
