//! Deleting UDP conntrack entries by destination port, natively over `NETLINK_NETFILTER`
//! (ctnetlink), as the reference portmap plugin does after programming its rules
//! (reference-behaviour 4.7, containernetworking/plugins #123).
//!
//! A UDP "connection" lives in the conntrack table for as long as packets keep flowing,
//! and its NAT decision is taken only once, on the first packet. A client that keeps
//! sending to a host port whose DNAT target changed (container deleted and re-created)
//! would stay black-holed towards the old address; deleting the entry makes the next
//! packet go through the new rules.
//!
//! The procedure mirrors the reference (vishvananda/netlink `ConntrackDeleteFilters`):
//! dump the conntrack table of one address family (`IPCTNL_MSG_CT_GET` with
//! `NLM_F_DUMP`), keep the entries whose *original* tuple is UDP with the given
//! destination port (whatever the addresses), then delete each one by its original tuple
//! (`IPCTNL_MSG_CT_DELETE` with an ACK). The delete also carries the entry's id and zone,
//! so the kernel removes exactly the dumped entry and never a newer one that reuses the
//! tuple. An entry that vanished in between (`ENOENT`) is not an error.
//!
//! The socket is opened in the calling thread's network namespace and has a receive
//! timeout, so a missing reply cannot hang the caller. No external tool is involved.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};
pub use crate::iptables::Family;

/// How long one receive may wait for the kernel before the request fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a dump marked inconsistent (`NLM_F_DUMP_INTR`) is restarted.
pub const DUMP_ATTEMPTS: u32 = 5;
/// Receive buffer; the kernel sizes dump datagrams up to 32 KiB after a large read.
const RECV_BUF: usize = 64 * 1024;
/// At most this many failed deletes are reported one by one (then only counted).
const MAX_LISTED_ERRORS: usize = 3;
/// `NFNETLINK_V0`, the only nfnetlink version.
const NFNETLINK_V0: u8 = 0;
/// `CTA_ID`: the entry's id; the kernel refuses a delete whose id does not match.
const CTA_ID: u16 = 12;
/// `CTA_ZONE`: the entry's zone; present in dumps only for non-default zones.
const CTA_ZONE: u16 = 18;

/// A UDP conntrack entry, as seen in its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFlow {
    /// Original source address and port (the client).
    pub src: SocketAddr,
    /// Original destination address and port (e.g. the host port before DNAT).
    pub dst: SocketAddr,
    /// The attributes identifying the entry in a delete request: the original tuple as
    /// dumped, plus `CTA_ID` and `CTA_ZONE` when the kernel reported them.
    key: Vec<ConntrackAttribute>,
}

/// Lists the conntrack entries of `family` in the calling thread's network namespace
/// whose original tuple is UDP with destination port `port`.
///
/// # Errors
/// [`Error::Conntrack`] when the socket cannot be opened, the dump fails or times out,
/// is still interrupted after [`DUMP_ATTEMPTS`] attempts, or holds undecodable entries.
pub fn udp_flows_to_port(family: Family, port: u16) -> Result<Vec<UdpFlow>> {
    let mut conn = Conn::open()?;
    let dump = conn.dump_udp_flows(family, port)?;
    dump.problem(family, port)?;
    Ok(dump.flows)
}

