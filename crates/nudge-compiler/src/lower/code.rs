//! Code generation for one unit: expressions, lambdas, and a flow's steps,
//! written from the typed IR.

use std::collections::HashMap;

use nudge_bytecode::{self as bc, BlockKind, Instr, Pos, Value};
use nudge_diagnostics::{FileId, Span};

use super::Lower;
use crate::tir::{self, CallArg, CompareOp, Expr, ExprKind, Step, StepKind, StrPart};
use crate::types::Ty;

/// A block being written.
struct BlockBuf {
    kind: BlockKind,
    params: Vec<u16>,
    code: Vec<Instr>,
    pos: Vec<Pos>,
}

impl BlockBuf {
    fn new(kind: BlockKind) -> Self {
        BlockBuf {
            kind,
            params: Vec::new(),
            code: Vec::new(),
            pos: Vec::new(),
        }
    }
}

/// What a flow's steps add to the flow besides code.
#[derive(Default)]
pub(super) struct FlowTables {
    pub(super) waits: Vec<bc::WaitFor>,
    pub(super) splits: Vec<bc::Split>,
    pub(super) steps: Vec<bc::StepInfo>,
}

/// Writes the blocks and constants of one unit.
pub(super) struct Gen<'l, 'a> {
    l: &'l Lower<'a>,
    file: FileId,
    consts: Vec<Value>,
    /// Constants by their encoding, so equal values share a slot but `$1.0`
    /// and `$1.00` (equal, yet shown differently) do not.
    const_keys: HashMap<String, u32>,
    blocks: Vec<Option<bc::Block>>,
    has_main: bool,
    cur: BlockBuf,
    cur_index: u32,
    slots: u16,
    pos: Pos,
    /// Blocks being written around the current one (a lambda inside a predicate).
    stack: Vec<(BlockBuf, u32, Pos)>,
    /// While lowering message content: the escaping its interpolated values
    /// get. Taken by the first string that sees it, so values interpolated
    /// in a nested string are not escaped twice.
    escape: Option<bc::Escape>,
    tables: FlowTables,
}

impl<'l, 'a> Gen<'l, 'a> {
    /// A unit using `slots` local slots; with a kind, block 0 is reserved
    /// for the main code (written last).
    pub(super) fn new(l: &'l Lower<'a>, file: FileId, slots: u16, main: Option<BlockKind>) -> Self {
        Gen {
            l,
            file,
            consts: Vec::new(),
            const_keys: HashMap::new(),
            blocks: if main.is_some() {
                vec![None]
            } else {
                Vec::new()
            },
            has_main: main.is_some(),
            cur: BlockBuf::new(main.unwrap_or(BlockKind::Expr)),
            cur_index: 0,
            slots,
            pos: Pos::default(),
            stack: Vec::new(),
            escape: None,
            tables: FlowTables::default(),
        }
    }

    /// The finished unit, and the flow tables its steps made.
    pub(super) fn finish(mut self) -> (bc::Unit, FlowTables) {
        let main = std::mem::replace(&mut self.cur, BlockBuf::new(BlockKind::Expr));
        if self.has_main {
            self.store_block(0, main);
        }
        // Every block begun is stored when it ends, and block 0 just now.
        let blocks = self.blocks.into_iter().flatten().collect();
        (
            bc::Unit {
                consts: self.consts,
                blocks,
                slots: self.slots,
            },
            self.tables,
        )
    }

    fn store_block(&mut self, index: u32, b: BlockBuf) {
        if let Some(slot) = self.blocks.get_mut(index as usize) {
            *slot = Some(bc::Block {
                kind: b.kind,
                params: b.params,
                code: b.code,
                pos: b.pos,
            });
        }
    }

    fn set_pos(&mut self, span: Span) {
        self.pos = self.l.pos(self.file, span);
    }

    fn emit(&mut self, i: Instr) -> u32 {
        self.cur.code.push(i);
        self.cur.pos.push(self.pos);
        self.cur.code.len() as u32 - 1
    }

    fn here(&self) -> u32 {
        self.cur.code.len() as u32
    }

    /// Points the jump at `at` to the current end of the block.
    fn patch(&mut self, at: u32) {
        let target = self.here();
        if let Some(
            Instr::Jump(t) | Instr::JumpIfFalse(t) | Instr::JumpIfTrue(t) | Instr::JumpIfNotNone(t),
        ) = self.cur.code.get_mut(at as usize)
        {
            *t = target;
        }
    }

    fn constant(&mut self, v: Value) -> u32 {
        let key = format!("{v:?}");
        if let Some(&i) = self.const_keys.get(&key) {
            return i;
        }
        self.consts.push(v);
        let i = self.consts.len() as u32 - 1;
        self.const_keys.insert(key, i);
        i
    }

