//! The CNI contract shared by every plugin of the suite: spec versions
//! ([`version`]), results in every layout ([`types`]), network configuration
//! ([`conf`]), JSON decoding with Go's key matching ([`gojson`]), errors
//! with the spec's codes ([`error`]), `CNI_ARGS` ([`args`]), the plugin
//! entry point ([`skel`]) and delegation ([`invoke`]). It follows the CNI
//! SPEC.md 1.1.0 and CONVENTIONS.md of containernetworking/cni, and the Go
//! library's package names.

pub mod args;
pub mod conf;
pub mod de;
pub mod error;
pub mod gojson;
pub mod invoke;
pub mod skel;
pub mod types;
pub mod version;

pub use args::CniArgs;
pub use conf::{GcAttachment, NetConf, PortMapping, RangeConf, RuntimeConfig};
pub use error::{Code, Error, Result, ResultExt};
pub use skel::{CmdArgs, Command, Plugin, VERSION};
pub use types::{Dns, Interface, IpConfig, Route, Success};
pub use version::SpecVersion;

/// JSON with a 4-space indent, as the reference plugins print.
///
/// # Errors
/// Code 999 if the value cannot be encoded (never for plain JSON values).
pub fn pretty_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .map_err(|e| Error::internal(format!("failed to encode JSON: {e}")))?;
    String::from_utf8(buf).map_err(|e| Error::internal(format!("JSON is not UTF-8: {e}")))
}
