//! The PROXY protocol v2 header (haproxy's proxy-protocol.txt §2.2) that a load balancer
//! listed in `server.proxy_protocol` sends before anything else on a TCP/TLS connection:
//! the client's real address, which then stands for the socket's peer address everywhere.
//!
//! The `ppp` crate decodes the header; this file decides what is accepted (PROXY over
//! TCP/IPv4 or TCP/IPv6, or LOCAL; at most `MAX_TLV_BYTES` of TLVs, which are skipped)
//! and reads it off the socket exactly: never a byte past its end, so what follows (a TLS
//! ClientHello, the first STUN message) is left in the socket for the usual path.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header, ParseError, Protocol};

/// Why a header was refused: the `reason` label of
/// `turnpike_proxy_protocol_errors_total`, declared with the other metric labels.
pub use crate::metrics::labels::ProxyError;

/// The fixed part: 12 bytes of signature, version and command, family and protocol, and
/// the length of the rest.
const FIXED_LEN: usize = 16;
/// TLV bytes accepted after the addresses (load balancers send a few dozen: a connection
/// id, an AWS VPC endpoint id); a longer header is refused, not read.
pub const MAX_TLV_BYTES: usize = 512;

/// What the bytes at hand say.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A valid start: the header is `.0` bytes long (or at least that long, while the
    /// fixed part is incomplete).
    Need(usize),
    /// A complete header: the client's address for PROXY, None for LOCAL (a health
    /// check of the balancer itself: the socket's own peer address stays).
    Done(Option<SocketAddr>),
}

/// Decodes the start of a connection. O(1) in what it reads: the TLVs are not walked.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let header = match Header::try_from(buf) {
        Ok(h) => h,
        Err(ParseError::Incomplete(_)) => return Ok(Parsed::Need(FIXED_LEN)),
        // The fixed part is valid: its family is known (the byte at 13).
        Err(ParseError::Partial(_, rest)) if rest > address_bytes(buf[13]) + MAX_TLV_BYTES => {
            return Err(ProxyError::TooLong);
        }
        Err(ParseError::Partial(_, rest)) => return Ok(Parsed::Need(FIXED_LEN + rest)),
        Err(e) => return Err(refusal(e)),
    };
    if header.tlv_bytes().len() > MAX_TLV_BYTES {
        return Err(ProxyError::TooLong);
    }
    if header.command == Command::Local {
        return Ok(Parsed::Done(None));
    }
    if header.protocol != Protocol::Stream {
        return Err(ProxyError::Unsupported);
    }
    match header.addresses {
        Addresses::IPv4(a) => Ok(Parsed::Done(Some(SocketAddr::from((
            a.source_address,
            a.source_port,
        ))))),
        Addresses::IPv6(a) => Ok(Parsed::Done(Some(SocketAddr::from((
            a.source_address,
            a.source_port,
        ))))),
        Addresses::Unix(_) | Addresses::Unspecified => Err(ProxyError::Unsupported),
    }
}

/// The address block's length for a family and protocol byte that `ppp` accepted.
fn address_bytes(family_protocol: u8) -> usize {
    match family_protocol >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    }
}

fn refusal(e: ParseError) -> ProxyError {
    match e {
        ParseError::Version(_) => ProxyError::BadVersion,
        ParseError::Command(_) => ProxyError::BadCommand,
        ParseError::AddressFamily(_) | ParseError::Protocol(_) => ProxyError::Unsupported,
        ParseError::InvalidAddresses(..) => ProxyError::BadLength,
        _ => ProxyError::BadSignature,
    }
}

/// What a `HeaderRead::read` got to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The socket has no more bytes for now.
    Waiting,
    /// The header is read; what `Parsed::Done` says.
    Done(Option<SocketAddr>),
    /// The connection closed before its first byte: a port probe, not an error.
    Closed,
}

/// A header being read: at most 16 + 216 + `MAX_TLV_BYTES` bytes.
#[derive(Default)]
pub struct HeaderRead {
    buf: Vec<u8>,
}

impl HeaderRead {
    /// Reads only as many bytes as the header still needs, until it is complete or the
    /// socket is drained.
    pub fn read(&mut self, stream: &mut impl Read) -> Result<Step, ProxyError> {
        loop {
            let need = match parse(&self.buf)? {
                Parsed::Done(addr) => return Ok(Step::Done(addr)),
                Parsed::Need(n) => n,
            };
            let have = self.buf.len();
            self.buf.resize(need, 0);
            let got = stream.read(&mut self.buf[have..]);
            self.buf.truncate(have + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) if have == 0 => return Ok(Step::Closed),
                Ok(0) => return Err(ProxyError::Truncated),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Step::Waiting),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ProxyError::Truncated),
            }
        }
    }
}

#[cfg(test)]
mod tests;
