//! Flows: clauses, triggers, steps, sends and the flow-level lints.

use std::collections::HashMap;

use nudge_diagnostics::{Diagnostic, Edit, FileSpan, Span, codes};
use nudge_syntax::ast::{
    self, Block, Cadence, Call, ClauseKind, EntryRule, FlowItem, Item, PolicyItemKind, Step,
    StepKind, Trigger,
};
use rust_decimal::Decimal;

use super::expr::facts;
use super::{Checker, Ctx, TriggerCtx};
use crate::analysis::SymbolKind;
use crate::types::{FieldDef, RecordDef, RecordKind, Ty};

/// Events that start an abandonment flow (W0001).
const ABANDONMENT_EVENTS: &[&str] = &[
    "product_added",
    "checkout_started",
    "cart_viewed",
    "product_viewed",
    "product_list_viewed",
];

const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The floor of a split that optimises and writes none, in percent.
pub(crate) const DEFAULT_FLOOR: u32 = 5;

/// The places of the `optimise` of every split that optimises in `steps`.
fn optimising_splits<'s>(steps: impl IntoIterator<Item = &'s ast::Step>, out: &mut Vec<Span>) {
    for s in steps {
        match &s.kind {
            StepKind::Split(split) => {
                if let Some(o) = &split.optimise {
                    out.push(o.span);
                }
                for a in &split.arms {
                    optimising_splits(&a.body.steps, out);
                }
            }
            StepKind::If(i) => {
                for (_, b) in &i.branches {
                    optimising_splits(&b.steps, out);
                }
                if let Some(b) = &i.otherwise {
                    optimising_splits(&b.steps, out);
                }
            }
            _ => {}
        }
    }
}

/// Whether every path through a block ends with `exit`.
pub(crate) fn always_exits(block: &Block) -> bool {
    match block.steps.last().map(|s| &s.kind) {
        Some(StepKind::Exit) => true,
        Some(StepKind::If(i)) => {
            i.otherwise.as_ref().is_some_and(always_exits)
                && i.branches.iter().all(|(_, b)| always_exits(b))
        }
        Some(StepKind::Split(split)) => {
            !split.arms.is_empty() && split.arms.iter().all(|a| always_exits(&a.body))
        }
        _ => false,
    }
}