    fn push_const(&mut self, v: Value) {
        let i = self.constant(v);
        self.emit(Instr::Const(i));
    }

    /// Converts ints to decimals where a value of type `from` is used as `to`.
    fn coerce(&mut self, from: &Ty, to: &Ty) {
        if needs_widening(from, to) {
            self.emit(Instr::IntToDec);
        }
    }

    // ---------------------------------------------------------------- expressions

    /// Code pushing the value of `e`.
    fn expr(&mut self, e: &Expr) {
        self.set_pos(e.span);
        match &e.kind {
            ExprKind::Const(v) | ExprKind::PlainStr(v) => self.push_const(v.clone()),
            ExprKind::Interp { parts, count } => self.interp(e, parts, *count),
            ExprKind::Local(slot) => {
                self.emit(Instr::LoadLocal(*slot));
            }
            ExprKind::Let(i) => {
                self.emit(Instr::LoadLet(*i));
            }
            ExprKind::Segment(i) => {
                self.emit(Instr::EvalSegment(*i));
            }
            ExprKind::Profile => {
                self.emit(Instr::LoadProfile);
            }
            ExprKind::Trigger => {
                self.emit(Instr::LoadTrigger);
            }
            ExprKind::Event => {
                self.emit(Instr::LoadEvent);
            }
            ExprKind::ProfileField { field, field_span } => {
                self.set_pos(*field_span);
                self.emit(Instr::LoadProfileField(*field));
            }
            ExprKind::Field {
                base,
                schema,
                field,
                optional,
                field_span,
            } => {
                self.expr(base);
                self.set_pos(*field_span);
                let (schema, field) = (*schema, *field);
                self.emit(if *optional {
                    Instr::LoadFieldOpt { schema, field }
                } else {
                    Instr::LoadField { schema, field }
                });
            }
            ExprKind::Call {
                builtin,
                args,
                argc,
            } => self.call(e, *builtin, args, *argc),
            ExprKind::Not(x) => {
                self.expr(x);
                self.set_pos(e.span);
                self.emit(Instr::Not);
            }
            ExprKind::Neg(x) => {
                self.expr(x);
                self.set_pos(e.span);
                self.emit(Instr::Neg);
            }
            ExprKind::Logic { and, lhs, rhs } => {
                self.expr(lhs);
                self.set_pos(e.span);
                let short = self.emit(if *and {
                    Instr::JumpIfFalse(0)
                } else {
                    Instr::JumpIfTrue(0)
                });
                self.expr(rhs);
                self.set_pos(e.span);
                let end = self.emit(Instr::Jump(0));
                self.patch(short);
                self.push_const(Value::Bool(!*and));
                self.patch(end);
            }
            ExprKind::Default { lhs, rhs } => {
                self.expr(lhs);
                self.coerce(&lhs.ty, &e.ty);
                self.set_pos(e.span);
                let end = self.emit(Instr::JumpIfNotNone(0));
                self.expr(rhs);
                self.coerce(&rhs.ty, &e.ty);
                self.patch(end);
            }
            ExprKind::Compare { op, lhs, rhs } => self.compare(e, *op, lhs, rhs),
            ExprKind::Arith { op, lhs, rhs } => {
                self.expr(lhs);
                if op.widen_lhs {
                    self.emit(Instr::IntToDec);
                }
                self.expr(rhs);
                if op.widen_rhs {
                    self.emit(Instr::IntToDec);
                }
                self.set_pos(e.span);
                self.emit(op.op.instr());
            }
            ExprKind::List { items, count } => {
                let elem = match &e.ty {
                    Ty::List(t) => (**t).clone(),
                    _ => Ty::Error,
                };
                for it in items {
                    self.expr(it);
                    self.coerce(&it.ty, &elem);
                }
                self.set_pos(e.span);
                self.emit(Instr::MakeList(*count));
            }
        }
    }

    fn interp(&mut self, e: &Expr, parts: &[StrPart], count: u16) {
        let escape = self.escape.take();
        for p in parts {
            match p {
                StrPart::Text(t, span) => {
                    self.set_pos(*span);
                    self.push_const(Value::str(t));
                }
                StrPart::Interp(x) => {
                    self.expr(x);
                    if let Some(esc) = escape {
                        self.set_pos(x.span);
                        self.emit_escape(esc);
                    }
                }
            }
        }
        self.set_pos(e.span);
        self.emit(Instr::Concat(count));
    }

