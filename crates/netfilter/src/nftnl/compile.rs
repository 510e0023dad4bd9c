//! nft's front end for the commands and statements this crate writes: turns the typed
//! schema of the `nftables` crate (what [`crate::nft::Tx`] holds) into nf_tables
//! messages, adding what nft adds implicitly, so that the kernel ends up with the same
//! expressions as when nft is given the same commands:
//!
//! * `ip`/`ip6` header matches in an `inet` table first check `meta nfproto`;
//! * `tcp`/`udp`/`sctp` port matches first check `meta l4proto`;
//! * a prefix on a byte boundary loads only its bytes; another one (or `/0`) loads the
//!   whole address and masks it with `bitwise`;
//! * interface names are compared over the full 16 bytes (`IFNAMSIZ`), zero padded.
//!
//! Anything else is refused with a reason ([`Unsupported`]); the caller then applies
//! the transaction with `nft` as before.

use std::net::IpAddr;

use nftables::expr::{
    Expression, FibFlag, FibResult, MetaKey as NftMeta, NamedExpression, Payload,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Rule};
use nftables::stmt::{NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::expr::{
    Base, CmpOp, Expr, MetaKey, NFPROTO_IPV4, NFPROTO_IPV6, REG_1, REG_2, RTN_LOCAL, Verdict,
};
use super::{BaseChain, Batch, comment_udata, upstream_comment};

/// Why a command cannot be encoded natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

type Res<T> = Result<T, Unsupported>;

fn unsupported<T>(what: impl std::fmt::Debug) -> Res<T> {
    Err(Unsupported(format!("no native encoding for {what:?}")))
}

/// The `nfgenmsg` family byte of an nftables family (`NFPROTO_*`).
pub fn family_byte(f: NfFamily) -> u8 {
    match f {
        NfFamily::INet => 1,
        NfFamily::IP => NFPROTO_IPV4,
        NfFamily::ARP => 3,
        NfFamily::NetDev => 5,
        NfFamily::Bridge => 7,
        NfFamily::IP6 => NFPROTO_IPV6,
    }
}

/// Adds one command of a [`crate::nft::Tx`] to `batch`.
///
/// # Errors
/// [`Unsupported`] for a command or statement without a native encoding here.
pub fn command(batch: &mut Batch, obj: &NfObject<'_>) -> Res<()> {
    let NfObject::CmdObject(cmd) = obj else {
        return unsupported(obj);
    };
    match cmd {
        NfCmd::Add(NfListObject::Table(t)) if t.handle.is_none() => {
            batch.new_table(
                family_byte(t.family),
                &t.name,
                upstream_comment(&t.name, None),
            );
        }
        NfCmd::Add(NfListObject::Chain(c)) => {
            plain(c)?;
            let base = match (c._type, c.hook, c.prio, c.policy) {
                (None, None, None, None) => None,
                (Some(kind), Some(hook), Some(prio), Some(NfChainPolicy::Accept)) => {
                    Some(BaseChain {
                        kind: match kind {
                            NfChainType::Filter => "filter",
                            NfChainType::NAT => "nat",
                            NfChainType::Route => "route",
                        },
                        hook: hook_number(hook)?,
                        prio,
                    })
                }
                _ => return unsupported(c),
            };
            let comment = upstream_comment(&c.table, Some(&c.name));
            batch.new_chain(family_byte(c.family), &c.table, &c.name, base, comment);
        }
        NfCmd::Flush(FlushObject::Chain(c)) => {
            plain(c)?;
            batch.flush_chain(family_byte(c.family), &c.table, &c.name);
        }
        NfCmd::Delete(NfListObject::Chain(c)) => {
            plain(c)?;
            batch.del_chain(family_byte(c.family), &c.table, &c.name);
        }
        NfCmd::Add(NfListObject::Rule(r)) if r.handle.is_none() && r.index.is_none() => {
            let exprs = rule(r)?;
            let udata = match &r.comment {
                Some(c) => Some(
                    comment_udata(c)
                        .ok_or_else(|| Unsupported(format!("comment of {} bytes", c.len())))?,
                ),
                None => None,
            };
            batch.new_rule(
                family_byte(r.family),
                &r.table,
                &r.chain,
                &exprs,
                udata.as_deref(),
            );
        }
        NfCmd::Delete(NfListObject::Rule(r)) if r.expr.is_empty() => {
            let Some(handle) = r.handle else {
                return unsupported(r);
            };
            batch.del_rule(family_byte(r.family), &r.table, &r.chain, u64::from(handle));
        }
        other => return unsupported(other),
    }
    Ok(())
}

fn plain(c: &Chain<'_>) -> Res<()> {
    if c.dev.is_some() || c.handle.is_some() || c.newname.is_some() {
        return unsupported(c);
    }
    Ok(())
}

fn hook_number(h: NfHook) -> Res<u32> {
    Ok(match h {
        NfHook::Prerouting => 0,
        NfHook::Input => 1,
        NfHook::Forward => 2,
        NfHook::Output => 3,
        NfHook::Postrouting => 4,
        other => return unsupported(other),
    })
}

/// The expressions of one rule.
fn rule(r: &Rule<'_>) -> Res<Vec<Expr>> {
    let mut out = Vec::new();
    let mut deps = Deps::default();
    for s in r.expr.iter() {
        statement(&mut out, &mut deps, r.family, s)?;
    }
    Ok(out)
}

/// The protocol dependencies already checked in the rule being compiled: nft checks
/// each once per rule.
#[derive(Debug, Default)]
struct Deps {
    nfproto: Option<u8>,
    l4proto: Option<u8>,
}

impl Deps {
    /// Adds `meta <key>` == `value` unless the rule already checks it; refuses a
    /// rule that needs two different values (nft refuses it too).
    fn need(&mut self, out: &mut Vec<Expr>, key: MetaKey, value: u8) -> Res<()> {
        let slot = if key == MetaKey::Nfproto {
            &mut self.nfproto
        } else {
            &mut self.l4proto
        };
        match *slot {
            Some(v) if v == value => return Ok(()),
            Some(v) => return unsupported((key, v, value)),
            None => *slot = Some(value),
        }
        out.push(Expr::Meta(key));
        out.push(Expr::Cmp(CmpOp::Eq, vec![value]));
        Ok(())
    }
}

fn statement(out: &mut Vec<Expr>, deps: &mut Deps, family: NfFamily, s: &Statement<'_>) -> Res<()> {
    match s {
        Statement::Match(m) => {
            let op = match m.op {
                Operator::EQ => CmpOp::Eq,
                Operator::NEQ => CmpOp::Neq,
                _ => return unsupported(m),
            };
            matching(out, deps, family, &m.left, &m.right, op)?;
        }
        Statement::Jump(t) => out.push(Expr::Verdict(Verdict::Jump(t.target.to_string()))),
        Statement::Goto(t) => out.push(Expr::Verdict(Verdict::Goto(t.target.to_string()))),
        Statement::Return(None) => out.push(Expr::Verdict(Verdict::Return)),
        Statement::Drop(None) => out.push(Expr::Verdict(Verdict::Drop)),
        Statement::Accept(None) => out.push(Expr::Verdict(Verdict::Accept)),
        Statement::Masquerade(None) => out.push(Expr::Masq),
        Statement::DNAT(Some(nat)) => dnat(out, family, nat)?,
        other => return unsupported(other),
    }
    Ok(())
}

/// `dnat to <addr>:<port>` in an `ip`/`ip6` table: both values in registers.
fn dnat(out: &mut Vec<Expr>, family: NfFamily, nat: &NAT<'_>) -> Res<()> {
    let (Some(Expression::String(addr)), Some(Expression::Number(port)), None) =
        (&nat.addr, &nat.port, &nat.flags)
    else {
        return unsupported(nat);
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| Unsupported(format!("dnat address {addr:?}")))?;
    let port = u16::try_from(*port).map_err(|_| Unsupported(format!("dnat port {port}")))?;
    let nfproto = match (family, ip, nat.family) {
        (NfFamily::IP, IpAddr::V4(_), None | Some(NATFamily::IP)) => NFPROTO_IPV4,
        (NfFamily::IP6, IpAddr::V6(_), None | Some(NATFamily::IP6)) => NFPROTO_IPV6,
        _ => return unsupported(nat),
    };
    out.push(Expr::Value {
        dreg: REG_1,
        data: addr_bytes(ip),
    });
    out.push(Expr::Value {
        dreg: REG_2,
        data: port.to_be_bytes().to_vec(),
    });
    out.push(Expr::Dnat { family: nfproto });
    Ok(())
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Transport protocol numbers of the port matches.
fn l4proto(proto: &str) -> Option<u8> {
    match proto {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

fn matching(
    out: &mut Vec<Expr>,
    deps: &mut Deps,
    family: NfFamily,
    left: &Expression<'_>,
    right: &Expression<'_>,
    op: CmpOp,
) -> Res<()> {
    let Expression::Named(named) = left else {
        return unsupported(left);
    };
    match named {
        NamedExpression::Payload(Payload::PayloadField(p)) => {
            let (proto, field) = (p.protocol.as_ref(), p.field.as_ref());
            match (proto, field) {
                ("ip" | "ip6", "saddr" | "daddr") => {
                    let v6 = proto == "ip6";
                    match (family, v6) {
                        (NfFamily::IP, false) | (NfFamily::IP6, true) => {}
                        (NfFamily::INet, _) => {
                            let nfproto = if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
                            deps.need(out, MetaKey::Nfproto, nfproto)?;
                        }
                        _ => return unsupported((family, left)),
                    }
                    let offset = match (v6, field) {
                        (false, "saddr") => 12,
                        (false, _) => 16,
                        (true, "saddr") => 8,
                        (true, _) => 24,
                    };
                    address(out, offset, v6, right, op)
                }
                ("tcp" | "udp" | "sctp", "dport" | "sport") => {
                    if !matches!(family, NfFamily::IP | NfFamily::IP6 | NfFamily::INet) {
                        return unsupported((family, left));
                    }
                    let Expression::Number(port) = right else {
                        return unsupported(right);
                    };
                    let port =
                        u16::try_from(*port).map_err(|_| Unsupported(format!("port {port}")))?;
                    deps.need(out, MetaKey::L4proto, l4proto(proto).unwrap_or_default())?;
                    out.push(Expr::Payload {
                        base: Base::Transport,
                        offset: if field == "sport" { 0 } else { 2 },
                        len: 2,
                    });
                    out.push(Expr::Cmp(op, port.to_be_bytes().to_vec()));
                    Ok(())
                }
                ("ether", "saddr" | "daddr") if family == NfFamily::Bridge => {
                    let Expression::String(mac) = right else {
                        return unsupported(right);
                    };
                    let bytes =
                        parse_mac(mac).ok_or_else(|| Unsupported(format!("MAC {mac:?}")))?;
                    out.push(Expr::Payload {
                        base: Base::Link,
                        offset: if field == "saddr" { 6 } else { 0 },
                        len: 6,
                    });
                    out.push(Expr::Cmp(op, bytes.to_vec()));
                    Ok(())
                }
                _ => unsupported(p),
            }
        }
        NamedExpression::Meta(m) if matches!(m.key, NftMeta::Iifname | NftMeta::Oifname) => {
            let Expression::String(name) = right else {
                return unsupported(right);
            };
            // Wildcards and escapes have their own encoding in nft; names are < 16 bytes.
            if name.len() >= 16 || name.is_empty() || name.contains(['*', '\\']) {
                return unsupported(right);
            }
            let mut data = name.as_bytes().to_vec();
            data.resize(16, 0);
            out.push(Expr::Meta(if m.key == NftMeta::Iifname {
                MetaKey::Iifname
            } else {
                MetaKey::Oifname
            }));
            out.push(Expr::Cmp(op, data));
            Ok(())
        }
        NamedExpression::Fib(f)
            if f.result == FibResult::Type
                && f.flags.len() == 1
                && f.flags.contains(&FibFlag::Daddr)
                && matches!(right, Expression::String(s) if s == "local") =>
        {
            out.push(Expr::FibDaddrType);
            out.push(Expr::Cmp(op, RTN_LOCAL.to_ne_bytes().to_vec()));
            Ok(())
        }
        other => unsupported(other),
    }
}

/// An address or prefix match at `offset` of the network header.
fn address(
    out: &mut Vec<Expr>,
    offset: u32,
    v6: bool,
    right: &Expression<'_>,
    op: CmpOp,
) -> Res<()> {
    let full: u32 = if v6 { 16 } else { 4 };
    let (text, len) = match right {
        Expression::String(a) => (a.as_ref(), None),
        Expression::Named(NamedExpression::Prefix(p)) => match p.addr.as_ref() {
            Expression::String(a) => (a.as_ref(), Some(p.len)),
            other => return unsupported(other),
        },
        other => return unsupported(other),
    };
    let ip: IpAddr = text
        .parse()
        .map_err(|_| Unsupported(format!("address {text:?}")))?;
    if ip.is_ipv6() != v6 {
        return unsupported(right);
    }
    let bytes = addr_bytes(ip);
    match len {
        Some(bits) if bits > full * 8 => unsupported(right),
        Some(bits) if bits % 8 != 0 || bits == 0 => {
            let mask: Vec<u8> = (0..full)
                .map(|i| {
                    let left = bits.saturating_sub(i * 8).min(8);
                    if left == 0 { 0 } else { 0xffu8 << (8 - left) }
                })
                .collect();
            let masked = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
            out.push(Expr::Payload {
                base: Base::Network,
                offset,
                len: full,
            });
            out.push(Expr::Mask(mask));
            out.push(Expr::Cmp(op, masked));
            Ok(())
        }
        Some(bits) => {
            let n = bits / 8;
            out.push(Expr::Payload {
                base: Base::Network,
                offset,
                len: n,
            });
            out.push(Expr::Cmp(
                op,
                bytes.get(..n as usize).unwrap_or_default().to_vec(),
            ));
            Ok(())
        }
        None => {
            out.push(Expr::Payload {
                base: Base::Network,
                offset,
                len: full,
            });
            out.push(Expr::Cmp(op, bytes));
            Ok(())
        }
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::nft::expr as e;

    fn compile(family: NfFamily, stmts: Vec<Statement<'static>>) -> Res<Vec<Expr>> {
        let mut out = Vec::new();
        let mut deps = Deps::default();
        for s in &stmts {
            statement(&mut out, &mut deps, family, s)?;
        }
        Ok(out)
    }

    /// The expressions `nft --debug=netlink` shows nft 1.0.6 writing for the same rules.
    #[test]
    fn like_nft() {
        // inet: ip daddr 224.0.0.0/4 return
        let got = compile(
            NfFamily::INet,
            vec![
                e::eq(
                    e::payload("ip", "daddr"),
                    e::prefix("224.0.0.0".parse().unwrap(), 4),
                ),
                e::ret(),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Expr::Meta(MetaKey::Nfproto),
                Expr::Cmp(CmpOp::Eq, vec![2]),
                Expr::Payload {
                    base: Base::Network,
                    offset: 16,
                    len: 4
                },
                Expr::Mask(vec![0xf0, 0, 0, 0]),
                Expr::Cmp(CmpOp::Eq, vec![0xe0, 0, 0, 0]),
                Expr::Verdict(Verdict::Return),
            ]
        );
        // inet: ip6 saddr fd00:99::3 ip6 daddr != fd00:99::/64 masquerade
        let got = compile(
            NfFamily::INet,
            vec![
                e::eq(
                    e::payload("ip6", "saddr"),
                    e::addr("fd00:99::3".parse().unwrap()),
                ),
                e::ne(
                    e::payload("ip6", "daddr"),
                    e::prefix("fd00:99::".parse().unwrap(), 64),
                ),
                e::masquerade(),
            ],
        )
        .unwrap();
        // One nfproto check for the rule, as nft writes it.
        assert_eq!(got.len(), 7, "{got:?}");
        assert_eq!(got[1], Expr::Cmp(CmpOp::Eq, vec![10]));
        assert_eq!(
            got[2],
            Expr::Payload {
                base: Base::Network,
                offset: 8,
                len: 16
            }
        );
        assert_eq!(
            got[4],
            Expr::Payload {
                base: Base::Network,
                offset: 24,
                len: 8
            }
        );
        assert_eq!(
            got[5],
            Expr::Cmp(CmpOp::Neq, vec![0xfd, 0, 0, 0x99, 0, 0, 0, 0])
        );
        assert_eq!(got[6], Expr::Masq);
        // ip: ip daddr != 10.96.0.0/12 and ip saddr 0.0.0.0/0
        let got = compile(
            NfFamily::IP,
            vec![
                e::ne(
                    e::payload("ip", "daddr"),
                    e::prefix("10.96.0.0".parse().unwrap(), 12),
                ),
                e::eq(
                    e::payload("ip", "saddr"),
                    e::prefix("0.0.0.0".parse().unwrap(), 0),
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Expr::Payload {
                    base: Base::Network,
                    offset: 16,
                    len: 4
                },
                Expr::Mask(vec![0xff, 0xf0, 0, 0]),
                Expr::Cmp(CmpOp::Neq, vec![10, 0x60, 0, 0]),
                Expr::Payload {
                    base: Base::Network,
                    offset: 12,
                    len: 4
                },
                Expr::Mask(vec![0; 4]),
                Expr::Cmp(CmpOp::Eq, vec![0; 4]),
            ]
        );
        // ip: udp dport 9090 dnat to 10.99.0.3:90
        let got = compile(
            NfFamily::IP,
            vec![
                e::eq(e::payload("udp", "dport"), Expression::Number(9090)),
                e::dnat("10.99.0.3".parse().unwrap(), 90, false),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Expr::Meta(MetaKey::L4proto),
                Expr::Cmp(CmpOp::Eq, vec![17]),
                Expr::Payload {
                    base: Base::Transport,
                    offset: 2,
                    len: 2
                },
                Expr::Cmp(CmpOp::Eq, vec![0x23, 0x82]),
                Expr::Value {
                    dreg: REG_1,
                    data: vec![10, 99, 0, 3]
                },
                Expr::Value {
                    dreg: REG_2,
                    data: vec![0, 90]
                },
                Expr::Dnat {
                    family: NFPROTO_IPV4
                },
            ]
        );
        // ip: fib daddr type local jump hostports_all
        let got = compile(
            NfFamily::IP,
            vec![e::eq(e::fib_daddr_type(), e::string("local")), e::jump("x")],
        )
        .unwrap();
        assert_eq!(got[0], Expr::FibDaddrType);
        assert_eq!(got[1], Expr::Cmp(CmpOp::Eq, 2u32.to_ne_bytes().to_vec()));
        // bridge: iifname "veth1234" jump c; ether saddr 0a:58:0a:00:00:05 return
        let got = compile(
            NfFamily::Bridge,
            vec![
                e::eq(e::meta(NftMeta::Iifname), e::string("veth1234")),
                e::eq(e::payload("ether", "saddr"), e::string("0a:58:0a:00:00:05")),
                e::drop(),
            ],
        )
        .unwrap();
        assert_eq!(
            got[1],
            Expr::Cmp(CmpOp::Eq, b"veth1234\0\0\0\0\0\0\0\0".to_vec())
        );
        assert_eq!(
            got[2],
            Expr::Payload {
                base: Base::Link,
                offset: 6,
                len: 6
            }
        );
        assert_eq!(
            got[3],
            Expr::Cmp(CmpOp::Eq, vec![0x0a, 0x58, 0x0a, 0, 0, 5])
        );
        assert_eq!(got[4], Expr::Verdict(Verdict::Drop));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        // An inet dnat (nft adds a family dependency), a wildcard name, ether in ip.
        assert!(
            compile(
                NfFamily::INet,
                vec![e::dnat("10.0.0.1".parse().unwrap(), 1, true)]
            )
            .is_err()
        );
        assert!(
            compile(
                NfFamily::IP,
                vec![e::eq(e::meta(NftMeta::Iifname), e::string("eth*"))]
            )
            .is_err()
        );
        assert!(
            compile(
                NfFamily::IP,
                vec![e::eq(
                    e::payload("ether", "saddr"),
                    e::string("0a:58:0a:00:00:05")
                )]
            )
            .is_err()
        );
        assert!(
            compile(
                NfFamily::IP,
                vec![e::eq(e::payload("ip6", "saddr"), e::string("fd00::1"))]
            )
            .is_err()
        );
        assert!(
            compile(
                NfFamily::IP,
                vec![Statement::Counter(nftables::stmt::Counter::Anonymous(None))]
            )
            .is_err()
        );
        assert_eq!(
            parse_mac("0a:58:0a:00:00:05"),
            Some([10, 0x58, 10, 0, 0, 5])
        );
        assert_eq!(parse_mac("0a:58:0a:00:00"), None);
    }
}
