//! When a segment's membership can change with time alone.
//!
//! A segment is a condition over the profile, and may read the clock. The
//! runtime sees every profile change as it happens, but not time passing:
//! for a `trigger entering` flow it must know when to look again. For the
//! shapes below, a membership can change only at instants computed from
//! the profile; [`change_points`] returns expressions for them (a superset
//! is harmless: looking again changes nothing), and lowering writes them as
//! code the runtime evaluates after each look. Any other use of the clock is
//! [`Unforeseen`], and the checker warns (W0008).
//!
//! The shapes, with `T` an expression that does not read the clock (`E` in
//! `E ?? now()` counts as one) and `now` meaning `now()` plus or minus
//! durations that do not read it:
//!
//! - `now OP T` and `T OP now` (times);
//! - `now - T OP D` and `T - now OP D` (durations);
//! - `days_between(T, now) OP N` and `days_between(now, T) OP N`;
//! - `date_of(now()) OP D` and `D OP date_of(now())` (dates: the point is a
//!   day, which the runtime reads as its start in the recipient's zone);
//! - `and`, `or`, `not`, `??` of those, and `let`s and segments made of them.
//!
//! A comparison of two `now`s does not change with time. `E ?? now` against
//! `now` changes only with the profile; against `T` it changes as `now` does.

use std::collections::HashMap;

use nudge_bytecode::Value;
use nudge_stdlib::Builtin;
use nudge_syntax::ast::Span;

use crate::tir::{self, Arith, ArithOp, CallArg, CompareOp, Expr, ExprKind, Program};
use crate::types::Ty;

/// A use of the clock whose changes cannot be computed ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unforeseen;

/// Seconds in the day `days_between` counts.
const DAY: i64 = 86_400;

/// Which reads of the clock count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Reads {
    /// Every read: `now()`, and windows before now.
    Any,
    /// All but windowed history builtins over a constant window (a
    /// duration, or a `let` that is one): those windows the bundle records
    /// (`constant_windows`), and the runtime looks again at their exits.
    Unfollowed,
}

/// What reads the clock in a program, each `let` and segment looked at once
/// for each kind of read.
pub(crate) struct Clock<'p> {
    program: &'p Program,
    lets: HashMap<(u32, Reads), bool>,
    segments: HashMap<(u32, Reads), bool>,
}

impl<'p> Clock<'p> {
    /// A reader of `program`'s uses of the clock.
    pub(crate) fn new(program: &'p Program) -> Self {
        Clock {
            program,
            lets: HashMap::new(),
            segments: HashMap::new(),
        }
    }

    /// Whether segment `s` reads the clock in a way `how` counts, itself or
    /// through `let`s and other segments.
    fn segment_reads_as(&mut self, s: u32, how: Reads) -> bool {
        if let Some(&known) = self.segments.get(&(s, how)) {
            return known;
        }
        // A cycle is an error reported before lints and lowering run.
        self.segments.insert((s, how), false);
        let p = self.program;
        let reads = p
            .segments
            .get(s as usize)
            .is_some_and(|seg| self.reads_as(&seg.predicate, how));
        self.segments.insert((s, how), reads);
        reads
    }

    /// Whether `let` `i` reads the clock in a way `how` counts.
    fn let_reads_as(&mut self, i: u32, how: Reads) -> bool {
        if let Some(&known) = self.lets.get(&(i, how)) {
            return known;
        }
        self.lets.insert((i, how), false);
        let p = self.program;
        let reads = p
            .lets
            .get(i as usize)
            .is_some_and(|l| self.reads_as(&l.value, how));
        self.lets.insert((i, how), reads);
        reads
    }

    /// Whether evaluating `e` reads the clock.
    pub(crate) fn reads(&mut self, e: &Expr) -> bool {
        self.reads_as(e, Reads::Any)
    }

