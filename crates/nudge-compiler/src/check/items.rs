//! Messages (content keys, templates), policies and test blocks.

use std::collections::HashMap;

use nudge_diagnostics::{Diagnostic, Edit, FileId, FileSpan, Span, codes};
use nudge_syntax::ast::{
    self, ContentValue, ExpectKind, ExprKind, Item, PolicyItemKind, Prop, StrLit, TestCall,
    TestStmtKind,
};

use super::{Checker, Ctx, Local, TriggerCtx};
use crate::analysis::SymbolKind;
use crate::project::TemplateError;
use crate::suggest::did_you_mean;
use crate::types::{FieldDef, RecordDef, RecordId, RecordKind, Ty};

/// A folded constant: a duration in seconds or an integer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Folded {
    Dur(i64),
    Int(i64),
}

/// Channels a message, quiet hours or a cap may name.
pub(crate) const CHANNELS: &[&str] = &["email", "sms", "push", "webhook", "audience"];

/// The content keys of a channel: `(key, required)`.
pub(crate) fn channel_keys(channel: &str) -> &'static [(&'static str, bool)] {
    match channel {
        "email" => &[("subject", true), ("preheader", false), ("body", true)],
        "sms" => &[("text", true)],
        "push" => &[("title", false), ("text", false), ("url", false)],
        "webhook" => &[("url", true), ("payload", false)],
        _ => &[],
    }
}

const OUTCOMES: &[&str] = &[
    "sent",
    "deferred",
    "skipped",
    "capped",
    "suppressed",
    "blocked",
];

/// Names a template may use besides the message's parameters and top-level lets.
const TEMPLATE_GLOBALS: &[&str] = &[
    "profile",
    "unsubscribe_url",
    "preferences_url",
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
];

