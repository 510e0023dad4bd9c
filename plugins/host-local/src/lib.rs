//! The `host-local` IPAM plugin: a drop-in replacement for the reference
//! (containernetworking/plugins `plugins/ipam/host-local`) built on the
//! [`cni_ipam`] engine. Same configuration keys, same results, same state
//! files, so a node can switch between the two in place.
//!
//! Commands: ADD, DEL, CHECK (0.4.0+), and — beyond the reference — GC and
//! STATUS (1.1.0). Error codes are listed in [`errors`]; the rule for
//! several requested addresses in one range set in [`cni_ipam::allocate`]:
//! each set takes the first requested address (in the order `CNI_ARGS`
//! `IP=`, `args.cni.ips`, `runtimeConfig.ips`) it contains; any requested
//! address left over fails the ADD (code 7) before anything is reserved.

pub mod commands;
pub mod config;
pub mod errors;

use cni::conf::NoPluginConfig;
use cni::{CmdArgs, NetConf, Plugin, Result, Success};

/// The host-local plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLocal;

impl Plugin for HostLocal {
    type Config = NoPluginConfig;

    fn name(&self) -> &'static str {
        "host-local"
    }

    fn add(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<Success> {
        commands::add(args, conf)
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()> {
        commands::del(args, conf)
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()> {
        commands::check_cmd(args, conf)
    }

    fn status(&self, _args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()> {
        commands::status_cmd(conf)
    }

    fn gc(&self, _args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()> {
        commands::gc_cmd(conf)
    }
}