    /// Whether evaluating `e` reads the clock in a way `how` counts.
    fn reads_as(&mut self, e: &Expr, how: Reads) -> bool {
        use ExprKind as K;
        match &e.kind {
            K::Const(_)
            | K::PlainStr(_)
            | K::Local(_)
            | K::Profile
            | K::Trigger
            | K::Event
            | K::ProfileField { .. } => false,
            K::Let(i) => self.let_reads_as(*i, how),
            K::Segment(i) => self.segment_reads_as(*i, how),
            K::Interp { parts, .. } => parts.iter().any(|part| match part {
                tir::StrPart::Text(..) => false,
                tir::StrPart::Interp(e) => self.reads_as(e, how),
            }),
            K::Field { base, .. } => self.reads_as(base, how),
            K::Call { builtin, args, .. } => {
                let p = self.program;
                // A window before now moves with the clock; a constant one
                // is followed unless every read counts.
                let itself = Builtin::from_id(*builtin).is_some_and(|b| {
                    b == Builtin::Now
                        || (b.windowed()
                            && (how == Reads::Any
                                || !args.iter().any(|a| {
                                    matches!(a, CallArg::Value { expr, .. } if const_window(p, expr, 0))
                                })))
                });
                itself
                    || args.iter().any(|a| match a {
                        CallArg::Event(_) => false,
                        CallArg::Lambda(l) => self.reads_as(&l.body, how),
                        CallArg::Value { expr, .. } => self.reads_as(expr, how),
                    })
            }
            K::Not(e) | K::Neg(e) => self.reads_as(e, how),
            K::Logic { lhs, rhs, .. }
            | K::Default { lhs, rhs }
            | K::Compare { lhs, rhs, .. }
            | K::Arith { lhs, rhs, .. } => self.reads_as(lhs, how) || self.reads_as(rhs, how),
            K::List { items, .. } => items.iter().any(|e| self.reads_as(e, how)),
        }
    }

    /// The instants (time expressions, or dates for their local midnight) at which segment `s`'s membership
    /// can next change with time alone: empty when it does not read the
    /// clock. Each may fail or be none at run time (a trait not set), which
    /// means that part cannot change.
    pub(crate) fn change_points(&mut self, s: u32) -> Result<Vec<Expr>, Unforeseen> {
        let p = self.program;
        let seg = p.segments.get(s as usize).ok_or(Unforeseen)?;
        let mut points = self.points(&seg.predicate)?;
        // The constants made here are placed at the condition, for listings.
        for e in &mut points {
            place(e, seg.predicate.span);
        }
        // The points are written as code of their own, with no locals: a
        // function's parameter (a lambda inside a `let`) has no slot there.
        if points.iter().all(plain) {
            Ok(points)
        } else {
            Err(Unforeseen)
        }
    }

    /// The change points of a condition.
    fn points(&mut self, e: &Expr) -> Result<Vec<Expr>, Unforeseen> {
        if !self.reads(e) {
            return Ok(Vec::new());
        }
        // Events within constant windows: the membership can change with
        // time alone only as an event leaves a window, which the runtime
        // follows from the bundle's windows and the stored events.
        if !self.reads_as(e, Reads::Unfollowed) {
            return Ok(Vec::new());
        }
        let p = self.program;
        match &e.kind {
            ExprKind::Logic { lhs, rhs, .. } | ExprKind::Default { lhs, rhs } => {
                let mut out = self.points(lhs)?;
                out.extend(self.points(rhs)?);
                Ok(out)
            }
            ExprKind::Not(inner) => self.points(inner),
            ExprKind::Segment(i) => self.change_points(*i),
            ExprKind::Let(i) => {
                let l = p.lets.get(*i as usize).ok_or(Unforeseen)?;
                self.points(&l.value)
            }
            ExprKind::Compare { op, lhs, rhs } => self.compare(*op, lhs, rhs),
            _ => Err(Unforeseen),
        }
    }

    /// The change points of `lhs OP rhs`.
    fn compare(&mut self, op: CompareOp, lhs: &Expr, rhs: &Expr) -> Result<Vec<Expr>, Unforeseen> {
        if op == CompareOp::In {
            return Err(Unforeseen);
        }
        if let Some(points) = self.days_compare(op, lhs, rhs)? {
            return Ok(points);
        }
        if let Some(points) = self.days_compare(mirror(op), rhs, lhs)? {
            return Ok(points);
        }
        let (l, r) = (self.form(lhs)?, self.form(rhs)?);
        // Today against a date turns at a local midnight.
        match (&l, &r) {
            (Form::Today, Form::Today) => return Ok(Vec::new()),
            (Form::Today, Form::Free) => return Ok(day_flips(op, rhs.clone())),
            (Form::Free, Form::Today) => return Ok(day_flips(mirror(op), lhs.clone())),
            (Form::Today, _) | (_, Form::Today) => return Err(Unforeseen),
            _ => {}
        }
        // `now OP t`: the flip is at `t - offsets`; the rest reduces to it.
        let (op, offsets, anchor) = match (l, r) {
            // Two clocks a constant apart.
            (Form::Now(_), Form::Now(_)) => return Ok(Vec::new()),
            // `E ?? now` is a profile value when set, else a second clock.
            (Form::Now(o), Form::Either(t, _)) => (op, o, t),
            (Form::Either(t, _), Form::Now(o)) => (mirror(op), o, t),
            (Form::Now(o) | Form::Either(_, o), Form::Free) => (op, o, rhs.clone()),
            (Form::Free, Form::Now(o) | Form::Either(_, o)) => (mirror(op), o, lhs.clone()),
            (Form::Since(a, o), Form::Free) => {
                // now + o - a OP d  <=>  now OP a + d - o
                (op, o, add_dur(a, rhs.clone()))
            }
            (Form::Free, Form::Since(a, o)) => (mirror(op), o, add_dur(a, lhs.clone())),
            (Form::Until(a, o), Form::Free) => {
                // a - (now + o) OP d  <=>  now MIRROR(OP) a - d - o
                (mirror(op), o, sub_dur(a, rhs.clone()))
            }
            (Form::Free, Form::Until(a, o)) => (op, o, sub_dur(a, lhs.clone())),
            _ => return Err(Unforeseen),
        };
        let t = undo(anchor, &offsets);
        Ok(flips(op, t))
    }

