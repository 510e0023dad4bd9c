//! A `NETLINK_NETFILTER` (nfnetlink) request/reply socket shared by the native kernel
//! requests of this crate: conntrack counts, dumps and deletes ([`crate::conntrack`]),
//! the nf_tables table probe ([`crate::nft::table_exists`]) and reads of iptables-nft
//! rules ([`crate::iptables::native`]).
//!
//! Messages are built and parsed with `netlink-packet-core` / `netlink-packet-netfilter`;
//! this module only adds what those crates leave to the caller: a bound, connected
//! socket in the calling thread's network namespace with a receive timeout, sequence
//! numbers, and reading the replies of one request until it is finished.

use std::io;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// How long one receive may wait for the kernel before the request fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer; the kernel sizes dump datagrams up to 32 KiB after a large read.
const RECV_BUF: usize = 64 * 1024;
/// Datagrams up to this size fit the default send buffer (`wmem_default` 208 KiB).
const SMALL_DATAGRAM: usize = 128 * 1024;
/// `NFNETLINK_V0`, the only nfnetlink version.
pub(crate) const NFNETLINK_V0: u8 = 0;

/// What one received message meant for the pending request.
pub(crate) enum Reply {
    /// A data message (a dumped entry, a requested object), already decoded.
    Entry(Box<NetfilterMessageInner>),
    /// A data message that could not be decoded.
    Undecodable(String),
    /// `NLMSG_DONE` or an ACK: the request is complete.
    Finished,
    /// Something to skip: another request's reply, `NLMSG_NOOP`.
    Ignore,
}

/// One received netlink message, undecoded ([`Conn::receive_raw`]).
pub(crate) struct RawMsg<'a> {
    /// `nlmsg_type`.
    pub(crate) kind: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// Everything after the netlink header.
    pub(crate) payload: &'a [u8],
}

/// A bound, connected `NETLINK_NETFILTER` socket with sequence tracking.
pub(crate) struct Conn {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Drop for Conn {
    /// Parks a duplicate of the socket instead of letting this be its last close (which
    /// may wait for nf_tables' deferred cleanup: see [`crate::release`]).
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        if let Ok(fd) = self.sock.as_fd().try_clone_to_owned() {
            crate::release::park(fd);
        }
    }
}

