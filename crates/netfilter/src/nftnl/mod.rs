//! Native nf_tables programming over `NETLINK_NETFILTER`: the message encoding nft
//! itself would send, without running it.
//!
//! * [`Attrs`]: a netlink attribute (TLV) writer;
//! * [`Batch`]: one transaction, `NFNL_MSG_BATCH_BEGIN` .. commands .. `BATCH_END`,
//!   committed by the kernel all or nothing (`Batch::commit`);
//! * [`expr`]: the expressions of a rule;
//! * [`compile`]: what nft's front end does for the statements this crate writes
//!   (implicit protocol dependencies, prefixes, value widths);
//! * reads: `rules` (handles and comments of one chain, from an `NFT_MSG_GETRULE`
//!   dump of that chain only), `chain_exists`, `chains`.
//!
//! Nothing here knows a layout: the layouts describe their rules with [`crate::nft::Tx`],
//! which compiles them to a [`Batch`].

mod attrs;
pub mod compile;
pub mod expr;
pub(crate) mod generation;

pub use attrs::{Attrs, attributes};
pub(crate) use generation::{GROUP, committer};

use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR};

use crate::nfnl::Conn;

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`.
const BATCH_BEGIN: u16 = 16;
/// `NFNL_MSG_BATCH_END`.
const BATCH_END: u16 = 17;
/// `NLM_F_CREATE`.
const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`.
const NLM_F_APPEND: u16 = 0x800;

/// `enum nf_tables_msg_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Msg {
    /// `NFT_MSG_NEWTABLE`.
    NewTable = 0,
    /// `NFT_MSG_GETTABLE`.
    GetTable = 1,
    /// `NFT_MSG_NEWCHAIN`.
    NewChain = 3,
    /// `NFT_MSG_GETCHAIN`.
    GetChain = 4,
    /// `NFT_MSG_DELCHAIN`.
    DelChain = 5,
    /// `NFT_MSG_NEWRULE`.
    NewRule = 6,
    /// `NFT_MSG_GETRULE`.
    GetRule = 7,
    /// `NFT_MSG_DELRULE`.
    DelRule = 8,
}

/// Hook of a base chain, as `NEWCHAIN` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter`, `nat`, `route`.
    pub kind: &'static str,
    /// Hook number (`NF_INET_*`, the bridge's are the same numbers).
    pub hook: u32,
    /// Priority.
    pub prio: i32,
}

/// Userdata holding a comment: the `NFTNL_UDATA_{RULE,TABLE,CHAIN}_COMMENT` TLV (type 0,
/// one-byte length including the NUL), as nft writes it for rules, tables and chains. `None` when the comment does not fit.
pub fn comment_udata(comment: &str) -> Option<Vec<u8>> {
    let len = u8::try_from(comment.len() + 1).ok()?;
    let mut v = vec![0, len];
    v.extend_from_slice(comment.as_bytes());
    v.push(0);
    Some(v)
}

/// The comment in rule userdata (`NFTNL_UDATA_RULE_COMMENT`), if any.
pub fn udata_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let value = tail.get(..len)?;
        if *kind == 0 {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return String::from_utf8(text.to_vec()).ok();
        }
        rest = tail.get(len..)?;
    }
    None
}

/// The comments upstream (containernetworking/plugins, since v1.6.0) gives the tables and
/// chains it creates, by table and chain name, so `nft list ruleset` shows the same
/// lines whichever implementation created them. The `nftables` crate's JSON schema has
/// no table or chain comments, so they are added where a transaction is encoded (natively, or as nft text).
const UPSTREAM_COMMENTS: &[(&str, Option<&str>, &str)] = &[
    (
        "cni_plugins_masquerade",
        None,
        "Masquerading for plugins from github.com/containernetworking/plugins",
    ),
    (
        "cni_plugins_masquerade",
        Some("masq_checks"),
        "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet",
    ),
    ("cni_hostport", None, "CNI portmap plugin"),
];

/// Upstream's comment of table `table` (`chain` `None`) or of its chain `chain`.
pub(crate) fn upstream_comment(table: &str, chain: Option<&str>) -> Option<&'static str> {
    UPSTREAM_COMMENTS
        .iter()
        .find(|(t, c, _)| *t == table && *c == chain)
        .map(|(_, _, comment)| *comment)
}

/// One nf_tables transaction being built.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// (message type, netlink flags, nfgenmsg family, attributes) of each command.
    cmds: Vec<(Msg, u16, u8, Vec<u8>)>,
}

