//! Quotas mean what they say across shards: each client's 5-tuple hashes onto one of
//! two shards, and every credential minted for one user id counts against one quota.

mod support;

use std::sync::Arc;

use stun::message::*;
use support::*;
use turnpike::auth::mint_credential;
use turnpike::config::Config;
use turnpike::runtime::Node;

fn start(max_total: usize, per_user: usize, ports: &str) -> (Arc<Node>, std::net::SocketAddr) {
    let port = free_udp_port();
    let cfg = Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 2\n\
         [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\n\
         max_allocations = {max_total}\nmax_allocations_per_user = {per_user}\n\
         [auth]\nsecrets = [\"{SECRET}\"]\n[http]\nenabled = false\n"
    ))
    .unwrap();
    let relay = Node::start(
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec![SECRET.to_owned()]).unwrap(),
        Default::default(),
    )
    .unwrap();
    (
        Arc::new(relay),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
}

/// How many of `users` (one client and one fresh credential each) get an allocation.
fn granted(server: std::net::SocketAddr, users: &[String]) -> (usize, Vec<RawClient>) {
    let mut clients = Vec::new();
    let mut ok = 0;
    for (i, user) in users.iter().enumerate() {
        let (u, p) = mint_credential(SECRET, user, 600 + i as u64, unix_now());
        let mut c = RawClient::new(server, u, p);
        let r = c.allocate();
        if r.typ.class == CLASS_SUCCESS_RESPONSE {
            ok += 1;
        } else {
            assert_eq!(error_code(&r), Some(486));
        }
        clients.push(c); // kept open so no allocation ends early
    }
    (ok, clients)
}

#[test]
fn per_user_quota_is_exact_across_shards_and_credentials() {
    let (relay, server) = start(1000, 5, "53700-53799");
    let users: Vec<String> = (0..20).map(|_| "bob".to_owned()).collect();
    let (ok, _clients) = granted(server, &users);
    assert_eq!(ok, 5, "quota 5 means 5, whatever the shard and credential");
    relay.shutdown();
}

#[test]
fn server_quota_is_exact_across_shards() {
    let (relay, server) = start(1, 100, "53800-53899");
    let users: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    let (ok, _clients) = granted(server, &users);
    assert_eq!(ok, 1, "max_allocations = 1 admits exactly one");
    relay.shutdown();
}
