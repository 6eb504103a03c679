//! recvmmsg/sendmmsg batches for the UDP relay path: one syscall moves up to BATCH
//! datagrams. Buffers are allocated once per shard; nothing is allocated per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

pub const BATCH: usize = 32;
/// Largest UDP payload plus room for a ChannelData or Data indication header and padding.
pub const SLOT: usize = 65536 + 64;

fn to_storage(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_in/sockaddr_in6 fit in sockaddr_storage, which is what it is for.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(out as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(out as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the family field says which layout the kernel wrote.
    unsafe {
        match s.ss_family as libc::c_int {
            libc::AF_INET => {
                let sin = &*(s as *const _ as *const libc::sockaddr_in);
                let ip = u32::from_ne_bytes(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip.to_ne_bytes().into(),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6 = &*(s as *const _ as *const libc::sockaddr_in6);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    sin6.sin6_addr.s6_addr.into(),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// BATCH datagram slots with their addresses, for one recvmmsg or sendmmsg at a time.
pub struct Batch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    pub count: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0; BATCH * SLOT],
            // SAFETY: all-zero is a valid (empty) sockaddr_storage.
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            lens: [0; BATCH],
            count: 0,
        }
    }
}

impl Batch {
    /// Receives up to BATCH datagrams, each at offset `headroom` of its slot. Returns how
    /// many (0 when the socket is drained).
    pub fn recv(&mut self, fd: RawFd, headroom: usize) -> io::Result<usize> {
        // SAFETY: the iovecs and headers point into self's buffers, which outlive the
        // call; the kernel writes at most the lengths given.
        unsafe {
            let mut iovs: [libc::iovec; BATCH] = zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = zeroed();
            for i in 0..BATCH {
                iovs[i].iov_base = self.bufs.as_mut_ptr().add(i * SLOT + headroom) as *mut _;
                iovs[i].iov_len = SLOT - headroom;
                hdrs[i].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut _;
                hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            let n = libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(0)
                } else {
                    Err(e)
                };
            }
            for (len, hdr) in self.lens.iter_mut().zip(&hdrs).take(n as usize) {
                *len = hdr.msg_len as usize;
            }
            self.count = n as usize;
            Ok(n as usize)
        }
    }

    /// Slot `i` (whole, headroom included) and its address.
    pub fn slot(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let addr = from_storage(&self.addrs[i]);
        (&mut self.bufs[i * SLOT..(i + 1) * SLOT], self.lens[i], addr)
    }

    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Queues `parts` (concatenated) for `to`. The caller flushes when full.
    pub fn push(&mut self, parts: &[&[u8]], to: SocketAddr) {
        let i = self.count;
        let slot = &mut self.bufs[i * SLOT..(i + 1) * SLOT];
        let mut len = 0;
        for p in parts {
            slot[len..len + p.len()].copy_from_slice(p);
            len += p.len();
        }
        self.lens[i] = len;
        to_storage(to, &mut self.addrs[i]);
        self.count += 1;
    }

    /// Sends everything queued. A datagram the kernel refuses (full buffer, unreachable
    /// destination) is skipped and counted; the rest still go. Returns (failed, would_block).
    pub fn flush(&mut self, fd: RawFd) -> (usize, usize) {
        let (mut failed, mut blocked) = (0, 0);
        let mut start = 0;
        while start < self.count {
            // SAFETY: as in recv; the lengths are those written by push.
            let n = unsafe {
                let mut iovs: [libc::iovec; BATCH] = zeroed();
                let mut hdrs: [libc::mmsghdr; BATCH] = zeroed();
                for (k, i) in (start..self.count).enumerate() {
                    iovs[k].iov_base = self.bufs.as_mut_ptr().add(i * SLOT) as *mut _;
                    iovs[k].iov_len = self.lens[i];
                    hdrs[k].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut _;
                    hdrs[k].msg_hdr.msg_namelen = if self.addrs[i].ss_family as i32 == libc::AF_INET
                    {
                        size_of::<libc::sockaddr_in>() as _
                    } else {
                        size_of::<libc::sockaddr_in6>() as _
                    };
                    hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
                    hdrs[k].msg_hdr.msg_iovlen = 1;
                }
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    (self.count - start) as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                start += n as usize;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram failed: drop it and go on with the others.
                if e.kind() == io::ErrorKind::WouldBlock {
                    blocked += 1;
                } else {
                    failed += 1;
                }
                start += 1;
            }
        }
        self.count = 0;
        (failed, blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_round_trips_datagrams_and_their_addresses() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = Batch::default();
        for i in 0..5u8 {
            out.push(&[&[i; 3], &[9]], rx.local_addr().unwrap());
        }
        assert_eq!(out.flush(tx.as_raw_fd()), (0, 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut inb = Batch::default();
        assert_eq!(inb.recv(rx.as_raw_fd(), 4).unwrap(), 5);
        for i in 0..5 {
            let (slot, len, from) = inb.slot(i);
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(&slot[4..4 + len], &[i as u8, i as u8, i as u8, 9]);
        }
        assert_eq!(inb.recv(rx.as_raw_fd(), 4).unwrap(), 0, "drained");
    }
}
