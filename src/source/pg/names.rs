//! Names as the catalogue spells them. Callers write their SQL with the lower-case
//! names of dbt_intercom (`usage_events`, `company_id`); PostgreSQL folds an unquoted
//! name to lower case, so a table a warehouse export created quoted in upper case
//! (`"USAGE_EVENTS"`, `"COMPANY_ID"`, as Snowflake writes them) would not be found
//! while SQLite, whose names are case-insensitive, reads it. This module owns the
//! matching: a table is looked up case-insensitively in the session's schema
//! ([`Resolution`]), and a query's identifiers are replaced by the catalogue's
//! names, quoted as identifiers ([`rewrite`]). Only names the catalogue returned are
//! ever written into SQL, never a user's input; a name already right is left as
//! written, so lower-case databases run the callers' SQL unchanged.

use std::borrow::Cow;

use super::session::quote_ident;

/// One table or view of the session's schema, as the catalogue names it and its
/// columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub name: String,
    pub columns: Vec<String>,
}

/// What a case-insensitive look-up of a table name found in the session's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    Absent,
    Found(Relation),
    /// Several tables differ from the name only in case, none of them in lower case:
    /// which one is meant cannot be told.
    Ambiguous(Vec<String>),
}

impl Resolution {
    /// The choice among the relations whose names equal `table` but for case: the
    /// lower-case one when there is one (what an unquoted name reads), else the only
    /// one.
    pub(crate) fn choose(table: &str, mut found: Vec<Relation>) -> Self {
        let lower = table.to_lowercase();
        if let Some(i) = found.iter().position(|r| r.name == lower) {
            return Self::Found(found.swap_remove(i));
        }
        match found.len() {
            0 => Self::Absent,
            1 => Self::Found(found.remove(0)),
            _ => Self::Ambiguous(found.into_iter().map(|r| r.name).collect()),
        }
    }

    pub(crate) fn found(&self) -> Option<&Relation> {
        match self {
            Self::Found(r) => Some(r),
            _ => None,
        }
    }
}

impl Relation {
    /// The catalogue's name of the column `name` (any case): the exact one first, then
    /// the lower-case one, then the only one equal but for case.
    pub(crate) fn column(&self, name: &str) -> Option<&str> {
        if let Some(c) = self.columns.iter().find(|c| *c == name) {
            return Some(c);
        }
        let lower = name.to_lowercase();
        if let Some(c) = self.columns.iter().find(|c| **c == lower) {
            return Some(c);
        }
        let mut same = self.columns.iter().filter(|c| c.to_lowercase() == lower);
        match (same.next(), same.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
}

/// Words of the callers' SQL that are never a table's or column's name, even when a
/// table has a column spelled like one.
const KEYWORDS: &[&str] = &[
    "all", "and", "as", "asc", "between", "by", "case", "cast", "desc", "distinct", "else", "end",
    "exists", "false", "filter", "from", "group", "having", "in", "interval", "is", "join", "like",
    "limit", "not", "null", "offset", "on", "or", "order", "over", "select", "then", "true",
    "union", "when", "where",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted name (the server reads it in lower case).
    Word,
    /// A `"quoted"` name (read as written).
    Quoted,
    /// `(`, `)`, `.`, `::`.
    Open,
    Close,
    Cast,
    /// Spaces and comments.
    Space,
    /// Anything else: literals, numbers, parameters, operators.
    Other,
}

struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

impl Token<'_> {
    /// The name as the server reads it.
    fn name(&self) -> Cow<'_, str> {
        match self.kind {
            Kind::Quoted => Cow::Owned(self.text[1..self.text.len() - 1].replace("\"\"", "\"")),
            _ => Cow::Owned(self.text.to_lowercase()),
        }
    }

