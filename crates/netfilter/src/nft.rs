//! nftables access: one transaction per operation, built with the typed schema of the
//! `nftables` crate ([`Tx`]) and committed natively as one nf_tables batch over
//! nfnetlink ([`crate::nftnl`], no process); one `nft -f -` of the same commands as
//! text only when the native encoding lacks something (a user's verbatim match
//! conditions) or the kernel refused the batch, still one atomic transaction; `nft -j -f
//! -` for what the text writer refuses (a rule comment over 128 bytes). Reads for
//! replacement and deletion are native too ([`read_table`]); CHECK lists tables with
//! `nft -j list table`.
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
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Serialize;
use serde_json::Value;

use netlink_packet_core::NLM_F_ACK;
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};

use crate::error::{Error, Result};
use crate::exec;
use crate::nfnl::Conn;
use crate::nftnl;

/// The nftables command-line tool.
pub(crate) const NFT: &str = "nft";

/// A transaction being built: every command is applied in one native nf_tables batch,
/// or one `nft` run of its text (or JSON) form ([`Tx::apply`]).
#[derive(Debug)]
pub struct Tx {
    batch: Batch<'static>,
    len: usize,
    /// Verbatim expression words of the rule added by the command at that index.
    raw: Vec<(usize, String)>,
}

impl Default for Tx {
    fn default() -> Self {
        Tx::new()
    }
}

fn s(v: &str) -> Cow<'static, str> {
    Cow::Owned(v.to_owned())
}

