//! A shard's datagram paths: client datagrams in by recvmmsg, peer datagrams in by
//! recvmmsg with headroom for their header, and framed messages out to clients by
//! sendmmsg (UDP) or the connection's queue (TCP/TLS).

use std::os::fd::AsRawFd;

use crate::proto::{channel_data, indication};
use crate::relay::{ClientId, PeerAction, Transport};

use super::io::SLOT;
use super::io::batch::BATCH;
use super::relay_sockets::client_packet;
use super::socket_errors::{keep_reading, record_dropped};
use super::{HEADROOM, Shard};

/// Zero bytes that pad ChannelData to 4 bytes on a stream.
const PADDING: [u8; 3] = [0; 3];

impl Shard {
    /// Up to BATCH datagrams from UDP clients in one recvmmsg. Payloads for a peer are
    /// queued as a run while the next ones go to the same peer from the same relay socket
    /// (one GSO send); a run leaves before the batch is reused and before any command
    /// runs (a command may close its relay socket). False when the socket has no more.
    pub(super) fn listener_batch(&mut self, li: usize) -> bool {
        let Some(listener) = self.udp.get(li) else {
            return false;
        };
        let n = match self.inbound.recv(listener.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => return keep_reading(&e),
        };
        for i in 0..n {
            let (_, len, from) = self.inbound.view(i);
            let Some(addr) = from else { continue };
            let client = ClientId {
                transport: Transport::Udp,
                listener: li as u16,
                addr,
            };
            let packet = (self.inbound.buffer(), i * SLOT..i * SLOT + len);
            let (core, relays, run) = (&mut self.core, &self.relays, &mut self.gso_run);
            if client_packet(core, relays, run, self.time, client, packet) {
                self.run_commands();
            }
        }
        self.relays
            .send_run(&mut self.core, &mut self.gso_run, self.inbound.buffer());
        n == BATCH
    }

    /// Sends the queued ChannelData to UDP clients.
    pub(super) fn flush_outbound(&mut self) {
        for (li, batch) in self.outbound.iter_mut().enumerate() {
            if batch.count > 0 {
                let (failed, blocked) = batch.flush(self.udp[li].as_raw_fd());
                record_dropped(&mut self.core, failed, blocked);
            }
        }
    }

    /// Up to BATCH packets from one relay socket in one recvmmsg (a socket emptied in
    /// fewer needs no extra read that would block: the poll is edge-triggered), each read
    /// `HEADROOM` bytes into its slot so that the ChannelData or Data indication header is
    /// written in front of it, and the padding after it, in place: no copy and no
    /// allocation on either framing. False when the socket has no more.
    pub(super) fn relay_batch(&mut self, key: usize) -> bool {
        let Some(relay) = self.relays.sockets.get(key) else {
            return false;
        };
        let (fd, relay_addr) = (relay.socket.as_raw_fd(), relay.addr);
        let Some(mut batch) = self.relay_in.take() else {
            return false;
        };
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(e) => {
                self.relay_in = Some(batch);
                return keep_reading(&e);
            }
        };
        let h = HEADROOM;
        for i in 0..n {
            let (buf, len, from) = batch.slot(i);
            let Some(from) = from else { continue };
            match self
                .core
                .handle_peer_packet(self.time, relay_addr, from, &buf[h..h + len])
            {
                PeerAction::ChannelData { client, channel } => {
                    let start = h - channel_data::HEADER_LEN;
                    channel_data::write_header(&mut buf[start..], channel, len);
                    // Streams need the padding to 4 bytes (RFC 8656 §12.5); datagrams do not.
                    let pad = channel_data::padded_len(len) - channel_data::HEADER_LEN - len;
                    self.send_to_client(client, &buf[start..h + len], pad);
                }
                PeerAction::DataIndication {
                    client,
                    transaction_id,
                } => {
                    let r = indication::frame_data_indication(buf, h, len, from, &transaction_id);
                    self.send_to_client(client, &buf[r], 0);
                }
                PeerAction::Drop(_) => {}
            }
        }
        self.relay_in = Some(batch);
        n == BATCH
    }

    /// A framed message for a client: UDP ones join the sendmmsg batch, stream ones the
    /// connection's queue (with `pad` zero bytes after it).
    pub(super) fn send_to_client(&mut self, client: ClientId, msg: &[u8], pad: usize) {
        if client.transport == Transport::Udp {
            if let Some(batch) = self.outbound.get_mut(client.listener as usize) {
                batch.push(&[msg], client.addr);
                if batch.is_full() {
                    self.flush_outbound();
                }
            }
        } else {
            self.send_stream(client, &[msg, &PADDING[..pad]]);
        }
    }
}