    fn is_name(&self) -> bool {
        match self.kind {
            Kind::Quoted => true,
            Kind::Word => !KEYWORDS.contains(&self.text.to_lowercase().as_str()),
            _ => false,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(w)
    }
}

/// The end of the run of bytes from `i` on that `keep` accepts.
fn run_end(b: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && keep(b[i]) {
        i += 1;
    }
    i
}

/// The end of a `q`-quoted run starting at `i` (a doubled `q` inside it), or the end
/// of the text when it is not closed.
fn quoted_end(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn tokens(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let (kind, end) = if c == b'\'' {
            (Kind::Other, quoted_end(b, i, b'\''))
        } else if c == b'"' {
            let end = quoted_end(b, i, b'"');
            // An unclosed quote is passed on as written: the server names the error.
            let kind = if end > i + 1 && b[end - 1] == b'"' {
                Kind::Quoted
            } else {
                Kind::Other
            };
            (kind, end)
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            (Kind::Space, run_end(b, i, |x| x != b'\n'))
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 2);
            (Kind::Space, end)
        } else if c.is_ascii_whitespace() {
            (Kind::Space, run_end(b, i, |x| x.is_ascii_whitespace()))
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let end = run_end(b, i, |x| {
                x.is_ascii_alphanumeric() || x == b'_' || x == b'$' || x >= 0x80
            });
            (Kind::Word, end)
        } else if c.is_ascii_digit() || c == b'$' {
            (
                Kind::Other,
                run_end(b, i + 1, |x| x.is_ascii_alphanumeric() || x == b'.'),
            )
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            (Kind::Cast, i + 2)
        } else if c == b'(' {
            (Kind::Open, i + 1)
        } else if c == b')' {
            (Kind::Close, i + 1)
        } else {
            (Kind::Other, i + 1)
        };
        out.push(Token {
            kind,
            text: &sql[i..end],
        });
        i = end;
    }
    out
}