impl Conn {
    /// Opens the socket in the calling thread's network namespace. Errors name the step.
    pub(crate) fn open() -> Result<Conn, (String, io::Error)> {
        let fail = |step: &str, source: io::Error| {
            (format!("open NETLINK_NETFILTER socket: {step}"), source)
        };
        let mut sock =
            netlink_sys::Socket::new(NETLINK_NETFILTER).map_err(|e| fail("socket", e))?;
        sock.bind_auto().map_err(|e| fail("bind", e))?;
        sock.connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(|e| fail("connect", e))?;
        let secs = i64::try_from(RECV_TIMEOUT.as_secs()).unwrap_or(5);
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(secs, 0))
            .map_err(|e| fail("set SO_RCVTIMEO", e.into()))?;
        Ok(Conn {
            sock,
            // Distinct per process, so replies to another process's socket never match.
            seq: std::process::id().wrapping_mul(2_654_435_761),
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Opens a socket that only listens: subscribed to multicast group `group` (e.g.
    /// `NFNLGRP_CONNTRACK_NEW`) in the calling thread's network namespace, non-blocking,
    /// for [`Conn::drain_events`]. Events queued from the moment this returns are kept
    /// until drained (or until the receive buffer overflows, reported as `ENOBUFS`).
    pub(crate) fn open_events(group: u32) -> Result<Conn, (String, io::Error)> {
        let fail = |step: &str, source: io::Error| {
            (
                format!("open NETLINK_NETFILTER event socket (group {group}): {step}"),
                source,
            )
        };
        let mut sock =
            netlink_sys::Socket::new(NETLINK_NETFILTER).map_err(|e| fail("socket", e))?;
        sock.bind_auto().map_err(|e| fail("bind", e))?;
        sock.add_membership(group)
            .map_err(|e| fail("join the group", e))?;
        sock.set_non_blocking(true)
            .map_err(|e| fail("set non-blocking", e))?;
        Ok(Conn {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Hands every event queued on an [`Conn::open_events`] socket to `each`, without
    /// waiting for more. Fails with `ENOBUFS` when the kernel had to drop events because
    /// the receive buffer was full: the caller then cannot know what it missed.
    pub(crate) fn drain_events(&mut self, mut each: impl FnMut(Reply)) -> io::Result<()> {
        while let Some(n) = self.recv_queued()? {
            let mut off = 0;
            while off < n {
                let rest = self.buf.get(off..n).unwrap_or_default();
                // Events carry sequence number 0.
                let (len, reply, _) = parse_one(rest, 0)?;
                off += (len + 3) & !3;
                each(reply);
            }
        }
        Ok(())
    }

    /// Sends one nfnetlink request (`nfgenmsg` family `family`) with
    /// `NLM_F_REQUEST | flags`; returns its sequence number.
    pub(crate) fn send(
        &mut self,
        family: NetfilterProtoFamily,
        msg: impl Into<NetfilterMessageInner>,
        flags: u16,
    ) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let nf = NetfilterMessage::new(NetfilterHeader::new(family, NFNETLINK_V0, 0), msg);
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(nf));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let sent = self.sock.send(&bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short send: {sent} of {} bytes", bytes.len()),
            ));
        }
        Ok(self.seq)
    }

    /// Reads datagrams and hands every message of request `seq` to `each` until the
    /// request is finished (`NLMSG_DONE` or ACK). Returns whether any part was marked
    /// `NLM_F_DUMP_INTR`. A kernel error becomes an `io::Error` with its errno.
    pub(crate) fn receive_until_finished(
        &mut self,
        seq: u32,
        mut each: impl FnMut(Reply),
    ) -> io::Result<bool> {
        self.receive_while(seq, |reply| {
            each(reply);
            true
        })
        .map(|(interrupted, _)| interrupted)
    }

    /// Like [`Conn::receive_until_finished`], but stops as soon as `each` returns
    /// `false`: the rest of a dump is then neither read nor built by the kernel (it
    /// fills the next datagram only when asked), so the connection must not be used for
    /// another request afterwards. Returns (any part `NLM_F_DUMP_INTR`, stopped early).
    pub(crate) fn receive_while(
        &mut self,
        seq: u32,
        mut each: impl FnMut(Reply) -> bool,
    ) -> io::Result<(bool, bool)> {
        let mut interrupted = false;
        loop {
            let n = self.recv()?;
            let mut off = 0;
            while off < n {
                let rest = self.buf.get(off..n).unwrap_or_default();
                let (len, reply, intr) = parse_one(rest, seq)?;
                interrupted |= intr;
                // Messages are 4-byte aligned within a datagram.
                off += (len + 3) & !3;
                let finished = matches!(reply, Reply::Finished);
                if !each(reply) {
                    return Ok((interrupted, !finished));
                }
                if finished {
                    return Ok((interrupted, false));
                }
            }
        }
    }

    /// Reserves `n` consecutive sequence numbers for a caller that builds its own
    /// messages ([`Conn::send_bytes`]); returns the first.
    pub(crate) fn reserve_seq(&mut self, n: u32) -> u32 {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// Sends already encoded netlink messages (one datagram, e.g. an nf_tables batch).
    /// The kernel refuses a datagram larger than the send buffer (`EMSGSIZE`), so for a
    /// large one the buffer is raised first, as nft does (`SO_SNDBUFFORCE`, which root
    /// may use beyond `wmem_max`; else `SO_SNDBUF`).
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > SMALL_DATAGRAM {
            // The kernel doubles the value it is given and keeps 32 bytes of margin.
            let want = bytes.len() / 2 + 4096;
            if setsockopt(&self.sock, sockopt::SndBufForce, &want).is_err() {
                setsockopt(&self.sock, sockopt::SndBuf, &want)?;
            }
        }
        let sent = self.sock.send(bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short send: {sent} of {} bytes", bytes.len()),
            ));
        }
        Ok(())
    }

    /// Hands every message queued on an [`Conn::open_events`] socket, undecoded, to
    /// `each`, without waiting for more. Fails with `ENOBUFS` when the kernel dropped
    /// events for lack of room.
    pub(crate) fn drain_raw_events(&mut self, mut each: impl FnMut(RawMsg<'_>)) -> io::Result<()> {
        while let Some(n) = self.recv_queued()? {
            for_each_raw(self.buf.get(..n).unwrap_or_default(), |m| {
                each(m);
                Ok(true)
            })?;
        }
        Ok(())
    }

    /// The socket, for `poll`.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.sock.as_fd()
    }

    /// Raises the receive buffer to `bytes` (`SO_RCVBUFFORCE` as root, else
    /// `SO_RCVBUF` up to `rmem_max`), so a burst of events is less likely to overflow.
    pub(crate) fn grow_receive_buffer(&self, bytes: usize) {
        if setsockopt(&self.sock, sockopt::RcvBufForce, &bytes).is_err() {
            let _ = setsockopt(&self.sock, sockopt::RcvBuf, &bytes);
        }
    }

    /// Reads datagrams and hands every message, undecoded, to `each` until it returns
    /// `Ok(false)` (the caller recognised the end of its request) or an error.
    pub(crate) fn receive_raw(
        &mut self,
        mut each: impl FnMut(RawMsg<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            let n = self.recv()?;
            if !for_each_raw(self.buf.get(..n).unwrap_or_default(), &mut each)? {
                return Ok(());
            }
        }
    }

