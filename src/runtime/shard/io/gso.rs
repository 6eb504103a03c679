//! UDP generic segmentation offload (Linux ≥ 4.18): a run of equal-sized datagrams for one
//! destination leaves in one sendmsg with a UDP_SEGMENT control message. The kernel walks
//! routing, netfilter and the device once per run instead of once per datagram and cuts
//! the segments at the end (in the NIC when it can). A burst of video packets to one peer,
//! or of echoes to one client, is such a run.
//!
//! Every send falls back to one datagram per syscall when the kernel refuses GSO for this
//! route (EIO: no checksum offload on the device; EINVAL: a segment larger than the path
//! MTU), so enabling it never loses a packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::SLOT;

/// At most this many segments in one message (UDP_MAX_SEGMENTS is 64 before Linux 6.6).
pub const MAX_SEGMENTS: usize = 64;
/// At most this many bytes in one message: one IP datagram's worth.
pub const MAX_BYTES: usize = 65000;

/// Whether this kernel knows UDP_SEGMENT (ENOPROTOOPT on older ones).
pub fn supported() -> bool {
    let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let v: libc::c_int = 1200;
    // SAFETY: a valid socket and an int option of the right size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &v as *const _ as *const _,
            size_of::<libc::c_int>() as _,
        ) == 0
    }
}

/// GSO's rule for one more datagram of `len` bytes in a message of `segs` segments and
/// `total` bytes whose first segment is `seg` bytes long (same socket and destination,
/// checked by the caller): no longer than the first, no shorter segment before it, within
/// the limits. Empty datagrams never join: a zero-length segment vanishes, and a GSO
/// size of 0 means one datagram for all.
pub fn may_join(seg: usize, segs: usize, total: usize, len: usize) -> bool {
    len > 0 && len <= seg && total == seg * segs && segs < MAX_SEGMENTS && total + len <= MAX_BYTES
}

/// Room for one cmsghdr carrying a u16, 8-byte aligned.
pub type Cmsg = [u64; 4];
// SAFETY: CMSG_SPACE only computes a size.
const CMSG_SPACE_U16: usize = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
// write_cmsg writes this much into a Cmsg: checked at compile time, not in debug builds only.
const _: () = assert!(CMSG_SPACE_U16 <= size_of::<Cmsg>());

/// Writes a UDP_SEGMENT control message for `segment` into `buf`; returns its length.
pub fn write_cmsg(buf: &mut Cmsg, segment: u16) -> usize {
    let space = CMSG_SPACE_U16;
    // SAFETY: buf is aligned for cmsghdr and holds CMSG_SPACE(2) bytes (the assert above),
    // so the header CMSG_FIRSTHDR finds and its data lie inside it.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_control = buf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
        space
    }
}

/// What became of a run: datagrams refused by the kernel, and those dropped for a full
/// socket buffer.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub failed: usize,
    pub blocked: usize,
}

impl Outcome {
    pub fn count(&mut self, e: &io::Error, n: usize) {
        if e.kind() == io::ErrorKind::WouldBlock {
            self.blocked += n;
        } else {
            self.failed += n;
        }
    }
}

/// Datagrams lying in a recvmmsg batch's buffer, queued for one destination from one
/// socket: each is `(offset, length)` into that buffer, all as long as the first but the
/// last, which may be shorter (GSO's rule). The owner sends the run before the buffer is
/// reused.
pub struct Run {
    /// The sending socket, as a key of the owner's socket table.
    pub key: u32,
    to: Option<SocketAddr>,
    parts: [(u32, u32); MAX_SEGMENTS],
    count: usize,
    total: usize,
    /// False after the kernel refused GSO on a device (EIO): one datagram per syscall.
    pub gso: bool,
}

impl Run {
    pub fn new(gso: bool) -> Run {
        Run {
            key: 0,
            to: None,
            parts: [(0, 0); MAX_SEGMENTS],
            count: 0,
            total: 0,
            gso,
        }
    }