impl<'a> Checker<'a> {
    pub(crate) fn unknown_channel(&mut self, name: &ast::Ident, allow_marketing: bool) -> bool {
        if CHANNELS.contains(&name.name.as_str()) || (allow_marketing && name.name == "marketing") {
            return true;
        }
        let mut candidates = CHANNELS.to_vec();
        if allow_marketing {
            candidates.push("marketing");
        }
        let d = self
            .unknown(
                codes::E0207,
                "channel",
                &name.name,
                self.at(name.span),
                candidates.clone(),
            )
            .with_primary_label(format!(
                "the channels are {}",
                candidates
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        self.report(d);
        false
    }

    pub(crate) fn check_messages(&mut self) {
        for idx in 0..self.messages.len() {
            self.check_message(idx);
        }
    }

    fn check_message(&mut self, idx: usize) {
        let decl = self.messages[idx].decl;
        let file = self.messages[idx].file;
        let email = decl.content.iter().any(|c| {
            c.key.name == "channel"
                && matches!(&c.value, ContentValue::Expr(e) if matches!(&e.kind, ExprKind::Name(n) if n == "email"))
        });
        let saved = self.save(
            file,
            Ctx {
                links: email,
                customer: true,
                ..Ctx::top("a message")
            },
        );
        for p in &self.messages[idx].params {
            self.locals.push(Local {
                name: p.name.clone(),
                ty: p.ty.clone(),
                symbol: p.symbol,
            });
        }
        for (p, info_ty) in decl
            .params
            .iter()
            .filter_map(|p| {
                let info = self.messages[idx]
                    .params
                    .iter()
                    .find(|q| q.name == p.name.name)?;
                Some((p, info.ty.clone()))
            })
            .collect::<Vec<_>>()
        {
            if let Some(d) = &p.default {
                self.expect(d, &info_ty);
            }
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut channel: Option<&str> = None;
        let mut channel_ok = false;
        for c in &decl.content {
            let key = c.key.name.as_str();
            if let Some(&first) = seen.get(key) {
                let d = Diagnostic::new(
                    codes::E0404,
                    self.at(c.key.span),
                    format!("message `{}` sets `{key}` twice", decl.name.name),
                )
                .with_primary_label("set again here")
                .with_label(self.at(first), "first set here")
                .with_help(format!("keep one `{key}`"));
                self.report(d);
                continue;
            }
            seen.insert(key, c.key.span);
            match key {
                "channel" => match &c.value {
                    ContentValue::Expr(e) if matches!(e.kind, ExprKind::Name(_)) => {
                        let ExprKind::Name(n) = &e.kind else { continue };
                        let ident = ast::Ident {
                            name: n.clone(),
                            span: e.span,
                        };
                        channel = Some(n.as_str());
                        channel_ok = self.unknown_channel(&ident, false);
                    }
                    _ => {
                        let d = Diagnostic::new(
                            codes::E0404,
                            self.at(c.span),
                            "the channel must be a channel name",
                        )
                        .with_primary_label(
                            "expected `email`, `sms`, `push`, `webhook` or `audience`",
                        );
                        self.report(d);
                    }
                },
                "purpose" => {
                    let ok = matches!(&c.value, ContentValue::Expr(e)
                        if matches!(&e.kind, ExprKind::Name(n) if n == "marketing" || n == "transactional"));
                    if !ok {
                        let span = match &c.value {
                            ContentValue::Expr(e) => e.span,
                            ContentValue::Template(s) => s.span,
                        };
                        let written = self.text(span).to_string();
                        let mut d = Diagnostic::new(
                            codes::E0404,
                            self.at(span),
                            format!("unknown purpose `{written}`"),
                        )
                        .with_primary_label("the purpose is `marketing` or `transactional`");
                        if let Some(s) = did_you_mean(&written, ["marketing", "transactional"]) {
                            d = d.with_help(format!("did you mean `{s}`?")).with_fix(
                                format!("replace with `{s}`"),
                                vec![Edit {
                                    at: self.at(span),
                                    replacement: s.to_string(),
                                }],
                            );
                        }
                        self.report(d);
                    }
                }
                _ => match &c.value {
                    ContentValue::Expr(e) => {
                        self.expect(e, &Ty::String);
                    }
                    ContentValue::Template(path) => self.check_template(idx, path),
                },
            }
        }
        // Content keys against the channel.
        let name = &decl.name;
        match channel {
            None => {
                let d = Diagnostic::new(
                    codes::E0404,
                    self.at(name.span),
                    format!("message `{}` has no channel", name.name),
                )
                .with_primary_label("no `channel` line")
                .with_help("add a line such as `channel email`");
                self.report(d);
            }
            Some(ch) if channel_ok => {
                let keys = channel_keys(ch);
                for c in &decl.content {
                    let key = c.key.name.as_str();
                    if key == "channel" || key == "purpose" || keys.iter().any(|(k, _)| *k == key) {
                        continue;
                    }
                    let allowed: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                    let list = if allowed.is_empty() {
                        "no content".to_string()
                    } else {
                        allowed
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let mut d = Diagnostic::new(
                        codes::E0404,
                        self.at(c.key.span),
                        format!("{ch} messages have no `{key}`"),
                    )
                    .with_primary_label(format!("not a content key of {ch} messages"));
                    match did_you_mean(key, allowed.iter().copied()) {
                        Some(s) => {
                            d = d.with_help(format!("did you mean `{s}`?")).with_fix(
                                format!("replace with `{s}`"),
                                vec![Edit {
                                    at: self.at(c.key.span),
                                    replacement: s.to_string(),
                                }],
                            )
                        }
                        None => d = d.with_help(format!("{ch} messages take {list}")),
                    }
                    self.report(d);
                }
                let missing: Vec<&str> = keys
                    .iter()
                    .filter(|(k, req)| *req && !seen.contains_key(k))
                    .map(|(k, _)| *k)
                    .collect();
                for k in missing {
                    let d = Diagnostic::new(
                        codes::E0404,
                        self.at(name.span),
                        format!("{ch} message `{}` has no `{k}`", name.name),
                    )
                    .with_primary_label(format!("`{k}` is required for {ch} messages"))
                    .with_help(format!("add a line `{k} \"…\"`"));
                    self.report(d);
                }
                if ch == "push" && !seen.contains_key("title") && !seen.contains_key("text") {
                    let d = Diagnostic::new(
                        codes::E0404,
                        self.at(name.span),
                        format!(
                            "push message `{}` has neither `title` nor `text`",
                            name.name
                        ),
                    )
                    .with_primary_label("a push message needs a title or a text")
                    .with_help("add a line `title \"…\"` or `text \"…\"`");
                    self.report(d);
                }
            }
            Some(_) => {}
        }
        self.restore(saved);
    }

    fn check_template(&mut self, idx: usize, path: &StrLit) {
        let at = self.at(path.span);
        let file = self.file;
        let result = self.project.template(file, &path.value).cloned();
        let tid = match result {
            Some(Ok(tid)) => tid,
            Some(Err(TemplateError::Outside(why))) => {
                let d = Diagnostic::new(
                    codes::E0409,
                    at,
                    format!("template {:?} is outside the project", path.value),
                )
                .with_primary_label(why)
                .with_help(
                    "keep templates inside the project directory (the one holding nudge.toml) \
                     and refer to them by a relative path",
                );
                self.report(d);
                return;
            }
            other => {
                let reason = match other {
                    Some(Err(TemplateError::Unreadable(r))) => r,
                    _ => "it was not found".to_string(),
                };
                let d = Diagnostic::new(
                    codes::E0405,
                    at,
                    format!("template {:?} cannot be read", path.value),
                )
                .with_primary_label(reason)
                .with_help("the path is relative to the directory of this .flow file");
                self.report(d);
                return;
            }
        };
        let text: &'a str = &self.project.sources.get(tid).text;
        let env = minijinja::Environment::new();
        let tmpl = match env.template_from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e
                    .range()
                    .map(|r| Span::new(r.start.min(text.len()), r.end.min(text.len())))
                    .unwrap_or_else(|| Span::new(0, 0));
                let detail = e.detail().unwrap_or("invalid syntax").to_string();
                let d = Diagnostic::new(
                    codes::E0407,
                    FileSpan::new(tid, span),
                    format!("template {:?} does not parse", path.value),
                )
                .with_primary_label(detail)
                .with_label(at, "the template is used here")
                .with_help("fix the template syntax (Jinja: `{{ value }}`, `{% if … %}`)");
                self.report(d);
                return;
            }
        };
        let mut vars: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
        vars.sort();
        self.template_vars.insert(at, (tid, vars.clone()));
        let params: Vec<String> = self.messages[idx]
            .params
            .iter()
            .map(|p| p.name.clone())
            .collect();
        for v in vars {
            let occurrence = FileSpan::new(tid, find_variable(text, &v));
            if params.contains(&v) || TEMPLATE_GLOBALS.contains(&v.as_str()) {
                if let Some(p) = self.messages[idx].params.iter().find(|p| p.name == v) {
                    let sym = p.symbol;
                    self.use_symbol(occurrence, sym);
                }
                continue;
            }
            if let Some(super::Value::Let(i)) = self.values.get(v.as_str()).copied() {
                let sym = self.lets[i].symbol;
                self.use_symbol(occurrence, sym);
                continue;
            }
            let mut candidates: Vec<&str> = params.iter().map(String::as_str).collect();
            candidates.push("profile");
            candidates.extend(
                self.values
                    .iter()
                    .filter(|(_, v)| matches!(v, super::Value::Let(_)))
                    .map(|(k, _)| *k),
            );
            candidates.sort_unstable();
            let mut d = Diagnostic::new(
                codes::E0406,
                occurrence,
                format!("template {:?} uses unknown variable `{v}`", path.value),
            )
            .with_primary_label("not a parameter of the message, `profile` or a top-level `let`")
            .with_label(
                at,
                format!(
                    "used by message `{}` here",
                    self.messages[idx].decl.name.name
                ),
            );
            d = match did_you_mean(&v, candidates) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")).with_fix(
                    format!("replace with `{s}`"),
                    vec![Edit {
                        at: occurrence,
                        replacement: s.to_string(),
                    }],
                ),
                None => d.with_help(format!(
                    "add a parameter `{v}` to the message, or remove it from the template"
                )),
            };
            self.report(d);
        }
        self.check_template_uses(idx, tid, path, at);
    }

