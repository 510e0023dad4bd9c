//! nf_tables expression encoders: one [`Expr`] is one `NFTA_LIST_ELEM` of a rule's
//! `NFTA_RULE_EXPRESSIONS`, with the attributes (and their order) nft 1.0 writes.
//! All registers are the 16-byte `NFT_REG_1`/`NFT_REG_2` (and `NFT_REG_VERDICT`), as nft
//! uses them; numbers in attributes are big-endian, as the kernel reads them.

use super::attrs::Attrs;

/// `NFT_REG_VERDICT`.
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`.
pub const REG_1: u32 = 1;
/// `NFT_REG_2`.
pub const REG_2: u32 = 2;

/// `enum nft_payload_bases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `NFT_PAYLOAD_LL_HEADER`.
    Link = 0,
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    Network = 1,
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    Transport = 2,
}

/// `enum nft_meta_keys` (the ones the layouts use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `NFT_META_IIFNAME`.
    Iifname = 6,
    /// `NFT_META_OIFNAME`.
    Oifname = 7,
    /// `NFT_META_NFPROTO`.
    Nfproto = 15,
    /// `NFT_META_L4PROTO`.
    L4proto = 16,
}

/// `enum nft_cmp_ops` (equality only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `NFT_CMP_EQ`.
    Eq = 0,
    /// `NFT_CMP_NEQ`.
    Neq = 1,
}

/// `NFT_JUMP`.
pub(super) const NFT_JUMP: i32 = -3;
/// `NFT_GOTO`.
pub(super) const NFT_GOTO: i32 = -4;

/// Netfilter verdicts as `NFTA_VERDICT_CODE` carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `NF_DROP`.
    Drop,
    /// `NF_ACCEPT`.
    Accept,
    /// `NFT_JUMP` to a chain.
    Jump(String),
    /// `NFT_GOTO` to a chain.
    Goto(String),
    /// `NFT_RETURN`.
    Return,
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Jump(_) => NFT_JUMP,
            Verdict::Goto(_) => NFT_GOTO,
            Verdict::Return => -5,
        }
    }
}

/// `NFTA_FIB_F_DADDR`.
pub const FIB_F_DADDR: u32 = 1 << 1;
/// `NFT_FIB_RESULT_ADDRTYPE`.
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `RTN_LOCAL`, the address type `fib ... type local` compares with.
pub const RTN_LOCAL: u32 = 2;
/// `NFT_NAT_DNAT`.
pub const NAT_DNAT: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load <key> => reg 1`.
    Meta(MetaKey),
    /// `payload load <len>b @ <base> + <offset> => reg 1`.
    Payload {
        /// Header.
        base: Base,
        /// Byte offset in the header.
        offset: u32,
        /// Bytes loaded.
        len: u32,
    },
    /// `bitwise reg 1 = (reg 1 & mask) ^ 0` (the xor is zeros of the mask's length).
    Mask(Vec<u8>),
    /// `cmp <op> reg 1 <data>`.
    Cmp(CmpOp, Vec<u8>),
    /// `immediate reg <dreg> <data>` (a value).
    Value {
        /// Destination register.
        dreg: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `immediate reg 0 <verdict>`.
    Verdict(Verdict),
    /// `fib daddr type => reg 1`.
    FibDaddrType,
    /// `nat dnat <family> addr_min reg 1 proto_min reg 2`.
    Dnat {
        /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
        family: u8,
    },
    /// `masq`.
    Masq,
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

impl Expr {
    /// The expression's name (`NFTA_EXPR_NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Mask(_) => "bitwise",
            Expr::Cmp(..) => "cmp",
            Expr::Value { .. } | Expr::Verdict(_) => "immediate",
            Expr::FibDaddrType => "fib",
            Expr::Dnat { .. } => "nat",
            Expr::Masq => "masq",
        }
    }

    /// Appends this expression as one `NFTA_LIST_ELEM` to `a`.
    pub fn encode(&self, a: &mut Attrs) {
        let elem = a.begin_nested(1); // NFTA_LIST_ELEM
        a.put_str(1, self.name()); // NFTA_EXPR_NAME
        let data = a.begin_nested(2); // NFTA_EXPR_DATA
        match self {
            Expr::Meta(key) => {
                a.put(2, &be(*key as u32)); // NFTA_META_KEY
                a.put(1, &be(REG_1)); // NFTA_META_DREG
            }
            Expr::Payload { base, offset, len } => {
                a.put(1, &be(REG_1)); // NFTA_PAYLOAD_DREG
                a.put(2, &be(*base as u32)); // NFTA_PAYLOAD_BASE
                a.put(3, &be(*offset)); // NFTA_PAYLOAD_OFFSET
                a.put(4, &be(*len)); // NFTA_PAYLOAD_LEN
            }
            Expr::Mask(mask) => {
                a.put(1, &be(REG_1)); // NFTA_BITWISE_SREG
                a.put(2, &be(REG_1)); // NFTA_BITWISE_DREG
                a.put(3, &be(u32::try_from(mask.len()).unwrap_or(0))); // NFTA_BITWISE_LEN
                value(a, 4, mask); // NFTA_BITWISE_MASK
                value(a, 5, &vec![0; mask.len()]); // NFTA_BITWISE_XOR
            }
            Expr::Cmp(op, data) => {
                a.put(1, &be(REG_1)); // NFTA_CMP_SREG
                a.put(2, &be(*op as u32)); // NFTA_CMP_OP
                value(a, 3, data); // NFTA_CMP_DATA
            }
            Expr::Value { dreg, data } => {
                a.put(1, &be(*dreg)); // NFTA_IMMEDIATE_DREG
                value(a, 2, data); // NFTA_IMMEDIATE_DATA
            }
            Expr::Verdict(v) => {
                a.put(1, &be(REG_VERDICT)); // NFTA_IMMEDIATE_DREG
                let d = a.begin_nested(2); // NFTA_IMMEDIATE_DATA
                let verdict = a.begin_nested(2); // NFTA_DATA_VERDICT
                a.put(1, &v.code().to_be_bytes()); // NFTA_VERDICT_CODE
                if let Verdict::Jump(chain) | Verdict::Goto(chain) = v {
                    a.put_str(2, chain); // NFTA_VERDICT_CHAIN
                }
                a.end_nested(verdict);
                a.end_nested(d);
            }
            Expr::FibDaddrType => {
                a.put(1, &be(REG_1)); // NFTA_FIB_DREG
                a.put(2, &be(FIB_RESULT_ADDRTYPE)); // NFTA_FIB_RESULT
                a.put(3, &be(FIB_F_DADDR)); // NFTA_FIB_FLAGS
            }
            Expr::Dnat { family } => {
                a.put(1, &be(NAT_DNAT)); // NFTA_NAT_TYPE
                a.put(2, &be(u32::from(*family))); // NFTA_NAT_FAMILY
                a.put(3, &be(REG_1)); // NFTA_NAT_REG_ADDR_MIN
                a.put(5, &be(REG_2)); // NFTA_NAT_REG_PROTO_MIN
                a.put(7, &be(NAT_RANGE_PROTO_SPECIFIED)); // NFTA_NAT_FLAGS
            }
            Expr::Masq => {}
        }
        a.end_nested(data);
        a.end_nested(elem);
    }
}

