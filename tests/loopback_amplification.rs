//! How much a spoofed UDP source can make turnpike send to its victim: the answer to the
//! smallest unauthenticated request, and the volume a flood from one source gets.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use stun::message::*;
use support::*;

fn answer_size(server: std::net::SocketAddr, method: Method) -> (usize, usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let req = build_request(method, &[], None);
    s.send_to(&req.raw, server).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).expect("an answer");
    (req.raw.len(), n)
}

#[test]
fn unauthenticated_answers_are_at_most_three_times_the_request() {
    let (relay, server) = start(false, "53900-53949");
    let (req, challenge) = answer_size(server, METHOD_ALLOCATE);
    let (_, binding) = answer_size(server, METHOD_BINDING);
    let factor = challenge as f64 / req as f64;
    println!(
        "amplification: {req}-byte Allocate -> {challenge}-byte 401 ({factor:.1}x); \
         {req}-byte Binding -> {binding} bytes ({:.1}x)",
        binding as f64 / req as f64
    );
    assert!(
        factor <= 3.0,
        "401 is {challenge} bytes for a {req}-byte request"
    );
    assert!(binding <= 3 * req);
    relay.shutdown();
}

#[test]
fn a_flood_from_one_source_gets_a_bounded_number_of_answers() {
    // Default budget: 200 answers/s per /24, burst 400.
    let (relay, server) = start(false, "53950-53999");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let t = Instant::now();
    let req = build_request(METHOD_ALLOCATE, &[], None);
    for _ in 0..2000 {
        s.send_to(&req.raw, server).unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 1500];
    while s.recv(&mut buf).is_ok() {
        answers += 1;
    }
    let allowed = 400.0 + 200.0 * t.elapsed().as_secs_f64();
    println!("2000 requests in {:?}: {answers} answers", t.elapsed());
    assert!(
        answers > 0 && answers as f64 <= allowed,
        "{answers} answers, budget {allowed:.0}"
    );
    relay.shutdown();
}