/// Deletes every conntrack entry of `family` in the calling thread's network namespace
/// whose original tuple is UDP with destination port `port`, whatever its addresses.
/// Returns how many entries this call deleted (entries that disappeared on their own
/// between the dump and the delete are not counted).
///
/// Every matching entry is attempted even when some fail, unless the kernel stops
/// answering (a receive timeout ends the run).
///
/// # Errors
/// [`Error::Conntrack`] (or [`Error::Multiple`] of them) naming the step: opening the
/// socket, dumping the table (failure, timeout, persistent interruption, undecodable
/// entries: the flows that were found are still deleted) or deleting a flow.
pub fn delete_udp_flows_to_port(family: Family, port: u16) -> Result<usize> {
    let mut conn = Conn::open()?;
    let dump = conn.dump_udp_flows(family, port)?;
    let mut deleted = 0;
    let mut failed = 0;
    let mut errors = Vec::new();
    for flow in &dump.flows {
        match conn.delete(family, flow) {
            Ok(Deleted::Yes) => deleted += 1,
            Ok(Deleted::AlreadyGone) => {}
            Err(source) => {
                failed += 1;
                let stop = source.kind() == io::ErrorKind::TimedOut;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(Error::Conntrack {
                        op: format!("delete {family} udp flow {} -> {}", flow.src, flow.dst),
                        source,
                    });
                }
                if stop {
                    break;
                }
            }
        }
    }
    if failed > 0 {
        errors.push(Error::Conntrack {
            op: format!("delete {family} udp flows to port {port}"),
            source: io::Error::other(format!(
                "{failed} of {} deletes failed ({deleted} deleted; first errors listed)",
                dump.flows.len()
            )),
        });
    }
    if let Err(e) = dump.problem(family, port) {
        errors.push(e);
    }
    Error::collect(errors)?;
    Ok(deleted)
}

fn nfproto(family: Family) -> NetfilterProtoFamily {
    match family {
        Family::V4 => NetfilterProtoFamily::IPv4,
        Family::V6 => NetfilterProtoFamily::IPv6,
    }
}

/// Outcome of one delete request.
enum Deleted {
    Yes,
    /// `ENOENT`: expired, deleted by someone else, or replaced (different id).
    AlreadyGone,
}

/// The matching entries of one (possibly retried) dump.
struct Dump {
    flows: Vec<UdpFlow>,
    /// The last attempt was still marked inconsistent, so entries may be missing.
    interrupted: bool,
    /// Entries the decoder rejected; they may or may not have matched.
    undecodable: usize,
    /// The first decoder error, for the message.
    decode_error: Option<String>,
}

impl Dump {
    /// Turns an incomplete dump into an error (the flows found stay usable).
    fn problem(&self, family: Family, port: u16) -> Result<()> {
        let op = format!("dump {family} conntrack table for udp port {port}");
        let mut errors = Vec::new();
        if self.interrupted {
            errors.push(Error::Conntrack {
                op: op.clone(),
                source: io::Error::other(format!(
                    "interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row, \
                     entries may have been missed"
                )),
            });
        }
        if self.undecodable > 0 {
            errors.push(Error::Conntrack {
                op,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} entries could not be decoded and were skipped (first: {})",
                        self.undecodable,
                        self.decode_error.as_deref().unwrap_or("unknown")
                    ),
                ),
            });
        }
        Error::collect(errors)
    }
}

/// What one received message meant for the pending request.
enum Reply {
    /// A data message (a dumped entry), already decoded.
    Entry(Box<ConntrackMessage>),
    /// A data message that could not be decoded.
    Undecodable(String),
    /// `NLMSG_DONE` or an ACK: the request is complete.
    Finished,
    /// Something to skip: another request's reply, `NLMSG_NOOP`, other subsystems.
    Ignore,
}

