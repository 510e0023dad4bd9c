//! The `host-local` IPAM plugin: a drop-in replacement for the reference
//! (containernetworking/plugins `plugins/ipam/host-local`) built on this
//! crate's engine. Same configuration keys, same results, same state files,
//! so a node can switch between the two in place. The executable
//! (`plugins/host-local`) is only `main`: the identity note and
//! `cni::skel::run(&HostLocal)`.
//!
//! Commands: ADD, DEL, CHECK (0.4.0+), and — beyond the reference — GC and
//! STATUS (1.1.0). Error codes are listed in [`errors`]; the rule for
//! several requested addresses in one range set in [`crate::allocate`]:
//! each set takes the first requested address (in the order `CNI_ARGS`
//! `IP=`, `args.cni.ips`, `runtimeConfig.ips`) it contains; any requested
//! address left over fails the ADD (code 7) before anything is reserved.
//!
//! [`BUILTIN`] lets a plugin that links this library (`bridge`) run
//! host-local in-process instead of exec'ing it, when the `host-local`
//! binary found in `CNI_PATH` carries the same [`IDENTITY`]
//! ([`cni::invoke`], "Built-in delegates"; the digest is computed by this
//! crate's `build.rs`).

pub mod commands;
pub mod config;
pub mod errors;

use std::io::{Read, Write};

use cni::conf::NoPluginConfig;
use cni::invoke::{Builtin, Identity};
use cni::{CmdArgs, NetConf, Plugin, Result, Success};

/// Digest of the code and build settings this copy of host-local was built
/// from (computed by this crate's `build.rs`); the `host-local` binary
/// carries it in an ELF note.
pub const IDENTITY: Identity = include!(concat!(env!("OUT_DIR"), "/identity.rs"));

/// host-local as a built-in delegate: register it with
/// [`cni::invoke::register_builtin`] to run it in-process when the binary in
/// `CNI_PATH` was built from this same code.
pub const BUILTIN: Builtin = Builtin {
    name: "host-local",
    identity: IDENTITY,
    run: run_in_process,
};

/// The skel's [`cni::skel::dispatch`] of [`HostLocal`] with injected
/// environment and stdio: what the binary's `main` does, minus the process
/// globals.
pub fn run_in_process(
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    cni::skel::dispatch(&HostLocal, env, stdin, stdout, stderr)
}

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
