//! The last pass of the checker: the checked syntax trees, with what the
//! checker found out about them (resolutions, types, declarations), become
//! the typed IR ([`crate::tir`]) that lowering reads.
//!
//! It runs only on a project without errors, and reports every item it
//! cannot build, not only the first. What it can still refuse is
//! of two kinds. A construct that type-checks but that a bundle cannot hold
//! (a field default that is not a constant, a `let` of no storable type,
//! more slots or steps than one unit takes) is an error with code E0309 at
//! its place. Anything else it does not find (a type the checker did not
//! record, a name it did not resolve) is a fault of the checker itself,
//! reported as E0901 rather than lowered wrongly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use nudge_bytecode::{self as bc, Type, Value};
use nudge_diagnostics::{Diagnostic, FileId, FileSpan, Span, codes};
use nudge_syntax::Parsed;
use nudge_syntax::ast::{
    self, BinaryOp, ClauseKind, ContentValue, EntryRule, ExprKind, FlowItem, Item, PolicyItemKind,
    StrPart, TypeDeclKind, UnaryOp,
};
use rust_decimal::Decimal;

use crate::analysis::{Analysis, SymbolId, SymbolKind};
use crate::builtins::SigTy;
use crate::project::Project;
use crate::tir::{self, ArithOp, CompareOp};
use crate::types::{EnumId, RecordId, RecordKind, Ty};

use super::expr::plain_text;

type R<T> = Result<T, Box<Diagnostic>>;

/// What the checker learnt of each template a message uses: its file and
/// the variables it reads, by the span of the path in the message.
pub(crate) type TemplateVars = HashMap<FileSpan, (FileId, Vec<String>)>;

/// Builds the typed program of a checked project without errors, or says
/// what keeps it from being built: one diagnostic for each item (a `let`,
/// segment, message, flow, field default or test condition) that cannot be.
pub(crate) fn build(
    project: &Project,
    files: &[(FileId, Arc<Parsed>)],
    an: &Analysis,
    templates: &TemplateVars,
) -> Result<tir::Program, Vec<Diagnostic>> {
    let builder = Builder::new(project, files, an, templates).map_err(|d| vec![*d])?;
    let mut errors = Vec::new();
    let program = builder.program(&mut errors);
    if errors.is_empty() {
        Ok(program)
    } else {
        Err(errors)
    }
}

/// The items that could be built; each one that could not adds its diagnostic to `errors`.
fn keep<T>(items: impl Iterator<Item = R<T>>, errors: &mut Vec<Diagnostic>) -> Vec<T> {
    items
        .filter_map(|r| r.map_err(|d| errors.push(*d)).ok())
        .collect()
}

/// A declaration with the file it is in.
struct Decl<'a, T> {
    file: FileId,
    decl: &'a T,
}

/// The slots and counters of one unit of code being described.
struct Unit {
    file: FileId,
    slots: u16,
    locals: HashMap<SymbolId, u16>,
    steps: u16,
    waits: u16,
    splits: u16,
    /// Persistent locals' names, with the steps that declare them.
    local_names: Vec<bc::LocalName>,
}

impl Unit {
    fn new(file: FileId) -> Self {
        Unit {
            file,
            slots: 0,
            locals: HashMap::new(),
            steps: 0,
            waits: 0,
            splits: 0,
            local_names: Vec::new(),
        }
    }

    fn at(&self, span: Span) -> FileSpan {
        FileSpan::new(self.file, span)
    }
}

/// The next value of a counter, or E0309 when one unit has too many.
fn next(counter: &mut u16, what: &str, at: FileSpan) -> R<u16> {
    let n = *counter;
    *counter = n.checked_add(1).ok_or_else(|| too_large(at, what))?;
    Ok(n)
}

/// E0309 for a count past what a bundle numbers with 16 bits.
fn too_large(at: FileSpan, what: &str) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(
            codes::E0309,
            at,
            format!("more than 65,535 {what} in one flow, message, value or record"),
        )
        .with_primary_label(format!(
            "a bundle numbers {what} with 16 bits; this is past the last"
        ))
        .with_help("split it into smaller flows, messages or records"),
    )
}

/// A fault of the checker: something it accepted without recording.
fn internal(at: Option<FileSpan>, what: impl Into<String>) -> Box<Diagnostic> {
    let what = what.into();
    let at = at.unwrap_or(FileSpan::new(FileId(0), Span::new(0, 0)));
    Box::new(
        Diagnostic::new(codes::E0901, at, format!("internal compiler error: {what}"))
            .with_primary_label("the checker accepted this without describing it")
            .with_help("please report this, with the file; the project cannot be built until then"),
    )
}

/// E0309: something that type-checks but that a bundle cannot hold.
fn not_compilable(at: FileSpan, title: String, label: &str, help: &str) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(codes::E0309, at, title)
            .with_primary_label(label.to_string())
            .with_help(help.to_string()),
    )
}

struct Builder<'a> {
    project: &'a Project,
    files: &'a [(FileId, Arc<Parsed>)],
    an: &'a Analysis,
    templates: &'a TemplateVars,
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
}

