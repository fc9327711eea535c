//! What a template may be before Tera parses or renders it. Templates can be a user's
//! overrides, and Tera has no limit of its own on recursion: a macro that calls itself
//! (directly, through another macro or an import, or a template that includes itself)
//! recurses until the thread's stack overflows, which aborts the whole process (no
//! panic guard can catch it), and deeply nested text overflows Tera's parser the same
//! way. So the text is measured before parsing (size, nesting), the parsed templates
//! are refused when any call can reach itself, and `range` is bounded. Each limit is
//! named in the error so the template's author knows what to change.

use std::collections::{BTreeMap, BTreeSet};

use tera::ast::{Expr, ExprVal, Node};

/// The largest template file read (the built-in ones are under 20 KiB).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// How deep brackets may nest inside one tag (`{{ … }}`, `{% … %}`).
pub const MAX_EXPRESSION_DEPTH: usize = 32;
/// How deep block tags (`if`, `for`, `macro`, `block`, `filter`, `raw`) may nest.
pub const MAX_BLOCK_DEPTH: usize = 32;
/// The most values `range` gives.
pub const MAX_RANGE: usize = 10_000;

/// Why a template is refused before it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("the file has {bytes} bytes; templates may have at most {MAX_TEMPLATE_BYTES}")]
    TooLarge { bytes: usize },
    #[error("line {line}: brackets nest deeper than {MAX_EXPRESSION_DEPTH} levels inside one tag")]
    ExpressionTooDeep { line: usize },
    #[error("line {line}: block tags (if, for, macro, block, filter) nest deeper than {MAX_BLOCK_DEPTH} levels")]
    BlocksTooDeep { line: usize },
    #[error("{path} can call itself ({cycle}); templates may not recurse (Tera has no recursion limit and a recursion that does not end aborts the process)")]
    Recursion { path: String, cycle: String },
}

/// Checks a template's text before Tera parses it: its size, how deep brackets nest
/// inside tags and how deep block tags nest.
pub fn check_text(text: &str) -> Result<(), GuardError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(GuardError::TooLarge { bytes: text.len() });
    }
    let bytes = text.as_bytes();
    let line_at = |i: usize| 1 + bytes[..i].iter().filter(|b| **b == b'\n').count();
    let mut blocks = 0usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let open = &bytes[i..i + 2];
        let close: &[u8] = match open {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => b"#}",
            _ => {
                i += 1;
                continue;
            }
        };
        let start = i + 2;
        let end = find(bytes, start, close).unwrap_or(bytes.len());
        let inner = &text[start..end.min(text.len())];
        if open != b"{#" {
            let mut depth = 0usize;
            for b in inner.bytes() {
                match b {
                    b'(' | b'[' | b'{' => {
                        depth += 1;
                        if depth > MAX_EXPRESSION_DEPTH {
                            return Err(GuardError::ExpressionTooDeep { line: line_at(i) });
                        }
                    }
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        if open == b"{%" {
            let word = inner
                .trim_start_matches(['-', ' ', '\t', '\r', '\n'])
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            match word {
                "if" | "for" | "macro" | "block" | "filter" | "raw" => {
                    blocks += 1;
                    if blocks > MAX_BLOCK_DEPTH {
                        return Err(GuardError::BlocksTooDeep { line: line_at(i) });
                    }
                }
                w if w.starts_with("end") => blocks = blocks.saturating_sub(1),
                _ => {}
            }
        }
        i = end + 2;
    }
    Ok(())
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A place that can be called: a template's body (`None`) or one of its macros.
type Callee = (String, Option<String>);

/// Refuses templates in which a macro call or an include can reach itself. `paths`
/// names each template (by its Tera name) as messages show it.
pub fn check_recursion(
    tera: &tera::Tera,
    paths: &BTreeMap<String, String>,
) -> Result<(), GuardError> {
    let mut edges: BTreeMap<Callee, BTreeSet<Callee>> = BTreeMap::new();
    for (name, template) in &tera.templates {
        let namespaces: BTreeMap<&str, &str> = template
            .imported_macro_files
            .iter()
            .map(|(file, ns)| (ns.as_str(), file.as_str()))
            .collect();
        let resolve = |calls: Calls| -> BTreeSet<Callee> {
            let mut out = BTreeSet::new();
            for (ns, m) in calls.macros {
                let file = if ns == "self" {
                    Some(name.as_str())
                } else {
                    namespaces.get(ns.as_str()).copied()
                };
                if let Some(file) = file {
                    out.insert((file.to_owned(), Some(m)));
                }
            }
            for inc in calls.includes {
                out.insert((inc, None));
            }
            out
        };
        let mut body = Calls::default();
        body.nodes(&template.ast);
        edges.insert((name.clone(), None), resolve(body));
        for (m, def) in &template.macros {
            let mut calls = Calls::default();
            calls.nodes(&def.body);
            edges.insert((name.clone(), Some(m.clone())), resolve(calls));
        }
    }
    // Depth-first search for a cycle; the graph is small (a few dozen nodes).
    let mut done: BTreeSet<Callee> = BTreeSet::new();
    for start in edges.keys() {
        let mut path: Vec<Callee> = Vec::new();
        if let Some(cycle) = cycle_from(start, &edges, &mut path, &mut done) {
            let show = |c: &Callee| match &c.1 {
                Some(m) => format!("macro `{m}` of {}", c.0),
                None => c.0.clone(),
            };
            let first = &cycle[0];
            return Err(GuardError::Recursion {
                path: paths
                    .get(&first.0)
                    .cloned()
                    .unwrap_or_else(|| first.0.clone()),
                cycle: cycle.iter().map(show).collect::<Vec<_>>().join(" → "),
            });
        }
    }
    Ok(())
}

fn cycle_from(
    node: &Callee,
    edges: &BTreeMap<Callee, BTreeSet<Callee>>,
    path: &mut Vec<Callee>,
    done: &mut BTreeSet<Callee>,
) -> Option<Vec<Callee>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.clone());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.clone());
    for next in edges.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(next, edges, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.clone());
    None
}

