//! Template variables and filters: every dotted path a template reads from
//! the message's parameters, `profile`, a top-level `let` or a loop over one
//! of them is checked against the record types, and every filter against
//! the filters templates have, so a typo fails `nudge check`, not the send.

use nudge_diagnostics::{Diagnostic, Edit, FileId, FileSpan, Span, codes};
use nudge_syntax::ast::StrLit;

use super::{Checker, State};
use crate::suggest::did_you_mean;
use crate::types::Ty;

/// The filters of minijinja's default environment, as the runtime renders
/// with it; each is also probed, so a name the build lacks is not offered.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];

/// A dotted path's segments with their spans in the template.
type Path = Vec<(String, Span)>;

/// Something a template names, in the order it appears.
#[derive(Clone, Debug, PartialEq)]
enum Use {
    /// A dotted path (`profile.first_name`); `call` when its last segment is called.
    Path { segs: Path, call: bool },
    /// A filter (`| upper`).
    Filter(String, Span),
    /// `{% for VAR in PATH %}`: `var` is `None` for unpacking (`for k, v in`).
    ForStart { var: Option<String>, iter: Path },
    /// `{% endfor %}`.
    ForEnd,
}

/// Whether minijinja's default environment has filter `name`.
fn filter_exists(name: &str) -> bool {
    let env = minijinja::Environment::new();
    !matches!(
        env.render_str(&format!("{{{{ none | {name} }}}}"), ()),
        Err(e) if e.kind() == minijinja::ErrorKind::UnknownFilter
    )
}

/// The uses in a template's `{{ }}` and `{% %}` blocks; text, comments and
/// string literals are skipped.
fn scan(text: &str) -> Vec<Use> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find('{').map(|i| i + at) {
        let close = match text.as_bytes().get(open + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                at = open + 1;
                continue;
            }
        };
        let start = open + 2;
        let end = text[start..].find(close).map_or(text.len(), |i| i + start);
        at = (end + 2).min(text.len());
        if close == "#}" {
            continue;
        }
        let uses = scan_block(&text[start..end], start);
        if close == "%}" {
            let words: Vec<&str> = text[start..end]
                .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
                .split_whitespace()
                .collect();
            match words.first().copied() {
                Some("for") => {
                    let var = match (words.get(1), words.get(2)) {
                        (Some(v), Some(&"in")) if !v.contains(',') => Some(v.to_string()),
                        _ => None,
                    };
                    // The iterable is the first path after the loop variable.
                    let iter = uses
                        .iter()
                        .filter_map(|u| match u {
                            Use::Path { segs, .. } => Some(segs.clone()),
                            _ => None,
                        })
                        .find(|segs| {
                            !matches!(segs[0].0.as_str(), "for" | "in")
                                && Some(&segs[0].0) != var.as_ref()
                        })
                        .unwrap_or_default();
                    out.extend(uses);
                    out.push(Use::ForStart { var, iter });
                    continue;
                }
                Some("endfor") => {
                    out.push(Use::ForEnd);
                    continue;
                }
                _ => {}
            }
        }
        out.extend(uses);
    }
    out
}

/// The paths and filters of one block's expression text, which starts at
/// `base` in the template.
fn scan_block(body: &str, base: usize) -> Vec<Use> {
    let b = body.as_bytes();
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let read_ident = |mut i: usize| {
        let s = i;
        while i < b.len() && ident_char(b[i]) {
            i += 1;
        }
        (s, i)
    };
    let mut out = Vec::new();
    let mut prev: u8 = b' ';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            prev = b'"';
        } else if ident_start(c) {
            let (s, e) = read_ident(i);
            let name = body[s..e].to_string();
            let span = Span::new(base + s, base + e);
            i = e;
            if prev == b'|' {
                out.push(Use::Filter(name, span));
            } else if prev != b'.' {
                let mut segs = vec![(name, span)];
                while i + 1 < b.len() && b[i] == b'.' && ident_start(b[i + 1]) {
                    let (s, e) = read_ident(i + 1);
                    segs.push((body[s..e].to_string(), Span::new(base + s, base + e)));
                    i = e;
                }
                let call = body[i..].trim_start().starts_with('(');
                out.push(Use::Path { segs, call });
            }
            prev = b'a';
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            prev = b'0';
        } else {
            if !c.is_ascii_whitespace() {
                prev = c;
            }
            i += 1;
        }
    }
    out
}

