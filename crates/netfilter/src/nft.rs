//! nftables access: one `nft -j -f -` transaction per operation (built with the typed
//! schema of the `nftables` crate), and `nft -j list table` for reading.
//!
//! Listings are read into a small [`ListedTable`] (chains, rule handles, comments and the
//! raw JSON expression) rather than the full typed schema, so that unexpected expressions
//! written by other tools never make a DEL fail.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec;

/// The nftables command-line tool.
pub(crate) const NFT: &str = "nft";

/// A transaction being built: every command is applied in one `nft -j -f -` run.
#[derive(Debug)]
pub struct Tx {
    batch: Batch<'static>,
    len: usize,
}

impl Default for Tx {
    fn default() -> Self {
        Tx::new()
    }
}

fn s(v: &str) -> Cow<'static, str> {
    Cow::Owned(v.to_owned())
}

fn plain_chain(family: NfFamily, table: &str, name: &str) -> Chain<'static> {
    Chain {
        family,
        table: s(table),
        name: s(name),
        newname: None,
        handle: None,
        _type: None,
        hook: None,
        prio: None,
        dev: None,
        policy: None,
    }
}

/// Hook parameters of a base chain.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// Chain type.
    pub kind: NfChainType,
    /// Hook.
    pub hook: NfHook,
    /// Priority.
    pub prio: i32,
}

impl Tx {
    /// An empty transaction.
    pub fn new() -> Tx {
        Tx {
            batch: Batch::new(),
            len: 0,
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `add table` (no-op if it exists).
    pub fn add_table(&mut self, family: NfFamily, name: &str) -> &mut Self {
        self.len += 1;
        self.batch.add(NfListObject::Table(Table {
            family,
            name: s(name),
            handle: None,
        }));
        self
    }

    /// `add chain` (regular, or a base chain with `hook`; no-op if it exists).
    pub fn add_chain(
        &mut self,
        family: NfFamily,
        table: &str,
        name: &str,
        hook: Option<Hook>,
    ) -> &mut Self {
        let mut chain = plain_chain(family, table, name);
        if let Some(h) = hook {
            chain._type = Some(h.kind);
            chain.hook = Some(h.hook);
            chain.prio = Some(h.prio);
            chain.policy = Some(NfChainPolicy::Accept);
        }
        self.len += 1;
        self.batch.add(NfListObject::Chain(chain));
        self
    }

    /// `flush chain`.
    pub fn flush_chain(&mut self, family: NfFamily, table: &str, name: &str) -> &mut Self {
        self.len += 1;
        self.batch
            .add_cmd(NfCmd::Flush(FlushObject::Chain(plain_chain(
                family, table, name,
            ))));
        self
    }

    /// `delete chain` (must exist; pair with [`Tx::add_chain`] for idempotency).
    pub fn delete_chain(&mut self, family: NfFamily, table: &str, name: &str) -> &mut Self {
        self.len += 1;
        self.batch
            .delete(NfListObject::Chain(plain_chain(family, table, name)));
        self
    }

    /// Idempotent chain removal in one transaction: add, flush, delete.
    pub fn remove_chain(&mut self, family: NfFamily, table: &str, name: &str) -> &mut Self {
        self.add_chain(family, table, name, None)
            .flush_chain(family, table, name)
            .delete_chain(family, table, name)
    }

    /// `add rule` with statements and an optional comment.
    pub fn add_rule(
        &mut self,
        family: NfFamily,
        table: &str,
        chain: &str,
        expr: Vec<Statement<'static>>,
        comment: Option<&str>,
    ) -> &mut Self {
        self.len += 1;
        self.batch.add(NfListObject::Rule(Rule {
            family,
            table: s(table),
            chain: s(chain),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: comment.map(s),
        }));
        self
    }

    /// `delete rule ... handle N`.
    pub fn delete_rule(
        &mut self,
        family: NfFamily,
        table: &str,
        chain: &str,
        handle: u32,
    ) -> &mut Self {
        self.len += 1;
        self.batch.delete(NfListObject::Rule(Rule {
            family,
            table: s(table),
            chain: s(chain),
            expr: Cow::Owned(Vec::new()),
            handle: Some(handle),
            index: None,
            comment: None,
        }));
        self
    }

    /// The JSON document that [`Tx::apply`] feeds to `nft -j -f -`.
    ///
    /// # Errors
    /// Serialization failure (not expected for schema types).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(&self.batch.clone().to_nftables()).map_err(|e| Error::Parse {
            tool: NFT.to_owned(),
            detail: format!("cannot serialize transaction: {e}"),
        })
    }

    /// Applies the transaction with one `nft -j -f -` (no-op when empty).
    ///
    /// # Errors
    /// The tool's failure with its stderr; `op` names what was attempted.
    pub fn apply(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let json = self.to_json()?;
        exec::run(NFT, &["-j", "-f", "-"], Some(&json), op).map(drop)
    }
}

