//! Document symbols (an outline of declarations, and of each flow's clauses
//! and steps) and workspace symbols.

use std::path::PathBuf;

use nudge_compiler::SymbolKind;
use nudge_diagnostics::{FileId, Span};
use nudge_syntax::ast::{self, ClauseKind, FlowItem, Item, StepKind};

use crate::cancel::{Cancel, Stop};
use crate::world::Snapshot;

/// What an outline entry is; the server maps it to an LSP symbol kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum OutlineKind {
    /// A top-level constant.
    Constant,
    /// An event.
    Event,
    /// A record or enum type.
    Type,
    /// The profile block.
    Profile,
    /// A field.
    Field,
    /// A segment.
    Segment,
    /// A message.
    Message,
    /// A flow.
    Flow,
    /// A flow header clause.
    Clause,
    /// A flow step.
    Step,
    /// The policy block.
    Policy,
    /// A test.
    Test,
}

/// One entry of a document's outline.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutlineItem {
    /// The name shown.
    pub name: String,
    /// A short description (a type, a wire name).
    pub detail: Option<String>,
    /// What it is.
    pub kind: OutlineKind,
    /// The whole declaration.
    pub span: Span,
    /// The part to select (the name).
    pub selection: Span,
    /// Nested entries.
    pub children: Vec<OutlineItem>,
}

fn entry(name: &str, kind: OutlineKind, span: Span, selection: Span) -> OutlineItem {
    OutlineItem {
        name: name.to_string(),
        detail: None,
        kind,
        span,
        selection,
        children: Vec::new(),
    }
}

/// The first line of a span's text, shortened, as a name for a clause or step.
fn summary(text: &str, span: Span) -> String {
    let t = text.get(span.range()).unwrap_or("");
    let line = t.lines().next().unwrap_or("").trim();
    let line = line.trim_end_matches('{').trim_end();
    if line.chars().count() > 60 {
        let cut: String = line.chars().take(57).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

/// The outline of a file, from its syntax tree (which exists even when the file is broken).
pub fn document_symbols(snap: &Snapshot, file: FileId) -> Vec<OutlineItem> {
    let text = snap.text(file);
    let parsed = snap.parse(file);
    let mut out = Vec::new();
    for item in &parsed.file.items {
        let e = match item {
            Item::Let(d) => {
                let mut e = entry(&d.name.name, OutlineKind::Constant, d.span, d.name.span);
                e.detail = d.ty.as_ref().map(|t| text[t.span.range()].to_string());
                e
            }
            Item::Event(d) => {
                let mut e = entry(&d.name.name, OutlineKind::Event, d.span, d.name.span);
                e.detail = Some(format!("\"{}\"", d.wire.value));
                e.children = fields(&d.fields, text);
                e
            }
            Item::Type(d) => {
                let mut e = entry(&d.name.name, OutlineKind::Type, d.span, d.name.span);
                if let ast::TypeDeclKind::Record(f) = &d.kind {
                    e.children = fields(f, text);
                }
                e
            }
            Item::Profile(d) => {
                let start = Span::new(d.span.start as usize, d.span.start as usize + 7);
                let mut e = entry("profile", OutlineKind::Profile, d.span, start);
                e.children = fields(&d.fields, text);
                e
            }
            Item::Segment(d) => entry(&d.name.name, OutlineKind::Segment, d.span, d.name.span),
            Item::Message(d) => {
                let mut e = entry(&d.name.name, OutlineKind::Message, d.span, d.name.span);
                let info = crate::lookup::describe_message(d, text);
                e.detail = Some(match info.channel {
                    Some(ch) => format!("{ch}: {}", info.signature),
                    None => info.signature,
                });
                e
            }
            Item::Flow(d) => {
                let mut e = entry(&d.name.name, OutlineKind::Flow, d.span, d.name.span);
                for fi in &d.items {
                    match fi {
                        FlowItem::Clause(c) => {
                            let mut ce =
                                entry(&summary(text, c.span), OutlineKind::Clause, c.span, c.span);
                            if let ClauseKind::OnExit(b) = &c.kind {
                                ce.children = steps(&b.steps, text);
                            }
                            e.children.push(ce);
                        }
                        FlowItem::Step(s) => {
                            e.children.extend(steps(std::slice::from_ref(s), text))
                        }
                    }
                }
                e
            }
            Item::Policy(d) => {
                let start = Span::new(d.span.start as usize, d.span.start as usize + 6);
                let mut e = entry("policy", OutlineKind::Policy, d.span, start);
                e.children = d
                    .items
                    .iter()
                    .map(|i| entry(&summary(text, i.span), OutlineKind::Clause, i.span, i.span))
                    .collect();
                e
            }
            Item::Test(d) => entry(
                &format!("test \"{}\"", d.name.value),
                OutlineKind::Test,
                d.span,
                d.name.span,
            ),
            Item::Error(_) => continue,
        };
        out.push(e);
    }
    out
}

fn fields(fields: &[ast::FieldDecl], text: &str) -> Vec<OutlineItem> {
    fields
        .iter()
        .map(|f| {
            let mut e = entry(&f.name.name, OutlineKind::Field, f.span, f.name.span);
            e.detail = text.get(f.ty.span.range()).map(str::to_string);
            e
        })
        .collect()
}

fn steps(steps: &[ast::Step], text: &str) -> Vec<OutlineItem> {
    let mut out = Vec::new();
    for s in steps {
        if matches!(s.kind, StepKind::Error) {
            continue;
        }
        let mut e = entry(&summary(text, s.span), OutlineKind::Step, s.span, s.span);
        match &s.kind {
            StepKind::If(i) => {
                for (_, b) in &i.branches {
                    e.children.extend(self::steps(&b.steps, text));
                }
                if let Some(b) = &i.otherwise {
                    e.children.extend(self::steps(&b.steps, text));
                }
            }
            StepKind::Split(split) => {
                for a in &split.arms {
                    let label = match &a.percent {
                        Some(p) => {
                            format!("{} {}", text.get(p.span.range()).unwrap_or(""), a.name.name)
                        }
                        None => a.name.name.clone(),
                    };
                    let mut ae = entry(&label, OutlineKind::Step, a.span, a.name.span);
                    ae.children = self::steps(&a.body.steps, text);
                    e.children.push(ae);
                }
            }
            _ => {}
        }
        out.push(e);
    }
    out
}

/// A symbol found by a workspace search.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkspaceSymbol {
    /// The name.
    pub name: String,
    /// What it declares.
    pub kind: SymbolKindName,
    /// The file it is declared in (a stdlib copy for the stdlib).
    pub path: PathBuf,
    /// The name's span.
    pub span: Span,
    /// The enclosing declaration (an event for a field).
    pub container: Option<String>,
}

/// A symbol kind, as the compiler names it.
pub type SymbolKindName = &'static str;

/// Declarations whose name matches `query` (case-insensitive, letters in
/// order), user declarations first; locals and parameters are left out.
pub fn workspace_symbols<'a>(
    snaps: impl Iterator<Item = &'a Snapshot>,
    query: &str,
    limit: usize,
) -> Vec<WorkspaceSymbol> {
    workspace_symbols_until(snaps, query, limit, &Cancel::new()).unwrap_or_default()
}