impl Batch {
    /// Number of commands.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// True without commands.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    fn push(&mut self, msg: Msg, flags: u16, family: u8, a: Attrs) {
        self.cmds.push((msg, flags, family, a.into_bytes()));
    }

    /// `add table` with an optional comment (no error if it exists; an existing table
    /// keeps its comment).
    pub fn new_table(&mut self, family: u8, name: &str, comment: Option<&str>) {
        let mut a = Attrs::default();
        a.put_str(1, name); // NFTA_TABLE_NAME
        a.put_u32(2, 0); // NFTA_TABLE_FLAGS
        if let Some(udata) = comment.and_then(comment_udata) {
            a.put(6, &udata); // NFTA_TABLE_USERDATA
        }
        self.push(Msg::NewTable, NLM_F_CREATE, family, a);
    }

    /// `add chain`, regular or base (policy accept), with an optional comment; no error
    /// if it exists.
    pub fn new_chain(
        &mut self,
        family: u8,
        table: &str,
        name: &str,
        base: Option<BaseChain>,
        comment: Option<&str>,
    ) {
        let mut a = Attrs::default();
        a.put_str(1, table); // NFTA_CHAIN_TABLE
        a.put_str(3, name); // NFTA_CHAIN_NAME
        if let Some(udata) = comment.and_then(comment_udata) {
            a.put(12, &udata); // NFTA_CHAIN_USERDATA
        }
        if let Some(b) = base {
            a.put_str(7, b.kind); // NFTA_CHAIN_TYPE
            a.put_u32(5, 1); // NFTA_CHAIN_POLICY: NF_ACCEPT
            let hook = a.begin_nested(4); // NFTA_CHAIN_HOOK
            a.put_u32(1, b.hook); // NFTA_HOOK_HOOKNUM
            a.put(2, &b.prio.to_be_bytes()); // NFTA_HOOK_PRIORITY
            a.end_nested(hook);
        }
        self.push(Msg::NewChain, NLM_F_CREATE, family, a);
    }

    /// `flush chain`: `DELRULE` naming only the chain.
    pub fn flush_chain(&mut self, family: u8, table: &str, chain: &str) {
        let mut a = Attrs::default();
        a.put_str(1, table); // NFTA_RULE_TABLE
        a.put_str(2, chain); // NFTA_RULE_CHAIN
        self.push(Msg::DelRule, 0, family, a);
    }

    /// `delete chain`.
    pub fn del_chain(&mut self, family: u8, table: &str, name: &str) {
        let mut a = Attrs::default();
        a.put_str(1, table); // NFTA_CHAIN_TABLE
        a.put_str(3, name); // NFTA_CHAIN_NAME
        self.push(Msg::DelChain, 0, family, a);
    }

    /// `add rule` (appended) with its expressions and userdata.
    pub fn new_rule(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        exprs: &[expr::Expr],
        udata: Option<&[u8]>,
    ) {
        let mut a = Attrs::default();
        a.put_str(1, table); // NFTA_RULE_TABLE
        a.put_str(2, chain); // NFTA_RULE_CHAIN
        let list = a.begin_nested(4); // NFTA_RULE_EXPRESSIONS
        for e in exprs {
            e.encode(&mut a);
        }
        a.end_nested(list);
        if let Some(u) = udata {
            a.put(7, u); // NFTA_RULE_USERDATA
        }
        self.push(Msg::NewRule, NLM_F_CREATE | NLM_F_APPEND, family, a);
    }

    /// `delete rule ... handle N`.
    pub fn del_rule(&mut self, family: u8, table: &str, chain: &str, handle: u64) {
        let mut a = Attrs::default();
        a.put_str(1, table); // NFTA_RULE_TABLE
        a.put_str(2, chain); // NFTA_RULE_CHAIN
        a.put(3, &handle.to_be_bytes()); // NFTA_RULE_HANDLE
        self.push(Msg::DelRule, 0, family, a);
    }

    /// The datagram: batch begin, the commands with sequence numbers `seq + 1 ..`, and
    /// batch end. Only the last command asks for an ACK: the kernel reports every failing
    /// command anyway, and answers come in order, so that ACK ends the reply. (An ACK
    /// per command would be one datagram each: thousands of them, as a large GC sends,
    /// overflow the socket's receive buffer.)
    pub fn to_bytes(&self, seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        message(&mut out, BATCH_BEGIN, NLM_F_REQUEST, seq, 0, SUBSYS, &[]);
        let mut s = seq;
        for (i, (msg, flags, family, attrs)) in self.cmds.iter().enumerate() {
            s = s.wrapping_add(1);
            let kind = (SUBSYS << 8) | *msg as u16;
            let ack = if i + 1 == self.cmds.len() {
                NLM_F_ACK
            } else {
                0
            };
            message(
                &mut out,
                kind,
                NLM_F_REQUEST | ack | flags,
                s,
                *family,
                0,
                attrs,
            );
        }
        message(
            &mut out,
            BATCH_END,
            NLM_F_REQUEST,
            s.wrapping_add(1),
            0,
            SUBSYS,
            &[],
        );
        out
    }

    /// Sends the transaction on `conn` and waits for the kernel's verdict on each
    /// command. The kernel applies all commands or, when one fails, none.
    ///
    /// # Errors
    /// [`CommitError::Unsent`] when the datagram could not be sent,
    /// [`CommitError::Refused`] with the first failing command's errno,
    /// [`CommitError::Unknown`] when the kernel's answer could not be read.
    pub(crate) fn commit(&self, conn: &mut Conn) -> Result<(), CommitError> {
        if self.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(self.cmds.len()).unwrap_or(u32::MAX);
        let seq = conn.reserve_seq(n + 2);
        conn.send_bytes(&self.to_bytes(seq))
            .map_err(CommitError::Unsent)?;
        crate::release::note_commit();
        let mut refused: Option<CommitError> = None;
        conn.receive_raw(|m| {
            let index = m.seq.wrapping_sub(seq);
            if index > n || m.kind != NLMSG_ERROR {
                return Ok(true); // not an answer to this batch
            }
            let code = error_code(m.payload);
            if code != 0 && refused.is_none() {
                let what = match index {
                    0 => "batch".to_owned(),
                    i => {
                        let cmd = self.cmds.get(i as usize - 1).map(|c| c.0);
                        format!("command {i} of {n} ({cmd:?})")
                    }
                };
                refused = Some(CommitError::Refused { errno: -code, what });
            }
            // Answers come in order, the last command's last; the begin message is
            // answered only when the whole batch is refused.
            Ok(index != n && index != 0)
        })
        .map_err(CommitError::Unknown)?;
        refused.map_or(Ok(()), Err)
    }
}