/// A bound, connected `NETLINK_NETFILTER` socket with sequence tracking.
struct Conn {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conn {
    fn open() -> Result<Conn> {
        let fail = |step: &str, source: io::Error| Error::Conntrack {
            op: format!("open NETLINK_NETFILTER socket: {step}"),
            source,
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

    /// Dumps `family`'s table and keeps the UDP entries to `port`, restarting the dump
    /// while the kernel marks it interrupted (at most [`DUMP_ATTEMPTS`] times).
    fn dump_udp_flows(&mut self, family: Family, port: u16) -> Result<Dump> {
        let op = format!("dump {family} conntrack table for udp port {port}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut dump = Dump {
                flows: Vec::new(),
                interrupted: false,
                undecodable: 0,
                decode_error: None,
            };
            let seq = self
                .send(family, ConntrackMessage::Get(Vec::new()), NLM_F_DUMP)
                .map_err(|source| Error::Conntrack {
                    op: op.clone(),
                    source,
                })?;
            let interrupted = self
                .receive_until_finished(seq, |reply| match reply {
                    Reply::Entry(msg) => {
                        if let ConntrackMessage::New(attrs) = *msg
                            && let Some(flow) = udp_flow(family, port, attrs)
                        {
                            dump.flows.push(flow);
                        }
                    }
                    Reply::Undecodable(why) => {
                        dump.undecodable += 1;
                        dump.decode_error.get_or_insert(why);
                    }
                    Reply::Finished | Reply::Ignore => {}
                })
                .map_err(|source| Error::Conntrack {
                    op: op.clone(),
                    source,
                })?;
            if !interrupted {
                return Ok(dump);
            }
            if attempt >= DUMP_ATTEMPTS {
                dump.interrupted = true;
                return Ok(dump);
            }
            log::debug!("{op}: interrupted by concurrent changes, restarting");
        }
    }

    /// Deletes one entry by its key, waiting for the ACK.
    fn delete(&mut self, family: Family, flow: &UdpFlow) -> io::Result<Deleted> {
        let seq = self.send(
            family,
            ConntrackMessage::Delete(flow.key.clone()),
            NLM_F_ACK,
        )?;
        match self.receive_until_finished(seq, |_| {}) {
            Ok(_) => Ok(Deleted::Yes),
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// Sends one conntrack request with `NLM_F_REQUEST | flags`; returns its sequence.
    fn send(&mut self, family: Family, msg: ConntrackMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let nf = NetfilterMessage::new(NetfilterHeader::new(nfproto(family), NFNETLINK_V0, 0), msg);
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
    fn receive_until_finished(
        &mut self,
        seq: u32,
        mut each: impl FnMut(Reply),
    ) -> io::Result<bool> {
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
                each(reply);
                if finished {
                    return Ok(interrupted);
                }
            }
        }
    }

    /// Receives one datagram into `self.buf`; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, nix::libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("datagram of {n} bytes truncated to {}", self.buf.len()),
                    ));
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no reply from the kernel within {} s",
                            RECV_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Parses the first message of `rest`: returns its length, its meaning for request
/// `seq`, and whether it carries `NLM_F_DUMP_INTR`.
fn parse_one(rest: &[u8], seq: u32) -> io::Result<(usize, Reply, bool)> {
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
            }) => match nf.inner {
                NetfilterMessageInner::Conntrack(ct) => Reply::Entry(Box::new(ct)),
                _ => Reply::Ignore,
            },
            Ok(_) => Reply::Ignore,
            Err(e) => Reply::Undecodable(e.to_string()),
        },
    };
    Ok((len, reply, interrupted))
}