impl<'a> Builder<'a> {
    fn new(
        project: &'a Project,
        files: &'a [(FileId, Arc<Parsed>)],
        an: &'a Analysis,
        templates: &'a TemplateVars,
    ) -> R<Self> {
        let mut decls = HashMap::new();
        for (i, s) in an.symbols.iter().enumerate() {
            decls.entry(s.at).or_insert(SymbolId(i as u32));
        }
        let mut lets = Vec::new();
        let mut segments = Vec::new();
        let mut messages = Vec::new();
        let mut flows = Vec::new();
        for (file, p) in files {
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
        let profile = profile.ok_or_else(|| internal(None, "no profile record"))?;
        Ok(Builder {
            project,
            files,
            an,
            templates,
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
        })
    }

    fn program(&self, errors: &mut Vec<Diagnostic>) -> tir::Program {
        let schemas = self.schemas(errors);
        let policy = self.policy().unwrap_or_else(|d| {
            errors.push(*d);
            bc::Policy::default()
        });
        tir::Program {
            schemas,
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
            lets: keep(self.lets.iter().map(|d| self.let_item(d)), errors),
            segments: keep(self.segments.iter().map(|d| self.segment(d)), errors),
            messages: keep(self.messages.iter().map(|d| self.message(d)), errors),
            flows: keep(self.flows.iter().map(|d| self.flow(d)), errors),
            policy,
            conditions: keep(self.conditions(), errors),
        }
    }

    // ------------------------------------------------------------ lookups

    fn ty_at(&self, at: FileSpan) -> R<Ty> {
        self.an
            .expr_type(at)
            .cloned()
            .ok_or_else(|| internal(Some(at), "this expression has no recorded type"))
    }

    fn event_schema(&self, name: &str, at: FileSpan) -> R<u32> {
        self.events
            .get(name)
            .copied()
            .ok_or_else(|| internal(Some(at), format!("unknown event `{name}`")))
    }

    fn segment_by_ident(&self, file: FileId, name: &ast::Ident) -> R<u32> {
        let at = FileSpan::new(file, name.span);
        self.an
            .resolution(at)
            .and_then(|sym| self.segment_index.get(&sym).copied())
            .ok_or_else(|| internal(Some(at), "unresolved segment"))
    }

    fn profile_field(&self, name: &str, at: FileSpan) -> R<u16> {
        let i = self
            .an
            .types
            .record(RecordId(self.profile))
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| internal(Some(at), format!("unknown profile field `{name}`")))?;
        u16::try_from(i).map_err(|_| too_large(at, "fields"))
    }

    fn profile_field_ty(&self, idx: u16) -> Ty {
        self.an
            .types
            .record(RecordId(self.profile))
            .fields
            .get(usize::from(idx))
            .map_or(Ty::Error, |f| f.ty.clone())
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
            .ok_or_else(|| internal(Some(at), "no record of the shared fields"))
    }