/// A rule of `chain` without statements, handle or comment.
fn rule(family: NfFamily, table: &str, chain: &str) -> Rule<'static> {
    Rule {
        family,
        table: s(table),
        chain: s(chain),
        expr: Cow::Owned(Vec::new()),
        handle: None,
        index: None,
        comment: None,
    }
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
            raw: Vec::new(),
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
            expr: Cow::Owned(expr),
            comment: comment.map(s),
            ..rule(family, table, chain)
        }));
        self
    }

    /// `add rule` whose statements are preceded by `raw`, nft expression words written
    /// verbatim (e.g. configured match conditions, joined with spaces). nft's JSON input
    /// cannot carry them, so a transaction holding such a rule is applied as nft text
    /// ([`Tx::to_script`]). The caller vouches that the words cannot end the rule (no
    /// newline, `;` or `#`). With no words this is [`Tx::add_rule`].
    pub fn add_rule_with_raw(
        &mut self,
        family: NfFamily,
        table: &str,
        chain: &str,
        raw: &[String],
        expr: Vec<Statement<'static>>,
        comment: Option<&str>,
    ) -> &mut Self {
        if !raw.is_empty() {
            self.raw.push((self.len, raw.join(" ")));
        }
        self.add_rule(family, table, chain, expr, comment)
    }

    /// True when a rule carries verbatim expression words: the transaction is applied
    /// as nft text, it has no JSON form.
    pub fn has_raw(&self) -> bool {
        !self.raw.is_empty()
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
            handle: Some(handle),
            ..rule(family, table, chain)
        }));
        self
    }

    /// The JSON document that [`Tx::apply`] feeds to `nft -j -f -` when the text form
    /// cannot be written.
    ///
    /// # Errors
    /// Serialization failure (not expected for schema types); [`Error::Invalid`] when a
    /// rule carries verbatim words ([`Tx::has_raw`]).
    pub fn to_json(&self) -> Result<String> {
        if self.has_raw() {
            return Err(Error::Invalid(
                "a transaction with verbatim nft expression words has no JSON form".to_owned(),
            ));
        }
        serde_json::to_string(&self.batch.clone().to_nftables()).map_err(|e| Error::Parse {
            tool: NFT.to_owned(),
            detail: format!("cannot serialize transaction: {e}"),
        })
    }

    /// The transaction as an nft script, one command a line, in order: what
    /// [`Tx::apply`] feeds to `nft -f -` when [`Tx::has_raw`]. It creates the same
    /// objects as the JSON form (same names, hooks, priorities, policies, statements
    /// and comments), so `nft list` prints the same either way.
    ///
    /// # Errors
    /// [`Error::Invalid`] for what this writer does not know how to put in text (it
    /// covers the commands of [`Tx`] and the statements of [`expr`]), for a table or
    /// chain name that is not a plain nft identifier, for a string holding `"` or a
    /// control character, and for a comment over 128 bytes (nft's text limit).
    pub fn to_script(&self) -> Result<String> {
        let mut out = String::new();
        for (i, obj) in self.batch.clone().to_nftables().objects.iter().enumerate() {
            let raw = self
                .raw
                .iter()
                .find(|(at, _)| *at == i)
                .map(|(_, w)| w.as_str());
            script::command(&mut out, obj, raw)?;
            out.push('\n');
        }
        Ok(out)
    }

    /// Applies the transaction atomically (no-op when empty): natively as one nf_tables
    /// batch ([`Tx::to_batch`]) when it has a native encoding and the native path is on
    /// ([`set_native`]); otherwise, or when the kernel refused the batch (nothing was
    /// committed; nft then reports why), in one `nft -f -` run of [`Tx::to_script`]
    /// (`nft -j -f -` of [`Tx::to_json`] when the text writer refuses the transaction).
    /// Either way all of it is committed or, on any error, none of it.
    ///
    /// # Errors
    /// The tool's failure with its stderr, or [`Error::Netlink`] when the native commit
    /// failed and `nft` is not installed or the kernel's answer was lost; `op` names what
    /// was attempted.
    pub fn apply(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        if !self.has_raw() && native_enabled() {
            match self.apply_native() {
                Ok(()) => return Ok(()),
                Err(Native::Failed(e)) => return Err(netlink_error(op, e)),
                Err(Native::NotSent(why)) => {
                    log::debug!("{op}: applied with nft: {why}");
                }
                Err(Native::Rejected(e)) => {
                    // Nothing was committed. nft gets the same commands: it fails too,
                    // with its own diagnostics, unless this encoding was the problem.
                    if exec::find_tool(NFT).is_none() {
                        return Err(netlink_error(op, e));
                    }
                    log::debug!(
                        "{op}: the kernel refused the native transaction ({e}); trying nft"
                    );
                }
            }
        }
        // nft text first: nft's JSON input drops table and chain comments. JSON only for
        // what the text writer refuses (e.g. a rule comment over 128 bytes).
        match self.to_script() {
            Ok(text) => exec::run(NFT, &["-f", "-"], Some(&text), op).map(drop),
            Err(e) if self.has_raw() => Err(e),
            Err(e) => {
                log::debug!("{op}: applied as nft JSON: {e}");
                let json = self.to_json()?;
                exec::run(NFT, &["-j", "-f", "-"], Some(&json), op).map(drop)
            }
        }
    }

    /// The native form of the transaction: one nf_tables batch
    /// ([`crate::nftnl::compile`]).
    ///
    /// # Errors
    /// Why a command has no native encoding.
    pub fn to_batch(&self) -> std::result::Result<nftnl::Batch, nftnl::compile::Unsupported> {
        if self.has_raw() {
            return Err(nftnl::compile::Unsupported(
                "verbatim nft expression words".to_owned(),
            ));
        }
        let mut batch = nftnl::Batch::default();
        for obj in self.batch.clone().to_nftables().objects.iter() {
            nftnl::compile::command(&mut batch, obj)?;
        }
        Ok(batch)
    }

    /// Commits [`Tx::to_batch`] over `NETLINK_NETFILTER`, with no fallback to `nft`.
    ///
    /// # Errors
    /// No native encoding ([`Error::Invalid`]), or the kernel's refusal
    /// ([`Error::Netlink`]).
    pub fn apply_native_only(&self, op: &str) -> Result<()> {
        match self.apply_native() {
            Ok(()) => Ok(()),
            Err(Native::NotSent(why)) => Err(Error::Invalid(format!("{op}: {why}"))),
            Err(Native::Rejected(e) | Native::Failed(e)) => Err(netlink_error(op, e)),
        }
    }

    /// Commits [`Tx::to_batch`] over `NETLINK_NETFILTER`.
    fn apply_native(&self) -> std::result::Result<(), Native> {
        let batch = self.to_batch().map_err(|u| Native::NotSent(u.0))?;
        let mut conn = Conn::open().map_err(|(step, e)| Native::NotSent(format!("{step}: {e}")))?;
        match batch.commit(&mut conn) {
            Ok(()) => Ok(()),
            Err(nftnl::CommitError::Unknown(e)) => Err(Native::Failed(e)),
            Err(e) => Err(Native::Rejected(e.into_io())),
        }
    }

    /// Dry run of [`Tx::to_script`] with `nft -c -f -`: parsed, evaluated and sent to
    /// the kernel without being committed. Changes nothing.
    ///
    /// # Errors
    /// The tool's failure with its stderr; `op` names what was attempted.
    pub fn check_script(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let text = self.to_script()?;
        exec::run(NFT, &["-c", "-f", "-"], Some(&text), op).map(drop)
    }
}