/// [`workspace_symbols`], stopping early when `cancel` is set (checked
/// between projects and every few thousand symbols).
pub fn workspace_symbols_until<'a>(
    snaps: impl Iterator<Item = &'a Snapshot>,
    query: &str,
    limit: usize,
    cancel: &Cancel,
) -> Result<Vec<WorkspaceSymbol>, Stop> {
    let query = query.to_lowercase();
    let mut out: Vec<(bool, WorkspaceSymbol)> = Vec::new();
    let mut stdlib_done = false;
    for snap in snaps {
        cancel.check()?;
        let an = &snap.analysis;
        for (i, s) in an.symbols.iter().enumerate() {
            if i % 4096 == 4095 {
                cancel.check()?;
            }
            if matches!(s.kind, SymbolKind::Local | SymbolKind::Param) {
                continue;
            }
            let stdlib = snap.project.is_stdlib(s.at.file);
            // The stdlib is the same in every project: list it once.
            if stdlib && stdlib_done {
                continue;
            }
            if !fuzzy(&query, &s.name.to_lowercase()) {
                continue;
            }
            let Some(path) = snap.path(s.at.file) else {
                continue;
            };
            out.push((
                stdlib,
                WorkspaceSymbol {
                    name: s.name.clone(),
                    kind: s.kind.describe(),
                    path: path.to_path_buf(),
                    span: s.at.span,
                    container: s.parent.and_then(|p| an.symbol(p)).map(|p| p.name.clone()),
                },
            ));
        }
        stdlib_done = true;
    }
    out.sort_by(|a, b| {
        (a.0, a.1.name.len(), &a.1.name, &a.1.path).cmp(&(
            b.0,
            b.1.name.len(),
            &b.1.name,
            &b.1.path,
        ))
    });
    Ok(out.into_iter().take(limit).map(|(_, s)| s).collect())
}

fn fuzzy(query: &str, name: &str) -> bool {
    let mut chars = name.chars();
    query.chars().all(|q| chars.any(|c| c == q))
}