/// A rule read back from `nft -j list table`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRule {
    /// The chain holding it.
    pub chain: String,
    /// Its handle (for deletion).
    pub handle: u32,
    /// Its comment.
    pub comment: Option<String>,
    /// The raw JSON statements.
    pub expr: Value,
}

impl ListedRule {
    /// Whether the rule's statements mention `needle` as a JSON string value
    /// (an address, a chain name, an interface name...).
    pub fn mentions(&self, needle: &str) -> bool {
        fn walk(v: &Value, needle: &str) -> bool {
            match v {
                Value::String(s) => s == needle,
                Value::Array(a) => a.iter().any(|x| walk(x, needle)),
                Value::Object(o) => o.values().any(|x| walk(x, needle)),
                _ => false,
            }
        }
        walk(&self.expr, needle)
    }

    /// Whether the rule's statements contain the number `n` anywhere (e.g. a port).
    pub fn mentions_number(&self, n: u64) -> bool {
        fn walk(v: &Value, n: u64) -> bool {
            match v {
                Value::Number(x) => x.as_u64() == Some(n),
                Value::Array(a) => a.iter().any(|x| walk(x, n)),
                Value::Object(o) => o.values().any(|x| walk(x, n)),
                _ => false,
            }
        }
        walk(&self.expr, n)
    }
}

/// A table read back from `nft -j list table`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedTable {
    /// Chain names.
    pub chains: Vec<String>,
    /// Rules in listing order.
    pub rules: Vec<ListedRule>,
}

impl ListedTable {
    /// Parses `nft -j list table` output.
    ///
    /// # Errors
    /// Invalid JSON or a rule without a handle.
    pub fn parse(json: &str) -> Result<ListedTable> {
        let bad = |detail: String| Error::Parse {
            tool: NFT.to_owned(),
            detail,
        };
        let doc: Value =
            serde_json::from_str(json).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let mut out = ListedTable::default();
        let items = doc
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"nftables\" array".to_owned()))?;
        for item in items {
            if let Some(chain) = item.get("chain") {
                if let Some(name) = chain.get("name").and_then(Value::as_str) {
                    out.chains.push(name.to_owned());
                }
            } else if let Some(rule) = item.get("rule") {
                let chain = rule
                    .get("chain")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let handle = rule
                    .get("handle")
                    .and_then(Value::as_u64)
                    .and_then(|h| u32::try_from(h).ok())
                    .ok_or_else(|| bad(format!("rule without handle: {rule}")))?;
                out.rules.push(ListedRule {
                    chain: chain.to_owned(),
                    handle,
                    comment: rule
                        .get("comment")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    expr: rule.get("expr").cloned().unwrap_or(Value::Null),
                });
            }
        }
        Ok(out)
    }

    /// Whether `chain` exists.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }

    /// Rules of `chain`.
    pub fn rules_in<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a ListedRule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

/// The `nft` spelling of a family.
pub fn family_name(family: NfFamily) -> &'static str {
    match family {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
    }
}

