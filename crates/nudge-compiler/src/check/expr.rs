//! Expressions: name resolution, type inference and checking, narrowing of
//! optionals, and builtin calls.

use nudge_diagnostics::{Diagnostic, Span, codes};
use nudge_syntax::ast::{Arg, BinaryOp, Expr, ExprKind, Ident, StrPart, UnaryOp};

use super::{Checker, TriggerCtx, Value};
use crate::analysis::SymbolKind;
use crate::builtins::{NamedTypes, SigTy, Subst, display_sig};
use crate::suggest::did_you_mean;
use crate::types::{Assign, Ty, assignable};

/// Name lookups a builtin signature needs, borrowed from the checker's tables.
struct Names<'c, 'a> {
    cx: &'c Checker<'a>,
}

impl NamedTypes for Names<'_, '_> {
    fn named(&self, name: &str) -> Option<Ty> {
        if let Some(s) = crate::types::scalar(name) {
            return Some(s);
        }
        if let Some((tref, _)) = self.cx.types.get(name) {
            return Some(match tref {
                super::TypeRef::Record(r) => Ty::Record(*r),
                super::TypeRef::Enum(e) => Ty::Enum(*e),
            });
        }
        self.cx.events.get(name).map(|e| Ty::Record(e.record))
    }

    fn is_event(&self, ty: &Ty) -> bool {
        matches!(ty, Ty::Record(r) if self.cx.an.types.record(*r).kind == crate::types::RecordKind::Event)
    }
}

/// The text of a string literal with no interpolation.
pub(crate) fn plain_string(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Str(parts) => plain_text(parts),
        _ => None,
    }
}

/// The text of a string literal's parts, when none is interpolated.
pub(crate) fn plain_text(parts: &[StrPart]) -> Option<String> {
    let mut out = String::new();
    for p in parts {
        match p {
            StrPart::Text(t, _) => out.push_str(t),
            StrPart::Interp(_) => return None,
        }
    }
    Some(out)
}

/// The narrowing key of a name or field path (`x`, `profile.first_name`).
pub(crate) fn path_key(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Name(n) => Some(n.clone()),
        ExprKind::Field { base, field, .. } => {
            let mut k = path_key(base)?;
            k.push('.');
            k.push_str(&field.name);
            Some(k)
        }
        _ => None,
    }
}

fn is_none_lit(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::None)
}

/// Paths known to be present when `e` evaluates to `positive`.
pub(crate) fn facts(e: &Expr, positive: bool, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Binary { op, lhs, rhs } => match (op, positive) {
            (BinaryOp::Ne, true) | (BinaryOp::Eq, false) => {
                let other = if is_none_lit(rhs) {
                    lhs
                } else if is_none_lit(lhs) {
                    rhs
                } else {
                    return;
                };
                if let Some(k) = path_key(other) {
                    out.push(k);
                }
            }
            (BinaryOp::And, true) | (BinaryOp::Or, false) => {
                facts(lhs, positive, out);
                facts(rhs, positive, out);
            }
            _ => {}
        },
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => facts(expr, !positive, out),
        _ => {}
    }
}

fn ordered(t: &Ty) -> bool {
    matches!(
        t,
        Ty::Int
            | Ty::Decimal
            | Ty::Money
            | Ty::Percent
            | Ty::Time
            | Ty::Date
            | Ty::TimeOfDay
            | Ty::Duration
    )
}

/// The result of an arithmetic operator on two (non-optional) types: the
/// operators that have an instruction for these types, and only those.
pub(crate) fn arith(op: BinaryOp, l: &Ty, r: &Ty) -> Option<Ty> {
    crate::tir::ArithOp::of(op, l, r).map(|a| a.op.result())
}

/// Whether `==` and `!=` apply to two types.
fn equatable(l: &Ty, r: &Ty) -> bool {
    let (l, r) = (l.strip_optional(), r.strip_optional());
    l.is_error()
        || r.is_error()
        || l == r
        || (l.is_number() && r.is_number())
        || matches!(
            (l, r),
            (Ty::Enum(_), Ty::String) | (Ty::String, Ty::Enum(_))
        )
        || matches!((l, r), (Ty::Null, _) | (_, Ty::Null))
}

impl<'a> Checker<'a> {
    /// Infers an expression's type and records it.
    pub(crate) fn infer(&mut self, e: &'a Expr) -> Ty {
        let ty = self.infer_inner(e);
        self.an.expr_types.insert(self.at(e.span), ty.clone());
        ty
    }

    fn narrow(&self, e: &Expr, ty: Ty) -> Ty {
        if let Ty::Optional(inner) = &ty
            && !self.narrowed.is_empty()
            && let Some(k) = path_key(e)
            && self.narrowed.contains(&k)
        {
            return (**inner).clone();
        }
        ty
    }