thread_local! {
    static NATIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Turns the native nf_tables path ([`Tx::apply`], [`read_table`]) on or off for the
/// calling thread; on by default. Off, every transaction and read runs `nft` as before
/// native support: for comparing the two paths (tests, benchmarks).
pub fn set_native(enabled: bool) {
    NATIVE.with(|n| n.set(enabled));
}

fn native_enabled() -> bool {
    NATIVE.with(std::cell::Cell::get)
}

/// Why a native commit did not happen.
enum Native {
    /// Nothing was sent (no native encoding, no socket): use nft.
    NotSent(String),
    /// The kernel answered with an error: nothing was committed.
    Rejected(std::io::Error),
    /// Sent, but the outcome is unknown (no reply): retrying could apply it twice.
    Failed(std::io::Error),
}

fn netlink_error(op: &str, source: std::io::Error) -> Error {
    Error::Netlink {
        op: op.to_owned(),
        source,
    }
}

/// Which chain names a [`read_table`] reports in [`ListedTable::chains`].
#[derive(Debug, Clone, Copy)]
pub enum Chains<'a> {
    /// Those of these that exist.
    Named(&'a [&'a str]),
    /// All chains of the table.
    All,
}

/// Reads what teardown and replacement need of table `<family> <name>`: handles and
/// comments of the rules in `rule_chains` (one `NFT_MSG_GETRULE` dump per chain, only
/// that chain) and the chain names `chains` asks for, natively, without `nft`. The rules'
/// [`ListedRule::expr`] is `null`. `None` when the table does not exist. When the native
/// read fails (it is logged), the table is listed with `nft` ([`list_table`]).
///
/// # Errors
/// Failure of both reads.
pub fn read_table(
    family: NfFamily,
    name: &str,
    rule_chains: &[&str],
    chains: Chains<'_>,
) -> Result<Option<ListedTable>> {
    if !native_enabled() {
        return list_table(family, name);
    }
    match read_native(family, name, rule_chains, chains) {
        Ok(t) => Ok(t),
        Err(e) => {
            let op = format!("reading table {} {name}", family_name(family));
            if exec::find_tool(NFT).is_none() {
                return Err(netlink_error(&op, e));
            }
            log::debug!("{op} natively: {e}; listing it with nft");
            list_table(family, name)
        }
    }
}