/// Why `Batch::commit` failed.
#[derive(Debug)]
pub enum CommitError {
    /// Not sent: nothing was applied.
    Unsent(io::Error),
    /// The kernel refused the batch (nothing was applied): `errno` of `what`.
    Refused {
        /// Positive errno.
        errno: i32,
        /// The failing message.
        what: String,
    },
    /// Sent, but the answer could not be read: the outcome is unknown.
    Unknown(io::Error),
}

impl CommitError {
    /// As an `io::Error` (the errno's kind and text, with the failing command).
    pub fn into_io(self) -> io::Error {
        match self {
            CommitError::Unsent(e) | CommitError::Unknown(e) => e,
            CommitError::Refused { errno, what } => {
                let e = io::Error::from_raw_os_error(errno);
                io::Error::new(e.kind(), format!("{what}: {e}"))
            }
        }
    }
}

/// The errno (negative) of an `NLMSG_ERROR` payload; 0 = ACK.
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(-libc_eproto(), i32::from_ne_bytes)
}

fn libc_eproto() -> i32 {
    libc::EPROTO
}

/// Appends one netlink message with an nfgenmsg header.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// Sends one request (a get or a dump) and hands each data message's attributes (after
/// the nfgenmsg header) to `each`. A kernel error becomes its errno.
fn request(
    conn: &mut Conn,
    msg: Msg,
    flags: u16,
    family: u8,
    attrs: &Attrs,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let seq = conn.reserve_seq(1);
    let mut out = Vec::new();
    let kind = (SUBSYS << 8) | msg as u16;
    message(
        &mut out,
        kind,
        NLM_F_REQUEST | NLM_F_ACK | flags,
        seq,
        family,
        0,
        attrs.as_bytes(),
    );
    conn.send_bytes(&out)?;
    let mut err = None;
    conn.receive_raw(|m| {
        if m.seq != seq {
            return Ok(true);
        }
        match m.kind {
            NLMSG_DONE => Ok(false),
            NLMSG_ERROR => {
                let code = error_code(m.payload);
                if code != 0 {
                    err = Some(io::Error::from_raw_os_error(-code));
                }
                Ok(false)
            }
            _ => {
                each(m.payload.get(4..).unwrap_or_default());
                Ok(true)
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

fn name_of(value: &[u8]) -> String {
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// One dumped rule: what deletes need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Rule handle.
    pub handle: u64,
    /// Its comment.
    pub comment: Option<String>,
    /// The chain its verdict jumps to or goes to (`jump`/`goto`, as iptables-nft encodes
    /// `-j <chain>` too), if it has one.
    pub jump: Option<String>,
}

/// The rules of one chain, in order (one `GETRULE` dump filtered by the kernel to that
/// chain); only handles and comments are decoded. `Ok(None)` when the table or chain does
/// not exist.
///
/// # Errors
/// Socket failures and kernel errors other than `ENOENT`.
pub(crate) fn rules(
    conn: &mut Conn,
    family: u8,
    table: &str,
    chain: &str,
) -> io::Result<Option<Vec<RuleRef>>> {
    let mut a = Attrs::default();
    a.put_str(1, table); // NFTA_RULE_TABLE
    a.put_str(2, chain); // NFTA_RULE_CHAIN
    let mut out = Vec::new();
    let res = request(conn, Msg::GetRule, NLM_F_DUMP, family, &a, |attrs| {
        let (mut handle, mut comment, mut jump, mut same) = (None, None, None, true);
        for (kind, value) in attributes(attrs) {
            match kind {
                1 => same &= name_of(value) == table,
                2 => same &= name_of(value) == chain,
                3 => handle = value.try_into().ok().map(u64::from_be_bytes),
                4 => jump = jump_target(value),
                7 => comment = udata_comment(value),
                _ => {}
            }
        }
        if let (Some(handle), true) = (handle, same) {
            out.push(RuleRef {
                handle,
                comment,
                jump,
            });
        }
    });
    match res {
        Ok(()) => Ok(Some(out)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The chain named by a `jump`/`goto` verdict among a rule's expressions
/// (`NFTA_RULE_EXPRESSIONS`): an `immediate` whose data is a verdict with a chain, as
/// [`Expr::Verdict`] encodes it.
fn jump_target(exprs: &[u8]) -> Option<String> {
    attributes(exprs).find_map(|(_, elem)| {
        let mut name = None;
        let mut data = None;
        for (kind, value) in attributes(elem) {
            match kind {
                1 => name = Some(name_of(value)), // NFTA_EXPR_NAME
                2 => data = Some(value),          // NFTA_EXPR_DATA
                _ => {}
            }
        }
        if name.as_deref() != Some("immediate") {
            return None;
        }
        // NFTA_IMMEDIATE_DATA -> NFTA_DATA_VERDICT -> NFTA_VERDICT_{CODE,CHAIN}
        let imm = attributes(data?).find(|(k, _)| *k == 2)?.1;
        let verdict = attributes(imm).find(|(k, _)| *k == 2)?.1;
        let (mut code, mut chain) = (None, None);
        for (kind, value) in attributes(verdict) {
            match kind {
                1 => code = value.try_into().ok().map(i32::from_be_bytes),
                2 => chain = Some(name_of(value)),
                _ => {}
            }
        }
        matches!(code, Some(expr::NFT_JUMP | expr::NFT_GOTO))
            .then_some(chain)
            .flatten()
    })
}

/// Whether table `table` exists (`GETTABLE`).
///
/// # Errors
/// Socket failures and kernel errors other than `ENOENT`.
pub(crate) fn table_exists(conn: &mut Conn, family: u8, table: &str) -> io::Result<bool> {
    let mut a = Attrs::default();
    a.put_str(1, table); // NFTA_TABLE_NAME
    match request(conn, Msg::GetTable, 0, family, &a, |_| {}) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether chain `name` exists in `table` (`GETCHAIN` of that one chain).
///
/// # Errors
/// Socket failures and kernel errors other than `ENOENT`.
pub(crate) fn chain_exists(
    conn: &mut Conn,
    family: u8,
    table: &str,
    name: &str,
) -> io::Result<bool> {
    let mut a = Attrs::default();
    a.put_str(1, table); // NFTA_CHAIN_TABLE
    a.put_str(3, name); // NFTA_CHAIN_NAME
    match request(conn, Msg::GetChain, 0, family, &a, |_| {}) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The names of all chains of `table` (a `GETCHAIN` dump of the family, filtered here).
///
/// # Errors
/// Socket failures and kernel errors.
pub(crate) fn chains(conn: &mut Conn, family: u8, table: &str) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    request(
        conn,
        Msg::GetChain,
        NLM_F_DUMP,
        family,
        &Attrs::default(),
        |attrs| {
            let (mut t, mut name) = (None, None);
            for (kind, value) in attributes(attrs) {
                match kind {
                    1 => t = Some(name_of(value)),
                    3 => name = Some(name_of(value)),
                    _ => {}
                }
            }
            if let (Some(t), Some(name)) = (t, name)
                && t == table
            {
                out.push(name);
            }
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn comment_userdata_round_trip() {
        let u = comment_udata("ctr1").unwrap();
        assert_eq!(u, b"\x00\x05ctr1\x00");
        assert_eq!(udata_comment(&u).as_deref(), Some("ctr1"));
        // Another TLV first (type 1), then the comment.
        let mut other = vec![1, 2, 9, 9];
        other.extend_from_slice(&u);
        assert_eq!(udata_comment(&other).as_deref(), Some("ctr1"));
        assert_eq!(udata_comment(b"\x00\x09short"), None);
        assert!(comment_udata(&"c".repeat(254)).is_some());
        assert!(comment_udata(&"c".repeat(255)).is_none());
    }

    /// The decoder finds the chain of a `jump`/`goto` among a rule's expressions, as the
    /// encoder writes them, and nothing in a rule without one.
    #[test]
    fn jump_targets_are_decoded() {
        let rule = |verdict: expr::Verdict| {
            let mut a = Attrs::default();
            expr::Expr::Cmp(expr::CmpOp::Eq, vec![0x1f, 0x90]).encode(&mut a);
            expr::Expr::Verdict(verdict).encode(&mut a);
            a.into_bytes()
        };
        assert_eq!(
            jump_target(&rule(expr::Verdict::Jump("CNI-DN-x".into()))).as_deref(),
            Some("CNI-DN-x")
        );
        assert_eq!(
            jump_target(&rule(expr::Verdict::Goto("masq_checks".into()))).as_deref(),
            Some("masq_checks")
        );
        assert_eq!(jump_target(&rule(expr::Verdict::Accept)), None);
        assert_eq!(jump_target(&rule(expr::Verdict::Return)), None);
    }

    /// Table and chain messages as `nft --debug=mnl` shows nft 1.0.6 writing
    /// `add table ip t` and `add chain ip t p { type nat hook prerouting priority -100;
    /// policy accept; }`, framed by the batch.
    #[test]
    fn batch_bytes() {
        let mut b = Batch::default();
        b.new_table(2, "t", None);
        b.new_chain(
            2,
            "t",
            "p",
            Some(BaseChain {
                kind: "nat",
                hook: 0,
                prio: -100,
            }),
            None,
        );
        let bytes = b.to_bytes(100);
        let mut msgs = Vec::new();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            msgs.push(&rest[..len]);
            rest = &rest[len..];
        }
        assert_eq!(msgs.len(), 4);
        let head = |m: &[u8]| {
            (
                u16::from_ne_bytes(m[4..6].try_into().unwrap()),
                u16::from_ne_bytes(m[6..8].try_into().unwrap()),
                u32::from_ne_bytes(m[8..12].try_into().unwrap()),
                m[16..20].to_vec(),
            )
        };
        assert_eq!(head(msgs[0]), (16, 1, 100, vec![0, 0, 0, 10]));
        assert_eq!(head(msgs[1]), (0xa00, 0x401, 101, vec![2, 0, 0, 0]));
        assert_eq!(head(msgs[2]), (0xa03, 0x405, 102, vec![2, 0, 0, 0]));
        assert_eq!(head(msgs[3]), (17, 1, 103, vec![0, 0, 0, 10]));
        assert_eq!(msgs[1].len(), 36);
        assert_eq!(msgs[2].len(), 72);
        let mut hook = Vec::new();
        for (kind, value) in [(1u16, [0u8, 0, 0, 0]), (2, [0xff, 0xff, 0xff, 0x9c])] {
            hook.extend_from_slice(&8u16.to_ne_bytes());
            hook.extend_from_slice(&kind.to_ne_bytes());
            hook.extend_from_slice(&value);
        }
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&msgs[2][20..])
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(
            attrs,
            vec![
                (1, b"t\0".to_vec()),
                (3, b"p\0".to_vec()),
                (7, b"nat\0".to_vec()),
                (5, vec![0, 0, 0, 1]),
                (4, hook),
            ]
        );
    }
}
