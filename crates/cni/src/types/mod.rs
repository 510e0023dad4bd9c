//! The CNI ADD result (SPEC.md "Success"), held in one version-independent
//! model ([`Success`], the 1.1.0 shape) and printed or parsed in any
//! supported version's layout by the `wire` module. The model's types live
//! in the leaf module `model`, so that `wire` and this module both use them
//! without a module cycle.

mod model;
mod wire;

use crate::error::{Code, Error, Result};
use crate::version::SpecVersion;

pub use model::{Dns, Interface, IpConfig, Route, Success};

impl Success {
    /// The result in the layout of `version`, as a JSON value.
    ///
    /// # Errors
    /// Code 1 when the result cannot be expressed in that version: 0.1.0 and
    /// 0.2.0 need at least one IP address.
    pub fn to_value(&self, version: SpecVersion) -> Result<serde_json::Value> {
        wire::to_wire(self, version)?.to_value()
    }

    /// The result printed as JSON in the layout of `version` (4-space indent
    /// like the reference plugins).
    ///
    /// # Errors
    /// As [`Success::to_value`].
    pub fn to_json(&self, version: SpecVersion) -> Result<String> {
        crate::pretty_json(&wire::to_wire(self, version)?)
    }

    /// Parse a result in any supported version's layout. `default_version` is
    /// used when the JSON has no `cniVersion` (as for a `prevResult` that
    /// omits it).
    ///
    /// # Errors
    /// Code 1 for an unsupported `cniVersion`, code 6 when the JSON does not
    /// have that version's shape.
    pub fn from_value(value: &serde_json::Value, default_version: SpecVersion) -> Result<Self> {
        wire::from_value(value, default_version)
    }

    /// Parse a result from bytes (see [`Success::from_value`]).
    ///
    /// # Errors
    /// Code 6 for invalid JSON, otherwise as [`Success::from_value`].
    pub fn from_slice(bytes: &[u8], default_version: SpecVersion) -> Result<Self> {
        let v: serde_json::Value = crate::gojson::parse_slice(bytes)
            .map_err(|e| Error::new(Code::Decode, format!("failed to decode result: {e}")))?;
        Self::from_value(&v, default_version)
    }
}

#[cfg(test)]
mod tests;