/// A nested `NFTA_DATA_VALUE`.
fn value(a: &mut Attrs, kind: u16, data: &[u8]) {
    let n = a.begin_nested(kind);
    a.put(1, data); // NFTA_DATA_VALUE
    a.end_nested(n);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn bytes(e: &Expr) -> Vec<u8> {
        let mut a = Attrs::default();
        e.encode(&mut a);
        a.into_bytes()
    }

    /// `tcp dport 8080`'s cmp and `dnat to 10.99.0.3:80`'s immediate and nat, as
    /// `nft --debug=mnl` shows nft 1.0.6 writing them (native-endian lengths and
    /// types, `NLA_F_NESTED` = 0x8000 on nested attributes).
    #[test]
    fn encodes_like_nft() {
        let cmp = bytes(&Expr::Cmp(CmpOp::Eq, vec![0x1f, 0x90]));
        let mut want = Vec::new();
        let tlv = |w: &mut Vec<u8>, len: u16, kind: u16| {
            w.extend_from_slice(&len.to_ne_bytes());
            w.extend_from_slice(&kind.to_ne_bytes());
        };
        tlv(&mut want, 44, 0x8001);
        tlv(&mut want, 8, 1);
        want.extend_from_slice(b"cmp\0");
        tlv(&mut want, 32, 0x8002);
        tlv(&mut want, 8, 1);
        want.extend_from_slice(&[0, 0, 0, 1]);
        tlv(&mut want, 8, 2);
        want.extend_from_slice(&[0, 0, 0, 0]);
        tlv(&mut want, 12, 0x8003);
        tlv(&mut want, 6, 1);
        want.extend_from_slice(&[0x1f, 0x90, 0, 0]);
        assert_eq!(cmp, want);

        let nat = bytes(&Expr::Dnat {
            family: NFPROTO_IPV4,
        });
        assert_eq!(nat.len(), 56);
        assert_eq!(&nat[8..12], b"nat\0");
        // type dnat, family ipv4, addr_min reg 1, proto_min reg 2, flags proto-specified
        let attrs: Vec<(u16, [u8; 4])> = (0..5)
            .map(|i| {
                let at = 16 + i * 8;
                (
                    u16::from_ne_bytes([nat[at + 2], nat[at + 3]]),
                    nat[at + 4..at + 8].try_into().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            attrs,
            vec![
                (1, [0, 0, 0, 1]),
                (2, [0, 0, 0, 2]),
                (3, [0, 0, 0, 1]),
                (5, [0, 0, 0, 2]),
                (7, [0, 0, 0, 2])
            ]
        );

        let imm = bytes(&Expr::Value {
            dreg: REG_1,
            data: vec![10, 99, 0, 3],
        });
        assert_eq!(imm.len(), 44);
        assert_eq!(&imm[imm.len() - 4..], &[10, 99, 0, 3]);
    }

    #[test]
    fn verdicts_carry_code_and_chain() {
        let jump = bytes(&Expr::Verdict(Verdict::Jump("hostports".into())));
        // ... NFTA_VERDICT_CODE = NFT_JUMP (-3), NFTA_VERDICT_CHAIN "hostports\0"
        let code_at = jump
            .windows(4)
            .position(|w| w == (-3i32).to_be_bytes())
            .unwrap();
        assert!(jump[code_at..].windows(10).any(|w| w == b"hostports\0"));
        let ret = bytes(&Expr::Verdict(Verdict::Return));
        assert!(ret.ends_with(&(-5i32).to_be_bytes()));
        let drop = bytes(&Expr::Verdict(Verdict::Drop));
        assert!(drop.ends_with(&0i32.to_be_bytes()));
        assert_eq!(bytes(&Expr::Masq).len(), 4 + 12 + 4);
    }
}
