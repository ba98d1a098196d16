//! The layout engine: statements, blocks, blank lines and comments.
//!
//! Output is built line by line. A cursor into the source (the end of the
//! last node or comment printed) lets blank lines and comment positions be
//! judged from the source text between two printed things.

use nudge_diagnostics::FileId;
use nudge_syntax::ast::{
    AudienceOp, Block, Cadence, CapAction, ClauseKind, ContentValue, EntryRule, EventRef,
    ExpectKind, FieldDecl, File, FlowItem, Item, Param, PolicyItemKind, Prop, QuietHours, Step,
    StepKind, TestCall, TestStmt, TestStmtKind, Trigger, TypeDeclKind,
};
use nudge_syntax::ast::{Cap, EventFilter};
use nudge_syntax::{Comment, Parsed, Span};

use crate::expr::{above_comparison, args, expr, type_expr};
use crate::source::Source;

/// The widest line a props block may sit on before it is split, indentation included.
const MAX_WIDTH: usize = 100;

/// Formats a file that parsed without errors.
pub(crate) fn format_parsed(file: FileId, text: &str, parsed: &Parsed) -> String {
    let mut p = Printer {
        src: Source::new(file, text),
        comments: &parsed.comments,
        next: 0,
        cursor: 0,
        lines: Vec::new(),
        indent: 0,
        fresh: true,
    };
    p.file(&parsed.file);
    if p.lines.is_empty() {
        return String::new();
    }
    let mut out = p.lines.join("\n");
    out.push('\n');
    out
}

/// Output under construction plus the position reached in the source and its comments.
struct Printer<'s> {
    src: Source<'s>,
    /// Every comment of the file, in source order.
    comments: &'s [Comment],
    /// The first comment not printed yet.
    next: usize,
    /// Source offset just past the last printed node or comment.
    cursor: usize,
    /// Output lines without line breaks, indentation included.
    lines: Vec<String>,
    /// Current depth of block nesting.
    indent: usize,
    /// Nothing printed yet in the current block (or file): no blank line may come.
    fresh: bool,
}

/// Where the first line of a block goes.
#[derive(Clone, Copy)]
enum Place {
    /// On a line of its own, after a blank line when asked.
    Line { blank: bool },
    /// At the end of the previous line, as in `} else {`.
    Join,
}

/// What decides whether two neighbouring top-level items may stay together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemClass {
    /// `let NAME = ...`
    Let,
    /// `segment NAME = ...`
    Segment,
    /// `type NAME = "a" | "b"`
    EnumType,
    /// Anything with a block, always set apart by a blank line.
    Other,
}

/// The class of an item, for the blank line rule between top-level items.
fn class(item: &Item) -> ItemClass {
    match item {
        Item::Let(_) => ItemClass::Let,
        Item::Segment(_) => ItemClass::Segment,
        Item::Type(t) if matches!(t.kind, TypeDeclKind::Enum(_)) => ItemClass::EnumType,
        _ => ItemClass::Other,
    }
}

/// The span's start as an index into the source.
fn start(span: Span) -> usize {
    span.start as usize
}

/// The span's end as an index into the source.
fn end(span: Span) -> usize {
    span.end as usize
}

impl<'s> Printer<'s> {
    // ----- low-level output -------------------------------------------------

    /// Starts a line at the current indentation, after a blank line when `blank` allows one.
    fn push(&mut self, text: &str, blank: bool) {
        if blank && !self.fresh && !self.lines.is_empty() {
            self.lines.push(String::new());
        }
        let mut line = "  ".repeat(self.indent);
        line.push_str(text);
        self.lines.push(line);
        self.fresh = false;
    }

    /// Appends to the last line (`} else {`), or starts a line when there is none.
    fn join(&mut self, text: &str) {
        match self.lines.last_mut() {
            Some(last) => {
                last.push(' ');
                last.push_str(text);
            }
            None => self.push(text, false),
        }
        self.fresh = false;
    }

    /// Records that the source up to `to` has been printed.
    fn advance(&mut self, to: usize) {
        self.cursor = self.cursor.max(to);
    }

