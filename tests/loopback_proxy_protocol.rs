//! PROXY protocol v2 on a TCP listener over real sockets (`server.proxy_protocol`): a
//! listed source's header names the client for XOR-MAPPED-ADDRESS, the sessions API and
//! the per-IP limit; a listed source without a header, or with a truncated one, is closed
//! and counted; a header from a source that is not listed is garbage, as it always was.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ppp::v2::{Builder, Command, Protocol, Version};
use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use support::*;

const ADMIN: &str = "admin-token-0123456789abcdef";

/// turnpike in this process with a TCP listener and `server` lines; its TCP port and
/// HTTP endpoint.
fn start_tcp(
    ports: &str,
    server: &str,
) -> (std::sync::Arc<turnpike::runtime::Node>, u16, SocketAddr) {
    let port = free_tcp_port();
    let (relay, _, cfg) = start_with(
        true,
        ports,
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]\n{server}"),
        &format!("[http]\nadmin_token = \"{ADMIN}\"\n"),
    );
    let http = start_http(relay.clone(), &cfg);
    (relay, port, http)
}

/// A PROXY v2 header for a TCP connection from `client` to `server`.
fn header(client: &str, server: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, server),
    )
    .build()
    .unwrap()
}

/// A connection to `port` that first sends `first`.
fn connect(port: u16, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(first).unwrap();
    s
}

fn client(s: TcpStream, user: &str) -> StreamClient<TcpStream> {
    let (username, password) = turnpike::auth::mint_credential(SECRET, user, 600, unix_now());
    StreamClient::new(s, username, password)
}

fn mapped(c: &mut StreamClient<TcpStream>) -> SocketAddr {
    let r = c.request(METHOD_BINDING, vec![], false);
    assert_eq!(r.typ, BINDING_SUCCESS);
    let mut x = XorMappedAddress::default();
    x.get_from(&r).unwrap();
    SocketAddr::new(x.ip, x.port)
}

fn proxy_errors(http: SocketAddr, reason: &str) -> u64 {
    let series = format!("turnpike_proxy_protocol_errors_total{{reason=\"{reason}\"}}");
    scrape(http, &series)
}

fn sessions(http: SocketAddr) -> serde_json::Value {
    let bearer = format!("Bearer {ADMIN}");
    let (status, _, body) = http_get(
        http,
        "GET",
        "/api/v1/sessions",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_listed_sources_header_names_the_client_everywhere() {
    let (relay, port, http) = start_tcp(
        "55400-55449",
        "proxy_protocol = [\"127.0.0.0/8\"]\nmax_connections_per_ip = 1",
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = client(connect(port, &header("203.0.113.7:4242", server)), "alice");
    assert_eq!(mapped(&mut c), "203.0.113.7:4242".parse().unwrap());
    c.allocate_and_bind(echo_peer());
    c.echo_channel_data(3);
    let v = sessions(http);
    let s = &v["sessions"][0];
    assert_eq!(s["user"], "alice", "{v:#}");
    assert_eq!(s["client"], "203.0.113.7:4242", "{v:#}");
    assert_eq!(s["transport"], "tcp", "{v:#}");

    // The per-IP limit (1 here) counts the clients the headers name, not the balancer.
    let mut other = client(connect(port, &header("198.51.100.9:5000", server)), "bob");
    assert_eq!(mapped(&mut other), "198.51.100.9:5000".parse().unwrap());
    let mut again = connect(port, &header("203.0.113.7:4243", server));
    assert!(
        closed_by_server(&mut again),
        "a second connection of 203.0.113.7"
    );
    let refused = "turnpike_connections_refused_total{reason=\"max_connections_per_ip\"}";
    assert_eq!(scrape(http, refused), 1);
    // The same client address and port twice is refused, not confused with the first:
    // as a duplicate on the first one's shard, by the per-IP limit (1) on the other shard
    // (SO_REUSEPORT picks), where its core could not confuse the two anyway.
    let mut twin = connect(port, &header("198.51.100.9:5000", server));
    assert!(closed_by_server(&mut twin));
    assert_eq!(proxy_errors(http, "duplicate") + scrape(http, refused), 2);
    // LOCAL (a balancer's health check) keeps the socket's own address.
    let local = Builder::new(Version::Two | Command::Local, 0)
        .build()
        .unwrap();
    let mut check = client(connect(port, &local), "lb");
    let own = check.s.local_addr().unwrap();
    assert_eq!(mapped(&mut check), own);
    relay.shutdown();
}

#[test]
fn a_listed_source_without_a_whole_header_is_closed_and_counted() {
    let (relay, port, http) = start_tcp(
        "55450-55499",
        "proxy_protocol = [\"127.0.0.0/8\"]\ntls_handshake_timeout = \"1s\"",
    );
    // STUN straight away: no header.
    let binding = build_request(METHOD_BINDING, &[], None).raw;
    let mut bare = connect(port, &binding);
    assert!(closed_by_server(&mut bare));
    assert_eq!(proxy_errors(http, "bad_signature"), 1);
    // Half a header, then nothing: closed when the handshake time is up.
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut half = connect(port, &header("203.0.113.7:4242", server)[..20]);
    let t = std::time::Instant::now();
    assert!(closed_by_server(&mut half));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(proxy_errors(http, "timeout"), 1);
    // Oversized: refused from its fixed part.
    let mut big = header("203.0.113.7:4242", server)[..16].to_vec();
    big[14..16].copy_from_slice(&2000u16.to_be_bytes());
    let mut huge = connect(port, &big);
    assert!(closed_by_server(&mut huge));
    assert_eq!(proxy_errors(http, "too_long"), 1);
    relay.shutdown();
}

#[test]
fn a_header_from_a_source_that_is_not_listed_is_garbage_as_before() {
    let (relay, port, http) = start_tcp(
        "55500-55549",
        "proxy_protocol = [\"10.0.0.0/8\"]\nidle_timeout = \"1s\"",
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = header("203.0.113.7:4242", server);
    first.extend_from_slice(&build_request(METHOD_BINDING, &[], None).raw);
    let mut forged = connect(port, &first);
    assert!(closed_by_server(&mut forged), "never answered, then closed");
    assert_eq!(
        proxy_errors(http, "bad_signature"),
        0,
        "not a balancer's error"
    );
    // Without a header it is served with the socket's address, as always.
    let mut plain = client(connect(port, &[]), "carol");
    let own = plain.s.local_addr().unwrap();
    assert_eq!(mapped(&mut plain), own);
    relay.shutdown();
}