    /// `days_between(..) OP n`, when `lhs` is such a call reading the clock.
    fn days_compare(
        &mut self,
        op: CompareOp,
        lhs: &Expr,
        n: &Expr,
    ) -> Result<Option<Vec<Expr>>, Unforeseen> {
        let ExprKind::Call { builtin, args, .. } = &lhs.kind else {
            return Ok(None);
        };
        if *builtin != Builtin::DaysBetween.id() || !self.reads(lhs) {
            return Ok(None);
        }
        let [
            CallArg::Value { expr: a, .. },
            CallArg::Value { expr: b, .. },
        ] = args.as_slice()
        else {
            return Err(Unforeseen);
        };
        if self.reads(n) {
            return Err(Unforeseen);
        }
        // Days counted from `t` to the clock rise with it; from the clock to
        // `t` they fall. An `E ?? now` is a clock against `t`, and `t`
        // against a clock.
        let (rising, offsets, anchor) = match (self.form(a)?, self.form(b)?) {
            (Form::Now(_), Form::Now(_)) => return Ok(Some(Vec::new())),
            (Form::Either(t, _), Form::Now(o)) => (true, o, t),
            (Form::Now(o), Form::Either(t, _)) => (false, o, t),
            (Form::Free, Form::Now(o) | Form::Either(_, o)) => (true, o, a.clone()),
            (Form::Now(o) | Form::Either(_, o), Form::Free) => (false, o, b.clone()),
            _ => return Err(Unforeseen),
        };
        let t = undo(anchor, &offsets);
        let p = self.program;
        // The count steps from k - 1 to k where the difference reaches
        // `edge(k)`; OP changes its answer at the step into n (`>=`, `<`),
        // into n + 1 (`>`, `<=`) or both (`==`, `!=`).
        let steps: &[i64] = match op {
            CompareOp::Ge | CompareOp::Lt => &[0],
            CompareOp::Gt | CompareOp::Le => &[1],
            _ => &[0, 1],
        };
        let mut out = Vec::new();
        for &plus in steps {
            for edge in edges(p, n, plus) {
                out.push(if rising {
                    // now - t reaches edge at t + edge.
                    add_dur(t.clone(), edge)
                } else {
                    // t - now drops below edge at t - edge + 1s.
                    add_dur(sub_dur(t.clone(), edge), dur(1))
                });
            }
        }
        Ok(Some(out))
    }

