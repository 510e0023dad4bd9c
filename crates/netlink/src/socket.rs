//! The blocking request/response transport.

use std::io;
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};

/// Receive buffer size; dumps of many links with stats exceed 8 KiB per datagram.
pub(crate) const RECV_BUF: usize = 64 * 1024;
/// How long to wait for a reply before giving up.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to restart a dump that the kernel marked inconsistent.
pub(crate) const DUMP_ATTEMPTS: u32 = 10;

/// A NETLINK_ROUTE socket with sequence tracking.
#[derive(Debug)]
pub(crate) struct Socket {
    sock: NlSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens and binds a socket in the calling thread's namespace.
    pub(crate) fn open() -> Result<Self> {
        let op = "open netlink socket";
        let io = |source: io::Error| Error::Io {
            op: op.into(),
            source,
        };
        let mut sock = NlSocket::new(NETLINK_ROUTE).map_err(io)?;
        sock.bind_auto().map_err(io)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(io)?;
        // Strict checking makes the kernel honour dump filters and reject malformed
        // headers instead of ignoring them; extended ACKs give better error text.
        sock.set_netlink_get_strict_chk(true).map_err(io)?;
        let _ = sock.set_ext_ack(true);
        let tv = TimeVal::new(i64::try_from(RECV_TIMEOUT.as_secs()).unwrap_or(10), 0);
        setsockopt(&sock, sockopt::ReceiveTimeout, &tv).map_err(|e| io(e.into()))?;
        Ok(Self {
            sock,
            seq: std::process::id().wrapping_mul(7919),
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends `msg` and collects the reply messages. `flags` are added to
    /// `NLM_F_REQUEST`; dumps (`NLM_F_DUMP`) are restarted when interrupted, other
    /// requests always ask for an ACK and return once it arrives.
    ///
    /// `M` is `RouteNetlinkMessage` for everything `netlink-packet-route` models, or a
    /// message type of our own (`crate::netconf`); every reply to the request must
    /// decode as `M`.
    pub(crate) fn request<M>(&mut self, msg: M, flags: u16, op: &str) -> Result<Vec<M>>
    where
        M: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let flags = if dump {
            NLM_F_REQUEST | flags
        } else {
            NLM_F_REQUEST | NLM_F_ACK | flags
        };
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.send(msg.clone(), flags, op)?;
            let (replies, interrupted) = self.receive(seq, op)?;
            if !(dump && interrupted) {
                return Ok(replies);
            }
            log::debug!("{op}: dump interrupted, retrying");
        }
        Err(Error::DumpInterrupted {
            op: op.into(),
            attempts: DUMP_ATTEMPTS,
        })
    }

    fn send<M: NetlinkSerializable>(&mut self, msg: M, flags: u16, op: &str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = encode(msg, flags, self.seq);
        self.sock.send(&bytes, 0).map_err(|source| Error::Io {
            op: format!("{op}: send"),
            source,
        })?;
        Ok(self.seq)
    }

    /// Reads datagrams until the ACK/error/DONE for `seq`. Returns the inner messages and
    /// whether any part carried `NLM_F_DUMP_INTR`.
    fn receive<M: NetlinkDeserializable>(&mut self, seq: u32, op: &str) -> Result<(Vec<M>, bool)> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.buf.clear();
            let n = match self.sock.recv(&mut self.buf, 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Error::Timeout {
                        op: op.into(),
                        secs: RECV_TIMEOUT.as_secs(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Io {
                        op: format!("{op}: receive"),
                        source,
                    });
                }
            };
            if n > self.buf.len() {
                return Err(Error::Unexpected {
                    op: op.into(),
                    what: format!("datagram of {n} bytes truncated to {}", self.buf.len()),
                });
            }
            let mut off = 0;
            while off < n {
                let chunk = self.buf.get(off..n).unwrap_or_default();
                let decode = |e: DecodeError| Error::Decode {
                    op: op.into(),
                    reason: e.to_string(),
                };
                let head = NetlinkBuffer::new_checked(chunk).map_err(decode)?;
                let len = head.length() as usize;
                if len == 0 {
                    return Err(Error::Unexpected {
                        op: op.into(),
                        what: "zero-length message".into(),
                    });
                }
                off += (len + 3) & !3;
                if head.sequence_number() != seq {
                    // A late reply to an earlier request that timed out: not ours, and
                    // possibly of another message type, so it is skipped undecoded.
                    log::debug!("{op}: skipping reply with seq {}", head.sequence_number());
                    continue;
                }
                let msg = NetlinkMessage::<M>::deserialize(chunk).map_err(decode)?;
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok((out, interrupted)),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok((out, interrupted)),
                        Some(code) => {
                            return Err(Error::Kernel {
                                op: op.into(),
                                errno: Errno::from_raw(code.get().abs()),
                            });
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Overrun(_) => {
                        return Err(Error::Unexpected {
                            op: op.into(),
                            what: "overrun".into(),
                        });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Serialises one request.
pub(crate) fn encode<M: NetlinkSerializable>(msg: M, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut bytes = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::LinkMessage;

    #[test]
    fn encode_sets_header() {
        let b = encode(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            42,
        );
        // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32; then ifinfomsg (16).
        assert_eq!(b.len(), 32);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 32);
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            libc::RTM_GETLINK
        );
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 42);
        assert!(
            b[16..].iter().all(|&x| x == 0),
            "strict dumps need a zero header"
        );
    }
}
