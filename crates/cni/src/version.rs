//! CNI specification versions (SPEC.md "Version") and the result family each
//! one uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Code, Error};

/// A CNI specification version such as `1.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecVersion {
    major: u16,
    minor: u16,
    patch: u16,
}

impl SpecVersion {
    /// Build a version from its three parts.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The result layout this version uses.
    pub fn family(self) -> ResultFamily {
        if self < V0_3_0 {
            ResultFamily::V02
        } else if self < V1_0_0 {
            ResultFamily::V04
        } else {
            ResultFamily::V1
        }
    }

    /// Whether CHECK is defined at this version (0.4.0 and later).
    pub fn allows_check(self) -> bool {
        self >= V0_4_0
    }

    /// Whether STATUS and GC are defined at this version (1.1.0 and later).
    pub fn allows_status_and_gc(self) -> bool {
        self >= V1_1_0
    }

    /// Whether this version is one of [`ALL`].
    pub fn is_supported(self) -> bool {
        ALL.contains(&self)
    }
}

/// 0.1.0, the version assumed when a configuration has no `cniVersion`.
pub const V0_1_0: SpecVersion = SpecVersion::new(0, 1, 0);
/// 0.2.0 (adds VERSION).
pub const V0_2_0: SpecVersion = SpecVersion::new(0, 2, 0);
/// 0.3.0 (results with `interfaces` and `ips`).
pub const V0_3_0: SpecVersion = SpecVersion::new(0, 3, 0);
/// 0.3.1.
pub const V0_3_1: SpecVersion = SpecVersion::new(0, 3, 1);
/// 0.4.0 (adds CHECK and `prevResult` on DEL).
pub const V0_4_0: SpecVersion = SpecVersion::new(0, 4, 0);
/// 1.0.0 (drops `ips[].version`).
pub const V1_0_0: SpecVersion = SpecVersion::new(1, 0, 0);
/// 1.1.0 (adds STATUS, GC and new interface/route fields).
pub const V1_1_0: SpecVersion = SpecVersion::new(1, 1, 0);

/// Every version this suite implements, oldest first.
pub const ALL: [SpecVersion; 7] = [V0_1_0, V0_2_0, V0_3_0, V0_3_1, V0_4_0, V1_0_0, V1_1_0];

/// The newest version implemented.
pub const LATEST: SpecVersion = V1_1_0;

/// The three result layouts of the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFamily {
    /// 0.1.0 and 0.2.0: `ip4` / `ip6` objects.
    V02,
    /// 0.3.0, 0.3.1 and 0.4.0: `interfaces` and `ips` with `version`.
    V04,
    /// 1.0.0 and 1.1.0: `ips` without `version`.
    V1,
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SpecVersion {
    type Err = Error;

    /// Parses `MAJOR.MINOR.PATCH`. The version need not be supported; see
    /// [`require_supported`] for the gate.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::new(
                Code::IncompatibleVersion,
                format!("invalid CNI version {s:?}"),
            )
        };
        let mut parts = s.split('.');
        let mut next = || -> Result<u16, Error> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = SpecVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

/// Parse `raw` (the config's `cniVersion`; `None` means 0.1.0) and require it
/// to be one of `supported`.
///
/// # Errors
/// Code 1 (incompatible version) naming the config's version and the
/// supported ones.
pub fn require_supported(
    raw: Option<&str>,
    supported: &[SpecVersion],
) -> Result<SpecVersion, Error> {
    let Some(raw) = raw else { return Ok(V0_1_0) };
    let list = supported
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let incompatible = || {
        Error::new(Code::IncompatibleVersion, "incompatible CNI versions")
            .with_details(format!("config is {raw:?}, plugin supports [{list}]"))
    };
    let v: SpecVersion = raw.parse().map_err(|_| incompatible())?;
    if supported.contains(&v) {
        Ok(v)
    } else {
        Err(incompatible())
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for SpecVersion {
    fn default() -> Self {
        V0_1_0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_version() {
        for v in ALL {
            assert_eq!(v.to_string().parse::<SpecVersion>().unwrap(), v);
        }
    }

    #[test]
    fn families() {
        assert_eq!(V0_1_0.family(), ResultFamily::V02);
        assert_eq!(V0_2_0.family(), ResultFamily::V02);
        assert_eq!(V0_3_0.family(), ResultFamily::V04);
        assert_eq!(V0_3_1.family(), ResultFamily::V04);
        assert_eq!(V0_4_0.family(), ResultFamily::V04);
        assert_eq!(V1_0_0.family(), ResultFamily::V1);
        assert_eq!(V1_1_0.family(), ResultFamily::V1);
    }

    #[test]
    fn gates() {
        assert!(!V0_3_1.allows_check());
        assert!(V0_4_0.allows_check());
        assert!(!V1_0_0.allows_status_and_gc());
        assert!(V1_1_0.allows_status_and_gc());
    }

    #[test]
    fn missing_version_is_0_1_0() {
        assert_eq!(require_supported(None, &ALL).unwrap(), V0_1_0);
    }

    #[test]
    fn malformed_and_unknown_versions_are_code_1() {
        for raw in [
            "1.0",
            "1.0.0.0",
            "",
            "x.y.z",
            "2.0.0",
            "1.0.0-rc1",
            " 1.0.0",
        ] {
            let e = require_supported(Some(raw), &ALL).unwrap_err();
            assert_eq!(e.code, 1, "{raw}");
            assert_eq!(e.msg, "incompatible CNI versions");
            assert!(e.details.contains(&format!("{raw:?}")), "{}", e.details);
            assert!(e.details.contains("1.1.0"), "{}", e.details);
        }
    }

    #[test]
    fn ordering() {
        assert!(V0_3_1 > V0_3_0 && V1_0_0 > V0_4_0);
    }
}
