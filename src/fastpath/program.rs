//! The BPF object (compiled by build.rs from `bpf/fastpath.bpf.c`), and attaching it to an
//! interface in one mode.
use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc};

use super::error::FastPathError;
use super::mode::AttachMode;

/// The program object; empty when the build had no clang (see build.rs).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));

pub const XDP_PROGRAM: &str = "turnpike_xdp";
pub const TC_PROGRAM: &str = "turnpike_tc";
/// The program's rodata variable holding the longest IP packet it may send.
pub const MAX_IP_LEN: &str = "max_ip_len";

/// An attachment in force; dropping the loaded program also detaches it.
#[derive(Debug)]
pub enum Link {
    Xdp(aya::programs::xdp::XdpLinkId),
    Tc(aya::programs::tc::SchedClassifierLinkId),
}

pub fn xdp(ebpf: &mut aya::Ebpf) -> Result<&mut Xdp, FastPathError> {
    let p = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or(FastPathError::Missing(XDP_PROGRAM))?;
    Ok(p.try_into()?)
}

pub fn tc_program(ebpf: &mut aya::Ebpf) -> Result<&mut SchedClassifier, FastPathError> {
    let p = ebpf
        .program_mut(TC_PROGRAM)
        .ok_or(FastPathError::Missing(TC_PROGRAM))?;
    Ok(p.try_into()?)
}

/// Attaches in one mode; the error is the kernel's answer, for the log and the fallback.
pub fn attach_one(
    ebpf: &mut aya::Ebpf,
    interface: &str,
    mode: AttachMode,
) -> Result<Link, FastPathError> {
    match mode {
        AttachMode::Xdp | AttachMode::XdpGeneric => {
            let flags = if mode == AttachMode::Xdp {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            Ok(Link::Xdp(xdp(ebpf)?.attach(interface, flags)?))
        }
        AttachMode::Tc => {
            let prog = tc_program(ebpf)?;
            match prog.attach(interface, TcAttachType::Ingress) {
                Ok(id) => Ok(Link::Tc(id)),
                // Kernels before 6.6 (no TCX) need the clsact qdisc first.
                Err(_) => {
                    let _ = tc::qdisc_add_clsact(interface);
                    Ok(Link::Tc(prog.attach(interface, TcAttachType::Ingress)?))
                }
            }
        }
    }
}

pub fn detach(ebpf: &mut aya::Ebpf, link: Link) -> Result<(), FastPathError> {
    match link {
        Link::Xdp(id) => xdp(ebpf)?.detach(id)?,
        Link::Tc(id) => tc_program(ebpf)?.detach(id)?,
    }
    Ok(())
}