fn read_native(
    family: NfFamily,
    name: &str,
    rule_chains: &[&str],
    chains: Chains<'_>,
) -> std::io::Result<Option<ListedTable>> {
    let mut conn =
        Conn::open().map_err(|(step, e)| std::io::Error::new(e.kind(), format!("{step}: {e}")))?;
    let fam = nftnl::compile::family_byte(family);
    if !nftnl::table_exists(&mut conn, fam, name)? {
        return Ok(None);
    }
    let mut table = ListedTable::default();
    for chain in rule_chains {
        for r in nftnl::rules(&mut conn, fam, name, chain)?.unwrap_or_default() {
            table.rules.push(ListedRule {
                chain: (*chain).to_owned(),
                handle: u32::try_from(r.handle).map_err(|_| {
                    std::io::Error::other(format!("rule handle {} beyond u32", r.handle))
                })?,
                comment: r.comment,
                expr: Value::Null,
            });
        }
    }
    match chains {
        Chains::Named(names) => {
            for c in names {
                if nftnl::chain_exists(&mut conn, fam, name, c)? {
                    table.chains.push((*c).to_owned());
                }
            }
        }
        Chains::All => table.chains = nftnl::chains(&mut conn, fam, name)?,
    }
    Ok(Some(table))
}

/// The nft text writer behind [`Tx::to_script`].
mod script {
    use std::fmt::Write as _;

    use super::*;