    /// What an operand of a comparison is, as far as the clock goes.
    fn form(&mut self, e: &Expr) -> Result<Form, Unforeseen> {
        if !self.reads(e) {
            return Ok(Form::Free);
        }
        let p = self.program;
        match &e.kind {
            ExprKind::Call { builtin, .. } if *builtin == Builtin::Now.id() => {
                Ok(Form::Now(Vec::new()))
            }
            ExprKind::Let(i) => {
                let l = p.lets.get(*i as usize).ok_or(Unforeseen)?;
                self.form(&l.value)
            }
            ExprKind::Call { builtin, args, .. } if *builtin == Builtin::DateOf.id() => {
                match args.as_slice() {
                    [CallArg::Value { expr, .. }] => match self.form(expr)? {
                        Form::Now(o) if o.is_empty() => Ok(Form::Today),
                        _ => Err(Unforeseen),
                    },
                    _ => Err(Unforeseen),
                }
            }
            ExprKind::Default { lhs, rhs } if !self.reads(lhs) => match self.form(rhs)? {
                Form::Now(o) => Ok(Form::Either((**lhs).clone(), o)),
                _ => Err(Unforeseen),
            },
            ExprKind::Arith { op, lhs, rhs } => {
                let (l, r) = (self.form(lhs)?, self.form(rhs)?);
                match (op.op, l, r) {
                    (ArithOp::AddTimeDur, Form::Now(mut o), Form::Free) => {
                        o.push((false, (**rhs).clone()));
                        Ok(Form::Now(o))
                    }
                    (ArithOp::AddTimeDur, Form::Free, Form::Now(mut o)) => {
                        o.push((false, (**lhs).clone()));
                        Ok(Form::Now(o))
                    }
                    (ArithOp::SubTimeDur, Form::Now(mut o), Form::Free) => {
                        o.push((true, (**rhs).clone()));
                        Ok(Form::Now(o))
                    }
                    // `(E ?? now) ± d` is `E ± d` when set, else `now ± d`.
                    (ArithOp::AddTimeDur, Form::Either(t, mut o), Form::Free) => {
                        o.push((false, (**rhs).clone()));
                        Ok(Form::Either(add_dur(t, (**rhs).clone()), o))
                    }
                    (ArithOp::SubTimeDur, Form::Either(t, mut o), Form::Free) => {
                        o.push((true, (**rhs).clone()));
                        Ok(Form::Either(sub_dur(t, (**rhs).clone()), o))
                    }
                    // `E ?? now` against the clock is `E` (when unset the
                    // difference is constant); against a time, a clock.
                    (ArithOp::SubTime, Form::Now(o), Form::Either(t, _)) => Ok(Form::Since(t, o)),
                    (ArithOp::SubTime, Form::Either(t, _), Form::Now(o)) => Ok(Form::Until(t, o)),
                    (ArithOp::SubTime, Form::Now(o) | Form::Either(_, o), Form::Free) => {
                        Ok(Form::Since((**rhs).clone(), o))
                    }
                    (ArithOp::SubTime, Form::Free, Form::Now(o) | Form::Either(_, o)) => {
                        Ok(Form::Until((**lhs).clone(), o))
                    }
                    _ => Err(Unforeseen),
                }
            }
            _ => Err(Unforeseen),
        }
    }
}

/// An operand of a comparison.
#[derive(Clone)]
enum Form {
    /// It does not read the clock.
    Free,
    /// `now()` plus (`false`) or minus (`true`) these durations.
    Now(Vec<(bool, Expr)>),
    /// `E ?? now…`: `E` (which does not read the clock) when it is set.
    Either(Expr, Vec<(bool, Expr)>),
    /// `now… - t`, a duration that grows with the clock.
    Since(Expr, Vec<(bool, Expr)>),
    /// `t - now…`, a duration that shrinks as the clock goes on.
    Until(Expr, Vec<(bool, Expr)>),
    /// `date_of(now())`: today in the recipient's zone.
    Today,
}

/// Gives the parts of `e` made here (placed nowhere) the span `at`.
fn place(e: &mut Expr, at: Span) {
    if e.span == Span::default() {
        e.span = at;
    }
    if let ExprKind::Arith { lhs, rhs, .. } = &mut e.kind {
        place(lhs, at);
        place(rhs, at);
    }
}

/// Whether `e` reads no local and passes no function.
fn plain(e: &Expr) -> bool {
    use ExprKind as K;
    match &e.kind {
        K::Local(_) => false,
        K::Const(_)
        | K::PlainStr(_)
        | K::Let(_)
        | K::Segment(_)
        | K::Profile
        | K::Trigger
        | K::Event
        | K::ProfileField { .. } => true,
        K::Interp { parts, .. } => parts.iter().all(|part| match part {
            tir::StrPart::Text(..) => true,
            tir::StrPart::Interp(e) => plain(e),
        }),
        K::Field { base, .. } => plain(base),
        K::Call { args, .. } => args.iter().all(|a| match a {
            CallArg::Event(_) => true,
            CallArg::Lambda(_) => false,
            CallArg::Value { expr, .. } => plain(expr),
        }),
        K::Not(e) | K::Neg(e) => plain(e),
        K::Logic { lhs, rhs, .. }
        | K::Default { lhs, rhs }
        | K::Compare { lhs, rhs, .. }
        | K::Arith { lhs, rhs, .. } => plain(lhs) && plain(rhs),
        K::List { items, .. } => items.iter().all(plain),
    }
}

