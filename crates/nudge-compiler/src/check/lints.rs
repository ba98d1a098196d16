//! Project-wide lints: unused declarations, segments that change with time
//! alone, and the constant folding the `exit on` lint needs.

use nudge_diagnostics::{Diagnostic, FileSpan, codes};
use nudge_syntax::ast::{BinaryOp, Expr, ExprKind, UnaryOp};

use crate::tir;

use super::Checker;
use super::expr::plain_string;

/// The value of a condition when it is the same for every event, if it is.
pub(crate) fn const_bool(e: &Expr) -> Option<bool> {
    match &e.kind {
        ExprKind::Bool(b) => Some(*b),
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => const_bool(expr).map(|b| !b),
        ExprKind::Binary { op, lhs, rhs } => match op {
            BinaryOp::And => match (const_bool(lhs), const_bool(rhs)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            BinaryOp::Or => match (const_bool(lhs), const_bool(rhs)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            BinaryOp::Eq | BinaryOp::Ne => {
                let eq = literal_eq(lhs, rhs)?;
                Some(if *op == BinaryOp::Eq { eq } else { !eq })
            }
            _ => None,
        },
        _ => None,
    }
}

fn literal_eq(a: &Expr, b: &Expr) -> Option<bool> {
    match (&a.kind, &b.kind) {
        (ExprKind::Int(x), ExprKind::Int(y)) => Some(x == y),
        (ExprKind::Bool(x), ExprKind::Bool(y)) => Some(x == y),
        (ExprKind::Money(x), ExprKind::Money(y)) => Some(x == y),
        (ExprKind::Str(_), ExprKind::Str(_)) => Some(plain_string(a)? == plain_string(b)?),
        _ => None,
    }
}

impl Checker<'_> {
    /// W0005–W0007: segments, messages and lets of the project that nothing uses.
    pub(crate) fn unused_lints(&mut self) {
        // A broken program hides uses (a misspelled name, a step lost to a
        // syntax error), so unused warnings would mostly be noise.
        if self.diags.iter().any(Diagnostic::is_error) {
            return;
        }
        for i in 0..self.segments.len() {
            let s = &self.segments[i];
            if self.is_stdlib(s.file) || self.an.refs.contains_key(&s.symbol) {
                continue;
            }
            let at = self.symbol_at_decl(s.symbol);
            let name = &s.decl.name.name;
            let d = Diagnostic::new(codes::W0005, at, format!("segment `{name}` is never used"))
                .with_primary_label("declared here, used nowhere")
                .with_help("use it in a condition or a trigger, or remove it");
            self.report(d);
        }
        for i in 0..self.messages.len() {
            let m = &self.messages[i];
            if self.is_stdlib(m.file) || self.sent.contains(&m.decl.name.name) {
                continue;
            }
            let at = self.symbol_at_decl(m.symbol);
            let name = &m.decl.name.name;
            let d = Diagnostic::new(codes::W0006, at, format!("message `{name}` is never sent"))
                .with_primary_label("no flow sends this message")
                .with_help(format!(
                    "send it from a flow with `send {name}(…)`, or remove it"
                ));
            self.report(d);
        }
        for i in 0..self.lets.len() {
            let l = &self.lets[i];
            if self.is_stdlib(l.file) || self.an.refs.contains_key(&l.symbol) {
                continue;
            }
            let at = self.symbol_at_decl(l.symbol);
            let name = &l.decl.name.name;
            let d = Diagnostic::new(codes::W0007, at, format!("`let {name}` is never used"))
                .with_primary_label("declared here, used nowhere")
                .with_help("use it, or remove it");
            self.report(d);
        }
    }
}

/// W0008: a flow that starts on entering a segment whose condition reads
/// the clock (`now()`, directly or through `let`s and other segments). A
/// segment is looked at again when the customer's profile changes, never
/// as time passes, so such a flow starts late or never (a customer who
/// lapses by staying away sends nothing that would make it look).
pub(crate) fn time_lints(program: &tir::Program) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for flow in &program.flows {
        let tir::Trigger::Entering { segment, at } = flow.trigger else {
            continue;
        };
        let mut seen = Seen::default();
        if !reads_clock_in_segment(program, segment, &mut seen) {
            continue;
        }
        let name = program
            .segments
            .get(segment as usize)
            .map_or("", |s| s.name.as_str());
        out.push(
            Diagnostic::new(
                codes::W0008,
                FileSpan::new(flow.file, at),
                format!("segment `{name}` can change with time alone, and `trigger entering` does not notice"),
            )
            .with_primary_label("its condition reads `now()`")
            .with_help("segments are looked at again only when the customer's profile changes; to start when a date passes, use a date trigger (`trigger 60d after profile.last_order_at`)"),
        );
    }
    out
}

