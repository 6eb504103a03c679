//! The relay core fed arbitrary sequences of client requests, relayed data, raw bytes, peer
//! packets, time jumps, timeouts and late or failing binds; the driver checks its
//! invariants (quotas, unique relay ports, no leaked sockets, counters) after each step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_fuzz::{Driver, Op, Setup};

fuzz_target!(|input: (Setup, Vec<Op>)| {
    let (setup, ops) = input;
    let mut d = Driver::new(setup);
    // Long sequences add little coverage per second; cap them.
    d.run(&ops[..ops.len().min(64)]);
});
