//! Error type of the crate.

use std::io;

use nix::errno::Errno;

/// Errors of netlink requests. `op` always names the operation and its object, e.g.
/// `add veth "veth1a2b3c4d" (peer "eth0")`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel rejected the request.
    #[error("{op}: {errno}")]
    Kernel {
        /// Operation and object.
        op: String,
        /// Error number from the kernel's NLMSG_ERROR.
        errno: Errno,
    },
    /// A socket-level failure (send, receive, option setting).
    #[error("{op}: {source}")]
    Io {
        /// Operation and object.
        op: String,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// No reply arrived within the receive timeout.
    #[error("{op}: no reply from the kernel within {secs} s")]
    Timeout {
        /// Operation and object.
        op: String,
        /// Timeout in seconds.
        secs: u64,
    },
    /// A reply could not be decoded.
    #[error("{op}: cannot decode netlink reply: {reason}")]
    Decode {
        /// Operation and object.
        op: String,
        /// Decoder message.
        reason: String,
    },
    /// The kernel kept interrupting a dump (`NLM_F_DUMP_INTR`) after all retries.
    #[error("{op}: dump interrupted {attempts} times by concurrent changes")]
    DumpInterrupted {
        /// Operation and object.
        op: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A reply had an unexpected shape.
    #[error("{op}: unexpected reply: {what}")]
    Unexpected {
        /// Operation and object.
        op: String,
        /// What was wrong.
        what: String,
    },
    /// The caller passed an invalid argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The namespace could not be entered to open the socket.
    #[error(transparent)]
    Netns(#[from] cni_netns::Error),
}

impl Error {
    /// The kernel errno, when the kernel rejected the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True for "does not exist" errors (`ENODEV`, `ENOENT`, `ESRCH`, `EADDRNOTAVAIL`),
    /// which make deletions idempotent.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
        )
    }

    /// True for `EEXIST`.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }

    /// True for `EOPNOTSUPP` (e.g. VLAN filtering not compiled into the kernel).
    pub fn is_not_supported(&self) -> bool {
        self.errno() == Some(Errno::EOPNOTSUPP)
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classification() {
        let k = |errno| Error::Kernel {
            op: "x".into(),
            errno,
        };
        assert!(k(Errno::ENODEV).is_not_found());
        assert!(k(Errno::ESRCH).is_not_found());
        assert!(!k(Errno::EEXIST).is_not_found());
        assert!(k(Errno::EEXIST).is_exists());
        assert!(k(Errno::EOPNOTSUPP).is_not_supported());
        let e = Error::Timeout {
            op: "get link \"x\"".into(),
            secs: 3,
        };
        assert!(!e.is_not_found() && !e.is_exists());
        assert_eq!(k(Errno::EEXIST).to_string(), "x: EEXIST: File exists");
    }
}