/// The `let`s and segments already looked at (each is read once, and a
/// cycle is an error found before lints run).
#[derive(Default)]
struct Seen {
    lets: std::collections::HashSet<u32>,
    segments: std::collections::HashSet<u32>,
}

fn reads_clock_in_segment(p: &tir::Program, s: u32, seen: &mut Seen) -> bool {
    seen.segments.insert(s)
        && p.segments
            .get(s as usize)
            .is_some_and(|seg| reads_clock(p, &seg.predicate, seen))
}

/// Whether evaluating `e` reads the clock.
fn reads_clock(p: &tir::Program, e: &tir::Expr, seen: &mut Seen) -> bool {
    use tir::ExprKind as K;
    match &e.kind {
        K::Const(_)
        | K::PlainStr(_)
        | K::Local(_)
        | K::Profile
        | K::Trigger
        | K::Event
        | K::ProfileField { .. } => false,
        K::Let(i) => {
            seen.lets.insert(*i)
                && p.lets
                    .get(*i as usize)
                    .is_some_and(|l| reads_clock(p, &l.value, seen))
        }
        K::Segment(i) => reads_clock_in_segment(p, *i, seen),
        K::Interp { parts, .. } => parts.iter().any(|part| match part {
            tir::StrPart::Text(..) => false,
            tir::StrPart::Interp(e) => reads_clock(p, e, seen),
        }),
        K::Field { base, .. } => reads_clock(p, base, seen),
        K::Call { builtin, args, .. } => {
            *builtin == nudge_stdlib::Builtin::Now.id()
                || args.iter().any(|a| match a {
                    tir::CallArg::Event(_) => false,
                    tir::CallArg::Lambda(l) => reads_clock(p, &l.body, seen),
                    tir::CallArg::Value { expr, .. } => reads_clock(p, expr, seen),
                })
        }
        K::Not(e) | K::Neg(e) => reads_clock(p, e, seen),
        K::Logic { lhs, rhs, .. }
        | K::Default { lhs, rhs }
        | K::Compare { lhs, rhs, .. }
        | K::Arith { lhs, rhs, .. } => reads_clock(p, lhs, seen) || reads_clock(p, rhs, seen),
        K::List { items, .. } => items.iter().any(|e| reads_clock(p, e, seen)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_syntax::ast::Span;

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }

    #[test]
    fn folds_constant_conditions() {
        let f = e(ExprKind::Bool(false));
        assert_eq!(const_bool(&f), Some(false));
        let t = e(ExprKind::Unary {
            op: UnaryOp::Not,
            expr: Box::new(f.clone()),
        });
        assert_eq!(const_bool(&t), Some(true));
        let and = e(ExprKind::Binary {
            op: BinaryOp::And,
            lhs: Box::new(e(ExprKind::Name("x".into()))),
            rhs: Box::new(f),
        });
        assert_eq!(const_bool(&and), Some(false));
        let ne = e(ExprKind::Binary {
            op: BinaryOp::Eq,
            lhs: Box::new(e(ExprKind::Int(1))),
            rhs: Box::new(e(ExprKind::Int(2))),
        });
        assert_eq!(const_bool(&ne), Some(false));
        assert_eq!(const_bool(&e(ExprKind::Name("x".into()))), None);
    }
}
