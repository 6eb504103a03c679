//! Starting the kernel fast path (`[fastpath]`): find the interface, load the program and
//! attach it. Any failure leaves the server on the socket path with the reason logged; the
//! shards then get no `FastPath` and their cores emit no routes.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::fastpath::{AttachMode, FastPath, Mode};
use crate::settings::Settings;

/// The attached program, shared by the shards (one set of maps per process).
#[derive(Clone)]
pub struct Attached {
    pub fastpath: Arc<Mutex<FastPath>>,
    pub interface: String,
    pub mode: AttachMode,
}

/// Loads and attaches as `[fastpath]` says. Err carries why not, for the log line and
/// `turnpike check-config`.
pub fn attach(s: &Settings) -> Result<Attached, String> {
    let cfg = &s.config.fastpath;
    let interface = match &cfg.interface {
        Some(i) => i.clone(),
        None => interface_of(s.relay_v4.bind).ok_or_else(|| {
            format!(
                "no interface holds relay.ipv4 {}: set fastpath.interface",
                s.relay_v4.bind
            )
        })?,
    };
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .map_err(|e| format!("interface {interface:?}: {e}"))?;
    let mtu: u32 = mtu
        .trim()
        .parse()
        .map_err(|_| "unreadable MTU".to_string())?;
    let mode: Mode = cfg.mode.label().parse()?;
    let mut fp = FastPath::load(mtu).map_err(|e| e.to_string())?;
    let mode = fp.attach(&interface, mode).map_err(|e| e.to_string())?;
    Ok(Attached {
        fastpath: Arc::new(Mutex::new(fp)),
        interface,
        mode,
    })
}

/// Starts the fast path if enabled, logging the outcome: one line saying the mode in use.
pub fn start(s: &Settings) -> Option<Attached> {
    if !s.config.fastpath.enabled {
        return None;
    }
    match attach(s) {
        Ok(a) => {
            tracing::info!(
                interface = %a.interface,
                mode = a.mode.label(),
                "kernel fast path attached: UDP ChannelData of installed channel bindings is relayed in the kernel"
            );
            Some(a)
        }
        Err(why) => {
            tracing::warn!(reason = %why, "kernel fast path not attached: relaying on the socket path");
            None
        }
    }
}

/// Each UDP listener's address as clients' packets name it, by listener index. A wildcard
/// listener stands for the relay address of its family (the address a cloud VM's NIC
/// holds); None when that is a wildcard too: its clients stay on the socket path.
pub fn listener_addresses(s: &Settings) -> Vec<Option<SocketAddr>> {
    let relay = |v4: bool| match v4 {
        true => Some(s.relay_v4.bind),
        false => s.relay_v6.map(|f| f.bind),
    };
    s.config
        .server
        .listen_udp
        .iter()
        .map(|l| {
            let ip = match l.ip().is_unspecified() {
                true => relay(l.is_ipv4()).filter(|ip| !ip.is_unspecified())?,
                false => l.ip(),
            };
            Some(SocketAddr::new(ip, l.port()))
        })
        .collect()
}

/// The name of the interface holding `ip` (getifaddrs).
pub fn interface_of(ip: IpAddr) -> Option<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() && found.is_none() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it names.
        let addr = unsafe { sockaddr_ip(ifa.ifa_addr) };
        if addr == Some(ip) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// # Safety
/// `sa` is null or points to a sockaddr of the size its family says.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract above.
    unsafe {
        match (*sa).sa_family as i32 {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

impl Attached {
    /// Detaches the program for a handover: the kernel forwards nothing more, and the
    /// maps keep their final counters for the shards to read before they export.
    pub fn pause(&self) -> Result<(), String> {
        let mut fp = self.fastpath.lock().unwrap_or_else(|e| e.into_inner());
        fp.detach().map_err(|e| e.to_string())
    }

    /// Attaches again after a handover that did not happen, in the mode it had: the
    /// routes are still in the maps and their counters go on.
    pub fn resume(&self) {
        let mut fp = self.fastpath.lock().unwrap_or_else(|e| e.into_inner());
        match fp.attach(&self.interface, Mode::Only(self.mode)) {
            Ok(_) => tracing::info!("kernel fast path attached again"),
            Err(e) => tracing::warn!(
                error = %e,
                "kernel fast path not attached again: its bindings' packets are relayed on the socket path"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_address_is_on_lo() {
        let lo = super::interface_of("127.0.0.1".parse().unwrap());
        assert_eq!(lo.as_deref(), Some("lo"));
        assert_eq!(super::interface_of("192.0.2.254".parse().unwrap()), None);
    }
}
