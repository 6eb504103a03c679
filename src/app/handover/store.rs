//! `systemctl restart` without dropping calls, through systemd's file descriptor store.
//! systemd 252 keeps a service's store across `systemctl restart` and empties it on stop
//! (tested in a container: tests/ext_systemd_deb.rs). The unit sets
//! `RestartKillSignal=` to `RESTART_SIGNAL`, so a restart, unlike a stop (SIGTERM,
//! drain), asks this process to export and stand still, put every descriptor and the
//! payload in the store (`FDSTORE=1`, one name each), and exit at once. The next process
//! gets them back (`LISTEN_FDS`, `LISTEN_FDNAMES`), takes them over exactly like an
//! exec handover's, and removes them from the store. Packets wait in the socket buffers
//! meanwhile. Unlike SIGURG, the old process is gone before the new one starts: a new
//! binary that fails leaves nobody serving until systemd's `Restart=` starts it again,
//! with the same store (the store is emptied only once the shards run); TCP/TLS
//! connections end.

use std::io::{Error, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

use anyhow::Context;

use super::payload::Manifest;

/// The unit's `RestartKillSignal=`: SIGRTMIN+4 (nothing else sends it).
pub fn restart_signal() -> i32 {
    libc::SIGRTMIN() + 4
}

/// The store's name for the payload memfd; each other descriptor is `fd<N>`, N its
/// number in the old process (the manifest's numbers).
pub(super) const STATE_NAME: &str = "handover-state";

/// Every descriptor the manifest names, then the payload (last: a store without it is
/// one the next process only cleans up).
pub(super) fn store_all(m: &Manifest, memfd: RawFd) -> anyhow::Result<()> {
    let sock = notify_socket()?;
    for fd in m.fds() {
        send(&sock, &format!("FDSTORE=1\nFDNAME=fd{fd}"), Some(fd))
            .with_context(|| format!("storing descriptor {fd}"))?;
    }
    send(
        &sock,
        &format!("FDSTORE=1\nFDNAME={STATE_NAME}"),
        Some(memfd),
    )
    .context("storing the state")
}

/// Empties the store of `names` (the next process has taken them).
pub(super) fn remove(names: &[String]) {
    let Ok(sock) = notify_socket() else { return };
    for name in names {
        if let Err(e) = send(&sock, &format!("FDSTOREREMOVE=1\nFDNAME={name}"), None) {
            tracing::warn!(name = name.as_str(), error = %e, "could not empty systemd's store");
        }
    }
}

fn notify_socket() -> std::io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let path = std::env::var_os("NOTIFY_SOCKET")
        .ok_or(Error::new(ErrorKind::NotFound, "no NOTIFY_SOCKET"))?;
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None => std::os::unix::net::SocketAddr::from_pathname(&path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&addr)?;
    Ok(sock)
}

/// One notification, with `fd` attached (SCM_RIGHTS) when given.
fn send(sock: &UnixDatagram, msg: &str, fd: Option<RawFd>) -> std::io::Result<()> {
    let Some(fd) = fd else {
        return sock.send(msg.as_bytes()).map(|_| ());
    };
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let one = std::mem::size_of::<RawFd>() as u32;
    // SAFETY: CMSG_* compute sizes and offsets within `control`, sized by CMSG_SPACE
    // for one descriptor; sendmsg reads only what the header points to.
    unsafe {
        let mut control = vec![0u8; libc::CMSG_SPACE(one) as usize];
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.as_mut_ptr().cast();
        mh.msg_controllen = control.len();
        let c = libc::CMSG_FIRSTHDR(&mh);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(one) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        if libc::sendmsg(sock.as_raw_fd(), &mh, 0) < 0 {
            return Err(Error::last_os_error());
        }
    }
    Ok(())
}
