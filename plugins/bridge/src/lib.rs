//! The CNI `bridge` plugin: a drop-in replacement for the reference plugin
//! (containernetworking/plugins `plugins/main/bridge`).
//!
//! * [`config`]: every configuration key of the reference, validated up front;
//! * [`add`]: ADD as a sequence of steps, each recorded in a [`rollback::Rollback`] so any
//!   failure undoes what this ADD created (veth pair, IPAM reservation, netfilter rules);
//! * [`del`], [`check`], [`maint`] (STATUS and GC);
//! * [`links`] (host side: bridge, veth, ports, gateway addresses) and [`container`]
//!   (addresses, routes and sysctls inside `CNI_NETNS`).
//!
//! Test hooks (fault injection; unset in production, each names one of
//! [`rollback::STEPS`]: `ipam`, `bridge`, `veth`, `port`, `spoofchk`, `container`,
//! `gateway`, `wait`, `masq`):
//! * `CNI_BRIDGE_FAIL_AFTER=<step>`: ADD fails right after that step with an injected
//!   error (code 999), running the normal rollback;
//! * `CNI_BRIDGE_ABORT_AFTER=<step>`: the process calls `abort()` right after that step,
//!   as if killed with `kill -9` there (no rollback; a later DEL must clean up);
//! * `CNI_BRIDGE_PAUSE_AFTER=<step>` with `CNI_BRIDGE_PAUSE_FILE=<path>`: after that step
//!   ADD creates `<path>.paused` and waits (at most 30 s) until `<path>` exists, so a
//!   test can change the world mid-ADD (e.g. delete the netns).

#![forbid(unsafe_code)]

pub mod add;
pub mod check;
pub mod config;
pub mod container;
pub mod del;
pub mod errors;
pub mod links;
pub mod maint;
pub mod rollback;

use cni::{CmdArgs, NetConf, Plugin, Success};

pub use config::BridgeConf;

/// Register the IPAM plugins linked into bridge as built-in delegates
/// (host-local is [`cni_ipam::host_local`]):
/// host-local then runs in-process when the `host-local` binary found in
/// `CNI_PATH` was built from the same code (saving its exec, about 2 ms per
/// delegation); any other `host-local` (the reference one, a wrapper
/// script, another build) is exec'd as before. `CNI_IPAM_EXEC=1` always
/// execs. See [`cni::invoke`].
pub fn register_builtin_delegates() {
    cni::invoke::register_builtin(cni_ipam::host_local::BUILTIN);
}

/// The plugin (stateless; all state lives in the kernel, IPAM and netfilter).
#[derive(Debug, Default, Clone, Copy)]
pub struct BridgePlugin;

impl Plugin for BridgePlugin {
    type Config = BridgeConf;

    fn name(&self) -> &'static str {
        "bridge"
    }

    fn add(&self, args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<Success> {
        add::add(args, conf)
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
        del::del(args, conf)
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
        check::check(args, conf)
    }

    fn status(&self, args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
        maint::status(args, conf)
    }

    fn gc(&self, args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
        maint::gc(args, conf)
    }
}