/// Why a path does not resolve: the segment and the type that lacks it.
struct Missing {
    index: usize,
    on: Ty,
}

impl Checker<'_> {
    /// Checks every variable path and filter of template `tid`, used by
    /// message `idx` at `at` (the `template "PATH"` literal).
    pub(crate) fn check_template_uses(
        &mut self,
        idx: usize,
        tid: FileId,
        path: &StrLit,
        at: FileSpan,
    ) {
        let text = self.project.sources.get(tid).text.clone();
        let mut loops: Vec<(Option<String>, Ty)> = Vec::new();
        for u in scan(&text) {
            match u {
                Use::Path { segs, call } => {
                    let Some(root) = self.template_root(idx, &loops, &segs[0].0) else {
                        continue;
                    };
                    // A called last segment is a method of the value, not a field.
                    let fields = if call {
                        &segs[..segs.len() - 1]
                    } else {
                        &segs[..]
                    };
                    if let Err(m) = self.walk(root, &fields[1..]) {
                        let (name, span) = &fields[m.index + 1];
                        let shown: Vec<&str> = fields[..=m.index + 1]
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect();
                        self.unknown_template_field(
                            idx,
                            path,
                            at,
                            FileSpan::new(tid, *span),
                            name,
                            &shown.join("."),
                            &m.on,
                        );
                    }
                }
                Use::ForStart { var, iter } => {
                    let elem = iter
                        .first()
                        .and_then(|(root, _)| self.template_root(idx, &loops, root))
                        .and_then(|root| self.walk(root, &iter[1..]).ok())
                        .map_or(Ty::Error, |t| match strip(&t) {
                            Ty::List(e) => (**e).clone(),
                            _ => Ty::Error,
                        });
                    loops.push((var, elem));
                }
                Use::ForEnd => {
                    loops.pop();
                }
                Use::Filter(name, span) => {
                    if !filter_exists(&name) {
                        self.unknown_filter(idx, path, at, FileSpan::new(tid, span), &name);
                    }
                }
            }
        }
    }

    /// The type of a template's root name, when it is one the checker knows:
    /// a loop variable, a parameter, `profile` or a checked top-level `let`.
    fn template_root(&self, idx: usize, loops: &[(Option<String>, Ty)], name: &str) -> Option<Ty> {
        if let Some((_, t)) = loops.iter().rev().find(|(v, _)| v.as_deref() == Some(name)) {
            return Some(t.clone());
        }
        if let Some(p) = self.messages[idx].params.iter().find(|p| p.name == name) {
            return Some(p.ty.clone());
        }
        if name == "profile" {
            return Some(Ty::Record(self.profile));
        }
        if nudge_bytecode::LINK_NAMES.iter().any(|(n, _)| *n == name)
            && !self.values.contains_key(name)
        {
            return Some(Ty::String);
        }
        match self.values.get(name) {
            Some(super::Value::Let(i)) => match &self.lets[*i].state {
                State::Done(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Follows field names from a type; `Ty::Error` absorbs anything.
    fn walk(&self, mut ty: Ty, fields: &[(String, Span)]) -> Result<Ty, Missing> {
        for (i, (name, _)) in fields.iter().enumerate() {
            let next = match strip(&ty) {
                Ty::Error => return Ok(Ty::Error),
                Ty::Record(rid) => self.an.types.record(*rid).field(name).map(|f| f.ty.clone()),
                _ => None,
            };
            match next {
                Some(t) => ty = t,
                None => return Err(Missing { index: i, on: ty }),
            }
        }
        Ok(ty)
    }

    #[allow(clippy::too_many_arguments)]
    fn unknown_template_field(
        &mut self,
        idx: usize,
        path: &StrLit,
        used: FileSpan,
        at: FileSpan,
        name: &str,
        shown: &str,
        on: &Ty,
    ) {
        let (title, label, candidates) = match strip(on) {
            Ty::Record(rid) => {
                let rec = self.an.types.record(*rid);
                (
                    format!("`{}` has no field `{name}`", rec.name),
                    "unknown field".to_string(),
                    rec.fields.iter().map(|f| f.name.clone()).collect(),
                )
            }
            other => {
                let ts = self.an.types.display(other);
                (
                    format!("`{ts}` has no field `{name}`"),
                    "only records, events and the profile have fields".to_string(),
                    Vec::new(),
                )
            }
        };
        let mut d = Diagnostic::new(
            codes::E0410,
            at,
            format!("template {:?}: {title}", path.value),
        )
        .with_primary_label(label)
        .with_label(
            used,
            format!(
                "`{shown}` is read by message `{}` here",
                self.messages[idx].decl.name.name
            ),
        );
        d = match did_you_mean(name, candidates.iter().map(String::as_str)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_fix(
                format!("replace with `{s}`"),
                vec![Edit {
                    at,
                    replacement: s.to_string(),
                }],
            ),
            None => d.with_help("remove it from the template, or declare the field"),
        };
        self.report(d);
    }

    fn unknown_filter(
        &mut self,
        idx: usize,
        path: &StrLit,
        used: FileSpan,
        at: FileSpan,
        name: &str,
    ) {
        let known: Vec<&str> = FILTERS
            .iter()
            .copied()
            .filter(|f| filter_exists(f))
            .collect();
        let mut d = Diagnostic::new(
            codes::E0411,
            at,
            format!("template {:?} uses unknown filter `{name}`", path.value),
        )
        .with_primary_label("not a template filter")
        .with_label(
            used,
            format!(
                "used by message `{}` here",
                self.messages[idx].decl.name.name
            ),
        );
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")).with_fix(
                format!("replace with `{s}`"),
                vec![Edit {
                    at,
                    replacement: s.to_string(),
                }],
            ),
            None => d.with_help(format!("the filters are {}", known.join(", "))),
        };
        self.report(d);
    }
}

/// A type without its optional wrappers: templates read `none` as nothing.
fn strip(t: &Ty) -> &Ty {
    match t {
        Ty::Optional(inner) => strip(inner),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        scan(text)
            .into_iter()
            .map(|u| match u {
                Use::Path { segs, call } => {
                    let p: Vec<String> = segs.into_iter().map(|(n, _)| n).collect();
                    format!("{}{}", p.join("."), if call { "()" } else { "" })
                }
                Use::Filter(f, _) => format!("|{f}"),
                Use::ForStart { var, iter } => format!(
                    "for {} in {}",
                    var.unwrap_or_default(),
                    iter.into_iter()
                        .map(|(n, _)| n)
                        .collect::<Vec<_>>()
                        .join(".")
                ),
                Use::ForEnd => "endfor".into(),
            })
            .collect()
    }

    #[test]
    fn scanning_finds_paths_filters_and_loops_but_not_text_or_strings() {
        let t = "Hi {{ profile.first_name | upper }} {# profile.x #} profile.y \
                 {% for p in order.products %}{{ p.name ~ \"a.b\" }}{% endfor %}\
                 {{ name.strip() }}{{ 3.5 }}";
        assert_eq!(
            paths(t),
            [
                "profile.first_name",
                "|upper",
                "for",
                "p",
                "in",
                "order.products",
                "for p in order.products",
                "p.name",
                "endfor",
                "name.strip()",
            ]
        );
    }

    #[test]
    fn spans_point_at_each_segment() {
        let t = "{{ profile.frist_name }}";
        let Use::Path { segs, .. } = &scan(t)[0] else {
            panic!("a path");
        };
        assert_eq!(&t[segs[1].1.range()], "frist_name");
    }

    #[test]
    fn only_unknown_filters_are_unknown() {
        assert!(filter_exists("upper"));
        assert!(filter_exists("default"));
        assert!(!filter_exists("uper"));
    }
}