    /// The next comment still to print.
    fn pending(&self) -> Option<&'s Comment> {
        self.comments.get(self.next)
    }

    /// Whether the source has a blank line between the cursor and `upto`.
    fn gap_blank(&self, upto: usize) -> bool {
        if self.fresh || self.cursor >= upto {
            return false;
        }
        self.src
            .text
            .get(self.cursor..upto)
            .is_some_and(Source::has_blank_line)
    }

    /// Prints, each on its own line, the comments that start before `limit`.
    /// Blank lines before them follow the source up to `node_start`; `force`
    /// asks for a blank line before the first line printed. Returns whether
    /// that request is still open (no comment was printed).
    fn leading(&mut self, node_start: usize, limit: usize, mut force: bool) -> bool {
        while let Some(c) = self.pending() {
            if start(c.span) >= limit {
                break;
            }
            let blank = force || self.gap_blank(start(c.span).min(node_start));
            self.push(&c.text, blank);
            self.advance(end(c.span));
            self.next += 1;
            force = false;
        }
        force
    }

    /// Prints the comments before a statement and says whether a blank line precedes it.
    fn open_stmt(&mut self, span: Span, limit: usize, force: bool) -> bool {
        let force = self.leading(start(span), limit, force);
        force || self.gap_blank(start(span))
    }

    /// Moves the cursor past `at` and keeps a comment that follows on the same line there.
    fn trailing(&mut self, at: usize) {
        self.advance(at);
        let Some(c) = self.pending() else { return };
        if start(c.span) < at {
            return;
        }
        let same_line = self
            .src
            .text
            .get(at..start(c.span))
            .is_some_and(|gap| gap.chars().all(|ch| matches!(ch, ' ' | '\t' | '\r' | ',')));
        if same_line && let Some(last) = self.lines.last_mut() {
            last.push_str("  ");
            last.push_str(&c.text);
            self.advance(end(c.span));
            self.next += 1;
        }
    }

    /// Prints a statement that fits the given lines; comments inside it go before it.
    fn leaf(&mut self, span: Span, force: bool, lines: Vec<String>) {
        let blank = self.open_stmt(span, end(span), force);
        let mut iter = lines.into_iter();
        if let Some(first) = iter.next() {
            self.push(&first, blank);
        }
        for line in iter {
            self.push(&line, false);
        }
        self.trailing(end(span));
    }

    /// Prints `header{`, the body, and `}`. The header ends with a space when not empty.
    fn braced(
        &mut self,
        header: &str,
        place: Place,
        (open, close): (usize, usize),
        empty: bool,
        body: impl FnOnce(&mut Self),
    ) {
        let comments_inside = self.pending().is_some_and(|c| start(c.span) < close);
        let line = if empty && !comments_inside {
            format!("{header}{{}}")
        } else {
            format!("{header}{{")
        };
        match place {
            Place::Line { blank } => self.push(&line, blank),
            Place::Join => self.join(&line),
        }
        if empty && !comments_inside {
            self.advance(close + 1);
            return;
        }
        self.advance(open + 1);
        self.trailing(open + 1);
        self.indent += 1;
        self.fresh = true;
        body(self);
        self.leading(close, close, false);
        self.indent -= 1;
        self.push("}", false);
        self.advance(close + 1);
    }

    /// Prints a braced declaration or statement whose `{` is the first at or after `from`.
    fn braced_stmt(
        &mut self,
        span: Span,
        from: usize,
        force: bool,
        header: &str,
        empty: bool,
        body: impl FnOnce(&mut Self),
    ) {
        let open = self.src.lbrace_after(from).unwrap_or(start(span));
        let close = self
            .src
            .closing_brace(span)
            .unwrap_or(end(span).saturating_sub(1));
        let blank = self.open_stmt(span, open.min(close), force);
        self.braced(header, Place::Line { blank }, (open, close), empty, body);
        self.trailing(end(span));
    }

    /// The offsets of a block's `{` and `}`.
    fn block_bounds(&self, block: &Block) -> (usize, usize) {
        let open = start(block.span);
        let close = self
            .src
            .closing_brace(block.span)
            .unwrap_or(end(block.span).saturating_sub(1));
        (open, close)
    }

    // ----- items -------------------------------------------------------------

    /// Prints every item, then the comments after the last one.
    fn file(&mut self, file: &File) {
        let mut prev: Option<ItemClass> = None;
        let mut prev_single = false;
        for item in &file.items {
            let cls = class(item);
            let single = cls != ItemClass::Other;
            let force = match prev {
                None => false,
                Some(p) => !(p == cls && prev_single && single),
            };
            self.item(item, force);
            prev = Some(cls);
            prev_single = single;
        }
        self.leading(usize::MAX, usize::MAX, false);
    }

    /// Prints one top-level item; `force` asks for a blank line before it.
    fn item(&mut self, item: &Item, force: bool) {
        match item {
            Item::Let(d) => {
                let ty =
                    d.ty.as_ref()
                        .map(|t| format!(": {}", type_expr(t)))
                        .unwrap_or_default();
                let line = format!("let {}{ty} = {}", d.name.name, expr(&self.src, &d.value));
                self.leaf(d.span, force, vec![line]);
            }
            Item::Segment(d) => {
                let line = format!(
                    "segment {} = {}",
                    d.name.name,
                    expr(&self.src, &d.predicate)
                );
                self.leaf(d.span, force, vec![line]);
            }
            Item::Type(d) => match &d.kind {
                TypeDeclKind::Enum(values) => {
                    let values: Vec<String> = values.iter().map(|v| self.src.str_lit(v)).collect();
                    let line = format!("type {} = {}", d.name.name, values.join(" | "));
                    self.leaf(d.span, force, vec![line]);
                }
                TypeDeclKind::Record(fields) => {
                    let header = format!("type {} ", d.name.name);
                    self.braced_stmt(
                        d.span,
                        end(d.name.span),
                        force,
                        &header,
                        fields.is_empty(),
                        |p| p.fields(fields),
                    );
                }
            },
            Item::Event(d) => {
                let header = format!("event {} {} ", d.name.name, self.src.str_lit(&d.wire));
                self.braced_stmt(
                    d.span,
                    end(d.wire.span),
                    force,
                    &header,
                    d.fields.is_empty(),
                    |p| p.fields(&d.fields),
                );
            }
            Item::Profile(d) => {
                self.braced_stmt(
                    d.span,
                    start(d.span),
                    force,
                    "profile ",
                    d.fields.is_empty(),
                    |p| p.fields(&d.fields),
                );
            }
            Item::Message(d) => {
                let params: Vec<String> = d.params.iter().map(|p| self.param(p)).collect();
                let header = format!("message {}({}) ", d.name.name, params.join(", "));
                let from = d.params.last().map_or(end(d.name.span), |p| end(p.span));
                self.braced_stmt(d.span, from, force, &header, d.content.is_empty(), |p| {
                    for c in &d.content {
                        let value = match &c.value {
                            ContentValue::Expr(e) => expr(&p.src, e),
                            ContentValue::Template(s) => format!("template {}", p.src.str_lit(s)),
                        };
                        p.leaf(c.span, false, vec![format!("{} {value}", c.key.name)]);
                    }
                });
            }
            Item::Flow(d) => {
                let header = format!("flow {} ", d.name.name);
                self.braced_stmt(
                    d.span,
                    end(d.name.span),
                    force,
                    &header,
                    d.items.is_empty(),
                    |p| {
                        for fi in &d.items {
                            match fi {
                                FlowItem::Clause(c) => p.clause(c.span, &c.kind),
                                FlowItem::Step(s) => p.step(s),
                            }
                        }
                    },
                );
            }
            Item::Policy(d) => {
                self.braced_stmt(
                    d.span,
                    start(d.span),
                    force,
                    "policy ",
                    d.items.is_empty(),
                    |p| {
                        for rule in &d.items {
                            let line = match &rule.kind {
                                PolicyItemKind::Timezone(s) => {
                                    format!("timezone {}", p.src.str_lit(s))
                                }
                                PolicyItemKind::QuietHours(q) => p.quiet_hours(q),
                                PolicyItemKind::Cap(c) => p.cap(c),
                                PolicyItemKind::SuppressList(s) => {
                                    format!("suppress list {}", p.src.str_lit(s))
                                }
                                PolicyItemKind::Currency(s) => {
                                    format!("currency {}", p.src.str_lit(s))
                                }
                            };
                            p.leaf(rule.span, false, vec![line]);
                        }
                    },
                );
            }
            Item::Test(d) => {
                let header = format!("test {} ", self.src.str_lit(&d.name));
                self.braced_stmt(
                    d.span,
                    end(d.name.span),
                    force,
                    &header,
                    d.stmts.is_empty(),
                    |p| {
                        for s in &d.stmts {
                            p.test_stmt(s);
                        }
                    },
                );
            }
            Item::Error(span) => {
                let text = self.verbatim(*span);
                self.leaf(*span, force, text);
            }
        }
    }

    /// The source text of a node the tree could not describe, line by line.
    fn verbatim(&self, span: Span) -> Vec<String> {
        self.src
            .slice(span)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Prints field declarations, one per line.
    fn fields(&mut self, fields: &[FieldDecl]) {
        for f in fields {
            let default = f
                .default
                .as_ref()
                .map(|d| format!(" = {}", expr(&self.src, d)))
                .unwrap_or_default();
            let line = format!("{}: {}{default}", f.name.name, type_expr(&f.ty));
            self.leaf(f.span, false, vec![line]);
        }
    }

    /// A message parameter: `name: type = default`.
    fn param(&self, p: &Param) -> String {
        let default = p
            .default
            .as_ref()
            .map(|d| format!(" = {}", expr(&self.src, d)))
            .unwrap_or_default();
        format!("{}: {}{default}", p.name.name, type_expr(&p.ty))
    }

    // ----- flows ---------------------------------------------------------------

    /// `EVENT` or `EVENT where PRED`.
    fn filter(&self, f: &EventFilter) -> String {
        match &f.predicate {
            Some(p) => format!("{} where {}", f.event.name, expr(&self.src, p)),
            None => f.event.name.clone(),
        }
    }

    /// `quiet hours CHANNEL? FROM to TO`.
    fn quiet_hours(&self, q: &QuietHours) -> String {
        let channel = q
            .channel
            .as_ref()
            .map(|c| format!("{} ", c.name))
            .unwrap_or_default();
        format!(
            "quiet hours {channel}{} to {}",
            self.src.time(&q.from),
            self.src.time(&q.to)
        )
    }

    /// `cap SCOPE N per D (then ...)?`.
    fn cap(&self, c: &Cap) -> String {
        let then = match c.then {
            Some(CapAction::Skip) => " then skip",
            Some(CapAction::Defer) => " then defer",
            None => "",
        };
        format!(
            "cap {} {} per {}{then}",
            c.scope.name,
            self.src.int(&c.count),
            self.src.dur(&c.per)
        )
    }

    /// Prints a flow header clause.
    fn clause(&mut self, span: Span, kind: &ClauseKind) {
        let line = match kind {
            ClauseKind::Trigger(t) => format!("trigger {}", self.trigger(t)),
            ClauseKind::Entry(EntryRule::Once) => "entry once".to_string(),
            ClauseKind::Entry(EntryRule::OncePer(d)) => {
                format!("entry once per {}", self.src.dur(d))
            }
            ClauseKind::Entry(EntryRule::Always) => "entry always".to_string(),
            ClauseKind::ExitOn(f) => format!("exit on {}", self.filter(f)),
            ClauseKind::ExitIf(e) => format!("exit if {}", expr(&self.src, e)),
            ClauseKind::Suppress(e) => format!("suppress if {}", expr(&self.src, e)),
            ClauseKind::QuietHours(q) => self.quiet_hours(q),
            ClauseKind::Cap(c) => self.cap(c),
            ClauseKind::Goal(g) => format!(
                "goal {} within {}",
                self.filter(&g.filter),
                self.src.dur_arg(&g.within)
            ),
            ClauseKind::Holdout(p) => format!("holdout {}", self.src.percent(p)),
            ClauseKind::Priority(n) => format!("priority {}", self.src.int(n)),
            ClauseKind::OnExit(block) => {
                let (open, close) = self.block_bounds(block);
                let blank = self.open_stmt(span, open, false);
                self.braced(
                    "on exit ",
                    Place::Line { blank },
                    (open, close),
                    block.steps.is_empty(),
                    |p| p.steps(&block.steps),
                );
                self.trailing(end(span));
                return;
            }
        };
        self.leaf(span, false, vec![line]);
    }

    /// What follows `trigger`.
    fn trigger(&self, t: &Trigger) -> String {
        match t {
            Trigger::Event(f) => self.filter(f),
            Trigger::Schedule {
                cadence,
                at,
                local,
                segment,
            } => {
                let cadence = match cadence {
                    Cadence::Day(_) => "every day".to_string(),
                    Cadence::Weekday(d) => format!("every {}", d.name),
                    Cadence::Month(n) => format!("every month on {}", self.src.int(n)),
                    Cadence::Once(d) => format!("once on {}", self.src.date(d)),
                };
                let local = if *local { " local" } else { "" };
                let segment = segment
                    .as_ref()
                    .map(|s| format!(" for {}", s.name))
                    .unwrap_or_default();
                format!("{cadence} at {}{local}{segment}", self.src.time(at))
            }
            Trigger::DateProperty {
                offset,
                before,
                field,
                yearly,
                at,
                grace,
            } => {
                let mut s = match offset {
                    Some(o) => {
                        let dir = if *before { "before" } else { "after" };
                        format!("{} {dir} profile.{}", self.src.dur(o), field.name)
                    }
                    None => format!("on profile.{}", field.name),
                };
                if yearly.is_some() {
                    s.push_str(" every year");
                }
                if let Some(t) = at {
                    s.push_str(&format!(" at {}", self.src.time(t)));
                }
                if let Some(g) = grace {
                    s.push_str(&format!(" grace {}", self.src.dur(g)));
                }
                s
            }
            Trigger::Entering(s) => format!("entering {}", s.name),
        }
    }

    /// Prints the steps of a block.
    fn steps(&mut self, steps: &[Step]) {
        for s in steps {
            self.step(s);
        }
    }

    /// Prints a step with its label.
    fn step(&mut self, step: &Step) {
        let label = step
            .label
            .as_ref()
            .map(|l| format!("{}: ", l.name))
            .unwrap_or_default();
        let body = match &step.kind {
            StepKind::Wait(d) => format!("wait {}", self.src.dur_arg(d)),
            StepKind::WaitUntil(e) => format!("wait until {}", expr(&self.src, e)),
            StepKind::WaitFor(w) => {
                let binding = w
                    .binding
                    .as_ref()
                    .map(|b| format!("let {} = ", b.name))
                    .unwrap_or_default();
                let events: Vec<&str> = w.events.iter().map(|e| e.name.as_str()).collect();
                let predicate = w
                    .predicate
                    .as_ref()
                    .map(|p| format!(" where {}", expr(&self.src, p)))
                    .unwrap_or_default();
                format!(
                    "{binding}wait for {}{predicate} within {}",
                    events.join(" or "),
                    self.src.dur_arg(&w.within)
                )
            }
            StepKind::Send(call) => {
                format!("send {}({})", call.callee.name, args(&self.src, &call.args))
            }
            StepKind::SetProfile { field, value } => {
                format!("set profile.{} = {}", field.name, expr(&self.src, value))
            }
            StepKind::Audience { op, name } => {
                let op = match op {
                    AudienceOp::Add => "add",
                    AudienceOp::Remove => "remove",
                };
                format!("audience {op} {}", self.src.str_lit(name))
            }
            StepKind::Let { name, value } => {
                format!("let {} = {}", name.name, expr(&self.src, value))
            }
            StepKind::Exit => "exit".to_string(),
            StepKind::ExitIf(e) => format!("exit if {}", expr(&self.src, e)),
            StepKind::If(branches) if !branches.branches.is_empty() => {
                self.if_step(step.span, &label, branches);
                return;
            }
            StepKind::Split(split) => {
                self.split_step(step, &label, split);
                return;
            }
            StepKind::If(_) | StepKind::Error => {
                let text = self.verbatim(step.span);
                self.leaf(step.span, false, text);
                return;
            }
        };
        self.leaf(step.span, false, vec![format!("{label}{body}")]);
    }

    /// Prints an `if` chain, joining `} else {` on one line.
    fn if_step(&mut self, span: Span, label: &str, branch: &nudge_syntax::ast::If) {
        for (i, (cond, block)) in branch.branches.iter().enumerate() {
            let (open, close) = self.block_bounds(block);
            let cond = expr(&self.src, cond);
            let empty = block.steps.is_empty();
            if i == 0 {
                let blank = self.open_stmt(span, open, false);
                let header = format!("{label}if {cond} ");
                self.braced(&header, Place::Line { blank }, (open, close), empty, |p| {
                    p.steps(&block.steps)
                });
            } else {
                let header = format!("else if {cond} ");
                self.braced(&header, Place::Join, (open, close), empty, |p| {
                    p.steps(&block.steps)
                });
            }
        }
        if let Some(block) = &branch.otherwise {
            let (open, close) = self.block_bounds(block);
            self.braced(
                "else ",
                Place::Join,
                (open, close),
                block.steps.is_empty(),
                |p| p.steps(&block.steps),
            );
        }
        self.trailing(end(span));
    }

    /// Prints a `split` with one block per arm.
    fn split_step(&mut self, step: &Step, label: &str, split: &nudge_syntax::ast::Split) {
        let arms = &split.arms;
        let from = step
            .label
            .as_ref()
            .map_or(start(step.span), |l| end(l.span));
        let how = match &split.optimise {
            None => String::new(),
            Some(o) => match &o.floor {
                None => "optimise ".to_string(),
                Some(f) => format!("optimise floor {} ", self.src.percent(f)),
            },
        };
        let header = format!("{label}split {how}");
        self.braced_stmt(step.span, from, false, &header, arms.is_empty(), |p| {
            for arm in arms {
                let (open, close) = p.block_bounds(&arm.body);
                let blank = p.open_stmt(arm.span, open, false);
                let header = match &arm.percent {
                    Some(pc) => format!("{} {} ", p.src.percent(pc), arm.name.name),
                    None => format!("{} ", arm.name.name),
                };
                p.braced(
                    &header,
                    Place::Line { blank },
                    (open, close),
                    arm.body.steps.is_empty(),
                    |p| p.steps(&arm.body.steps),
                );
                p.trailing(end(arm.span));
            }
        });
    }

    // ----- tests ---------------------------------------------------------------

    /// Appends a props block to `head`, on one line when it fits, else one prop per line.
    fn props(&self, head: String, props: &[Prop], required: bool) -> Vec<String> {
        if props.is_empty() {
            return vec![if required {
                format!("{head} {{}}")
            } else {
                head
            }];
        }
        let items: Vec<String> = props
            .iter()
            .map(|p| format!("{}: {}", p.key.name, expr(&self.src, &p.value)))
            .collect();
        let one = format!("{head} {{ {} }}", items.join(", "));
        if self.indent * 2 + one.chars().count() <= MAX_WIDTH {
            return vec![one];
        }
        let mut lines = vec![format!("{head} {{")];
        lines.extend(items.into_iter().map(|i| format!("  {i}")));
        lines.push("}".to_string());
        lines
    }

    /// Prints a test statement.
    fn test_stmt(&mut self, s: &TestStmt) {
        let src = &self.src;
        let anon = |a: bool| if a { "anonymous " } else { "" };
        let lines = match &s.kind {
            TestStmtKind::Given { customer, props } => self.props(
                format!("given profile {}", src.str_lit(customer)),
                props,
                true,
            ),
            TestStmtKind::At { at, call, arrives } => {
                let at = format!("at {}", src.test_time(at));
                let mut lines = match call {
                    TestCall::Track {
                        anonymous,
                        customer,
                        event,
                        props,
                    } => {
                        let event = match event {
                            EventRef::Wire(w) => src.str_lit(w),
                            EventRef::Name(n) => n.name.clone(),
                        };
                        let head = format!(
                            "{at} track {}{} {event}",
                            anon(*anonymous),
                            src.str_lit(customer)
                        );
                        self.props(head, props, false)
                    }
                    TestCall::Identify {
                        anonymous,
                        customer,
                        props,
                    } => {
                        let head = format!(
                            "{at} identify {}{}",
                            anon(*anonymous),
                            src.str_lit(customer)
                        );
                        self.props(head, props, true)
                    }
                    TestCall::Alias { from, to } => vec![format!(
                        "{at} alias {} to {}",
                        src.str_lit(from),
                        src.str_lit(to)
                    )],
                    TestCall::Page {
                        anonymous,
                        customer,
                        name,
                        props,
                    } => {
                        let name = name
                            .as_ref()
                            .map(|n| format!(" {}", src.str_lit(n)))
                            .unwrap_or_default();
                        let head = format!(
                            "{at} page {}{}{name}",
                            anon(*anonymous),
                            src.str_lit(customer)
                        );
                        self.props(head, props, false)
                    }
                };
                if let (Some(arrives), Some(last)) = (arrives, lines.last_mut()) {
                    last.push_str(" arrives ");
                    last.push_str(&src.test_time(arrives));
                }
                lines
            }
            TestStmtKind::Run(d) => vec![format!("run {}", src.dur(d))],
            TestStmtKind::Expect(e) => {
                let no = if e.negated { "no " } else { "" };
                let reason = |r: &Option<nudge_syntax::ast::StrLit>| {
                    r.as_ref()
                        .map(|r| format!(" reason {}", src.str_lit(r)))
                        .unwrap_or_default()
                };
                let body = match &e.kind {
                    ExpectKind::Send {
                        message,
                        to,
                        predicate,
                        at,
                        window,
                    } => {
                        let to = to
                            .as_ref()
                            .map(|t| format!(" to {}", src.str_lit(t)))
                            .unwrap_or_default();
                        let predicate = predicate
                            .as_ref()
                            .map(|p| format!(" where {}", expr(src, p)))
                            .unwrap_or_default();
                        let at = at
                            .as_ref()
                            .map(|t| format!(" at {}", src.test_time(t)))
                            .unwrap_or_default();
                        let window = window
                            .as_ref()
                            .map(|(a, b)| {
                                format!(" between {} and {}", src.test_time(a), src.test_time(b))
                            })
                            .unwrap_or_default();
                        format!("send {}{to}{predicate}{at}{window}", message.name)
                    }
                    ExpectKind::Exit { flow, reason: r } => {
                        format!("exit {}{}", flow.name, reason(r))
                    }
                    ExpectKind::Audience { name, customer } => format!(
                        "audience {} has {}",
                        src.str_lit(name),
                        src.str_lit(customer)
                    ),
                    ExpectKind::Profile {
                        customer,
                        field,
                        value,
                    } => format!(
                        "profile {}.{} == {}",
                        src.str_lit(customer),
                        field.name,
                        above_comparison(src, value)
                    ),
                    ExpectKind::Conversion { flow } => format!("conversion {}", flow.name),
                    ExpectKind::Decision {
                        message,
                        outcome,
                        reason: r,
                    } => format!("decision {} {}{}", message.name, outcome.name, reason(r)),
                };
                vec![format!("expect {no}{body}")]
            }
            TestStmtKind::Error => self.verbatim(s.span),
        };
        self.leaf(s.span, false, lines);
    }
}