/// The macro calls (namespace, name) and included templates of a piece of a template.
#[derive(Default)]
struct Calls {
    macros: Vec<(String, String)>,
    includes: Vec<String>,
}

impl Calls {
    fn nodes(&mut self, nodes: &[Node]) {
        for n in nodes {
            self.node(n);
        }
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::VariableBlock(_, e) => self.expr(e),
            Node::Include(_, names, _) => self.includes.extend(names.iter().cloned()),
            Node::Set(_, set) => self.expr(&set.value),
            Node::FilterSection(_, f, _) => {
                self.args(f.filter.args.values());
                self.nodes(&f.body);
            }
            Node::Block(_, b, _) => self.nodes(&b.body),
            Node::Forloop(_, f, _) => {
                self.expr(&f.container);
                self.nodes(&f.body);
                if let Some(e) = &f.empty_body {
                    self.nodes(e);
                }
            }
            Node::If(i, _) => {
                for (_, cond, body) in &i.conditions {
                    self.expr(cond);
                    self.nodes(body);
                }
                if let Some((_, body)) = &i.otherwise {
                    self.nodes(body);
                }
            }
            // Macro definitions are walked on their own (a definition is not a call).
            Node::MacroDefinition(..)
            | Node::Super
            | Node::Text(_)
            | Node::Extends(..)
            | Node::ImportMacro(..)
            | Node::Raw(..)
            | Node::Break(_)
            | Node::Continue(_)
            | Node::Comment(..) => {}
        }
    }

    fn args<'a>(&mut self, args: impl Iterator<Item = &'a Expr>) {
        for a in args {
            self.expr(a);
        }
    }

    fn expr(&mut self, e: &Expr) {
        self.val(&e.val);
        for f in &e.filters {
            self.args(f.args.values());
        }
    }

    fn val(&mut self, v: &ExprVal) {
        match v {
            ExprVal::MacroCall(m) => {
                self.macros.push((m.namespace.clone(), m.name.clone()));
                self.args(m.args.values());
            }
            ExprVal::FunctionCall(f) => self.args(f.args.values()),
            ExprVal::Math(m) => {
                self.expr(&m.lhs);
                self.expr(&m.rhs);
            }
            ExprVal::Logic(l) => {
                self.expr(&l.lhs);
                self.expr(&l.rhs);
            }
            ExprVal::Test(t) => self.args(t.args.iter()),
            ExprVal::Array(items) => self.args(items.iter()),
            ExprVal::StringConcat(s) => {
                for v in &s.values {
                    self.val(v);
                }
            }
            ExprVal::In(i) => {
                self.expr(&i.lhs);
                self.expr(&i.rhs);
            }
            ExprVal::String(_)
            | ExprVal::Int(_)
            | ExprVal::Float(_)
            | ExprVal::Bool(_)
            | ExprVal::Ident(_) => {}
        }
    }
}

