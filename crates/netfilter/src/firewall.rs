//! The backend seam (as containers/netavark's `FirewallDriver`): one [`Firewall`] object
//! per netfilter backend, [`Iptables`] and [`Nftables`], chosen once from the
//! configuration ([`select`], or [`of`] for a backend already settled). The plugins call
//! its methods for ADD and CHECK; DEL and GC run on every backend ([`on_every`]), so rules
//! a previous backend left go too ([`crate::masq::teardown_known`],
//! [`crate::portmap::del_known`] and both `gc`).
//!
//! The operations are grouped by feature, each implemented next to its rule layouts:
//! [`Masquerade`] (bridge `ipMasq`: `masq/{ipt,nft}.rs`) and [`PortMapper`] (portmap:
//! `portmap/{ipt,nft}.rs`); [`Firewall`] adds what selection needs. The bridge's MAC
//! spoof check is not part of it: it is nftables whatever the backend, as in the
//! reference ([`crate::spoofchk`]).

use std::fmt;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::masq::MasqOwner;
use crate::portmap::{Owner, Request};
use crate::{exec, iptables, nft};

/// bridge `ipMasq` with one backend's layout.
pub trait Masquerade {
    /// Installs (or replaces) the masquerade rules for `ips` (container addresses with
    /// prefix). iptables: one `iptables-restore` per family that reads nothing for a new
    /// container, else one `iptables-save` + one restore; nftables: one native read +
    /// one transaction.
    ///
    /// # Errors
    /// Tool failures (with context), [`Error::LockTimeout`].
    fn setup_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()>;

    /// Removes this backend's masquerade rules of the attachment. Without addresses the
    /// rules are found by the owner alone; with the addresses [`Masquerade::setup_masq`]
    /// was given, iptables first tries one restore per family that reads nothing (see
    /// [`crate::masq::teardown_known`]). Idempotent; a table without rules costs no
    /// process.
    ///
    /// # Errors
    /// Tool failures with context.
    fn teardown_masq(&self, owner: &MasqOwner<'_>, ips: Option<&[IpNetwork]>) -> Result<()>;

    /// Verifies that every rule [`Masquerade::setup_masq`] would install is present.
    ///
    /// # Errors
    /// [`Error::Missing`] naming the missing chain/rule, or a tool failure.
    fn check_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()>;

    /// Removes this backend's masquerade rules of `network` whose attachment is not in
    /// `valid` (`(container_id, ifname)` pairs).
    ///
    /// # Errors
    /// Tool failures with context.
    fn gc_masq(&self, network: &str, valid: &[(String, String)]) -> Result<()>;
}

/// Port mappings (the portmap plugin) with one backend's layout.
pub trait PortMapper {
    /// Installs the mappings of `request`, replacing whatever this container had before,
    /// and makes sure of the localnet guard ([`crate::localnet`]) when
    /// [`Request::needs_localnet_guard`]. One read and one atomic write per family
    /// (iptables) or one transaction (nftables).
    ///
    /// # Errors
    /// Tool failures with context; [`Error::LockTimeout`].
    fn add_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()>;

    /// Removes this backend's rules of the container. `added`: what this backend's ADD
    /// was given, when known (iptables then first tries one restore per family that
    /// reads nothing, see [`crate::portmap::del_known`]). Idempotent.
    ///
    /// # Errors
    /// Tool failures with context.
    fn del_port_mappings(&self, owner: &Owner<'_>, added: Option<&Request<'_>>) -> Result<()>;

    /// Verifies, per family of the request's addresses, that every rule
    /// [`PortMapper::add_port_mappings`] installs is present.
    ///
    /// # Errors
    /// [`Error::Missing`] naming the family and the missing rule, or a tool failure.
    fn check_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()>;

    /// Removes this backend's rules of containers of `network` whose ID is not in
    /// `valid` (nftables rules carry only the container ID, so there any network's).
    ///
    /// # Errors
    /// Tool failures with context.
    fn gc_port_mappings(&self, network: &str, valid: &[&str]) -> Result<()>;
}

/// One netfilter backend: every feature's operations, plus what selecting it needs.
pub trait Firewall: Masquerade + PortMapper + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// The tools an ADD/DEL with this backend runs (IPv4 ones for iptables; IPv6 tools
    /// are looked up per operation).
    fn tools(&self) -> &'static [&'static str];

    /// Probes this backend for real: the binary runs and a trivial read works (one
    /// process). Meant for STATUS.
    ///
    /// # Errors
    /// The probe's failure.
    fn probe(&self) -> Result<()>;

    /// Cheap usability check: every tool of [`Firewall::tools`] is an executable file on
    /// `PATH` (a `stat` per tool, no process, no kernel access).
    ///
    /// # Errors
    /// [`Error::Spawn`] (kind `NotFound`) naming the first missing tool.
    fn installed(&self) -> Result<()> {
        let op = format!("checking that backend {} is installed", self.backend());
        self.tools()
            .iter()
            .try_for_each(|tool| exec::require_tool(tool, &op))
    }
}

impl fmt::Debug for dyn Firewall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Firewall").field(&self.backend()).finish()
    }
}