/// The entry as a [`UdpFlow`] when its original tuple is UDP of `family` to `port`.
fn udp_flow(family: Family, port: u16, attrs: Vec<ConntrackAttribute>) -> Option<UdpFlow> {
    let mut orig = None;
    let mut extra = Vec::new();
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(tuple) => orig = Some(tuple),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ID || nla.kind() == CTA_ZONE => {
                extra.push(ConntrackAttribute::Other(nla));
            }
            _ => {}
        }
    }
    let orig = orig?;
    let (mut src_ip, mut dst_ip, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for part in &orig {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src_ip = Some(*a),
                        IPTuple::DestinationAddress(a) => dst_ip = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(p) => proto = Some(*p),
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (src_ip, dst_ip) = (src_ip?, dst_ip?);
    if proto? != Protocol::Udp
        || dport? != port
        || Family::of(src_ip) != family
        || Family::of(dst_ip) != family
    {
        return None;
    }
    let mut key = vec![ConntrackAttribute::CtaTupleOrig(orig)];
    key.extend(extra);
    Some(UdpFlow {
        src: SocketAddr::new(src_ip, sport?),
        dst: SocketAddr::new(dst_ip, port),
        key,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::IpAddr;

    use netlink_packet_core::DefaultNla;

    use super::*;

    fn entry(
        proto: Protocol,
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
    ) -> Vec<ConntrackAttribute> {
        let src: IpAddr = src.parse().unwrap();
        let dst: IpAddr = dst.parse().unwrap();
        let tuple = |s: IpAddr, d: IpAddr, sp: u16, dp: u16| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress(s),
                    IPTuple::DestinationAddress(d),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(proto),
                    ProtoTuple::SourcePort(sp),
                    ProtoTuple::DestinationPort(dp),
                ]),
            ]
        };
        vec![
            ConntrackAttribute::CtaTupleOrig(tuple(src, dst, sport, dport)),
            // Reply direction as after DNAT to a container: its source port is the
            // container port, its destination port the client's.
            ConntrackAttribute::CtaTupleReply(tuple(dst, src, 53, sport)),
            ConntrackAttribute::CtaTimeout(30),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ID, vec![0, 0, 0, 7])),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, vec![0, 3])),
        ]
    }

    #[test]
    fn matches_udp_by_original_destination_port_only() {
        let flow = udp_flow(
            Family::V4,
            8053,
            entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053),
        )
        .unwrap();
        assert_eq!(flow.src, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(flow.dst, "10.0.0.1:8053".parse().unwrap());
        // Other ports, other protocols, the source port, other families: no match.
        for (family, attrs) in [
            (
                Family::V4,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8054),
            ),
            (
                Family::V4,
                entry(Protocol::Tcp, "10.0.0.2", "10.0.0.1", 40000, 8053),
            ),
            (
                Family::V4,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 8053, 9999),
            ),
            (
                Family::V6,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053),
            ),
            (
                Family::V4,
                entry(Protocol::Udp, "fd00::2", "fd00::1", 40000, 8053),
            ),
        ] {
            assert!(udp_flow(family, 8053, attrs.clone()).is_none(), "{attrs:?}");
        }
        assert!(
            udp_flow(
                Family::V6,
                8053,
                entry(Protocol::Udp, "fd00::2", "fd00::1", 1, 8053)
            )
            .is_some()
        );
    }

    #[test]
    fn delete_key_is_original_tuple_with_id_and_zone() {
        let attrs = entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053);
        let flow = udp_flow(Family::V4, 8053, attrs.clone()).unwrap();
        assert_eq!(flow.key.len(), 3);
        assert_eq!(flow.key[0], attrs[0]);
        let kinds: Vec<u16> = flow.key[1..]
            .iter()
            .map(|a| match a {
                ConntrackAttribute::Other(nla) => nla.kind(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, [CTA_ID, CTA_ZONE]);
    }

    #[test]
    fn entries_without_an_original_tuple_or_ports_are_skipped() {
        assert!(udp_flow(Family::V4, 1, vec![ConntrackAttribute::CtaTimeout(3)]).is_none());
        let no_ports = vec![ConntrackAttribute::CtaTupleOrig(vec![Tuple::Ip(vec![
            IPTuple::SourceAddress("10.0.0.2".parse().unwrap()),
            IPTuple::DestinationAddress("10.0.0.1".parse().unwrap()),
        ])])];
        assert!(udp_flow(Family::V4, 1, no_ports).is_none());
    }

    /// A serialized reply message as the kernel would send it.
    fn wire(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
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

    #[test]
    fn parse_one_decodes_a_conntrack_entry() {
        let nf = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, NFNETLINK_V0, 0),
            ConntrackMessage::New(entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053)),
        );
        let mut header = NetlinkHeader::default();
        header.sequence_number = 5;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(nf));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let (len, reply, _) = parse_one(&bytes, 5).unwrap();
        assert_eq!(len, bytes.len());
        let Reply::Entry(msg) = reply else {
            panic!("not an entry")
        };
        let ConntrackMessage::New(attrs) = *msg else {
            panic!("not a New message")
        };
        assert!(udp_flow(Family::V4, 8053, attrs).is_some());
    }
}