    fn infer_inner(&mut self, e: &'a Expr) -> Ty {
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Decimal(_) => Ty::Decimal,
            ExprKind::Money(_) => Ty::Money,
            ExprKind::Percent(_) => Ty::Percent,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Instant(_) => Ty::Time,
            ExprKind::Date(_) => Ty::Date,
            ExprKind::TimeOfDay(_) => Ty::TimeOfDay,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::None => Ty::Null,
            ExprKind::Error => Ty::Error,
            ExprKind::Str(parts) => {
                for p in parts {
                    if let StrPart::Interp(x) = p {
                        let t = self.infer(x);
                        match t {
                            Ty::Optional(_) => self.possibly_missing(x, &t, "in a string"),
                            Ty::Fn(..) => {
                                let d = Diagnostic::new(
                                    codes::E0301,
                                    self.at(x.span),
                                    "a function cannot be shown in a string",
                                )
                                .with_primary_label("this is a function");
                                self.report(d);
                            }
                            _ => {}
                        }
                    }
                }
                Ty::String
            }
            ExprKind::Name(n) => {
                let t = self.resolve_name(n, e.span);
                self.narrow(e, t)
            }
            ExprKind::Field {
                base,
                field,
                optional,
            } => {
                let t = self.field_access(base, field, *optional);
                self.narrow(e, t)
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span),
            ExprKind::Unary { op, expr } => match op {
                UnaryOp::Not => {
                    self.expect(expr, &Ty::Bool);
                    Ty::Bool
                }
                UnaryOp::Neg => {
                    let t = self.operand(expr);
                    match t {
                        Ty::Int
                        | Ty::Decimal
                        | Ty::Money
                        | Ty::Duration
                        | Ty::Percent
                        | Ty::Error => t,
                        _ => {
                            let ts = self.an.types.display(&t);
                            let d = Diagnostic::new(
                                codes::E0304,
                                self.at(e.span),
                                format!("cannot negate a value of type `{ts}`"),
                            )
                            .with_primary_label(format!("this is `{ts}`"))
                            .with_help("`-` applies to numbers, money, percents and durations");
                            self.report(d);
                            Ty::Error
                        }
                    }
                }
            },
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Lambda { .. } => {
                let d = Diagnostic::new(
                    codes::E0301,
                    self.at(e.span),
                    "a function is not allowed here",
                )
                .with_primary_label("this is a function")
                .with_help("functions are only passed to builtins such as `any` or `filter`");
                self.report(d);
                Ty::Error
            }
            ExprKind::List(items) => {
                let mut elem: Option<Ty> = None;
                for it in items {
                    match &elem {
                        None => elem = Some(self.infer(it)),
                        Some(Ty::Int) => {
                            let t = self.infer(it);
                            if t == Ty::Decimal {
                                elem = Some(Ty::Decimal);
                            } else {
                                self.mismatch_with(it, &t, &Ty::Int);
                            }
                        }
                        Some(t) => {
                            let t = t.clone();
                            self.expect(it, &t);
                        }
                    }
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Error)))
            }
            ExprKind::Record(fields) => {
                // Only a test's props hold record literals, and there the
                // field's type is known (see `expect`); anywhere else it is wrong.
                self.props(None, fields);
                let d = Diagnostic::new(
                    codes::E0301,
                    self.at(e.span),
                    "a record literal is not allowed here",
                )
                .with_primary_label("no record type is expected here")
                .with_help("record literals set record-typed fields in a test, such as `consent: { email: true }`");
                self.report(d);
                Ty::Error
            }
        }
    }

    /// Checks an expression against a required type; reports E0301/E0302.
    pub(crate) fn expect(&mut self, e: &'a Expr, expected: &Ty) -> Ty {
        let target = expected.strip_optional();
        if let (ExprKind::Record(fields), Ty::Record(rid)) = (&e.kind, target) {
            let t = Ty::Record(*rid);
            self.props(Some(*rid), fields);
            self.an.expr_types.insert(self.at(e.span), t.clone());
            return t;
        }
        if let (ExprKind::List(items), Ty::List(elem)) = (&e.kind, target)
            && items.iter().any(|i| matches!(i.kind, ExprKind::Record(_)))
        {
            for i in items {
                self.expect(i, elem);
            }
            let t = Ty::List(elem.clone());
            self.an.expr_types.insert(self.at(e.span), t.clone());
            return t;
        }
        if let Some(s) = plain_string(e) {
            match target {
                Ty::Enum(id) => {
                    self.enum_member(*id, &s, e.span, false);
                    let t = Ty::Enum(*id);
                    self.an.expr_types.insert(self.at(e.span), t.clone());
                    return t;
                }
                Ty::Timezone => {
                    self.timezone_name(&s, e.span);
                    self.an.expr_types.insert(self.at(e.span), Ty::Timezone);
                    return Ty::Timezone;
                }
                Ty::Time if self.ctx.lenient => {
                    if chrono::DateTime::parse_from_rfc3339(&s).is_err() {
                        let d = Diagnostic::new(
                            codes::E0301,
                            self.at(e.span),
                            format!("{s:?} is not an RFC 3339 time"),
                        )
                        .with_primary_label("expected a time such as \"2026-11-23T10:00:00Z\"")
                        .with_help(
                            "write the date, `T`, the time and a zone: \"2026-11-23T10:00:00Z\"",
                        );
                        self.report(d);
                    }
                    self.an.expr_types.insert(self.at(e.span), Ty::Time);
                    return Ty::Time;
                }
                Ty::Date if self.ctx.lenient => {
                    if chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").is_err() {
                        let d = Diagnostic::new(
                            codes::E0301,
                            self.at(e.span),
                            format!("{s:?} is not a date"),
                        )
                        .with_primary_label("expected a date such as \"2026-11-23\"");
                        self.report(d);
                    }
                    self.an.expr_types.insert(self.at(e.span), Ty::Date);
                    return Ty::Date;
                }
                _ => {}
            }
        }
        if self.ctx.lenient
            && *target == Ty::Money
            && matches!(e.kind, ExprKind::Int(_) | ExprKind::Decimal(_))
        {
            self.an.expr_types.insert(self.at(e.span), Ty::Money);
            return Ty::Money;
        }
        let actual = self.infer(e);
        self.mismatch_with(e, &actual, expected);
        actual
    }

    /// Reports that `actual` does not fit `expected`, if so.
    fn mismatch_with(&mut self, e: &Expr, actual: &Ty, expected: &Ty) {
        match assignable(actual, expected) {
            Assign::Yes => {}
            Assign::Missing => self.possibly_missing(e, actual, "here"),
            Assign::No => {
                let (a, x) = (
                    self.an.types.display(actual),
                    self.an.types.display(expected),
                );
                let mut d = Diagnostic::new(
                    codes::E0301,
                    self.at(e.span),
                    format!("expected `{x}`, found `{a}`"),
                )
                .with_primary_label(format!("this is `{a}`"));
                if let Some(h) = conversion_help(actual, expected) {
                    d = d.with_help(h);
                }
                if let Some((at, msg)) = self.decl_label(e) {
                    d = d.with_label(at, msg);
                }
                self.report(d);
            }
        }
    }

    /// E0302 for an optional value used where a value is required.
    pub(crate) fn possibly_missing(&mut self, e: &Expr, ty: &Ty, place: &str) {
        let snippet = self.snippet(e.span);
        let ts = self.an.types.display(ty);
        let help = match path_key(e) {
            Some(k) => {
                format!("give a default with `{k} ?? …`, or check `{k} != none` before using it")
            }
            None => "give a default with `?? …`, or check for none before using it".to_string(),
        };
        let d = Diagnostic::new(
            codes::E0302,
            self.at(e.span),
            format!("{snippet} may be none"),
        )
        .with_primary_label(format!("this is `{ts}`, which may be none {place}"))
        .with_help(help);
        let d = match self.decl_label(e) {
            Some((at, msg)) => d.with_label(at, msg),
            None => d,
        };
        self.report(d);
    }

    /// A label at the declaration of the name or field an expression reads,
    /// saying its declared type.
    fn decl_label(&self, e: &Expr) -> Option<(nudge_diagnostics::FileSpan, String)> {
        let name_at = match &e.kind {
            ExprKind::Name(_) => e.span,
            ExprKind::Field { field, .. } => field.span,
            _ => return None,
        };
        let sym = *self.an.resolved.get(&self.at(name_at))?;
        let ty = self.symbol_types.get(&sym)?;
        let s = self.an.symbols.get(sym.0 as usize)?;
        Some((
            s.at,
            format!(
                "`{}` is declared here as `{}`",
                s.name,
                self.an.types.display(ty)
            ),
        ))
    }

    /// The type of an operand that must be present: reports E0302 and goes on with the inner type.
    fn operand(&mut self, e: &'a Expr) -> Ty {
        let t = self.infer(e);
        match t {
            Ty::Optional(inner) => {
                self.possibly_missing(e, &Ty::Optional(inner.clone()), "here");
                *inner
            }
            t => t,
        }
    }

    pub(crate) fn enum_member(
        &mut self,
        id: crate::types::EnumId,
        value: &str,
        span: Span,
        warn: bool,
    ) -> bool {
        let def = self.an.types.enum_def(id);
        if def.members.iter().any(|m| m == value) {
            return true;
        }
        let name = def.name.clone();
        let members = def
            .members
            .iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let suggestion =
            did_you_mean(value, def.members.iter().map(String::as_str)).map(str::to_string);
        let (code, title) = if warn {
            (
                codes::W0004,
                format!(
                    "this `exit on` rule can never match: {value:?} is not a value of `{name}`"
                ),
            )
        } else {
            (
                codes::E0301,
                format!("{value:?} is not a value of `{name}`"),
            )
        };
        let mut d = Diagnostic::new(code, self.at(span), title)
            .with_primary_label(format!("`{name}` is one of {members}"));
        if let Some(s) = suggestion {
            d = d.with_help(format!("did you mean {s:?}?")).with_fix(
                format!("replace with {s:?}"),
                vec![nudge_diagnostics::Edit {
                    at: self.at(span),
                    replacement: format!("{s:?}"),
                }],
            );
        } else {
            d = d.with_help(format!("use one of {members}"));
        }
        self.report(d);
        false
    }

    pub(crate) fn timezone_name(&mut self, name: &str, span: Span) {
        if name.parse::<chrono_tz::Tz>().is_ok() {
            return;
        }
        let suggestion = did_you_mean(name, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()));
        let mut d = Diagnostic::new(
            codes::E0307,
            self.at(span),
            format!("unknown time zone {name:?}"),
        )
        .with_primary_label("not in the IANA time zone database");
        d = match suggestion {
            Some(s) => d.with_help(format!("did you mean {s:?}?")).with_fix(
                format!("replace with {s:?}"),
                vec![nudge_diagnostics::Edit {
                    at: self.at(span),
                    replacement: format!("{s:?}"),
                }],
            ),
            None => {
                d.with_help("use an IANA name such as \"America/New_York\" or \"Europe/Berlin\"")
            }
        };
        self.report(d);
    }

    /// E0311: the format of `format_date` and the currency of
    /// `format_money_in`, when they are constants (a literal, or a `let` of
    /// one), are read now rather than failing at send time.
    fn constant_format_args(&mut self, fname: &str, slots: &[Option<&Arg>]) {
        let Some(Some(arg)) = slots.get(1) else {
            return;
        };
        let e = &arg.value;
        let text = match &e.kind {
            ExprKind::Name(n) => match self.values.get(n.as_str()) {
                Some(&super::Value::Let(i)) => plain_string(&self.lets[i].decl.value),
                _ => None,
            },
            _ => plain_string(e),
        };
        let Some(text) = text else { return };
        match fname {
            "format_date" => {
                if let Err(err) = nudge_stdlib::format::parse_date_format(&text) {
                    let mut d = Diagnostic::new(
                        codes::E0311,
                        self.at(e.span),
                        format!("`format_date` cannot read the format {text:?}"),
                    )
                    .with_primary_label(match err {
                        nudge_stdlib::format::DateFormatError::UnknownStyle(_) => {
                            "not a style".to_string()
                        }
                        _ => "not a pattern it can read".to_string(),
                    })
                    .with_help(err.to_string());
                    if let nudge_stdlib::format::DateFormatError::UnknownStyle(s) = &err
                        && let Some(best) =
                            did_you_mean(s, nudge_stdlib::format::DATE_STYLES.iter().copied())
                        && matches!(e.kind, ExprKind::Str(_))
                    {
                        d = d.with_fix(
                            format!("replace with {best:?}"),
                            vec![nudge_diagnostics::Edit {
                                at: self.at(e.span),
                                replacement: format!("{best:?}"),
                            }],
                        );
                    }
                    self.report(d);
                }
            }
            "format_money_in" => self.currency_code(&text, e.span),
            _ => {}
        }
    }

    /// E0311 for a currency that is not an ISO 4217 code (three capital letters).
    pub(crate) fn currency_code(&mut self, code: &str, span: Span) {
        if nudge_stdlib::format::is_currency_code(code) {
            return;
        }
        let upper = code.trim().to_ascii_uppercase();
        let mut d = Diagnostic::new(
            codes::E0311,
            self.at(span),
            format!("{code:?} is not a currency code"),
        )
        .with_primary_label("not an ISO 4217 code")
        .with_help(
            "write the currency's three-letter ISO 4217 code, such as \"EUR\", \"USD\" or \"JPY\"",
        );
        if nudge_stdlib::format::is_currency_code(&upper) {
            d = d.with_fix(
                format!("replace with {upper:?}"),
                vec![nudge_diagnostics::Edit {
                    at: self.at(span),
                    replacement: format!("{upper:?}"),
                }],
            );
        }
        self.report(d);
    }

    pub(crate) fn resolve_name(&mut self, n: &str, span: Span) -> Ty {
        let at = self.at(span);
        if let Some(l) = self.locals.iter().rev().find(|l| l.name == n) {
            let (ty, sym) = (l.ty.clone(), l.symbol);
            self.use_symbol(at, sym);
            return ty;
        }
        match n {
            "profile" => return Ty::Record(self.profile),
            "trigger" => {
                let help = match &self.ctx.trigger {
                    TriggerCtx::Event(t) => return t.clone(),
                    TriggerCtx::NotEvent(how) => format!(
                        "this flow is started by {how}, so there is no trigger event; read the profile instead"
                    ),
                    TriggerCtx::Unavailable(place) => {
                        format!(
                            "`trigger` is the event that started a flow; it is not available in {place}"
                        )
                    }
                };
                let d = Diagnostic::new(codes::E0201, at, "`trigger` is not available here")
                    .with_primary_label("no trigger event here")
                    .with_help(help);
                self.report(d);
                return Ty::Error;
            }
            "event" => {
                if let Some(t) = &self.ctx.event {
                    return t.clone();
                }
                let d = Diagnostic::new(codes::E0201, at, "`event` is not available here")
                    .with_primary_label("no matching event here")
                    .with_help(
                        "`event` is the matching event inside the `where` of a trigger, `exit on`, `wait for` or `goal`",
                    );
                self.report(d);
                return Ty::Error;
            }
            _ => {}
        }
        if let Some(&v) = self.values.get(n) {
            return match v {
                Value::Let(i) => {
                    let sym = self.lets[i].symbol;
                    self.use_symbol(at, sym);
                    self.let_type(i, Some(at))
                }
                Value::Segment(i) => {
                    let sym = self.segments[i].symbol;
                    self.use_symbol(at, sym);
                    self.segment_type(i, Some(at))
                }
            };
        }
        if nudge_bytecode::LINK_NAMES
            .iter()
            .any(|(name, _)| *name == n)
        {
            if self.ctx.links {
                return Ty::String;
            }
            let d = Diagnostic::new(codes::E0201, at, format!("`{n}` is not available here"))
                .with_primary_label("only in the content of email messages")
                .with_help(format!(
                    "`{n}` is the customer's signed link, put in by the email channel's plugin; use it in an email message's `body` or template"
                ));
            self.report(d);
            return Ty::Error;
        }
        if let Some(&m) = self.message_names.get(n) {
            let decl = self.symbol_at_decl(self.messages[m].symbol);
            let d = Diagnostic::new(codes::E0201, at, format!("message `{n}` is not a value"))
                .with_primary_label("a message cannot be used in an expression")
                .with_label(decl, format!("`{n}` is declared here as a message"))
                .with_help(format!("send it with `send {n}(…)`"));
            self.report(d);
            return Ty::Error;
        }
        let mut candidates: Vec<&str> = self.locals.iter().map(|l| l.name.as_str()).collect();
        candidates.extend(self.values.keys().copied());
        candidates.push("profile");
        if matches!(self.ctx.trigger, TriggerCtx::Event(_)) {
            candidates.push("trigger");
        }
        if self.ctx.event.is_some() {
            candidates.push("event");
        }
        let d = self.unknown(codes::E0201, "name", n, at, candidates);
        self.report(d);
        Ty::Error
    }

    fn field_access(&mut self, base: &'a Expr, field: &Ident, optional: bool) -> Ty {
        let bt = self.infer(base);
        let (record_ty, via_optional) = match &bt {
            Ty::Error => return Ty::Error,
            Ty::Optional(inner) => {
                if !optional {
                    let snippet = self.snippet(base.span);
                    let ts = self.an.types.display(&bt);
                    let d = Diagnostic::new(
                        codes::E0302,
                        self.at(base.span),
                        format!("{snippet} may be none"),
                    )
                    .with_primary_label(format!(
                        "this is `{ts}`, so `.{}` may have nothing to read",
                        field.name
                    ))
                    .with_help("use `?.` or check for none first");
                    self.report(d);
                    ((**inner).clone(), false)
                } else {
                    ((**inner).clone(), true)
                }
            }
            t => (t.clone(), false),
        };
        let Ty::Record(rid) = record_ty else {
            let ts = self.an.types.display(&record_ty);
            let d = Diagnostic::new(
                codes::E0204,
                self.at(field.span),
                format!("`{ts}` has no field `{}`", field.name),
            )
            .with_primary_label("only records, events and the profile have fields")
            .with_label(self.at(base.span), format!("this is `{ts}`"));
            self.report(d);
            return Ty::Error;
        };
        let rec = self.an.types.record(rid);
        match rec.field(&field.name) {
            Some(f) => {
                let (ty, sym) = (f.ty.clone(), f.symbol);
                if let Some(sym) = sym {
                    self.use_symbol(self.at(field.span), sym);
                }
                if via_optional { ty.optional() } else { ty }
            }
            None => {
                let rname = rec.name.clone();
                let decl = rec.at;
                let candidates: Vec<&str> = rec.fields.iter().map(|f| f.name.as_str()).collect();
                let mut d = self
                    .unknown(
                        codes::E0204,
                        "field",
                        &field.name,
                        self.at(field.span),
                        candidates,
                    )
                    .with_primary_label("unknown field");
                d.title = format!("`{rname}` has no field `{}`", field.name);
                if let Some(decl) = decl {
                    d = d.with_label(decl, format!("`{rname}` is declared here"));
                }
                self.report(d);
                Ty::Error
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: &'a Expr, rhs: &'a Expr, span: Span) -> Ty {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                self.expect(lhs, &Ty::Bool);
                let before = self.narrowed.len();
                facts(lhs, op == BinaryOp::And, &mut self.narrowed);
                self.expect(rhs, &Ty::Bool);
                self.narrowed.truncate(before);
                Ty::Bool
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if is_none_lit(lhs) || is_none_lit(rhs) {
                    let (other, none) = if is_none_lit(rhs) {
                        (lhs, rhs)
                    } else {
                        (rhs, lhs)
                    };
                    self.an.expr_types.insert(self.at(none.span), Ty::Null);
                    let t = self.infer(other);
                    if !matches!(t, Ty::Optional(_) | Ty::Error | Ty::Null) {
                        let ts = self.an.types.display(&t);
                        let snippet = self.snippet(other.span);
                        let d = Diagnostic::new(
                            codes::E0304,
                            self.at(span),
                            format!("{snippet} can never be none"),
                        )
                        .with_primary_label(format!("{snippet} is `{ts}`, not optional"))
                        .with_help("only optional values (`T?`) can be compared with `none`");
                        self.report(d);
                    }
                    return Ty::Bool;
                }
                let lt = self.infer(lhs);
                if let Ty::Enum(id) = lt.strip_optional()
                    && let Some(s) = plain_string(rhs)
                {
                    let warn = self.ctx.exit_on && op == BinaryOp::Eq;
                    self.enum_member(*id, &s, rhs.span, warn);
                    self.an.expr_types.insert(self.at(rhs.span), Ty::Enum(*id));
                    return Ty::Bool;
                }
                let rt = self.infer(rhs);
                if let Ty::Enum(id) = rt.strip_optional()
                    && let Some(s) = plain_string(lhs)
                {
                    let warn = self.ctx.exit_on && op == BinaryOp::Eq;
                    self.enum_member(*id, &s, lhs.span, warn);
                    return Ty::Bool;
                }
                if !equatable(&lt, &rt) {
                    self.invalid_operands(op, lhs, &lt, rhs, &rt, span);
                }
                Ty::Bool
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let lt = self.operand(lhs);
                let rt = self.operand(rhs);
                let ok = lt.is_error()
                    || rt.is_error()
                    || (lt.is_number() && rt.is_number())
                    || (lt == rt && ordered(&lt));
                if !ok {
                    self.invalid_operands(op, lhs, &lt, rhs, &rt, span);
                }
                Ty::Bool
            }
            BinaryOp::In => {
                let lt = self.infer(lhs);
                let rt = self.operand(rhs);
                match &rt {
                    Ty::Error => {}
                    Ty::List(elem) => {
                        if let Ty::Enum(id) = elem.as_ref()
                            && let Some(s) = plain_string(lhs)
                        {
                            self.enum_member(*id, &s, lhs.span, false);
                        } else if !lt.is_error()
                            && assignable(&lt, elem) != Assign::Yes
                            && assignable(elem, &lt) != Assign::Yes
                        {
                            self.invalid_operands(op, lhs, &lt, rhs, &rt, span);
                        }
                    }
                    _ => self.invalid_operands(op, lhs, &lt, rhs, &rt, span),
                }
                Ty::Bool
            }
            BinaryOp::Default => {
                let lt = self.infer(lhs);
                let inner = lt.strip_optional().clone();
                if inner.is_error() {
                    self.infer(rhs);
                    return Ty::Error;
                }
                if matches!(inner, Ty::Enum(_) | Ty::Timezone) && plain_string(rhs).is_some() {
                    self.expect(rhs, &inner);
                    return inner;
                }
                let rt = self.infer(rhs);
                match (&rt, &inner) {
                    (Ty::Error, _) => inner,
                    (Ty::Null, _) => inner.optional(),
                    (Ty::Optional(r), i) if assignable(r, i) == Assign::Yes => inner.optional(),
                    (r, Ty::Int) if *r == Ty::Decimal => Ty::Decimal,
                    (r, i) if assignable(r, i) == Assign::Yes => inner,
                    _ => {
                        let (ls, rs) = (self.an.types.display(&lt), self.an.types.display(&rt));
                        let is = self.an.types.display(&inner);
                        let d = Diagnostic::new(
                            codes::E0301,
                            self.at(rhs.span),
                            format!("the default for a `{ls}` must be a `{is}`, found `{rs}`"),
                        )
                        .with_primary_label(format!("this is `{rs}`"))
                        .with_label(self.at(lhs.span), format!("this is `{ls}`"));
                        self.report(d);
                        inner
                    }
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                let lt = self.operand(lhs);
                let rt = self.operand(rhs);
                if lt.is_error() || rt.is_error() {
                    return Ty::Error;
                }
                match arith(op, &lt, &rt) {
                    Some(t) => t,
                    None => {
                        self.invalid_operands(op, lhs, &lt, rhs, &rt, span);
                        Ty::Error
                    }
                }
            }
        }
    }

    fn invalid_operands(
        &mut self,
        op: BinaryOp,
        lhs: &Expr,
        lt: &Ty,
        rhs: &Expr,
        rt: &Ty,
        span: Span,
    ) {
        let (ls, rs) = (self.an.types.display(lt), self.an.types.display(rt));
        let title = match op {
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => {
                format!("cannot compare `{ls}` with `{rs}` using `{}`", op.as_str())
            }
            BinaryOp::In => format!("cannot look for a `{ls}` in a `{rs}`"),
            _ => format!("cannot apply `{}` to `{ls}` and `{rs}`", op.as_str()),
        };
        let text = self.text(Span::new(lhs.span.end as usize, rhs.span.start as usize));
        let op_span = match text.find(op.as_str()) {
            Some(i) => Span::new(
                lhs.span.end as usize + i,
                lhs.span.end as usize + i + op.as_str().len(),
            ),
            None => span,
        };
        let mut d = Diagnostic::new(codes::E0304, self.at(op_span), title)
            .with_primary_label(format!("`{}` does not accept these types", op.as_str()))
            .with_label(self.at(lhs.span), format!("this is `{ls}`"))
            .with_label(self.at(rhs.span), format!("this is `{rs}`"));
        if let Some(h) = operator_help(op, lt, rt) {
            d = d.with_help(h);
        }
        self.report(d);
    }

    /// A call of a builtin function.
    fn call(&mut self, callee: &Ident, args: &'a [Arg], span: Span) -> Ty {
        let Some(sig) = self.builtins.by_name.get(callee.name.as_str()).copied() else {
            let at = self.at(callee.span);
            let d = if self.message_names.contains_key(callee.name.as_str()) {
                Diagnostic::new(
                    codes::E0209,
                    at,
                    format!("`{}` is a message, not a function", callee.name),
                )
                .with_primary_label("messages cannot be called in expressions")
                .with_help(format!("send it as a step: `send {}(…)`", callee.name))
            } else {
                let names = self.builtins.names.clone();
                self.unknown(codes::E0209, "function", &callee.name, at, names)
            };
            self.report(d);
            for a in args {
                if !matches!(a.value.kind, ExprKind::Lambda { .. }) {
                    self.infer(&a.value);
                }
            }
            return Ty::Error;
        };
        let fname = sig.name;
        if matches!(fname, "recommend" | "recommend_excluding" | "next_order_at")
            && !self.ctx.customer
        {
            // Segments, lets and defaults are worked out apart from any one
            // customer's moment (a `let` once for all): suggestions there
            // would be someone else's.
            let place = match &self.ctx.trigger {
                TriggerCtx::Unavailable(place) => *place,
                _ => "here",
            };
            let d = Diagnostic::new(
                codes::E0209,
                self.at(callee.span),
                format!("`{fname}` is not available in {place}"),
            )
            .with_primary_label("no one customer here")
            .with_help(format!(
                "`{fname}` reads the orders of the customer a flow or a message is about: call it in the flow's steps or the message's content"
            ));
            self.report(d);
        }
        // Match arguments to parameters: positional first, then by name.
        let mut slots: Vec<Option<&'a Arg>> = vec![None; sig.params.len()];
        let mut positional = 0;
        let mut ok = true;
        for a in args {
            let idx = match &a.name {
                None => {
                    let i = positional;
                    positional += 1;
                    if i >= sig.params.len() {
                        let d = Diagnostic::new(
                            codes::E0303,
                            self.at(a.value.span),
                            format!(
                                "`{fname}` takes {} argument{}",
                                sig.params.len(),
                                plural(sig.params.len())
                            ),
                        )
                        .with_primary_label("unexpected argument")
                        .with_help(format!("the signature is `{}`", self.signature_text(&sig)));
                        self.report(d);
                        ok = false;
                        continue;
                    }
                    i
                }
                Some(n) => match sig.params.iter().position(|p| p.name == n.name) {
                    Some(i) => i,
                    None => {
                        let d = self
                            .unknown(
                                codes::E0303,
                                &format!("parameter of `{fname}`"),
                                &n.name,
                                self.at(n.span),
                                sig.params.iter().map(|p| p.name),
                            )
                            .with_label(
                                self.at(callee.span),
                                format!("`{}`", self.signature_text(&sig)),
                            );
                        self.report(d);
                        ok = false;
                        continue;
                    }
                },
            };
            if slots[idx].is_some() {
                let d = Diagnostic::new(
                    codes::E0303,
                    self.at(a.value.span),
                    format!(
                        "argument `{}` of `{fname}` is given twice",
                        sig.params[idx].name
                    ),
                )
                .with_primary_label("given again here");
                self.report(d);
                ok = false;
                continue;
            }
            slots[idx] = Some(a);
        }
        let missing: Vec<&str> = sig
            .params
            .iter()
            .zip(&slots)
            .filter(|(_, s)| s.is_none())
            .map(|(p, _)| p.name)
            .collect();
        if !missing.is_empty() {
            let d = Diagnostic::new(
                codes::E0303,
                self.at(span),
                format!(
                    "`{fname}` is missing argument{} {}",
                    plural(missing.len()),
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_primary_label("missing arguments")
            .with_help(format!("the signature is `{}`", self.signature_text(&sig)));
            self.report(d);
            ok = false;
        }
        let mut subst = Subst::default();
        // Plain arguments first so that type variables are bound before lambdas are checked.
        for pass in 0..2 {
            for (i, param) in sig.params.iter().enumerate() {
                let Some(arg) = slots[i] else { continue };
                let is_lambda = matches!(arg.value.kind, ExprKind::Lambda { .. });
                if (pass == 0) == is_lambda {
                    continue;
                }
                if !self.call_arg(fname, param.name, &param.ty, arg, &mut subst) {
                    ok = false;
                }
            }
        }
        if ok {
            self.constant_format_args(fname, &slots);
        }
        let ret = subst.instantiate(&sig.ret, &Names { cx: self });
        if ok {
            ret
        } else if ret.is_error() {
            Ty::Error
        } else {
            ret
        }
    }

    fn signature_text(&self, sig: &crate::builtins::Signature) -> String {
        let subst = Subst::default();
        format!(
            "{}({}) -> {}",
            sig.name,
            sig.params
                .iter()
                .map(|p| format!("{}: {}", p.name, display_sig(&p.ty, &subst, &self.an.types)))
                .collect::<Vec<_>>()
                .join(", "),
            display_sig(&sig.ret, &subst, &self.an.types)
        )
    }

    fn call_arg(
        &mut self,
        fname: &str,
        pname: &str,
        pty: &SigTy,
        arg: &'a Arg,
        subst: &mut Subst,
    ) -> bool {
        let e = &arg.value;
        match (pty, &e.kind) {
            (SigTy::EventOf(v), ExprKind::Name(n)) => {
                let ident = Ident {
                    name: n.clone(),
                    span: e.span,
                };
                match self.resolve_event(&ident) {
                    Some(r) => {
                        subst.bind(*v, Ty::Record(r));
                        self.an.expr_types.insert(self.at(e.span), Ty::Record(r));
                        true
                    }
                    None => {
                        subst.bind(*v, Ty::Error);
                        false
                    }
                }
            }
            (SigTy::EventOf(v), _) => {
                subst.bind(*v, Ty::Error);
                self.infer(e);
                let d = Diagnostic::new(
                    codes::E0303,
                    self.at(e.span),
                    format!("argument `{pname}` of `{fname}` must be an event name"),
                )
                .with_primary_label("expected an event name such as `order_completed`");
                self.report(d);
                false
            }
            (SigTy::Fn(ps, r), ExprKind::Lambda { params, body }) => {
                let names = Names { cx: self };
                let ptys: Vec<Ty> = ps.iter().map(|p| subst.instantiate(p, &names)).collect();
                if params.len() != ptys.len() {
                    let d = Diagnostic::new(
                        codes::E0303,
                        self.at(e.span),
                        format!(
                            "argument `{pname}` of `{fname}` takes {} parameter{}, this function has {}",
                            ptys.len(),
                            plural(ptys.len()),
                            params.len()
                        ),
                    )
                    .with_primary_label("wrong number of parameters");
                    self.report(d);
                }
                let before = self.locals.len();
                for (i, p) in params.iter().enumerate() {
                    let t = ptys.get(i).cloned().unwrap_or(Ty::Error);
                    self.push_local(p, t, SymbolKind::Local);
                }
                let bt = self.infer(body);
                self.locals.truncate(before);
                let fty = Ty::Fn(ptys, Box::new(bt.clone()));
                self.an.expr_types.insert(self.at(e.span), fty);
                if subst.unify(r, &bt, &Names { cx: self }) {
                    true
                } else {
                    let expected = display_sig(r, subst, &self.an.types);
                    let found = self.an.types.display(&bt);
                    let d = Diagnostic::new(
                        codes::E0303,
                        self.at(body.span),
                        format!("the function given to `{fname}` must return `{expected}`, found `{found}`"),
                    )
                    .with_primary_label(format!("this is `{found}`"));
                    self.report(d);
                    false
                }
            }
            _ => {
                let t = self.infer(e);
                let names = Names { cx: self };
                if subst.unify(pty, &t, &names) {
                    return true;
                }
                let is_opt_param = matches!(pty, SigTy::Optional(_) | SigTy::Var(_));
                if let Ty::Optional(inner) = &t
                    && !is_opt_param
                    && subst.unify(pty, inner, &names)
                {
                    self.possibly_missing(e, &t, &format!("as argument `{pname}` of `{fname}`"));
                    return false;
                }
                let expected = display_sig(pty, subst, &self.an.types);
                let found = self.an.types.display(&t);
                let d = Diagnostic::new(
                    codes::E0303,
                    self.at(e.span),
                    format!(
                        "argument `{pname}` of `{fname}` must be `{expected}`, found `{found}`"
                    ),
                )
                .with_primary_label(format!("this is `{found}`"));
                self.report(d);
                false
            }
        }
    }

    /// Checks a condition: a `bool`.
    pub(crate) fn condition(&mut self, e: &'a Expr) {
        self.expect(e, &Ty::Bool);
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn conversion_help(actual: &Ty, expected: &Ty) -> Option<&'static str> {
    match (actual, expected.strip_optional()) {
        (Ty::Int | Ty::Decimal, Ty::Money) => Some("write money with a `$`, as in `$10.00`"),
        (Ty::Int, Ty::Duration) => Some("write a duration with a unit, as in `7d` or `2h`"),
        (Ty::Int | Ty::Decimal, Ty::Percent) => Some("write a percent with `%`, as in `10%`"),
        (Ty::String, Ty::Time) => Some("write an instant literal, as in `2026-12-18T17:00:00Z`"),
        _ => None,
    }
}

fn operator_help(op: BinaryOp, l: &Ty, r: &Ty) -> Option<String> {
    match (op, l, r) {
        (BinaryOp::Add | BinaryOp::Sub, Ty::Money, Ty::Int | Ty::Decimal)
        | (BinaryOp::Add | BinaryOp::Sub, Ty::Int | Ty::Decimal, Ty::Money) => {
            Some("write the amount as money, as in `$5.00`".into())
        }
        (
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge,
            Ty::Money,
            Ty::Int | Ty::Decimal,
        ) => Some("write the amount as money, as in `$500`".into()),
        (_, Ty::Time | Ty::Date, Ty::Int) => Some("add a duration with a unit, as in `7d`".into()),
        (BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge, Ty::String, Ty::String) => {
            Some("strings can only be compared with `==` and `!=`".into())
        }
        (BinaryOp::Add, Ty::String, _) | (BinaryOp::Add, _, Ty::String) => {
            Some("build text with interpolation instead: \"… {value} …\"".into())
        }
        _ => None,
    }
}
