//! Mapping library errors to CNI errors, with context.
//!
//! Kernel and tool failures are code 999 (as in the reference); timeouts (netlink reply,
//! xtables lock) are code 11 so the runtime retries; an unknown netfilter backend is code
//! 2 naming `ipMasqBackend`; rules CHECK finds missing are code 103.

use cni::{Code, Error};

/// Adds context to a library error and converts it into a [`cni::Error`].
pub trait Context<T> {
    /// Converts the error, prefixing `what`.
    ///
    /// # Errors
    /// The converted error.
    fn ctx(self, what: impl std::fmt::Display) -> cni::Result<T>;
}

impl<T> Context<T> for Result<T, cni_netlink::Error> {
    fn ctx(self, what: impl std::fmt::Display) -> cni::Result<T> {
        self.map_err(|e| {
            let code = match e {
                cni_netlink::Error::Timeout { .. } => Code::TryAgainLater,
                _ => Code::Internal,
            };
            Error::new(code, format!("{what}: {e}"))
        })
    }
}

impl<T> Context<T> for Result<T, cni_netns::Error> {
    fn ctx(self, what: impl std::fmt::Display) -> cni::Result<T> {
        self.map_err(|e| Error::new(Code::Internal, format!("{what}: {e}")))
    }
}

impl<T> Context<T> for Result<T, cni_netfilter::Error> {
    fn ctx(self, what: impl std::fmt::Display) -> cni::Result<T> {
        self.map_err(|e| netfilter_error(&e, what))
    }
}

/// Converts a netfilter error.
pub fn netfilter_error(e: &cni_netfilter::Error, what: impl std::fmt::Display) -> Error {
    match e {
        cni_netfilter::Error::UnknownBackend(v) => Error::unsupported_field("ipMasqBackend", v),
        e if e.is_lock_timeout() => Error::try_again(format!("{what}: {e}")),
        e if e.is_missing() => {
            Error::plugin(cni::error::codes::CHECK_MISMATCH, format!("{what}: {e}"))
        }
        e => Error::new(Code::Internal, format!("{what}: {e}")),
    }
}

/// Several errors from a best-effort operation (DEL, GC) as one CNI error.
///
/// # Errors
/// The first error's code with all messages joined, when there is any.
pub fn collect(errors: Vec<Error>) -> cni::Result<()> {
    let mut it = errors.into_iter();
    let Some(first) = it.next() else {
        return Ok(());
    };
    let rest: Vec<String> = it.map(|e| e.msg).collect();
    if rest.is_empty() {
        return Err(first);
    }
    let code = first.code;
    let mut e = first;
    e.msg = format!("{}; {}", e.msg, rest.join("; "));
    e.code = code;
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_backend_is_code_2_naming_key_and_value() {
        let r: Result<(), _> = Err(cni_netfilter::Error::UnknownBackend("ebpf".into()));
        let e = r.ctx("select backend").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("ipMasqBackend") && e.msg.contains("ebpf"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn netlink_timeout_is_try_again() {
        let r: Result<(), _> = Err(cni_netlink::Error::Timeout {
            op: "get link".into(),
            secs: 10,
        });
        assert_eq!(r.ctx("x").unwrap_err().code, 11);
    }

    #[test]
    fn collect_joins_messages() {
        assert!(collect(vec![]).is_ok());
        let e = collect(vec![Error::internal("a"), Error::invalid_config("b")]).unwrap_err();
        assert_eq!(e.code, 999);
        assert_eq!(e.msg, "a; b");
    }
}
