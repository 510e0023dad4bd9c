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

    /// Chooses the backend: the requested one (not checked: a missing or broken tool
    /// fails later with its own error), or, when `None`, iptables if installed, else
    /// nftables if installed (the reference's rule, with "usable" answered by
    /// [`Backend::installed`]: a few `stat` calls instead of a process; a kernel that
    /// rejects the backend makes the real operation fail with the tool's error).
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] for an unknown name, [`Error::NoBackend`] when auto
    /// detection finds neither tool set installed.
    pub fn select(requested: Option<&str>) -> Result<Backend> {
        Backend::select_with(requested, Backend::installed)
    }

    /// Like [`Backend::select`], but auto-detection runs the real [`Backend::probe`] (a
    /// process per backend tried). For STATUS, which must be accurate and is rare.
    ///
    /// # Errors
    /// As [`Backend::select`].
    pub fn select_probed(requested: Option<&str>) -> Result<Backend> {
        Backend::select_with(requested, Backend::probe)
    }

    fn select_with(
        requested: Option<&str>,
        usable: impl Fn(Backend) -> Result<()>,
    ) -> Result<Backend> {
        if let Some(name) = requested {
            return Backend::parse(name);
        }
        let ipt = match usable(Backend::Iptables) {
            Ok(()) => return Ok(Backend::Iptables),
            Err(e) => e.to_string(),
        };
        match usable(Backend::Nftables) {
            Ok(()) => Ok(Backend::Nftables),
            Err(e) => Err(Error::NoBackend {
                iptables: ipt,
                nftables: e.to_string(),
            }),
        }
    }

    /// The tools an ADD/DEL with this backend runs (IPv4 ones for iptables; IPv6 tools
    /// are looked up per operation).
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Backend::Iptables => &["iptables-save", "iptables-restore"],
            Backend::Nftables => &[nft::NFT],
        }
    }

    /// Cheap usability check: every tool of [`Backend::tools`] is an executable file on
    /// `PATH` (a `stat` per tool, no process, no kernel access).
    ///
    /// # Errors
    /// [`Error::Spawn`] (kind `NotFound`) naming the first missing tool.
    pub fn installed(self) -> Result<()> {
        for tool in self.tools() {
            crate::exec::require_tool(tool, &format!("checking that backend {self} is installed"))?;
        }
        Ok(())
    }

    /// Probes this backend for real: the binary runs and a trivial read works (one
    /// process). Meant for STATUS.
    ///
    /// # Errors
    /// The probe's failure.
    pub fn probe(self) -> Result<()> {
        match self {
            Backend::Iptables => iptables::usable(),
            Backend::Nftables => nft::usable(),
        }
    }

    /// All backends that pass [`Backend::probe`].
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

    #[test]
    fn auto_selection_prefers_iptables_then_nftables() {
        let only = |ok: Backend| {
            move |b: Backend| {
                if b == ok {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!("{b} absent")))
                }
            }
        };
        assert_eq!(
            Backend::select_with(None, |_| Ok(())).unwrap(),
            Backend::Iptables
        );
        assert_eq!(
            Backend::select_with(None, only(Backend::Nftables)).unwrap(),
            Backend::Nftables
        );
        assert_eq!(
            Backend::select_with(None, only(Backend::Iptables)).unwrap(),
            Backend::Iptables
        );
        match Backend::select_with(None, |b| Err(Error::Invalid(format!("{b} absent")))) {
            Err(Error::NoBackend { iptables, nftables }) => {
                assert!(
                    iptables.contains("iptables absent") && nftables.contains("nftables absent")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // A named backend is never checked here.
        assert_eq!(
            Backend::select_with(Some("nftables"), |_| Err(Error::Invalid("x".into()))).unwrap(),
            Backend::Nftables
        );
    }
}
