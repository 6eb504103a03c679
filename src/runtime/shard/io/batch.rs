//! recvmmsg/sendmmsg batches for the UDP relay path: one syscall moves up to BATCH
//! datagrams. Buffers are allocated once per shard; nothing is allocated per packet.

use std::io;
use std::mem::zeroed;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::{SockAddr, SockAddrStorage};

use super::{SLOT, gso};

pub const BATCH: usize = 32;
/// The largest UDP payload a socket can receive: an IPv6 datagram without jumbograms.
const MAX_DATAGRAM: usize = 65535 - 8;
/// A Data indication pads its DATA attribute to 4 bytes, after the payload.
const MAX_PADDING: usize = 3;

/// BATCH datagram slots with their addresses, for one recvmmsg or sendmmsg at a time.
/// With `gso` on, datagrams pushed for the destination of the slot before, as long as
/// its first, share that slot and leave as one GSO message (gso.rs).
pub struct Batch {
    bufs: Vec<u8>,
    /// Each slot's source after `recv`, or its destination once `push` queued it.
    addrs: Vec<SockAddr>,
    /// Where recvmmsg writes the sources: kept from call to call, so a call with one
    /// datagram (a burst-free load) does not clear BATCH of them first.
    names: Vec<SockAddrStorage>,
    lens: [usize; BATCH],
    /// Segment length and count of each queued message (1 segment: a plain datagram).
    segs: [(u16, u16); BATCH],
    /// Destination of the last queued message.
    last: Option<SocketAddr>,
    /// Where in its slot `recv` puts a datagram: room for a header written in front.
    headroom: usize,
    pub count: usize,
    pub gso: bool,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: vec![0; BATCH * SLOT],
            addrs: vec![SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))); BATCH],
            names: (0..BATCH).map(|_| SockAddrStorage::zeroed()).collect(),
            lens: [0; BATCH],
            segs: [(0, 0); BATCH],
            last: None,
            headroom: 0,
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

    /// An empty batch whose `recv` puts each datagram `headroom` bytes into its slot.
    /// Panics unless the largest datagram, its headroom and its padding fit in a slot:
    /// recvmmsg is given the rest of the slot, so a larger headroom would have the kernel
    /// write past it.
    pub fn with_headroom(headroom: usize) -> Batch {
        assert!(
            headroom + MAX_DATAGRAM + MAX_PADDING <= SLOT,
            "headroom {headroom} leaves no room in a {SLOT}-byte slot"
        );
        Batch {
            headroom,
            ..Batch::default()
        }
    }

    /// Receives up to BATCH datagrams, each at offset `headroom` of its slot. Returns how
    /// many (0 when the socket has nothing left to read).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let names = &mut self.names;
        // SAFETY: all-zero is a valid iovec and mmsghdr (null pointers, zero lengths).
        let (mut iovs, mut hdrs): ([libc::iovec; BATCH], [libc::mmsghdr; BATCH]) =
            unsafe { (zeroed(), zeroed()) };
        for (i, slot) in self.bufs.chunks_exact_mut(SLOT).enumerate() {
            let room = &mut slot[self.headroom..];
            iovs[i].iov_base = room.as_mut_ptr().cast();
            iovs[i].iov_len = room.len();
            hdrs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
            hdrs[i].msg_hdr.msg_namelen = names[i].size_of();
            hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in the headers refers to `iovs`, `names` or a slot of
        // `self.bufs`, all of which outlive the call, and every length is that of what it
        // points to, so the kernel writes only inside them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for (i, hdr) in hdrs.iter().take(n).enumerate() {
            self.lens[i] = hdr.msg_len as usize;
            // The received name becomes the slot's address; the address it replaces gives
            // its storage back for the next call (no copy, no clearing).
            let name = std::mem::replace(&mut self.names[i], SockAddrStorage::zeroed());
            // SAFETY: the kernel wrote the sender's address for this socket's family and
            // set its length.
            let addr = unsafe { SockAddr::new(name, hdr.msg_hdr.msg_namelen) };
            self.names[i] = std::mem::replace(&mut self.addrs[i], addr).as_storage();
        }
        self.count = n;
        Ok(n)
    }

    /// Slot `i` (whole, headroom included) and its address.
    pub fn slot(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let addr = self.addrs[i].as_socket();
        (&mut self.bufs[i * SLOT..(i + 1) * SLOT], self.lens[i], addr)
    }

    /// Slot `i` read-only, for callers that keep offsets into `buffer()`.
    pub fn view(&self, i: usize) -> (&[u8], usize, Option<SocketAddr>) {
        let addr = self.addrs[i].as_socket();
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
            self.addrs[i] = SockAddr::from(to);
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
                let to = self.addrs[start]
                    .as_socket()
                    .expect("queued with an address");
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
        // SAFETY: all-zero is a valid iovec, mmsghdr and control buffer.
        let (mut iovs, mut hdrs, mut cmsgs): (
            [libc::iovec; BATCH],
            [libc::mmsghdr; BATCH],
            [gso::Cmsg; BATCH],
        ) = unsafe { (zeroed(), zeroed(), zeroed()) };
        let slots = self.bufs.chunks_exact_mut(SLOT).skip(start);
        for (k, (i, slot)) in (start..self.count).zip(slots).enumerate() {
            let msg = &mut slot[..self.lens[i]];
            iovs[k].iov_base = msg.as_mut_ptr().cast();
            iovs[k].iov_len = msg.len();
            let h = &mut hdrs[k].msg_hdr;
            // The kernel only reads the address of a message it sends.
            h.msg_name = self.addrs[i].as_ptr().cast_mut().cast();
            h.msg_namelen = self.addrs[i].len();
            h.msg_iov = &raw mut iovs[k];
            h.msg_iovlen = 1;
            let (seg, segs) = self.segs[i];
            if segs > 1 {
                h.msg_control = cmsgs[k].as_mut_ptr().cast();
                h.msg_controllen = gso::write_cmsg(&mut cmsgs[k], seg) as _;
            }
        }
        // SAFETY: every pointer in the headers refers to `iovs`, `cmsgs`, `self.addrs` or
        // `self.bufs`, all of which outlive the call, with the length of what it points to.
        unsafe {
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
        let mut inb = Batch::with_headroom(4);
        assert_eq!(inb.recv(rx.as_raw_fd()).unwrap(), 5);
        for i in 0..5 {
            let (slot, len, from) = inb.slot(i);
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(&slot[4..4 + len], &[i as u8, i as u8, i as u8, 9]);
        }
        assert_eq!(inb.recv(rx.as_raw_fd()).unwrap(), 0, "nothing left");
    }

    #[test]
    #[should_panic(expected = "leaves no room")]
    fn headroom_that_leaves_no_room_for_the_largest_datagram_is_refused() {
        Batch::with_headroom(SLOT - MAX_DATAGRAM);
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
        assert_eq!(inb.recv(rx.as_raw_fd()).unwrap(), 6, "each datagram alone");
        for (i, want) in [8, 8, 8, 5, 5, 9].into_iter().enumerate() {
            let (slot, len, _) = inb.slot(i);
            assert_eq!(len, want);
            assert!(slot[..len].iter().all(|&b| b == i as u8), "in order");
        }
        assert_eq!(inb.recv(other.as_raw_fd()).unwrap(), 3);
        assert_eq!((inb.slot(1).1, inb.slot(2).1), (0, 0));
    }
}