    /// A message's index and its parameters' names and types.
    fn message_params(&self, name: &str, at: FileSpan) -> R<(u32, Vec<(String, Ty)>)> {
        let idx = *self
            .message_index
            .get(name)
            .ok_or_else(|| internal(Some(at), format!("unknown message `{name}`")))?;
        let d = self
            .messages
            .get(idx as usize)
            .ok_or_else(|| internal(Some(at), format!("unknown message `{name}`")))?;
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
                .ok_or_else(|| internal(Some(at), "`list` without an item type"))?;
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
            Ty::Enum(EnumId(i as u32))
        } else {
            return Err(internal(
                Some(at),
                format!("unknown type `{}`", t.name.name),
            ));
        };
        Ok(if t.optional { base.optional() } else { base })
    }

    /// The bundle type of a checked type, or the type's name when it has none.
    fn bc_type(&self, t: &Ty) -> Result<Type, String> {
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
            Ty::Fn(..) | Ty::Null | Ty::Error => return Err(self.an.types.display(t)),
        })
    }

    /// Gives a declared local (by the span of its name) the unit's next slot.
    fn declare(&self, u: &mut Unit, name: &ast::Ident) -> R<u16> {
        let at = u.at(name.span);
        let sym = self.decls.get(&at).copied().ok_or_else(|| {
            internal(
                Some(at),
                format!("`{}` has no recorded declaration", name.name),
            )
        })?;
        let slot = next(&mut u.slots, "local variables", at)?;
        u.locals.insert(sym, slot);
        Ok(slot)
    }

    fn slot_of(&self, u: &Unit, name: &ast::Ident) -> R<u16> {
        let at = u.at(name.span);
        self.decls
            .get(&at)
            .and_then(|s| u.locals.get(s).copied())
            .ok_or_else(|| internal(Some(at), format!("`{}` has no local slot", name.name)))
    }

    // ------------------------------------------------------------ expressions

    fn expr(&self, u: &mut Unit, e: &ast::Expr) -> R<tir::Expr> {
        let at = u.at(e.span);
        let ty = self.ty_at(at)?;
        let kind = match &e.kind {
            ExprKind::Int(i) => tir::ExprKind::Const(Value::Int(*i)),
            ExprKind::Decimal(d) => tir::ExprKind::Const(Value::Decimal(*d)),
            ExprKind::Money(d) => tir::ExprKind::Const(Value::Money(*d)),
            ExprKind::Percent(d) => tir::ExprKind::Const(Value::Percent(*d)),
            ExprKind::Duration(s) => tir::ExprKind::Const(Value::Duration(*s)),
            ExprKind::Instant(t) => tir::ExprKind::Const(Value::Time(*t)),
            ExprKind::Date(d) => tir::ExprKind::Const(Value::Date(*d)),
            ExprKind::TimeOfDay(m) => tir::ExprKind::Const(Value::TimeOfDay(*m)),
            ExprKind::Bool(b) => tir::ExprKind::Const(Value::Bool(*b)),
            ExprKind::None => tir::ExprKind::Const(Value::None),
            ExprKind::Str(parts) => match plain_text(parts) {
                Some(text) => tir::ExprKind::PlainStr(match ty {
                    Ty::Timezone => Value::Timezone(text.into()),
                    _ => Value::str(&text),
                }),
                None => {
                    let mut out = Vec::with_capacity(parts.len());
                    for p in parts {
                        out.push(match p {
                            StrPart::Text(t, span) => tir::StrPart::Text(t.clone(), *span),
                            StrPart::Interp(x) => tir::StrPart::Interp(self.expr(u, x)?),
                        });
                    }
                    let count =
                        u16::try_from(parts.len()).map_err(|_| too_large(at, "string parts"))?;
                    tir::ExprKind::Interp { parts: out, count }
                }
            },
            ExprKind::Name(n) => self.name(u, n, at)?,
            ExprKind::Field {
                base,
                field,
                optional,
            } => self.field(u, base, field, *optional)?,
            ExprKind::Call { callee, args } => self.call(u, &ty, callee, args)?,
            ExprKind::Unary { op, expr } => {
                let inner = Box::new(self.expr(u, expr)?);
                match op {
                    UnaryOp::Not => tir::ExprKind::Not(inner),
                    UnaryOp::Neg => tir::ExprKind::Neg(inner),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(u, *op, lhs, rhs, at)?,
            ExprKind::List(items) => {
                let items = items
                    .iter()
                    .map(|it| self.expr(u, it))
                    .collect::<R<Vec<_>>>()?;
                let count = u32::try_from(items.len()).map_err(|_| too_large(at, "list items"))?;
                tir::ExprKind::List { items, count }
            }
            ExprKind::Lambda { .. } => {
                return Err(internal(Some(at), "a function outside a builtin call"));
            }
            ExprKind::Error => {
                return Err(internal(Some(at), "an expression that did not parse"));
            }
            ExprKind::Record(_) => {
                return Err(internal(Some(at), "a record literal outside a test"));
            }
        };
        Ok(tir::Expr {
            kind,
            ty,
            span: e.span,
        })
    }

    fn name(&self, u: &Unit, n: &str, at: FileSpan) -> R<tir::ExprKind> {
        let Some(sym) = self.an.resolution(at) else {
            // The links are marks that the email plugin replaces.
            if let Some((_, mark)) = bc::LINK_NAMES.iter().find(|(name, _)| *name == n) {
                return Ok(tir::ExprKind::Const(Value::str(mark)));
            }
            return match n {
                "profile" => Ok(tir::ExprKind::Profile),
                "trigger" => Ok(tir::ExprKind::Trigger),
                "event" => Ok(tir::ExprKind::Event),
                _ => Err(internal(Some(at), format!("`{n}` was not resolved"))),
            };
        };
        match self.an.symbol(sym).map(|s| s.kind) {
            Some(SymbolKind::Local | SymbolKind::Param) => match u.locals.get(&sym) {
                Some(&slot) => Ok(tir::ExprKind::Local(slot)),
                None => Err(internal(Some(at), format!("`{n}` has no local slot here"))),
            },
            Some(SymbolKind::Let) => self
                .let_index
                .get(&sym)
                .map(|&i| tir::ExprKind::Let(i))
                .ok_or_else(|| internal(Some(at), "unknown constant")),
            Some(SymbolKind::Segment) => self
                .segment_index
                .get(&sym)
                .map(|&i| tir::ExprKind::Segment(i))
                .ok_or_else(|| internal(Some(at), "unknown segment")),
            _ => Err(internal(Some(at), format!("`{n}` is not a value"))),
        }
    }

    fn field(
        &self,
        u: &mut Unit,
        base: &ast::Expr,
        field: &ast::Ident,
        optional: bool,
    ) -> R<tir::ExprKind> {
        let field_at = u.at(field.span);
        let is_profile = matches!(&base.kind, ExprKind::Name(n) if n == "profile")
            && self.an.resolution(u.at(base.span)).is_none();
        if is_profile {
            return Ok(tir::ExprKind::ProfileField {
                field: self.profile_field(&field.name, field_at)?,
                field_span: field.span,
            });
        }
        let base = self.expr(u, base)?;
        let Ty::Record(rid) = base.ty.strip_optional() else {
            return Err(internal(
                Some(field_at),
                format!("`.{}` on a value that is not a record", field.name),
            ));
        };
        let rid = *rid;
        let rec = self.an.types.record(rid);
        let idx = rec.by_name.get(&field.name).copied().ok_or_else(|| {
            internal(
                Some(field_at),
                format!("`{}` has no field `{}`", rec.name, field.name),
            )
        })?;
        let field_idx = u16::try_from(idx).map_err(|_| too_large(field_at, "fields"))?;
        let optional = optional || base.ty.is_optional();
        Ok(tir::ExprKind::Field {
            base: Box::new(base),
            schema: rid.0,
            field: field_idx,
            optional,
            field_span: field.span,
        })
    }

    fn binary(
        &self,
        u: &mut Unit,
        op: BinaryOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        at: FileSpan,
    ) -> R<tir::ExprKind> {
        let l = Box::new(self.expr(u, lhs)?);
        let r = Box::new(self.expr(u, rhs)?);
        let compare = match op {
            BinaryOp::Eq => Some(CompareOp::Eq),
            BinaryOp::Ne => Some(CompareOp::Ne),
            BinaryOp::Lt => Some(CompareOp::Lt),
            BinaryOp::Le => Some(CompareOp::Le),
            BinaryOp::Gt => Some(CompareOp::Gt),
            BinaryOp::Ge => Some(CompareOp::Ge),
            BinaryOp::In => Some(CompareOp::In),
            _ => None,
        };
        if let Some(op) = compare {
            return Ok(tir::ExprKind::Compare { op, lhs: l, rhs: r });
        }
        Ok(match op {
            BinaryOp::And | BinaryOp::Or => tir::ExprKind::Logic {
                and: op == BinaryOp::And,
                lhs: l,
                rhs: r,
            },
            BinaryOp::Default => tir::ExprKind::Default { lhs: l, rhs: r },
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::In => return Err(internal(Some(at), "a comparison")),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                let (lt, rt) = (l.ty.strip_optional(), r.ty.strip_optional());
                let Some(arith) = ArithOp::of(op, lt, rt) else {
                    return Err(internal(
                        Some(at),
                        format!(
                            "no operation for `{}` on `{}` and `{}`",
                            op.as_str(),
                            self.an.types.display(lt),
                            self.an.types.display(rt)
                        ),
                    ));
                };
                // Only an int operand is ever widened.
                let arith = tir::Arith {
                    op: arith.op,
                    widen_lhs: arith.widen_lhs && *lt == Ty::Int,
                    widen_rhs: arith.widen_rhs && *rt == Ty::Int,
                };
                tir::ExprKind::Arith {
                    op: arith,
                    lhs: l,
                    rhs: r,
                }
            }
        })
    }

    fn call(
        &self,
        u: &mut Unit,
        result: &Ty,
        callee: &ast::Ident,
        args: &[ast::Arg],
    ) -> R<tir::ExprKind> {
        let at = u.at(callee.span);
        let b = nudge_stdlib::Builtin::from_name(&callee.name)
            .ok_or_else(|| internal(Some(at), format!("unknown builtin `{}`", callee.name)))?;
        let (builtin, sig) = (b.id(), b.signature());
        let names: Vec<&str> = sig.params.iter().map(|p| p.name).collect();
        let slots = match_args(&names, args, |a| a.name.as_ref().map(|n| n.name.as_str()))
            .ok_or_else(|| internal(Some(at), "arguments do not match the builtin"))?;
        let mut argc: u8 = 0;
        let mut out = Vec::with_capacity(sig.params.len());
        for (param, arg) in sig.params.iter().zip(slots) {
            let Some(arg) = arg else {
                return Err(internal(Some(at), "a builtin argument is missing"));
            };
            let value = &arg.value;
            let vat = u.at(value.span);
            out.push(match &param.ty {
                SigTy::EventOf(_) => {
                    let ExprKind::Name(n) = &value.kind else {
                        return Err(internal(Some(vat), "expected an event name"));
                    };
                    tir::CallArg::Event(self.event_schema(n, vat)?)
                }
                SigTy::Fn(..) => {
                    let ExprKind::Lambda { params, body } = &value.kind else {
                        return Err(internal(Some(vat), "expected a function"));
                    };
                    let mut slots = Vec::with_capacity(params.len());
                    for p in params {
                        slots.push(self.declare(u, p)?);
                    }
                    tir::CallArg::Lambda(tir::Lambda {
                        params: slots,
                        body: Box::new(self.expr(u, body)?),
                    })
                }
                pty => {
                    let expr = self.expr(u, value)?;
                    let target = match pty {
                        SigTy::Var(_) if *pty == sig.ret => result.clone(),
                        SigTy::Named(n) => crate::types::scalar(n).unwrap_or(Ty::Error),
                        _ => Ty::Error,
                    };
                    argc = argc
                        .checked_add(1)
                        .ok_or_else(|| too_large(at, "arguments"))?;
                    tir::CallArg::Value { expr, target }
                }
            });
        }
        Ok(tir::ExprKind::Call {
            builtin,
            args: out,
            argc,
        })
    }

    // ------------------------------------------------------------ items

    fn let_item(&self, d: &Decl<'a, ast::LetDecl>) -> R<tir::Let> {
        let ty = match &d.decl.ty {
            Some(t) => self.type_expr(t, d.file)?,
            None => self.ty_at(FileSpan::new(d.file, d.decl.value.span))?,
        };
        let bc_ty = self.bc_type(&ty).map_err(|_| {
            not_compilable(
                FileSpan::new(d.file, d.decl.name.span),
                format!(
                    "`{}` needs a written type: its value is `{}`",
                    d.decl.name.name,
                    self.an.types.display(&ty)
                ),
                "the type of this constant is not known",
                "write its type, as in `let names: list<string> = []`",
            )
        })?;
        let mut u = Unit::new(d.file);
        let value = self.expr(&mut u, &d.decl.value)?;
        Ok(tir::Let {
            name: d.decl.name.name.clone(),
            file: d.file,
            ty,
            bc_ty,
            value,
            slots: u.slots,
        })
    }

    fn segment(&self, d: &Decl<'a, ast::SegmentDecl>) -> R<tir::Segment> {
        let mut u = Unit::new(d.file);
        let predicate = self.expr(&mut u, &d.decl.predicate)?;
        Ok(tir::Segment {
            name: d.decl.name.name.clone(),
            file: d.file,
            predicate,
            slots: u.slots,
        })
    }

    fn message(&self, d: &Decl<'a, ast::MessageDecl>) -> R<tir::Message> {
        let decl = d.decl;
        let at = |span: Span| FileSpan::new(d.file, span);
        let mut u = Unit::new(d.file);
        for p in &decl.params {
            self.declare(&mut u, &p.name)?;
        }
        let mut params = Vec::with_capacity(decl.params.len());
        for p in &decl.params {
            let ty = self.type_expr(&p.ty, d.file)?;
            let default = match &p.default {
                Some(e) => Some(self.expr(&mut u, e)?),
                None => None,
            };
            let bc_ty = self
                .bc_type(&ty)
                .map_err(|shown| internal(Some(at(p.span)), format!("a parameter of `{shown}`")))?;
            params.push(tir::Param {
                name: p.name.name.clone(),
                ty,
                bc_ty,
                default,
            });
        }
        let name_value = |c: &ast::ContentField| match &c.value {
            ContentValue::Expr(ast::Expr {
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
                        ContentValue::Expr(e) => tir::ContentValue::Code {
                            expr: self.expr(&mut u, e)?,
                            escape: channel.map_or(bc::Escape::Line, |ch| bc::Escape::of(ch, key)),
                        },
                        ContentValue::Template(path) => {
                            tir::ContentValue::Template(self.template(d.file, path, &params)?)
                        }
                    };
                    content.push(tir::Content {
                        key: key.to_string(),
                        value,
                    });
                }
            }
        }
        let channel = channel
            .ok_or_else(|| internal(Some(at(decl.name.span)), "the message has no channel"))?;
        Ok(tir::Message {
            name: decl.name.name.clone(),
            file: d.file,
            channel,
            purpose,
            params,
            content,
            slots: u.slots,
        })
    }

    fn template(&self, file: FileId, path: &ast::StrLit, params: &[tir::Param]) -> R<bc::Template> {
        let at = FileSpan::new(file, path.span);
        let (tid, vars) = self
            .templates
            .get(&at)
            .ok_or_else(|| internal(Some(at), format!("template {:?} was not read", path.value)))?;
        let source = self.project.sources.get(*tid).text.clone();
        let mut lets = Vec::new();
        for v in vars {
            if params.iter().any(|p| p.name == *v) {
                continue;
            }
            if let Ok(i) = self
                .lets
                .binary_search_by(|d| d.decl.name.name.as_str().cmp(v))
            {
                lets.push((v.clone(), i as u32));
            }
        }
        Ok(bc::Template {
            path: path.value.clone(),
            source,
            lets,
        })
    }

    fn rule(&self, u: &mut Unit, f: &ast::EventFilter) -> R<tir::Rule> {
        let event = self.event_schema(&f.event.name, u.at(f.event.span))?;
        let predicate = match &f.predicate {
            Some(p) => Some(self.expr(u, p)?),
            None => None,
        };
        Ok(tir::Rule { event, predicate })
    }

    fn flow(&self, d: &Decl<'a, ast::FlowDecl>) -> R<tir::Flow> {
        let decl = d.decl;
        let file = d.file;
        let mut u = Unit::new(file);
        let steps: Vec<&ast::Step> = decl.steps().collect();
        let on_exit: Vec<&ast::Block> = decl.on_exit_blocks().collect();
        // Persistent locals first, so a sleeping instance keeps only a prefix.
        let mut walked = 0;
        self.declare_bindings(&mut u, &mut walked, steps.iter().copied())?;
        for b in &on_exit {
            self.declare_bindings(&mut u, &mut walked, &b.steps)?;
        }
        let locals = u.slots;

        let mut trigger = None;
        let mut before_trigger = Vec::new();
        let mut after_trigger = Vec::new();
        let mut entry = bc::Entry::Single;
        let mut quiet = Vec::new();
        let mut caps = Vec::new();
        let mut goal_seen = false;
        let mut holdout = None;
        let mut priority = 0;
        for item in &decl.items {
            let FlowItem::Clause(c) = item else { continue };
            let clause = match &c.kind {
                ClauseKind::Trigger(t) => {
                    if trigger.is_none() {
                        trigger = Some(self.trigger(&mut u, t)?);
                    }
                    None
                }
                ClauseKind::Entry(e) => {
                    entry = match e {
                        EntryRule::Once => bc::Entry::Once,
                        EntryRule::OncePer(d) => bc::Entry::OncePer(d.seconds),
                        EntryRule::Always => bc::Entry::Always,
                    };
                    None
                }
                ClauseKind::ExitOn(f) => Some(tir::Clause::ExitOn(self.rule(&mut u, f)?)),
                ClauseKind::ExitIf(e) => Some(tir::Clause::ExitIf(self.expr(&mut u, e)?)),
                ClauseKind::Suppress(e) => Some(tir::Clause::Suppress(self.expr(&mut u, e)?)),
                ClauseKind::QuietHours(q) => {
                    quiet.push(quiet_hours(q));
                    None
                }
                ClauseKind::Cap(cp) => {
                    caps.push(cap(cp, u.at(c.span))?);
                    None
                }
                ClauseKind::Goal(gl) if !goal_seen => {
                    goal_seen = true;
                    Some(tir::Clause::Goal {
                        rule: self.rule(&mut u, &gl.filter)?,
                        within: self.dur(&u, &gl.within)?,
                    })
                }
                ClauseKind::Goal(_) => None,
                ClauseKind::Holdout(p) => {
                    holdout = Some(p.value);
                    None
                }
                ClauseKind::Priority(n) => {
                    priority = n.value;
                    None
                }
                ClauseKind::OnExit(_) => None,
            };
            if let Some(clause) = clause {
                if trigger.is_none() {
                    before_trigger.push(clause);
                } else {
                    after_trigger.push(clause);
                }
            }
        }
        let trigger = trigger
            .ok_or_else(|| internal(Some(u.at(decl.name.span)), "the flow has no trigger"))?;
        // The steps first, so that steps are numbered in source order.
        let main = self.steps(&mut u, steps.iter().copied())?;
        let on_exit = if on_exit.is_empty() {
            None
        } else {
            // Several `on exit` blocks run as one, in source order.
            let all = self.steps(&mut u, on_exit.iter().flat_map(|b| b.steps.iter()))?;
            let end = on_exit.last().map_or(decl.span, |b| b.span);
            Some((all, closing(end)))
        };
        if walked != u.steps {
            return Err(internal(
                Some(u.at(decl.name.span)),
                "the steps were numbered differently from their locals",
            ));
        }
        Ok(tir::Flow {
            name: decl.name.name.clone(),
            file,
            trigger,
            before_trigger,
            after_trigger,
            entry,
            quiet,
            caps,
            holdout,
            priority,
            steps: main,
            end: closing(decl.span),
            on_exit,
            locals,
            local_names: std::mem::take(&mut u.local_names),
            slots: u.slots,
        })
    }

    fn trigger(&self, u: &mut Unit, t: &ast::Trigger) -> R<tir::Trigger> {
        Ok(match t {
            ast::Trigger::Event(f) => tir::Trigger::Event(self.rule(u, f)?),
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
                        let i = days
                            .iter()
                            .position(|d| *d == w.name)
                            .ok_or_else(|| internal(Some(u.at(w.span)), "unknown weekday"))?;
                        bc::Cadence::Weekday(i as u8)
                    }
                    ast::Cadence::Month(n) => bc::Cadence::Month(
                        u8::try_from(n.value)
                            .map_err(|_| internal(Some(u.at(n.span)), "day out of range"))?,
                    ),
                    ast::Cadence::Once(d) => bc::Cadence::Once(d.days),
                };
                tir::Trigger::Schedule {
                    cadence,
                    at: minutes(at),
                    local: *local,
                    segment: match segment {
                        Some(s) => Some(self.segment_by_ident(u.file, s)?),
                        None => None,
                    },
                }
            }
            ast::Trigger::DateProperty {
                offset,
                before,
                field,
                yearly,
                at,
                grace,
            } => {
                let seconds = offset.map_or(0, |o| o.seconds);
                tir::Trigger::DateProperty {
                    offset: if *before { -seconds } else { seconds },
                    field: self.profile_field(&field.name, u.at(field.span))?,
                    yearly: yearly.is_some(),
                    at: at.as_ref().map(minutes),
                    grace: grace.map(|g| g.seconds),
                }
            }
            ast::Trigger::Entering(s) => tir::Trigger::Entering {
                segment: self.segment_by_ident(u.file, s)?,
                at: s.span,
            },
        })
    }

    /// Gives every local a flow binds (`let`, `let x = wait for`) a
    /// persistent slot, before any lambda takes a scratch slot, and notes
    /// its name and the number its step will get. Steps are walked in the
    /// order [`Builder::steps`] numbers them: each step, then the steps nested in it.
    fn declare_bindings<'s>(
        &self,
        u: &mut Unit,
        walked: &mut u16,
        steps: impl IntoIterator<Item = &'s ast::Step>,
    ) -> R<()> {
        for s in steps {
            let step = next(walked, "steps", u.at(s.span))?;
            match &s.kind {
                ast::StepKind::Let { name, .. } => self.declare_persistent(u, name, step)?,
                ast::StepKind::WaitFor(w) => {
                    if let Some(b) = &w.binding {
                        self.declare_persistent(u, b, step)?;
                    }
                }
                ast::StepKind::If(i) => {
                    for (_, b) in &i.branches {
                        self.declare_bindings(u, walked, &b.steps)?;
                    }
                    if let Some(b) = &i.otherwise {
                        self.declare_bindings(u, walked, &b.steps)?;
                    }
                }
                ast::StepKind::Split(split) => {
                    for a in &split.arms {
                        self.declare_bindings(u, walked, &a.body.steps)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn declare_persistent(&self, u: &mut Unit, name: &ast::Ident, step: u16) -> R<()> {
        self.declare(u, name)?;
        u.local_names.push(bc::LocalName {
            name: name.name.clone(),
            step,
        });
        Ok(())
    }

    fn steps<'s>(
        &self,
        u: &mut Unit,
        steps: impl IntoIterator<Item = &'s ast::Step>,
    ) -> R<Vec<tir::Step>> {
        steps.into_iter().map(|s| self.step(u, s)).collect()
    }

    fn block(&self, u: &mut Unit, b: &ast::Block) -> R<tir::Block> {
        Ok(tir::Block {
            steps: self.steps(u, &b.steps)?,
            span: b.span,
        })
    }

    /// A duration where a flow needs a constant: a literal, or the length
    /// the checker folded for the constant it names.
    fn dur(&self, u: &Unit, d: &ast::DurationArg) -> R<i64> {
        match d {
            ast::DurationArg::Lit(l) => Ok(l.seconds),
            ast::DurationArg::Name(n) => self
                .an
                .constant_duration(u.at(n.span))
                .ok_or_else(|| internal(Some(u.at(n.span)), "a duration constant not folded")),
        }
    }

    fn step(&self, u: &mut Unit, s: &ast::Step) -> R<tir::Step> {
        use ast::StepKind as S;
        let at = u.at(s.span);
        next(&mut u.steps, "steps", at)?;
        let kind = match &s.kind {
            S::Wait(d) => tir::StepKind::Wait(self.dur(u, d)?),
            S::WaitUntil(e) => tir::StepKind::WaitUntil(self.expr(u, e)?),
            S::WaitFor(w) => {
                let mut events = Vec::new();
                let mut records = Vec::new();
                for ev in &w.events {
                    let schema = self.event_schema(&ev.name, u.at(ev.span))?;
                    records.push(schema);
                    events.push(bc::WaitEvent {
                        event: schema,
                        project: None,
                    });
                }
                let schema = match records.as_slice() {
                    [one] => *one,
                    _ => {
                        let shared = self.shared_schema(&records, at)?;
                        let fields: Vec<String> = self
                            .an
                            .types
                            .record(RecordId(shared))
                            .fields
                            .iter()
                            .map(|f| f.name.clone())
                            .collect();
                        for e in &mut events {
                            let rec = self.an.types.record(RecordId(e.event));
                            let proj = fields
                                .iter()
                                .map(|f| {
                                    rec.by_name
                                        .get(f)
                                        .and_then(|&i| u16::try_from(i).ok())
                                        .ok_or_else(|| internal(Some(at), "shared field not found"))
                                })
                                .collect::<R<Vec<u16>>>()?;
                            e.project = Some(proj);
                        }
                        shared
                    }
                };
                let predicate = match &w.predicate {
                    Some(p) => Some(self.expr(u, p)?),
                    None => None,
                };
                let bind = match &w.binding {
                    Some(b) => Some(self.slot_of(u, b)?),
                    None => None,
                };
                next(&mut u.waits, "waits", at)?;
                tir::StepKind::WaitFor(tir::WaitFor {
                    events,
                    schema,
                    predicate,
                    within: self.dur(u, &w.within)?,
                    bind,
                })
            }
            S::Send(call) => {
                let (message, params) =
                    self.message_params(&call.callee.name, u.at(call.callee.span))?;
                let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
                let slots = match_args(&names, &call.args, |a| {
                    a.name.as_ref().map(|n| n.name.as_str())
                })
                .ok_or_else(|| internal(Some(at), "arguments do not match the message"))?;
                let mut given: u64 = 0;
                let mut args = Vec::new();
                for (i, ((_, pty), arg)) in params.iter().zip(slots).enumerate() {
                    let Some(arg) = arg else { continue };
                    if i >= 64 {
                        return Err(not_compilable(
                            u.at(arg.value.span),
                            format!(
                                "`{}` is given its parameter number {}, but a message takes at most 64",
                                call.callee.name,
                                i + 1
                            ),
                            "a parameter past the 64th",
                            "pass fewer values: group them in a record type, or split the message",
                        ));
                    }
                    args.push(tir::SendArg {
                        value: self.expr(u, &arg.value)?,
                        param_ty: pty.clone(),
                    });
                    given |= 1 << i;
                }
                tir::StepKind::Send {
                    message,
                    args,
                    given,
                }
            }
            S::If(i) => {
                let mut branches = Vec::with_capacity(i.branches.len());
                for (cond, body) in &i.branches {
                    let cond = self.expr(u, cond)?;
                    branches.push((cond, self.block(u, body)?));
                }
                let otherwise = match &i.otherwise {
                    Some(b) => Some(self.block(u, b)?),
                    None => None,
                };
                tir::StepKind::If {
                    branches,
                    otherwise,
                }
            }
            S::Split(split) => {
                next(&mut u.splits, "splits", at)?;
                let arms = &split.arms;
                let mut out = Vec::with_capacity(arms.len());
                for arm in arms {
                    out.push(tir::SplitArm {
                        percent: arm.percent.as_ref().map_or(Decimal::ZERO, |p| p.value),
                        name: arm.name.name.clone(),
                        body: self.block(u, &arm.body)?,
                        span: arm.span,
                    });
                }
                let optimise = split.optimise.as_ref().map(|o| {
                    o.floor
                        .as_ref()
                        .map_or(Decimal::from(super::flows::DEFAULT_FLOOR), |f| f.value)
                });
                tir::StepKind::Split {
                    arms: out,
                    optimise,
                }
            }
            S::SetProfile { field, value } => {
                let idx = self.profile_field(&field.name, u.at(field.span))?;
                tir::StepKind::SetProfile {
                    field: idx,
                    field_ty: self.profile_field_ty(idx),
                    value: self.expr(u, value)?,
                }
            }
            S::Audience { op, name } => match op {
                ast::AudienceOp::Add => tir::StepKind::AudienceAdd(name.value.clone()),
                ast::AudienceOp::Remove => tir::StepKind::AudienceRemove(name.value.clone()),
            },
            S::Let { name, value } => {
                let slot = self.slot_of(u, name)?;
                tir::StepKind::Let {
                    slot,
                    value: self.expr(u, value)?,
                }
            }
            S::Exit => tir::StepKind::Exit,
            S::ExitIf(e) => tir::StepKind::ExitIf(self.expr(u, e)?),
            S::Error => return Err(internal(Some(at), "a step that did not parse")),
        };
        Ok(tir::Step {
            label: s.label.as_ref().map(|l| l.name.clone()),
            what: step_what(&s.kind),
            span: s.span,
            kind,
        })
    }

    fn policy(&self) -> R<bc::Policy> {
        let mut out = bc::Policy::default();
        for (file, p) in self.files {
            for item in &p.file.items {
                let Item::Policy(pol) = item else { continue };
                for it in &pol.items {
                    match &it.kind {
                        PolicyItemKind::Timezone(s) => {
                            out.timezone.get_or_insert_with(|| s.value.clone());
                        }
                        PolicyItemKind::Currency(s) => {
                            out.currency.get_or_insert_with(|| s.value.clone());
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

    // ------------------------------------------------------------ schemas

    fn schemas(&self, errors: &mut Vec<Diagnostic>) -> Vec<bc::Schema> {
        // Field defaults by record and field name, from the declarations.
        let mut defaults: HashMap<(u32, &str), (FileId, &ast::Expr)> = HashMap::new();
        for (file, p) in self.files {
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
                    Some((file, e)) => self
                        .fold(e, *file, &f.ty, 0)
                        .map_err(|d| errors.push(*d))
                        .ok(),
                    None => None,
                };
                let ty = self.bc_type(&f.ty).unwrap_or_else(|shown| {
                    errors.push(*internal(f.at, format!("a field of `{shown}`")));
                    Type::Bool
                });
                fields.push(bc::FieldSchema {
                    name: f.name.clone(),
                    ty,
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
        out
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
    fn fold(&self, e: &ast::Expr, file: FileId, expected: &Ty, depth: u32) -> R<Value> {
        let at = FileSpan::new(file, e.span);
        let not_constant = || {
            not_compilable(
                at,
                "a field default must be a constant".to_string(),
                "not a constant",
                "write a literal, a list of literals or the name of a top-level `let` of one",
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
                let d = self.lets.get(*idx as usize).ok_or_else(not_constant)?;
                self.fold(&d.decl.value, d.file, expected, depth + 1)?
            }
            _ => return Err(not_constant()),
        };
        Ok(v)
    }

    // ------------------------------------------------------------ tests

    /// The `where` conditions of every `expect send`, in the order of files and statements.
    fn conditions(&self) -> impl Iterator<Item = R<tir::Condition>> + '_ {
        let mut out = Vec::new();
        for (file, parsed) in self.files {
            for item in &parsed.file.items {
                let Item::Test(t) = item else { continue };
                for stmt in &t.stmts {
                    let ast::TestStmtKind::Expect(x) = &stmt.kind else {
                        continue;
                    };
                    let ast::ExpectKind::Send {
                        message,
                        predicate: Some(pred),
                        ..
                    } = &x.kind
                    else {
                        continue;
                    };
                    out.push(self.condition(*file, message, pred));
                }
            }
        }
        out.into_iter()
    }

    fn condition(&self, file: FileId, message: &ast::Ident, pred: &ast::Expr) -> R<tir::Condition> {
        let at = FileSpan::new(file, message.span);
        // The checker gives every condition a record of the message's content
        // keys; those of one message are alike, so the first one serves.
        let record = format!("content of {}", message.name);
        let content = self
            .an
            .types
            .records
            .iter()
            .position(|r| r.kind == RecordKind::Synthetic && r.name == record)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| internal(Some(at), format!("no {record} record")))?;
        let mut u = Unit::new(file);
        // The checker declares `content` at the message's name.
        self.declare(
            &mut u,
            &ast::Ident {
                name: "content".into(),
                span: message.span,
            },
        )?;
        let predicate = self.expr(&mut u, pred)?;
        Ok(tir::Condition {
            file,
            message: message.name.clone(),
            content,
            predicate,
            slots: u.slots,
        })
    }
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
                .ok_or_else(|| internal(Some(at), "unknown channel"))?,
        )
    };
    Ok(bc::Cap {
        scope,
        count: u32::try_from(c.count.value)
            .map_err(|_| internal(Some(at), "cap count out of range"))?,
        per: c.per.seconds,
        then: match c.then {
            Some(ast::CapAction::Defer) => bc::CapAction::Defer,
            _ => bc::CapAction::Skip,
        },
    })
}

/// A short description of a step for listings and reports.
fn step_what(k: &ast::StepKind) -> String {
    use ast::StepKind as S;
    match k {
        S::Wait(ast::DurationArg::Lit(d)) => format!("wait {}", bc::format_duration(d.seconds)),
        S::Wait(ast::DurationArg::Name(n)) => format!("wait {}", n.name),
        S::WaitUntil(_) => "wait until".into(),
        S::WaitFor(w) => {
            let names: Vec<&str> = w.events.iter().map(|e| e.name.as_str()).collect();
            format!("wait for {}", names.join(" or "))
        }
        S::Send(c) => format!("send {}", c.callee.name),
        S::If(_) => "if".into(),
        S::Split(_) => "split".into(),
        S::SetProfile { field, .. } => format!("set profile.{}", field.name),
        S::Audience { op, name } => match op {
            ast::AudienceOp::Add => format!("audience add {:?}", name.value),
            ast::AudienceOp::Remove => format!("audience remove {:?}", name.value),
        },
        S::Let { name, .. } => format!("let {}", name.name),
        S::Exit => "exit".into(),
        S::ExitIf(_) => "exit if".into(),
        S::Error => "error".into(),
    }
}

/// Matches call arguments to parameters, positional first, then by name.
/// `None` when they do not fit (the checker has reported it).
fn match_args<'x, A>(
    params: &[&str],
    args: &'x [A],
    name_of: impl Fn(&A) -> Option<&str>,
) -> Option<Vec<Option<&'x A>>> {
    let mut slots: Vec<Option<&A>> = params.iter().map(|_| None).collect();
    let mut positional = 0;
    for a in args {
        let i = match name_of(a) {
            None => {
                positional += 1;
                positional - 1
            }
            Some(n) => params.iter().position(|p| *p == n)?,
        };
        let slot = slots.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(a);
    }
    Some(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_stop_at_the_last_16_bit_number() {
        let at = FileSpan::new(FileId(0), Span::new(0, 1));
        let mut steps = u16::MAX - 1;
        assert_eq!(next(&mut steps, "steps", at).ok(), Some(u16::MAX - 1));
        let err = next(&mut steps, "steps", at).expect_err("65,536 steps");
        assert_eq!(err.code, codes::E0309);
        assert!(err.title.contains("65,535 steps"), "{}", err.title);
    }
}
