//! Error type of the crate.

use std::io;
use std::path::PathBuf;

/// Errors from opening, comparing and entering network namespaces and from sysctl access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace path could not be opened or inspected.
    #[error("failed to open netns {path:?}: {source}")]
    Open {
        /// Path that was opened.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a network namespace file.
    #[error("{path:?} is not a network namespace (filesystem type {fs_type:#x})")]
    NotNetns {
        /// Path that was checked.
        path: PathBuf,
        /// The `statfs` magic number found.
        fs_type: i64,
    },
    /// `setns(2)` into the namespace failed.
    #[error("failed to enter netns {path:?}: {errno}")]
    Enter {
        /// Namespace path.
        path: PathBuf,
        /// Error number returned by the kernel.
        errno: nix::errno::Errno,
    },
    /// A thread running a closure in a namespace could not be started or panicked.
    #[error("thread for netns {path:?} failed: {reason}")]
    Thread {
        /// Namespace path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A sysctl key was malformed.
    #[error("invalid sysctl key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Reading or writing a sysctl failed.
    #[error("sysctl {key}: {op} failed: {source}")]
    Sysctl {
        /// The key in dotted form.
        key: String,
        /// `read` or `write`.
        op: &'static str,
        /// Underlying I/O error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True when the error means the namespace path (or sysctl key) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Open { source, .. } | Error::Sysctl { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