    pub(crate) fn check_policies(&mut self) {
        let files = self.files;
        for (file, parsed) in files {
            self.file = *file;
            for item in &parsed.file.items {
                let Item::Policy(p) = item else { continue };
                for it in &p.items {
                    match &it.kind {
                        PolicyItemKind::Timezone(s) => self.timezone_name(&s.value, s.span),
                        PolicyItemKind::QuietHours(q) => {
                            if let Some(c) = &q.channel {
                                self.unknown_channel(c, false);
                            }
                        }
                        PolicyItemKind::Cap(c) => self.check_cap(c),
                        PolicyItemKind::SuppressList(_) => {}
                        PolicyItemKind::Currency(s) => self.currency_code(&s.value, s.span),
                    }
                }
            }
        }
    }

    pub(crate) fn check_cap(&mut self, c: &ast::Cap) {
        self.unknown_channel(&c.scope, true);
        self.positive_duration(&c.per, "a cap period");
        if c.count.value <= 0 {
            let d = Diagnostic::new(
                codes::E0301,
                self.at(c.count.span),
                "a cap must allow at least one send",
            )
            .with_primary_label("this cap allows nothing")
            .with_help("use a count of 1 or more, or `suppress if` to block sends");
            self.report(d);
        }
    }

    pub(crate) fn positive_duration(&mut self, d: &ast::DurationLit, what: &str) {
        if d.seconds <= 0 {
            let diag = Diagnostic::new(
                codes::E0306,
                self.at(d.span),
                format!("{what} must be longer than zero"),
            )
            .with_primary_label("this duration is zero")
            .with_help("use a positive duration such as `1h` or `7d`");
            self.report(diag);
        }
    }

