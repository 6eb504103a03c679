//! The stream connection limits: open connections in the whole server and per source,
//! checked on accept and released on close.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use crate::metrics::labels::Refused;

/// Open connections in the whole server, and per source: an IPv4 address or an IPv6 /64
/// (one host or subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would not limit anyone). Touched only on accept and close, never per packet.
pub struct ConnLimiter {
    max_total: usize,
    max_per_source: u32,
    state: Mutex<(usize, HashMap<IpAddr, u32>)>,
}

fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_source: usize) -> ConnLimiter {
        ConnLimiter {
            max_total,
            max_per_source: max_per_source.min(u32::MAX as usize) as u32,
            state: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn acquire(&self, ip: IpAddr) -> Result<(), Refused> {
        self.reserve()?;
        self.claim(ip).inspect_err(|_| self.release_reserved())
    }

    /// Takes a place in the total only, for a connection whose source is not known yet
    /// (its PROXY header is coming); `claim` gives it its source.
    pub fn reserve(&self) -> Result<(), Refused> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 >= self.max_total {
            return Err(Refused::Total);
        }
        st.0 += 1;
        Ok(())
    }

    /// Counts a reserved place for source `ip`. Refused, the place stays reserved
    /// (`release_reserved` frees it).
    pub fn claim(&self, ip: IpAddr) -> Result<(), Refused> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = st.1.entry(source_key(ip)).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(())
    }

    /// Frees a place that `reserve` took and no source claimed.
    pub fn release_reserved(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = st.0.saturating_sub(1);
    }

    pub fn release(&self, ip: IpAddr) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *st;
        let key = source_key(ip);
        if let Some(n) = per.get_mut(&key) {
            *n -= 1;
            *total -= 1;
            if *n == 0 {
                per.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{ConnLimiter, Refused};

    #[test]
    fn limiter_counts_per_source_and_in_total() {
        let l = ConnLimiter::new(5, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(l.acquire(a), Ok(()));
        assert_eq!(l.acquire(a), Ok(()));
        assert_eq!(l.acquire(a), Err(Refused::PerIp));
        // The same IPv4 address spelled as IPv4-mapped IPv6 is the same source.
        assert_eq!(
            l.acquire("::ffff:192.0.2.1".parse().unwrap()),
            Err(Refused::PerIp)
        );
        assert_eq!(l.acquire(b), Ok(()));
        l.release(a);
        assert_eq!(l.acquire(a), Ok(()));
        // IPv6: one /64 is one source.
        assert_eq!(l.acquire("2001:db8::1".parse().unwrap()), Ok(()));
        assert_eq!(l.acquire("2001:db8::2".parse().unwrap()), Ok(()));
        assert_eq!(
            l.acquire("2001:db8:0:1::1".parse().unwrap()),
            Err(Refused::Total)
        );
        l.release("2001:db8::1".parse().unwrap());
        assert_eq!(
            l.acquire("2001:db8::3".parse().unwrap()),
            Ok(()),
            "released"
        );
        assert_eq!(
            l.acquire("2001:db8::4".parse().unwrap()),
            Err(Refused::Total)
        );
    }

    #[test]
    fn a_reserved_place_counts_in_the_total_until_its_source_claims_it() {
        let l = ConnLimiter::new(2, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(l.reserve(), Ok(()));
        assert_eq!(l.reserve(), Ok(()));
        assert_eq!(l.reserve(), Err(Refused::Total));
        assert_eq!(l.claim(a), Ok(()));
        assert_eq!(
            l.claim(a),
            Err(Refused::PerIp),
            "per source after the header"
        );
        l.release_reserved();
        assert_eq!(l.acquire("192.0.2.2".parse().unwrap()), Ok(()));
        assert_eq!(l.acquire(a), Err(Refused::Total));
        l.release(a);
        assert_eq!(
            l.acquire(a),
            Ok(()),
            "claimed places are released by source"
        );
    }
}