/// Lists one table with `nft -j list table <family> <name>`; `None` when it does not exist.
///
/// # Errors
/// Any other failure of the tool, or unparseable output.
pub fn list_table(family: NfFamily, name: &str) -> Result<Option<ListedTable>> {
    let fam = family_name(family);
    match exec::run(
        NFT,
        &["-j", "list", "table", fam, name],
        None,
        &format!("listing table {fam} {name}"),
    ) {
        Ok(out) => ListedTable::parse(&out).map(Some),
        Err(Error::Tool { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Lists the `wanted` tables for teardown: nothing is run when `nft` is not installed
/// (a `stat` on `PATH`; every entry `None`), otherwise one `nft -j list table` per table.
/// The result is in the order of `wanted`; `None` = absent.
///
/// `nft list tables` is deliberately not used to skip absent tables: nft 1.0.6 fetches
/// the whole ruleset for it (measured 152 ms with 10,000 iptables-nft rules, against
/// 5-10 ms for listing one absent table), so it does not stay flat as the node fills.
///
/// # Errors
/// A failure of the tool other than a table being absent, or unparseable output.
pub fn list_tables_if_present(
    wanted: &[(NfFamily, &str)],
) -> Result<Vec<(NfFamily, Option<ListedTable>)>> {
    if exec::find_tool(NFT).is_none() {
        return Ok(wanted.iter().map(|&(f, _)| (f, None)).collect());
    }
    wanted
        .iter()
        .map(|&(family, name)| Ok((family, list_table(family, name)?)))
        .collect()
}

/// Probes nftables: `nft` runs and can list tables.
///
/// # Errors
/// Why nftables is unusable.
pub fn usable() -> Result<()> {
    exec::run(NFT, &["list", "tables"], None, "probing nftables").map(drop)
}

/// Expression and statement constructors for the rules this crate writes.
pub mod expr {
    use super::*;

    /// `<proto> <field>` payload reference.
    pub fn payload(proto: &str, field: &str) -> Expression<'static> {
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: s(proto),
                field: s(field),
            },
        )))
    }

    /// `meta <key>`.
    pub fn meta(key: MetaKey) -> Expression<'static> {
        Expression::Named(NamedExpression::Meta(Meta { key }))
    }

    /// A string immediate.
    pub fn string(v: &str) -> Expression<'static> {
        Expression::String(s(v))
    }

    /// An address immediate.
    pub fn addr(ip: IpAddr) -> Expression<'static> {
        Expression::String(Cow::Owned(ip.to_string()))
    }

    /// `addr/len`.
    pub fn prefix(ip: IpAddr, len: u8) -> Expression<'static> {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr(ip)),
            len: u32::from(len),
        }))
    }

    /// `fib daddr type`.
    pub fn fib_daddr_type() -> Expression<'static> {
        let mut flags = HashSet::new();
        flags.insert(FibFlag::Daddr);
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags,
        }))
    }

    fn matching(
        left: Expression<'static>,
        right: Expression<'static>,
        op: Operator,
    ) -> Statement<'static> {
        Statement::Match(Match { left, right, op })
    }

    /// `left == right`.
    pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
        matching(left, right, Operator::EQ)
    }

    /// `left != right`.
    pub fn ne(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
        matching(left, right, Operator::NEQ)
    }

    /// `jump <chain>`.
    pub fn jump(chain: &str) -> Statement<'static> {
        Statement::Jump(JumpTarget { target: s(chain) })
    }

    /// `goto <chain>`.
    pub fn goto(chain: &str) -> Statement<'static> {
        Statement::Goto(JumpTarget { target: s(chain) })
    }

    /// `return`.
    pub fn ret() -> Statement<'static> {
        Statement::Return(None)
    }

    /// `drop`.
    pub fn drop() -> Statement<'static> {
        Statement::Drop(None)
    }

    /// `masquerade`.
    pub fn masquerade() -> Statement<'static> {
        Statement::Masquerade(None)
    }

    /// `dnat [ip|ip6] to <addr>:<port>`; `inet` tables need the family.
    pub fn dnat(ip: IpAddr, port: u16, with_family: bool) -> Statement<'static> {
        let family = with_family.then(|| {
            if ip.is_ipv4() {
                NATFamily::IP
            } else {
                NATFamily::IP6
            }
        });
        Statement::DNAT(Some(NAT {
            addr: Some(addr(ip)),
            family,
            port: Some(Expression::Number(u32::from(port))),
            flags: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_json_shape() {
        let mut tx = Tx::new();
        tx.add_table(NfFamily::IP, "t")
            .add_chain(
                NfFamily::IP,
                "t",
                "c",
                Some(Hook {
                    kind: NfChainType::NAT,
                    hook: NfHook::Prerouting,
                    prio: -100,
                }),
            )
            .remove_chain(NfFamily::IP, "t", "x")
            .add_rule(
                NfFamily::IP,
                "t",
                "c",
                vec![
                    expr::eq(expr::payload("tcp", "dport"), Expression::Number(80)),
                    expr::jump("x"),
                ],
                Some("cid"),
            )
            .delete_rule(NfFamily::IP, "t", "c", 7);
        assert_eq!(tx.len(), 7);
        let v: Value = serde_json::from_str(&tx.to_json().unwrap()).unwrap();
        let expected = serde_json::json!({"nftables": [
            {"add": {"table": {"family": "ip", "name": "t"}}},
            {"add": {"chain": {"family": "ip", "table": "t", "name": "c", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}},
            {"add": {"chain": {"family": "ip", "table": "t", "name": "x"}}},
            {"flush": {"chain": {"family": "ip", "table": "t", "name": "x"}}},
            {"delete": {"chain": {"family": "ip", "table": "t", "name": "x"}}},
            {"add": {"rule": {"family": "ip", "table": "t", "chain": "c", "comment": "cid", "expr": [
                {"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80, "op": "=="}},
                {"jump": {"target": "x"}}]}}},
            {"delete": {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 7, "expr": []}}}
        ]});
        assert_eq!(v, expected);
    }

    #[test]
    fn parses_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "t", "handle": 1}},
          {"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1}},
          {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 4, "comment": "x", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.0.2"}}, {"masquerade": null}]}}]}"#;
        let t = ListedTable::parse(json).unwrap();
        assert!(t.has_chain("c"));
        let r = t.rules_in("c").next().unwrap();
        assert_eq!((r.handle, r.comment.as_deref()), (4, Some("x")));
        assert!(r.mentions("10.0.0.2") && !r.mentions("10.0.0.3"));
        assert!(ListedTable::parse("{}").is_err());
    }
}