/// A duration in the language's own notation (`1d 2h`).
pub(crate) fn fmt_duration(mut secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            parts.push(format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    parts.join(" ")
}

impl<'a> Checker<'a> {
    pub(crate) fn check_flows(&mut self) {
        let files = self.files;
        for (_, parsed) in files {
            for item in &parsed.file.items {
                if let Item::Policy(p) = item {
                    for it in &p.items {
                        if let PolicyItemKind::QuietHours(q) = &it.kind {
                            self.policy_quiet
                                .push(q.channel.as_ref().map(|c| c.name.clone()));
                        }
                    }
                }
            }
        }
        for idx in 0..self.flows.len() {
            self.check_flow(idx);
        }
    }

    fn check_flow(&mut self, idx: usize) {
        let decl = self.flows[idx].decl;
        let file = self.flows[idx].file;
        self.file = file;
        self.flow_sends.clear();

        let mut trigger: Option<&'a ast::Clause> = None;
        let mut once: HashMap<&'static str, Span> = HashMap::new();
        for item in &decl.items {
            let FlowItem::Clause(c) = item else { continue };
            let key = match &c.kind {
                ClauseKind::Trigger(_) => {
                    if let Some(first) = trigger {
                        let d = Diagnostic::new(
                            codes::E0401,
                            self.at(c.span),
                            format!("flow `{}` has more than one trigger", decl.name.name),
                        )
                        .with_primary_label("second trigger")
                        .with_label(self.at(first.span), "first trigger")
                        .with_help("a flow has exactly one trigger; split it into two flows");
                        self.report(d);
                    } else {
                        trigger = Some(c);
                    }
                    continue;
                }
                ClauseKind::Entry(_) => "entry",
                ClauseKind::Goal(_) => "goal",
                ClauseKind::Holdout(_) => "holdout",
                ClauseKind::Priority(_) => "priority",
                _ => continue,
            };
            if let Some(&first) = once.get(key) {
                let d = Diagnostic::new(
                    codes::E0402,
                    self.at(c.span),
                    format!("flow `{}` has more than one `{key}`", decl.name.name),
                )
                .with_primary_label(format!("second `{key}`"))
                .with_label(self.at(first), format!("first `{key}`"))
                .with_help(format!("keep one `{key}` clause"));
                self.report(d);
            } else {
                once.insert(key, c.span);
            }
        }
        let trigger_ctx = match trigger.map(|c| &c.kind) {
            Some(ClauseKind::Trigger(Trigger::Event(f))) => TriggerCtx::Event(
                self.resolve_event(&f.event)
                    .map(Ty::Record)
                    .unwrap_or(Ty::Error),
            ),
            Some(ClauseKind::Trigger(Trigger::Schedule { .. })) => {
                TriggerCtx::NotEvent("a schedule")
            }
            Some(ClauseKind::Trigger(Trigger::DateProperty { .. })) => {
                TriggerCtx::NotEvent("a date in the profile")
            }
            Some(ClauseKind::Trigger(Trigger::Entering(_))) => {
                TriggerCtx::NotEvent("entering a segment")
            }
            _ => {
                let d = Diagnostic::new(
                    codes::E0401,
                    self.at(decl.name.span),
                    format!("flow `{}` has no trigger", decl.name.name),
                )
                .with_primary_label("nothing starts this flow")
                .with_help("add a trigger, such as `trigger order_completed`");
                self.report(d);
                TriggerCtx::NotEvent("nothing")
            }
        };
        let ctx = Ctx {
            trigger: trigger_ctx.clone(),
            event: None,
            exit_on: false,
            lenient: false,
            customer: true,
            links: false,
        };
        let saved = self.save(file, ctx);
        let mut exit_on_events: Vec<&str> = Vec::new();
        let mut goal: Option<(&ast::Goal, Span)> = None;
        let mut quiet: Vec<Option<&str>> = Vec::new();
        for item in &decl.items {
            let FlowItem::Clause(c) = item else { continue };
            let primary = trigger.is_some_and(|t| std::ptr::eq(t, c));
            match &c.kind {
                ClauseKind::ExitOn(f) => exit_on_events.push(&f.event.name),
                ClauseKind::Goal(g) if goal.is_none() => goal = Some((g, c.span)),
                ClauseKind::QuietHours(q) => {
                    quiet.push(q.channel.as_ref().map(|c| c.name.as_str()))
                }
                _ => {}
            }
            self.clause(c, primary, &trigger_ctx);
        }
        // A standing `exit if` is re-checked before every step, so what it
        // rules out holds in all of them.
        for item in &decl.items {
            if let FlowItem::Clause(ast::Clause {
                kind: ClauseKind::ExitIf(e),
                ..
            }) = item
            {
                facts(e, false, &mut self.narrowed);
            }
        }
        self.block(decl.steps());
        for b in decl.on_exit_blocks() {
            self.block(&b.steps);
        }
        self.restore(saved);

        // E0412: a split that optimises needs the goal it optimises.
        if goal.is_none() {
            let mut found = Vec::new();
            optimising_splits(decl.steps(), &mut found);
            for b in decl.on_exit_blocks() {
                optimising_splits(&b.steps, &mut found);
            }
            for at in found {
                let d = Diagnostic::new(
                    codes::E0412,
                    self.at(at),
                    format!(
                        "a split in flow `{}` optimises, and the flow has no goal",
                        decl.name.name
                    ),
                )
                .with_primary_label("there is no goal to optimise")
                .with_help(
                    "add a goal to the flow, such as `goal order_completed within 7d`, or remove `optimise`",
                );
                self.report(d);
            }
        }

        // W0001: an abandonment flow must stop at the purchase.
        if let Some(c) = trigger
            && let ClauseKind::Trigger(Trigger::Event(f)) = &c.kind
            && ABANDONMENT_EVENTS.contains(&f.event.name.as_str())
            && !exit_on_events.contains(&"order_completed")
            // A misspelled `exit on` event is already an error; the rule the
            // author meant is most likely the purchase exit.
            && exit_on_events.iter().all(|e| self.events.contains_key(e))
        {
            let indent = self.indent_of(c.span.start);
            let at = FileSpan::new(file, Span::new(c.span.end as usize, c.span.end as usize));
            let d = Diagnostic::new(
                codes::W0001,
                self.at(c.span),
                format!(
                    "flow `{}` is triggered by `{}` but does not exit on a purchase",
                    decl.name.name, f.event.name
                ),
            )
            .with_primary_label("an abandonment trigger")
            .with_help("add `exit on order_completed` so that nobody is reminded after buying")
            .with_fix(
                "add `exit on order_completed`",
                vec![Edit {
                    at,
                    replacement: format!("\n{indent}exit on order_completed"),
                }],
            );
            self.report(d);
        }

        // W0002: marketing SMS needs quiet hours.
        let covered = quiet.iter().any(|q| q.is_none_or(|c| c == "sms"))
            || self
                .policy_quiet
                .iter()
                .any(|q| q.as_deref().is_none_or(|c| c == "sms"));
        if !covered {
            let sends = std::mem::take(&mut self.flow_sends);
            for callee in &sends {
                let Some(&m) = self.message_names.get(callee.name.as_str()) else {
                    continue;
                };
                let info = &self.messages[m];
                if info.channel.as_deref() == Some("sms") && !info.transactional {
                    let decl_at = self.symbol_at_decl(info.symbol);
                    let d = Diagnostic::new(
                        codes::W0002,
                        FileSpan::new(file, callee.span),
                        format!("marketing SMS `{}` can be sent with no quiet hours in force", callee.name),
                    )
                    .with_primary_label("sent at any hour of the night")
                    .with_label(decl_at, format!("`{}` is a marketing sms message", callee.name))
                    .with_help(
                        "add `quiet hours 21:00 to 08:00` to the flow, or `quiet hours sms 21:00 to 09:00` to the policy",
                    );
                    self.report(d);
                    break;
                }
            }
            self.flow_sends = sends;
        }

        // W0003: fixed waits beyond the goal window.
        if let Some((g, gspan)) = goal {
            let mut sends = Vec::new();
            let length = |d: &ast::DurationArg| match d {
                ast::DurationArg::Lit(l) => Some(l.seconds),
                ast::DurationArg::Name(n) => self.an.constant_duration(FileSpan::new(file, n.span)),
            };
            waits_before_sends(decl.steps(), 0, &length, &mut sends);
            let within = length(&g.within);
            if let Some(within) = within
                && let Some(&(waited, span)) = sends.iter().find(|(w, _)| *w > within)
            {
                let d = Diagnostic::new(
                    codes::W0003,
                    FileSpan::new(file, span),
                    format!(
                        "this send comes {} after the trigger, beyond the {} goal window",
                        fmt_duration(waited),
                        fmt_duration(within)
                    ),
                )
                .with_primary_label(format!("sent after waiting {}", fmt_duration(waited)))
                .with_label(
                    FileSpan::new(file, gspan),
                    format!("the goal window is {}", fmt_duration(within)),
                )
                .with_help(
                    "shorten the waits or lengthen the goal window, so this send can still convert",
                );
                self.report(d);
            }
        }
    }

    fn indent_of(&self, offset: u32) -> String {
        let src = self.project.sources.get(self.file);
        let line = src.line_index(offset);
        let start = src.line_start(line) as usize;
        src.text
            .get(start..offset as usize)
            .unwrap_or("")
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect()
    }

    fn with_event<F: FnOnce(&mut Self)>(&mut self, ev: Ty, exit_on: bool, f: F) {
        let old_event = self.ctx.event.replace(ev);
        let old_exit = std::mem::replace(&mut self.ctx.exit_on, exit_on);
        f(self);
        self.ctx.event = old_event;
        self.ctx.exit_on = old_exit;
    }

    fn event_filter(&mut self, f: &'a ast::EventFilter, exit_on: bool, known: Option<Ty>) {
        let ty = match known {
            Some(t) => t,
            None => self
                .resolve_event(&f.event)
                .map(Ty::Record)
                .unwrap_or(Ty::Error),
        };
        if let Some(p) = &f.predicate {
            self.with_event(ty, exit_on, |cx| cx.condition(p));
            if exit_on && super::lints::const_bool(p) == Some(false) {
                let d = Diagnostic::new(
                    codes::W0004,
                    self.at(p.span),
                    format!("this `exit on {}` rule can never match", f.event.name),
                )
                .with_primary_label("this condition is always false")
                .with_help("fix the condition, or remove the rule");
                self.report(d);
            }
        }
    }

    fn segment_ref(&mut self, name: &ast::Ident) {
        if let Some(super::Value::Segment(i)) = self.values.get(name.name.as_str()).copied() {
            let sym = self.segments[i].symbol;
            self.use_symbol(self.at(name.span), sym);
            return;
        }
        let mut names: Vec<&str> = self
            .values
            .iter()
            .filter(|(_, v)| matches!(v, super::Value::Segment(_)))
            .map(|(k, _)| *k)
            .collect();
        names.sort_unstable();
        let d = self
            .unknown(
                codes::E0201,
                "segment",
                &name.name,
                self.at(name.span),
                names,
            )
            .with_primary_label(format!("no segment named `{}`", name.name));
        self.report(d);
    }

    /// A plain split: every arm has its share, and the shares make 100%.
    fn plain_split(&mut self, step: &ast::Step, arms: &[ast::SplitArm]) {
        let mut total = Decimal::ZERO;
        let mut all = true;
        for arm in arms {
            let Some(p) = &arm.percent else {
                all = false;
                let d = Diagnostic::new(
                    codes::E0308,
                    self.at(arm.name.span),
                    format!("split arm `{}` has no share", arm.name.name),
                )
                .with_primary_label("no percentage before this arm")
                .with_help(
                    "write each arm's share (`50% a { ... }`), or write `split optimise` to let the goal move traffic",
                );
                self.report(d);
                continue;
            };
            self.percent(p, "a split arm");
            total = total.checked_add(p.value).unwrap_or(Decimal::MAX);
        }
        if all && !arms.is_empty() && total != Decimal::from(100) {
            let keyword = self
                .text(step.span)
                .find("split")
                .map(|i| {
                    Span::new(
                        step.span.start as usize + i,
                        step.span.start as usize + i + 5,
                    )
                })
                .unwrap_or(step.span);
            let mut d = Diagnostic::new(
                codes::E0308,
                self.at(keyword),
                format!("the split's arms add up to {total}%, not 100%"),
            )
            .with_primary_label(format!("{total}% in total"))
            .with_help("make the percentages add up to exactly 100%");
            for p in arms.iter().filter_map(|a| a.percent.as_ref()) {
                d = d.with_label(self.at(p.span), format!("{}%", p.value));
            }
            self.report(d);
        }
    }

    /// A split that optimises: its arms have no shares, and its floor
    /// leaves room for every arm.
    fn optimised_split(&mut self, o: &ast::Optimise, arms: &[ast::SplitArm]) {
        for arm in arms {
            if let Some(p) = &arm.percent {
                let d = Diagnostic::new(
                    codes::E0308,
                    self.at(p.span),
                    format!(
                        "arm `{}` of a split that optimises has a share of {}%",
                        arm.name.name, p.value
                    ),
                )
                .with_primary_label("the split moves traffic itself")
                .with_help("remove the percentage, or remove `optimise` to keep fixed shares");
                self.report(d);
            }
        }
        let (floor, at) = match &o.floor {
            Some(f) => {
                self.percent(f, "a split's floor");
                (f.value, f.span)
            }
            None => (Decimal::from(DEFAULT_FLOOR), o.span),
        };
        let n = Decimal::from(arms.len() as u64);
        let room = floor.checked_mul(n).unwrap_or(Decimal::MAX);
        if floor >= Decimal::ZERO && room > Decimal::from(100) {
            let d = Diagnostic::new(
                codes::E0308,
                self.at(at),
                format!(
                    "a floor of {floor}% for each of {} arms asks for {room}% of the traffic",
                    arms.len()
                ),
            )
            .with_primary_label(if o.floor.is_some() {
                "floor too high for this many arms"
            } else {
                "the default floor is too high for this many arms"
            })
            .with_help(format!(
                "write a floor of at most {}% (100% divided by the number of arms)",
                (Decimal::from(100) / n).trunc_with_scale(2).normalize()
            ));
            self.report(d);
        }
    }

    fn percent(&mut self, p: &ast::PercentLit, what: &str) {
        if p.value < Decimal::ZERO || p.value > Decimal::from(100) {
            let d = Diagnostic::new(
                codes::E0308,
                self.at(p.span),
                format!("{what} of {}% is outside 0–100%", p.value),
            )
            .with_primary_label("not a share of customers")
            .with_help("use a percentage from 0% to 100%");
            self.report(d);
        }
    }

    fn clause(&mut self, c: &'a ast::Clause, primary: bool, trigger_ctx: &TriggerCtx) {
        match &c.kind {
            ClauseKind::Trigger(t) => match t {
                Trigger::Event(f) => {
                    let known = match (primary, trigger_ctx) {
                        (true, TriggerCtx::Event(t)) => Some(t.clone()),
                        _ => None,
                    };
                    self.event_filter(f, false, known);
                }
                Trigger::Schedule {
                    cadence, segment, ..
                } => {
                    match cadence {
                        Cadence::Day(_) | Cadence::Once(_) => {}
                        Cadence::Weekday(w) => {
                            if !WEEKDAYS.contains(&w.name.as_str()) {
                                let mut candidates = WEEKDAYS.to_vec();
                                candidates.extend(["day", "month"]);
                                let d = self
                                    .unknown(
                                        codes::E0104,
                                        "day",
                                        &w.name,
                                        self.at(w.span),
                                        candidates,
                                    )
                                    .with_primary_label(
                                        "expected `day`, a weekday or `month on N`",
                                    );
                                self.report(d);
                            }
                        }
                        Cadence::Month(n) => {
                            if !(1..=28).contains(&n.value) {
                                let d = Diagnostic::new(
                                    codes::E0104,
                                    self.at(n.span),
                                    format!(
                                        "`every month on {}` is not a day every month has",
                                        n.value
                                    ),
                                )
                                .with_primary_label("must be from 1 to 28")
                                .with_help(
                                    "monthly schedules run on days 1 to 28, which every month has",
                                );
                                self.report(d);
                            }
                        }
                    }
                    if let Some(s) = segment {
                        self.segment_ref(s);
                    }
                }
                Trigger::DateProperty {
                    offset,
                    field,
                    grace,
                    ..
                } => {
                    if let Some(offset) = offset {
                        self.positive_duration(offset, "a trigger offset");
                    }
                    if let Some(grace) = grace {
                        self.positive_duration(grace, "a grace period");
                    }
                    if let Some(ty) = self.profile_field(field)
                        && !matches!(ty.strip_optional(), Ty::Time | Ty::Date | Ty::Error)
                    {
                        let ts = self.an.types.display(&ty);
                        let mut d = Diagnostic::new(
                            codes::E0301,
                            self.at(field.span),
                            format!("`profile.{}` is not a time or a date", field.name),
                        )
                        .with_primary_label(format!("this is `{ts}`"))
                        .with_help("a date trigger needs a `time` or `date` profile field");
                        if let Some(at) = f_at(&self.an.types, self.profile, &field.name) {
                            d = d.with_label(
                                at,
                                format!("`{}` is declared here as {ts}", field.name),
                            );
                        }
                        self.report(d);
                    }
                }
                Trigger::Entering(s) => self.segment_ref(s),
            },
            ClauseKind::Entry(EntryRule::OncePer(d)) => {
                self.positive_duration(d, "an entry window")
            }
            ClauseKind::Entry(_) => {}
            ClauseKind::ExitOn(f) => self.event_filter(f, true, None),
            ClauseKind::ExitIf(e) | ClauseKind::Suppress(e) => self.condition(e),
            ClauseKind::QuietHours(q) => {
                if let Some(ch) = &q.channel {
                    self.unknown_channel(ch, false);
                }
            }
            ClauseKind::Cap(cap) => self.check_cap(cap),
            ClauseKind::Goal(g) => {
                self.event_filter(&g.filter, false, None);
                self.duration_arg(&g.within, "a goal window");
            }
            ClauseKind::Holdout(p) => self.percent(p, "a holdout"),
            ClauseKind::Priority(_) | ClauseKind::OnExit(_) => {}
        }
    }

    /// Checks steps in one scope; locals and narrowing end with the block.
    pub(crate) fn block<I: IntoIterator<Item = &'a Step>>(&mut self, steps: I) {
        let (nl, nn) = (self.locals.len(), self.narrowed.len());
        let mut exit_at: Option<Span> = None;
        let mut reported = false;
        for step in steps {
            if let Some(x) = exit_at
                && !reported
            {
                let d =
                    Diagnostic::new(codes::E0403, self.at(step.span), "this step can never run")
                        .with_primary_label("unreachable")
                        .with_label(self.at(x), "the flow always exits here")
                        .with_help("remove the step, or make the `exit` conditional");
                self.report(d);
                reported = true;
            }
            self.step(step);
            if matches!(step.kind, StepKind::Exit) && exit_at.is_none() {
                exit_at = Some(step.span);
            }
        }
        self.locals.truncate(nl);
        self.narrowed.truncate(nn);
    }

    fn step(&mut self, step: &'a Step) {
        match &step.kind {
            StepKind::Wait(d) => self.duration_arg(d, "a wait"),
            StepKind::WaitUntil(e) => {
                self.expect(e, &Ty::Time);
            }
            StepKind::WaitFor(w) => {
                let mut records = Vec::new();
                let mut failed = false;
                for ev in &w.events {
                    match self.resolve_event(ev) {
                        Some(r) => records.push(r),
                        None => failed = true,
                    }
                }
                let ty = if failed {
                    Ty::Error
                } else if records.len() == 1 {
                    Ty::Record(records[0])
                } else {
                    Ty::Record(self.shared_fields(&records))
                };
                if let Some(p) = &w.predicate {
                    self.with_event(ty.clone(), false, |cx| cx.condition(p));
                }
                self.duration_arg(&w.within, "a `wait for` window");
                if let Some(b) = &w.binding {
                    self.push_local(b, ty.optional(), SymbolKind::Local);
                }
            }
            StepKind::Send(call) => self.send(call),
            StepKind::If(i) => {
                let base = self.narrowed.len();
                for (cond, body) in &i.branches {
                    self.condition(cond);
                    let mark = self.narrowed.len();
                    facts(cond, true, &mut self.narrowed);
                    self.block(&body.steps);
                    self.narrowed.truncate(mark);
                    facts(cond, false, &mut self.narrowed);
                }
                if let Some(b) = &i.otherwise {
                    self.block(&b.steps);
                }
                self.narrowed.truncate(base);
                if let [(cond, body)] = i.branches.as_slice()
                    && i.otherwise.is_none()
                    && always_exits(body)
                {
                    facts(cond, false, &mut self.narrowed);
                }
            }
            StepKind::Split(split) => {
                let arms = &split.arms;
                // Variants are reported by name, so two arms may not share one.
                for (i, arm) in arms.iter().enumerate() {
                    if let Some(first) = arms[..i].iter().find(|a| a.name.name == arm.name.name) {
                        let d = Diagnostic::new(
                            codes::E0206,
                            self.at(arm.name.span),
                            format!("two split arms are named `{}`", arm.name.name),
                        )
                        .with_primary_label("second arm with this name")
                        .with_label(self.at(first.name.span), "first arm with this name")
                        .with_help("give each arm its own name; reports count variants by name");
                        self.report(d);
                    }
                }
                for arm in arms {
                    self.block(&arm.body.steps);
                }
                match &split.optimise {
                    Some(o) => self.optimised_split(o, arms),
                    None => self.plain_split(step, arms),
                }
            }
            StepKind::SetProfile { field, value } => match self.profile_field(field) {
                Some(ty) => {
                    self.expect(value, &ty);
                }
                None => {
                    self.infer(value);
                }
            },
            StepKind::Audience { op, name } => {
                if *op == nudge_syntax::ast::AudienceOp::Add {
                    self.audiences_added.insert(name.value.clone());
                }
            }
            StepKind::Exit | StepKind::Error => {}
            StepKind::Let { name, value } => {
                let ty = self.infer(value);
                self.push_local(name, ty, SymbolKind::Local);
            }
            StepKind::ExitIf(e) => {
                self.condition(e);
                facts(e, false, &mut self.narrowed);
            }
        }
    }

    /// A record of the fields several events share with the same type.
    fn shared_fields(&mut self, records: &[crate::types::RecordId]) -> crate::types::RecordId {
        let types = &self.an.types;
        let names: Vec<&str> = records
            .iter()
            .map(|r| types.record(*r).name.as_str())
            .collect();
        let mut rec = RecordDef::new(names.join(" | "), RecordKind::Synthetic, None);
        if let Some(first) = records.first() {
            for f in &types.record(*first).fields {
                let everywhere = records[1..].iter().all(|r| {
                    types
                        .record(*r)
                        .field(&f.name)
                        .is_some_and(|g| g.ty == f.ty)
                });
                if everywhere {
                    let _ = rec.add_field(FieldDef {
                        name: f.name.clone(),
                        ty: f.ty.clone(),
                        at: f.at,
                        symbol: f.symbol,
                    });
                }
            }
        }
        self.an.types.add_record(rec)
    }

    fn send(&mut self, call: &'a Call) {
        self.flow_sends.push(&call.callee);
        let Some(&idx) = self.message_names.get(call.callee.name.as_str()) else {
            let mut names: Vec<&str> = self.message_names.keys().copied().collect();
            names.sort_unstable();
            let d = self.unknown(
                codes::E0203,
                "message",
                &call.callee.name,
                self.at(call.callee.span),
                names,
            );
            self.report(d);
            for a in &call.args {
                self.infer(&a.value);
            }
            return;
        };
        let sym = self.messages[idx].symbol;
        self.use_symbol(self.at(call.callee.span), sym);
        self.sent.insert(call.callee.name.clone());
        let decl_at = self.symbol_at_decl(sym);
        let mname = call.callee.name.clone();
        let params: Vec<(String, Ty, bool)> = self.messages[idx]
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.clone(), p.has_default))
            .collect();
        let signature = self.an.symbols[sym.0 as usize].detail.clone();
        let mut slots: Vec<Option<&'a ast::Arg>> = vec![None; params.len()];
        let mut positional = 0;
        for a in &call.args {
            let idx = match &a.name {
                None => {
                    let i = positional;
                    positional += 1;
                    if i >= params.len() {
                        let d = Diagnostic::new(
                            codes::E0303,
                            self.at(a.value.span),
                            format!(
                                "message `{mname}` takes {} argument{}",
                                params.len(),
                                if params.len() == 1 { "" } else { "s" }
                            ),
                        )
                        .with_primary_label("unexpected argument")
                        .with_label(decl_at, format!("`{signature}`"))
                        .with_help("remove the extra arguments");
                        self.report(d);
                        self.infer(&a.value);
                        continue;
                    }
                    i
                }
                Some(n) => match params.iter().position(|(p, _, _)| *p == n.name) {
                    Some(i) => i,
                    None => {
                        let d = self
                            .unknown(
                                codes::E0303,
                                &format!("parameter of `{mname}`"),
                                &n.name,
                                self.at(n.span),
                                params.iter().map(|(p, _, _)| p.as_str()),
                            )
                            .with_label(decl_at, format!("`{signature}`"));
                        self.report(d);
                        self.infer(&a.value);
                        continue;
                    }
                },
            };
            if slots[idx].is_some() {
                let d = Diagnostic::new(
                    codes::E0303,
                    self.at(a.value.span),
                    format!("argument `{}` of `{mname}` is given twice", params[idx].0),
                )
                .with_primary_label("given again here")
                .with_label(decl_at, format!("`{signature}`"));
                self.report(d);
                self.infer(&a.value);
                continue;
            }
            slots[idx] = Some(a);
            let before = self.diags.len();
            let arg_at = self.at(a.value.span);
            self.expect(&a.value, &params[idx].1);
            for d in &mut self.diags[before..] {
                if d.code == codes::E0301 && d.primary == arg_at {
                    d.code = codes::E0303;
                    d.severity = codes::E0303.severity;
                    d.title = format!("argument `{}` of `{mname}`: {}", params[idx].0, d.title);
                    d.labels.push(nudge_diagnostics::Label {
                        at: decl_at,
                        message: format!("`{signature}`"),
                    });
                }
            }
        }
        let missing: Vec<&str> = params
            .iter()
            .zip(&slots)
            .filter(|((_, _, has_default), s)| s.is_none() && !has_default)
            .map(|((n, _, _), _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            let d = Diagnostic::new(
                codes::E0303,
                self.at(call.span),
                format!(
                    "`send {mname}` is missing {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_primary_label("missing arguments")
            .with_label(decl_at, format!("`{signature}`"))
            .with_help(format!(
                "pass {}",
                missing
                    .iter()
                    .map(|m| format!("`{m}: …`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            self.report(d);
        }
    }
}

fn f_at(
    types: &crate::types::TypeTable,
    rid: crate::types::RecordId,
    name: &str,
) -> Option<FileSpan> {
    types.record(rid).field(name).and_then(|f| f.at)
}

/// Sends with the total of fixed waits before them, in order.
fn waits_before_sends<'s, I: Iterator<Item = &'s Step>>(
    steps: I,
    mut acc: i64,
    length: &dyn Fn(&ast::DurationArg) -> Option<i64>,
    out: &mut Vec<(i64, Span)>,
) {
    for s in steps {
        match &s.kind {
            StepKind::Wait(d) => acc = acc.saturating_add(length(d).unwrap_or(0).max(0)),
            StepKind::Send(_) => out.push((acc, s.span)),
            StepKind::If(i) => {
                for (_, b) in &i.branches {
                    waits_before_sends(b.steps.iter(), acc, length, out);
                }
                if let Some(b) = &i.otherwise {
                    waits_before_sends(b.steps.iter(), acc, length, out);
                }
            }
            StepKind::Split(split) => {
                for a in &split.arms {
                    waits_before_sends(a.body.steps.iter(), acc, length, out);
                }
            }
            _ => {}
        }
    }
}
