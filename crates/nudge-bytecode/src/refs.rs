//! References between the parts of a bundle: the per-flow version hash and
//! the consistency check of decoded bundles.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::bundle::*;
use crate::instr::Instr;
use crate::value::{Type, Value};
use crate::wire::{encode_flow_for_hash, encode_part};

/// What a bundle-level index refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RefKind {
    Schema,
    Enum,
    Let,
    Segment,
    Message,
    Builtin,
    /// A profile field: depends on the profile schema, holds no schema index.
    Profile,
}

type Visit<'a> = dyn FnMut(RefKind, &mut u32) + 'a;

fn visit_u16(k: RefKind, x: &mut u16, f: &mut Visit) {
    let mut v = u32::from(*x);
    f(k, &mut v);
    *x = u16::try_from(v).unwrap_or(u16::MAX);
}

fn visit_type(t: &mut Type, f: &mut Visit) {
    match t {
        Type::List(t) | Type::Optional(t) => visit_type(t, f),
        Type::Record(i) => f(RefKind::Schema, i),
        Type::Enum(i) => f(RefKind::Enum, i),
        _ => {}
    }
}

fn visit_unit(u: &mut Unit, f: &mut Visit) {
    for b in &mut u.blocks {
        for i in &mut b.code {
            match i {
                Instr::LoadProfileField(_) | Instr::SetProfile(_) | Instr::LoadProfile => {
                    f(RefKind::Profile, &mut 0)
                }
                Instr::LoadField { schema, .. } | Instr::LoadFieldOpt { schema, .. } => {
                    f(RefKind::Schema, schema)
                }
                Instr::LoadLet(n) => f(RefKind::Let, n),
                Instr::EvalSegment(n) => f(RefKind::Segment, n),
                Instr::Call { builtin, .. } | Instr::CallLambda { builtin, .. } => {
                    visit_u16(RefKind::Builtin, builtin, f)
                }
                Instr::CallEvent { builtin, event, .. } => {
                    visit_u16(RefKind::Builtin, builtin, f);
                    f(RefKind::Schema, event);
                }
                Instr::Send { message, .. } => f(RefKind::Message, message),
                _ => {}
            }
        }
    }
}

fn visit_rule(r: &mut EventRule, f: &mut Visit) {
    f(RefKind::Schema, &mut r.event);
}

fn visit_flow(fl: &mut Flow, f: &mut Visit) {
    match &mut fl.trigger {
        Trigger::Event(r) => visit_rule(r, f),
        Trigger::Schedule { segment, .. } => {
            if let Some(s) = segment {
                f(RefKind::Segment, s);
            }
        }
        Trigger::DateProperty { .. } => f(RefKind::Profile, &mut 0),
        Trigger::Entering { segment } => f(RefKind::Segment, segment),
    }
    for r in &mut fl.exit_on {
        visit_rule(r, f);
    }
    if let Some(g) = &mut fl.goal {
        visit_rule(&mut g.rule, f);
    }
    for w in &mut fl.waits {
        for e in &mut w.events {
            f(RefKind::Schema, &mut e.event);
        }
        f(RefKind::Schema, &mut w.schema);
    }
    visit_unit(&mut fl.unit, f);
}

fn visit_message(m: &mut Message, f: &mut Visit) {
    for p in &mut m.params {
        visit_type(&mut p.ty, f);
    }
    for c in &mut m.content {
        if let ContentValue::Template(t) = &mut c.value {
            for (_, l) in &mut t.lets {
                f(RefKind::Let, l);
            }
        }
    }
    visit_unit(&mut m.unit, f);
}

fn visit_global(g: &mut Global, f: &mut Visit) {
    visit_type(&mut g.ty, f);
    visit_unit(&mut g.unit, f);
}

fn visit_schema(s: &mut Schema, f: &mut Visit) {
    for fd in &mut s.fields {
        visit_type(&mut fd.ty, f);
    }
}

fn strip_positions(u: &mut Unit) {
    for b in &mut u.blocks {
        b.pos.clear();
    }
}

/// Renumbers what a flow uses in order of first use, so that its hash does
/// not depend on where the things it uses sit in the bundle's tables.
struct Linker {
    profile: u32,
    order: Vec<(RefKind, u32)>,
    local: HashMap<(RefKind, u32), u32>,
}

