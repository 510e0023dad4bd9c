//! Builder for `iptables-restore --noflush` input.

use std::fmt::Write as _;

/// Quotes one argument exactly like `iptables-save` prints it: bare when it consists only
/// of `[A-Za-z0-9_-]`, otherwise in double quotes with `"`, `\` and `'` backslash-escaped.
pub fn quote(arg: &str) -> String {
    let bare = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Renders an argument vector, quoting only where `iptables-save` would. Arguments that
/// are plain option syntax (addresses, port lists, `0x2000/0x2000`) stay unquoted.
fn render_args<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| {
            let a = a.as_ref();
            if !a.is_empty()
                && a.chars()
                    .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\\' | '\''))
            {
                a.to_owned()
            } else {
                quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The changes to one table, applied in one `iptables-restore --noflush` run.
///
/// Declaring a chain (`:NAME - [0:0]`) creates it, or, if it exists, flushes it (that is
/// what `--noflush` restore does with a user-chain declaration), so only declare chains
/// that are absent or meant to be emptied, and never a chain other operations share:
/// one absent when the table was read may have been created and filled by a concurrent
/// operation since (use [`Script::new_chain`], which fails instead).
#[derive(Debug, Clone)]
pub struct Script {
    table: String,
    declarations: Vec<String>,
    commands: Vec<String>,
}

impl Script {
    /// An empty script for `table`.
    pub fn new(table: &str) -> Script {
        Script {
            table: table.to_owned(),
            declarations: Vec::new(),
            commands: Vec::new(),
        }
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.declarations.is_empty() && self.commands.is_empty()
    }

    /// Creates `chain` (flushes it if it already exists).
    pub fn declare_chain(&mut self, chain: &str) -> &mut Self {
        let line = format!(":{chain} - [0:0]");
        if !self.declarations.contains(&line) {
            self.declarations.push(line);
        }
        self
    }

    /// One rule command: `head` (`-A chain`, ...) and the rule's arguments.
    fn rule<S: AsRef<str>>(&mut self, head: String, args: &[S]) -> &mut Self {
        self.commands.push(format!("{head} {}", render_args(args)));
        self
    }

    /// `-A chain args...`.
    pub fn append<S: AsRef<str>>(&mut self, chain: &str, args: &[S]) -> &mut Self {
        self.rule(format!("-A {chain}"), args)
    }

    /// `-I chain position args...` (position counts from 1).
    pub fn insert<S: AsRef<str>>(&mut self, chain: &str, position: u32, args: &[S]) -> &mut Self {
        self.rule(format!("-I {chain} {position}"), args)
    }

    /// `-N chain`: creates `chain`; the whole restore fails if it already exists.
    pub fn new_chain(&mut self, chain: &str) -> &mut Self {
        self.commands.push(format!("-N {chain}"));
        self
    }

    /// `-C chain args...`: the whole restore fails unless the rule exists.
    pub fn check<S: AsRef<str>>(&mut self, chain: &str, args: &[S]) -> &mut Self {
        self.rule(format!("-C {chain}"), args)
    }

    /// `-D chain args...` (the rule must exist, or the whole restore fails).
    pub fn delete<S: AsRef<str>>(&mut self, chain: &str, args: &[S]) -> &mut Self {
        self.rule(format!("-D {chain}"), args)
    }

    /// `-F chain`.
    pub fn flush(&mut self, chain: &str) -> &mut Self {
        self.commands.push(format!("-F {chain}"));
        self
    }

    /// `-X chain` (must be empty and unreferenced by then).
    pub fn delete_chain(&mut self, chain: &str) -> &mut Self {
        self.commands.push(format!("-X {chain}"));
        self
    }

    /// The `iptables-restore` input: `*table`, declarations, commands, `COMMIT`.
    pub fn render(&self) -> String {
        let mut out = format!("*{}\n", self.table);
        for line in self.declarations.iter().chain(&self.commands) {
            let _ = writeln!(out, "{line}");
        }
        out.push_str("COMMIT\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iptables::tokenize;

    #[test]
    fn quoting_matches_iptables_save() {
        assert_eq!(quote("CNI-HOSTPORT-MASQ"), "CNI-HOSTPORT-MASQ");
        assert_eq!(
            quote("CNI portfwd masquerade mark"),
            "\"CNI portfwd masquerade mark\""
        );
        assert_eq!(
            quote(r#"dnat name: "ccnet" id: "ctr1""#),
            r#""dnat name: \"ccnet\" id: \"ctr1\"""#
        );
        assert_eq!(quote("it's"), r#""it\'s""#);
        assert_eq!(quote(""), "\"\"");
        for s in ["a b", r#"x"y\z'w"#, "plain"] {
            assert_eq!(tokenize(&quote(s)).unwrap(), [s]);
        }
    }

    #[test]
    fn renders_declarations_first() {
        let mut s = Script::new("nat");
        assert!(s.is_empty());
        s.append("X", &["-m", "comment", "--comment", "a b", "-j", "ACCEPT"]);
        s.declare_chain("X").declare_chain("X");
        s.insert("POSTROUTING", 1, &["-j", "X"])
            .delete("Y", &["-j", "X"])
            .flush("Z")
            .delete_chain("Z");
        assert_eq!(
            s.render(),
            "*nat\n:X - [0:0]\n-A X -m comment --comment \"a b\" -j ACCEPT\n-I POSTROUTING 1 -j X\n-D Y -j X\n-F Z\n-X Z\nCOMMIT\n"
        );
    }
}
