//! Native reads of the rules `iptables-nft` keeps in nf_tables: whether a chain holds one
//! given rule, answered by one `NFT_MSG_GETRULE` dump of that chain over nfnetlink.
//!
//! Why: `iptables-restore`'s `-C` has to fetch and parse whole chains (at 1,000
//! containers, the 5 checks of portmap's shared rules cost 11 ms, 1.4 ms with one
//! container), while a dump of one chain read only until the rule shows up costs tens of
//! microseconds and does not grow with the node (the shared rules come first).
//!
//! Callers first make sure the tools are the nf_tables variant
//! ([`super::is_nft_variant`]); only a positive answer is ever acted on: a rule is reported present when its
//! expressions (counters aside) are exactly the encoding `iptables-nft` 1.8 gives the
//! wanted rule (compat `match`/`target` with their `xt` info structures, native jumps,
//! native `meta mark` matches). Anything else (legacy iptables, another encoding, an
//! unreadable reply) reads as "not confirmed", and the caller keeps its `-C` checks.

use std::io;

use netlink_packet_core::{NLM_F_DUMP, Nla};
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute, Meta,
    MetaKey, NfTablesMessage, Operator, Register, RuleAttribute, RuleMessage, Verdict,
    VerdictAttribute,
};
use netlink_packet_netfilter::{NetfilterMessageInner, NetfilterProtoFamily};

use super::Family;
use crate::nfnl::{Conn, Reply};

/// One expression of a rule, reduced to what the wanted shapes compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `counter` (iptables-nft adds one to every rule; ignored when comparing).
    Counter,
    /// Compat `match`.
    Match {
        /// xt extension name (`comment`, `addrtype`).
        name: String,
        /// Extension revision.
        rev: u32,
        /// The extension's info structure.
        info: Vec<u8>,
    },
    /// Compat `target`.
    Target {
        /// xt extension name (`MARK`, `MASQUERADE`).
        name: String,
        /// Extension revision.
        rev: u32,
        /// The extension's info structure.
        info: Vec<u8>,
    },
    /// `immediate` verdict `jump <chain>`.
    Jump(String),
    /// `meta load mark => reg`.
    MetaMark {
        /// Destination register.
        dreg: u32,
    },
    /// `bitwise dreg = (sreg & mask) ^ xor` on 4 bytes.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// Mask value.
        mask: Vec<u8>,
        /// Xor value.
        xor: Vec<u8>,
    },
    /// `cmp eq sreg data`.
    CmpEq {
        /// Source register.
        sreg: u32,
        /// Compared value.
        data: Vec<u8>,
    },
    /// Anything else (never part of a wanted shape), by expression name.
    Other(String),
}

/// The `xt` info of a compat target, as the wanted shape accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Info {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Plain `-j MASQUERADE`: no addresses, ports or flags (all zero but the IPv4
    /// structure's leading `rangesize` of 1).
    PlainMasquerade,
}

/// One element of a wanted rule, in iptables argument order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `-m <name>` with exactly this revision and info.
    Match {
        /// xt extension name.
        name: &'static str,
        /// Extension revision.
        rev: u32,
        /// The extension's info structure.
        info: Vec<u8>,
    },
    /// `-j <name>` (an xt target).
    Target {
        /// xt extension name.
        name: &'static str,
        /// Extension revision.
        rev: u32,
        /// Which info structures are accepted.
        info: Info,
    },
    /// `-j <chain>` (a jump to a user chain).
    Jump(String),
    /// `-m mark --mark M/M` (iptables-nft writes it natively: meta, bitwise, cmp).
    MarkAll(u32),
}

