//! Chooses relay ports from this shard's slice of the configured range.

use std::ops::RangeInclusive;

/// Port choice must be hard to predict from outside (a guessable relay port helps an
/// attacker aim at a victim's allocation), so it comes from a CSPRNG; the core takes the
/// seed from the shell so tests stay deterministic.
#[derive(Debug)]
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Rng(rand::rngs::StdRng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        rand::Rng::next_u64(&mut self.0)
    }
}

/// Which ports an Allocate may get (RFC 8656 §14.6 EVEN-PORT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortParity {
    Any,
    Even,
    /// An even port whose odd neighbour is free too, to be reserved for the RTCP socket.
    EvenPair,
}

/// Picks a free port: a random start, then a linear probe so a crowded range still finds
/// the last free port. `in_use` says whether this shard already holds a port.
pub fn pick_port(
    range: &RangeInclusive<u16>,
    rng: &mut Rng,
    parity: PortParity,
    mut in_use: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let (lo, hi) = (*range.start() as u32, *range.end() as u32);
    if lo > hi {
        return None;
    }
    let span = hi - lo + 1;
    let start = (rng.next_u64() % span as u64) as u32;
    (0..span)
        .map(|i| (lo + (start + i) % span) as u16)
        .find(|&p| match parity {
            PortParity::Any => !in_use(p),
            PortParity::Even => p % 2 == 0 && !in_use(p),
            PortParity::EvenPair => p % 2 == 0 && p < hi as u16 && !in_use(p) && !in_use(p + 1),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_free_ports_inside_the_range() {
        let mut rng = Rng::new(42);
        let range = 50000..=50003;
        let mut taken = vec![];
        for _ in 0..4 {
            let p = pick_port(&range, &mut rng, PortParity::Any, |p| taken.contains(&p)).unwrap();
            assert!(range.contains(&p));
            taken.push(p);
        }
        assert_eq!(
            pick_port(&range, &mut rng, PortParity::Any, |p| taken.contains(&p)),
            None
        );
    }

    #[test]
    fn even_port_request_gets_an_even_port() {
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let p = pick_port(&(50001..=50009), &mut rng, PortParity::Even, |_| false).unwrap();
            assert_eq!(p % 2, 0);
        }
        assert_eq!(
            pick_port(&(50001..=50001), &mut rng, PortParity::Even, |_| false),
            None
        );
    }

    #[test]
    fn reserved_pair_needs_the_odd_neighbour_free() {
        let mut rng = Rng::new(3);
        let p = pick_port(&(50000..=50003), &mut rng, PortParity::EvenPair, |p| {
            p == 50001
        });
        assert_eq!(p, Some(50002));
        let none = pick_port(&(50000..=50002), &mut rng, PortParity::EvenPair, |p| {
            p == 50001
        });
        assert_eq!(none, None, "50002 has no neighbour inside the range");
    }
}
