//! Mapping of netfilter errors to CNI error codes.

use cni::{Code, Error};
use cni_netfilter::Error as NfError;

/// Unknown backend: 2 (unsupported field); no usable backend: 50; xtables lock timeout:
/// 11 (try again later); invalid input: 7; an expected rule or chain missing (CHECK):
/// 103 ([`cni::error::codes::CHECK_MISMATCH`]); everything else: 999 with the full context.
pub(crate) fn to_cni(e: NfError) -> Error {
    match &e {
        NfError::UnknownBackend(value) => Error::unsupported_field("backend", value),
        NfError::NoBackend { .. } => Error::new(Code::NotAvailable, e.to_string()),
        NfError::Invalid(_) => Error::invalid_config(e.to_string()),
        _ if e.is_lock_timeout() => Error::try_again(e.to_string()),
        _ if e.is_missing() => Error::plugin(cni::error::codes::CHECK_MISMATCH, e.to_string()),
        _ => Error::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(to_cni(NfError::UnknownBackend("x".into())).code, 2);
        assert_eq!(
            to_cni(NfError::NoBackend {
                iptables: "a".into(),
                nftables: "b".into()
            })
            .code,
            50
        );
        let lock = NfError::LockTimeout {
            tool: "iptables-restore".into(),
            op: "x".into(),
            stderr: "held".into(),
        };
        assert_eq!(
            to_cni(NfError::Multiple(vec![NfError::Missing("m".into()), lock])).code,
            11
        );
        assert_eq!(to_cni(NfError::Invalid("bad".into())).code, 7);
        let e = to_cni(NfError::Missing("chain X".into()));
        assert_eq!(e.code, 103);
        assert!(e.msg.contains("chain X"));
        let both = NfError::Multiple(vec![
            NfError::Missing("a".into()),
            NfError::Missing("b".into()),
        ]);
        assert_eq!(to_cni(both).code, 103);
        let mixed = NfError::Multiple(vec![
            NfError::Missing("a".into()),
            NfError::Parse {
                tool: "nft".into(),
                detail: "p".into(),
            },
        ]);
        assert_eq!(to_cni(mixed).code, 999);
    }
}
