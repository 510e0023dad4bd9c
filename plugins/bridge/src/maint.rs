//! STATUS and GC.

use cni::{CmdArgs, Code, Command, Error, NetConf};
use cni_netfilter::masq;
use cni_netfilter::{Firewall, firewall};

use crate::config::{BridgeConf, Settings};
use crate::errors::{Context, collect};

/// STATUS: code 50 when the netfilter backend `ipMasq` needs (or nftables for
/// `macspoofchk`) is unusable; otherwise the IPAM plugin's STATUS.
///
/// # Errors
/// Code 50, code 2 for an unknown backend, or the IPAM plugin's error.
pub fn status(args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
    let s = Settings::new(conf, None)?;
    if s.ip_masq && conf.ipam_type().is_some() {
        usable_firewall(s.ip_masq_backend.as_deref(), Check::Probe)?;
    }
    if s.mac_spoof_chk {
        spoofchk_usable(Check::Probe)?;
    }
    if let Some(ipam) = conf.ipam_type() {
        cni::invoke::delegate(ipam, Command::Status, args)?;
    }
    Ok(())
}

/// How thoroughly [`usable_firewall`] and [`spoofchk_usable`] check a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Its tools are executable files on `PATH` (`stat` only): ADD, where the real
    /// operation reports a kernel that rejects the backend.
    Installed,
    /// A real probe (one process per backend): STATUS, which must be accurate.
    Probe,
}

impl Check {
    fn run(self, fw: &dyn Firewall) -> cni_netfilter::Result<()> {
        match self {
            Check::Installed => fw.installed(),
            Check::Probe => fw.probe(),
        }
    }
}

/// The netfilter backend for `ipMasq` (`requested` or auto-detected), checked as `how`
/// says: the one object ADD and STATUS use.
///
/// # Errors
/// Code 2 for an unknown backend name, code 50 when no (or not the requested) backend
/// is usable.
pub fn usable_firewall(requested: Option<&str>, how: Check) -> cni::Result<&'static dyn Firewall> {
    let selected = match how {
        Check::Installed => firewall::select(requested),
        Check::Probe => firewall::select_probed(requested),
    };
    let fw = match selected {
        Ok(b) => b,
        Err(e @ cni_netfilter::Error::UnknownBackend(_)) => return Err(e).ctx("ipMasq"),
        Err(e) => {
            return Err(Error::new(
                Code::NotAvailable,
                format!("ipMasq: no usable netfilter backend: {e}"),
            ));
        }
    };
    // Auto-detection already checked the backend it picked.
    if requested.is_some() {
        how.run(fw).map_err(|e| {
            Error::new(
                Code::NotAvailable,
                format!(
                    "ipMasq: netfilter backend {} is not usable: {e}",
                    fw.backend()
                ),
            )
        })?;
    }
    Ok(fw)
}

/// `macspoofchk` needs nftables (checked as `how` says).
///
/// # Errors
/// Code 50 when nftables is not usable.
pub fn spoofchk_usable(how: Check) -> cni::Result<()> {
    how.run(&firewall::Nftables).map_err(|e| {
        Error::new(
            Code::NotAvailable,
            format!("macspoofchk: nftables is not usable: {e}"),
        )
    })
}

/// GC: forwards GC to IPAM and removes masquerade (and, with `macspoofchk`, spoof-check)
/// state of attachments not in `cni.dev/valid-attachments`. Without a list nothing is
/// collected here.
///
/// # Errors
/// All failures, joined (every part runs).
pub fn gc(args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
    let s = Settings::new(conf, None)?;
    let mut errors = Vec::new();
    if let Some(ipam) = conf.ipam_type()
        && let Err(e) = cni::invoke::delegate(ipam, Command::Gc, args)
    {
        errors.push(e);
    }
    if let Some(valid) = conf.gc_valid_attachments() {
        let pairs: Vec<(String, String)> = valid
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        if let Err(e) = masq::gc(&conf.name, &pairs).ctx("GC of IP masquerade rules") {
            errors.push(e);
        }
        // Spoof-check chains are named by container and interface only, not by network:
        // collect them only for networks that use the feature.
        if s.mac_spoof_chk
            && let Err(e) = cni_netfilter::spoofchk::gc(&pairs).ctx("GC of macspoofchk rules")
        {
            errors.push(e);
        }
    }
    collect(errors)
}
