//! The namespace-wide forwarding switch, read with `RTM_GETNETCONF`.
//!
//! `net.ipv4.ip_forward` is the IPv4 "all" devconf's `forwarding`, and
//! `net.ipv6.conf.all.forwarding` the IPv6 one. Reading them over netlink avoids the path
//! lookup of `/proc/sys/net/ipv4` (or `ipv6`), which walks one dcache hash chain holding
//! that directory of every network namespace: on a node with many namespaces the first
//! lookup in a process costs up to a millisecond (see `cni_netns::sysctl`).
//!
//! `netlink-packet-route` does not model netconf messages, so the one request and its
//! reply are encoded here (`linux/netconf.h`): a `struct netconfmsg` (one byte of
//! address family, padded to 4) followed by attributes. The request carries
//! `NETCONFA_IFINDEX` = `NETCONFA_IFINDEX_ALL`; the `RTM_NEWNETCONF` reply carries,
//! among others, `NETCONFA_FORWARDING` as a `u32`.

use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, NlasIterator,
};

use crate::addr::IpFamily;
use crate::error::{Error, Result};
use crate::handle::Handle;

/// `RTM_GETNETCONF`.
const RTM_GETNETCONF: u16 = libc::RTM_GETNETCONF;
/// `RTM_NEWNETCONF`.
const RTM_NEWNETCONF: u16 = libc::RTM_NEWNETCONF;
/// Length of `struct netconfmsg` with its padding (`NLMSG_ALIGN(1)`).
const NETCONFMSG_LEN: usize = 4;
/// `NETCONFA_IFINDEX` (`s32`).
const NETCONFA_IFINDEX: u16 = 1;
/// `NETCONFA_FORWARDING` (`u32`).
const NETCONFA_FORWARDING: u16 = 2;
/// `NETCONFA_IFINDEX_ALL`: the "all" configuration (`net.<proto>.conf.all`).
pub(crate) const NETCONFA_IFINDEX_ALL: i32 = -1;
/// Length of an attribute header.
const NLA_HDR: usize = 4;

fn af(family: IpFamily) -> u8 {
    let af = match family {
        IpFamily::V4 => libc::AF_INET,
        IpFamily::V6 => libc::AF_INET6,
    };
    u8::try_from(af).unwrap_or_default()
}

/// A netconf message: the request we send or the reply we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetconfMessage {
    /// `RTM_GETNETCONF` for the configuration of `ifindex` in `family`.
    Get {
        /// `ncm_family` (`AF_INET`, `AF_INET6`).
        family: u8,
        /// `NETCONFA_IFINDEX`.
        ifindex: i32,
    },
    /// `RTM_NEWNETCONF`, the reply.
    New(NetconfReply),
}

/// The attributes of an `RTM_NEWNETCONF` we read; others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct NetconfReply {
    /// `ncm_family`.
    pub(crate) family: u8,
    /// `NETCONFA_IFINDEX`.
    pub(crate) ifindex: Option<i32>,
    /// `NETCONFA_FORWARDING`.
    pub(crate) forwarding: Option<u32>,
}

/// Appends one attribute (header, value, padding to 4 bytes).
fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(NLA_HDR + value.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

impl NetconfMessage {
    /// The payload after the netlink header.
    fn payload(&self) -> Vec<u8> {
        let (family, attrs) = match self {
            Self::Get { family, ifindex } => {
                (*family, vec![(NETCONFA_IFINDEX, ifindex.to_ne_bytes())])
            }
            Self::New(r) => {
                let mut attrs = Vec::new();
                if let Some(i) = r.ifindex {
                    attrs.push((NETCONFA_IFINDEX, i.to_ne_bytes()));
                }
                if let Some(f) = r.forwarding {
                    attrs.push((NETCONFA_FORWARDING, f.to_ne_bytes()));
                }
                (r.family, attrs)
            }
        };
        let mut buf = vec![family, 0, 0, 0];
        for (kind, v) in attrs {
            put_attr(&mut buf, kind, &v);
        }
        buf
    }
}

impl NetlinkSerializable for NetconfMessage {
    fn message_type(&self) -> u16 {
        match self {
            Self::Get { .. } => RTM_GETNETCONF,
            Self::New(_) => RTM_NEWNETCONF,
        }
    }

    fn buffer_len(&self) -> usize {
        self.payload().len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        let p = self.payload();
        let n = p.len().min(buffer.len());
        buffer[..n].copy_from_slice(&p[..n]);
    }
}

/// A 4-byte attribute value.
fn value4(kind: &str, v: &[u8]) -> Result<[u8; 4], DecodeError> {
    v.get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::from(format!("{kind}: {} bytes, expected 4", v.len())))
}