/// `sql` with every table and column name the catalogue spells otherwise replaced
/// by the catalogue's name, quoted. `resolve` answers a table name (as the server
/// reads it) with its relation, `None` when the session's schema has none.
///
/// A query is read as nested `SELECT`s: a name is looked up among the tables named
/// after `FROM`/`JOIN` in its own `SELECT`, then in those around it. A function's
/// name (followed by `(`), a type after `::` and the callers' keywords are left.
pub(crate) fn rewrite<'s, E>(
    sql: &'s str,
    mut resolve: impl FnMut(&str) -> Result<Option<Relation>, E>,
) -> Result<Cow<'s, str>, E> {
    let toks = tokens(sql);
    let next = |i: usize| toks[i + 1..].iter().find(|t| t.kind != Kind::Space);
    let prev = |i: usize| toks[..i].iter().rev().find(|t| t.kind != Kind::Space);
    // Each token's SELECT (block 0: the whole query) and each block's parent.
    let mut block_of = vec![0usize; toks.len()];
    let mut parent = vec![0usize];
    let mut open: Vec<(usize, u32)> = vec![(0, 0)];
    let mut depth = 0u32;
    for (i, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Open => {
                depth += 1;
                if next(i).is_some_and(|n| n.is_word("select")) {
                    parent.push(open.last().map_or(0, |b| b.0));
                    open.push((parent.len() - 1, depth));
                }
            }
            Kind::Close => {
                if open.len() > 1 && open.last().is_some_and(|b| b.1 == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        block_of[i] = open.last().map_or(0, |b| b.0);
    }
    // The tables each block reads, resolved.
    let mut tables: Vec<Vec<Relation>> = vec![Vec::new(); parent.len()];
    let mut is_table = vec![false; toks.len()];
    for (i, t) in toks.iter().enumerate() {
        if t.is_name() && prev(i).is_some_and(|p| p.is_word("from") || p.is_word("join")) {
            is_table[i] = true;
            if let Some(r) = resolve(&t.name())? {
                tables[block_of[i]].push(r);
            }
        }
    }
    let mut out = String::new();
    let mut changed = false;
    for (i, t) in toks.iter().enumerate() {
        let mut with = None;
        if is_table[i] {
            let name = t.name();
            with = tables[block_of[i]]
                .iter()
                .find(|r| r.name.to_lowercase() == name.to_lowercase())
                .map(|r| r.name.as_str())
                .filter(|n| **n != *name);
        } else if t.is_name()
            && !prev(i).is_some_and(|p| p.kind == Kind::Cast)
            && !next(i).is_some_and(|n| n.kind == Kind::Open)
        {
            let name = t.name();
            let mut b = block_of[i];
            loop {
                let mut spellings = tables[b].iter().filter_map(|r| r.column(&name));
                if let Some(first) = spellings.next() {
                    // Two tables of one SELECT spelling it otherwise: left to the server.
                    if spellings.all(|c| c == first) && first != name {
                        with = Some(first);
                    }
                    break;
                }
                if b == 0 {
                    break;
                }
                b = parent[b];
            }
        }
        match with {
            Some(n) => {
                out.push_str(&quote_ident(n));
                changed = true;
            }
            None => out.push_str(t.text),
        }
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(sql)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str, columns: &[&str]) -> Relation {
        Relation {
            name: name.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn catalogue(name: &str) -> Result<Option<Relation>, ()> {
        Ok(match name {
            "usage_events" => Some(rel(
                "USAGE_EVENTS",
                &["COMPANY_ID", "IS_CORE", "OCCURRED_AT", "count"],
            )),
            "intercom__conversation_enhanced" => Some(rel(
                "intercom__conversation_enhanced",
                &["conversation_id", "Created_At"],
            )),
            "intercom__conversation_metrics" => Some(rel(
                "INTERCOM__CONVERSATION_METRICS",
                &["CONVERSATION_ID", "MINUTES"],
            )),
            _ => None,
        })
    }

    #[test]
    fn names_are_spelled_as_the_catalogue_spells_them() {
        let sql = "SELECT company_id, is_core, max(occurred_at), count(*) FROM usage_events \
                   WHERE occurred_at >= $1 AND note = 'company_id' GROUP BY company_id";
        assert_eq!(
            rewrite(sql, catalogue).unwrap(),
            "SELECT \"COMPANY_ID\", \"IS_CORE\", max(\"OCCURRED_AT\"), count(*) FROM \
             \"USAGE_EVENTS\" WHERE \"OCCURRED_AT\" >= $1 AND note = 'company_id' GROUP BY \
             \"COMPANY_ID\""
        );
        // A subquery's names are its own table's; the outer ones the outer table's.
        let sql = "SELECT conversation_id, minutes FROM intercom__conversation_metrics \
                   WHERE conversation_id IN (SELECT conversation_id FROM \
                   intercom__conversation_enhanced WHERE created_at::date > $1)";
        assert_eq!(
            rewrite(sql, catalogue).unwrap(),
            "SELECT \"CONVERSATION_ID\", \"MINUTES\" FROM \"INTERCOM__CONVERSATION_METRICS\" \
             WHERE \"CONVERSATION_ID\" IN (SELECT conversation_id FROM \
             intercom__conversation_enhanced WHERE \"Created_At\"::date > $1)"
        );
        // A quoted name in another case (a mapping's column) is matched as well.
        assert_eq!(
            rewrite(
                "SELECT \"created_at\" FROM intercom__conversation_enhanced",
                catalogue
            )
            .unwrap(),
            "SELECT \"Created_At\" FROM intercom__conversation_enhanced"
        );
    }

    #[test]
    fn sql_already_right_is_left_as_written() {
        let sql = "SELECT conversation_id FROM intercom__conversation_enhanced -- usage_events";
        assert!(matches!(rewrite(sql, catalogue).unwrap(), Cow::Borrowed(_)));
        // Unknown tables, a column spelled like a function, and strings are left.
        let sql = "SELECT count(*), 'IS_CORE' FROM things WHERE is_core";
        assert!(matches!(rewrite(sql, catalogue).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn the_lower_case_table_wins_and_two_others_are_ambiguous() {
        let (a, b, c) = (
            rel("usage_events", &[]),
            rel("USAGE_EVENTS", &[]),
            rel("Usage_Events", &[]),
        );
        assert_eq!(
            Resolution::choose("usage_events", vec![b.clone(), a.clone()]),
            Resolution::Found(a)
        );
        assert_eq!(
            Resolution::choose("usage_events", vec![b.clone()]),
            Resolution::Found(b.clone())
        );
        assert_eq!(
            Resolution::choose("usage_events", vec![b, c]),
            Resolution::Ambiguous(vec!["USAGE_EVENTS".into(), "Usage_Events".into()])
        );
        assert_eq!(
            Resolution::choose("usage_events", vec![]),
            Resolution::Absent
        );
        let r = rel("t", &["id", "ID", "Size"]);
        assert_eq!(r.column("ID"), Some("ID"));
        assert_eq!(r.column("iD"), Some("id"));
        assert_eq!(r.column("size"), Some("Size"));
        assert_eq!(rel("t", &["A", "a_"]).column("a"), Some("A"));
        assert_eq!(rel("t", &["Ab", "AB"]).column("ab"), None);
    }
}
