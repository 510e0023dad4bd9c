//! How engine errors become CNI errors, and host-local's own codes.
//!
//! | code | when |
//! |---|---|
//! | 4 | invalid `CNI_ARGS` (malformed, unknown key without `IgnoreUnknown`, bad `IP=`) |
//! | 5 | the state directory or a file in it cannot be read or written; `resolvConf` unreadable |
//! | 7 | invalid configuration (reference messages), a requested address outside every range set, equal to its range's gateway, or left unused, an invalid network name |
//! | 11 | the network's `lock` stayed held by another process for the whole bounded wait (default 10 s, `CNI_IPAM_LOCK_TIMEOUT_MS`) |
//! | 50 | STATUS: some range set has no free address, or the store is unusable |
//! | [`CODE_EXHAUSTED`] 100 | ADD: a range set has no free address left (`no IP addresses available in range set: A-B`) |
//! | [`CODE_ADDRESS_TAKEN`] 101 | ADD: a requested address is reserved by someone else |
//! | [`CODE_DUPLICATE`] 102 | ADD: the attachment already holds an address in that range set |
//! | [`CODE_CHECK_FAILED`] 103 | CHECK: no reservation for the attachment, or it disagrees with `prevResult` |
//!
//! Exhaustion gets its own code (100) rather than 11 because it is not
//! transient in the spec's sense: it lasts until some container is deleted,
//! and a runtime that retried on 11 would spin; nor 50, which the spec
//! reserves for STATUS. The reference returns 999 for all of these.

use crate::{AddError, AllocError, CheckError, GcError, StatusError, StoreError};
use cni::{Code, Error};

/// ADD: a range set is exhausted.
pub const CODE_EXHAUSTED: u32 = 100;
/// ADD: a requested address is already reserved by another attachment.
pub const CODE_ADDRESS_TAKEN: u32 = 101;
/// ADD: the attachment already has an address in the range set.
pub const CODE_DUPLICATE: u32 = 102;
/// CHECK: the attachment's reservations are missing or differ from `prevResult`.
pub const CODE_CHECK_FAILED: u32 = 103;

/// A store error: 11 for a lock timeout, 7 for a bad network name, else 5.
pub fn from_store(e: &StoreError) -> Error {
    let code = match e {
        StoreError::LockTimeout { .. } => Code::TryAgainLater,
        StoreError::InvalidNetworkName { .. } => Code::InvalidConfig,
        StoreError::Io { .. } | StoreError::NotADirectory { .. } | StoreError::Symlink { .. } => {
            Code::Io
        }
    };
    Error::new(code, e.to_string())
}

/// An ADD allocation error, with the reference's message.
pub fn from_add(e: &AddError) -> Error {
    let msg = e.to_string();
    match e {
        AddError::UnusedRequested { .. } => Error::invalid_config(msg),
        AddError::Range { cause, .. } => match cause {
            AllocError::Exhausted { .. } => Error::plugin(CODE_EXHAUSTED, msg),
            AllocError::Unavailable { .. } => Error::plugin(CODE_ADDRESS_TAKEN, msg),
            AllocError::Duplicate { .. } => Error::plugin(CODE_DUPLICATE, msg),
            AllocError::NotInSet(_) | AllocError::RequestedGateway { .. } => {
                Error::invalid_config(msg)
            }
            AllocError::Store(s) => Error {
                msg,
                ..from_store(s)
            },
        },
    }
}

/// A CHECK error.
pub fn from_check(e: &CheckError) -> Error {
    match e {
        CheckError::Store(s) => from_store(s),
        other => Error::plugin(CODE_CHECK_FAILED, other.to_string()),
    }
}

/// A GC error: the store's code when listing failed, else 5 naming every
/// reservation that could not be removed.
pub fn from_gc(e: &GcError) -> Error {
    match e {
        GcError::List(s) => from_store(s).context("GC"),
        GcError::Partial { .. } if e.is_try_again() => Error::try_again(e.to_string()),
        GcError::Partial { .. } => Error::new(Code::Io, e.to_string()),
    }
}

/// A STATUS error: 50 when not available, else the store's code.
pub fn from_status(e: &StatusError) -> Error {
    match e {
        StatusError::Store(s) => from_store(s),
        other => Error::new(Code::NotAvailable, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn lock_timeout_is_try_again_everywhere() {
        let lock = || StoreError::LockTimeout {
            path: PathBuf::from("/x/net/lock"),
            waited: Duration::from_secs(10),
        };
        assert_eq!(from_store(&lock()).code, 11);
        let add = AddError::Range {
            index: 1,
            cause: AllocError::Store(lock()),
        };
        let e = from_add(&add);
        assert_eq!(e.code, 11);
        assert!(
            e.msg
                .starts_with("failed to allocate for range 1: timed out"),
            "{}",
            e.msg
        );
        assert_eq!(from_status(&StatusError::Store(lock())).code, 11);
        assert_eq!(from_check(&CheckError::Store(lock())).code, 11);
        assert_eq!(from_gc(&GcError::List(lock())).code, 11);
    }

    #[test]
    fn allocation_codes() {
        let range = |cause| from_add(&AddError::Range { index: 0, cause }).code;
        assert_eq!(
            range(AllocError::Exhausted { set: "a-b".into() }),
            CODE_EXHAUSTED
        );
        assert_eq!(
            range(AllocError::Unavailable {
                ip: "10.0.0.2".parse().expect("ip"),
                set: "a-b".into()
            }),
            CODE_ADDRESS_TAKEN
        );
        assert_eq!(
            range(AllocError::Duplicate {
                ip: "10.0.0.2".parse().expect("ip"),
                container_id: "c".into()
            }),
            CODE_DUPLICATE
        );
        assert_eq!(
            range(AllocError::RequestedGateway {
                ip: "10.0.0.1".parse().expect("ip")
            }),
            7
        );
        assert_eq!(
            from_add(&AddError::UnusedRequested {
                unused: vec!["10.0.0.9".parse().expect("ip")]
            })
            .code,
            7
        );
    }

    #[test]
    fn status_codes() {
        let e = from_status(&StatusError::Exhausted {
            index: 0,
            set: "a-b".into(),
        });
        assert_eq!(e.code, 50);
        let e = from_status(&StatusError::Unusable(StoreError::NotADirectory {
            path: PathBuf::from("/x"),
        }));
        assert_eq!(e.code, 50);
    }
}