impl NetlinkDeserializable for NetconfMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        if header.message_type != RTM_NEWNETCONF {
            return Err(DecodeError::from(format!(
                "message type {} where RTM_NEWNETCONF ({RTM_NEWNETCONF}) was expected",
                header.message_type
            )));
        }
        let Some(&family) = payload.first() else {
            return Err(DecodeError::from("RTM_NEWNETCONF without netconfmsg"));
        };
        let mut r = NetconfReply {
            family,
            ..NetconfReply::default()
        };
        let attrs = payload.get(NETCONFMSG_LEN..).unwrap_or_default();
        for nla in NlasIterator::new(attrs) {
            let nla = nla?;
            match nla.kind() {
                NETCONFA_IFINDEX => {
                    r.ifindex = Some(i32::from_ne_bytes(value4("NETCONFA_IFINDEX", nla.value())?));
                }
                NETCONFA_FORWARDING => {
                    r.forwarding = Some(u32::from_ne_bytes(value4(
                        "NETCONFA_FORWARDING",
                        nla.value(),
                    )?));
                }
                _ => {}
            }
        }
        Ok(Self::New(r))
    }
}

/// The forwarding value of the "all" configuration from the replies to
/// [`NetconfMessage::Get`] for `family`.
fn forwarding_of(replies: &[NetconfMessage], family: IpFamily, op: &str) -> Result<u32> {
    let unexpected = |what: String| Error::Unexpected {
        op: op.into(),
        what,
    };
    let r = match replies {
        [NetconfMessage::New(r)] => r,
        _ => {
            return Err(unexpected(format!(
                "{} messages where one RTM_NEWNETCONF was expected",
                replies.len()
            )));
        }
    };
    if r.family != af(family) {
        return Err(unexpected(format!("address family {}", r.family)));
    }
    if let Some(i) = r.ifindex.filter(|&i| i != NETCONFA_IFINDEX_ALL) {
        return Err(unexpected(format!("NETCONFA_IFINDEX {i}")));
    }
    r.forwarding
        .ok_or_else(|| unexpected("no NETCONFA_FORWARDING".into()))
}

impl Handle {
    /// The namespace-wide forwarding switch of `family`: `net.ipv4.ip_forward` or
    /// `net.ipv6.conf.all.forwarding`, as the number the sysctl file shows (normally 0
    /// or 1), read with `RTM_GETNETCONF`. Unlike reading the sysctl file, this involves
    /// no path lookup of `/proc/sys/net/ipv4` (or `ipv6`), which is slow on a node with
    /// many network namespaces (see `cni_netns::sysctl`).
    ///
    /// # Errors
    /// Kernel errors (e.g. `EAFNOSUPPORT` when IPv6 is disabled, or on kernels without
    /// netconf requests), transport errors, or a reply without the value.
    pub fn forwarding(&mut self, family: IpFamily) -> Result<u32> {
        let name = match family {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        };
        let op = format!("get {name} forwarding (netconf all)");
        let req = NetconfMessage::Get {
            family: af(family),
            ifindex: NETCONFA_IFINDEX_ALL,
        };
        let replies = self.request(req, 0, &op)?;
        forwarding_of(&replies, family, &format!("{op} in {}", self.ns_label()))
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};

    use super::*;
    use crate::socket::encode;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn get_request_encoding() {
        let req = NetconfMessage::Get {
            family: af(IpFamily::V4),
            ifindex: NETCONFA_IFINDEX_ALL,
        };
        let b = encode(req, NLM_F_REQUEST | NLM_F_ACK, 7);
        // nlmsghdr (16), netconfmsg padded (4), NETCONFA_IFINDEX (4 + 4).
        assert_eq!(b.len(), 28);
        assert_eq!(u32_at(&b, 0), 28, "nlmsg_len");
        assert_eq!(u16_at(&b, 4), 82, "RTM_GETNETCONF");
        assert_eq!(u16_at(&b, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&b, 8), 7, "seq");
        assert_eq!(&b[16..20], &[2, 0, 0, 0], "AF_INET, padding");
        assert_eq!(u16_at(&b, 20), 8, "nla_len");
        assert_eq!(u16_at(&b, 22), 1, "NETCONFA_IFINDEX");
        assert_eq!(&b[24..28], &(-1i32).to_ne_bytes(), "NETCONFA_IFINDEX_ALL");
        let v6 = encode(
            NetconfMessage::Get {
                family: af(IpFamily::V6),
                ifindex: NETCONFA_IFINDEX_ALL,
            },
            NLM_F_REQUEST,
            1,
        );
        assert_eq!(v6[16], 10, "AF_INET6");
    }