impl Linker {
    fn remap(&mut self, kind: RefKind, index: &mut u32) {
        let key = match kind {
            RefKind::Profile => (RefKind::Schema, self.profile),
            k => (k, *index),
        };
        let next = self.order.len() as u32;
        let local = *self.local.entry(key).or_insert_with(|| {
            self.order.push(key);
            next
        });
        if kind != RefKind::Profile {
            *index = local;
        }
    }
}

impl Bundle {
    /// The version hash of flow `index`: the first 8 bytes, in hex, of the
    /// SHA-256 of the flow's encoded header and code together with every
    /// message, segment, let, schema, enum and builtin it uses, directly or
    /// not. Source positions and table order are left out, so moving code
    /// around or editing another flow does not change it.
    pub fn flow_version(&self, index: usize) -> Option<String> {
        let mut flow = self.flows.get(index)?.clone();
        flow.version.clear();
        strip_positions(&mut flow.unit);
        let mut link = Linker {
            profile: self.profile,
            order: Vec::new(),
            local: HashMap::new(),
        };
        visit_flow(&mut flow, &mut |k, i| link.remap(k, i));
        let mut h = Sha256::new();
        h.update(b"nudge flow version 1\0");
        // Local names are left out: renaming a local leaves the code, and so
        // what every sleeping instance's frame means, exactly as it was. A
        // rename then changes no idempotency key and forces no carry-over at
        // a deploy (the instances simply keep running the same code). It also
        // keeps every version the same as before format 2 added the names.
        let body = encode_flow_for_hash(&flow);
        h.update((body.len() as u64).to_le_bytes());
        h.update(&body);
        let mut next = 0;
        while let Some(&(kind, global)) = link.order.get(next) {
            next += 1;
            let g = global as usize;
            let mut f = |k, i: &mut u32| link.remap(k, i);
            let bytes = match kind {
                RefKind::Schema => self.schemas.get(g).map(|s| {
                    let mut s = s.clone();
                    visit_schema(&mut s, &mut f);
                    encode_part(&s)
                }),
                RefKind::Enum => self.enums.get(g).map(encode_part),
                RefKind::Let | RefKind::Segment => {
                    let table = if kind == RefKind::Let {
                        &self.lets
                    } else {
                        &self.segments
                    };
                    table.get(g).map(|x| {
                        let mut x = x.clone();
                        strip_positions(&mut x.unit);
                        visit_global(&mut x, &mut f);
                        encode_part(&x)
                    })
                }
                RefKind::Message => self.messages.get(g).map(|m| {
                    let mut m = m.clone();
                    strip_positions(&mut m.unit);
                    visit_message(&mut m, &mut f);
                    encode_part(&m)
                }),
                RefKind::Builtin => self.builtins.get(g).map(encode_part),
                RefKind::Profile => None,
            };
            let bytes = bytes.unwrap_or_default();
            h.update([kind as u8]);
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        let digest = h.finalize();
        Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Sets every flow's [`Flow::version`].
    pub fn compute_versions(&mut self) {
        for i in 0..self.flows.len() {
            let v = self.flow_version(i).unwrap_or_default();
            self.flows[i].version = v;
        }
    }

    /// Checks that every index in the bundle points at something that exists
    /// and that instructions stand in blocks where they can run, so the
    /// runtime may index its tables without checking again.
    pub fn validate(&self) -> Result<(), String> {
        let cx = Check { b: self };
        // Names are bound to implementations once, at load: an unknown one is
        // refused here rather than failing the first instance that calls it.
        if let Some(name) = self.builtins.iter().find(|n| {
            nudge_stdlib::Builtin::from_name(n).is_none() && crate::Escape::of_builtin(n).is_none()
        }) {
            return Err(format!(
                "it calls builtin `{name}`, which this nudge does not have; rebuild the bundle with this nudge"
            ));
        }
        if self.schemas.get(self.profile as usize).map(|s| s.kind) != Some(SchemaKind::Profile) {
            return Err("the profile schema is missing".into());
        }
        for (i, s) in self.schemas.iter().enumerate() {
            for fd in &s.fields {
                cx.ty(&fd.ty)
                    .and_then(|_| fd.default.as_ref().map_or(Ok(()), |v| cx.value(v)))
                    .map_err(|e| format!("schema {i} ({}): {e}", s.name))?;
            }
        }
        for (kind, table) in [("let", &self.lets), ("segment", &self.segments)] {
            for g in table {
                cx.ty(&g.ty)
                    .and_then(|_| cx.unit(&g.unit, None))
                    .map_err(|e| format!("{kind} {}: {e}", g.name))?;
                if g.unit.blocks.is_empty() {
                    return Err(format!("{kind} {} has no code", g.name));
                }
            }
        }
        let mut last = None;
        for c in &self.change_points {
            if c.segment as usize >= self.segments.len() || last >= Some(c.segment) {
                return Err(format!(
                    "the change points of segment {} are out of place",
                    c.segment
                ));
            }
            last = Some(c.segment);
            if c.unit.blocks.iter().any(|b| b.kind != BlockKind::Expr) {
                return Err(format!(
                    "the change points of segment {} hold a block that is not an expression",
                    c.segment
                ));
            }
            cx.unit(&c.unit, None)
                .map_err(|e| format!("change points of segment {}: {e}", c.segment))?;
        }
        for m in &self.messages {
            cx.message(m)
                .map_err(|e| format!("message {}: {e}", m.name))?;
        }
        for fl in &self.flows {
            cx.flow(fl).map_err(|e| format!("flow {}: {e}", fl.name))?;
        }
        self.validate_retention()
    }

    /// Checks that the retention has one entry per schema, names flows that
    /// exist, and declares at least what the code reads back: the runtime
    /// forgets what it does not declare, so less would lose events a rule reads.
    fn validate_retention(&self) -> Result<(), String> {
        let r = &self.retention;
        if r.events.len() != self.schemas.len() {
            return Err(format!(
                "the retention has {} schemas, the bundle {}",
                r.events.len(),
                self.schemas.len()
            ));
        }
        if r.sends < 0 {
            return Err(format!("the retention of sends is negative ({})", r.sends));
        }
        let needed = crate::Retention::derive(self);
        for (i, (has, needs)) in r.events.iter().zip(&needed.events).enumerate() {
            let name = &self.schemas[i].name;
            for f in has.instances.iter().chain(&has.goals) {
                within("flow", *f, self.flows.len())
                    .map_err(|e| format!("retention of {name}: {e}"))?;
            }
            let missing =
                |has: &[u32], needs: &[u32]| needs.iter().find(|f| !has.contains(f)).copied();
            if has.within < 0 {
                return Err(format!(
                    "the retention of {name} has a negative window ({}s)",
                    has.within
                ));
            }
            let lacks = if needs.forever && !has.forever {
                Some("segments and lets".to_string())
            } else if !has.forever && has.within < needs.within {
                Some(format!(
                    "segments and lets reading {}s back (it keeps {}s)",
                    needs.within, has.within
                ))
            } else if let Some(f) = missing(&has.instances, &needs.instances) {
                Some(format!("instances of flow {}", self.flows[f as usize].name))
            } else {
                missing(&has.goals, &needs.goals)
                    .map(|f| format!("the goal of flow {}", self.flows[f as usize].name))
            };
            if let Some(lacks) = lacks {
                return Err(format!(
                    "the retention of {name} leaves out {lacks}, which read it back"
                ));
            }
        }
        if r.sends < needed.sends {
            return Err(format!(
                "the retention of sends ({}s) is shorter than the longest cap ({}s)",
                r.sends, needed.sends
            ));
        }
        Ok(())
    }
}

struct Check<'a> {
    b: &'a Bundle,
}

fn within(what: &str, i: u32, len: usize) -> Result<(), String> {
    if (i as usize) < len {
        Ok(())
    } else {
        Err(format!("{what} {i} out of range (there are {len})"))
    }
}

impl Check<'_> {
    fn ty(&self, t: &Type) -> Result<(), String> {
        match t {
            Type::List(t) | Type::Optional(t) => self.ty(t),
            Type::Record(i) => within("schema", *i, self.b.schemas.len()),
            Type::Enum(i) => within("enum", *i, self.b.enums.len()),
            _ => Ok(()),
        }
    }