/// `a OP b` is `b MIRROR(OP) a`.
fn mirror(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::Le => CompareOp::Ge,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::Ge => CompareOp::Le,
        other => other,
    }
}

/// The instants at which `now OP t` changes its answer: `now < t` and
/// `now >= t` at `t`; `now <= t` and `now > t` a second later (the clock
/// the rules read counts seconds); `==` and `!=` at both.
fn flips(op: CompareOp, t: Expr) -> Vec<Expr> {
    let later = || add_dur(t.clone(), dur(1));
    match op {
        CompareOp::Lt | CompareOp::Ge => vec![t],
        CompareOp::Le | CompareOp::Gt => vec![later()],
        _ => vec![later(), t],
    }
}

/// The days at whose start (local midnight, as the runtime reads a `date`
/// change point) `date_of(now()) OP d` changes its answer.
fn day_flips(op: CompareOp, d: Expr) -> Vec<Expr> {
    let next = || arith(ArithOp::AddDateDur, d.clone(), dur(DAY), Ty::Date);
    match op {
        CompareOp::Lt | CompareOp::Ge => vec![d],
        CompareOp::Le | CompareOp::Gt => vec![next()],
        _ => vec![next(), d],
    }
}

/// Where `days_between` steps to `n + plus`, as the difference of times:
/// `k` days for a count `k` of at least 1; a second past `k - 1` days for
/// `k` of 0 or less (the count truncates toward zero). Both when `n` is
/// not a constant.
fn edges(p: &Program, n: &Expr, plus: i64) -> Vec<Expr> {
    if let Some(n) = const_int(p, n) {
        let k = n.saturating_add(plus);
        let secs = if k >= 1 {
            k.saturating_mul(DAY)
        } else {
            k.saturating_sub(1).saturating_mul(DAY).saturating_add(1)
        };
        return vec![dur(secs)];
    }
    let k = arith(ArithOp::AddInt, n.clone(), int(plus), Ty::Int);
    let k_less = arith(ArithOp::AddInt, n.clone(), int(plus - 1), Ty::Int);
    vec![
        arith(ArithOp::MulDur, dur(DAY), k, Ty::Duration),
        add_dur_dur(
            arith(ArithOp::MulDur, dur(DAY), k_less, Ty::Duration),
            dur(1),
        ),
    ]
}

/// The value of an integer that is a literal, a negated one or a `let` of one.
fn const_int(p: &Program, e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Const(Value::Int(n)) => Some(*n),
        ExprKind::Neg(inner) => const_int(p, inner)?.checked_neg(),
        ExprKind::Let(i) => const_int(p, &p.lets.get(*i as usize)?.value),
        _ => None,
    }
}

/// `t` less the clock's offsets: the instant at which `now() ± offsets`
/// equals `t`.
fn undo(t: Expr, offsets: &[(bool, Expr)]) -> Expr {
    offsets.iter().fold(t, |t, (minus, d)| {
        if *minus {
            add_dur(t, d.clone())
        } else {
            sub_dur(t, d.clone())
        }
    })
}

fn add_dur(t: Expr, d: Expr) -> Expr {
    arith(ArithOp::AddTimeDur, t, d, Ty::Time)
}

fn sub_dur(t: Expr, d: Expr) -> Expr {
    arith(ArithOp::SubTimeDur, t, d, Ty::Time)
}

fn add_dur_dur(a: Expr, b: Expr) -> Expr {
    arith(ArithOp::AddDur, a, b, Ty::Duration)
}

fn arith(op: ArithOp, lhs: Expr, rhs: Expr, ty: Ty) -> Expr {
    let span = lhs.span;
    Expr {
        kind: ExprKind::Arith {
            op: Arith {
                op,
                widen_lhs: false,
                widen_rhs: false,
            },
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        ty,
        span,
    }
}

fn dur(secs: i64) -> Expr {
    constant(Value::Duration(secs), Ty::Duration)
}

fn int(n: i64) -> Expr {
    constant(Value::Int(n), Ty::Int)
}

fn constant(v: Value, ty: Ty) -> Expr {
    Expr {
        kind: ExprKind::Const(v),
        ty,
        span: Span::default(),
    }
}

/// Whether `e` is a constant duration: a literal, or a `let` that is one.
fn const_window(p: &Program, e: &Expr, depth: u32) -> bool {
    match &e.kind {
        ExprKind::Const(Value::Duration(_)) => true,
        ExprKind::Let(i) if depth < 16 => p
            .lets
            .get(*i as usize)
            .is_some_and(|l| const_window(p, &l.value, depth + 1)),
        _ => false,
    }
}
