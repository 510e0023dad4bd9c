//! Which attachments the nftables backends have written rules for, on this node.
//!
//! The nftables layouts (upstream's, which ours must match) keep every container's
//! rules in shared chains, marked only by a comment. An ADD replaces whatever the same
//! attachment had (a repeated ADD leaves no stale rule), so it would have to read those
//! chains whole to find its own, and that read grows with the node: at 1,000 containers
//! it is most of a portmap ADD. A marker file per attachment, created before the first
//! ADD's commit and removed by DEL, says when there can be nothing to replace: no marker,
//! no read.
//!
//! Markers live in [`DIR`] (a tmpfs: they go when the rules go, at reboot), named by the
//! network namespace the plugin runs in (its nsfs device and inode) and a hash of the
//! attachment. A marker that outlives its rules (a firewall reload, a namespace whose
//! inode is reused) costs one read, never a missed rule; one that cannot be written makes
//! the ADD read as before. What upstream's plugins wrote leaves no marker: a repeated
//! ADD then adds its rules beside upstream's, as upstream's own ADD does.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Where the markers are kept.
pub const DIR: &str = "/run/cni-rs/nftables-attachments";

/// The marker of one attachment in the calling thread's network namespace.
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    path: PathBuf,
}

impl Marker {
    /// The marker of `key` (the attachment's identity, e.g. container ID) for the rules
    /// of `kind` (`portmap`, `masquerade`); `None` when the namespace cannot be named.
    pub(crate) fn of(kind: &str, key: &[&str]) -> Option<Marker> {
        let ns = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
        let mut h = Sha256::new();
        for part in key {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Some(Marker {
            path: PathBuf::from(format!("{DIR}/{}-{}-{kind}-{hex}", ns.dev(), ns.ino())),
        })
    }

    /// Marks the attachment, unless it was marked already. `true` when this call created
    /// the marker: nothing of the attachment can be in the chains then (no earlier ADD of
    /// ours), and the ADD need not read them. `false` when it existed, or could not be
    /// written (then the ADD reads, as without markers).
    pub(crate) fn mark_new(&self) -> bool {
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&self.path)
        };
        let created = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(DIR).and_then(|()| create())
            }
            other => other,
        };
        match created {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                log::debug!("attachment marker {}: {e}", self.path.display());
                false
            }
        }
    }

    /// Removes the marker (after a DEL removed the attachment's rules).
    pub(crate) fn clear(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::debug!("attachment marker {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn markers_are_per_kind_and_attachment() {
        let a = Marker::of("portmap", &["ctr-a"]).unwrap();
        let b = Marker::of("portmap", &["ctr-b"]).unwrap();
        let m = Marker::of("masquerade", &["ctr-a"]).unwrap();
        assert_ne!(a.path, b.path);
        assert_ne!(a.path, m.path);
        assert!(a.path.starts_with(DIR));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            Marker::of("k", &["ab", "c"]).unwrap().path,
            Marker::of("k", &["a", "bc"]).unwrap().path
        );
    }
}
