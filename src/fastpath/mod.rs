//! The kernel fast path (issue 19): an XDP program (TC where XDP cannot attach) that
//! relays UDP ChannelData between a client and a peer without waking userspace.
//!
//! It is an executor of the core's decisions, never a decider: the shell adds a
//! [`ChannelRoute`] when the core says a channel binding may be forwarded and removes it
//! when the core ends it (expiry of the channel, permission or allocation, delete,
//! shutdown). Every packet the program is unsure of (STUN, indications, unknown channels,
//! fragments, IP options, IPv6 extension headers, odd lengths, UDP without a checksum,
//! packets longer than the MTU once rewritten) goes up to the socket path unchanged.
//!
//! Deployment the program assumes: the relay's client and peer traffic enters and leaves
//! by one interface (a cloud VM: one NIC, one gateway). Rewritten frames leave by XDP_TX
//! on that interface, addressed to the MAC they came from (the gateway) unless a route
//! carries the next hop's MAC (peers on the same L2). A relay-to-relay binding (a peer
//! that is one of this server's relayed addresses) must stay on the socket path: XDP_TX
//! would send it to the wire instead of back into this host.
//!
//! Counters are per binding and per CPU, read and summed by [`FastPath::counters`]. A
//! packet the program took on another CPU while [`FastPath::remove`] ran may be counted
//! after the last read: the caller reads the counters once more before forgetting them.
//!
//! The runtime drives it (`[fastpath]`): `runtime::fastpath` loads and attaches it at start,
//! and each shard mirrors its core's `Command::FastPathAdd`/`FastPathRemove` into the maps
//! (`runtime::shard::kernel_path`); which bindings go in is the core's decision
//! (`relay::fastpath_binding`).
mod error;
mod maps;
mod mode;
mod program;

use aya::maps::{HashMap, MapData, MapError, PerCpuHashMap};
use aya::programs::{TestRun, TestRunOptions};

pub use error::FastPathError;
pub use maps::{ChannelRoute, Counters};
pub use mode::{AttachMode, Mode};

/// The loaded program and its maps; dropping it detaches the program.
pub struct FastPath {
    ebpf: aya::Ebpf,
    attached: Option<(String, AttachMode, program::Link)>,
}

impl FastPath {
    /// Loads the program into the kernel (root, or CAP_BPF + CAP_NET_ADMIN).
    /// `max_ip_len` is the interface's MTU: longer rewritten packets go up instead.
    pub fn load(max_ip_len: u32) -> Result<FastPath, FastPathError> {
        if program::OBJECT.is_empty() {
            return Err(FastPathError::NotBuilt);
        }
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(program::MAX_IP_LEN, &max_ip_len, true)
            .load(program::OBJECT)?;
        program::xdp(&mut ebpf)?.load()?;
        program::tc_program(&mut ebpf)?.load()?;
        Ok(FastPath {
            ebpf,
            attached: None,
        })
    }

    /// Attaches to `interface`, trying the modes `mode` allows best first. The error lists
    /// every mode tried with the kernel's answer.
    pub fn attach(&mut self, interface: &str, mode: Mode) -> Result<AttachMode, FastPathError> {
        self.detach()?;
        let mut tried = Vec::new();
        for m in mode.candidates() {
            match program::attach_one(&mut self.ebpf, interface, m) {
                Ok(link) => {
                    self.attached = Some((interface.to_string(), m, link));
                    return Ok(m);
                }
                Err(e) => tried.push((m, error::with_causes(&e))),
            }
        }
        Err(FastPathError::Attach {
            interface: interface.to_string(),
            tried,
        })
    }

    /// The interface and mode in use, if attached.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attached.as_ref().map(|(i, m, _)| (i.as_str(), *m))
    }

    pub fn detach(&mut self) -> Result<(), FastPathError> {
        match self.attached.take() {
            Some((_, _, link)) => program::detach(&mut self.ebpf, link),
            None => Ok(()),
        }
    }

    /// Lets the kernel forward a channel binding, both ways. The counters go in first, so
    /// the program never forwards a packet it cannot count.
    pub fn add(&mut self, route: &ChannelRoute) -> Result<(), FastPathError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zero = aya::maps::PerCpuValues::try_from(vec![Counters::default(); cpus])?;
        self.counters_map()?.insert(route.id, zero, 0)?;
        let (k, v) = route.peer_to_client();
        self.map::<maps::PeerToClientKey, maps::PeerToClientValue>(maps::PEER_TO_CLIENT)?
            .insert(k, v, 0)?;
        let (k, v) = route.client_to_peer();
        self.map::<maps::ClientToPeerKey, maps::ClientToPeerValue>(maps::CLIENT_TO_PEER)?
            .insert(k, v, 0)?;
        Ok(())
    }

    /// Stops forwarding a binding and returns its counters, which it also forgets.
    pub fn remove(&mut self, route: &ChannelRoute) -> Result<Counters, FastPathError> {
        let (k, _) = route.client_to_peer();
        ignore_missing(
            self.map::<maps::ClientToPeerKey, maps::ClientToPeerValue>(maps::CLIENT_TO_PEER)?
                .remove(&k),
        )?;
        let (k, _) = route.peer_to_client();
        ignore_missing(
            self.map::<maps::PeerToClientKey, maps::PeerToClientValue>(maps::PEER_TO_CLIENT)?
                .remove(&k),
        )?;
        let total = self.counters(route.id)?;
        ignore_missing(self.counters_map()?.remove(&route.id))?;
        Ok(total)
    }

    /// A binding's counters, summed over the CPUs (zero when it is not installed).
    pub fn counters(&mut self, id: u64) -> Result<Counters, FastPathError> {
        let mut total = Counters::default();
        match self.counters_map()?.get(&id, 0) {
            Ok(per_cpu) => per_cpu.iter().for_each(|c| total += *c),
            Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(total)
    }

    /// Runs the program of `mode` once on `frame` (BPF_PROG_TEST_RUN, no interface
    /// needed) and returns its verdict and the frame as it left. XDP: XDP_PASS = 2,
    /// XDP_TX = 3; TC: TC_ACT_OK = 0, TC_ACT_REDIRECT = 7. For tests and self-checks.
    pub fn test_run(
        &mut self,
        mode: AttachMode,
        frame: &[u8],
    ) -> Result<(u32, Vec<u8>), FastPathError> {
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let r = match mode {
            AttachMode::Xdp | AttachMode::XdpGeneric => {
                program::xdp(&mut self.ebpf)?.test_run(opts)?
            }
            AttachMode::Tc => program::tc_program(&mut self.ebpf)?.test_run(opts)?,
        };
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    fn map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, FastPathError> {
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(FastPathError::Missing(name))?;
        Ok(HashMap::try_from(m)?)
    }

    fn counters_map(
        &mut self,
    ) -> Result<PerCpuHashMap<&mut MapData, u64, Counters>, FastPathError> {
        let m = self
            .ebpf
            .map_mut(maps::COUNTERS)
            .ok_or(FastPathError::Missing(maps::COUNTERS))?;
        Ok(PerCpuHashMap::try_from(m)?)
    }
}

/// Removing what is not there is not an error: removal is idempotent.
fn ignore_missing(r: Result<(), MapError>) -> Result<(), FastPathError> {
    match r {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
