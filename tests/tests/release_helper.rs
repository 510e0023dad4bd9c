//! The helper that does the last close of a plugin's netfilter sockets
//! (`crates/netfilter/src/release.rs`) is a process that outlives its plugin: it waits
//! for a grace period without an nf_tables commit in the namespace before it closes. It
//! must still end on its own, soon, even while other plugins keep committing there.
//!
//! This file holds one test on purpose: the test makes its process the subreaper of its
//! descendants (so the helpers, orphaned when their plugin exits, become its children)
//! and reaps every child it has, which would steal the children of other tests.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::time::{Duration, Instant};

use cni_testsupport::node::{Node, Side};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use serde_json::json;

/// How long the helpers may take to end after the last plugin: far above their longest
/// wait (a bounded number of grace periods), so that only a helper that does not end
/// fails the test.
const HELPERS_END_WITHIN: Duration = Duration::from_secs(10);

/// Reaps every child until none is left; returns how many of them were our plugins'
/// helpers (named after the plugin, as a child started without exec is). Panics when a
/// helper ends other than with status 0, or when a child is still there after
/// [`HELPERS_END_WITHIN`]. A netfilter tool may also end here, with status 0 or killed
/// by its plugin's exit (`PR_SET_PDEATHSIG`) once its commit was announced.
fn reap_all() -> usize {
    let deadline = Instant::now() + HELPERS_END_WITHIN;
    let mut helpers = 0;
    loop {
        // Look at the ended child before reaping it, while /proc still names it.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let status = match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) => {
                assert!(
                    Instant::now() < deadline,
                    "a process left by the plugins still runs after {HELPERS_END_WITHIN:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(Errno::ECHILD) => return helpers,
            Ok(status) => status,
            Err(e) => panic!("waitid: {e}"),
        };
        let pid = status.pid().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim_end();
        waitpid(pid, None).unwrap();
        if ["bridge", "portmap"].contains(&comm) {
            assert_eq!(status, WaitStatus::Exited(pid, 0), "helper {pid} ({comm})");
            helpers += 1;
        } else {
            assert!(
                matches!(
                    status,
                    WaitStatus::Exited(_, 0) | WaitStatus::Signaled(_, Signal::SIGKILL, _)
                ),
                "{comm} ({pid}): {status:?}"
            );
        }
    }
}

/// Back-to-back bridge ADDs and DELs with `ipMasq` on both backends, the way a busy node
/// runs them: every run commits, so each leaves a helper, and each helper sees the next
/// runs' commits while it waits. All of them end, with status 0, and the namespace is
/// left clean.
#[test]
fn release_helpers_end_on_their_own_while_plugins_keep_committing() {
    let Some(n) = Node::root() else { return };
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut runs = 0;
    for backend in ["iptables", "nftables"] {
        let conf = n.bridge_conf(
            "1.0.0",
            &["10.93.0.0/24"],
            json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": backend}),
        );
        for i in 0..3 {
            let ctr = n.env.add_container();
            let id = format!("rel-{backend}-{i}");
            let add = n.call(Side::Ours, "ADD", &conf, Some(&ctr), &id);
            n.run(Side::Ours, "bridge", &add).assert_success();
            n.del_clean(&conf, Some(&ctr), &id);
            runs += 2;
        }
    }
    // At least one helper per run (DEL also leaves the link-delete helper).
    let helpers = reap_all();
    assert!(
        helpers >= runs,
        "{runs} committing runs, {helpers} helpers reaped"
    );
}
