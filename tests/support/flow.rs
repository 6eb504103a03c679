//! A call at 50 packets/s through a relay, counting what the echo peer sent back: the
//! handover tests' measure of packets lost.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A call at 50 packets/s: each packet carries its sequence number; the echo peer sends
/// it back. `sent` and `received` are read at the end.
pub struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<u64>>,
    received: Arc<Mutex<HashSet<u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flow {
    pub fn start(
        sock: &UdpSocket,
        server: SocketAddr,
        frame: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(0u64));
        let received = Arc::new(Mutex::new(HashSet::new()));
        let tx = sock.try_clone().unwrap();
        let rx = sock.try_clone().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (s, n) = (stop.clone(), sent.clone());
        let sender = std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let mut payload = b"seq:".to_vec();
                payload.extend_from_slice(&i.to_be_bytes());
                tx.send_to(&frame(&payload), server).unwrap();
                i += 1;
                *n.lock().unwrap() = i;
                let next = start + Duration::from_millis(20 * i);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        let (s, r) = (stop.clone(), received.clone());
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                if let Ok((len, _)) = rx.recv_from(&mut buf)
                    && let Some(at) = buf[..len].windows(4).position(|w| w == b"seq:")
                    && len >= at + 12
                {
                    let seq = u64::from_be_bytes(buf[at + 4..at + 12].try_into().unwrap());
                    r.lock().unwrap().insert(seq);
                }
            }
        });
        Flow {
            stop,
            sent,
            received,
            threads: vec![sender, receiver],
        }
    }

    /// Stops sending, lets the last echoes come back; (sent, lost).
    pub fn finish(self) -> (u64, u64) {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let sent = *self.sent.lock().unwrap();
        // The last few were sent while the receiver was stopping: count what had time.
        let due = sent.saturating_sub(10);
        let got = self
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s < due)
            .count() as u64;
        (due, due - got)
    }
}