/// The iptables backend: `iptables-restore` batches, `iptables-save` reads (native
/// nfnetlink reads where the nf_tables variant allows).
#[derive(Debug, Clone, Copy, Default)]
pub struct Iptables;

/// The nftables backend: nf_tables transactions (native, or `nft -j`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nftables;

impl Firewall for Iptables {
    fn backend(&self) -> Backend {
        Backend::Iptables
    }

    fn tools(&self) -> &'static [&'static str] {
        &["iptables-save", "iptables-restore"]
    }

    fn probe(&self) -> Result<()> {
        iptables::usable()
    }
}

impl Firewall for Nftables {
    fn backend(&self) -> Backend {
        Backend::Nftables
    }

    fn tools(&self) -> &'static [&'static str] {
        &[nft::NFT]
    }

    fn probe(&self) -> Result<()> {
        nft::usable()
    }
}

/// The object for `backend`: the one place a [`Backend`] turns into its implementation.
pub fn of(backend: Backend) -> &'static dyn Firewall {
    match backend {
        Backend::Iptables => &Iptables,
        Backend::Nftables => &Nftables,
    }
}

/// Runs `op` on every backend ([`Backend::ALL`] order), also after a failure, and
/// reports every failure: DEL and GC, which clean up whatever backend left rules.
///
/// # Errors
/// The collected failures of `op`.
pub fn on_every(mut op: impl FnMut(&dyn Firewall) -> Result<()>) -> Result<()> {
    Error::collect(
        Backend::ALL
            .into_iter()
            .filter_map(|b| op(of(b)).err())
            .collect(),
    )
}

/// Chooses the backend: the requested one (not checked: a missing or broken tool fails
/// later with its own error), or, when `None`, iptables if installed, else nftables if
/// installed (the reference's rule, with "usable" answered by [`Firewall::installed`]: a
/// few `stat` calls instead of a process; a kernel that rejects the backend makes the
/// real operation fail with the tool's error).
///
/// # Errors
/// [`Error::UnknownBackend`] for an unknown name, [`Error::NoBackend`] when auto
/// detection finds neither tool set installed.
pub fn select(requested: Option<&str>) -> Result<&'static dyn Firewall> {
    select_with(requested, |fw| fw.installed())
}

/// Like [`select`], but auto-detection runs the real [`Firewall::probe`] (a process per
/// backend tried). For STATUS, which must be accurate and is rare.
///
/// # Errors
/// As [`select`].
pub fn select_probed(requested: Option<&str>) -> Result<&'static dyn Firewall> {
    select_with(requested, |fw| fw.probe())
}

fn select_with(
    requested: Option<&str>,
    usable: impl Fn(&dyn Firewall) -> Result<()>,
) -> Result<&'static dyn Firewall> {
    if let Some(name) = requested {
        return Backend::parse(name).map(of);
    }
    let ipt = match usable(&Iptables) {
        Ok(()) => return Ok(&Iptables),
        Err(e) => e.to_string(),
    };
    match usable(&Nftables) {
        Ok(()) => Ok(&Nftables),
        Err(e) => Err(Error::NoBackend {
            iptables: ipt,
            nftables: e.to_string(),
        }),
    }
}

/// All backends that pass [`Firewall::probe`].
pub fn usable_all() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|&b| of(b).probe().is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(r: Result<&'static dyn Firewall>) -> Backend {
        r.unwrap().backend()
    }

    #[test]
    fn explicit_names() {
        for b in Backend::ALL {
            assert_eq!(of(b).backend(), b);
            assert_eq!(backend(select(Some(b.name()))), b);
        }
        match select(Some("ebtables")) {
            Err(Error::UnknownBackend(v)) => assert_eq!(v, "ebtables"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn auto_selection_prefers_iptables_then_nftables() {
        let only = |ok: Backend| {
            move |fw: &dyn Firewall| {
                if fw.backend() == ok {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!("{} absent", fw.backend())))
                }
            }
        };
        assert_eq!(backend(select_with(None, |_| Ok(()))), Backend::Iptables);
        assert_eq!(
            backend(select_with(None, only(Backend::Nftables))),
            Backend::Nftables
        );
        assert_eq!(
            backend(select_with(None, only(Backend::Iptables))),
            Backend::Iptables
        );
        match select_with(None, |fw| {
            Err(Error::Invalid(format!("{} absent", fw.backend())))
        }) {
            Err(Error::NoBackend { iptables, nftables }) => {
                assert!(
                    iptables.contains("iptables absent") && nftables.contains("nftables absent")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // A named backend is never checked here.
        assert_eq!(
            backend(select_with(Some("nftables"), |_| Err(Error::Invalid(
                "x".into()
            )))),
            Backend::Nftables
        );
    }

    #[test]
    fn on_every_runs_each_backend_in_order_and_collects() {
        let mut seen = Vec::new();
        let r = on_every(|fw| {
            seen.push(fw.backend());
            Err(Error::Missing(fw.backend().to_string()))
        });
        assert_eq!(seen, Backend::ALL);
        assert_eq!(r.unwrap_err().to_string(), "iptables; nftables");
    }
}
