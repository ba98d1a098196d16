//! The interpreter loop: runs one block of one unit on a value stack.

use std::sync::{Arc, OnceLock};

use nudge_bytecode::{Block, Instr, Unit, Value};
use rust_decimal::Decimal;

use crate::ops;
use crate::{Frame, Host, Scope, UnitRef, Vm, VmError, Yield, bad};

/// How deeply expression blocks may nest (lambdas in lets in segments ...).
const MAX_DEPTH: u32 = 64;

thread_local! {
    /// How many expression blocks run inside each other on this thread; per
    /// thread so that a `Vm` shared between threads counts each call chain alone.
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// How a block stopped.
pub(crate) enum Done {
    /// An expression or lambda block returned this value.
    Return(Value),
    /// A steps block yielded; the second field is the instruction to resume at.
    Yield(Yield, u32),
}

/// Pops the top of the stack; an empty stack means the code is malformed.
pub(crate) fn pop(stack: &mut Vec<Value>) -> Result<Value, VmError> {
    stack.pop().ok_or_else(|| bad("pop from an empty stack"))
}

/// Pops `n` values, first pushed first.
pub(crate) fn pop_n(stack: &mut Vec<Value>, n: usize) -> Result<Vec<Value>, VmError> {
    let at = stack
        .len()
        .checked_sub(n)
        .ok_or_else(|| bad(format!("{n} values wanted from a stack of {}", stack.len())))?;
    Ok(stack.split_off(at))
}

fn pop_bool(stack: &mut Vec<Value>) -> Result<bool, VmError> {
    match pop(stack)? {
        Value::Bool(b) => Ok(b),
        other => Err(bad(format!("expected a bool, found {other}"))),
    }
}

/// Grows `locals` to `slots` with `none`.
pub(crate) fn grow(locals: &mut Vec<Value>, slots: usize) {
    if locals.len() < slots {
        locals.resize(slots, Value::None);
    }
}

fn local_mut(locals: &mut Vec<Value>, slot: u16) -> &mut Value {
    let i = usize::from(slot);
    grow(locals, i + 1);
    &mut locals[i]
}

/// Whether bit `i` of a send's `given` mask is set; parameters past 64 are never given.
fn bit(given: u64, i: usize) -> bool {
    i < 64 && (given >> i) & 1 == 1
}

/// The cumulative bucket bound of a split arm: percent × 100, as bucket units.
fn arm_units(p: Decimal) -> u64 {
    p.checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|u| u64::try_from(u.round()).ok())
        .unwrap_or(0)
}

