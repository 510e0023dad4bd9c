//! iptables access: read a table with one `iptables-save -t <table>`, write a whole change
//! with one `iptables-restore -w <secs> --noflush` (one kernel commit, so all-or-nothing).
//!
//! Rules are handled as argument vectors in the canonical form `iptables-save` prints, so
//! the rules we write can be compared with what we read back token by token.

pub mod native;
mod save;
mod script;

pub use save::{SavedRule, SavedTable, tokenize};
pub use script::{Script, quote};

use crate::error::Result;
use crate::exec;

/// Seconds `iptables-restore`/`iptables` wait for the xtables lock before giving up with
/// [`crate::Error::LockTimeout`].
pub const LOCK_WAIT_SECS: u32 = 10;

/// The table every CNI rule lives in.
pub const NAT: &str = "nat";

/// Address family, i.e. which of the `iptables` / `ip6tables` tool sets to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `iptables*`.
    V4,
    /// `ip6tables*`.
    V6,
}

impl std::fmt::Display for Family {
    /// `ipv4` / `ipv6` (as conntrack-tools and log messages spell them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of an address.
    pub fn of(ip: std::net::IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The nf_tables family the nf_tables variant keeps this family's tables in.
    pub fn nf_family(self) -> nftables::types::NfFamily {
        match self {
            Family::V4 => nftables::types::NfFamily::IP,
            Family::V6 => nftables::types::NfFamily::IP6,
        }
    }

    /// The rule-level tool (`iptables` / `ip6tables`).
    pub fn tool(self) -> &'static str {
        self.prefix()
    }

