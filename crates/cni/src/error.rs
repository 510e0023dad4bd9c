//! CNI error results (SPEC.md, "Error" section).
//!
//! Every failure a plugin reports is one [`Error`]: a spec code, a message and
//! details. The skel prints it on stdout as
//! `{"cniVersion": …, "code": …, "msg": …, "details": …}` and exits with status 1.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Error codes defined by the CNI specification (1-99 are reserved for it),
/// plus the reference implementation's "internal error" 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    /// 1: the configuration's `cniVersion` is not supported, or the command
    /// is not allowed at that version.
    IncompatibleVersion = 1,
    /// 2: a configuration field has a value the plugin does not support; the
    /// message names the key and the value.
    UnsupportedField = 2,
    /// 3: the container is unknown or does not exist.
    UnknownContainer = 3,
    /// 4: a required environment variable is missing or invalid; the message
    /// names the variables.
    InvalidEnv = 4,
    /// 5: an I/O failure, such as reading stdin.
    Io = 5,
    /// 6: the input could not be decoded (not JSON, wrong shape).
    Decode = 6,
    /// 7: the network configuration is invalid.
    InvalidConfig = 7,
    /// 11: a transient condition; the runtime should try again later.
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADD requests.
    NotAvailable = 50,
    /// 51: STATUS: not available, and existing containers may be degraded.
    LimitedConnectivity = 51,
    /// 999: an unexpected internal failure (a bug, a kernel surprise).
    Internal = 999,
}

impl Code {
    /// The numeric value printed in the error object.
    pub const fn value(self) -> u32 {
        self as u32
    }
}

/// The first code a plugin may use for its own documented conditions.
pub const FIRST_PLUGIN_CODE: u32 = 100;

/// The plugin-specific codes (100+) this suite uses, the same in every plugin
/// so a runtime or an operator can act on them. The reference plugins report
/// all of these as 999.
pub mod codes {
    /// ADD: a range set has no free address. Not 11 (it lasts until a
    /// container is deleted, so a runtime retrying on 11 would spin) and not
    /// 50 (reserved for STATUS).
    pub const ADDRESS_POOL_EXHAUSTED: u32 = 100;
    /// ADD: a requested address is reserved by another attachment (or is the
    /// gateway).
    pub const ADDRESS_UNAVAILABLE: u32 = 101;
    /// ADD: the attachment already holds an address in the range set.
    pub const DUPLICATE_ALLOCATION: u32 = 102;
    /// CHECK: what the attachment's `prevResult` describes is missing or
    /// differs from what exists (addresses, links, routes, rules).
    pub const CHECK_MISMATCH: u32 = 103;
}

/// A CNI error: what a plugin prints on stdout when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The spec code (1-99), a plugin-specific code (100+), or 999.
    pub code: u32,
    /// A short human-readable message.
    pub msg: String,
    /// Longer context; may be empty.
    #[serde(default)]
    pub details: String,
}

impl Error {
    /// An error with a spec code and a message.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code: code.value(),
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// A plugin-specific error; `code` should be 100 or more and documented
    /// by the plugin.
    pub fn plugin(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Code 2: the field `key` has the unsupported value `value`.
    pub fn unsupported_field(key: &str, value: impl fmt::Display) -> Self {
        Self::new(
            Code::UnsupportedField,
            format!("unsupported value \"{value}\" for field \"{key}\""),
        )
    }

    /// Code 7: invalid network configuration.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }

    /// Code 4: an invalid or missing environment variable.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidEnv, msg)
    }

    /// Code 5: an I/O failure while doing `what`.
    pub fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Self::new(Code::Io, format!("{what}: {err}"))
    }

    /// Code 6: the input could not be decoded.
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(Code::Decode, msg)
    }

    /// Code 11: try again later.
    pub fn try_again(msg: impl Into<String>) -> Self {
        Self::new(Code::TryAgainLater, msg)
    }

    /// Code 999: an unexpected internal failure.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(Code::Internal, msg)
    }

    /// Replace the details.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Prefix the message with `ctx: ` (keeps code and details).
    #[must_use]
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// Whether this error has the given spec code.
    pub fn is(&self, code: Code) -> bool {
        self.code == code.value()
    }

    /// The error object as printed on stdout (keys in the spec's order:
    /// `cniVersion, code, msg, details`), for config version `cni_version`.
    pub fn to_output(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Printed<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            details: &'a str,
        }
        let printed = Printed {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        crate::pretty_json(&printed).unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"error","details":""}}"#,
                self.code
            )
        })
    }

    /// The error object as a JSON value, for config version `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}; {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for Error {}

/// Result with a CNI [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to any result whose error converts into a CNI [`Error`].
pub trait ResultExt<T> {
    /// Prefix the error message with `ctx`.
    ///
    /// # Errors
    /// Returns the original error with the message prefixed.
    fn context(self, ctx: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_spec_values() {
        let table = [
            (Code::IncompatibleVersion, 1),
            (Code::UnsupportedField, 2),
            (Code::UnknownContainer, 3),
            (Code::InvalidEnv, 4),
            (Code::Io, 5),
            (Code::Decode, 6),
            (Code::InvalidConfig, 7),
            (Code::TryAgainLater, 11),
            (Code::NotAvailable, 50),
            (Code::LimitedConnectivity, 51),
            (Code::Internal, 999),
        ];
        for (code, value) in table {
            assert_eq!(code.value(), value, "{code:?}");
        }
    }

    #[test]
    fn json_has_all_four_keys() {
        let e = Error::invalid_config("bad").with_details("why");
        let v = e.to_json("1.0.0");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad");
        assert_eq!(v["details"], "why");
    }

    #[test]
    fn printed_error_keeps_spec_key_order() {
        let text = Error::try_again("busy")
            .with_details("lock")
            .to_output("0.4.0");
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(
            pos("cniVersion") < pos("code")
                && pos("code") < pos("msg")
                && pos("msg") < pos("details"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            Error::try_again("busy")
                .with_details("lock")
                .to_json("0.4.0")
        );
    }

    #[test]
    fn unsupported_field_names_key_and_value() {
        let e = Error::unsupported_field("ipMasqBackend", "pf");
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("ipMasqBackend") && e.msg.contains("pf"),
            "{e}"
        );
    }

    #[test]
    fn context_prefixes_message_and_keeps_code() {
        let r: Result<()> = Err(Error::try_again("lock busy"));
        let e = r.context("allocate").unwrap_err();
        assert_eq!(e.msg, "allocate: lock busy");
        assert!(e.is(Code::TryAgainLater));
    }

    #[test]
    fn error_parses_from_plugin_output_without_details() {
        let e: Error = serde_json::from_str(r#"{"code": 11, "msg": "busy"}"#).unwrap();
        assert_eq!(e, Error::try_again("busy"));
    }
}