    fn unsupported(what: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("cannot write {what} as nft text"))
    }

    /// The serde (= nft keyword) spelling of a unit enum value, e.g. a hook or meta key.
    fn keyword<T: Serialize + std::fmt::Debug>(v: &T) -> Result<String> {
        match serde_json::to_value(v) {
            Ok(Value::String(s)) => Ok(s),
            _ => Err(unsupported(format_args!("{v:?}"))),
        }
    }

    /// A table, chain or payload name: nft's text input takes no quoted identifiers.
    fn ident(name: &str) -> Result<&str> {
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if ok {
            Ok(name)
        } else {
            Err(unsupported(format_args!("the name {name:?}")))
        }
    }

    /// A string value in double quotes (nft has no escapes inside them).
    fn quoted(out: &mut String, v: &str) -> Result<()> {
        if v.chars().any(|c| c == '"' || c.is_control()) {
            return Err(unsupported(format_args!("the string {v:?}")));
        }
        let _ = write!(out, "\"{v}\"");
        Ok(())
    }

    fn family(out: &mut String, f: NfFamily, table: &str) -> Result<()> {
        let _ = write!(out, "{} {}", family_name(f), ident(table)?);
        Ok(())
    }

    fn chain(out: &mut String, verb: &str, c: &Chain<'_>) -> Result<()> {
        let _ = write!(out, "{verb} chain ");
        family(out, c.family, &c.table)?;
        let _ = write!(out, " {}", ident(&c.name)?);
        let comment = (verb == "add")
            .then(|| nftnl::upstream_comment(&c.table, Some(&c.name)))
            .flatten();
        match (c._type, c.hook, c.prio) {
            (None, None, None) if c.policy.is_none() => comment_block(out, comment)?,
            (Some(kind), Some(hook), Some(prio)) if verb == "add" => {
                out.push_str(" {");
                if let Some(text) = comment {
                    comment_spec(out, text)?;
                }
                let _ = write!(
                    out,
                    " type {} hook {} priority {prio};",
                    keyword(&kind)?,
                    keyword(&hook)?
                );
                if let Some(p) = c.policy {
                    let _ = write!(out, " policy {};", keyword(&p)?);
                }
                out.push_str(" }");
            }
            _ => return Err(unsupported(format_args!("{verb} chain {c:?}"))),
        }
        if c.dev.is_some() || c.handle.is_some() || c.newname.is_some() {
            return Err(unsupported(format_args!("{verb} chain {c:?}")));
        }
        Ok(())
    }

    /// ` comment "text";`, a table's or chain's comment inside its braces.
    fn comment_spec(out: &mut String, text: &str) -> Result<()> {
        out.push_str(" comment ");
        quoted(out, text)?;
        out.push(';');
        Ok(())
    }

    /// ` { comment "text"; }` after a table or regular chain, nothing without a comment.
    fn comment_block(out: &mut String, comment: Option<&str>) -> Result<()> {
        if let Some(text) = comment {
            out.push_str(" {");
            comment_spec(out, text)?;
            out.push_str(" }");
        }
        Ok(())
    }

    fn rule_head(out: &mut String, verb: &str, r: &Rule<'_>) -> Result<()> {
        let _ = write!(out, "{verb} rule ");
        family(out, r.family, &r.table)?;
        let _ = write!(out, " {}", ident(&r.chain)?);
        Ok(())
    }

    /// One command of the batch (without the newline).
    pub(super) fn command(out: &mut String, obj: &NfObject<'_>, raw: Option<&str>) -> Result<()> {
        let NfObject::CmdObject(cmd) = obj else {
            return Err(unsupported(format_args!("{obj:?}")));
        };
        match cmd {
            NfCmd::Add(NfListObject::Table(t)) if t.handle.is_none() => {
                out.push_str("add table ");
                family(out, t.family, &t.name)?;
                comment_block(out, nftnl::upstream_comment(&t.name, None))
            }
            NfCmd::Add(NfListObject::Chain(c)) => chain(out, "add", c),
            NfCmd::Flush(FlushObject::Chain(c)) => chain(out, "flush", c),
            NfCmd::Delete(NfListObject::Chain(c)) => chain(out, "delete", c),
            NfCmd::Add(NfListObject::Rule(r)) if r.handle.is_none() && r.index.is_none() => {
                rule_head(out, "add", r)?;
                if let Some(words) = raw {
                    let _ = write!(out, " {words}");
                }
                for s in r.expr.iter() {
                    out.push(' ');
                    statement(out, s)?;
                }
                if let Some(c) = &r.comment {
                    if c.len() > 128 {
                        return Err(Error::Invalid(format!(
                            "the rule comment {c:?} is longer than the 128 bytes nft's text input accepts"
                        )));
                    }
                    out.push_str(" comment ");
                    quoted(out, c)?;
                }
                Ok(())
            }
            NfCmd::Delete(NfListObject::Rule(r)) if r.expr.is_empty() => {
                let Some(handle) = r.handle else {
                    return Err(unsupported("a rule deletion without handle"));
                };
                rule_head(out, "delete", r)?;
                let _ = write!(out, " handle {handle}");
                Ok(())
            }
            other => Err(unsupported(format_args!("{other:?}"))),
        }
    }

    fn statement(out: &mut String, s: &Statement<'_>) -> Result<()> {
        match s {
            Statement::Match(m) => {
                expression(out, &m.left)?;
                match m.op {
                    Operator::EQ => {}
                    Operator::NEQ => out.push_str(" !="),
                    _ => return Err(unsupported(format_args!("the operator {:?}", m.op))),
                }
                out.push(' ');
                expression(out, &m.right)?;
            }
            Statement::Jump(t) => _ = write!(out, "jump {}", ident(&t.target)?),
            Statement::Goto(t) => _ = write!(out, "goto {}", ident(&t.target)?),
            Statement::Accept(None) => out.push_str("accept"),
            Statement::Drop(None) => out.push_str("drop"),
            Statement::Return(None) => out.push_str("return"),
            Statement::Masquerade(None) => out.push_str("masquerade"),
            Statement::DNAT(Some(NAT {
                addr: Some(Expression::String(addr)),
                family,
                port,
                flags: None,
            })) => {
                let ip: IpAddr = addr
                    .parse()
                    .map_err(|_| unsupported(format_args!("dnat to {addr:?}")))?;
                out.push_str("dnat ");
                if let Some(f) = family {
                    let _ = write!(out, "{} ", keyword(f)?);
                }
                match (ip, port) {
                    (IpAddr::V4(a), None) => _ = write!(out, "to {a}"),
                    (IpAddr::V6(a), None) => _ = write!(out, "to {a}"),
                    (IpAddr::V4(a), Some(Expression::Number(p))) => _ = write!(out, "to {a}:{p}"),
                    (IpAddr::V6(a), Some(Expression::Number(p))) => {
                        _ = write!(out, "to [{a}]:{p}");
                    }
                    (_, Some(p)) => return Err(unsupported(format_args!("the dnat port {p:?}"))),
                }
            }
            other => return Err(unsupported(format_args!("the statement {other:?}"))),
        }
        Ok(())
    }

    /// nft's order of fib input flags (`fib saddr . iif oif`).
    fn fib_flag_rank(f: FibFlag) -> u8 {
        match f {
            FibFlag::Saddr => 0,
            FibFlag::Daddr => 1,
            FibFlag::Mark => 2,
            FibFlag::Iif => 3,
            FibFlag::Oif => 4,
        }
    }

    fn expression(out: &mut String, e: &Expression<'_>) -> Result<()> {
        match e {
            Expression::Number(n) => _ = write!(out, "{n}"),
            // Addresses bare (nft also takes them quoted, but not inside `addr/len`), any
            // other string (a symbol such as `local`, an interface or MAC address) quoted,
            // so that it can never be read as a keyword.
            Expression::String(v) => match v.parse::<IpAddr>() {
                Ok(ip) => _ = write!(out, "{ip}"),
                Err(_) => quoted(out, v)?,
            },
            Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) => {
                let _ = write!(out, "{} {}", ident(&p.protocol)?, ident(&p.field)?);
            }
            Expression::Named(NamedExpression::Meta(m)) => {
                let _ = write!(out, "meta {}", keyword(&m.key)?);
            }
            Expression::Named(NamedExpression::Fib(f)) if !f.flags.is_empty() => {
                let mut flags: Vec<FibFlag> = f.flags.iter().copied().collect();
                flags.sort_by_key(|&f| fib_flag_rank(f));
                let flags: Vec<String> = flags.iter().map(keyword).collect::<Result<_>>()?;
                let _ = write!(out, "fib {} {}", flags.join(" . "), keyword(&f.result)?);
            }
            Expression::Named(NamedExpression::Prefix(p)) => match &*p.addr {
                Expression::String(a) => {
                    let ip: IpAddr = a
                        .parse()
                        .map_err(|_| unsupported(format_args!("the prefix {a:?}")))?;
                    let _ = write!(out, "{ip}/{}", p.len);
                }
                other => return Err(unsupported(format_args!("the prefix {other:?}"))),
            },
            other => return Err(unsupported(format_args!("the expression {other:?}"))),
        }
        Ok(())
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

