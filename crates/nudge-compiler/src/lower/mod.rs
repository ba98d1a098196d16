//! Lowering: from a checked project to a bytecode [`Bundle`].
//!
//! Lowering reads the syntax tree together with the checker's side tables
//! (what each name resolves to, the type of each expression) and never
//! type-checks again. `test` blocks are not part of a bundle: `nudge test`
//! runs them from the sources, with their `where` conditions compiled by
//! [`lower_test_conditions`].

mod code;
mod conditions;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use nudge_bytecode::{self as bc, BlockKind, Bundle, Type, Value};
use nudge_diagnostics::{FileId, FileSpan, SourceMap, Span};
use nudge_syntax::ast::{
    self, ClauseKind, ContentValue, EntryRule, Expr, ExprKind, FlowItem, Item, PolicyItemKind,
    StrPart, TypeDeclKind, UnaryOp,
};

use crate::analysis::{Analysis, SymbolId};
use crate::builtins::Signature;
use crate::project::Project;
use crate::types::{RecordId, RecordKind, Ty};
use code::Gen;
pub use conditions::{TestCondition, TestConditions, lower_test_conditions};

/// Why a project could not be lowered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerError {
    /// Where, when the problem has a place in the source.
    pub at: Option<FileSpan>,
    /// What went wrong.
    pub message: String,
}

impl LowerError {
    fn new(at: Option<FileSpan>, message: impl Into<String>) -> Self {
        LowerError {
            at,
            message: message.into(),
        }
    }

