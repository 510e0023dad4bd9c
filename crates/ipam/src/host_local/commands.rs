//! The five commands, each reading the configuration, opening the store
//! once (one lock per command) and calling the engine.

use std::ffi::OsStr;
use std::net::IpAddr;

use crate::store::DiskStore;
use crate::{Attachment, DiskStoreOptions, ResolvConf, Store, allocate_all, check, gc, status};
use cni::{CmdArgs, Dns, Error, IpConfig, NetConf, Result, Success};

use super::config::{self, StoreLocation};
use super::errors;

fn options() -> DiskStoreOptions {
    DiskStoreOptions::from_env()
}

fn who(args: &CmdArgs) -> Attachment<'_> {
    Attachment::new(&args.container_id, &args.ifname)
}

/// Opens the store without creating it; `None` when it does not exist.
fn open_existing(loc: &StoreLocation) -> Result<Option<DiskStore>> {
    DiskStore::open_existing(&loc.data_dir, &loc.network, &options())
        .map_err(|e| errors::from_store(&e))
}

/// ADD: one address per range set, the routes, and DNS from `resolvConf`.
///
/// # Errors
/// See [`super::errors`] for the codes.
pub fn add<P>(args: &CmdArgs, conf: &NetConf<P>) -> Result<Success> {
    let cfg = config::load(conf, &args.args)?;
    let dns = match &cfg.resolv_conf {
        Some(path) => dns_from(&ResolvConf::load(path).map_err(|e| {
            Error::io(
                format!("failed to read resolvConf {}", path.display()),
                &e.source,
            )
        })?),
        None => Dns::default(),
    };
    let loc = &cfg.location;
    let mut store = DiskStore::open(&loc.data_dir, &loc.network, &options())
        .map_err(|e| errors::from_store(&e))?;
    let allocations = allocate_all(&cfg.range_sets, &mut store, &who(args), &cfg.requested)
        .map_err(|e| errors::from_add(&e))?;
    Ok(Success {
        interfaces: Vec::new(),
        ips: allocations
            .into_iter()
            .map(|a| IpConfig {
                interface: None,
                address: a.address,
                gateway: Some(a.gateway),
            })
            .collect(),
        routes: cfg.routes,
        dns,
    })
}

fn dns_from(r: &ResolvConf) -> Dns {
    Dns {
        nameservers: r.nameservers.clone(),
        domain: r.domain.clone(),
        search: r.search.clone(),
        options: r.options.clone(),
    }
}

/// DEL: releases every address of the attachment (legacy ID-only files
/// too). Needs only `name` and `ipam.dataDir`; a missing state directory,
/// an unknown container and a repeated DEL are success, and nothing is
/// created.
///
/// # Errors
/// Code 7 without an `ipam` section, 11 on lock timeout, 5 on I/O errors.
pub fn del<P>(args: &CmdArgs, conf: &NetConf<P>) -> Result<()> {
    let loc = config::load_location(conf)?;
    let Some(mut store) = open_existing(&loc)? else {
        return Ok(());
    };
    let released = store
        .release(&who(args))
        .map_err(|e| errors::from_store(&e))?;
    log::debug!(
        "released {released:?} for {}/{}",
        args.container_id,
        args.ifname
    );
    Ok(())
}

/// CHECK: the attachment holds addresses, and they are exactly the
/// `prevResult` addresses that lie in our range sets.
///
/// # Errors
/// Code 103 on a mismatch, 7 for an invalid configuration.
pub fn check_cmd<P>(args: &CmdArgs, conf: &NetConf<P>) -> Result<()> {
    let cfg = config::load(conf, &args.args)?;
    let expected: Option<Vec<IpAddr>> = conf
        .prev_result()?
        .map(|r| r.ips.iter().map(|i| i.address.ip()).collect());
    let store = open_existing(&cfg.location)?;
    check(
        &cfg.range_sets,
        store.as_ref(),
        &who(args),
        expected.as_deref(),
    )
    .map_err(|e| errors::from_check(&e))
}

/// GC: releases every reservation whose attachment is not in
/// `cni.dev/valid-attachments` (or the legacy `cni.dev/attachments`).
/// Without either list nothing is collected.
///
/// # Errors
/// Code 11 on lock timeout, 5 when reservations cannot be listed or removed.
pub fn gc_cmd<P>(conf: &NetConf<P>) -> Result<()> {
    let loc = config::load_location(conf)?;
    let Some(valid) = conf.gc_valid_attachments() else {
        log::info!("GC without a valid-attachments list: nothing collected");
        return Ok(());
    };
    let Some(mut store) = open_existing(&loc)? else {
        return Ok(());
    };
    let keep: Vec<Attachment<'_>> = valid
        .iter()
        .map(|a| Attachment::new(&a.container_id, &a.ifname))
        .collect();
    let released = gc(&mut store, &keep).map_err(|e| errors::from_gc(&e))?;
    for r in &released {
        log::info!("GC released {} of {}", r.ip, r.container_id);
    }
    Ok(())
}

/// STATUS: succeeds while an ADD can be served.
///
/// # Errors
/// Code 50 when some range set has no free address or the store is
/// unusable; 7 for an invalid configuration; 11 on lock timeout.
pub fn status_cmd<P>(conf: &NetConf<P>) -> Result<()> {
    let cfg = config::load(conf, OsStr::new(""))?;
    let loc = &cfg.location;
    status::disk_status(&cfg.range_sets, &loc.data_dir, &loc.network, &options())
        .map_err(|e| errors::from_status(&e))
}