    /// Checks a duration where a flow needs a constant. A literal must be
    /// positive (E0306); a name must be a top-level `let` whose value is a
    /// constant duration (E0301, E0310), and its folded length is kept for
    /// the lints, the typed program and the editor.
    pub(crate) fn duration_arg(&mut self, d: &ast::DurationArg, what: &str) {
        let n = match d {
            ast::DurationArg::Lit(l) => return self.positive_duration(l, what),
            ast::DurationArg::Name(n) => n,
        };
        let at = self.at(n.span);
        let local = self.locals.iter().any(|l| l.name == n.name);
        let ty = self.resolve_name(&n.name, n.span);
        self.an.expr_types.insert(at, ty.clone());
        if matches!(ty, Ty::Error) {
            return;
        }
        if ty != Ty::Duration {
            let ts = self.an.types.display(&ty);
            let d = Diagnostic::new(codes::E0301, at, format!("{what} must be a duration"))
                .with_primary_label(format!("`{}` is `{ts}`", n.name))
                .with_help("name a `let` that holds a duration, such as `let grace = 3d`");
            self.report(d);
            return;
        }
        if local {
            let d = Diagnostic::new(
                codes::E0310,
                at,
                format!("{what} must be a constant, and `{}` is a variable", n.name),
            )
            .with_primary_label("computed while the flow runs")
            .with_help(
                "name a top-level `let` of a constant duration, or wait until an instant: `wait until now() + …`",
            );
            self.report(d);
            return;
        }
        let Some(&super::Value::Let(i)) = self.values.get(n.name.as_str()) else {
            return;
        };
        let (file, decl) = (self.lets[i].file, self.lets[i].decl);
        match self.fold_duration(&decl.value, file, 0) {
            Ok(Folded::Dur(secs)) => {
                self.an.durations.insert(at, secs);
                if secs <= 0 {
                    let diag = Diagnostic::new(
                        codes::E0306,
                        at,
                        format!("{what} must be longer than zero"),
                    )
                    .with_primary_label(format!(
                        "`{}` is {}",
                        n.name,
                        nudge_bytecode::format_duration(secs)
                    ))
                    .with_label(FileSpan::new(file, decl.value.span), "defined here")
                    .with_help("use a positive duration such as `1h` or `7d`");
                    self.report(diag);
                }
            }
            Ok(Folded::Int(_)) => {}
            Err(bad) => {
                let diag = Diagnostic::new(
                    codes::E0310,
                    at,
                    format!("{what} must be a constant, and `{}` is computed", n.name),
                )
                .with_primary_label("not a constant duration")
                .with_label(bad, "this is only known while the flow runs")
                .with_help(
                    "write the `let` with duration literals and other constants (`let grace = 3d`, `let grace = 1d * 3`), or wait until an instant: `wait until now() + …`",
                );
                self.report(diag);
            }
        }
    }

