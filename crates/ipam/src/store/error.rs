//! Errors of the reservation stores.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A store failure, naming the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The network name would not stay a single directory under `dataDir`.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidNetworkName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file-system operation failed.
    #[error("failed to {op} {}: {source}", .path.display())]
    Io {
        /// What was being done ("create", "read", "link", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The network's state path exists but is not a directory.
    #[error("{} is not a directory", .path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file or directory of the store (the network directory, `lock`, a
    /// cursor, a reservation, the index) is a symbolic link: host-local never
    /// follows one there, so that its state cannot be redirected out of
    /// `dataDir`.
    #[error(
        "{} is a symbolic link (symlink); host-local does not follow symlinks in its state directory",
        .path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Another process held the network's lock for the whole bounded wait.
    #[error(
        "timed out after {} ms waiting for the lock on {}; another host-local operation holds it, try again",
        .waited.as_millis(),
        .path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (the lock wait timed out); the
    /// plugin maps this to CNI error code 11 (try again later).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::LockTimeout { .. })
    }

    /// An I/O error; `ELOOP` (what an `O_NOFOLLOW` open of a symlink gives)
    /// becomes [`StoreError::Symlink`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ELOOP) {
            return Self::Symlink { path: path.into() };
        }
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