impl Want {
    /// `-m comment --comment <text>`: `struct xt_comment_info` (256 bytes, NUL padded).
    pub fn comment(text: &str) -> Want {
        let mut info = vec![0u8; 256];
        let bytes = text.as_bytes();
        let n = bytes.len().min(255);
        if let (Some(dst), Some(src)) = (info.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        Want::Match {
            name: "comment",
            rev: 0,
            info,
        }
    }

    /// `-m addrtype --dst-type LOCAL`: `struct xt_addrtype_info_v1` {source, dest (u16),
    /// flags (u32)} with dest `XT_ADDRTYPE_LOCAL` (1 << RTN_LOCAL).
    pub fn dst_type_local() -> Want {
        let mut info = Vec::with_capacity(8);
        info.extend_from_slice(&0u16.to_ne_bytes());
        info.extend_from_slice(&4u16.to_ne_bytes());
        info.extend_from_slice(&0u32.to_ne_bytes());
        Want::Match {
            name: "addrtype",
            rev: 1,
            info,
        }
    }

    /// `-j MARK --set-xmark <value>/<mask>`: `struct xt_mark_tginfo2` {mark, mask}.
    pub fn set_xmark(value: u32, mask: u32) -> Want {
        let mut info = Vec::with_capacity(8);
        info.extend_from_slice(&value.to_ne_bytes());
        info.extend_from_slice(&mask.to_ne_bytes());
        Want::Target {
            name: "MARK",
            rev: 2,
            info: Info::Exact(info),
        }
    }

    /// `-j MASQUERADE` without options.
    pub fn masquerade() -> Want {
        Want::Target {
            name: "MASQUERADE",
            rev: 0,
            info: Info::PlainMasquerade,
        }
    }
}

impl Info {
    fn accepts(&self, info: &[u8]) -> bool {
        match self {
            Info::Exact(want) => want == info,
            Info::PlainMasquerade => {
                let (head, rest) = info.split_at(info.len().min(4));
                let head_ok = head.iter().all(|b| *b == 0) || head == 1u32.to_ne_bytes();
                head_ok && rest.iter().all(|b| *b == 0)
            }
        }
    }
}

/// Whether `exprs` (one rule) is exactly `want`, counters aside.
pub fn rule_matches(exprs: &[Expr], want: &[Want]) -> bool {
    let mut it = exprs.iter().filter(|e| **e != Expr::Counter);
    for w in want {
        let ok = match w {
            Want::Match { name, rev, info } => matches!(
                it.next(),
                Some(Expr::Match { name: n, rev: r, info: i }) if n == name && r == rev && i == info
            ),
            Want::Target { name, rev, info } => matches!(
                it.next(),
                Some(Expr::Target { name: n, rev: r, info: i })
                    if n == name && r == rev && info.accepts(i)
            ),
            Want::Jump(chain) => matches!(it.next(), Some(Expr::Jump(c)) if c == chain),
            Want::MarkAll(mark) => {
                let m = mark.to_ne_bytes();
                match (it.next(), it.next(), it.next()) {
                    (
                        Some(Expr::MetaMark { dreg }),
                        Some(Expr::Bitwise {
                            sreg,
                            dreg: bdreg,
                            mask,
                            xor,
                        }),
                        Some(Expr::CmpEq { sreg: csreg, data }),
                    ) => {
                        sreg == dreg
                            && csreg == bdreg
                            && mask.as_slice() == m
                            && xor.iter().all(|b| *b == 0)
                            && xor.len() == 4
                            && data.as_slice() == m
                    }
                    _ => false,
                }
            }
        };
        if !ok {
            return false;
        }
    }
    it.next().is_none()
}

/// Whether every `(chain, rule)` of `rules` is present in iptables table `table`
/// (`family`): each chain holds a rule that is exactly its `want`. One socket: the chains
/// are dumped in order and read whole, except the last, which is read only until its
/// rule shows up (put the long chain last). Stops at the first rule not found; an absent
/// table or chain is `false`.
///
/// # Errors
/// Socket failures, timeouts and kernel errors other than "no such table/chain".
pub fn all_present(family: Family, table: &str, rules: &[(&str, &[Want])]) -> io::Result<bool> {
    let mut conn =
        Conn::open().map_err(|(op, e)| io::Error::new(e.kind(), format!("{op}: {e}")))?;
    for (i, (chain, want)) in rules.iter().enumerate() {
        let last = i + 1 == rules.len();
        if !find_rule(&mut conn, family, table, chain, want, last)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether nf_tables chain `chain` of table `table` (`family`: `ip` or `ip6`, whether
/// iptables-nft or nft made it) holds a rule for which `pred` is true: one dump on a
/// socket of its own, read only until such a rule shows up. An absent table or chain is
/// `false`.
///
/// # Errors
/// Socket failures, timeouts and kernel errors other than "no such table/chain".
pub fn chain_has_rule(
    family: Family,
    table: &str,
    chain: &str,
    pred: impl Fn(&RuleMessage) -> bool,
) -> io::Result<bool> {
    let mut conn =
        Conn::open().map_err(|(op, e)| io::Error::new(e.kind(), format!("{op}: {e}")))?;
    dump_until(&mut conn, family, table, chain, pred, true)
}

/// Whether `expr` is the compat match `want` (a [`Want::Match`]) exactly.
pub fn is_wanted_match(expr: &Expr, want: &Want) -> bool {
    match (expr, want) {
        (
            Expr::Match { name, rev, info },
            Want::Match {
                name: w_name,
                rev: w_rev,
                info: w_info,
            },
        ) => name == w_name && rev == w_rev && info == w_info,
        _ => false,
    }
}

/// The comment nft stored with a rule (`comment "..."`), from its user data
/// ([`crate::nftnl::udata_comment`]).
pub fn nft_comment(rule: &RuleMessage) -> Option<String> {
    rule.attributes.iter().find_map(|a| match a {
        RuleAttribute::UserData(d) => crate::nftnl::udata_comment(d),
        _ => None,
    })
}

/// One dump of `chain` on `conn`, looking for `want`; with `stop_early` the dump is
/// abandoned at the rule (then `conn` must not be used again).
fn find_rule(
    conn: &mut Conn,
    family: Family,
    table: &str,
    chain: &str,
    want: &[Want],
    stop_early: bool,
) -> io::Result<bool> {
    dump_until(
        conn,
        family,
        table,
        chain,
        |rule| rule_matches(&expressions(rule), want),
        stop_early,
    )
}

/// One `NFT_MSG_GETRULE` dump of `chain` on `conn`, true when `pred` holds for a rule;
/// with `stop_early` the dump is abandoned there (then `conn` must not be used again).
fn dump_until(
    conn: &mut Conn,
    family: Family,
    table: &str,
    chain: &str,
    pred: impl Fn(&RuleMessage) -> bool,
    stop_early: bool,
) -> io::Result<bool> {
    let request = NfTablesMessage::GetRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(table.to_owned()),
            RuleAttribute::Chain(chain.to_owned()),
        ],
    });
    let nfproto = match family {
        Family::V4 => NetfilterProtoFamily::IPv4,
        Family::V6 => NetfilterProtoFamily::IPv6,
    };
    let seq = conn.send(nfproto, request, NLM_F_DUMP)?;
    let mut found = false;
    let outcome = conn.receive_while(seq, |reply| {
        if !found
            && let Reply::Entry(inner) = reply
            && let NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(rule)) = *inner
        {
            found = pred(&rule);
        }
        !(found && stop_early)
    });
    match outcome {
        Ok(_) => Ok(found),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The expressions of a dumped rule, reduced to [`Expr`].
pub fn expressions(rule: &RuleMessage) -> Vec<Expr> {
    let mut out = Vec::new();
    for attr in &rule.attributes {
        if let RuleAttribute::Expressions(list) = attr {
            for element in list {
                if let ListAttribute::Element(parts) = element {
                    out.push(expression(parts));
                }
            }
        }
    }
    out
}

fn expression(parts: &[ExpressionAttribute]) -> Expr {
    let mut name = String::new();
    let mut data = None;
    for p in parts {
        match p {
            ExpressionAttribute::Name(n) => name.clone_from(n),
            ExpressionAttribute::Data(d) => data = Some(d),
            _ => {}
        }
    }
    match (name.as_str(), data) {
        ("counter", _) => Expr::Counter,
        ("match" | "target", Some(Expressions::Other { attributes, .. })) => {
            compat(&name, attributes)
        }
        ("immediate", Some(Expressions::Immediate(attrs))) => immediate(attrs),
        ("meta", Some(Expressions::Meta(attrs))) => meta(attrs),
        ("bitwise", Some(Expressions::Bitwise(attrs))) => bitwise(attrs),
        ("cmp", Some(Expressions::Cmp(attrs))) => cmp(attrs),
        _ => Expr::Other(name),
    }
}

/// `NFTA_MATCH_*` / `NFTA_TARGET_*`: 1 name, 2 revision (u32 BE), 3 info.
fn compat(kind: &str, attributes: &[netlink_packet_core::DefaultNla]) -> Expr {
    let (mut name, mut rev, mut info) = (None, None, Vec::new());
    for a in attributes {
        let mut value = vec![0u8; a.value_len()];
        a.emit_value(&mut value);
        match a.kind() {
            1 => {
                let s = value.split(|b| *b == 0).next().unwrap_or_default();
                name = std::str::from_utf8(s).ok().map(str::to_owned);
            }
            2 => rev = value.as_slice().try_into().ok().map(u32::from_be_bytes),
            3 => info = value,
            _ => {}
        }
    }
    match (kind, name, rev) {
        ("match", Some(name), Some(rev)) => Expr::Match { name, rev, info },
        ("target", Some(name), Some(rev)) => Expr::Target { name, rev, info },
        _ => Expr::Other(kind.to_owned()),
    }
}

fn immediate(attrs: &[Immediate]) -> Expr {
    let mut dreg = None;
    let mut verdict = None;
    let mut chain = None;
    for a in attrs {
        match a {
            Immediate::DestinationRegister(r) => dreg = Some(*r),
            Immediate::Data(DataAttribute::Verdict(v)) => {
                for va in v {
                    match va {
                        VerdictAttribute::Code(c) => verdict = Some(*c),
                        VerdictAttribute::Chain(name) => chain = Some(name.clone()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (dreg, verdict, chain) {
        (Some(Register::Verdict), Some(Verdict::Jump), Some(chain)) => Expr::Jump(chain),
        _ => Expr::Other("immediate".into()),
    }
}

fn meta(attrs: &[Meta]) -> Expr {
    let mut key = None;
    let mut dreg = None;
    for a in attrs {
        match a {
            Meta::Key(k) => key = Some(*k),
            Meta::DestinationRegister(r) => dreg = Some(u32::from(*r)),
            _ => return Expr::Other("meta".into()),
        }
    }
    match (key, dreg) {
        (Some(MetaKey::Mark), Some(dreg)) => Expr::MetaMark { dreg },
        _ => Expr::Other("meta".into()),
    }
}

fn bitwise(attrs: &[Bitwise]) -> Expr {
    let (mut sreg, mut dreg, mut len, mut mask, mut xor) = (None, None, None, None, None);
    for a in attrs {
        match a {
            Bitwise::SourceRegister(r) => sreg = Some(u32::from(*r)),
            Bitwise::DestinationRegister(r) => dreg = Some(u32::from(*r)),
            Bitwise::Length(l) => len = Some(*l),
            Bitwise::Mask(DataAttribute::Value(v)) => mask = Some(v.clone()),
            Bitwise::Xor(DataAttribute::Value(v)) => xor = Some(v.clone()),
            // NFT_BITWISE_MASK_XOR (kernels >= 5.6 report it; older ones imply it).
            Bitwise::Op(0) => {}
            // An operation other than the default mask-and-xor, or shift data.
            _ => return Expr::Other("bitwise".into()),
        }
    }
    match (sreg, dreg, len, mask, xor) {
        (Some(sreg), Some(dreg), Some(4), Some(mask), Some(xor)) => Expr::Bitwise {
            sreg,
            dreg,
            mask,
            xor,
        },
        _ => Expr::Other("bitwise".into()),
    }
}

fn cmp(attrs: &[Cmp]) -> Expr {
    let (mut sreg, mut op, mut data) = (None, None, None);
    for a in attrs {
        match a {
            Cmp::SourceRegister(r) => sreg = Some(u32::from(*r)),
            Cmp::Op(o) => op = Some(*o),
            Cmp::Data(DataAttribute::Value(v)) => data = Some(v.clone()),
            _ => return Expr::Other("cmp".into()),
        }
    }
    match (sreg, op, data) {
        (Some(sreg), Some(Operator::Equal), Some(data)) => Expr::CmpEq { sreg, data },
        _ => Expr::Other("cmp".into()),
    }
}

/// Removes the chains `(entry, chain)` of `table` natively, in one nf_tables transaction:
/// each `chain` that exists is flushed and deleted, with every rule of its `entry` chain
/// that jumps to it. Only two chain dumps are read (`entry`'s, filtered by the kernel),
/// never the whole table, so the cost does not grow with unrelated rules (a node's
/// kube-proxy rules in `nat`). For the nf_tables variant of the tools only.
///
/// Returns `false` when this could not be done and the caller must fall back to reading
/// the table: a socket or read failure, or the kernel refusing the transaction (nothing
/// is then changed), e.g. because a rule elsewhere still jumps to a chain (`EBUSY`) or
/// another process changed the chain meanwhile.
pub fn remove_chains(family: Family, table: &str, pairs: &[(&str, &str)]) -> bool {
    let fam = crate::nftnl::compile::family_byte(family.nf_family());
    let attempt = || -> io::Result<bool> {
        let mut conn =
            Conn::open().map_err(|(op, e)| io::Error::new(e.kind(), format!("{op}: {e}")))?;
        let mut batch = crate::nftnl::Batch::default();
        for (entry, chain) in pairs {
            if !crate::nftnl::chain_exists(&mut conn, fam, table, chain)? {
                continue;
            }
            let jumps = crate::nftnl::rules(&mut conn, fam, table, entry)?.unwrap_or_default();
            for r in jumps.iter().filter(|r| r.jump.as_deref() == Some(*chain)) {
                batch.del_rule(fam, table, entry, r.handle);
            }
            batch.flush_chain(fam, table, chain);
            batch.del_chain(fam, table, chain);
        }
        if batch.is_empty() {
            return Ok(true);
        }
        match batch.commit(&mut conn) {
            Ok(()) => Ok(true),
            Err(crate::nftnl::CommitError::Refused { errno, what }) => {
                log::debug!("native removal refused: {what}: errno {errno}");
                Ok(false)
            }
            Err(e) => Err(e.into_io()),
        }
    };
    match attempt() {
        Ok(done) => done,
        Err(e) => {
            log::debug!("native removal in table {table} not possible: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark_exprs(mark: u32, masq_info: Vec<u8>) -> Vec<Expr> {
        vec![
            Expr::MetaMark { dreg: 1 },
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                mask: mark.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::CmpEq {
                sreg: 1,
                data: mark.to_ne_bytes().to_vec(),
            },
            Expr::Counter,
            Expr::Target {
                name: "MASQUERADE".into(),
                rev: 0,
                info: masq_info,
            },
        ]
    }

    #[test]
    fn exact_shapes_match_and_extra_or_missing_expressions_do_not() {
        let want = [
            Want::dst_type_local(),
            Want::Jump("CNI-HOSTPORT-DNAT".into()),
        ];
        let Want::Match { info, .. } = Want::dst_type_local() else {
            unreachable!()
        };
        let rule = vec![
            Expr::Match {
                name: "addrtype".into(),
                rev: 1,
                info: info.clone(),
            },
            Expr::Counter,
            Expr::Jump("CNI-HOSTPORT-DNAT".into()),
        ];
        assert!(rule_matches(&rule, &want));
        // Another jump target, an inverted type (flags), an extra match: not the rule.
        let mut other = rule.clone();
        other[2] = Expr::Jump("CNI-HOSTPORT-MASQ".into());
        assert!(!rule_matches(&other, &want));
        let mut inverted = info.clone();
        inverted[4] = 2;
        let mut other = rule.clone();
        other[0] = Expr::Match {
            name: "addrtype".into(),
            rev: 1,
            info: inverted,
        };
        assert!(!rule_matches(&other, &want));
        let mut other = rule.clone();
        other.insert(0, Expr::Other("payload".into()));
        assert!(!rule_matches(&other, &want));
        assert!(!rule_matches(&rule[..2], &want));
    }

    #[test]
    fn comment_info_is_nul_padded_to_256_bytes() {
        let Want::Match { name, rev, info } = Want::comment("CNI portfwd masquerade mark") else {
            unreachable!()
        };
        assert_eq!((name, rev, info.len()), ("comment", 0, 256));
        assert!(info.starts_with(b"CNI portfwd masquerade mark\0"));
        assert!(info[27..].iter().all(|b| *b == 0));
    }

    #[test]
    fn mark_match_and_plain_masquerade() {
        let want = [Want::MarkAll(0x2000), Want::masquerade()];
        let mut v4 = 1u32.to_ne_bytes().to_vec();
        v4.extend_from_slice(&[0; 20]);
        assert!(rule_matches(&mark_exprs(0x2000, v4.clone()), &want));
        assert!(
            rule_matches(&mark_exprs(0x2000, vec![0; 40]), &want),
            "IPv6 nf_nat_range"
        );
        assert!(
            !rule_matches(&mark_exprs(0x4000, v4.clone()), &want),
            "other bit"
        );
        let mut ports = v4;
        ports[20] = 1;
        assert!(
            !rule_matches(&mark_exprs(0x2000, ports), &want),
            "--to-ports"
        );
    }

    #[test]
    fn nft_comment_reads_the_comment_entry_of_the_user_data() {
        let rule = |data: Vec<u8>| RuleMessage {
            attributes: vec![RuleAttribute::UserData(data)],
        };
        let mut data = vec![1, 2, 0xaa, 0xbb];
        data.extend_from_slice(&[0, 4]);
        data.extend_from_slice(b"abc\0");
        assert_eq!(nft_comment(&rule(data)).as_deref(), Some("abc"));
        assert_eq!(nft_comment(&rule(vec![1, 1, 9])), None);
        assert_eq!(nft_comment(&rule(vec![0, 9, b'x'])), None, "truncated");
        assert_eq!(nft_comment(&RuleMessage { attributes: vec![] }), None);
    }

    #[test]
    fn is_wanted_match_compares_name_revision_and_info() {
        let want = Want::comment("guard");
        let Want::Match { info, .. } = want.clone() else {
            panic!("a match")
        };
        let exact = Expr::Match {
            name: "comment".into(),
            rev: 0,
            info: info.clone(),
        };
        assert!(is_wanted_match(&exact, &want));
        let Want::Match {
            info: other_info, ..
        } = Want::comment("guard2")
        else {
            panic!("a match")
        };
        let other = Expr::Match {
            name: "comment".into(),
            rev: 0,
            info: other_info,
        };
        assert!(!is_wanted_match(&other, &want));
        assert!(!is_wanted_match(&Expr::Counter, &want));
    }
}