    /// The value of a constant duration (or integer) expression of `file`,
    /// or where it stops being constant. Cycles are E0305's business; the
    /// depth bound only keeps a cycle from looping here.
    fn fold_duration(&self, e: &ast::Expr, file: FileId, depth: u32) -> Result<Folded, FileSpan> {
        let here = FileSpan::new(file, e.span);
        if depth > 64 {
            return Err(here);
        }
        Ok(match &e.kind {
            ExprKind::Duration(s) => Folded::Dur(*s),
            ExprKind::Int(i) => Folded::Int(*i),
            ExprKind::Name(name) => match self.values.get(name.as_str()) {
                Some(&super::Value::Let(j)) => {
                    let l = &self.lets[j];
                    self.fold_duration(&l.decl.value, l.file, depth + 1)?
                }
                _ => return Err(here),
            },
            ExprKind::Unary {
                op: ast::UnaryOp::Neg,
                expr,
            } => match self.fold_duration(expr, file, depth + 1)? {
                Folded::Dur(s) => Folded::Dur(s.checked_neg().ok_or(here)?),
                Folded::Int(i) => Folded::Int(i.checked_neg().ok_or(here)?),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                use Folded::{Dur, Int};
                use ast::BinaryOp::{Add, Div, Mul, Sub};
                let l = self.fold_duration(lhs, file, depth + 1)?;
                let r = self.fold_duration(rhs, file, depth + 1)?;
                // Overflow, division by zero and mixed units are not constants.
                let v = match (op, l, r) {
                    (Add, Dur(a), Dur(b)) => a.checked_add(b).map(Dur),
                    (Sub, Dur(a), Dur(b)) => a.checked_sub(b).map(Dur),
                    (Mul, Dur(a), Int(b)) | (Mul, Int(b), Dur(a)) => a.checked_mul(b).map(Dur),
                    // Integer division truncates toward zero, as at run time.
                    (Div, Dur(a), Int(b)) => a.checked_div(b).map(Dur),
                    (Add, Int(a), Int(b)) => a.checked_add(b).map(Int),
                    (Sub, Int(a), Int(b)) => a.checked_sub(b).map(Int),
                    (Mul, Int(a), Int(b)) => a.checked_mul(b).map(Int),
                    _ => None,
                };
                v.ok_or(here)?
            }
            _ => return Err(here),
        })
    }

    /// The record of an event named in a test: by flow name or wire name.
    fn test_event(&mut self, r: &ast::EventRef) -> Option<RecordId> {
        match r {
            ast::EventRef::Name(n) => self.resolve_event(n),
            ast::EventRef::Wire(s) => {
                if let Some(&rid) = self.wire.get(s.value.as_str()) {
                    if let Some(info) = self.events.get(self.an.types.record(rid).name.as_str()) {
                        let sym = info.symbol;
                        self.use_symbol(self.at(s.span), sym);
                    }
                    return Some(rid);
                }
                let mut names: Vec<&str> = self.wire.keys().copied().collect();
                names.sort_unstable();
                let mut d = Diagnostic::new(
                    codes::E0202,
                    self.at(s.span),
                    format!("unknown event {:?}", s.value),
                )
                .with_primary_label("no event has this wire name");
                if let Some(sug) = did_you_mean(&s.value, names) {
                    d = d.with_help(format!("did you mean {sug:?}?")).with_fix(
                        format!("replace with {sug:?}"),
                        vec![Edit {
                            at: self.at(s.span),
                            replacement: format!("{sug:?}"),
                        }],
                    );
                } else {
                    d = d.with_help("declare it with `event name \"Wire Name\" { … }`");
                }
                self.report(d);
                None
            }
        }
    }

    pub(crate) fn props(&mut self, record: Option<RecordId>, props: &'a [Prop]) {
        for p in props {
            let Some(rid) = record else {
                self.infer(&p.value);
                continue;
            };
            let rec = self.an.types.record(rid);
            match rec.field(&p.key.name) {
                Some(f) => {
                    let (ty, sym) = (f.ty.clone(), f.symbol);
                    if let Some(sym) = sym {
                        self.use_symbol(self.at(p.key.span), sym);
                    }
                    self.expect(&p.value, &ty);
                }
                None => {
                    let rname = rec.name.clone();
                    let decl = rec.at;
                    let names: Vec<&str> = rec.fields.iter().map(|f| f.name.as_str()).collect();
                    let mut d = self
                        .unknown(
                            codes::E0204,
                            "field",
                            &p.key.name,
                            self.at(p.key.span),
                            names,
                        )
                        .with_primary_label(format!("`{rname}` has no field `{}`", p.key.name));
                    if let Some(decl) = decl {
                        d = d.with_label(decl, format!("`{rname}` is declared here"));
                    }
                    self.report(d);
                    self.infer(&p.value);
                }
            }
        }
    }

