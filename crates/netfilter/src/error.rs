//! The crate's error type.

use std::io;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or programming netfilter state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A backend name that is neither `iptables` nor `nftables`.
    #[error("unrecognized backend \"{0}\" (expected \"iptables\" or \"nftables\")")]
    UnknownBackend(String),
    /// Neither backend can be used on this host.
    #[error("no usable netfilter backend: iptables: {iptables}; nftables: {nftables}")]
    NoBackend {
        /// Why iptables is unusable.
        iptables: String,
        /// Why nftables is unusable.
        nftables: String,
    },
    /// The xtables lock could not be taken within the bounded wait.
    #[error("{tool}: timed out waiting for the xtables lock while {op}: {stderr}")]
    LockTimeout {
        /// The tool that gave up (e.g. `iptables-restore`).
        tool: String,
        /// What was being done.
        op: String,
        /// The tool's stderr.
        stderr: String,
    },
    /// A tool could not be started or talked to.
    #[error("cannot run {tool} while {op}: {source}")]
    Spawn {
        /// The tool.
        tool: String,
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A tool ran and failed.
    #[error("{tool} failed while {op} (exit {status}): {stderr}")]
    Tool {
        /// The tool.
        tool: String,
        /// What was being done (names the table/chain/container).
        op: String,
        /// Exit status as printed by the OS.
        status: String,
        /// The tool's stderr, trimmed.
        stderr: String,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse output of {tool}: {detail}")]
    Parse {
        /// The tool.
        tool: String,
        /// What was wrong.
        detail: String,
    },
    /// CHECK found an expected rule or chain missing.
    #[error("{0}")]
    Missing(String),
    /// Input that cannot be turned into rules (e.g. a port of 0).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A conntrack request over `NETLINK_NETFILTER` failed (kernel errno, timeout,
    /// undecodable reply).
    #[error("conntrack: {op}: {source}")]
    Conntrack {
        /// What was being done (family, port or flow).
        op: String,
        /// The socket error, the kernel's errno, or what was wrong with the reply.
        #[source]
        source: io::Error,
    },
    /// A native nf_tables request over `NETLINK_NETFILTER` failed (not "no such table").
    #[error("nf_tables: {op}: {source}")]
    Netlink {
        /// What was being done (names the table).
        op: String,
        /// The socket error, the kernel's errno, or what was wrong with the reply.
        #[source]
        source: io::Error,
    },
    /// The per-network-namespace lock ([`crate::netns_lock`]) stayed held by another
    /// process past the bounded wait.
    #[error(
        "timed out after {waited:?} waiting for the network namespace lock of {netns} while {op} (another plugin process holds it)"
    )]
    NetnsLockTimeout {
        /// The namespace (`net:[inode] (dev N)`).
        netns: String,
        /// What was being done.
        op: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The per-network-namespace lock could not be opened or taken (not contention).
    #[error("network namespace lock: {op}: {source}")]
    NetnsLock {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Several independent failures (teardown keeps going after an error).
    #[error("{}", join(.0))]
    Multiple(Vec<Error>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// True when the failure (or one of several) was the bounded xtables lock wait or
    /// network-namespace lock wait ([`crate::netns_lock`]) running out; plugins map
    /// this to CNI code 11 ("try again later").
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            Error::LockTimeout { .. } | Error::NetnsLockTimeout { .. } => true,
            Error::Multiple(all) => all.iter().any(Error::is_lock_timeout),
            _ => false,
        }
    }

    /// True when CHECK found something missing (as opposed to a tool failure);
    /// for [`Error::Multiple`], when every error in it is.
    pub fn is_missing(&self) -> bool {
        match self {
            Error::Missing(_) => true,
            Error::Multiple(all) => !all.is_empty() && all.iter().all(Error::is_missing),
            _ => false,
        }
    }

    /// Folds a list of errors into `Ok(())`, the single error, or [`Error::Multiple`].
    pub fn collect(mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }
}
