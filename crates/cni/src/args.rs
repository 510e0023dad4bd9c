//! `CNI_ARGS`: `K=V;K2=V2` pairs (SPEC.md "Parameters", CONVENTIONS.md).

use crate::error::{Error, Result};

/// Parsed `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parse `K=V;K2=V2`. Empty segments (such as a trailing `;`) are
    /// skipped; a value may itself contain `=` (split at the first one).
    ///
    /// # Errors
    /// Code 4 naming `CNI_ARGS` when a segment has no `=` or an empty key.
    pub fn parse(raw: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for segment in raw.split(';').filter(|s| !s.is_empty()) {
            match segment.split_once('=') {
                Some((k, v)) if !k.is_empty() => pairs.push((k.to_owned(), v.to_owned())),
                _ => {
                    return Err(Error::invalid_env(format!(
                        "CNI_ARGS: invalid pair {segment:?} (expected KEY=VALUE)"
                    )));
                }
            }
        }
        Ok(Self { pairs })
    }

    /// The value of `key` (case-sensitive; the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether `IgnoreUnknown` is set to `1` or `true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
    }

    /// Reject keys other than `known` (and `IgnoreUnknown`) unless
    /// `IgnoreUnknown` is set.
    ///
    /// # Errors
    /// Code 4 naming `CNI_ARGS` and the unknown pairs.
    pub fn require_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown() {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
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
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5/24;").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5/24"));
        assert_eq!(a.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(a.get("ip"), None, "keys are case-sensitive");
        assert!(a.ignore_unknown());
        assert_eq!(a.pairs().len(), 3);
    }

    #[test]
    fn empty_is_no_pairs() {
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(CniArgs::parse("A=b=c").unwrap().get("A"), Some("b=c"));
    }

    #[test]
    fn invalid_pairs_are_code_4_naming_cni_args() {
        for raw in ["NOEQUALS", "A=1;B", "=v"] {
            let e = CniArgs::parse(raw).unwrap_err();
            assert_eq!(e.code, 4, "{raw}");
            assert!(e.msg.starts_with("CNI_ARGS: invalid pair"), "{}", e.msg);
        }
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
        let a = CniArgs::parse("IgnoreUnknown=0;FOO=bar").unwrap();
        assert!(a.require_known(&["IP"]).is_err());
    }
}