    /// An expected exit reason must be one the flow can give: one of its
    /// `exit on` events, `exit_if` or `exit`.
    fn exit_reason(&mut self, flow: &ast::Ident, reason: &ast::StrLit) {
        let Some(&i) = self.flow_names.get(flow.name.as_str()) else {
            return;
        };
        let mut possible: Vec<&str> = vec!["exit_if", "exit"];
        for item in &self.flows[i].decl.items {
            if let ast::FlowItem::Clause(c) = item
                && let ast::ClauseKind::ExitOn(f) = &c.kind
            {
                possible.push(f.event.name.as_str());
            }
        }
        if possible.contains(&reason.value.as_str()) {
            return;
        }
        let listed: Vec<String> = possible.iter().map(|p| format!("`{p}`")).collect();
        let help = match crate::suggest::did_you_mean(&reason.value, possible.iter().copied()) {
            Some(s) => format!(
                "did you mean \"{s}\"? Its exit reasons are {}",
                listed.join(", ")
            ),
            None => format!("its exit reasons are {}", listed.join(", ")),
        };
        let d = Diagnostic::new(
            codes::E0408,
            self.at(reason.span),
            format!(
                "`{}` can never exit with reason {:?}",
                flow.name, reason.value
            ),
        )
        .with_primary_label("not a reason this flow can exit with")
        .with_help(help);
        self.report(d);
    }

    fn known_flow(&mut self, name: &ast::Ident) {
        if let Some(&i) = self.flow_names.get(name.name.as_str()) {
            let sym = self.flows[i].symbol;
            self.use_symbol(self.at(name.span), sym);
            return;
        }
        let mut names: Vec<&str> = self.flow_names.keys().copied().collect();
        names.sort_unstable();
        let d = self.unknown(codes::E0208, "flow", &name.name, self.at(name.span), names);
        self.report(d);
    }

    fn known_message(&mut self, name: &ast::Ident) -> Option<usize> {
        if let Some(&i) = self.message_names.get(name.name.as_str()) {
            let sym = self.messages[i].symbol;
            self.use_symbol(self.at(name.span), sym);
            return Some(i);
        }
        let mut names: Vec<&str> = self.message_names.keys().copied().collect();
        names.sort_unstable();
        let d = self.unknown(
            codes::E0203,
            "message",
            &name.name,
            self.at(name.span),
            names,
        );
        self.report(d);
        None
    }

    /// A record of a message's content keys, for `expect send m where content.subject == …`.
    fn content_record(&mut self, idx: usize) -> RecordId {
        let decl = self.messages[idx].decl;
        let mut rec = RecordDef::new(
            format!("content of {}", decl.name.name),
            RecordKind::Synthetic,
            None,
        );
        for c in &decl.content {
            let _ = rec.add_field(FieldDef {
                name: c.key.name.clone(),
                ty: Ty::String,
                at: Some(FileSpan::new(self.messages[idx].file, c.key.span)),
                symbol: None,
            });
        }
        self.an.types.add_record(rec)
    }

    pub(crate) fn check_tests(&mut self) {
        let files = self.files;
        for (file, parsed) in files {
            for item in &parsed.file.items {
                let Item::Test(t) = item else { continue };
                let ctx = Ctx {
                    trigger: TriggerCtx::Unavailable("a test"),
                    event: None,
                    exit_on: false,
                    lenient: true,
                    customer: false,
                    links: false,
                };
                let saved = self.save(*file, ctx);
                for stmt in &t.stmts {
                    self.test_stmt(&stmt.kind, *file);
                }
                self.restore(saved);
            }
        }
    }

