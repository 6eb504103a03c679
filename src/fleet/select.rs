//! Which nodes new clients go to: live ones with room, the caller's region first, then
//! the least loaded. Pure functions of the registry's records and the time.

use std::cmp::Ordering;

use super::record::NodeRecord;
use crate::relay::Alternate;

/// The best `n` nodes for a new client: live (heard from within `ttl_ms`), not draining,
/// not full; those in `region` (when named) before the others, then by load, then name.
pub fn best_nodes<'a>(
    nodes: &'a [NodeRecord],
    now_ms: u64,
    ttl_ms: u64,
    region: Option<&str>,
    n: usize,
) -> Vec<&'a NodeRecord> {
    let mut pool: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|r| r.has_room(now_ms, ttl_ms))
        .collect();
    let elsewhere = |r: &NodeRecord| region.is_some_and(|want| r.region != want);
    pool.sort_by(|a, b| {
        elsewhere(a)
            .cmp(&elsewhere(b))
            .then(a.load().partial_cmp(&b.load()).unwrap_or(Ordering::Equal))
            .then(a.name.cmp(&b.name))
    });
    pool.truncate(n);
    pool
}

/// The URIs of the best `n` nodes, or `fallback` when no node qualifies.
pub fn credential_uris(
    nodes: &[NodeRecord],
    now_ms: u64,
    ttl_ms: u64,
    region: Option<&str>,
    n: usize,
    fallback: &[String],
) -> Vec<String> {
    let mut uris: Vec<String> = Vec::new();
    for r in best_nodes(nodes, now_ms, ttl_ms, region, n) {
        for u in &r.uris {
            if !uris.contains(u) {
                uris.push(u.clone());
            }
        }
    }
    if uris.is_empty() {
        fallback.to_vec()
    } else {
        uris
    }
}

/// ALTERNATE-SERVER candidates: the listener addresses of every other node with room,
/// and their TLS listeners with their names, least loaded first (the core picks among them
/// by the client's transport, family and port).
pub fn alternates(
    nodes: &[NodeRecord],
    own_name: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Vec<Alternate> {
    let others: Vec<NodeRecord> = nodes
        .iter()
        .filter(|r| r.name != own_name)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for r in best_nodes(&others, now_ms, ttl_ms, None, usize::MAX) {
        let plain = r.listener_addresses().into_iter().map(Alternate::plain);
        for a in plain.chain(r.tls_alternate()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const TTL: u64 = 10_000;
    const NOW: u64 = 1_000_000;

    fn node(name: &str, region: &str, allocations: u64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            region: region.into(),
            uris: vec![format!(
                "turn:192.0.2.{}:3478?transport=udp",
                name.len() + allocations as usize % 200
            )],
            allocations,
            max_allocations: 100,
            relay_ports_in_use: allocations,
            relay_ports_total: 1000,
            bits_per_second: 0,
            draining: false,
            full: false,
            version: "test".into(),
            unix_ms: NOW - 1000,
        }
    }

    fn names(v: Vec<&NodeRecord>) -> Vec<&str> {
        v.into_iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn least_loaded_node_comes_first() {
        let nodes = [node("a", "", 50), node("b", "", 10), node("c", "", 30)];
        assert_eq!(
            names(best_nodes(&nodes, NOW, TTL, None, 3)),
            ["b", "c", "a"]
        );
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, None, 1)), ["b"]);
    }

    #[test]
    fn callers_region_comes_before_lower_load() {
        let nodes = [
            node("a", "eu", 50),
            node("b", "us", 10),
            node("c", "eu", 30),
        ];
        assert_eq!(
            names(best_nodes(&nodes, NOW, TTL, Some("eu"), 3)),
            ["c", "a", "b"]
        );
        // A region nobody is in: load alone decides.
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, Some("ap"), 1)), ["b"]);
    }

    #[test]
    fn draining_node_is_excluded() {
        let mut nodes = [node("a", "", 50), node("b", "", 10)];
        nodes[1].draining = true;
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, None, 3)), ["a"]);
    }

    #[test]
    fn full_node_is_excluded() {
        let mut nodes = [node("a", "", 50), node("b", "", 10)];
        nodes[1].full = true;
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, None, 3)), ["a"]);
    }

    #[test]
    fn node_silent_longer_than_ttl_is_excluded() {
        let mut nodes = [node("a", "", 50), node("b", "", 10)];
        nodes[1].unix_ms = NOW - TTL - 1;
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, None, 3)), ["a"]);
        nodes[1].unix_ms = NOW - TTL;
        assert_eq!(names(best_nodes(&nodes, NOW, TTL, None, 3)), ["b", "a"]);
    }

    #[test]
    fn credentials_fall_back_to_own_uris_when_no_node_has_room() {
        let own = vec!["turn:198.51.100.1:3478".to_string()];
        assert_eq!(credential_uris(&[], NOW, TTL, None, 1, &own), own);
        let mut nodes = [node("a", "", 1)];
        nodes[0].draining = true;
        assert_eq!(credential_uris(&nodes, NOW, TTL, None, 1, &own), own);
        nodes[0].draining = false;
        assert_eq!(
            credential_uris(&nodes, NOW, TTL, None, 1, &own),
            nodes[0].uris
        );
    }

    #[test]
    fn alternates_exclude_this_node_and_nodes_without_room() {
        let mut nodes = [
            node("self", "", 0),
            node("a", "", 20),
            node("b", "", 10),
            node("c", "", 5),
        ];
        nodes[3].draining = true;
        nodes[2]
            .uris
            .push("turns:turn-b.example.com:443?transport=tcp".into());
        let b_udp = nodes[2].listener_addresses()[0];
        let want = vec![
            Alternate::plain(b_udp),
            Alternate::tls(SocketAddr::new(b_udp.ip(), 443), "turn-b.example.com"),
            Alternate::plain(nodes[1].listener_addresses()[0]),
        ];
        assert_eq!(alternates(&nodes, "self", NOW, TTL), want);
    }
}