    fn compare(&mut self, e: &Expr, op: CompareOp, lhs: &Expr, rhs: &Expr) {
        let (l, r) = (lhs.ty.strip_optional(), rhs.ty.strip_optional());
        // Mixed int and decimal compare as decimals.
        let elem = match (op, r) {
            (CompareOp::In, Ty::List(t)) => (**t).clone(),
            _ => r.clone(),
        };
        let (widen_l, widen_r) = (
            *l == Ty::Int && elem == Ty::Decimal,
            *l == Ty::Decimal && elem == Ty::Int,
        );
        self.expr(lhs);
        if widen_l {
            self.emit(Instr::IntToDec);
        }
        self.expr(rhs);
        if widen_r {
            self.emit(Instr::IntToDec);
        }
        self.set_pos(e.span);
        self.emit(match op {
            CompareOp::Eq => Instr::Eq,
            CompareOp::Ne => Instr::Ne,
            CompareOp::Lt => Instr::Lt,
            CompareOp::Le => Instr::Le,
            CompareOp::Gt => Instr::Gt,
            CompareOp::Ge => Instr::Ge,
            CompareOp::In => Instr::In,
        });
    }

    fn call(&mut self, e: &Expr, builtin: u16, args: &[CallArg], argc: u8) {
        let mut event = None;
        let mut lambda = None;
        for arg in args {
            match arg {
                CallArg::Event(schema) => event = Some(*schema),
                CallArg::Lambda(f) => lambda = Some(self.lambda(f)),
                CallArg::Value { expr, target } => {
                    self.expr(expr);
                    self.coerce(&expr.ty, target);
                }
            }
        }
        self.set_pos(e.span);
        self.emit(match (event, lambda) {
            (Some(event), block) => Instr::CallEvent {
                builtin,
                event,
                block,
            },
            (None, Some(block)) => Instr::CallLambda {
                builtin,
                argc,
                block,
            },
            (None, None) => Instr::Call { builtin, argc },
        });
    }

    /// Writes a lambda as a block of its own, its parameters in their slots.
    fn lambda(&mut self, f: &tir::Lambda) -> u32 {
        let index = self.begin_block(BlockKind::Lambda);
        self.cur.params = f.params.clone();
        self.expr(&f.body);
        self.set_pos(f.body.span);
        self.emit(Instr::Return);
        self.end_block(index);
        index
    }

