//! The nf_tables generation: the number the kernel increments with every committed
//! transaction of a network namespace. Each commit is announced to the multicast group
//! [`GROUP`] as an `NFT_MSG_NEWGEN` naming the committing process ([`committer`]), and
//! `NFT_MSG_GETGEN` asks for the current number ([`request`], [`reply`]).
//!
//! A leaf module that never allocates: the socket-release helper (`crate::release`),
//! which shares its parent's memory and must not touch the allocator, uses it.

use super::attrs::attributes;

/// `NFNL_SUBSYS_NFTABLES`, in the high byte of an nfnetlink message type.
const SUBSYS: u16 = 10;
/// `NFT_MSG_NEWGEN`: the announcement of a commit, and the answer to `NFT_MSG_GETGEN`.
pub(crate) const NEWGEN: u16 = (SUBSYS << 8) | 15;
/// `NFT_MSG_GETGEN`.
const GETGEN: u16 = (SUBSYS << 8) | 16;
/// `NFTA_GEN_ID`.
const GEN_ID: u16 = 1;
/// `NFTA_GEN_PROC_PID`.
const GEN_PROC_PID: u16 = 2;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// Netlink header (16 bytes) and `nfgenmsg` (4 bytes).
const HEADERS: usize = 20;

/// `NFNLGRP_NFTABLES`: nf_tables' multicast group (every object change and, per commit,
/// an `NFT_MSG_NEWGEN`).
pub(crate) const GROUP: u32 = 7;

/// The process that committed the transaction a message of type `kind` (an nfnetlink
/// message type) with `payload` (after the netlink header) announces: `Some(pid)` for
/// an `NFT_MSG_NEWGEN` carrying `NFTA_GEN_PROC_PID`.
pub(crate) fn committer(kind: u16, payload: &[u8]) -> Option<u32> {
    if kind != NEWGEN {
        return None;
    }
    u32_attr(payload.get(4..)?, GEN_PROC_PID) // after the nfgenmsg
}

/// Length of a [`request`].
pub(crate) const REQUEST_LEN: usize = HEADERS;

/// The `NFT_MSG_GETGEN` request with sequence number `seq`, sent to the kernel.
pub(crate) fn request(seq: u32) -> [u8; REQUEST_LEN] {
    let mut m = [0u8; REQUEST_LEN];
    #[allow(
        clippy::cast_possible_truncation,
        reason = "REQUEST_LEN is 20, a netlink length"
    )]
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&GETGEN.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0 (the kernel); nfgenmsg: AF_UNSPEC, NFNETLINK_V0, resource id 0.
    m
}

/// What `buf` (the netlink messages of one receive) says to [`request`]`(seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The current generation.
    Generation(u32),
    /// The kernel refused the request.
    Refused,
    /// Nothing about this request (another message); read again.
    Unrelated,
}

/// Reads the answer to [`request`]`(seq)` out of `buf`.
pub(crate) fn reply(buf: &[u8], seq: u32) -> Reply {
    let mut rest = buf;
    while let Some(head) = rest.get(..16) {
        let word =
            |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let len = usize::try_from(word(0)).unwrap_or(usize::MAX);
        let kind = u16::from_ne_bytes([head[4], head[5]]);
        let Some(message) = rest.get(..len).filter(|_| len >= 16) else {
            break;
        };
        if word(8) == seq {
            match kind {
                NEWGEN => {
                    if let Some(id) = message.get(HEADERS..).and_then(|a| u32_attr(a, GEN_ID)) {
                        return Reply::Generation(id);
                    }
                    return Reply::Refused;
                }
                NLMSG_ERROR => return Reply::Refused,
                _ => {}
            }
        }
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    Reply::Unrelated
}

/// The big-endian `u32` attribute `kind` among the attributes `buf`.
fn u32_attr(buf: &[u8], kind: u16) -> Option<u32> {
    attributes(buf)
        .find(|(attr, _)| *attr == kind)
        .and_then(|(_, v)| v.get(..4)?.try_into().ok())
        .map(u32::from_be_bytes)
}

/// An `NFT_MSG_NEWGEN` message (netlink header included) as the kernel sends it, with
/// sequence number `seq`, for generation `id`, committed by process `pid` (`nft`).
#[cfg(test)]
pub(crate) fn newgen_message(seq: u32, id: u32, pid: u32) -> Vec<u8> {
    let mut attrs = super::attrs::Attrs::default();
    attrs.put(GEN_ID, &id.to_be_bytes());
    attrs.put(GEN_PROC_PID, &pid.to_be_bytes());
    attrs.put_str(3, "nft");
    let body = attrs.into_bytes();
    let len = u32::try_from(HEADERS + body.len()).unwrap_or(u32::MAX);
    let mut m = Vec::new();
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&NEWGEN.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_getgen_to_the_kernel() {
        let m = request(7);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0a10);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[12..], &[0u8; 8]);
    }

    #[test]
    fn reply_finds_the_generation_of_its_own_request_only() {
        let answer = newgen_message(7, 0x0102_0304, 42);
        assert_eq!(reply(&answer, 7), Reply::Generation(0x0102_0304));
        assert_eq!(reply(&answer, 8), Reply::Unrelated);
        // An announcement (sequence 0) before the answer is skipped.
        let mut both = newgen_message(0, 5, 9);
        both.extend_from_slice(&answer);
        assert_eq!(reply(&both, 7), Reply::Generation(0x0102_0304));
        assert_eq!(committer(NEWGEN, &answer[16..]), Some(42));
    }

    #[test]
    fn reply_reports_an_error_and_survives_garbage() {
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[8..12].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(reply(&err, 7), Reply::Refused);
        assert_eq!(reply(&[1, 2, 3], 7), Reply::Unrelated);
        let mut short = newgen_message(7, 1, 1);
        short[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(reply(&short, 7), Reply::Unrelated);
    }
}