    /// The error with its place as `path:line:col`, for people.
    pub fn render(&self, sources: &SourceMap) -> String {
        match self.at {
            Some(at) if (at.file.0 as usize) < sources.len() => {
                let file = sources.get(at.file);
                let lc = file.line_col(at.span.start);
                format!("{}:{}:{}: {}", file.path, lc.line, lc.col, self.message)
            }
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LowerError {}

type R<T> = Result<T, LowerError>;

/// The text of a stdlib file by its path in a bundle (`<stdlib>/events.flow`),
/// so listings can quote stdlib lines without the files on disk.
pub fn stdlib_text(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix("<stdlib>/")?;
    nudge_stdlib::file(name).map(|f| f.source)
}

/// Lowers a checked project to a bundle. Refuses a project whose analysis
/// has errors. The result is the same, byte for byte, for the same sources.
pub fn lower(project: &Project, analysis: &Analysis) -> Result<Bundle, LowerError> {
    lower_checked(project, analysis, |l| l.bundle())
}

/// Runs `f` on a lowering of the project, refusing a project with errors.
fn lower_checked<T>(
    project: &Project,
    analysis: &Analysis,
    f: impl FnOnce(&Lower<'_>) -> R<T>,
) -> R<T> {
    if analysis.has_errors() {
        let n = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(LowerError::new(
            None,
            format!(
                "the project has {n} error{}; fix them before building",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
    let parsed: Vec<(FileId, nudge_syntax::Parsed)> = project
        .user_files()
        .chain(project.stdlib_files())
        .map(|id| (id, nudge_syntax::parse(id, &project.sources.get(id).text)))
        .collect();
    let l = Lower::new(project, analysis, &parsed)?;
    f(&l)
}

/// A declaration with the file it is in.
struct Decl<'a, T> {
    file: FileId,
    decl: &'a T,
}

struct Lower<'a> {
    project: &'a Project,
    an: &'a Analysis,
    parsed: &'a [(FileId, nudge_syntax::Parsed)],
    decls: HashMap<FileSpan, SymbolId>,
    lets: Vec<Decl<'a, ast::LetDecl>>,
    segments: Vec<Decl<'a, ast::SegmentDecl>>,
    messages: Vec<Decl<'a, ast::MessageDecl>>,
    flows: Vec<Decl<'a, ast::FlowDecl>>,
    let_index: HashMap<SymbolId, u32>,
    segment_index: HashMap<SymbolId, u32>,
    message_index: HashMap<&'a str, u32>,
    events: HashMap<&'a str, u32>,
    profile: u32,
    builtin_names: Vec<String>,
}

impl<'a> Lower<'a> {
    fn new(
        project: &'a Project,
        an: &'a Analysis,
        parsed: &'a [(FileId, nudge_syntax::Parsed)],
    ) -> R<Self> {
        let mut decls = HashMap::new();
        for (i, s) in an.symbols.iter().enumerate() {
            decls.entry(s.at).or_insert(SymbolId(i as u32));
        }
        let mut lets = Vec::new();
        let mut segments = Vec::new();
        let mut messages = Vec::new();
        let mut flows = Vec::new();
        for (file, p) in parsed {
            let file = *file;
            for item in &p.file.items {
                match item {
                    Item::Let(decl) => lets.push(Decl { file, decl }),
                    Item::Segment(decl) => segments.push(Decl { file, decl }),
                    Item::Message(decl) => messages.push(Decl { file, decl }),
                    Item::Flow(decl) => flows.push(Decl { file, decl }),
                    _ => {}
                }
            }
        }
        // Tables sorted by name: the same project gives the same bundle
        // whatever the order of its files.
        lets.sort_by(|a, b| a.decl.name.name.cmp(&b.decl.name.name));
        segments.sort_by(|a, b| a.decl.name.name.cmp(&b.decl.name.name));
        messages.sort_by(|a, b| a.decl.name.name.cmp(&b.decl.name.name));
        flows.sort_by(|a, b| a.decl.name.name.cmp(&b.decl.name.name));
        let index_of =
            |file: FileId, name: &ast::Ident| decls.get(&FileSpan::new(file, name.span)).copied();
        let let_index = lets
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((index_of(d.file, &d.decl.name)?, i as u32)))
            .collect();
        let segment_index = segments
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((index_of(d.file, &d.decl.name)?, i as u32)))
            .collect();
        let message_index = messages
            .iter()
            .enumerate()
            .map(|(i, d)| (d.decl.name.name.as_str(), i as u32))
            .collect();
        let mut events = HashMap::new();
        let mut profile = None;
        for (i, r) in an.types.records.iter().enumerate() {
            match r.kind {
                RecordKind::Event => {
                    events.entry(r.name.as_str()).or_insert(i as u32);
                }
                RecordKind::Profile => profile = profile.or(Some(i as u32)),
                _ => {}
            }
        }
        let profile = profile.ok_or_else(|| LowerError::new(None, "no profile record"))?;
        // The stdlib's builtins in id order, so a builtin's index is its id,
        // then the internal ones that escape message content (not callable
        // from flows: their names have a colon).
        let builtin_names = nudge_stdlib::BUILTINS
            .iter()
            .map(|b| b.name().to_string())
            .chain(bc::Escape::ALL.iter().map(|e| e.builtin().to_string()))
            .collect();
        Ok(Lower {
            project,
            an,
            parsed,
            decls,
            lets,
            segments,
            messages,
            flows,
            let_index,
            segment_index,
            message_index,
            events,
            profile,
            builtin_names,
        })
    }

    // ------------------------------------------------------------ lookups

    fn pos(&self, file: FileId, span: Span) -> bc::Pos {
        let src = self.project.sources.get(file);
        let lc = src.line_col(span.start);
        bc::Pos {
            file: file.0,
            line: lc.line,
            col: lc.col,
            start: span.start,
            end: span.end,
        }
    }

    fn decl_symbol(&self, at: FileSpan) -> Option<SymbolId> {
        self.decls.get(&at).copied()
    }

    fn expr_ty(&self, at: FileSpan) -> R<Ty> {
        self.an
            .expr_type(at)
            .cloned()
            .ok_or_else(|| LowerError::new(Some(at), "this expression has no recorded type"))
    }

    fn let_index(&self, sym: SymbolId, at: FileSpan) -> R<u32> {
        self.let_index
            .get(&sym)
            .copied()
            .ok_or_else(|| LowerError::new(Some(at), "unknown constant"))
    }

    fn segment_index(&self, sym: SymbolId, at: FileSpan) -> R<u32> {
        self.segment_index
            .get(&sym)
            .copied()
            .ok_or_else(|| LowerError::new(Some(at), "unknown segment"))
    }

    fn segment_by_ident(&self, file: FileId, name: &ast::Ident) -> R<u32> {
        let at = FileSpan::new(file, name.span);
        let sym = self
            .an
            .resolution(at)
            .ok_or_else(|| LowerError::new(Some(at), "unresolved segment"))?;
        self.segment_index(sym, at)
    }

    fn event_schema(&self, name: &str, at: FileSpan) -> R<u32> {
        self.events
            .get(name)
            .copied()
            .ok_or_else(|| LowerError::new(Some(at), format!("unknown event `{name}`")))
    }

    /// The record of the fields several events share, as the checker made it.
    fn shared_schema(&self, events: &[u32], at: FileSpan) -> R<u32> {
        let names: Vec<&str> = events
            .iter()
            .map(|e| self.an.types.record(RecordId(*e)).name.as_str())
            .collect();
        let name = names.join(" | ");
        self.an
            .types
            .records
            .iter()
            .position(|r| r.kind == RecordKind::Synthetic && r.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| LowerError::new(Some(at), "no record of the shared fields"))
    }

    fn profile_field(&self, name: &str, at: FileSpan) -> R<u16> {
        self.an
            .types
            .record(RecordId(self.profile))
            .by_name
            .get(name)
            .and_then(|&i| u16::try_from(i).ok())
            .ok_or_else(|| LowerError::new(Some(at), format!("unknown profile field `{name}`")))
    }

    fn profile_field_ty(&self, idx: u16) -> Ty {
        self.an
            .types
            .record(RecordId(self.profile))
            .fields
            .get(usize::from(idx))
            .map_or(Ty::Error, |f| f.ty.clone())
    }

    /// The index of the internal builtin escaping values for `escape`.
    fn escape_builtin(&self, escape: bc::Escape) -> R<u16> {
        self.builtin_names
            .iter()
            .position(|n| n == escape.builtin())
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| LowerError::new(None, format!("no builtin `{}`", escape.builtin())))
    }

    fn builtin(&self, name: &str, at: FileSpan) -> R<(u16, &'static Signature)> {
        match nudge_stdlib::Builtin::from_name(name) {
            Some(b) => Ok((b.id(), b.signature())),
            None => Err(LowerError::new(
                Some(at),
                format!("unknown builtin `{name}`"),
            )),
        }
    }

    fn message(&self, name: &str, at: FileSpan) -> R<(u32, Vec<(String, Ty)>)> {
        let idx = *self
            .message_index
            .get(name)
            .ok_or_else(|| LowerError::new(Some(at), format!("unknown message `{name}`")))?;
        let d = &self.messages[idx as usize];
        let params = d
            .decl
            .params
            .iter()
            .map(|p| Ok((p.name.name.clone(), self.type_expr(&p.ty, d.file)?)))
            .collect::<R<Vec<_>>>()?;
        Ok((idx, params))
    }

    /// The type a written type denotes.
    fn type_expr(&self, t: &ast::TypeExpr, file: FileId) -> R<Ty> {
        let at = FileSpan::new(file, t.span);
        let base = if t.name.name == "list" {
            let inner = t
                .args
                .first()
                .ok_or_else(|| LowerError::new(Some(at), "`list` without an item type"))?;
            Ty::List(Box::new(self.type_expr(inner, file)?))
        } else if let Some(s) = crate::types::scalar(&t.name.name) {
            s
        } else if let Some(i) = self.an.types.records.iter().position(|r| {
            r.name == t.name.name && matches!(r.kind, RecordKind::Type | RecordKind::Event)
        }) {
            Ty::Record(RecordId(i as u32))
        } else if let Some(i) = self
            .an
            .types
            .enums
            .iter()
            .position(|e| e.name == t.name.name)
        {
            Ty::Enum(crate::types::EnumId(i as u32))
        } else {
            return Err(LowerError::new(
                Some(at),
                format!("unknown type `{}`", t.name.name),
            ));
        };
        Ok(if t.optional { base.optional() } else { base })
    }

    /// The bundle type of a checked type.
    fn bc_type(&self, t: &Ty) -> R<Type> {
        Ok(match t {
            Ty::Bool => Type::Bool,
            Ty::Int => Type::Int,
            Ty::Decimal => Type::Decimal,
            Ty::Money => Type::Money,
            Ty::Percent => Type::Percent,
            Ty::String => Type::String,
            Ty::Duration => Type::Duration,
            Ty::Time => Type::Time,
            Ty::Date => Type::Date,
            Ty::TimeOfDay => Type::TimeOfDay,
            Ty::Timezone => Type::Timezone,
            Ty::List(t) => Type::List(Box::new(self.bc_type(t)?)),
            Ty::Record(r) => Type::Record(r.0),
            Ty::Enum(e) => Type::Enum(e.0),
            Ty::Optional(t) => Type::Optional(Box::new(self.bc_type(t)?)),
            Ty::Fn(..) | Ty::Null | Ty::Error => {
                return Err(LowerError::new(
                    None,
                    format!("`{}` is not a storable type", self.an.types.display(t)),
                ));
            }
        })
    }

    // ------------------------------------------------------------ the bundle

    fn bundle(&self) -> R<Bundle> {
        let files = self
            .project
            .sources
            .iter()
            .map(|(_, f)| f.path.clone())
            .collect();
        let mut bundle = Bundle {
            files,
            builtins: self.builtin_names.clone(),
            schemas: self.schemas()?,
            enums: self
                .an
                .types
                .enums
                .iter()
                .map(|e| bc::EnumSchema {
                    name: e.name.clone(),
                    values: e.members.clone(),
                })
                .collect(),
            profile: self.profile,
            lets: self
                .lets
                .iter()
                .map(|d| self.let_global(d))
                .collect::<R<_>>()?,
            segments: self
                .segments
                .iter()
                .map(|d| self.segment_global(d))
                .collect::<R<_>>()?,
            messages: self
                .messages
                .iter()
                .map(|d| self.message_def(d))
                .collect::<R<_>>()?,
            flows: self.flows.iter().map(|d| self.flow(d)).collect::<R<_>>()?,
            policy: self.policy()?,
            retention: Default::default(),
        };
        bundle.compute_versions();
        // Read off the lowered code, so it covers every way the rules look back.
        bundle.retention = bc::Retention::derive(&bundle);
        bundle
            .validate()
            .map_err(|e| LowerError::new(None, format!("internal error: {e}")))?;
        Ok(bundle)
    }

    fn schemas(&self) -> R<Vec<bc::Schema>> {
        // Field defaults by record and field name, from the declarations.
        let mut defaults: HashMap<(u32, &str), (FileId, &Expr)> = HashMap::new();
        for (file, p) in self.parsed {
            for item in &p.file.items {
                let (fields, record): (&[ast::FieldDecl], Option<u32>) = match item {
                    Item::Event(d) => (&d.fields, self.record_at(*file, &d.name)),
                    Item::Type(ast::TypeDecl {
                        kind: TypeDeclKind::Record(fields),
                        name,
                        ..
                    }) => (fields, self.record_at(*file, name)),
                    Item::Profile(p) => (&p.fields, Some(self.profile)),
                    _ => continue,
                };
                let Some(record) = record else { continue };
                for f in fields {
                    if let Some(d) = &f.default {
                        defaults
                            .entry((record, f.name.name.as_str()))
                            .or_insert((*file, d));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(self.an.types.records.len());
        for (i, r) in self.an.types.records.iter().enumerate() {
            let kind = match r.kind {
                RecordKind::Event => bc::SchemaKind::Event,
                RecordKind::Type => bc::SchemaKind::Record,
                RecordKind::Profile => bc::SchemaKind::Profile,
                RecordKind::Synthetic => bc::SchemaKind::Shared,
            };
            let mut fields = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                let default = match defaults.get(&(i as u32, f.name.as_str())) {
                    Some((file, e)) => Some(self.fold(e, *file, &f.ty, 0)?),
                    None => None,
                };
                fields.push(bc::FieldSchema {
                    name: f.name.clone(),
                    ty: self
                        .bc_type(&f.ty)
                        .map_err(|e| LowerError::new(f.at, e.message))?,
                    default,
                });
            }
            out.push(bc::Schema {
                name: r.name.clone(),
                kind,
                wire: r.wire.clone(),
                fields,
            });
        }
        Ok(out)
    }

    fn record_at(&self, file: FileId, name: &ast::Ident) -> Option<u32> {
        let at = FileSpan::new(file, name.span);
        self.an
            .types
            .records
            .iter()
            .position(|r| r.at == Some(at))
            .map(|i| i as u32)
    }

    /// The value of a constant expression (a field default).
    fn fold(&self, e: &Expr, file: FileId, expected: &Ty, depth: u32) -> R<Value> {
        let at = FileSpan::new(file, e.span);
        let not_constant = || {
            LowerError::new(
                Some(at),
                "a field default must be a constant: a literal, a list of literals or a top-level `let` of one",
            )
        };
        if depth > 32 {
            return Err(not_constant());
        }
        let want = expected.strip_optional();
        let v = match &e.kind {
            ExprKind::Int(i) if *want == Ty::Decimal => Value::Decimal((*i).into()),
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Decimal(d) => Value::Decimal(*d),
            ExprKind::Money(d) => Value::Money(*d),
            ExprKind::Percent(d) => Value::Percent(*d),
            ExprKind::Duration(s) => Value::Duration(*s),
            ExprKind::Instant(t) => Value::Time(*t),
            ExprKind::Date(d) => Value::Date(*d),
            ExprKind::TimeOfDay(m) => Value::TimeOfDay(*m),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::Str(parts) => {
                let text = plain_text(parts).ok_or_else(not_constant)?;
                if *want == Ty::Timezone {
                    Value::Timezone(text.into())
                } else {
                    Value::str(&text)
                }
            }
            ExprKind::List(items) => {
                let elem = match want {
                    Ty::List(t) => (**t).clone(),
                    _ => Ty::Error,
                };
                let vals = items
                    .iter()
                    .map(|x| self.fold(x, file, &elem, depth + 1))
                    .collect::<R<Vec<_>>>()?;
                Value::List(vals.into())
            }
            ExprKind::Unary {
                op: UnaryOp::Neg,
                expr,
            } => match self.fold(expr, file, expected, depth + 1)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(not_constant)?),
                Value::Decimal(d) => Value::Decimal(-d),
                Value::Money(d) => Value::Money(-d),
                Value::Percent(d) => Value::Percent(-d),
                Value::Duration(s) => Value::Duration(s.checked_neg().ok_or_else(not_constant)?),
                _ => return Err(not_constant()),
            },
            ExprKind::Name(_) => {
                let sym = self.an.resolution(at).ok_or_else(not_constant)?;
                let idx = self.let_index.get(&sym).ok_or_else(not_constant)?;
                let d = &self.lets[*idx as usize];
                self.fold(&d.decl.value, d.file, expected, depth + 1)?
            }
            _ => return Err(not_constant()),
        };
        Ok(v)
    }

    fn let_global(&self, d: &Decl<'a, ast::LetDecl>) -> R<bc::Global> {
        let ty = match &d.decl.ty {
            Some(t) => self.type_expr(t, d.file)?,
            None => self.expr_ty(FileSpan::new(d.file, d.decl.value.span))?,
        };
        let mut g = Gen::new(self, d.file, Some(BlockKind::Expr));
        g.main_expr(&d.decl.value, Some(&ty))?;
        let (unit, _) = g.finish()?;
        Ok(bc::Global {
            name: d.decl.name.name.clone(),
            ty: self.bc_type(&ty).map_err(|e| {
                LowerError::new(Some(FileSpan::new(d.file, d.decl.span)), e.message)
            })?,
            unit,
        })
    }

    fn segment_global(&self, d: &Decl<'a, ast::SegmentDecl>) -> R<bc::Global> {
        let mut g = Gen::new(self, d.file, Some(BlockKind::Expr));
        g.main_expr(&d.decl.predicate, None)?;
        let (unit, _) = g.finish()?;
        Ok(bc::Global {
            name: d.decl.name.name.clone(),
            ty: Type::Bool,
            unit,
        })
    }

    fn message_def(&self, d: &Decl<'a, ast::MessageDecl>) -> R<bc::Message> {
        let decl = d.decl;
        let at = |span: Span| FileSpan::new(d.file, span);
        let mut g = Gen::new(self, d.file, None);
        let names: Vec<&ast::Ident> = decl.params.iter().map(|p| &p.name).collect();
        g.declare_params(&names)?;
        let mut params = Vec::with_capacity(decl.params.len());
        for p in &decl.params {
            let ty = self.type_expr(&p.ty, d.file)?;
            let default = match &p.default {
                Some(e) => Some(g.expr_block(e, Some(&ty))?),
                None => None,
            };
            params.push(bc::Param {
                name: p.name.name.clone(),
                ty: self
                    .bc_type(&ty)
                    .map_err(|e| LowerError::new(Some(at(p.span)), e.message))?,
                default,
            });
        }
        let name_value = |c: &ast::ContentField| match &c.value {
            ContentValue::Expr(Expr {
                kind: ExprKind::Name(n),
                ..
            }) => Some(n.clone()),
            _ => None,
        };
        // The channel first: it decides how each content value is escaped.
        let channel = decl
            .content
            .iter()
            .filter(|c| c.key.name == "channel")
            .find_map(|c| name_value(c).and_then(|n| bc::Channel::from_name(&n)));
        let mut purpose = bc::Purpose::Marketing;
        let mut content = Vec::new();
        for c in &decl.content {
            match c.key.name.as_str() {
                "channel" => {}
                "purpose" => {
                    if name_value(c).as_deref() == Some("transactional") {
                        purpose = bc::Purpose::Transactional;
                    }
                }
                key => {
                    let value = match &c.value {
                        ContentValue::Expr(e) => {
                            let escape =
                                channel.map_or(bc::Escape::Line, |ch| bc::Escape::of(ch, key));
                            bc::ContentValue::Code(g.content_block(e, escape)?)
                        }
                        ContentValue::Template(path) => {
                            bc::ContentValue::Template(self.template(d.file, path, &params)?)
                        }
                    };
                    content.push(bc::Content {
                        key: key.to_string(),
                        value,
                    });
                }
            }
        }
        let channel = channel.ok_or_else(|| {
            LowerError::new(Some(at(decl.name.span)), "the message has no channel")
        })?;
        let (unit, _) = g.finish()?;
        Ok(bc::Message {
            name: decl.name.name.clone(),
            channel,
            purpose,
            params,
            content,
            unit,
        })
    }

    fn template(&self, file: FileId, path: &ast::StrLit, params: &[bc::Param]) -> R<bc::Template> {
        let at = FileSpan::new(file, path.span);
        let tid = match self.project.template(file, &path.value) {
            Some(Ok(id)) => *id,
            _ => {
                return Err(LowerError::new(
                    Some(at),
                    format!("template {:?} cannot be read", path.value),
                ));
            }
        };
        let source = self.project.sources.get(tid).text.clone();
        let env = minijinja::Environment::new();
        let tmpl = env
            .template_from_str(&source)
            .map_err(|e| LowerError::new(Some(at), format!("template {:?}: {e}", path.value)))?;
        let mut vars: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
        vars.sort();
        let mut lets = Vec::new();
        for v in vars {
            if params.iter().any(|p| p.name == v) {
                continue;
            }
            if let Ok(i) = self
                .lets
                .binary_search_by(|d| d.decl.name.name.as_str().cmp(&v))
            {
                lets.push((v, i as u32));
            }
        }
        Ok(bc::Template {
            path: path.value.clone(),
            source,
            lets,
        })
    }

    fn rule(&self, g: &mut Gen, file: FileId, f: &ast::EventFilter) -> R<bc::EventRule> {
        let event = self.event_schema(&f.event.name, FileSpan::new(file, f.event.span))?;
        let predicate = match &f.predicate {
            Some(p) => Some(g.expr_block(p, None)?),
            None => None,
        };
        Ok(bc::EventRule { event, predicate })
    }

    fn flow(&self, d: &Decl<'a, ast::FlowDecl>) -> R<bc::Flow> {
        let decl = d.decl;
        let file = d.file;
        let mut g = Gen::new(self, file, Some(BlockKind::Steps));
        let steps: Vec<&ast::Step> = decl
            .items
            .iter()
            .filter_map(|i| match i {
                FlowItem::Step(s) => Some(s),
                FlowItem::Clause(_) => None,
            })
            .collect();
        let on_exit: Vec<&ast::Block> = decl
            .items
            .iter()
            .filter_map(|i| match i {
                FlowItem::Clause(ast::Clause {
                    kind: ClauseKind::OnExit(b),
                    ..
                }) => Some(b),
                _ => None,
            })
            .collect();
        // Persistent locals first, so a sleeping instance keeps only a prefix.
        g.declare_bindings(steps.iter().copied())?;
        for b in &on_exit {
            g.declare_bindings(&b.steps)?;
        }
        let locals = g.slots;

        let mut trigger = None;
        let mut entry = bc::Entry::Single;
        let mut exit_on = Vec::new();
        let mut exit_if = Vec::new();
        let mut suppress = Vec::new();
        let mut quiet = Vec::new();
        let mut caps = Vec::new();
        let mut goal = None;
        let mut holdout = None;
        let mut priority = 0;
        for item in &decl.items {
            let FlowItem::Clause(c) = item else { continue };
            match &c.kind {
                ClauseKind::Trigger(t) => {
                    if trigger.is_none() {
                        trigger = Some(self.trigger(&mut g, file, t)?);
                    }
                }
                ClauseKind::Entry(e) => {
                    entry = match e {
                        EntryRule::Once => bc::Entry::Once,
                        EntryRule::OncePer(d) => bc::Entry::OncePer(d.seconds),
                        EntryRule::Always => bc::Entry::Always,
                    }
                }
                ClauseKind::ExitOn(f) => exit_on.push(self.rule(&mut g, file, f)?),
                ClauseKind::ExitIf(e) => exit_if.push(g.expr_block(e, None)?),
                ClauseKind::Suppress(e) => suppress.push(g.expr_block(e, None)?),
                ClauseKind::QuietHours(q) => quiet.push(quiet_hours(q)),
                ClauseKind::Cap(cp) => caps.push(cap(cp, FileSpan::new(file, c.span))?),
                ClauseKind::Goal(gl) => {
                    if goal.is_none() {
                        goal = Some(bc::Goal {
                            rule: self.rule(&mut g, file, &gl.filter)?,
                            within: gl.within.seconds,
                        });
                    }
                }
                ClauseKind::Holdout(p) => holdout = Some(p.value),
                ClauseKind::Priority(n) => priority = n.value,
                ClauseKind::OnExit(_) => {}
            }
        }
        let trigger = trigger.ok_or_else(|| {
            LowerError::new(
                Some(FileSpan::new(file, decl.name.span)),
                "the flow has no trigger",
            )
        })?;
        // The steps first, so that steps are numbered in source order.
        g.main_steps(steps.iter().copied(), closing(decl.span))?;
        let on_exit = if on_exit.is_empty() {
            None
        } else {
            // Several `on exit` blocks run as one, in source order.
            let all: Vec<ast::Step> = on_exit.iter().flat_map(|b| b.steps.clone()).collect();
            let end = on_exit.last().map_or(decl.span, |b| b.span);
            Some(g.steps_block(&all, closing(end))?)
        };
        if g.bindings_walked as usize != g.tables.steps.len() {
            return Err(LowerError::new(
                Some(FileSpan::new(file, decl.name.span)),
                "the steps were numbered differently from their locals",
            ));
        }
        let local_names = std::mem::take(&mut g.local_names);
        let (unit, tables) = g.finish()?;
        Ok(bc::Flow {
            name: decl.name.name.clone(),
            version: String::new(),
            trigger,
            entry,
            exit_on,
            exit_if,
            suppress,
            quiet,
            caps,
            goal,
            holdout,
            priority,
            on_exit,
            locals,
            local_names,
            waits: tables.waits,
            splits: tables.splits,
            steps: tables.steps,
            unit,
        })
    }

    fn trigger(&self, g: &mut Gen, file: FileId, t: &ast::Trigger) -> R<bc::Trigger> {
        Ok(match t {
            ast::Trigger::Event(f) => bc::Trigger::Event(self.rule(g, file, f)?),
            ast::Trigger::Schedule {
                cadence,
                at,
                local,
                segment,
            } => {
                let cadence = match cadence {
                    ast::Cadence::Day(_) => bc::Cadence::Day,
                    ast::Cadence::Weekday(w) => {
                        let days = [
                            "monday",
                            "tuesday",
                            "wednesday",
                            "thursday",
                            "friday",
                            "saturday",
                            "sunday",
                        ];
                        let i = days.iter().position(|d| *d == w.name).ok_or_else(|| {
                            LowerError::new(Some(FileSpan::new(file, w.span)), "unknown weekday")
                        })?;
                        bc::Cadence::Weekday(i as u8)
                    }
                    ast::Cadence::Month(n) => {
                        bc::Cadence::Month(u8::try_from(n.value).map_err(|_| {
                            LowerError::new(Some(FileSpan::new(file, n.span)), "day out of range")
                        })?)
                    }
                };
                bc::Trigger::Schedule {
                    cadence,
                    at: minutes(at),
                    local: *local,
                    segment: match segment {
                        Some(s) => Some(self.segment_by_ident(file, s)?),
                        None => None,
                    },
                }
            }
            ast::Trigger::DateProperty { offset, field } => bc::Trigger::DateProperty {
                offset: offset.seconds,
                field: self.profile_field(&field.name, FileSpan::new(file, field.span))?,
            },
            ast::Trigger::Entering(s) => bc::Trigger::Entering {
                segment: self.segment_by_ident(file, s)?,
            },
        })
    }

    fn policy(&self) -> R<bc::Policy> {
        let mut out = bc::Policy::default();
        for (file, p) in self.parsed {
            for item in &p.file.items {
                let Item::Policy(pol) = item else { continue };
                for it in &pol.items {
                    match &it.kind {
                        PolicyItemKind::Timezone(s) => {
                            out.timezone.get_or_insert_with(|| s.value.clone());
                        }
                        PolicyItemKind::QuietHours(q) => out.quiet.push(quiet_hours(q)),
                        PolicyItemKind::Cap(c) => {
                            out.caps.push(cap(c, FileSpan::new(*file, it.span))?)
                        }
                        PolicyItemKind::SuppressList(s) => {
                            let base = Path::new(&self.project.sources.get(*file).path)
                                .parent()
                                .map(Path::to_path_buf)
                                .unwrap_or_default();
                            out.suppress_lists
                                .push(base.join(&s.value).display().to_string());
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The text of a string literal without interpolation.
fn plain_text(parts: &[StrPart]) -> Option<String> {
    let mut out = String::new();
    for p in parts {
        match p {
            StrPart::Text(t, _) => out.push_str(t),
            StrPart::Interp(_) => return None,
        }
    }
    Some(out)
}

/// The span of the closing brace of a construct, where its `end` is placed.
fn closing(span: Span) -> Span {
    Span::new(span.end.saturating_sub(1) as usize, span.end as usize)
}

fn minutes(t: &ast::TimeLit) -> u16 {
    u16::from(t.hour) * 60 + u16::from(t.minute)
}

fn quiet_hours(q: &ast::QuietHours) -> bc::QuietHours {
    bc::QuietHours {
        channel: q
            .channel
            .as_ref()
            .and_then(|c| bc::Channel::from_name(&c.name)),
        from: minutes(&q.from),
        to: minutes(&q.to),
    }
}

fn cap(c: &ast::Cap, at: FileSpan) -> R<bc::Cap> {
    let scope = if c.scope.name == "marketing" {
        bc::CapScope::Marketing
    } else {
        bc::CapScope::Channel(
            bc::Channel::from_name(&c.scope.name)
                .ok_or_else(|| LowerError::new(Some(at), "unknown channel"))?,
        )
    };
    Ok(bc::Cap {
        scope,
        count: u32::try_from(c.count.value)
            .map_err(|_| LowerError::new(Some(at), "cap count out of range"))?,
        per: c.per.seconds,
        then: match c.then {
            Some(ast::CapAction::Defer) => bc::CapAction::Defer,
            _ => bc::CapAction::Skip,
        },
    })
}