    /// `iptables-save` / `ip6tables-save`.
    pub fn save_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// `iptables-restore` / `ip6tables-restore`.
    pub fn restore_tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// Reads `table` of `family` with a single `iptables-save -t <table>`.
///
/// # Errors
/// The tool failing (its stderr is in the error) or printing something unparseable.
pub fn save(family: Family, table: &str) -> Result<SavedTable> {
    let out = exec::run(
        family.save_tool(),
        &["-t", table],
        None,
        &format!("reading table {table}"),
    )?;
    SavedTable::parse(&out, table, family.save_tool())
}

/// Applies `script` with one `iptables-restore -w <LOCK_WAIT_SECS> --noflush` (a no-op
/// when the script is empty). `op` names the operation for error messages.
///
/// # Errors
/// [`crate::Error::LockTimeout`] when the xtables lock stays busy, otherwise the tool's
/// failure with its stderr (which names the failing line) and the rendered input.
pub fn restore(family: Family, script: &Script, op: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let input = script.render();
    let wait = LOCK_WAIT_SECS.to_string();
    // One table per script: one COMMIT, one nf_tables transaction.
    exec::run_committing(
        family.restore_tool(),
        &["-w", &wait, "--noflush"],
        &input,
        1,
        &format!("{op} (input:\n{input})"),
    )
}

/// Applies an optimistic `script` (one whose `-N`/`-C` lines assert what it assumes,
/// see [`Script::new_chain`] and [`Script::check`]) like [`restore`]. Returns `false`,
/// with nothing changed (the restore is one atomic commit), when the tool rejected the
/// script, so that the caller falls back to reading the table.
///
/// # Errors
/// [`crate::Error::LockTimeout`] (not worth a second wait) and failures to run the tool
/// at all.
pub fn try_restore(family: Family, script: &Script, op: &str) -> Result<bool> {
    match restore(family, script, op) {
        Ok(()) => Ok(true),
        Err(crate::Error::Tool { stderr, .. }) => {
            log::debug!("{op}: fast path rejected ({stderr}), reading the table instead");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Probes one family: the tool exists and listing the nat OUTPUT chain works.
///
/// # Errors
/// Why the family is unusable.
pub fn usable_family(family: Family) -> Result<()> {
    let wait = LOCK_WAIT_SECS.to_string();
    exec::run(
        family.tool(),
        &["-w", &wait, "-t", NAT, "-S", "OUTPUT"],
        None,
        "probing the nat table",
    )
    .map(drop)
}

/// Probes iptables (IPv4) usability; IPv6 is probed per operation.
///
/// # Errors
/// Why iptables is unusable.
pub fn usable() -> Result<()> {
    usable_family(Family::V4)
}

/// Reads `table` for `family`, or `None` when the tool is not installed (so teardown can
/// skip a backend or family that does not exist on this host). An absent tool is found
/// by a `stat` on `PATH`, without running anything.
///
/// # Errors
/// Any failure other than the tool being absent.
pub fn save_if_present(family: Family, table: &str) -> Result<Option<SavedTable>> {
    if exec::find_tool(family.save_tool()).is_none() {
        return Ok(None);
    }
    match save(family, table) {
        Ok(t) => Ok(Some(t)),
        Err(crate::Error::Spawn { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether this family's tools are the nf_tables variant (`iptables-nft`), found
/// without running anything: the save and restore tools on `PATH`, symlinks resolved
/// (e.g. `/usr/sbin/iptables-save` -> `/etc/alternatives/iptables-save` ->
/// `/usr/sbin/xtables-nft-multi`), are named with `nft`. Anything else (legacy, a
/// wrapper script, a tool missing) is `false`.
///
/// Found once per process and family (a search of `PATH` and two `canonicalize`s), as a
/// DEL or ADD asks several times and the tools do not change while a plugin runs.
pub fn is_nft_variant(family: Family) -> bool {
    static FOUND: [std::sync::OnceLock<bool>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let slot = match family {
        Family::V4 => &FOUND[0],
        Family::V6 => &FOUND[1],
    };
    *slot.get_or_init(|| {
        [family.save_tool(), family.restore_tool()]
            .iter()
            .all(|tool| exec::find_tool(tool).is_some_and(|p| names_nft_variant(&p)))
    })
}

fn names_nft_variant(path: &std::path::Path) -> bool {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().contains("nft")))
        .unwrap_or(false)
}

/// True when `table` of `family` certainly holds no rule: the tools are the nf_tables
/// variant ([`is_nft_variant`]) and nf_tables has no table `ip`/`ip6 <table>`
/// ([`crate::nft::table_exists`], one netlink request, no process). With the legacy
/// variant, or when the probe fails, `false`.
pub fn known_empty(family: Family, table: &str) -> bool {
    is_nft_variant(family) && crate::nft::known_absent(family.nf_family(), table)
}

/// Teardown shared by DEL and GC, per family whose tools are present and whose `table`
/// may hold rules (see [`known_empty`]; an empty one costs no process):
///
/// 1. with the nf_tables variant, `native` removes what it knows to look for without
///    reading the whole table and without a process (see [`native::remove_chains`]) and
///    returns `true` when it did. No tool runs, so no tool's exit holds the namespace's
///    nf_tables commit mutex through the kernel's deferred cleanup of this commit (see
///    the `release` module), where the next plugin's commit would wait for it;
/// 2. otherwise, when `fast` gives a script for the family (DEL knows exactly which rules
///    it removes), it is tried alone with [`try_restore`]: one process, nothing read. Its
///    `-D`/`-X` lines fail unless everything is exactly as expected, and then nothing
///    changes (one atomic commit);
/// 3. otherwise, `table` is read once, `deletions` builds the script from what is there,
///    and it is applied in one restore (nothing when the script is empty).
///
/// A failing family does not stop the other; all errors are collected.
///
/// # Errors
/// The collected failures of each family.
pub fn delete_in_each_family(
    table: &str,
    op: &str,
    fast: impl Fn(Family) -> Option<Script>,
    native: impl Fn(Family) -> bool,
    deletions: impl Fn(&SavedTable) -> Script,
) -> Result<()> {
    let mut errors = Vec::new();
    for family in Family::ALL {
        if exec::find_tool(family.save_tool()).is_none() {
            continue;
        }
        if known_empty(family, table) {
            log::debug!(
                "{op}: no {table} table for {}: nothing to read",
                family.tool()
            );
            continue;
        }
        let result = delete_in_family(family, table, op, &fast, &native, &deletions);
        if let Err(e) = result {
            errors.push(e);
        }
    }
    crate::Error::collect(errors)
}

/// The steps of [`delete_in_each_family`] for one family.
fn delete_in_family(
    family: Family,
    table: &str,
    op: &str,
    fast: impl Fn(Family) -> Option<Script>,
    native: impl Fn(Family) -> bool,
    deletions: impl Fn(&SavedTable) -> Script,
) -> Result<()> {
    if is_nft_variant(family) && native(family) {
        return Ok(());
    }
    if let Some(script) = fast(family).filter(|s| !s.is_empty())
        && exec::find_tool(family.restore_tool()).is_some()
        && try_restore(family, &script, op)?
    {
        return Ok(());
    }
    match save_if_present(family, table)? {
        Some(saved) => restore(family, &deletions(&saved), op),
        None => Ok(()),
    }
}

/// Adds to `script` what removes `chain` entirely: every rule jumping to it (found in
/// `saved`, so nothing missing is deleted), its flush and its deletion. Returns whether
/// anything was scheduled.
pub fn remove_chain(saved: &SavedTable, script: &mut Script, chain: &str) -> bool {
    let mut any = false;
    for rule in saved.jumps_to(chain) {
        script.delete(&rule.chain, &rule.args);
        any = true;
    }
    if saved.has_chain(chain) {
        script.flush(chain).delete_chain(chain);
        any = true;
    }
    any
}

/// Address in iptables-save notation: `a.b.c.d/32` or `x::y/128` for a host.
pub fn host_cidr(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}/32"),
        std::net::IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// Subnet of an address with prefix in iptables-save notation (`10.1.2.0/24`).
pub fn subnet_cidr(net: &ipnetwork::IpNetwork) -> String {
    format!("{}/{}", net.network(), net.prefix())
}
