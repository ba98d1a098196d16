//! The human listing of a bundle (`nudge disasm`).

use std::fmt::Write;

use crate::bundle::*;
use crate::instr::Instr;
use crate::value::{Type, Value, format_duration};
use crate::wire::FORMAT_VERSION;

/// Lists a bundle: header, tables, and each unit's code with every
/// instruction annotated by its source position. `source` gives a file's
/// text by path when it can be read; lines are then quoted.
pub fn disassemble(bundle: &Bundle, source: &dyn Fn(&str) -> Option<String>) -> String {
    let lines: Vec<Option<Vec<String>>> = bundle
        .files
        .iter()
        .map(|p| source(p).map(|t| t.lines().map(|l| l.trim().to_string()).collect()))
        .collect();
    let mut d = Disasm {
        b: bundle,
        lines,
        out: String::new(),
    };
    d.all();
    d.out
}

struct Disasm<'a> {
    b: &'a Bundle,
    lines: Vec<Option<Vec<String>>>,
    out: String,
}

fn hm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

impl Disasm<'_> {
    fn line(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }

    fn all(&mut self) {
        let b = self.b;
        self.line(format!("nudge bundle, format {FORMAT_VERSION}"));
        self.line(format!("files ({}):", b.files.len()));
        for (i, f) in b.files.iter().enumerate() {
            self.line(format!("  {i}  {f}"));
        }
        let count = |k: SchemaKind| b.schemas.iter().filter(|s| s.kind == k).count();
        self.line(format!(
            "schemas: {} ({} events, {} records, {} profile, {} shared); enums: {}",
            b.schemas.len(),
            count(SchemaKind::Event),
            count(SchemaKind::Record),
            count(SchemaKind::Profile),
            count(SchemaKind::Shared),
            b.enums.len()
        ));
        let profile = &b.schemas[b.profile as usize];
        let custom: Vec<String> = profile
            .fields
            .iter()
            .map(|f| {
                let mut s = format!("{}: {}", f.name, self.ty(&f.ty));
                if let Some(v) = &f.default {
                    let _ = write!(s, " = {v}");
                }
                s
            })
            .collect();
        self.line(format!("profile: {}", custom.join(", ")));
        self.line(format!("builtins: {}", b.builtins.join(", ")));
        self.policy();
        self.retention();
        for g in &b.lets {
            self.line("");
            self.line(format!("let {}: {}", g.name, self.ty(&g.ty)));
            self.unit(&g.unit, None);
        }
        for g in &b.segments {
            self.line("");
            self.line(format!("segment {}", g.name));
            self.unit(&g.unit, None);
        }
        for c in &b.change_points {
            self.line("");
            let name = self.global_name(&b.segments, c.segment);
            self.line(format!("changes of segment {name}"));
            self.unit(&c.unit, None);
        }
        for m in &b.messages {
            self.line("");
            self.message(m);
        }
        for f in &b.flows {
            self.line("");
            self.flow(f);
        }
    }

    fn policy(&mut self) {
        let p = &self.b.policy;
        self.line("policy:");
        if let Some(tz) = &p.timezone {
            self.line(format!("  timezone {tz:?}"));
        }
        for q in &p.quiet {
            self.line(format!("  {}", quiet(q)));
        }
        for c in &p.caps {
            self.line(format!("  {}", cap(c)));
        }
        for s in &p.suppress_lists {
            self.line(format!("  suppress list {s:?}"));
        }
        if let Some(c) = &p.currency {
            self.line(format!("  currency {c:?}"));
        }
    }

    /// Who reads each event kind back, hence how long it is kept.
    fn retention(&mut self) {
        let b = self.b;
        let r = &b.retention;
        self.line("retention:");
        let sends = if r.sends > 0 {
            format!("  sends: {} (caps)", format_duration(r.sends))
        } else {
            "  sends: while their flow's instances and goals live".to_string()
        };
        self.line(sends);
        let flows = |fs: &[u32]| -> String {
            fs.iter()
                .map(|&f| b.flows.get(f as usize).map_or("?", |fl| fl.name.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, s) in b.schemas.iter().enumerate() {
            if s.kind != SchemaKind::Event {
                continue;
            }
            let Some(readers) = r.events.get(i) else {
                continue;
            };
            let mut parts = Vec::new();
            if readers.forever {
                parts.push("for ever (segments, lets)".to_string());
            } else if readers.within > 0 {
                parts.push(format!(
                    "{} before now (segments, lets)",
                    format_duration(readers.within)
                ));
            }
            if !readers.instances.is_empty() {
                parts.push(format!(
                    "while instances live: {}",
                    flows(&readers.instances)
                ));
            }
            if !readers.goals.is_empty() {
                let windows: Vec<String> = readers
                    .goals
                    .iter()
                    .filter_map(|&f| {
                        let fl = b.flows.get(f as usize)?;
                        let g = fl.goal.as_ref()?;
                        Some(format!("{} {}", fl.name, format_duration(g.within)))
                    })
                    .collect();
                parts.push(format!("goal windows: {}", windows.join(", ")));
            }
            if parts.is_empty() {
                parts.push("not kept".to_string());
            }
            self.line(format!("  {}: {}", s.name, parts.join("; ")));
        }
    }

    fn ty(&self, t: &Type) -> String {
        match t {
            Type::Bool => "bool".into(),
            Type::Int => "int".into(),
            Type::Decimal => "decimal".into(),
            Type::Money => "money".into(),
            Type::Percent => "percent".into(),
            Type::String => "string".into(),
            Type::Duration => "duration".into(),
            Type::Time => "time".into(),
            Type::Date => "date".into(),
            Type::TimeOfDay => "time_of_day".into(),
            Type::Timezone => "timezone".into(),
            Type::List(t) => format!("list<{}>", self.ty(t)),
            Type::Optional(t) => format!("{}?", self.ty(t)),
            Type::Record(i) => self.schema_name(*i),
            Type::Enum(i) => self
                .b
                .enums
                .get(*i as usize)
                .map_or_else(|| format!("enum#{i}"), |e| e.name.clone()),
        }
    }

    fn schema_name(&self, i: u32) -> String {
        match self.b.schemas.get(i as usize) {
            // Shared-field records are named `a | b`: bracket them before `.field`.
            Some(s) if s.kind == SchemaKind::Shared => format!("({})", s.name),
            Some(s) => s.name.clone(),
            None => format!("schema#{i}"),
        }
    }

    fn field_name(&self, schema: u32, field: u16) -> String {
        self.b
            .schemas
            .get(schema as usize)
            .and_then(|s| s.fields.get(usize::from(field)))
            .map_or_else(|| format!("#{field}"), |f| f.name.clone())
    }

    fn rule(&self, r: &EventRule) -> String {
        let mut s = self.schema_name(r.event);
        if let Some(p) = r.predicate {
            let _ = write!(s, " where block {p}");
        }
        s
    }

    fn message(&mut self, m: &Message) {
        let params: Vec<String> = m
            .params
            .iter()
            .map(|p| match p.default {
                Some(d) => format!("{}: {} = block {d}", p.name, self.ty(&p.ty)),
                None => format!("{}: {}", p.name, self.ty(&p.ty)),
            })
            .collect();
        let purpose = match m.purpose {
            Purpose::Marketing => "marketing",
            Purpose::Transactional => "transactional",
        };
        self.line(format!(
            "message {}({})  channel {}, {purpose}",
            m.name,
            params.join(", "),
            m.channel.name()
        ));
        for c in &m.content {
            match &c.value {
                ContentValue::Code(b) => self.line(format!("  {}: block {b}", c.key)),
                ContentValue::Template(t) => {
                    let lets: Vec<&str> = t.lets.iter().map(|(n, _)| n.as_str()).collect();
                    self.line(format!(
                        "  {}: template {:?} ({} bytes{})",
                        c.key,
                        t.path,
                        t.source.len(),
                        if lets.is_empty() {
                            String::new()
                        } else {
                            format!("; lets {}", lets.join(", "))
                        }
                    ))
                }
            }
        }
        self.unit(&m.unit, None);
    }

    fn flow(&mut self, f: &Flow) {
        self.line(format!("flow {}  version {}", f.name, f.version));
        let trigger = match &f.trigger {
            Trigger::Event(r) => self.rule(r),
            Trigger::Schedule {
                cadence,
                at,
                local,
                segment,
            } => {
                let c = match cadence {
                    Cadence::Day => "every day".to_string(),
                    Cadence::Weekday(d) => ["monday", "tuesday", "wednesday", "thursday"]
                        .iter()
                        .chain(&["friday", "saturday", "sunday"])
                        .nth(usize::from(*d))
                        .map_or_else(|| format!("every weekday {d}"), |s| format!("every {s}")),
                    Cadence::Month(d) => format!("every month on {d}"),
                    Cadence::Once(d) => format!("once on {}", Value::Date(*d)),
                };
                let mut s = format!("{c} at {}", hm(*at));
                if *local {
                    s.push_str(" local");
                }
                if let Some(seg) = segment {
                    let _ = write!(s, " for {}", self.global_name(&self.b.segments, *seg));
                }
                s
            }
            Trigger::DateProperty {
                offset,
                field,
                yearly,
                at,
                grace,
            } => {
                let field = self.field_name(self.b.profile, *field);
                let mut s = match offset {
                    0 => format!("on profile.{field}"),
                    o if *o < 0 => format!("{} before profile.{field}", format_duration(-o)),
                    o => format!("{} after profile.{field}", format_duration(*o)),
                };
                if *yearly {
                    s.push_str(" every year");
                }
                if let Some(at) = at {
                    let _ = write!(s, " at {:02}:{:02}", at / 60, at % 60);
                }
                if let Some(g) = grace {
                    let _ = write!(s, " grace {}", format_duration(*g));
                }
                s
            }
            Trigger::Entering { segment } => {
                format!("entering {}", self.global_name(&self.b.segments, *segment))
            }
        };
        self.line(format!("  trigger {trigger}"));
        let entry = match f.entry {
            Entry::Single => "one live instance".to_string(),
            Entry::Once => "once".to_string(),
            Entry::OncePer(d) => format!("once per {}", format_duration(d)),
            Entry::Always => "always".to_string(),
        };
        self.line(format!("  entry {entry}"));
        for r in &f.exit_on {
            let s = self.rule(r);
            self.line(format!("  exit on {s}"));
        }
        for b in &f.exit_if {
            self.line(format!("  exit if block {b}"));
        }
        for b in &f.suppress {
            self.line(format!("  suppress if block {b}"));
        }
        for q in &f.quiet {
            self.line(format!("  {}", quiet(q)));
        }
        for c in &f.caps {
            self.line(format!("  {}", cap(c)));
        }
        if let Some(g) = &f.goal {
            let s = self.rule(&g.rule);
            self.line(format!("  goal {s} within {}", format_duration(g.within)));
        }
        if let Some(h) = f.holdout {
            self.line(format!("  holdout {h}%"));
        }
        self.line(format!("  priority {}", f.priority));
        if let Some(b) = f.on_exit {
            self.line(format!("  on exit block {b}"));
        }
        self.line(format!("  locals {} (frame {})", f.locals, f.unit.slots));
        for (slot, l) in f.local_names.iter().enumerate() {
            self.line(format!("  local {slot}: {} from step {}", l.name, l.step));
        }
        for (i, w) in f.waits.iter().enumerate() {
            let events: Vec<String> = w.events.iter().map(|e| self.schema_name(e.event)).collect();
            let mut s = format!(
                "  wait #{i}: for {} within {}",
                events.join(" or "),
                format_duration(w.within)
            );
            if let Some(p) = w.predicate {
                let _ = write!(s, " where block {p}");
            }
            if let Some(slot) = w.bind {
                let _ = write!(s, " -> local {slot}");
            }
            self.line(s);
        }
        for (i, sp) in f.splits.iter().enumerate() {
            let arms: Vec<String> = sp
                .arms
                .iter()
                .map(|a| match sp.optimise {
                    Some(_) => format!("{} -> {:04}", a.name, a.target),
                    None => format!("{}% {} -> {:04}", a.percent, a.name, a.target),
                })
                .collect();
            let how = match sp.optimise {
                Some(floor) => format!("optimise floor {floor}%: "),
                None => String::new(),
            };
            self.line(format!("  split #{i}: {how}{}", arms.join(", ")));
        }
        self.unit(&f.unit, Some(f));
    }

    fn global_name(&self, table: &[Global], i: u32) -> String {
        table
            .get(i as usize)
            .map_or_else(|| format!("#{i}"), |g| g.name.clone())
    }

    fn unit(&mut self, u: &Unit, flow: Option<&Flow>) {
        for (bi, b) in u.blocks.iter().enumerate() {
            let kind = match b.kind {
                BlockKind::Steps => "steps",
                BlockKind::Expr => "expr",
                BlockKind::Lambda => "lambda",
            };
            let params = if b.params.is_empty() {
                String::new()
            } else {
                let p: Vec<String> = b.params.iter().map(|p| format!("local {p}")).collect();
                format!(" ({})", p.join(", "))
            };
            self.line(format!("  block {bi} {kind}{params}:"));
            for (pc, instr) in b.code.iter().enumerate() {
                let text = self.instr(instr, u, flow);
                let note = b.pos.get(pc).map(|p| self.pos(p)).unwrap_or_default();
                let row = format!("    {pc:04}  {text:<40}");
                self.line(format!("{row} ; {note}").trim_end());
            }
        }
    }

    fn pos(&self, p: &Pos) -> String {
        let path = self
            .b
            .files
            .get(p.file as usize)
            .map_or("?", String::as_str);
        let text = self
            .lines
            .get(p.file as usize)
            .and_then(Option::as_ref)
            .and_then(|l| l.get((p.line as usize).wrapping_sub(1)));
        match text {
            Some(t) => format!("{path}:{}  {t}", p.line),
            None => format!("{path}:{}", p.line),
        }
    }

    fn constant(&self, u: &Unit, n: u32) -> String {
        match u.consts.get(n as usize) {
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() > 32 {
                    let cut: String = s.chars().take(29).collect();
                    format!("{cut}...")
                } else {
                    s
                }
            }
            None => format!("#{n}?"),
        }
    }

    fn instr(&self, i: &Instr, u: &Unit, flow: Option<&Flow>) -> String {
        let m = i.mnemonic();
        let b = self.b;
        let builtin = |n: u16| {
            b.builtins
                .get(usize::from(n))
                .map_or_else(|| format!("#{n}"), String::clone)
        };
        match *i {
            Instr::Const(n) => format!("{m} {}", self.constant(u, n)),
            Instr::AudienceAdd(n) | Instr::AudienceRemove(n) => {
                format!("{m} {}", self.constant(u, n))
            }
            Instr::LoadLocal(n) | Instr::StoreLocal(n) => format!("{m} {n}"),
            Instr::LoadProfileField(n) | Instr::SetProfile(n) => {
                format!("{m} {}", self.field_name(b.profile, n))
            }
            Instr::LoadField { schema, field } | Instr::LoadFieldOpt { schema, field } => {
                format!(
                    "{m} {}.{}",
                    self.schema_name(schema),
                    self.field_name(schema, field)
                )
            }
            Instr::LoadLet(n) => format!("{m} {}", self.global_name(&b.lets, n)),
            Instr::EvalSegment(n) => format!("{m} {}", self.global_name(&b.segments, n)),
            Instr::MakeList(n) => format!("{m} {n}"),
            Instr::Concat(n) => format!("{m} {n}"),
            Instr::Call { builtin: f, argc } => format!("{m} {} {argc}", builtin(f)),
            Instr::CallLambda {
                builtin: f,
                argc,
                block,
            } => format!("{m} {} {argc} block {block}", builtin(f)),
            Instr::CallEvent {
                builtin: f,
                event,
                block,
            } => match block {
                Some(bl) => format!("{m} {} {} block {bl}", builtin(f), self.schema_name(event)),
                None => format!("{m} {} {}", builtin(f), self.schema_name(event)),
            },
            Instr::Jump(t)
            | Instr::JumpIfFalse(t)
            | Instr::JumpIfTrue(t)
            | Instr::JumpIfNotNone(t) => format!("{m} {t:04}"),
            Instr::Step(n) => {
                let info = flow.and_then(|f| f.steps.get(usize::from(n)));
                match info {
                    Some(StepInfo {
                        label: Some(l),
                        what,
                        ..
                    }) => format!("{m} {n} {l}: {what}"),
                    Some(s) => format!("{m} {n} {}", s.what),
                    None => format!("{m} {n}"),
                }
            }
            Instr::Wait(s) => format!("{m} {}", format_duration(s)),
            Instr::WaitFor(n) | Instr::Split(n) => format!("{m} #{n}"),
            Instr::Send { message, given } => {
                let msg = b.messages.get(message as usize);
                let name = msg.map_or_else(|| format!("#{message}"), |x| x.name.clone());
                let args: Vec<&str> = msg
                    .map(|x| {
                        x.params
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| *i < 64 && given >> i & 1 == 1)
                            .map(|(_, p)| p.name.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{m} {name}({})", args.join(", "))
            }
            _ => m.to_string(),
        }
    }
}

fn quiet(q: &QuietHours) -> String {
    match q.channel {
        Some(c) => format!("quiet hours {} {} to {}", c.name(), hm(q.from), hm(q.to)),
        None => format!("quiet hours {} to {}", hm(q.from), hm(q.to)),
    }
}

fn cap(c: &Cap) -> String {
    let scope = match c.scope {
        CapScope::Marketing => "marketing",
        CapScope::Channel(ch) => ch.name(),
    };
    let then = match c.then {
        CapAction::Skip => "skip",
        CapAction::Defer => "defer",
    };
    format!(
        "cap {scope} {} per {} then {then}",
        c.count,
        format_duration(c.per)
    )
}
