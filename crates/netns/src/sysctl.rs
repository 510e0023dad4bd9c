//! `/proc/sys` access with keys as path components.
//!
//! Interface names may contain dots (`cni0.100`), so the primary API takes components:
//! `["net", "ipv6", "conf", "cni0.100", "accept_ra"]`. The dotted helpers follow
//! `sysctl(8)`: components are separated by `.` and a `/` inside a component stands for a
//! `.` (`net.ipv6.conf.cni0/100.accept_ra`).
//!
//! `net.*` keys belong to the network namespace of the thread that *opens* the file, so use
//! these functions on a thread inside the target namespace (see [`crate::NetNs::run`]).

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

const ROOT: &str = "/proc/sys";

fn display(components: &[&str]) -> String {
    components
        .iter()
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The `/proc/sys` path of a key given as components.
///
/// # Errors
/// [`Error::InvalidKey`] for an empty key or components that are empty, `.`, `..` or
/// contain `/` or NUL.
pub fn path(components: &[&str]) -> Result<PathBuf> {
    if components.is_empty() {
        return Err(Error::InvalidKey {
            key: String::new(),
            reason: "empty key",
        });
    }
    let mut p = PathBuf::from(ROOT);
    for c in components {
        let reason = if c.is_empty() {
            Some("empty component")
        } else if *c == "." || *c == ".." {
            Some("component is . or ..")
        } else if c.contains('/') || c.contains('\0') {
            Some("component contains / or NUL")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidKey {
                key: display(components),
                reason,
            });
        }
        p.push(c);
    }
    Ok(p)
}

/// Splits a dotted key into components (`/` inside a component becomes `.`).
pub fn split_dotted(key: &str) -> Vec<String> {
    key.split('.').map(|c| c.replace('/', ".")).collect()
}

/// Reads a key; the value is returned without surrounding whitespace.
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when reading fails.
pub fn read(components: &[&str]) -> Result<String> {
    let p = path(components)?;
    let v = fs::read_to_string(&p).map_err(|source| Error::Sysctl {
        key: display(components),
        op: "read",
        source,
    })?;
    Ok(v.trim().to_string())
}

/// Writes `value` unless the key already holds it. Returns whether a write happened.
///
/// Reading first avoids `EPERM` on read-only `/proc/sys` when the value is already right.
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when reading or writing fails.
pub fn set(components: &[&str], value: &str) -> Result<bool> {
    if read(components)? == value.trim() {
        return Ok(false);
    }
    write(components, value)?;
    Ok(true)
}

/// Writes `value` without reading the key first: for keys of a device this command
/// just created, whose defaults differ from what is written, so [`set`]'s read would
/// only cost another open (each `/proc/sys/net/.../<device>/` open is a few hundred
/// microseconds on a busy node).
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when writing fails.
pub fn write(components: &[&str], value: &str) -> Result<()> {
    let p = path(components)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|source| Error::Sysctl {
            key: display(components),
            op: "write",
            source,
        })?;
    f.write_all(value.as_bytes())
        .map_err(|source| Error::Sysctl {
            key: display(components),
            op: "write",
            source,
        })
}

/// [`read`] with a dotted key.
///
/// # Errors
/// As [`read`].
pub fn read_dotted(key: &str) -> Result<String> {
    let parts = split_dotted(key);
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    read(&refs)
}

/// [`set`] with a dotted key.
///
/// # Errors
/// As [`set`].
pub fn set_dotted(key: &str, value: &str) -> Result<bool> {
    let parts = split_dotted(key);
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    set(&refs, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_keeps_dots_in_components() {
        let p = path(&["net", "ipv6", "conf", "cni0.100", "accept_ra"]).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/proc/sys/net/ipv6/conf/cni0.100/accept_ra")
        );
    }

    #[test]
    fn path_rejects_traversal_and_slashes() {
        for bad in [&["net", ".."][..], &["net", "a/b"], &["net", ""], &[]] {
            let e = path(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidKey { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn dotted_form_maps_slash_to_dot() {
        assert_eq!(
            split_dotted("net.ipv6.conf.cni0/100.accept_ra"),
            vec!["net", "ipv6", "conf", "cni0.100", "accept_ra"]
        );
        assert_eq!(
            display(&["net", "ipv6", "conf", "cni0.100"]),
            "net.ipv6.conf.cni0/100"
        );
    }

    #[test]
    fn read_names_missing_key() {
        let e = read(&["net", "ipv4", "conf", "no-such-if-xyz", "arp_notify"]).unwrap_err();
        assert!(e.is_not_found());
        assert!(
            e.to_string()
                .contains("net.ipv4.conf.no-such-if-xyz.arp_notify"),
            "{e}"
        );
    }

    #[test]
    fn read_existing_key() {
        let v = read_dotted("kernel.ostype").unwrap();
        assert_eq!(v, "Linux");
    }
}
