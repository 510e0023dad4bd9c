//! Backend selection: iptables (`iptables-restore`/`iptables-save`) or nftables (`nft -j`).

use std::fmt;

use crate::error::{Error, Result};
use crate::{iptables, nft};

/// Which netfilter front end programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `iptables`/`ip6tables` (either the nf_tables or the legacy variant).
    Iptables,
    /// `nft` with JSON input.
    Nftables,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        })
    }
}

impl Backend {
    /// Parses a configured backend name without probing the host.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] for anything but `iptables` / `nftables`.
    pub fn parse(name: &str) -> Result<Backend> {
        match name {
            "iptables" => Ok(Backend::Iptables),
            "nftables" => Ok(Backend::Nftables),
            other => Err(Error::UnknownBackend(other.to_owned())),
        }
    }

    /// Chooses the backend: the requested one (not probed: a broken tool fails later with
    /// its own error), or, when `None`, iptables if usable, else nftables if usable.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] for an unknown name, [`Error::NoBackend`] when auto
    /// detection finds neither tool usable.
    pub fn select(requested: Option<&str>) -> Result<Backend> {
        if let Some(name) = requested {
            return Backend::parse(name);
        }
        let ipt = match iptables::usable() {
            Ok(()) => return Ok(Backend::Iptables),
            Err(e) => e.to_string(),
        };
        match nft::usable() {
            Ok(()) => Ok(Backend::Nftables),
            Err(e) => Err(Error::NoBackend {
                iptables: ipt,
                nftables: e.to_string(),
            }),
        }
    }

    /// Probes this backend: the binary exists and a trivial read works.
    ///
    /// # Errors
    /// The probe's failure.
    pub fn probe(self) -> Result<()> {
        match self {
            Backend::Iptables => iptables::usable(),
            Backend::Nftables => nft::usable(),
        }
    }

    /// All backends that pass [`Backend::probe`] (for teardown, which tries each).
    pub fn usable_all() -> Vec<Backend> {
        [Backend::Iptables, Backend::Nftables]
            .into_iter()
            .filter(|b| b.probe().is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_names() {
        assert_eq!(
            Backend::select(Some("iptables")).unwrap(),
            Backend::Iptables
        );
        assert_eq!(
            Backend::select(Some("nftables")).unwrap(),
            Backend::Nftables
        );
        match Backend::select(Some("ebtables")) {
            Err(Error::UnknownBackend(v)) => assert_eq!(v, "ebtables"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(Backend::Nftables.to_string(), "nftables");
    }
}