impl<'b> Vm<'b> {
    /// The unit a reference names.
    pub(crate) fn unit(&self, u: UnitRef) -> Result<&'b Unit, VmError> {
        let b = self.bundle;
        let found = match u {
            UnitRef::Flow(n) => b.flows.get(n as usize).map(|f| &f.unit),
            UnitRef::Message(n) => b.messages.get(n as usize).map(|m| &m.unit),
            UnitRef::Let(n) => b.lets.get(n as usize).map(|g| &g.unit),
            UnitRef::Segment(n) => b.segments.get(n as usize).map(|g| &g.unit),
            UnitRef::ChangePoints(n) => b.change_points.get(n as usize).map(|c| &c.unit),
        };
        found.ok_or_else(|| bad(format!("no unit {u:?}")))
    }

    fn block(&self, u: UnitRef, block: u32) -> Result<(&'b Unit, &'b Block), VmError> {
        let unit = self.unit(u)?;
        let b = unit
            .blocks
            .get(block as usize)
            .ok_or_else(|| bad(format!("{u:?} has no block {block}")))?;
        Ok((unit, b))
    }

    /// Runs an expression or lambda block to its `return`.
    pub(crate) fn eval_block(
        &self,
        unit: UnitRef,
        block: u32,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        grow(locals, usize::from(self.unit(unit)?.slots));
        // Checked code never nests deeply (lets and segments are acyclic), but a
        // malformed bundle could recurse forever; fail instead of overflowing the stack.
        let depth = DEPTH.get();
        if depth >= MAX_DEPTH {
            return Err(bad(
                "blocks nested too deeply (a cycle of lets or segments?)",
            ));
        }
        DEPTH.set(depth + 1);
        let r = self.exec(unit, block, 0, locals, scope, host);
        DEPTH.set(depth);
        match r? {
            Done::Return(v) => Ok(v),
            Done::Yield(..) => Err(bad("a step instruction in an expression block")),
        }
    }

    /// Runs a lambda block with `args` stored in its parameter slots.
    pub(crate) fn call_lambda(
        &self,
        unit: UnitRef,
        block: u32,
        args: &[Value],
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        let (_, b) = self.block(unit, block)?;
        if b.params.len() != args.len() {
            return Err(bad(format!(
                "a lambda of {} parameters called with {}",
                b.params.len(),
                args.len()
            )));
        }
        for (slot, arg) in b.params.iter().zip(args) {
            *local_mut(locals, *slot) = arg.clone();
        }
        self.eval_block(unit, block, locals, scope, host)
    }

    /// The value of top-level let `n`, computed on first use.
    pub(crate) fn let_value(&self, n: u32, host: &mut dyn Host) -> Result<Value, VmError> {
        let cell = self
            .lets
            .get(n as usize)
            .ok_or_else(|| bad(format!("no let {n}")))?;
        if let Some(v) = cell.as_ref().and_then(OnceLock::get) {
            return Ok(v.clone());
        }
        let mut locals = Vec::new();
        let v = self.eval_block(UnitRef::Let(n), 0, &mut locals, &Scope::default(), host)?;
        if let Some(cell) = cell {
            // A let whose code reads another let may have filled the cell meanwhile; both agree.
            let _ = cell.set(v.clone());
        }
        Ok(v)
    }

    /// Runs a flow's steps block from the frame until the next yield.
    pub(crate) fn steps(
        &self,
        flow: u32,
        frame: &mut Frame,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Yield, VmError> {
        let f = self
            .bundle
            .flows
            .get(flow as usize)
            .ok_or_else(|| bad(format!("no flow {flow}")))?;
        grow(&mut frame.locals, usize::from(f.unit.slots));
        let unit = UnitRef::Flow(flow);
        match self.exec(unit, frame.block, frame.pc, &mut frame.locals, scope, host)? {
            Done::Return(_) => Err(bad("`return` in a steps block")),
            Done::Yield(y, pc) => {
                frame.pc = pc;
                if matches!(y, Yield::Sleep(_) | Yield::SleepFor(_) | Yield::WaitFor(_)) {
                    frame.locals.truncate(usize::from(f.locals));
                }
                Ok(y)
            }
        }
    }

    /// The interpreter loop. Errors get the position of the instruction that failed,
    /// unless a nested block already gave them a more precise one.
    pub(crate) fn exec(
        &self,
        unit: UnitRef,
        block: u32,
        pc: u32,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Done, VmError> {
        let (u, b) = self.block(unit, block)?;
        let mut stack: Vec<Value> = Vec::new();
        let mut pc = pc as usize;
        loop {
            let Some(instr) = b.code.get(pc) else {
                let last = b.pos.last().copied();
                let mut e = bad(format!("ran past the end of block {block}"));
                e.pos = last;
                return Err(e);
            };
            let here = pc;
            pc += 1;
            let r = self.instr(
                unit, u, instr, here, &mut pc, &mut stack, locals, scope, host,
            );
            match r {
                Ok(None) => {}
                Ok(Some(done)) => return Ok(done),
                Err(mut e) => {
                    if e.pos.is_none() {
                        e.pos = b.pos.get(here).copied();
                    }
                    return Err(e);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn instr(
        &self,
        unit: UnitRef,
        u: &'b Unit,
        instr: &Instr,
        here: usize,
        pc: &mut usize,
        stack: &mut Vec<Value>,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Option<Done>, VmError> {
        let next = u32::try_from(here + 1).map_err(|_| bad("block too long"))?;
        let yielded = |y: Yield| Ok(Some(Done::Yield(y, next)));
        match instr {
            Instr::Const(n) => {
                let v = u
                    .consts
                    .get(*n as usize)
                    .ok_or_else(|| bad(format!("no constant {n}")))?;
                stack.push(v.clone());
            }
            Instr::Pop => {
                pop(stack)?;
            }
            Instr::LoadLocal(s) => {
                let v = locals
                    .get(usize::from(*s))
                    .ok_or_else(|| bad(format!("no local slot {s}")))?;
                stack.push(v.clone());
            }
            Instr::StoreLocal(s) => {
                let v = pop(stack)?;
                *local_mut(locals, *s) = v;
            }
            Instr::LoadTrigger => {
                let v = scope.trigger.ok_or_else(|| bad("no trigger event here"))?;
                stack.push(v.clone());
            }
            Instr::LoadEvent => {
                let v = scope.event.ok_or_else(|| bad("no candidate event here"))?;
                stack.push(v.clone());
            }
            Instr::LoadProfile => stack.push(Value::Record(Arc::new(host.profile().into_owned()))),
            Instr::LoadProfileField(n) => {
                let v = self.profile_field(*n, host)?;
                stack.push(v);
            }
            Instr::LoadField { field, .. } => {
                let v = match pop(stack)? {
                    Value::Record(r) => r.fields.get(usize::from(*field)).cloned(),
                    other => return Err(bad(format!("field access on {other}"))),
                };
                stack.push(v.ok_or_else(|| bad(format!("no field {field}")))?);
            }
            Instr::LoadFieldOpt { field, .. } => {
                let v = match pop(stack)? {
                    Value::None => Some(Value::None),
                    Value::Record(r) => r.fields.get(usize::from(*field)).cloned(),
                    other => return Err(bad(format!("field access on {other}"))),
                };
                stack.push(v.ok_or_else(|| bad(format!("no field {field}")))?);
            }
            Instr::LoadLet(n) => {
                let v = self.let_value(*n, host)?;
                stack.push(v);
            }
            Instr::EvalSegment(n) => {
                let v = self.segment(*n, host)?;
                stack.push(Value::Bool(v));
            }
            Instr::MakeList(n) => {
                let items = pop_n(stack, *n as usize)?;
                stack.push(Value::List(items.into()));
            }
            Instr::Concat(n) => {
                let items = pop_n(stack, usize::from(*n))?;
                let text: String = items.iter().map(|v| self.text(v)).collect();
                stack.push(Value::Str(text.into()));
            }
            Instr::IntToDec => {
                let v = pop(stack)?;
                stack.push(ops::int_to_dec(v));
            }
            Instr::Not => {
                let b = pop_bool(stack)?;
                stack.push(Value::Bool(!b));
            }
            Instr::Neg => {
                let v = pop(stack)?;
                stack.push(ops::neg(v)?);
            }
            Instr::Eq | Instr::Ne => {
                let b = pop(stack)?;
                let a = pop(stack)?;
                let eq = ops::equal(&a, &b);
                stack.push(Value::Bool(eq == matches!(instr, Instr::Eq)));
            }
            Instr::Lt | Instr::Le | Instr::Gt | Instr::Ge => {
                let b = pop(stack)?;
                let a = pop(stack)?;
                let o = ops::compare(&a, &b)?;
                let r = match instr {
                    Instr::Lt => o.is_lt(),
                    Instr::Le => o.is_le(),
                    Instr::Gt => o.is_gt(),
                    _ => o.is_ge(),
                };
                stack.push(Value::Bool(r));
            }
            Instr::In => {
                let list = pop(stack)?;
                let v = pop(stack)?;
                let Value::List(items) = list else {
                    return Err(bad(format!("`in` on {list}")));
                };
                stack.push(Value::Bool(items.iter().any(|x| ops::equal(&v, x))));
            }
            Instr::AddInt
            | Instr::SubInt
            | Instr::MulInt
            | Instr::DivInt
            | Instr::RemInt
            | Instr::AddDec
            | Instr::SubDec
            | Instr::MulDec
            | Instr::DivDec
            | Instr::AddMoney
            | Instr::SubMoney
            | Instr::MulMoney
            | Instr::MulMoneyPct
            | Instr::DivMoney
            | Instr::DivMoneyMoney
            | Instr::AddPct
            | Instr::SubPct
            | Instr::AddDur
            | Instr::SubDur
            | Instr::MulDur
            | Instr::DivDur
            | Instr::AddTimeDur
            | Instr::SubTimeDur
            | Instr::SubTime
            | Instr::AddDateDur
            | Instr::SubDateDur
            | Instr::SubDate => {
                let b = pop(stack)?;
                let a = pop(stack)?;
                stack.push(ops::binary(instr, a, b)?);
            }
            Instr::Call { builtin, argc } => {
                let args = pop_n(stack, usize::from(*argc))?;
                let v = self.call_builtin(unit, *builtin, args, None, locals, scope, host)?;
                stack.push(v);
            }
            Instr::CallLambda {
                builtin,
                argc,
                block,
            } => {
                let args = pop_n(stack, usize::from(*argc))?;
                let v =
                    self.call_builtin(unit, *builtin, args, Some(*block), locals, scope, host)?;
                stack.push(v);
            }
            Instr::CallEvent {
                builtin,
                event,
                block,
            } => {
                // A windowed builtin's window is its one value argument.
                let windowed = matches!(self.callee(*builtin)?, crate::builtins::Callee::Std(b) if b.windowed());
                let window = if windowed {
                    match pop(stack)? {
                        Value::Duration(d) => Some(d),
                        other => return Err(bad(format!("a window of {other}, not a duration"))),
                    }
                } else {
                    None
                };
                let v =
                    self.call_event(unit, *builtin, *event, *block, window, locals, scope, host)?;
                stack.push(v);
            }
            Instr::Jump(t) => *pc = *t as usize,
            Instr::JumpIfFalse(t) => {
                if !pop_bool(stack)? {
                    *pc = *t as usize;
                }
            }
            Instr::JumpIfTrue(t) => {
                if pop_bool(stack)? {
                    *pc = *t as usize;
                }
            }
            Instr::JumpIfNotNone(t) => match stack.last() {
                None => return Err(bad("pop from an empty stack")),
                Some(Value::None) => {
                    stack.pop();
                }
                Some(_) => *pc = *t as usize,
            },
            Instr::Return => return Ok(Some(Done::Return(pop(stack)?))),
            Instr::Step(n) => return yielded(Yield::Step(*n)),
            Instr::Wait(s) => return yielded(Yield::SleepFor(*s)),
            Instr::WaitUntil => match pop(stack)? {
                Value::Time(t) => return yielded(Yield::Sleep(t)),
                other => return Err(bad(format!("`wait until` {other}"))),
            },
            Instr::WaitFor(n) => return yielded(Yield::WaitFor(*n)),
            Instr::Send { message, given } => {
                let args = self.send_args(*message, *given, stack, scope, host)?;
                return yielded(Yield::Send {
                    message: *message,
                    args,
                });
            }
            Instr::SetProfile(f) => {
                let v = pop(stack)?;
                host.set_profile(*f, v);
            }
            Instr::AudienceAdd(c) | Instr::AudienceRemove(c) => {
                let name = match u.consts.get(*c as usize) {
                    Some(Value::Str(s)) => s.clone(),
                    other => return Err(bad(format!("audience name {other:?}"))),
                };
                let add = matches!(instr, Instr::AudienceAdd(_));
                return yielded(Yield::Audience { name, add });
            }
            Instr::Split(n) => {
                let UnitRef::Flow(fi) = unit else {
                    return Err(bad("`split` outside a flow"));
                };
                let flow = self
                    .bundle
                    .flows
                    .get(fi as usize)
                    .ok_or_else(|| bad(format!("no flow {fi}")))?;
                let split = flow
                    .splits
                    .get(usize::from(*n))
                    .ok_or_else(|| bad(format!("no split {n}")))?;
                if split.arms.is_empty() {
                    return Err(bad(format!("split {n} has no arms")));
                }
                let salt = format!("{}/split/{n}", flow.name);
                let arm = match split.optimise {
                    None => {
                        let b = u64::from(crate::bucket(host.customer_key(), &salt));
                        let mut cum = 0u64;
                        let last = split.arms.len() - 1;
                        let mut arm = last;
                        for (i, a) in split.arms.iter().enumerate() {
                            cum = cum.saturating_add(arm_units(a.percent));
                            if b < cum {
                                arm = i;
                                break;
                            }
                        }
                        arm
                    }
                    Some(floor) => {
                        let counts = host.split_counts(&flow.name, *n, &split.arms);
                        // The counts are part of the seed: the same customer
                        // entering again, after the others moved the counts,
                        // draws afresh, and a replay draws the same.
                        let mut bytes = Vec::with_capacity(counts.len() * 16);
                        for c in &counts {
                            bytes.extend_from_slice(&c.entries.to_le_bytes());
                            bytes.extend_from_slice(&c.conversions.to_le_bytes());
                        }
                        let seed = crate::bandit::seed(&[
                            salt.as_bytes(),
                            host.customer_key().as_bytes(),
                            &bytes,
                        ]);
                        let floor = arm_units(floor).min(10_000) as u32;
                        let arms = &counts[..counts.len().min(split.arms.len())];
                        crate::bandit::choose(arms, floor, seed).min(split.arms.len() - 1)
                    }
                };
                let arm16 = u16::try_from(arm).map_err(|_| bad("too many split arms"))?;
                let target = split.arms[arm].target;
                return Ok(Some(Done::Yield(
                    Yield::Split {
                        split: *n,
                        arm: arm16,
                    },
                    target,
                )));
            }
            Instr::Exit => return yielded(Yield::Exit),
            Instr::End => return yielded(Yield::End),
        }
        Ok(None)
    }

    /// A profile field, with the schema's default when the stored value is `none`.
    fn profile_field(&self, n: u16, host: &dyn Host) -> Result<Value, VmError> {
        let schema = self
            .bundle
            .schemas
            .get(self.bundle.profile as usize)
            .ok_or_else(|| bad("no profile schema"))?;
        let field = schema
            .fields
            .get(usize::from(n))
            .ok_or_else(|| bad(format!("no profile field {n}")))?;
        // A profile record older than the schema lacks new fields: they read as unset.
        let stored = host.profile_field(n).unwrap_or(Value::None);
        Ok(match (&stored, &field.default) {
            (Value::None, Some(d)) => d.clone(),
            _ => stored,
        })
    }

    /// The complete arguments of a send: given ones from the stack, the rest from defaults.
    fn send_args(
        &self,
        message: u32,
        given: u64,
        stack: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Vec<Value>, VmError> {
        let m = self
            .bundle
            .messages
            .get(message as usize)
            .ok_or_else(|| bad(format!("no message {message}")))?;
        let n = m.params.len();
        if n < 64 && given >> n != 0 {
            return Err(bad(format!(
                "send gives parameters beyond the {n} of the message"
            )));
        }
        let count = given.count_ones() as usize;
        let mut passed = pop_n(stack, count)?.into_iter();
        let mut locals = vec![Value::None; n.max(usize::from(m.unit.slots))];
        for (i, slot) in locals.iter_mut().enumerate().take(n) {
            if bit(given, i) {
                *slot = passed.next().ok_or_else(|| bad("too few send arguments"))?;
            }
        }
        // Defaults see the given parameters and the defaults before them.
        let dscope = Scope {
            trigger: None,
            event: None,
            since: scope.since,
        };
        for (i, p) in m.params.iter().enumerate() {
            if bit(given, i) {
                continue;
            }
            let block = p.default.ok_or_else(|| {
                bad(format!(
                    "parameter `{}` left out and has no default",
                    p.name
                ))
            })?;
            let mut scratch = locals.clone();
            let v = self.eval_block(
                UnitRef::Message(message),
                block,
                &mut scratch,
                &dscope,
                host,
            )?;
            locals[i] = v;
        }
        locals.truncate(n);
        Ok(locals)
    }
}