    /// An `RTM_NEWNETCONF` as the kernel sends it (`inet_netconf_fill_devconf` with
    /// `NETCONFA_ALL`): ifindex, forwarding, rp_filter, mc_forwarding, proxy_neigh,
    /// ignore_routes_with_linkdown.
    fn kernel_reply(family: u8, ifindex: i32, forwarding: u32) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0];
        put_attr(&mut p, NETCONFA_IFINDEX, &ifindex.to_ne_bytes());
        put_attr(&mut p, NETCONFA_FORWARDING, &forwarding.to_ne_bytes());
        for kind in [3u16, 4, 5, 6] {
            put_attr(&mut p, kind, &0u32.to_ne_bytes());
        }
        let mut b = Vec::new();
        let len = u32::try_from(16 + p.len()).unwrap();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&RTM_NEWNETCONF.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&p);
        b
    }

    fn decode(b: &[u8]) -> Result<NetconfMessage, String> {
        match NetlinkMessage::<NetconfMessage>::deserialize(b) {
            Ok(NetlinkMessage {
                payload: NetlinkPayload::InnerMessage(m),
                ..
            }) => Ok(m),
            Ok(other) => Err(format!("not an inner message: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn reply_decoding() {
        for (fam, fwd) in [(IpFamily::V4, 1), (IpFamily::V4, 0), (IpFamily::V6, 1)] {
            let m = decode(&kernel_reply(af(fam), NETCONFA_IFINDEX_ALL, fwd)).unwrap();
            assert_eq!(
                m,
                NetconfMessage::New(NetconfReply {
                    family: af(fam),
                    ifindex: Some(-1),
                    forwarding: Some(fwd),
                })
            );
            assert_eq!(forwarding_of(&[m], fam, "op").unwrap(), fwd);
        }
    }

    #[test]
    fn reply_encoding_round_trips() {
        let r = NetconfReply {
            family: af(IpFamily::V6),
            ifindex: Some(-1),
            forwarding: Some(2),
        };
        let b = encode(NetconfMessage::New(r), 0, 3);
        assert_eq!(decode(&b).unwrap(), NetconfMessage::New(r));
    }

    #[test]
    fn malformed_replies_are_errors() {
        // A truncated forwarding value.
        let mut b = kernel_reply(2, -1, 1);
        let at = 16 + 4 + 8; // the NETCONFA_FORWARDING header
        b[at..at + 2].copy_from_slice(&6u16.to_ne_bytes());
        let e = decode(&b).unwrap_err();
        assert!(e.contains("NETCONFA_FORWARDING"), "{e}");
        // An attribute running past the end.
        let mut b = kernel_reply(2, -1, 1);
        b[20..22].copy_from_slice(&200u16.to_ne_bytes());
        assert!(decode(&b).is_err());
        // Another message type.
        let mut b = kernel_reply(2, -1, 1);
        b[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        let e = decode(&b).unwrap_err();
        assert!(e.contains("RTM_NEWNETCONF"), "{e}");
        // No netconfmsg at all.
        let mut b = kernel_reply(2, -1, 1);
        b.truncate(16);
        b[0..4].copy_from_slice(&16u32.to_ne_bytes());
        assert!(decode(&b).is_err());
    }

    #[test]
    fn reply_checks_carry_the_operation() {
        let reply = |family, ifindex, forwarding| {
            NetconfMessage::New(NetconfReply {
                family,
                ifindex,
                forwarding,
            })
        };
        let op = "get IPv4 forwarding (netconf all) in current netns";
        let err = |r: &[NetconfMessage]| forwarding_of(r, IpFamily::V4, op).unwrap_err();
        let e = err(&[reply(2, Some(-1), None)]);
        assert_eq!(
            e.to_string(),
            format!("{op}: unexpected reply: no NETCONFA_FORWARDING")
        );
        assert!(
            err(&[reply(10, Some(-1), Some(1))])
                .to_string()
                .contains("family 10")
        );
        assert!(
            err(&[reply(2, Some(3), Some(1))])
                .to_string()
                .contains("NETCONFA_IFINDEX 3")
        );
        assert!(err(&[]).to_string().contains("0 messages"));
        let two = [reply(2, Some(-1), Some(1)), reply(2, Some(-1), Some(1))];
        assert!(err(&two).to_string().contains("2 messages"));
        // Without NETCONFA_IFINDEX the value is taken as the requested one.
        assert_eq!(
            forwarding_of(&[reply(2, None, Some(1))], IpFamily::V4, op).unwrap(),
            1
        );
    }
}
