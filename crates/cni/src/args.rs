//! `CNI_ARGS`: `K=V;K2=V2` pairs (SPEC.md "Parameters", CONVENTIONS.md),
//! read as the Go library's `types.LoadArgs` reads them.
//!
//! The variable is taken as bytes (the environment need not be UTF-8): a
//! value is checked to be UTF-8 only when the plugin asks for its key, so
//! bytes in the value of a key the plugin ignores do no harm, and those in a
//! key it uses are an error rather than a silently dropped argument.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

/// Parsed `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(OsString, OsString)>,
}

impl CniArgs {
    /// Parse `K=V;K2=V2` given as text (see [`CniArgs::parse_os`]).
    ///
    /// # Errors
    /// As [`CniArgs::parse_os`].
    pub fn parse(raw: &str) -> Result<Self> {
        Self::parse_os(OsStr::new(raw))
    }

    /// Parse `K=V;K2=V2`. Like `types.LoadArgs`, every `;`-separated segment
    /// must be exactly `KEY=VALUE`: one `=`, a non-empty key (an empty
    /// segment, as from a trailing `;`, is not a pair). The empty string is
    /// no pairs.
    ///
    /// # Errors
    /// Code 4 naming `CNI_ARGS` and the first invalid pair.
    pub fn parse_os(raw: &OsStr) -> Result<Self> {
        let bytes = raw.as_bytes();
        let mut pairs = Vec::new();
        if bytes.is_empty() {
            return Ok(Self { pairs });
        }
        for segment in bytes.split(|&b| b == b';') {
            let mut parts = segment.split(|&b| b == b'=');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => pairs.push((
                    OsStr::from_bytes(k).to_owned(),
                    OsStr::from_bytes(v).to_owned(),
                )),
                _ => {
                    let segment = String::from_utf8_lossy(segment);
                    return Err(Error::invalid_env(format!(
                        "CNI_ARGS: invalid pair {segment:?} (expected KEY=VALUE)"
                    )));
                }
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `key` (case-sensitive; the last one wins).
    ///
    /// # Errors
    /// Code 4 naming `CNI_ARGS` and the key when the value is not UTF-8.
    pub fn get(&self, key: &str) -> Result<Option<&str>> {
        let Some((_, value)) = self.pairs.iter().rev().find(|(k, _)| k == key) else {
            return Ok(None);
        };
        value.to_str().map(Some).ok_or_else(|| {
            Error::invalid_env(format!(
                "CNI_ARGS: the value of {key} is not valid UTF-8: {:?}",
                value.to_string_lossy()
            ))
        })
    }

    /// All pairs, in order, as given.
    pub fn pairs(&self) -> &[(OsString, OsString)] {
        &self.pairs
    }

    /// Whether `IgnoreUnknown` is set: `1` or `true` (any case); `0`,
    /// `false` or absent mean no.
    ///
    /// # Errors
    /// Code 4 for any other value, as `types.UnmarshallableBool` rejects it.
    pub fn ignore_unknown(&self) -> Result<bool> {
        let Some(v) = self.get("IgnoreUnknown")? else {
            return Ok(false);
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            other => Err(Error::invalid_env(format!(
                "CNI_ARGS: error parsing value of pair \"IgnoreUnknown={v}\": boolean unmarshal error: invalid input {other}"
            ))),
        }
    }

    /// Reject keys other than `known` (and `IgnoreUnknown`) unless
    /// `IgnoreUnknown` is set. `IgnoreUnknown` only lets unknown keys
    /// through: malformed pairs and bad values of known keys are still
    /// errors.
    ///
    /// # Errors
    /// Code 4 naming `CNI_ARGS` and the unknown pairs, or an invalid
    /// `IgnoreUnknown`.
    pub fn require_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown()? {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.iter().any(|n| k == n))
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_env(format!(
                "CNI_ARGS: unknown args {unknown:?} (set IgnoreUnknown=1 to allow them)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5/24").unwrap();
        assert_eq!(a.get("IP").unwrap(), Some("10.0.0.5/24"));
        assert_eq!(a.get("K8S_POD_NAME").unwrap(), Some("web"));
        assert_eq!(a.get("ip").unwrap(), None, "keys are case-sensitive");
        assert!(a.ignore_unknown().unwrap());
        assert_eq!(a.pairs().len(), 3);
        let a = CniArgs::parse("IP=10.0.0.5;IP=10.0.0.6;EMPTY=").unwrap();
        assert_eq!(a.get("IP").unwrap(), Some("10.0.0.6"), "the last one wins");
        assert_eq!(a.get("EMPTY").unwrap(), Some(""));
    }

    #[test]
    fn empty_is_no_pairs() {
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }

    #[test]
    fn invalid_pairs_are_code_4_naming_cni_args() {
        for raw in [
            "NOEQUALS", "A=1;B", "=v", "A=b=c", "A=1;", ";A=1", "A=1;;B=2", ";",
        ] {
            let e = CniArgs::parse(raw).unwrap_err();
            assert_eq!(e.code, 4, "{raw}");
            assert!(e.msg.starts_with("CNI_ARGS: invalid pair"), "{}", e.msg);
        }
        let e = CniArgs::parse("IgnoreUnknown=1;A=b=c").unwrap_err();
        assert_eq!(
            e.msg,
            r#"CNI_ARGS: invalid pair "A=b=c" (expected KEY=VALUE)"#
        );
    }

    #[test]
    fn non_utf8_values_are_an_error_only_where_used() {
        let raw = OsStr::from_bytes(b"IgnoreUnknown=1;K8S_POD_NAME=\xff\xfe;IP=10.0.0.\xff");
        let a = CniArgs::parse_os(raw).unwrap();
        a.require_known(&["IP"]).unwrap();
        let e = a.get("IP").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(
            e.msg.contains("CNI_ARGS") && e.msg.contains("IP") && e.msg.contains("UTF-8"),
            "{}",
            e.msg
        );
        // A non-UTF-8 key is just an unknown key.
        let a = CniArgs::parse_os(OsStr::from_bytes(b"\xff=1")).unwrap();
        assert_eq!(a.require_known(&["IP"]).unwrap_err().code, 4);
        assert_eq!(a.get("IP").unwrap(), None);
    }

    #[test]
    fn unknown_keys_rejected_unless_ignore_unknown() {
        let a = CniArgs::parse("IP=10.0.0.5;FOO=bar").unwrap();
        let e = a.require_known(&["IP"]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(
            e.msg.contains("FOO=bar") && e.msg.contains("CNI_ARGS"),
            "{}",
            e.msg
        );
        for flag in ["1", "true", "True", "TRUE"] {
            let a = CniArgs::parse(&format!("IgnoreUnknown={flag};FOO=bar")).unwrap();
            a.require_known(&["IP"]).unwrap();
        }
        for flag in ["0", "false", "FALSE"] {
            let a = CniArgs::parse(&format!("IgnoreUnknown={flag};FOO=bar")).unwrap();
            assert!(a.require_known(&["IP"]).is_err());
        }
        let a = CniArgs::parse("IgnoreUnknown=yes;FOO=bar").unwrap();
        let e = a.require_known(&["IP"]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("boolean unmarshal error"), "{}", e.msg);
    }
}
