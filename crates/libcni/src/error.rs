//! [`Error`], the errors of the runtime library (a leaf module: the cache,
//! the configuration loader and the runtime all use it).

use std::path::PathBuf;

/// Errors of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin (or the runtime on its behalf) failed: `context` says which
    /// plugin and operation, `source` is the CNI error (the plugin's own,
    /// unchanged, when it printed one).
    #[error("{context}: {source}")]
    Cni {
        /// For example `plugin type="bridge" name="mynet" failed (add)`.
        context: String,
        /// The CNI error.
        source: cni::Error,
    },
    /// An invalid network configuration, or an operation the configuration
    /// does not allow.
    #[error("{0}")]
    Config(String),
    /// No configuration file has the requested network name.
    #[error("no net configuration with name {name:?} in {}", dir.display())]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The name looked for.
        name: String,
    },
    /// The directory has no configuration files at all.
    #[error("no net configurations found in {}", .0.display())]
    NoConfigs(PathBuf),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A result cache entry is unusable.
    #[error("{0}")]
    Cache(String),
    /// Several independent failures (GC continues past errors).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<Error>),
}

impl Error {
    /// The CNI error behind this error, if a plugin reported one (for
    /// [`Error::Multiple`], the first one).
    pub fn cni_error(&self) -> Option<&cni::Error> {
        match self {
            Self::Cni { source, .. } => Some(source),
            Self::Multiple(all) => all.iter().find_map(Self::cni_error),
            _ => None,
        }
    }
}

impl From<cni::Error> for Error {
    fn from(source: cni::Error) -> Self {
        Self::Cni {
            context: "CNI".into(),
            source,
        }
    }
}
