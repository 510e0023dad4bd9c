//! The configured backend's name: iptables or nftables. The object that programs the
//! rules with it, and the automatic choice when none is configured, are in
//! [`crate::firewall`].

use std::fmt;

use crate::error::{Error, Result};

/// Which netfilter front end programs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `iptables`/`ip6tables` (either the nf_tables or the legacy variant).
    Iptables,
    /// `nft` with JSON input.
    Nftables,
}

impl Backend {
    /// Every backend, in the order auto-selection tries them and DEL/GC clean them up.
    pub const ALL: [Backend; 2] = [Backend::Iptables, Backend::Nftables];

    /// The name as configured (`iptables`, `nftables`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }

    /// Parses a configured backend name without probing the host.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] for anything but `iptables` / `nftables`.
    pub fn parse(name: &str) -> Result<Backend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| Error::UnknownBackend(name.to_owned()))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(Backend::parse(&b.to_string()).unwrap(), b);
        }
        assert_eq!(Backend::Nftables.to_string(), "nftables");
        match Backend::parse("ebtables") {
            Err(Error::UnknownBackend(v)) => assert_eq!(v, "ebtables"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
