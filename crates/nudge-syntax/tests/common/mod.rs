//! A compact S-expression dump of the syntax tree and a readable rendering
//! of diagnostics, shared by the parser's tests.

#![allow(dead_code)]

use std::fmt::Write;

use nudge_diagnostics::{Diagnostic, SourceFile};
use nudge_syntax::ast::*;

/// Renders a file as one S-expression per item.
pub fn dump(file: &File) -> String {
    let mut out = String::new();
    for item in &file.items {
        let mut d = Dumper { out: String::new() };
        d.item(item);
        out.push_str(&d.out);
        out.push('\n');
    }
    out
}

/// Renders one expression.
pub fn expr(e: &Expr) -> String {
    let mut d = Dumper { out: String::new() };
    d.expr(e);
    d.out
}

/// Renders diagnostics as `CODE line:col-line:col title` plus labels and help.
pub fn diagnostics(src: &str, diags: &[Diagnostic]) -> String {
    let f = SourceFile::new("test.flow", src);
    let pos = |s: Span| {
        let a = f.line_col(s.start);
        let b = f.line_col(s.end);
        format!("{}:{}-{}:{}", a.line, a.col, b.line, b.col)
    };
    let mut out = String::new();
    for d in diags {
        let _ = writeln!(out, "{} {} {}", d.code, pos(d.primary.span), d.title);
        if let Some(l) = &d.primary_label {
            let _ = writeln!(out, "    primary: {l}");
        }
        for l in &d.labels {
            let _ = writeln!(out, "    label {}: {}", pos(l.at.span), l.message);
        }
        if let Some(h) = &d.help {
            let _ = writeln!(out, "    help: {h}");
        }
    }
    out
}

struct Dumper {
    out: String,
}