    /// Receives one datagram into `self.buf`; returns its length. Nothing within
    /// [`RECV_TIMEOUT`] is an error.
    fn recv(&mut self) -> io::Result<usize> {
        self.recv_queued()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no reply from the kernel within {} s",
                    RECV_TIMEOUT.as_secs()
                ),
            )
        })
    }

    /// Receives one datagram into `self.buf`; returns its length, or `None` when none
    /// came: nothing queued on a non-blocking socket, or the receive timeout ran out.
    fn recv_queued(&mut self) -> io::Result<Option<usize>> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("datagram of {n} bytes truncated to {}", self.buf.len()),
                    ));
                }
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Hands each netlink message of one datagram, undecoded, to `each` while it returns
/// `Ok(true)`; returns `Ok(false)` when `each` stopped early.
fn for_each_raw(
    datagram: &[u8],
    mut each: impl FnMut(RawMsg<'_>) -> io::Result<bool>,
) -> io::Result<bool> {
    let mut off = 0;
    while off + 16 <= datagram.len() {
        let rest = datagram.get(off..).unwrap_or_default();
        let word = |at: usize| -> u32 {
            rest.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        let len = word(0) as usize;
        if len < 16 || len > rest.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed netlink message of length {len}"),
            ));
        }
        let kind_flags = word(4);
        let msg = RawMsg {
            kind: (kind_flags & 0xffff) as u16,
            seq: word(8),
            payload: rest.get(16..len).unwrap_or_default(),
        };
        if msg.kind == NLMSG_OVERRUN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "netlink overrun: data was lost",
            ));
        }
        if !each(msg)? {
            return Ok(false);
        }
        off += (len + 3) & !3;
    }
    Ok(true)
}

/// Parses the first message of `rest`: returns its length, its meaning for request
/// `seq`, and whether it carries `NLM_F_DUMP_INTR`.
pub(crate) fn parse_one(rest: &[u8], seq: u32) -> io::Result<(usize, Reply, bool)> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let nb = NetlinkBuffer::new_checked(rest)
        .map_err(|e| invalid(format!("malformed netlink message: {e}")))?;
    let len = nb.length() as usize;
    let msg = rest.get(..len).unwrap_or_default();
    if nb.sequence_number() != seq {
        // A late reply to an earlier request that timed out.
        return Ok((len, Reply::Ignore, false));
    }
    let interrupted = nb.flags() & NLM_F_DUMP_INTR != 0;
    let reply = match nb.message_type() {
        NLMSG_NOOP => Reply::Ignore,
        NLMSG_DONE => Reply::Finished,
        NLMSG_OVERRUN => return Err(invalid("netlink overrun: data was lost".into())),
        NLMSG_ERROR => {
            let parsed = NetlinkMessage::<NetfilterMessage>::deserialize(msg)
                .map_err(|e| invalid(format!("malformed netlink error message: {e}")))?;
            match parsed.payload {
                NetlinkPayload::Error(err) if err.code.is_none() => Reply::Finished,
                NetlinkPayload::Error(err) => return Err(err.to_io()),
                other => {
                    return Err(invalid(format!(
                        "unexpected payload in NLMSG_ERROR: {other:?}"
                    )));
                }
            }
        }
        _ => match NetlinkMessage::<NetfilterMessage>::deserialize(msg) {
            Ok(NetlinkMessage {
                payload: NetlinkPayload::InnerMessage(nf),
                ..
            }) => Reply::Entry(Box::new(nf.inner)),
            Ok(_) => Reply::Ignore,
            Err(e) => Reply::Undecodable(e.to_string()),
        },
    };
    Ok((len, reply, interrupted))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use nix::errno::Errno;

    use super::*;

    /// A serialized reply message as the kernel would send it.
    pub(crate) fn wire(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut b = Vec::new();
        b.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        b.extend_from_slice(&msg_type.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn parse_one_handles_done_ack_errors_and_foreign_sequences() {
        let done = wire(NLMSG_DONE, NLM_F_DUMP_INTR, 9, &0i32.to_ne_bytes());
        let (len, reply, intr) = parse_one(&done, 9).unwrap();
        assert_eq!(len, done.len());
        assert!(matches!(reply, Reply::Finished));
        assert!(intr);
        // Another request's DONE is skipped, whole.
        let (len, reply, _) = parse_one(&done, 10).unwrap();
        assert_eq!(len, done.len());
        assert!(matches!(reply, Reply::Ignore));

        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&[0u8; 16]);
        let (_, reply, _) = parse_one(&wire(NLMSG_ERROR, 0, 9, &ack), 9).unwrap();
        assert!(matches!(reply, Reply::Finished));

        let mut enoent = (-2i32).to_ne_bytes().to_vec();
        enoent.extend_from_slice(&[0u8; 16]);
        let err = match parse_one(&wire(NLMSG_ERROR, 0, 9, &enoent), 9) {
            Err(e) => e,
            Ok(_) => panic!("ENOENT must be an error"),
        };
        assert_eq!(err.raw_os_error(), Some(Errno::ENOENT as i32));

        assert!(parse_one(&[0u8; 8], 9).is_err(), "short buffer");
    }
}