/// Whether nf_tables table `<family> <name>` exists in the calling thread's network
/// namespace, asked natively (one `NFT_MSG_GETTABLE` over `NETLINK_NETFILTER`, no
/// process, a cost that does not depend on the rules on the node): `ENOENT` = absent.
///
/// # Errors
/// [`Error::Netlink`] for any other answer (no nf_tables in the kernel: `EINVAL` or
/// `EAFNOSUPPORT`; no permission), a timeout or a socket failure.
pub fn table_exists(family: NfFamily, name: &str) -> Result<bool> {
    let fam = family_name(family);
    let fail = |op: String, source| Error::Netlink { op, source };
    let op = || format!("asking for table {fam} {name}");
    let mut conn = Conn::open().map_err(|(op, e)| fail(op, e))?;
    let request = NfTablesMessage::GetTable(TableMessage {
        attributes: vec![TableAttribute::Name(name.to_owned())],
    });
    let seq = conn
        .send(nfproto(family), request, NLM_F_ACK)
        .map_err(|e| fail(op(), e))?;
    // The kernel answers NFT_MSG_NEWTABLE then the ACK, or only an error.
    match conn.receive_until_finished(seq, |_| {}) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) => Ok(false),
        Err(e) => Err(fail(op(), e)),
    }
}

/// The `nfgenmsg` family of an nftables family.
fn nfproto(family: NfFamily) -> NetfilterProtoFamily {
    match family {
        NfFamily::IP => NetfilterProtoFamily::IPv4,
        NfFamily::IP6 => NetfilterProtoFamily::IPv6,
        NfFamily::INet => NetfilterProtoFamily::Inet,
        NfFamily::ARP => NetfilterProtoFamily::ARP,
        NfFamily::Bridge => NetfilterProtoFamily::Bridge,
        NfFamily::NetDev => NetfilterProtoFamily::NetDev,
    }
}