impl Dumper {
    fn w(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn sp(&mut self) {
        self.out.push(' ');
    }

    fn ident(&mut self, i: &Ident) {
        self.w(&i.name);
    }

    fn strlit(&mut self, s: &StrLit) {
        let _ = write!(self.out, "{:?}", s.value);
    }

    fn dur(&mut self, d: &DurationLit) {
        let _ = write!(self.out, "{}s", d.seconds);
    }

    fn dur_arg(&mut self, d: &DurationArg) {
        match d {
            DurationArg::Lit(l) => self.dur(l),
            DurationArg::Name(n) => self.ident(n),
        }
    }

    fn time(&mut self, t: &TimeLit) {
        let _ = write!(self.out, "{:02}:{:02}", t.hour, t.minute);
    }

    fn opt<T>(&mut self, tag: &str, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        if let Some(v) = v {
            let _ = write!(self.out, " ({tag} ");
            f(self, v);
            self.w(")");
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Let(l) => {
                self.w("(let ");
                self.ident(&l.name);
                self.opt("type", &l.ty, |d, t| d.ty(t));
                self.sp();
                self.expr(&l.value);
                self.w(")");
            }
            Item::Event(e) => {
                self.w("(event ");
                self.ident(&e.name);
                self.sp();
                self.strlit(&e.wire);
                self.fields(&e.fields);
                self.w(")");
            }
            Item::Type(t) => {
                self.w("(type ");
                self.ident(&t.name);
                match &t.kind {
                    TypeDeclKind::Record(f) => self.fields(f),
                    TypeDeclKind::Enum(vs) => {
                        self.w(" (enum");
                        for v in vs {
                            self.sp();
                            self.strlit(v);
                        }
                        self.w(")");
                    }
                }
                self.w(")");
            }
            Item::Profile(p) => {
                self.w("(profile");
                self.fields(&p.fields);
                self.w(")");
            }
            Item::Segment(s) => {
                self.w("(segment ");
                self.ident(&s.name);
                self.sp();
                self.expr(&s.predicate);
                self.w(")");
            }
            Item::Message(m) => {
                self.w("(message ");
                self.ident(&m.name);
                self.w(" (params");
                for p in &m.params {
                    self.w(" (");
                    self.ident(&p.name);
                    self.sp();
                    self.ty(&p.ty);
                    self.opt("=", &p.default, |d, e| d.expr(e));
                    self.w(")");
                }
                self.w(")");
                for c in &m.content {
                    self.w("\n  (");
                    self.ident(&c.key);
                    self.sp();
                    match &c.value {
                        ContentValue::Expr(e) => self.expr(e),
                        ContentValue::Template(s) => {
                            self.w("(template ");
                            self.strlit(s);
                            self.w(")");
                        }
                    }
                    self.w(")");
                }
                self.w(")");
            }
            Item::Flow(f) => {
                self.w("(flow ");
                self.ident(&f.name);
                for it in &f.items {
                    self.w("\n  ");
                    match it {
                        FlowItem::Clause(c) => self.clause(c, 2),
                        FlowItem::Step(s) => self.step(s, 2),
                    }
                }
                self.w(")");
            }
            Item::Policy(p) => {
                self.w("(policy");
                for it in &p.items {
                    self.w("\n  ");
                    match &it.kind {
                        PolicyItemKind::Timezone(s) => {
                            self.w("(timezone ");
                            self.strlit(s);
                            self.w(")");
                        }
                        PolicyItemKind::QuietHours(q) => self.quiet(q),
                        PolicyItemKind::Cap(c) => self.cap(c),
                        PolicyItemKind::Currency(s) => {
                            self.w("(currency ");
                            self.strlit(s);
                            self.w(")");
                        }
                        PolicyItemKind::SuppressList(s) => {
                            self.w("(suppress-list ");
                            self.strlit(s);
                            self.w(")");
                        }
                    }
                }
                self.w(")");
            }
            Item::Test(t) => {
                self.w("(test ");
                self.strlit(&t.name);
                for s in &t.stmts {
                    self.w("\n  ");
                    self.test_stmt(s);
                }
                self.w(")");
            }
            Item::Error(s) => {
                let _ = write!(self.out, "(error-item {}..{})", s.start, s.end);
            }
        }
    }

    fn fields(&mut self, fields: &[FieldDecl]) {
        for f in fields {
            self.w(" (");
            self.ident(&f.name);
            self.sp();
            self.ty(&f.ty);
            self.opt("=", &f.default, |d, e| d.expr(e));
            self.w(")");
        }
    }

    fn ty(&mut self, t: &TypeExpr) {
        self.ident(&t.name);
        if !t.args.is_empty() {
            self.w("<");
            for (i, a) in t.args.iter().enumerate() {
                if i > 0 {
                    self.w(", ");
                }
                self.ty(a);
            }
            self.w(">");
        }
        if t.optional {
            self.w("?");
        }
    }

    fn filter(&mut self, f: &EventFilter) {
        self.ident(&f.event);
        self.opt("where", &f.predicate, |d, e| d.expr(e));
    }

    fn quiet(&mut self, q: &QuietHours) {
        self.w("(quiet-hours");
        self.opt("channel", &q.channel, |d, c| d.ident(c));
        self.sp();
        self.time(&q.from);
        self.sp();
        self.time(&q.to);
        self.w(")");
    }

    fn cap(&mut self, c: &Cap) {
        let _ = write!(self.out, "(cap {} {} per ", c.scope.name, c.count.value);
        self.dur(&c.per);
        self.opt("then", &c.then, |d, a| {
            d.w(match a {
                CapAction::Skip => "skip",
                CapAction::Defer => "defer",
            })
        });
        self.w(")");
    }

    fn clause(&mut self, c: &Clause, indent: usize) {
        match &c.kind {
            ClauseKind::Trigger(t) => {
                self.w("(trigger ");
                match t {
                    Trigger::Event(f) => {
                        self.w("(event ");
                        self.filter(f);
                        self.w(")");
                    }
                    Trigger::Schedule {
                        cadence,
                        at,
                        local,
                        segment,
                    } => {
                        match cadence {
                            Cadence::Once(d) => {
                                let _ = write!(self.out, "(once-on {}", d.days);
                            }
                            _ => self.w("(every "),
                        }
                        match cadence {
                            Cadence::Once(_) => {}
                            Cadence::Day(_) => self.w("day"),
                            Cadence::Weekday(d) => self.ident(d),
                            Cadence::Month(n) => {
                                let _ = write!(self.out, "month-on {}", n.value);
                            }
                        }
                        self.w(" at ");
                        self.time(at);
                        if *local {
                            self.w(" local");
                        }
                        self.opt("for", segment, |d, s| d.ident(s));
                        self.w(")");
                    }
                    Trigger::DateProperty {
                        offset,
                        before,
                        field,
                        yearly,
                        at,
                        grace,
                    } => {
                        match offset {
                            Some(o) => {
                                self.w(if *before { "(before " } else { "(after " });
                                self.dur(o);
                                self.w(" profile.");
                            }
                            None => self.w("(on profile."),
                        }
                        self.ident(field);
                        if yearly.is_some() {
                            self.w(" every-year");
                        }
                        self.opt("at", at, |d, t| d.time(t));
                        self.opt("grace", grace, |d, g| d.dur(g));
                        self.w(")");
                    }
                    Trigger::Entering(s) => {
                        self.w("(entering ");
                        self.ident(s);
                        self.w(")");
                    }
                }
                self.w(")");
            }
            ClauseKind::Entry(e) => match e {
                EntryRule::Once => self.w("(entry once)"),
                EntryRule::Always => self.w("(entry always)"),
                EntryRule::OncePer(d) => {
                    self.w("(entry once-per ");
                    self.dur(d);
                    self.w(")");
                }
            },
            ClauseKind::ExitOn(f) => {
                self.w("(exit-on ");
                self.filter(f);
                self.w(")");
            }
            ClauseKind::ExitIf(e) => {
                self.w("(exit-if-rule ");
                self.expr(e);
                self.w(")");
            }
            ClauseKind::Suppress(e) => {
                self.w("(suppress-if ");
                self.expr(e);
                self.w(")");
            }
            ClauseKind::QuietHours(q) => self.quiet(q),
            ClauseKind::Cap(c) => self.cap(c),
            ClauseKind::Goal(g) => {
                self.w("(goal ");
                self.filter(&g.filter);
                self.w(" within ");
                self.dur_arg(&g.within);
                self.w(")");
            }
            ClauseKind::Holdout(p) => {
                let _ = write!(self.out, "(holdout {}%)", p.value);
            }
            ClauseKind::Priority(n) => {
                let _ = write!(self.out, "(priority {})", n.value);
            }
            ClauseKind::OnExit(b) => {
                self.w("(on-exit");
                self.block(b, indent + 2);
                self.w(")");
            }
        }
    }

    fn block(&mut self, b: &Block, indent: usize) {
        for s in &b.steps {
            self.w("\n");
            self.w(&" ".repeat(indent));
            self.step(s, indent);
        }
    }

    fn step(&mut self, s: &Step, indent: usize) {
        if let Some(l) = &s.label {
            let _ = write!(self.out, "{}: ", l.name);
        }
        match &s.kind {
            StepKind::Wait(d) => {
                self.w("(wait ");
                self.dur_arg(d);
                self.w(")");
            }
            StepKind::WaitUntil(e) => {
                self.w("(wait-until ");
                self.expr(e);
                self.w(")");
            }
            StepKind::WaitFor(w) => {
                self.w("(wait-for");
                self.opt("let", &w.binding, |d, b| d.ident(b));
                for e in &w.events {
                    self.sp();
                    self.ident(e);
                }
                self.opt("where", &w.predicate, |d, e| d.expr(e));
                self.w(" within ");
                self.dur_arg(&w.within);
                self.w(")");
            }
            StepKind::Send(c) => {
                self.w("(send ");
                self.call(&c.callee, &c.args);
                self.w(")");
            }
            StepKind::If(i) => {
                self.w("(if");
                for (cond, b) in &i.branches {
                    self.w(" ");
                    self.expr(cond);
                    self.w(" (then");
                    self.block(b, indent + 2);
                    self.w(")");
                }
                if let Some(b) = &i.otherwise {
                    self.w(" (else");
                    self.block(b, indent + 2);
                    self.w(")");
                }
                self.w(")");
            }
            StepKind::Split(split) => {
                self.w("(split");
                if let Some(o) = &split.optimise {
                    self.w(" optimise");
                    if let Some(f) = &o.floor {
                        let _ = write!(self.out, " (floor {}%)", f.value);
                    }
                }
                for a in &split.arms {
                    match &a.percent {
                        Some(p) => {
                            let _ = write!(self.out, " ({}% {}", p.value, a.name.name);
                        }
                        None => {
                            let _ = write!(self.out, " ({}", a.name.name);
                        }
                    }
                    self.block(&a.body, indent + 2);
                    self.w(")");
                }
                self.w(")");
            }
            StepKind::SetProfile { field, value } => {
                let _ = write!(self.out, "(set profile.{} ", field.name);
                self.expr(value);
                self.w(")");
            }
            StepKind::Audience { op, name } => {
                self.w(match op {
                    AudienceOp::Add => "(audience-add ",
                    AudienceOp::Remove => "(audience-remove ",
                });
                self.strlit(name);
                self.w(")");
            }
            StepKind::Let { name, value } => {
                let _ = write!(self.out, "(let {} ", name.name);
                self.expr(value);
                self.w(")");
            }
            StepKind::Exit => self.w("(exit)"),
            StepKind::ExitIf(e) => {
                self.w("(exit-if ");
                self.expr(e);
                self.w(")");
            }
            StepKind::Error => {
                let _ = write!(self.out, "(error-step {}..{})", s.span.start, s.span.end);
            }
        }
    }

    fn call(&mut self, callee: &Ident, args: &[Arg]) {
        self.ident(callee);
        for a in args {
            self.sp();
            if let Some(n) = &a.name {
                let _ = write!(self.out, "{}:", n.name);
            }
            self.expr(&a.value);
        }
    }

    fn test_time(&mut self, t: &TestTime) {
        match t {
            TestTime::TimeOfDay(t) => self.time(t),
            TestTime::Instant(i) => {
                let _ = write!(self.out, "@{}", i.unix_seconds);
            }
            TestTime::Offset(d) => {
                self.w("+");
                self.dur(d);
            }
        }
    }

    fn props(&mut self, props: &[Prop]) {
        self.w(" {");
        for (i, p) in props.iter().enumerate() {
            if i > 0 {
                self.w(",");
            }
            let _ = write!(self.out, " {}: ", p.key.name);
            self.expr(&p.value);
        }
        self.w(" }");
    }

    fn test_stmt(&mut self, s: &TestStmt) {
        match &s.kind {
            TestStmtKind::Given { customer, props } => {
                self.w("(given ");
                self.strlit(customer);
                self.props(props);
                self.w(")");
            }
            TestStmtKind::At { at, call, arrives } => {
                self.w("(at ");
                self.test_time(at);
                self.sp();
                match call {
                    TestCall::Track {
                        anonymous,
                        customer,
                        event,
                        props,
                    } => {
                        self.w(if *anonymous {
                            "(track-anon "
                        } else {
                            "(track "
                        });
                        self.strlit(customer);
                        self.sp();
                        match event {
                            EventRef::Wire(s) => self.strlit(s),
                            EventRef::Name(n) => self.ident(n),
                        }
                        self.props(props);
                    }
                    TestCall::Identify {
                        anonymous,
                        customer,
                        props,
                    } => {
                        self.w(if *anonymous {
                            "(identify-anon "
                        } else {
                            "(identify "
                        });
                        self.strlit(customer);
                        self.props(props);
                    }
                    TestCall::Alias { from, to } => {
                        self.w("(alias ");
                        self.strlit(from);
                        self.sp();
                        self.strlit(to);
                    }
                    TestCall::Page {
                        anonymous,
                        customer,
                        name,
                        props,
                    } => {
                        self.w(if *anonymous { "(page-anon " } else { "(page " });
                        self.strlit(customer);
                        self.opt("name", name, |d, n| d.strlit(n));
                        self.props(props);
                    }
                }
                self.w(")");
                if let Some(a) = arrives {
                    self.w(" (arrives ");
                    self.test_time(a);
                    self.w(")");
                }
                self.w(")");
            }
            TestStmtKind::Run(d) => {
                self.w("(run ");
                self.dur(d);
                self.w(")");
            }
            TestStmtKind::Expect(e) => {
                self.w(if e.negated { "(expect-no " } else { "(expect " });
                match &e.kind {
                    ExpectKind::Send {
                        message,
                        to,
                        predicate,
                        at,
                        window,
                    } => {
                        self.w("send ");
                        self.ident(message);
                        self.opt("to", to, |d, t| d.strlit(t));
                        self.opt("where", predicate, |d, p| d.expr(p));
                        self.opt("at", at, |d, t| d.test_time(t));
                        self.opt("between", window, |d, (a, b)| {
                            d.test_time(a);
                            d.w(" and ");
                            d.test_time(b);
                        });
                    }
                    ExpectKind::Exit { flow, reason } => {
                        self.w("exit ");
                        self.ident(flow);
                        self.opt("reason", reason, |d, r| d.strlit(r));
                    }
                    ExpectKind::Audience { name, customer } => {
                        self.w("audience ");
                        self.strlit(name);
                        self.w(" has ");
                        self.strlit(customer);
                    }
                    ExpectKind::Profile {
                        customer,
                        field,
                        value,
                    } => {
                        self.w("profile ");
                        self.strlit(customer);
                        let _ = write!(self.out, ".{} == ", field.name);
                        self.expr(value);
                    }
                    ExpectKind::Conversion { flow } => {
                        self.w("conversion ");
                        self.ident(flow);
                    }
                    ExpectKind::Decision {
                        message,
                        outcome,
                        reason,
                    } => {
                        self.w("decision ");
                        self.ident(message);
                        self.sp();
                        self.ident(outcome);
                        self.opt("reason", reason, |d, r| d.strlit(r));
                    }
                }
                self.w(")");
            }
            TestStmtKind::Error => {
                let _ = write!(self.out, "(error-stmt {}..{})", s.span.start, s.span.end);
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            ExprKind::Decimal(d) => {
                let _ = write!(self.out, "{d}");
            }
            ExprKind::Money(d) => {
                let _ = write!(self.out, "${d}");
            }
            ExprKind::Percent(d) => {
                let _ = write!(self.out, "{d}%");
            }
            ExprKind::Duration(s) => {
                let _ = write!(self.out, "{s}s");
            }
            ExprKind::Instant(s) => {
                let _ = write!(self.out, "@{s}");
            }
            ExprKind::Date(d) => {
                let _ = write!(self.out, "(date {d})");
            }
            ExprKind::TimeOfDay(m) => {
                let _ = write!(self.out, "(tod {m})");
            }
            ExprKind::Str(parts) => {
                self.w("(str");
                for p in parts {
                    self.sp();
                    match p {
                        StrPart::Text(t, _) => {
                            let _ = write!(self.out, "{t:?}");
                        }
                        StrPart::Interp(x) => {
                            self.w("{");
                            self.expr(x);
                            self.w("}");
                        }
                    }
                }
                self.w(")");
            }
            ExprKind::Bool(b) => {
                let _ = write!(self.out, "{b}");
            }
            ExprKind::None => self.w("none"),
            ExprKind::Name(n) => self.w(n),
            ExprKind::Field {
                base,
                field,
                optional,
            } => {
                self.w(if *optional { "(?. " } else { "(. " });
                self.expr(base);
                self.sp();
                self.ident(field);
                self.w(")");
            }
            ExprKind::Call { callee, args } => {
                self.w("(call ");
                self.call(callee, args);
                self.w(")");
            }
            ExprKind::Unary { op, expr } => {
                self.w(match op {
                    UnaryOp::Neg => "(neg ",
                    UnaryOp::Not => "(not ",
                });
                self.expr(expr);
                self.w(")");
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let _ = write!(self.out, "({} ", op.as_str());
                self.expr(lhs);
                self.sp();
                self.expr(rhs);
                self.w(")");
            }
            ExprKind::Lambda { params, body } => {
                self.w("(fn (");
                for (i, p) in params.iter().enumerate() {
                    if i > 0 {
                        self.sp();
                    }
                    self.ident(p);
                }
                self.w(") ");
                self.expr(body);
                self.w(")");
            }
            ExprKind::List(items) => {
                self.w("[");
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        self.sp();
                    }
                    self.expr(x);
                }
                self.w("]");
            }
            ExprKind::Record(fields) => {
                self.w("(record");
                self.props(fields);
                self.w(")");
            }
            ExprKind::Error => {
                let _ = write!(self.out, "(error-expr {}..{})", e.span.start, e.span.end);
            }
        }
    }
}

/// Asserts that every span in the tree lies within `src` and is not reversed.
pub fn assert_spans_within(file: &File, src: &str) {
    let value = serde_json::to_value(file).expect("the tree serializes");
    let mut stack = vec![&value];
    let mut seen = 0usize;
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let (Some(s), Some(e), 2) = (
                    map.get("start").and_then(|s| s.as_u64()),
                    map.get("end").and_then(|e| e.as_u64()),
                    map.len(),
                ) {
                    seen += 1;
                    assert!(s <= e, "reversed span {s}..{e}");
                    assert!(
                        e as usize <= src.len(),
                        "span {s}..{e} beyond {}",
                        src.len()
                    );
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(seen > 0 || file.items.is_empty());
}
