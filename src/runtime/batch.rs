//! recvmmsg/sendmmsg batches for the UDP relay path: one syscall moves up to BATCH
//! datagrams. Buffers are allocated once per shard; nothing is allocated per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use super::gso;

pub const BATCH: usize = 32;
/// Largest UDP payload plus room for a ChannelData or Data indication header and padding.
pub const SLOT: usize = 65536 + 64;

pub(super) fn to_storage(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
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
/// With `gso` on, datagrams pushed for the destination of the slot before, as long as
/// its first, share that slot and leave as one GSO message (gso.rs).
pub struct Batch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
    /// Segment length and count of each queued message (1 segment: a plain datagram).
    segs: [(u16, u16); BATCH],
    /// Destination of the last queued message.
    last: Option<SocketAddr>,
    pub count: usize,
    pub gso: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0; BATCH * SLOT],
            // SAFETY: all-zero is a valid (empty) sockaddr_storage.
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            lens: [0; BATCH],
            segs: [(0, 0); BATCH],
            last: None,
            count: 0,
            gso: false,
        }
    }
}

impl Batch {
    /// An empty batch that merges bursts into GSO messages when `gso` is set.
    pub fn with_gso(gso: bool) -> Batch {
        Batch {
            gso,
            ..Batch::default()
        }
    }

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

    /// Slot `i` read-only, for callers that keep offsets into `buffer()`.
    pub fn view(&self, i: usize) -> (&[u8], usize, Option<SocketAddr>) {
        let addr = from_storage(&self.addrs[i]);
        (&self.bufs[i * SLOT..(i + 1) * SLOT], self.lens[i], addr)
    }

    /// All slots: slot `i` starts at `i * SLOT`.
    pub fn buffer(&self) -> &[u8] {
        &self.bufs
    }

    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Queues `parts` (concatenated) for `to`. The caller flushes when full.
    pub fn push(&mut self, parts: &[&[u8]], to: SocketAddr) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let (i, at) = if self.joins_last(len, to) {
            let i = self.count - 1;
            self.segs[i].1 += 1;
            (i, self.lens[i])
        } else {
            let i = self.count;
            self.segs[i] = (len as u16, 1);
            self.lens[i] = 0;
            to_storage(to, &mut self.addrs[i]);
            self.count += 1;
            (i, 0)
        };
        let slot = &mut self.bufs[i * SLOT + at..(i + 1) * SLOT];
        let mut n = 0;
        for p in parts {
            slot[n..n + p.len()].copy_from_slice(p);
            n += p.len();
        }
        self.lens[i] += len;
        self.last = Some(to);
    }

    /// Whether a datagram of `len` bytes for `to` may be a further GSO segment of the
    /// last queued message: same destination, no longer than its first segment, and no
    /// shorter segment before it.
    fn joins_last(&self, len: usize, to: SocketAddr) -> bool {
        let Some(i) = self.count.checked_sub(1) else {
            return false;
        };
        let (seg, n) = (self.segs[i].0 as usize, self.segs[i].1 as usize);
        self.gso && self.last == Some(to) && gso::may_join(seg, n, self.lens[i], len)
    }

    /// Sends everything queued. A datagram the kernel refuses (full buffer, unreachable
    /// destination) is skipped and counted; the rest still go. A GSO message the kernel
    /// refuses as such goes again one datagram at a time. Returns (failed, would_block).
    pub fn flush(&mut self, fd: RawFd) -> (usize, usize) {
        let mut out = gso::Outcome::default();
        let mut start = 0;
        while start < self.count {
            let n = self.send_from(fd, start);
            if n > 0 {
                start += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first message failed: drop it (or resend its segments alone) and go on.
            let (seg, segs) = self.segs[start];
            let refused = matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL));
            if segs > 1 && refused {
                if e.raw_os_error() == Some(libc::EIO) {
                    self.gso = false;
                }
                let to = from_storage(&self.addrs[start]).expect("queued with an address");
                let (base, len, seg) = (start * SLOT, self.lens[start], seg as usize);
                for off in (0..len).step_by(seg) {
                    let part = [((base + off) as u32, seg.min(len - off) as u32)];
                    if let Err(e) = gso::send(fd, &self.bufs, &part, to, false) {
                        out.count(&e, 1);
                    }
                }
            } else {
                out.count(&e, segs as usize);
            }
            start += 1;
        }
        self.count = 0;
        self.last = None;
        (out.failed, out.blocked)
    }

    /// One sendmmsg of the messages queued from `start` on; returns what it returned.
    fn send_from(&mut self, fd: RawFd, start: usize) -> libc::c_int {
        // SAFETY: as in recv; the lengths are those written by push, the control
        // messages live in a local that outlives the call.
        unsafe {
            let mut iovs: [libc::iovec; BATCH] = zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = zeroed();
            let mut cmsgs: [gso::Cmsg; BATCH] = zeroed();
            for (k, i) in (start..self.count).enumerate() {
                iovs[k].iov_base = self.bufs.as_mut_ptr().add(i * SLOT) as *mut _;
                iovs[k].iov_len = self.lens[i];
                let h = &mut hdrs[k].msg_hdr;
                h.msg_name = &mut self.addrs[i] as *mut _ as *mut _;
                h.msg_namelen = if self.addrs[i].ss_family as i32 == libc::AF_INET {
                    size_of::<libc::sockaddr_in>() as _
                } else {
                    size_of::<libc::sockaddr_in6>() as _
                };
                h.msg_iov = &mut iovs[k];
                h.msg_iovlen = 1;
                let (seg, segs) = self.segs[i];
                if segs > 1 {
                    h.msg_control = cmsgs[k].as_mut_ptr() as *mut _;
                    h.msg_controllen = gso::write_cmsg(&mut cmsgs[k], seg) as _;
                }
            }
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                (self.count - start) as _,
                libc::MSG_DONTWAIT,
            )
        }
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

    #[test]
    fn with_gso_a_burst_for_one_client_is_one_message_and_arrives_as_its_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, to2) = (rx.local_addr().unwrap(), other.local_addr().unwrap());
        let mut out = Batch::with_gso(true);
        // 3 x 8 bytes and a shorter fourth: one message. Then a longer one for the same
        // client, one for another client, and one after the short segment: three more.
        for i in 0..3u8 {
            out.push(&[&[i; 4], &[i; 4]], to);
        }
        out.push(&[&[3; 5]], to);
        assert_eq!(out.count, 1, "one GSO message");
        out.push(&[&[4; 5]], to);
        out.push(&[&[5; 9]], to);
        out.push(&[&[6; 8]], to2);
        assert_eq!(out.count, 4);
        // Empty datagrams never merge, neither after a datagram nor after another one.
        out.push(&[], to2);
        out.push(&[], to2);
        assert_eq!(out.count, 6);
        assert_eq!(out.flush(tx.as_raw_fd()), (0, 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut inb = Batch::default();
        assert_eq!(
            inb.recv(rx.as_raw_fd(), 0).unwrap(),
            6,
            "each datagram alone"
        );
        for (i, want) in [8, 8, 8, 5, 5, 9].into_iter().enumerate() {
            let (slot, len, _) = inb.slot(i);
            assert_eq!(len, want);
            assert!(slot[..len].iter().all(|&b| b == i as u8), "in order");
        }
        assert_eq!(inb.recv(other.as_raw_fd(), 0).unwrap(), 3);
        assert_eq!((inb.slot(1).1, inb.slot(2).1), (0, 0));
    }
}