/// Whether `<family> <name>` is known to be absent: the native probe says so. When the
/// probe fails (it is logged), the answer is `false`, so the caller asks `nft` as before.
pub(crate) fn known_absent(family: NfFamily, name: &str) -> bool {
    match table_exists(family, name) {
        Ok(exists) => !exists,
        Err(e) => {
            log::debug!("{e}; asking nft instead");
            false
        }
    }
}

/// Lists one table with `nft -j list table <family> <name>`; `None` when it does not
/// exist. An absent table is found by [`table_exists`], without running `nft`.
///
/// # Errors
/// Any other failure of the tool, or unparseable output.
pub fn list_table(family: NfFamily, name: &str) -> Result<Option<ListedTable>> {
    let fam = family_name(family);
    if known_absent(family, name) {
        log::debug!("table {fam} {name} does not exist: nft not run");
        return Ok(None);
    }
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
/// (a `stat` on `PATH`; every entry `None`), otherwise one `nft -j list table` per table
/// that exists (absent ones are found natively, see [`list_table`]).
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

    /// One of each operation: table, hooked chain, chain removal, rule, rule deletion.
    fn sample_tx() -> Tx {
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
        tx
    }

    #[test]
    fn transaction_json_shape() {
        let tx = sample_tx();
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
    fn transaction_script_shape() {
        let mut tx = sample_tx();
        assert!(!tx.has_raw());
        assert_eq!(
            tx.to_script().unwrap(),
            "add table ip t\n\
             add chain ip t c { type nat hook prerouting priority -100; policy accept; }\n\
             add chain ip t x\n\
             flush chain ip t x\n\
             delete chain ip t x\n\
             add rule ip t c tcp dport 80 jump x comment \"cid\"\n\
             delete rule ip t c handle 7\n"
        );
        // Verbatim words go right after the chain, only in the rule they were given for.
        let raw = ["iifname".to_owned(), "\"eth0\"".to_owned()];
        tx.add_rule_with_raw(NfFamily::IP, "t", "c", &raw, vec![expr::ret()], None)
            .add_rule_with_raw(NfFamily::IP, "t", "c", &[], vec![expr::drop()], None);
        assert!(tx.has_raw());
        assert_eq!(tx.len(), 9);
        assert!(matches!(tx.to_json(), Err(Error::Invalid(_))));
        let text = tx.to_script().unwrap();
        assert!(
            text.ends_with(
                "delete rule ip t c handle 7\nadd rule ip t c iifname \"eth0\" return\nadd rule ip t c drop\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn script_statements_and_expressions() {
        let mut flags = HashSet::new();
        flags.insert(FibFlag::Oif);
        flags.insert(FibFlag::Saddr);
        let fib = Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Oif,
            flags,
        }));
        let mut tx = Tx::new();
        tx.add_chain(
            NfFamily::IP6,
            "t",
            "post",
            Some(Hook {
                kind: NfChainType::NAT,
                hook: NfHook::Postrouting,
                prio: 100,
            }),
        )
        .add_rule(
            NfFamily::IP6,
            "t",
            "post",
            vec![
                expr::eq(
                    expr::payload("ip6", "daddr"),
                    expr::prefix("ff00::".parse().unwrap(), 8),
                ),
                expr::ne(expr::meta(MetaKey::Oifname), expr::string("lo")),
                expr::eq(fib, expr::string("eth0")),
                expr::goto("CNI-x.y_z"),
            ],
            None,
        )
        .add_rule(
            NfFamily::IP6,
            "t",
            "post",
            vec![
                expr::eq(
                    expr::payload("ip6", "saddr"),
                    expr::addr("fd00::2".parse().unwrap()),
                ),
                expr::masquerade(),
            ],
            Some("a.b-c_d"),
        )
        .add_rule(
            NfFamily::INet,
            "t",
            "pre",
            vec![
                expr::dnat("fd00::2".parse().unwrap(), 80, true),
                expr::dnat("10.0.0.2".parse().unwrap(), 81, true),
                expr::dnat("10.0.0.3".parse().unwrap(), 82, false),
            ],
            None,
        )
        .add_rule(
            NfFamily::Bridge,
            "nat",
            "c",
            vec![
                expr::eq(
                    expr::payload("ether", "saddr"),
                    expr::string("aa:bb:cc:dd:ee:ff"),
                ),
                expr::ret(),
            ],
            None,
        );
        assert_eq!(
            tx.to_script().unwrap(),
            "add chain ip6 t post { type nat hook postrouting priority 100; policy accept; }\n\
             add rule ip6 t post ip6 daddr ff00::/8 meta oifname != \"lo\" fib saddr . oif oif \"eth0\" goto CNI-x.y_z\n\
             add rule ip6 t post ip6 saddr fd00::2 masquerade comment \"a.b-c_d\"\n\
             add rule inet t pre dnat ip6 to [fd00::2]:80 dnat ip to 10.0.0.2:81 dnat to 10.0.0.3:82\n\
             add rule bridge nat c ether saddr \"aa:bb:cc:dd:ee:ff\" return\n"
        );
    }

    #[test]
    fn script_refuses_what_text_cannot_carry() {
        let refused = |build: &dyn Fn(&mut Tx)| {
            let mut tx = Tx::new();
            build(&mut tx);
            match tx.to_script() {
                Err(Error::Invalid(msg)) => msg,
                other => panic!("{other:?}"),
            }
        };
        // nft's text input takes no quoted names.
        let msg = refused(&|tx| {
            tx.add_chain(NfFamily::IP, "t", "1chain", None);
        });
        assert!(msg.contains("1chain"), "{msg}");
        refused(&|tx| {
            tx.add_table(NfFamily::IP, "t x");
        });
        refused(&|tx| {
            tx.add_rule(NfFamily::IP, "t", "c", vec![expr::jump("a;b")], None);
        });
        // Strings cannot hold a quote or a newline (no escapes in nft strings).
        refused(&|tx| {
            tx.add_rule(
                NfFamily::IP,
                "t",
                "c",
                vec![expr::drop()],
                Some("a\" counter"),
            );
        });
        refused(&|tx| {
            tx.add_rule(
                NfFamily::IP,
                "t",
                "c",
                vec![expr::eq(
                    expr::meta(MetaKey::Iifname),
                    expr::string("a\nflush ruleset"),
                )],
                None,
            );
        });
        // Comments: 128 bytes at most in text (JSON takes more).
        let long = "c".repeat(129);
        let msg = refused(&|tx| {
            tx.add_rule(NfFamily::IP, "t", "c", vec![expr::drop()], Some(&long));
        });
        assert!(msg.contains("128"), "{msg}");
        let mut tx = Tx::new();
        tx.add_rule(
            NfFamily::IP,
            "t",
            "c",
            vec![expr::drop()],
            Some(&long[..128]),
        );
        assert!(tx.to_script().is_ok());
        // Statements this writer does not know.
        refused(&|tx| {
            tx.add_rule(
                NfFamily::IP,
                "t",
                "c",
                vec![Statement::Counter(nftables::stmt::Counter::Anonymous(None))],
                None,
            );
        });
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
