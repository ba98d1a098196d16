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
/// the clock (`now()`, directly or through `let`s and other segments) in a
/// way whose changes cannot be computed ahead (see [`crate::clock`]). The
/// runtime looks at such a segment again only when the customer's profile
/// changes, so the flow starts late or never.
pub(crate) fn time_lints(program: &tir::Program) -> Vec<Diagnostic> {
    let mut clock = crate::clock::Clock::new(program);
    let mut out = Vec::new();
    for flow in &program.flows {
        let tir::Trigger::Entering { segment, at } = flow.trigger else {
            continue;
        };
        if clock.change_points(segment).is_ok() {
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
                format!("segment `{name}` can change with time alone, and `trigger entering` cannot tell when"),
            )
            .with_primary_label("its condition reads the clock (`now()`, or events within a window) in a way whose changes cannot be computed ahead")
            .with_help("write the time condition as a comparison of `now()` with a time (`days_between(profile.last_order_at ?? now(), now()) >= 60`, `now() >= 2026-12-01T00:00:00Z`) or of `date_of(now())` with a date, which the runtime follows; or use a schedule (`trigger every saturday at 09:00 local for SEGMENT`) or a date trigger"),
        );
    }
    out
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