    fn value(&self, v: &Value) -> Result<(), String> {
        match v {
            Value::List(items) => items.iter().try_for_each(|v| self.value(v)),
            Value::Record(r) => {
                within("schema", r.schema, self.b.schemas.len())?;
                r.fields.iter().try_for_each(|v| self.value(v))
            }
            _ => Ok(()),
        }
    }

    fn profile_field(&self, n: u16) -> Result<(), String> {
        let len = self.b.schemas[self.b.profile as usize].fields.len();
        within("profile field", u32::from(n), len)
    }

    fn unit(&self, u: &Unit, flow: Option<&Flow>) -> Result<(), String> {
        for c in &u.consts {
            self.value(c)?;
        }
        for (bi, b) in u.blocks.iter().enumerate() {
            self.block(u, b, flow)
                .map_err(|e| format!("block {bi}: {e}"))?;
        }
        Ok(())
    }

    fn block(&self, u: &Unit, b: &Block, flow: Option<&Flow>) -> Result<(), String> {
        if b.pos.len() != b.code.len() {
            return Err("the position table does not match the code".into());
        }
        for p in &b.params {
            within("local", u32::from(*p), usize::from(u.slots))?;
        }
        if flow.is_none() && b.kind == BlockKind::Steps {
            return Err("steps outside a flow".into());
        }
        let len = b.code.len();
        let steps = b.kind == BlockKind::Steps;
        match b.code.last() {
            Some(Instr::End | Instr::Exit) if steps => {}
            Some(Instr::Return) if !steps => {}
            _ => return Err("the block does not end with `end` or `return`".into()),
        }
        let blocks = u.blocks.len();
        let schemas = self.b.schemas.len();
        for (pc, i) in b.code.iter().enumerate() {
            let step_only = matches!(
                i,
                Instr::Step(_)
                    | Instr::Wait(_)
                    | Instr::WaitUntil
                    | Instr::WaitFor(_)
                    | Instr::Send { .. }
                    | Instr::SetProfile(_)
                    | Instr::AudienceAdd(_)
                    | Instr::AudienceRemove(_)
                    | Instr::Split(_)
                    | Instr::Exit
                    | Instr::End
            );
            if step_only && !steps {
                return Err(format!("`{}` at {pc} outside a flow's steps", i.mnemonic()));
            }
            if matches!(i, Instr::Return) && steps {
                return Err(format!("`return` at {pc} in a flow's steps"));
            }
            match *i {
                Instr::Const(n) | Instr::AudienceAdd(n) | Instr::AudienceRemove(n) => {
                    within("constant", n, u.consts.len())?
                }
                Instr::LoadLocal(n) | Instr::StoreLocal(n) => {
                    within("local", u32::from(n), usize::from(u.slots))?
                }
                Instr::LoadProfileField(n) | Instr::SetProfile(n) => self.profile_field(n)?,
                Instr::LoadField { schema, field } | Instr::LoadFieldOpt { schema, field } => {
                    within("schema", schema, schemas)?;
                    let fields = self.b.schemas[schema as usize].fields.len();
                    within("field", u32::from(field), fields)?;
                }
                Instr::LoadLet(n) => within("let", n, self.b.lets.len())?,
                Instr::EvalSegment(n) => within("segment", n, self.b.segments.len())?,
                Instr::Call { builtin, .. } => {
                    within("builtin", u32::from(builtin), self.b.builtins.len())?
                }
                Instr::CallLambda { builtin, block, .. } => {
                    within("builtin", u32::from(builtin), self.b.builtins.len())?;
                    within("block", block, blocks)?;
                    if u.blocks[block as usize].kind != BlockKind::Lambda {
                        return Err(format!("block {block} is not a lambda"));
                    }
                }
                Instr::CallEvent {
                    builtin,
                    event,
                    block,
                } => {
                    within("builtin", u32::from(builtin), self.b.builtins.len())?;
                    within("schema", event, schemas)?;
                    if let Some(block) = block {
                        within("block", block, blocks)?;
                    }
                }
                Instr::Jump(t)
                | Instr::JumpIfFalse(t)
                | Instr::JumpIfTrue(t)
                | Instr::JumpIfNotNone(t) => within("jump target", t, len)?,
                Instr::Step(n) => within("step", u32::from(n), flow.map_or(0, |f| f.steps.len()))?,
                Instr::WaitFor(n) => {
                    within("wait", u32::from(n), flow.map_or(0, |f| f.waits.len()))?
                }
                Instr::Split(n) => {
                    let splits = flow.map_or(&[][..], |f| &f.splits[..]);
                    within("split", u32::from(n), splits.len())?;
                    for arm in &splits[usize::from(n)].arms {
                        within("split target", arm.target, len)?;
                    }
                }
                Instr::Send { message, given } => {
                    within("message", message, self.b.messages.len())?;
                    let params = self.b.messages[message as usize].params.len();
                    if params < 64 && given >> params != 0 {
                        return Err(format!("send at {pc} gives parameters the message lacks"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn block_ref(&self, u: &Unit, n: u32, kind: BlockKind) -> Result<(), String> {
        within("block", n, u.blocks.len())?;
        if u.blocks[n as usize].kind != kind {
            return Err(format!("block {n} is not a {kind:?} block"));
        }
        Ok(())
    }

    fn rule(&self, u: &Unit, r: &EventRule) -> Result<(), String> {
        within("schema", r.event, self.b.schemas.len())?;
        if let Some(p) = r.predicate {
            self.block_ref(u, p, BlockKind::Expr)?;
        }
        Ok(())
    }

    fn message(&self, m: &Message) -> Result<(), String> {
        if m.params.len() > 64 {
            return Err("more than 64 parameters".into());
        }
        if usize::from(m.unit.slots) < m.params.len() {
            return Err("fewer local slots than parameters".into());
        }
        for p in &m.params {
            self.ty(&p.ty)?;
            if let Some(d) = p.default {
                self.block_ref(&m.unit, d, BlockKind::Expr)?;
            }
        }
        for c in &m.content {
            match &c.value {
                ContentValue::Code(b) => self.block_ref(&m.unit, *b, BlockKind::Expr)?,
                ContentValue::Template(t) => {
                    for (_, l) in &t.lets {
                        within("let", *l, self.b.lets.len())?;
                    }
                }
            }
        }
        self.unit(&m.unit, None)
    }

    fn flow(&self, fl: &Flow) -> Result<(), String> {
        let u = &fl.unit;
        if u.blocks.first().map(|b| b.kind) != Some(BlockKind::Steps) {
            return Err("block 0 is not the flow's steps".into());
        }
        if fl.locals > u.slots {
            return Err("more persistent locals than slots".into());
        }
        if fl.local_names.len() != usize::from(fl.locals) {
            return Err(format!(
                "{} local names for {} persistent locals",
                fl.local_names.len(),
                fl.locals
            ));
        }
        for l in &fl.local_names {
            within("declaring step", u32::from(l.step), fl.steps.len())?;
        }
        match &fl.trigger {
            Trigger::Event(r) => self.rule(u, r)?,
            Trigger::Schedule { segment, .. } => {
                if let Some(s) = segment {
                    within("segment", *s, self.b.segments.len())?;
                }
            }
            Trigger::DateProperty { field, .. } => self.profile_field(*field)?,
            Trigger::Entering { segment } => within("segment", *segment, self.b.segments.len())?,
        }
        for r in &fl.exit_on {
            self.rule(u, r)?;
        }
        for b in fl.exit_if.iter().chain(&fl.suppress) {
            self.block_ref(u, *b, BlockKind::Expr)?;
        }
        if let Some(g) = &fl.goal {
            self.rule(u, &g.rule)?;
        }
        if let Some(b) = fl.on_exit {
            self.block_ref(u, b, BlockKind::Steps)?;
        }
        for w in &fl.waits {
            within("schema", w.schema, self.b.schemas.len())?;
            let shared = self.b.schemas[w.schema as usize].fields.len();
            for e in &w.events {
                within("schema", e.event, self.b.schemas.len())?;
                let fields = self.b.schemas[e.event as usize].fields.len();
                if let Some(p) = &e.project {
                    if p.len() != shared {
                        return Err("a wait's projection does not fit its schema".into());
                    }
                    for x in p {
                        within("field", u32::from(*x), fields)?;
                    }
                }
            }
            if let Some(p) = w.predicate {
                self.block_ref(u, p, BlockKind::Expr)?;
            }
            if let Some(slot) = w.bind {
                within("persistent local", u32::from(slot), usize::from(fl.locals))?;
            }
        }
        for s in &fl.steps {
            within("block", s.block, u.blocks.len())?;
            let code = &u.blocks[s.block as usize].code;
            within("step position", s.pc, code.len())?;
        }
        self.unit(u, Some(fl))
    }
}
