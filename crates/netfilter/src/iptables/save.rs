//! Parser for `iptables-save` output.

use crate::error::{Error, Result};

/// One rule as `iptables-save` prints it: `-A <chain> <args...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    /// The chain the rule is in.
    pub chain: String,
    /// The rule's arguments after `-A <chain>`, unquoted.
    pub args: Vec<String>,
}

impl SavedRule {
    /// The value following the first occurrence of `option` (e.g. `--comment`).
    pub fn option(&self, option: &str) -> Option<&str> {
        let pos = self.args.iter().position(|a| a == option)?;
        self.args.get(pos + 1).map(String::as_str)
    }

    /// The jump (`-j`) or goto (`-g`) target.
    pub fn target(&self) -> Option<&str> {
        self.option("-j").or_else(|| self.option("-g"))
    }

    /// The `-m comment --comment` text.
    pub fn comment(&self) -> Option<&str> {
        self.option("--comment")
    }
}

/// One table read with `iptables-save -t <table>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Every chain (built-in and user-defined) in listing order.
    pub chains: Vec<String>,
    /// Every rule in listing order.
    pub rules: Vec<SavedRule>,
}

impl SavedTable {
    /// Parses the `*<table>` section of `iptables-save` output. A missing section (the
    /// table was never instantiated) yields an empty table.
    ///
    /// # Errors
    /// Malformed lines (naming the line).
    pub fn parse(text: &str, table: &str, tool: &str) -> Result<SavedTable> {
        let header = format!("*{table}");
        let mut out = SavedTable::default();
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim_end();
            if !inside {
                inside = line == header;
                continue;
            }
            if line == "COMMIT" {
                break;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                out.chains.push(name.to_owned());
            } else if line.starts_with("-A ") {
                let mut args = tokenize(line).map_err(|detail| Error::Parse {
                    tool: tool.to_owned(),
                    detail: format!("{detail} in line {line:?}"),
                })?;
                if args.len() < 2 {
                    return Err(Error::Parse {
                        tool: tool.to_owned(),
                        detail: format!("rule without chain: {line:?}"),
                    });
                }
                let chain = args.remove(1);
                args.remove(0);
                out.rules.push(SavedRule { chain, args });
            } else {
                return Err(Error::Parse {
                    tool: tool.to_owned(),
                    detail: format!("unexpected line {line:?}"),
                });
            }
        }
        Ok(out)
    }

    /// Whether `chain` exists.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }

    /// The rules of `chain`, in order.
    pub fn rules_in<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedRule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }

    /// Whether `chain` holds a rule with exactly these arguments.
    pub fn contains<S: AsRef<str>>(&self, chain: &str, args: &[S]) -> bool {
        self.rules_in(chain).any(|r| same_args(&r.args, args))
    }

    /// Every rule (in any chain) jumping or going to `target`.
    pub fn jumps_to<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a SavedRule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.target() == Some(target))
    }
}

/// Token-wise equality of argument vectors.
pub(crate) fn same_args<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_ref() == y.as_ref())
}

/// Splits a line the way `iptables-restore` does: whitespace separates, `"` quotes, and
/// a backslash takes the next character literally.
///
/// # Errors
/// An unterminated quote or a trailing backslash.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or("trailing backslash")?;
                cur.push(next);
                in_token = true;
            }
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    if in_token {
        tokens.push(cur);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"ccnet\" id: \"ctr1\"" -m multiport --dports 8080,9090 -j CNI-DN-fe994aa6f38cd8a2c97f6
COMMIT
# Completed
"#;

    #[test]
    fn parses_chains_rules_and_quoted_comments() {
        let t = SavedTable::parse(SAVE, "nat", "iptables-save").unwrap();
        assert_eq!(t.chains, ["PREROUTING", "POSTROUTING", "CNI-HOSTPORT-DNAT"]);
        assert_eq!(t.rules.len(), 2);
        let entry = &t.rules[1];
        assert_eq!(entry.chain, "CNI-HOSTPORT-DNAT");
        assert_eq!(entry.comment(), Some("dnat name: \"ccnet\" id: \"ctr1\""));
        assert_eq!(entry.target(), Some("CNI-DN-fe994aa6f38cd8a2c97f6"));
        assert_eq!(t.jumps_to("CNI-HOSTPORT-DNAT").count(), 1);
        assert!(t.contains(
            "PREROUTING",
            &[
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                "CNI-HOSTPORT-DNAT"
            ]
        ));
        assert!(!t.contains("PREROUTING", &["-j", "CNI-HOSTPORT-DNAT"]));
    }

    #[test]
    fn missing_table_is_empty_and_garbage_fails() {
        assert_eq!(
            SavedTable::parse("", "nat", "x").unwrap(),
            SavedTable::default()
        );
        assert!(SavedTable::parse("*nat\nbogus\nCOMMIT\n", "nat", "x").is_err());
        assert!(tokenize("a \"b").is_err());
        assert_eq!(tokenize(r#"a "b c" d\"e"#).unwrap(), ["a", "b c", "d\"e"]);
    }
}
