//! turnpike in this process: the relay on a free loopback port from a config built here,
//! and its HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use turnpike::config::Config;
use turnpike::runtime::Node;

use super::SECRET;
use super::ports::free_udp_port;

/// Starts turnpike on a free loopback port; `server_extra` goes into [server], `extra`
/// (further sections) at the end. `allow_loopback` adds 127.0.0.0/8 to the peer allow
/// list, as only a test should.
pub fn start_with(
    allow_loopback: bool,
    ports: &str,
    server_extra: &str,
    extra: &str,
) -> (Arc<Node>, SocketAddr, Config) {
    let port = free_udp_port();
    let allow = if allow_loopback {
        "allow = [\"127.0.0.0/8\"]"
    } else {
        ""
    };
    let cfg = Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 2\n{server_extra}\n\
         [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\n\
         [auth]\nsecrets = [\"{SECRET}\"]\n[peers]\n{allow}\n{extra}\n"
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
        cfg,
    )
}

pub fn start(allow_loopback: bool, ports: &str) -> (Arc<Node>, SocketAddr) {
    let (r, a, _) = start_with(allow_loopback, ports, "", "");
    (r, a)
}

/// Starts the HTTP endpoint for `relay` on a free port, on its own runtime thread.
pub fn start_http(relay: Arc<Node>, cfg: &turnpike::config::Config) -> SocketAddr {
    let state = turnpike::http::HttpState::new(
        relay,
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec![SECRET.to_owned()]).unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let _ = turnpike::http::serve(l, state, std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}