/// Tera's `range` with at most [`MAX_RANGE`] values (the built-in one fills memory
/// with `range(end=1e12)`).
pub fn bounded_range(
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let num = |key: &str, default: u64| -> tera::Result<u64> {
        match args.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "`range`: {key}={v} must be a whole number of at least 0"
                ))
            }),
        }
    };
    let (start, end, step) = (num("start", 0)?, num("end", 0)?, num("step_by", 1)?);
    if step == 0 {
        return Err(tera::Error::msg("`range`: step_by must be at least 1"));
    }
    let count = end.saturating_sub(start).div_ceil(step);
    if count > MAX_RANGE as u64 {
        return Err(tera::Error::msg(format!(
            "`range` of {count} values: cxreport templates take at most {MAX_RANGE}"
        )));
    }
    Ok(tera::Value::Array(
        (start..end)
            .step_by(step as usize)
            .map(tera::Value::from)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tera_of(files: &[(&str, &str)]) -> tera::Tera {
        let mut t = tera::Tera::default();
        t.add_raw_templates(files.to_vec()).unwrap();
        t
    }

    fn recursion(files: &[(&str, &str)]) -> Option<String> {
        check_recursion(&tera_of(files), &BTreeMap::new())
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn a_macro_that_calls_itself_through_an_import_is_refused() {
        let macros = "{% macro r(n) %}{{ self::r(n=n+1) }}{% endmacro r %}";
        let user = "{% import \"m.tera\" as m %}{{ m::r(n=1) }}";
        let e = recursion(&[("m.tera", macros), ("f.tera", user)]).unwrap();
        assert!(
            e.contains("macro `r` of m.tera → macro `r` of m.tera"),
            "{e}"
        );
        // Two macros calling each other, and a template that includes itself.
        let pair = "{% macro a() %}{{ self::b() }}{% endmacro a %}{% macro b() %}{{ self::a() | upper }}{% endmacro b %}";
        assert!(recursion(&[("p.tera", pair)]).is_some());
        assert!(recursion(&[(
            "i.tera",
            "x{% if true %}{% include \"i.tera\" %}{% endif %}"
        )])
        .is_some());
        // Calls that end are fine, however often a macro is used.
        let ok = "{% macro a(x) %}<{{ x }}>{% endmacro a %}{% macro b() %}{{ self::a(x=1) }}{{ self::a(x=2) }}{% endmacro b %}{{ self::b() }}";
        assert_eq!(recursion(&[("ok.tera", ok)]), None);
    }

    #[test]
    fn text_that_nests_too_deep_is_refused_before_parsing() {
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(
            check_text(&deep),
            Err(GuardError::ExpressionTooDeep { line: 1 })
        ));
        let blocks = "{% if true %}".repeat(5000);
        assert!(matches!(
            check_text(&format!("a\n{blocks}")),
            Err(GuardError::BlocksTooDeep { line: 2 })
        ));
        assert!(matches!(
            check_text(&"x".repeat(MAX_TEMPLATE_BYTES + 1)),
            Err(GuardError::TooLarge { .. })
        ));
        // Prose parentheses outside tags, and ordinary nesting, are fine.
        check_text("(((((((((((((((((((((((((((((((((((( {{ f(x=[1, (2)]) }} {% if a %}{% for b in c %}{% endfor %}{% endif %}").unwrap();
    }

    #[test]
    fn every_built_in_template_passes() {
        for (path, text) in super::super::templates::embedded() {
            check_text(text).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn range_is_bounded() {
        let args = |end: u64| {
            std::collections::HashMap::from([("end".to_owned(), tera::Value::from(end))])
        };
        assert_eq!(
            bounded_range(&args(3)).unwrap(),
            serde_json::json!([0, 1, 2])
        );
        let e = bounded_range(&args(1_000_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 10000"), "{e}");
    }
}