    /// Forgets the queued datagrams (their socket is gone).
    pub fn clear(&mut self) {
        self.count = 0;
        self.total = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a datagram of `len` bytes from socket `key` to `to` may join the run.
    pub fn fits(&self, key: u32, to: SocketAddr, len: usize) -> bool {
        if self.count == 0 {
            return true;
        }
        self.gso
            && self.key == key
            && self.to == Some(to)
            && may_join(self.parts[0].1 as usize, self.count, self.total, len)
    }

    /// Queues a datagram (the caller checked `fits`, or the run is empty).
    pub fn push(&mut self, key: u32, to: SocketAddr, offset: usize, len: usize) {
        self.key = key;
        self.to = Some(to);
        self.parts[self.count] = (offset as u32, len as u32);
        self.count += 1;
        self.total += len;
    }

    /// Sends the run from `fd`, the datagrams read from `buf`, and empties it.
    pub fn send(&mut self, fd: RawFd, buf: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        let (count, to) = (self.count, self.to);
        self.clear();
        let Some(to) = to else { return out };
        let parts = &self.parts[..count];
        if count > 1 {
            match send(fd, buf, parts, to, true) {
                Ok(()) => return out,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => self.gso = false,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => {
                    out.count(&e, count);
                    return out;
                }
            }
        }
        for p in parts {
            if let Err(e) = send(fd, buf, std::slice::from_ref(p), to, false) {
                out.count(&e, 1);
            }
        }
        out
    }
}

/// One sendmsg of `parts` of `buf` to `to`, as GSO segments of the first part's length
/// when `segment` is set.
pub fn send(
    fd: RawFd,
    buf: &[u8],
    parts: &[(u32, u32)],
    to: SocketAddr,
    segment: bool,
) -> io::Result<()> {
    let mut iovs: [libc::iovec; MAX_SEGMENTS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SEGMENTS];
    for (iov, &(off, len)) in iovs.iter_mut().zip(parts) {
        let (off, len) = (off as usize, len as usize);
        // Bounds are checked here so that the kernel only reads inside `buf`.
        let part = &buf[off..off + len];
        iov.iov_base = part.as_ptr() as *mut _;
        iov.iov_len = len;
    }
    debug_assert!(parts.iter().all(|p| (p.1 as usize) < SLOT));
    let addr = SockAddr::from(to);
    let mut cmsg: Cmsg = [0; 4];
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { zeroed() };
    // The kernel only reads the address of a message it sends.
    msg.msg_name = addr.as_ptr().cast_mut().cast();
    msg.msg_namelen = addr.len();
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = parts.len() as _;
    if segment {
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = write_cmsg(&mut cmsg, parts[0].1 as u16) as _;
    }
    loop {
        // SAFETY: every pointer in `msg` refers to `addr`, `iovs`, `cmsg` or `buf`, which
        // outlive the call, with the length of what it points to.
        if unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        (rx, tx)
    }

    #[test]
    fn a_run_arrives_as_the_datagrams_it_was_made_of() {
        assert!(supported(), "this kernel has UDP GSO");
        let (rx, tx) = pair();
        let to = rx.local_addr().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut run = Run::new(true);
        // Three of 100 bytes and a shorter last one, scattered through the buffer.
        for (k, (off, len)) in [(0, 100), (1000, 100), (2000, 100), (3000, 40)]
            .into_iter()
            .enumerate()
        {
            buf[off..off + len].fill(k as u8 + 1);
            assert!(run.fits(7, to, len));
            run.push(7, to, off, len);
        }
        assert!(!run.fits(7, to, 40), "nothing after a short segment");
        assert_eq!(run.send(tx.as_raw_fd(), &buf), Outcome::default());
        assert!(run.is_empty());
        let mut got = [0u8; 2048];
        for (k, len) in [100, 100, 100, 40].into_iter().enumerate() {
            let (n, from) = rx.recv_from(&mut got).unwrap();
            assert_eq!((n, from), (len, tx.local_addr().unwrap()));
            assert!(got[..n].iter().all(|&b| b == k as u8 + 1));
        }
    }

    #[test]
    fn runs_break_on_another_destination_socket_or_a_longer_datagram() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
        let mut run = Run::new(true);
        run.push(1, to, 0, 100);
        assert!(run.fits(1, to, 100));
        assert!(!run.fits(2, to, 100));
        assert!(!run.fits(1, other, 100));
        assert!(!run.fits(1, to, 101));
        let mut empty = Run::new(true);
        empty.push(1, to, 0, 0);
        assert!(!empty.fits(1, to, 0), "empty datagrams each go alone");
        assert!(!run.fits(1, to, 0), "and never join a run");
        let mut off = Run::new(false);
        off.push(1, to, 0, 100);
        assert!(
            !off.fits(1, to, 100),
            "without GSO every datagram goes alone"
        );
    }
}
