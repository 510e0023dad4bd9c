//! Undo records for ADD and the fault-injection hook.

use cni::{CmdArgs, Command, Error};

/// ADD's steps, in order, as accepted by `CNI_BRIDGE_FAIL_AFTER`. With `ipMasq`, `masq`
/// runs on another thread from right after `ipam` and is waited for after `wait`.
pub const STEPS: &[&str] = &[
    "ipam",
    "bridge",
    "veth",
    "port",
    "spoofchk",
    "container",
    "gateway",
    "wait",
    "masq",
];

/// Environment variable naming the step after which ADD fails (tests only).
pub const FAIL_AFTER_ENV: &str = "CNI_BRIDGE_FAIL_AFTER";

/// Environment variable naming the step after which ADD aborts the process (tests only:
/// simulates `kill -9` at a known point; nothing is rolled back).
pub const ABORT_AFTER_ENV: &str = "CNI_BRIDGE_ABORT_AFTER";

/// Environment variable naming the step after which ADD pauses (tests only).
pub const PAUSE_AFTER_ENV: &str = "CNI_BRIDGE_PAUSE_AFTER";

/// With [`PAUSE_AFTER_ENV`]: ADD creates `<file>.paused`, then waits (at most 30 s)
/// until `<file>` exists before it continues.
pub const PAUSE_FILE_ENV: &str = "CNI_BRIDGE_PAUSE_FILE";

/// The test hooks at the end of `step`, in this order: pause ([`PAUSE_AFTER_ENV`]),
/// abort the process ([`ABORT_AFTER_ENV`]), fail with an injected error
/// ([`FAIL_AFTER_ENV`]). Without these variables this does nothing.
///
/// # Errors
/// The injected error (code 999).
pub fn fail_point(step: &str) -> cni::Result<()> {
    if std::env::var(PAUSE_AFTER_ENV).is_ok_and(|s| s == step)
        && let Some(file) = std::env::var_os(PAUSE_FILE_ENV)
    {
        let file = std::path::PathBuf::from(file);
        let mut marker = file.clone().into_os_string();
        marker.push(".paused");
        if let Err(e) = std::fs::write(&marker, step) {
            log::warn!("pause hook: cannot create {marker:?}: {e}");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    if std::env::var(ABORT_AFTER_ENV).is_ok_and(|s| s == step) {
        std::process::abort();
    }
    match std::env::var(FAIL_AFTER_ENV) {
        Ok(s) if s == step => Err(Error::internal(format!(
            "injected failure after step {step:?} ({FAIL_AFTER_ENV})"
        ))),
        _ => Ok(()),
    }
}

/// One change ADD made that must be undone if a later step fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Delete the host end of the veth pair (the container end goes with it).
    Veth {
        /// Host-side name.
        host: String,
    },
    /// Tear down the MAC spoof-check rules.
    SpoofChk,
    /// Release the IPAM reservation (delegated DEL).
    Ipam {
        /// IPAM plugin type.
        plugin: String,
    },
    /// Remove the masquerade rules.
    Masq,
}

/// The changes made so far, undone in reverse order by [`Rollback::run`].
#[derive(Debug, Default)]
pub struct Rollback {
    done: Vec<Undo>,
}

/// What undoing needs from the invocation.
#[derive(Debug)]
pub struct UndoCtx<'a> {
    /// The original arguments (for delegated IPAM DEL).
    pub args: &'a CmdArgs,
    /// Network name.
    pub network: &'a str,
}

impl Rollback {
    /// Records a change.
    pub fn push(&mut self, u: Undo) {
        self.done.push(u);
    }

    /// The recorded changes, oldest first.
    pub fn records(&self) -> &[Undo] {
        &self.done
    }

    /// Forgets everything (ADD succeeded).
    pub fn commit(mut self) {
        self.done.clear();
    }

    /// Undoes all recorded changes in reverse order; failures are logged, not returned,
    /// so the original error reaches the runtime.
    pub fn run(mut self, cx: &UndoCtx<'_>) {
        while let Some(u) = self.done.pop() {
            if let Err(e) = undo(&u, cx) {
                log::warn!("rollback of {u:?} failed: {e}");
            }
        }
    }
}

fn undo(u: &Undo, cx: &UndoCtx<'_>) -> cni::Result<()> {
    use crate::errors::Context;
    match u {
        Undo::Veth { host } => {
            let mut h = cni_netlink::Handle::new().ctx("netlink")?;
            match h.del_link(cni_netlink::LinkId::Name(host)) {
                Err(e) if !e.is_not_found() => Err(e).ctx(format!("delete veth {host}")),
                _ => Ok(()),
            }
        }
        Undo::SpoofChk => cni_netfilter::spoofchk::teardown(&cx.args.container_id, &cx.args.ifname)
            .ctx("remove macspoofchk rules"),
        Undo::Ipam { plugin } => cni::invoke::delegate(plugin, Command::Del, cx.args),
        Undo::Masq => cni_netfilter::masq::teardown(&cni_netfilter::masq::MasqOwner {
            network: cx.network,
            container_id: &cx.args.container_id,
            ifname: &cx.args.ifname,
        })
        .ctx("remove masquerade rules"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_point_only_for_named_step() {
        // The variable is not set in unit tests.
        for s in STEPS {
            assert!(fail_point(s).is_ok());
        }
    }

    #[test]
    fn records_in_order_and_commit_clears() {
        let mut r = Rollback::default();
        r.push(Undo::Veth {
            host: "veth0".into(),
        });
        r.push(Undo::Masq);
        assert_eq!(r.records().len(), 2);
        assert_eq!(r.records()[1], Undo::Masq);
        r.commit();
    }
}