    fn test_stmt(&mut self, kind: &'a TestStmtKind, _file: FileId) {
        let profile = self.profile;
        match kind {
            TestStmtKind::Given { props, .. } => self.props(Some(profile), props),
            TestStmtKind::At { call, .. } => match call {
                TestCall::Track { event, props, .. } => {
                    let rid = self.test_event(event);
                    self.props(rid, props);
                }
                TestCall::Identify { props, .. } => self.props(Some(profile), props),
                TestCall::Page { props, .. } => {
                    // A page call is a track of "Page Viewed" when the stdlib declares it.
                    let rid = self.wire.get("Page Viewed").copied();
                    self.props(rid, props)
                }
                TestCall::Alias { .. } => {}
            },
            TestStmtKind::Run(d) => self.positive_duration(d, "a test run"),
            TestStmtKind::Expect(x) => match &x.kind {
                ExpectKind::Send {
                    message, predicate, ..
                } => {
                    let Some(idx) = self.known_message(message) else {
                        return;
                    };
                    if !x.negated && !self.sent.contains(&message.name) {
                        let decl = self.symbol_at_decl(self.messages[idx].symbol);
                        let d = Diagnostic::new(
                            codes::E0408,
                            self.at(message.span),
                            format!("`expect send {}` can never be satisfied", message.name),
                        )
                        .with_primary_label("no flow sends this message")
                        .with_label(decl, format!("`{}` is declared here", message.name))
                        .with_help(format!(
                            "send it from a flow with `send {}(…)`, or expect `no send`",
                            message.name
                        ));
                        self.report(d);
                    }
                    if let Some(p) = predicate {
                        let rid = self.content_record(idx);
                        let before = self.locals.len();
                        let ident = ast::Ident {
                            name: "content".into(),
                            span: message.span,
                        };
                        self.push_local(&ident, Ty::Record(rid), SymbolKind::Local);
                        self.condition(p);
                        self.locals.truncate(before);
                    }
                }
                ExpectKind::Exit { flow, reason } => {
                    self.known_flow(flow);
                    if let Some(reason) = reason {
                        self.exit_reason(flow, reason);
                    }
                }
                ExpectKind::Conversion { flow } => self.known_flow(flow),
                ExpectKind::Decision {
                    message, outcome, ..
                } => {
                    self.known_message(message);
                    if !OUTCOMES.contains(&outcome.name.as_str()) {
                        let d = self
                            .unknown(codes::E0408, "outcome", &outcome.name, self.at(outcome.span), OUTCOMES.iter().copied())
                            .with_primary_label(
                                "the outcomes are `sent`, `deferred`, `skipped` (or `capped`), `suppressed` and `blocked`",
                            );
                        self.report(d);
                    }
                }
                ExpectKind::Profile { field, value, .. } => match self.profile_field(field) {
                    Some(ty) => {
                        self.expect(value, &ty);
                    }
                    None => {
                        self.infer(value);
                    }
                },
                ExpectKind::Audience { name, .. } => {
                    if !x.negated && !self.audiences_added.contains(&name.value) {
                        let d = Diagnostic::new(
                            codes::E0408,
                            self.at(name.span),
                            format!("`expect audience {:?}` can never be satisfied", name.value),
                        )
                        .with_primary_label("no flow adds customers to this audience")
                        .with_help(format!(
                            "add them from a flow with `audience add {:?}`, or expect `no audience`",
                            name.value
                        ));
                        self.report(d);
                    }
                }
            },
            TestStmtKind::Error => {}
        }
    }
}

/// Where a template variable first appears inside a `{{ }}` or `{% %}` tag,
/// so the diagnostic can point at it; the start of the file when not found.
fn find_variable(text: &str, name: &str) -> Span {
    let bytes = text.as_bytes();
    let mut search = 0;
    while let Some(open) = text[search..].find(['{']).map(|i| i + search) {
        let kind = bytes.get(open + 1).copied();
        let close = match kind {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            _ => {
                search = open + 1;
                continue;
            }
        };
        let body_start = open + 2;
        let end = text[body_start..]
            .find(close)
            .map(|i| i + body_start)
            .unwrap_or(text.len());
        let body = &text[body_start..end];
        let mut from = 0;
        while let Some(i) = body[from..].find(name).map(|i| i + from) {
            let before = body[..i].chars().next_back();
            let after = body[i + name.len()..].chars().next();
            let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            let after_dot = before == Some('.');
            if !is_word(before) && !is_word(after) && !after_dot {
                let s = body_start + i;
                return Span::new(s, s + name.len());
            }
            from = i + name.len();
        }
        search = end;
        if search >= text.len() {
            break;
        }
    }
    Span::new(0, 0)
}

#[cfg(test)]
mod tests {
    use super::find_variable;
    use nudge_diagnostics::Span;

    #[test]
    fn finds_variables_inside_tags_only() {
        let t = "Hello name, {{ user.name }} and {{ name }}";
        assert_eq!(find_variable(t, "name"), Span::new(35, 39));
        assert_eq!(
            find_variable("{% for p in products %}", "products"),
            Span::new(12, 20)
        );
        assert_eq!(find_variable("nothing", "x"), Span::new(0, 0));
    }
}