    /// Writes an expression block: the expression, then `return`.
    pub(super) fn expr_block(&mut self, e: &Expr, result: Option<&Ty>) -> u32 {
        let index = self.begin_block(BlockKind::Expr);
        self.expr(e);
        if let Some(t) = result {
            self.coerce(&e.ty, t);
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
        self.end_block(index);
        index
    }

    /// Writes a message content value as a block, escaping every value that
    /// lands in it for `escape`: each part interpolated into a string, or the
    /// whole value when it is not a string literal.
    pub(super) fn content_block(&mut self, e: &Expr, escape: bc::Escape) -> u32 {
        let index = self.begin_block(BlockKind::Expr);
        if let ExprKind::PlainStr(_) | ExprKind::Interp { .. } = &e.kind {
            self.escape = Some(escape);
            self.expr(e);
            self.escape = None;
        } else {
            self.expr(e);
            self.set_pos(e.span);
            self.emit_escape(escape.whole());
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
        self.end_block(index);
        index
    }

    /// Calls the internal builtin that escapes the top of the stack.
    fn emit_escape(&mut self, escape: bc::Escape) {
        let builtin = super::escape_builtin(escape);
        self.emit(Instr::Call { builtin, argc: 1 });
    }

    /// Writes block 0 as an expression block (lets, segments).
    pub(super) fn main_expr(&mut self, e: &Expr, result: Option<&Ty>) {
        self.expr(e);
        if let Some(t) = result {
            self.coerce(&e.ty, t);
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
    }

    fn begin_block(&mut self, kind: BlockKind) -> u32 {
        self.blocks.push(None);
        let index = self.blocks.len() as u32 - 1;
        let outer = std::mem::replace(&mut self.cur, BlockBuf::new(kind));
        let outer_index = std::mem::replace(&mut self.cur_index, index);
        self.stack.push((outer, outer_index, self.pos));
        index
    }

    fn end_block(&mut self, index: u32) {
        if let Some((outer, outer_index, pos)) = self.stack.pop() {
            let done = std::mem::replace(&mut self.cur, outer);
            self.cur_index = outer_index;
            self.pos = pos;
            self.store_block(index, done);
        }
    }

    // ---------------------------------------------------------------- steps

    /// Writes a steps block other than block 0 (`on exit`).
    pub(super) fn steps_block(&mut self, steps: &[Step], end: Span) -> u32 {
        let index = self.begin_block(BlockKind::Steps);
        self.steps(steps);
        self.set_pos(end);
        self.emit(Instr::End);
        self.end_block(index);
        index
    }

    /// Writes steps into block 0, then `end`.
    pub(super) fn main_steps(&mut self, steps: &[Step], end: Span) {
        self.steps(steps);
        self.set_pos(end);
        self.emit(Instr::End);
    }

    fn steps(&mut self, steps: &[Step]) {
        for s in steps {
            self.step(s);
        }
    }

    fn step(&mut self, s: &Step) {
        // The typed program bounds a flow's steps, waits and splits to
        // `u16`, so these counts fit.
        let index = self.tables.steps.len() as u16;
        self.tables.steps.push(bc::StepInfo {
            label: s.label.clone(),
            what: s.what.clone(),
            block: self.cur_index,
            pc: self.here(),
        });
        self.set_pos(s.span);
        self.emit(Instr::Step(index));
        match &s.kind {
            StepKind::Wait(d) => {
                self.emit(Instr::Wait(*d));
            }
            StepKind::WaitUntil(e) => {
                self.expr(e);
                self.set_pos(s.span);
                self.emit(Instr::WaitUntil);
            }
            StepKind::WaitFor(w) => {
                let predicate = w.predicate.as_ref().map(|p| self.expr_block(p, None));
                let n = self.tables.waits.len() as u16;
                self.tables.waits.push(bc::WaitFor {
                    events: w.events.clone(),
                    schema: w.schema,
                    predicate,
                    within: w.within,
                    bind: w.bind,
                });
                self.set_pos(s.span);
                self.emit(Instr::WaitFor(n));
            }
            StepKind::Send {
                message,
                args,
                given,
            } => {
                for a in args {
                    self.expr(&a.value);
                    self.coerce(&a.value.ty, &a.param_ty);
                }
                self.set_pos(s.span);
                self.emit(Instr::Send {
                    message: *message,
                    given: *given,
                });
            }
            StepKind::If {
                branches,
                otherwise,
            } => {
                let mut ends = Vec::new();
                let n = branches.len();
                for (k, (cond, body)) in branches.iter().enumerate() {
                    self.expr(cond);
                    self.set_pos(cond.span);
                    let next = self.emit(Instr::JumpIfFalse(0));
                    self.steps(&body.steps);
                    // The last branch with no `else` falls through to the end.
                    if k + 1 < n || otherwise.is_some() {
                        self.set_pos(body.span);
                        ends.push(self.emit(Instr::Jump(0)));
                    }
                    self.patch(next);
                }
                if let Some(b) = otherwise {
                    self.steps(&b.steps);
                }
                for j in ends {
                    self.patch(j);
                }
            }
            StepKind::Split { arms, optimise } => {
                let n = self.tables.splits.len();
                self.tables.splits.push(bc::Split {
                    arms: Vec::new(),
                    optimise: *optimise,
                });
                self.emit(Instr::Split(n as u16));
                let mut ends = Vec::new();
                let mut out = Vec::new();
                for (k, arm) in arms.iter().enumerate() {
                    out.push(bc::SplitArm {
                        percent: arm.percent,
                        name: arm.name.clone(),
                        target: self.here(),
                    });
                    self.steps(&arm.body.steps);
                    // The last arm falls through to what follows the split.
                    if k + 1 < arms.len() {
                        self.set_pos(arm.span);
                        ends.push(self.emit(Instr::Jump(0)));
                    }
                }
                for j in ends {
                    self.patch(j);
                }
                if let Some(split) = self.tables.splits.get_mut(n) {
                    split.arms = out;
                }
            }
            StepKind::SetProfile {
                field,
                field_ty,
                value,
            } => {
                self.expr(value);
                self.coerce(&value.ty, field_ty);
                self.set_pos(s.span);
                self.emit(Instr::SetProfile(*field));
            }
            StepKind::AudienceAdd(name) => {
                let c = self.constant(Value::str(name));
                self.emit(Instr::AudienceAdd(c));
            }
            StepKind::AudienceRemove(name) => {
                let c = self.constant(Value::str(name));
                self.emit(Instr::AudienceRemove(c));
            }
            StepKind::Let { slot, value } => {
                self.expr(value);
                self.set_pos(s.span);
                self.emit(Instr::StoreLocal(*slot));
            }
            StepKind::Exit => {
                self.emit(Instr::Exit);
            }
            StepKind::ExitIf(e) => {
                self.expr(e);
                self.set_pos(s.span);
                let skip = self.emit(Instr::JumpIfFalse(0));
                self.emit(Instr::Exit);
                self.patch(skip);
            }
        }
    }
}

/// Whether a value of type `from` needs `int_to_dec` to be used as `to`.
fn needs_widening(from: &Ty, to: &Ty) -> bool {
    match (from, to) {
        (Ty::Int, Ty::Decimal) => true,
        (Ty::Optional(a), b) => needs_widening(a, b.strip_optional()),
        (a, Ty::Optional(b)) => needs_widening(a, b),
        (Ty::List(a), Ty::List(b)) => needs_widening(a, b),
        _ => false,
    }
}
