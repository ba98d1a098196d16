//! Code generation for one unit: expressions, lambdas, and a flow's steps.

use std::collections::HashMap;

use nudge_bytecode::{self as bc, BlockKind, Instr, Pos, Value};
use nudge_diagnostics::{FileId, FileSpan, Span};
use nudge_syntax::ast::{
    Arg, AudienceOp, BinaryOp, Block, Expr, ExprKind, Ident, Step, StepKind, StrPart, UnaryOp,
};

use super::{Lower, LowerError, R};
use crate::analysis::SymbolKind;
use crate::builtins::SigTy;
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
    pub(super) l: &'l Lower<'a>,
    file: FileId,
    consts: Vec<Value>,
    /// Constants by their encoding, so equal values share a slot but `$1.0`
    /// and `$1.00` (equal, yet shown differently) do not.
    const_keys: HashMap<String, u32>,
    blocks: Vec<Option<bc::Block>>,
    has_main: bool,
    cur: BlockBuf,
    cur_index: u32,
    pub(super) slots: u16,
    locals: HashMap<crate::SymbolId, u16>,
    pos: Pos,
    /// Blocks being written around the current one (a lambda inside a predicate).
    stack: Vec<(BlockBuf, u32, Pos)>,
    /// While lowering message content: the escaping its interpolated values
    /// get. Taken by the first string that sees it, so values interpolated
    /// in a nested string are not escaped twice.
    escape: Option<bc::Escape>,
    pub(super) tables: FlowTables,
    /// The names of the persistent locals, slot by slot, with their steps.
    pub(super) local_names: Vec<bc::LocalName>,
    /// Steps counted by `declare_bindings`, which walks them in the order
    /// `step` numbers them; the flow checks the two counts agree.
    pub(super) bindings_walked: u32,
}

fn too_many(what: &str) -> LowerError {
    LowerError::new(None, format!("too many {what} in one unit"))
}

impl<'l, 'a> Gen<'l, 'a> {
    /// A unit; with a kind, block 0 is reserved for the main code (written last).
    pub(super) fn new(l: &'l Lower<'a>, file: FileId, main: Option<BlockKind>) -> Self {
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
            slots: 0,
            locals: HashMap::new(),
            pos: Pos::default(),
            stack: Vec::new(),
            escape: None,
            tables: FlowTables::default(),
            local_names: Vec::new(),
            bindings_walked: 0,
        }
    }

    /// The finished unit, and the flow tables its steps made.
    pub(super) fn finish(mut self) -> R<(bc::Unit, FlowTables)> {
        let main = std::mem::replace(&mut self.cur, BlockBuf::new(BlockKind::Expr));
        if self.has_main {
            self.store_block(0, main);
        }
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| b.ok_or_else(|| LowerError::new(None, "a block was never written")))
            .collect::<R<Vec<_>>>()?;
        Ok((
            bc::Unit {
                consts: self.consts,
                blocks,
                slots: self.slots,
            },
            self.tables,
        ))
    }

    fn store_block(&mut self, index: u32, b: BlockBuf) {
        self.blocks[index as usize] = Some(bc::Block {
            kind: b.kind,
            params: b.params,
            code: b.code,
            pos: b.pos,
        });
    }

    fn at(&self, span: Span) -> FileSpan {
        FileSpan::new(self.file, span)
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
        match &mut self.cur.code[at as usize] {
            Instr::Jump(t)
            | Instr::JumpIfFalse(t)
            | Instr::JumpIfTrue(t)
            | Instr::JumpIfNotNone(t) => *t = target,
            _ => {}
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

    /// Gives a declared local (by the span of its name) a slot of its own.
    pub(super) fn declare(&mut self, name: &Ident) -> R<u16> {
        let sym = self.l.decl_symbol(self.at(name.span)).ok_or_else(|| {
            LowerError::new(
                Some(self.at(name.span)),
                format!("`{}` has no recorded declaration", name.name),
            )
        })?;
        let slot = self.slots;
        self.slots = self
            .slots
            .checked_add(1)
            .ok_or_else(|| too_many("locals"))?;
        self.locals.insert(sym, slot);
        Ok(slot)
    }

    fn slot_of(&self, name: &Ident) -> R<u16> {
        self.l
            .decl_symbol(self.at(name.span))
            .and_then(|s| self.locals.get(&s).copied())
            .ok_or_else(|| {
                LowerError::new(
                    Some(self.at(name.span)),
                    format!("`{}` has no local slot", name.name),
                )
            })
    }

    fn ty(&self, e: &Expr) -> R<Ty> {
        self.l.expr_ty(self.at(e.span))
    }

    /// Converts ints to decimals where a value of type `from` is used as `to`.
    fn coerce(&mut self, from: &Ty, to: &Ty) {
        if needs_widening(from, to) {
            self.emit(Instr::IntToDec);
        }
    }

    // ---------------------------------------------------------------- expressions

    /// Code pushing the value of `e`.
    pub(super) fn expr(&mut self, e: &Expr) -> R<()> {
        self.set_pos(e.span);
        match &e.kind {
            ExprKind::Int(i) => self.push_const(Value::Int(*i)),
            ExprKind::Decimal(d) => self.push_const(Value::Decimal(*d)),
            ExprKind::Money(d) => self.push_const(Value::Money(*d)),
            ExprKind::Percent(d) => self.push_const(Value::Percent(*d)),
            ExprKind::Duration(s) => self.push_const(Value::Duration(*s)),
            ExprKind::Instant(t) => self.push_const(Value::Time(*t)),
            ExprKind::Date(d) => self.push_const(Value::Date(*d)),
            ExprKind::TimeOfDay(m) => self.push_const(Value::TimeOfDay(*m)),
            ExprKind::Bool(b) => self.push_const(Value::Bool(*b)),
            ExprKind::None => self.push_const(Value::None),
            ExprKind::Str(parts) => self.string(e, parts)?,
            ExprKind::Name(n) => self.name(n, e.span)?,
            ExprKind::Field {
                base,
                field,
                optional,
            } => self.field(base, field, *optional)?,
            ExprKind::Call { callee, args } => self.call(e, callee, args)?,
            ExprKind::Unary { op, expr } => {
                self.expr(expr)?;
                self.set_pos(e.span);
                self.emit(match op {
                    UnaryOp::Not => Instr::Not,
                    UnaryOp::Neg => Instr::Neg,
                });
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs)?,
            ExprKind::List(items) => {
                let elem = match self.ty(e)? {
                    Ty::List(t) => *t,
                    _ => Ty::Error,
                };
                for it in items {
                    self.expr(it)?;
                    let t = self.ty(it)?;
                    self.coerce(&t, &elem);
                }
                self.set_pos(e.span);
                let n = u32::try_from(items.len()).map_err(|_| too_many("list items"))?;
                self.emit(Instr::MakeList(n));
            }
            ExprKind::Lambda { .. } => {
                return Err(LowerError::new(
                    Some(self.at(e.span)),
                    "a function outside a builtin call",
                ));
            }
            ExprKind::Error => {
                return Err(LowerError::new(
                    Some(self.at(e.span)),
                    "an expression that did not parse",
                ));
            }
            ExprKind::Record(_) => {
                return Err(LowerError::new(
                    Some(self.at(e.span)),
                    "a record literal outside a test",
                ));
            }
        }
        Ok(())
    }

    fn string(&mut self, e: &Expr, parts: &[StrPart]) -> R<()> {
        let plain = super::plain_text(parts);
        if let Some(text) = plain {
            let v = match self.ty(e)? {
                Ty::Timezone => Value::Timezone(text.into()),
                _ => Value::str(&text),
            };
            self.push_const(v);
            return Ok(());
        }
        let escape = self.escape.take();
        for p in parts {
            match p {
                StrPart::Text(t, span) => {
                    self.set_pos(*span);
                    self.push_const(Value::str(t));
                }
                StrPart::Interp(x) => {
                    self.expr(x)?;
                    if let Some(esc) = escape {
                        self.set_pos(x.span);
                        self.emit_escape(esc)?;
                    }
                }
            }
        }
        self.set_pos(e.span);
        let n = u16::try_from(parts.len()).map_err(|_| too_many("string parts"))?;
        self.emit(Instr::Concat(n));
        Ok(())
    }

    fn name(&mut self, n: &str, span: Span) -> R<()> {
        let at = self.at(span);
        let Some(sym) = self.l.an.resolution(at) else {
            // The links are marks that the email plugin replaces.
            if let Some((_, mark)) = bc::LINK_NAMES.iter().find(|(name, _)| *name == n) {
                self.push_const(Value::str(mark));
                return Ok(());
            }
            self.emit(match n {
                "profile" => Instr::LoadProfile,
                "trigger" => Instr::LoadTrigger,
                "event" => Instr::LoadEvent,
                _ => {
                    return Err(LowerError::new(Some(at), format!("`{n}` was not resolved")));
                }
            });
            return Ok(());
        };
        let kind = self.l.an.symbol(sym).map(|s| s.kind);
        let instr = match kind {
            Some(SymbolKind::Local | SymbolKind::Param) => match self.locals.get(&sym) {
                Some(&slot) => Instr::LoadLocal(slot),
                None => {
                    return Err(LowerError::new(
                        Some(at),
                        format!("`{n}` has no local slot here"),
                    ));
                }
            },
            Some(SymbolKind::Let) => Instr::LoadLet(self.l.let_index(sym, at)?),
            Some(SymbolKind::Segment) => Instr::EvalSegment(self.l.segment_index(sym, at)?),
            _ => {
                return Err(LowerError::new(Some(at), format!("`{n}` is not a value")));
            }
        };
        self.emit(instr);
        Ok(())
    }

    fn field(&mut self, base: &Expr, field: &Ident, optional: bool) -> R<()> {
        let is_profile = matches!(&base.kind, ExprKind::Name(n) if n == "profile")
            && self.l.an.resolution(self.at(base.span)).is_none();
        if is_profile {
            let idx = self.l.profile_field(&field.name, self.at(field.span))?;
            self.set_pos(field.span);
            self.emit(Instr::LoadProfileField(idx));
            return Ok(());
        }
        self.expr(base)?;
        let bt = self.ty(base)?;
        let Ty::Record(rid) = bt.strip_optional() else {
            return Err(LowerError::new(
                Some(self.at(field.span)),
                format!("`.{}` on a value that is not a record", field.name),
            ));
        };
        let rec = self.l.an.types.record(*rid);
        let idx = rec.by_name.get(&field.name).copied().ok_or_else(|| {
            LowerError::new(
                Some(self.at(field.span)),
                format!("`{}` has no field `{}`", rec.name, field.name),
            )
        })?;
        let field_idx = u16::try_from(idx).map_err(|_| too_many("fields"))?;
        self.set_pos(field.span);
        let schema = rid.0;
        self.emit(if optional || bt.is_optional() {
            Instr::LoadFieldOpt {
                schema,
                field: field_idx,
            }
        } else {
            Instr::LoadField {
                schema,
                field: field_idx,
            }
        });
        Ok(())
    }

    fn binary(&mut self, e: &Expr, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> R<()> {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                self.expr(lhs)?;
                self.set_pos(e.span);
                let short = self.emit(if op == BinaryOp::And {
                    Instr::JumpIfFalse(0)
                } else {
                    Instr::JumpIfTrue(0)
                });
                self.expr(rhs)?;
                self.set_pos(e.span);
                let end = self.emit(Instr::Jump(0));
                self.patch(short);
                self.push_const(Value::Bool(op == BinaryOp::Or));
                self.patch(end);
                return Ok(());
            }
            BinaryOp::Default => {
                let result = self.ty(e)?;
                self.expr(lhs)?;
                let lt = self.ty(lhs)?;
                self.coerce(&lt, &result);
                self.set_pos(e.span);
                let end = self.emit(Instr::JumpIfNotNone(0));
                self.expr(rhs)?;
                let rt = self.ty(rhs)?;
                self.coerce(&rt, &result);
                self.patch(end);
                return Ok(());
            }
            _ => {}
        }
        let (lt, rt) = (self.ty(lhs)?, self.ty(rhs)?);
        let (l, r) = (lt.strip_optional().clone(), rt.strip_optional().clone());
        let comparison = matches!(
            op,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        );
        if comparison || op == BinaryOp::In {
            // Mixed int and decimal compare as decimals.
            let elem = match (&op, &r) {
                (BinaryOp::In, Ty::List(t)) => (**t).clone(),
                _ => r.clone(),
            };
            self.expr(lhs)?;
            if l == Ty::Int && elem == Ty::Decimal {
                self.emit(Instr::IntToDec);
            }
            self.expr(rhs)?;
            if l == Ty::Decimal && elem == Ty::Int {
                self.emit(Instr::IntToDec);
            }
            self.set_pos(e.span);
            self.emit(match op {
                BinaryOp::Eq => Instr::Eq,
                BinaryOp::Ne => Instr::Ne,
                BinaryOp::Lt => Instr::Lt,
                BinaryOp::Le => Instr::Le,
                BinaryOp::Gt => Instr::Gt,
                BinaryOp::Ge => Instr::Ge,
                _ => Instr::In,
            });
            return Ok(());
        }
        let (instr, widen_l, widen_r) = arith(op, &l, &r).ok_or_else(|| {
            LowerError::new(
                Some(self.at(e.span)),
                format!(
                    "no instruction for `{}` on `{}` and `{}`",
                    op.as_str(),
                    self.l.an.types.display(&l),
                    self.l.an.types.display(&r)
                ),
            )
        })?;
        self.expr(lhs)?;
        if widen_l && l == Ty::Int {
            self.emit(Instr::IntToDec);
        }
        self.expr(rhs)?;
        if widen_r && r == Ty::Int {
            self.emit(Instr::IntToDec);
        }
        self.set_pos(e.span);
        self.emit(instr);
        Ok(())
    }

    fn call(&mut self, e: &Expr, callee: &Ident, args: &[Arg]) -> R<()> {
        let at = self.at(callee.span);
        let (index, sig) = self.l.builtin(&callee.name, at)?;
        let names: Vec<&str> = sig.params.iter().map(|p| p.name).collect();
        let slots = match_args(&names, args, |a| a.name.as_ref().map(|n| n.name.as_str()))
            .ok_or_else(|| LowerError::new(Some(at), "arguments do not match the builtin"))?;
        let result = self.ty(e)?;
        let mut argc: u8 = 0;
        let mut event = None;
        let mut lambda = None;
        for (param, arg) in sig.params.iter().zip(slots) {
            let pty = &param.ty;
            let Some(arg) = arg else {
                return Err(LowerError::new(Some(at), "a builtin argument is missing"));
            };
            let value = &arg.value;
            match pty {
                SigTy::EventOf(_) => {
                    let ExprKind::Name(n) = &value.kind else {
                        return Err(LowerError::new(
                            Some(self.at(value.span)),
                            "expected an event name",
                        ));
                    };
                    event = Some(self.l.event_schema(n, self.at(value.span))?);
                }
                SigTy::Fn(..) => {
                    let ExprKind::Lambda { params, body } = &value.kind else {
                        return Err(LowerError::new(
                            Some(self.at(value.span)),
                            "expected a function",
                        ));
                    };
                    lambda = Some(self.lambda(params, body)?);
                }
                _ => {
                    self.expr(value)?;
                    let at_ty = self.ty(value)?;
                    let target = match pty {
                        SigTy::Var(_) if *pty == sig.ret => result.clone(),
                        SigTy::Named(n) => crate::types::scalar(n).unwrap_or(Ty::Error),
                        _ => Ty::Error,
                    };
                    self.coerce(&at_ty, &target);
                    argc = argc.checked_add(1).ok_or_else(|| too_many("arguments"))?;
                }
            }
        }
        self.set_pos(e.span);
        self.emit(match (event, lambda) {
            (Some(event), block) => Instr::CallEvent {
                builtin: index,
                event,
                block,
            },
            (None, Some(block)) => Instr::CallLambda {
                builtin: index,
                argc,
                block,
            },
            (None, None) => Instr::Call {
                builtin: index,
                argc,
            },
        });
        Ok(())
    }

    /// Writes a lambda as a block of its own; its parameters get fresh slots.
    fn lambda(&mut self, params: &[Ident], body: &Expr) -> R<u32> {
        let mut slots = Vec::with_capacity(params.len());
        for p in params {
            slots.push(self.declare(p)?);
        }
        let index = self.begin_block(BlockKind::Lambda);
        self.cur.params = slots;
        self.expr(body)?;
        self.set_pos(body.span);
        self.emit(Instr::Return);
        self.end_block(index);
        Ok(index)
    }

    /// Writes an expression block: the expression, then `return`.
    pub(super) fn expr_block(&mut self, e: &Expr, result: Option<&Ty>) -> R<u32> {
        let index = self.begin_block(BlockKind::Expr);
        self.expr(e)?;
        if let Some(t) = result {
            let et = self.ty(e)?;
            self.coerce(&et, t);
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
        self.end_block(index);
        Ok(index)
    }

    /// Writes a message content value as a block, escaping every value that
    /// lands in it for `escape`: each part interpolated into a string, or the
    /// whole value when it is not a string literal.
    pub(super) fn content_block(&mut self, e: &Expr, escape: bc::Escape) -> R<u32> {
        let index = self.begin_block(BlockKind::Expr);
        if let ExprKind::Str(_) = &e.kind {
            self.escape = Some(escape);
            self.expr(e)?;
            self.escape = None;
        } else {
            self.expr(e)?;
            self.set_pos(e.span);
            self.emit_escape(escape.whole())?;
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
        self.end_block(index);
        Ok(index)
    }

    /// Calls the internal builtin that escapes the top of the stack.
    fn emit_escape(&mut self, escape: bc::Escape) -> R<()> {
        let builtin = self.l.escape_builtin(escape)?;
        self.emit(Instr::Call { builtin, argc: 1 });
        Ok(())
    }

    /// Writes block 0 as an expression block (lets, segments).
    pub(super) fn main_expr(&mut self, e: &Expr, result: Option<&Ty>) -> R<()> {
        self.expr(e)?;
        if let Some(t) = result {
            let et = self.ty(e)?;
            self.coerce(&et, t);
        }
        self.set_pos(e.span);
        self.emit(Instr::Return);
        Ok(())
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

    /// Gives every local a flow binds (`let`, `let x = wait for`) a
    /// persistent slot, before any lambda takes a scratch slot, and notes
    /// its name and the number its step will get. Steps are walked in the
    /// order `step` numbers them: each step, then the steps nested in it.
    pub(super) fn declare_bindings<'s>(
        &mut self,
        steps: impl IntoIterator<Item = &'s Step>,
    ) -> R<()> {
        for s in steps {
            let step = u16::try_from(self.bindings_walked).map_err(|_| too_many("steps"))?;
            self.bindings_walked += 1;
            match &s.kind {
                StepKind::Let { name, .. } => {
                    self.declare_persistent(name, step)?;
                }
                StepKind::WaitFor(w) => {
                    if let Some(b) = &w.binding {
                        self.declare_persistent(b, step)?;
                    }
                }
                StepKind::If(i) => {
                    for (_, b) in &i.branches {
                        self.declare_bindings(&b.steps)?;
                    }
                    if let Some(b) = &i.otherwise {
                        self.declare_bindings(&b.steps)?;
                    }
                }
                StepKind::Split(arms) => {
                    for a in arms {
                        self.declare_bindings(&a.body.steps)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn declare_persistent(&mut self, name: &Ident, step: u16) -> R<()> {
        self.declare(name)?;
        self.local_names.push(bc::LocalName {
            name: name.name.clone(),
            step,
        });
        Ok(())
    }

    /// Writes a steps block other than block 0 (`on exit`).
    pub(super) fn steps_block(&mut self, steps: &[Step], end: Span) -> R<u32> {
        let index = self.begin_block(BlockKind::Steps);
        self.steps(steps)?;
        self.set_pos(end);
        self.emit(Instr::End);
        self.end_block(index);
        Ok(index)
    }

    /// Writes steps into block 0, then `end`.
    pub(super) fn main_steps<'s>(
        &mut self,
        steps: impl IntoIterator<Item = &'s Step>,
        end: Span,
    ) -> R<()> {
        for s in steps {
            self.step(s)?;
        }
        self.set_pos(end);
        self.emit(Instr::End);
        Ok(())
    }

    fn steps(&mut self, steps: &[Step]) -> R<()> {
        for s in steps {
            self.step(s)?;
        }
        Ok(())
    }

    fn block(&mut self, b: &Block) -> R<()> {
        self.steps(&b.steps)
    }

    fn step(&mut self, s: &Step) -> R<()> {
        let at = self.at(s.span);
        let index = u16::try_from(self.tables.steps.len()).map_err(|_| too_many("steps"))?;
        let what = step_what(&s.kind);
        self.tables.steps.push(bc::StepInfo {
            label: s.label.as_ref().map(|l| l.name.clone()),
            what,
            block: self.cur_index,
            pc: self.here(),
        });
        self.set_pos(s.span);
        self.emit(Instr::Step(index));
        match &s.kind {
            StepKind::Wait(d) => {
                self.emit(Instr::Wait(d.seconds));
            }
            StepKind::WaitUntil(e) => {
                self.expr(e)?;
                self.set_pos(s.span);
                self.emit(Instr::WaitUntil);
            }
            StepKind::WaitFor(w) => {
                let mut events = Vec::new();
                let mut records = Vec::new();
                for ev in &w.events {
                    let schema = self.l.event_schema(&ev.name, self.at(ev.span))?;
                    records.push(schema);
                    events.push(bc::WaitEvent {
                        event: schema,
                        project: None,
                    });
                }
                let schema = if records.len() == 1 {
                    records[0]
                } else {
                    let shared = self.l.shared_schema(&records, at)?;
                    let fields: Vec<String> = self
                        .l
                        .an
                        .types
                        .record(crate::types::RecordId(shared))
                        .fields
                        .iter()
                        .map(|f| f.name.clone())
                        .collect();
                    for e in &mut events {
                        let rec = self.l.an.types.record(crate::types::RecordId(e.event));
                        let proj = fields
                            .iter()
                            .map(|f| {
                                rec.by_name
                                    .get(f)
                                    .and_then(|&i| u16::try_from(i).ok())
                                    .ok_or_else(|| {
                                        LowerError::new(Some(at), "shared field not found")
                                    })
                            })
                            .collect::<R<Vec<u16>>>()?;
                        e.project = Some(proj);
                    }
                    shared
                };
                let predicate = match &w.predicate {
                    Some(p) => Some(self.expr_block(p, None)?),
                    None => None,
                };
                let bind = match &w.binding {
                    Some(b) => Some(self.slot_of(b)?),
                    None => None,
                };
                let n = u16::try_from(self.tables.waits.len()).map_err(|_| too_many("waits"))?;
                self.tables.waits.push(bc::WaitFor {
                    events,
                    schema,
                    predicate,
                    within: w.within.seconds,
                    bind,
                });
                self.set_pos(s.span);
                self.emit(Instr::WaitFor(n));
            }
            StepKind::Send(call) => {
                let (message, params) = self
                    .l
                    .message(&call.callee.name, self.at(call.callee.span))?;
                let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
                let slots = match_args(&names, &call.args, |a| {
                    a.name.as_ref().map(|n| n.name.as_str())
                });
                let slots = slots.ok_or_else(|| {
                    LowerError::new(Some(at), "arguments do not match the message")
                })?;
                let mut given: u64 = 0;
                for (i, ((_, pty), arg)) in params.iter().zip(slots).enumerate() {
                    let Some(arg) = arg else { continue };
                    if i >= 64 {
                        return Err(LowerError::new(
                            Some(at),
                            "a message can take at most 64 parameters",
                        ));
                    }
                    self.expr(&arg.value)?;
                    let t = self.ty(&arg.value)?;
                    self.coerce(&t, pty);
                    given |= 1 << i;
                }
                self.set_pos(s.span);
                self.emit(Instr::Send { message, given });
            }
            StepKind::If(i) => {
                let mut ends = Vec::new();
                let n = i.branches.len();
                for (k, (cond, body)) in i.branches.iter().enumerate() {
                    self.expr(cond)?;
                    self.set_pos(cond.span);
                    let next = self.emit(Instr::JumpIfFalse(0));
                    self.block(body)?;
                    // The last branch with no `else` falls through to the end.
                    if k + 1 < n || i.otherwise.is_some() {
                        self.set_pos(body.span);
                        ends.push(self.emit(Instr::Jump(0)));
                    }
                    self.patch(next);
                }
                if let Some(b) = &i.otherwise {
                    self.block(b)?;
                }
                for j in ends {
                    self.patch(j);
                }
            }
            StepKind::Split(arms) => {
                let n = u16::try_from(self.tables.splits.len()).map_err(|_| too_many("splits"))?;
                self.tables.splits.push(bc::Split { arms: Vec::new() });
                self.emit(Instr::Split(n));
                let mut ends = Vec::new();
                let mut out = Vec::new();
                for (k, arm) in arms.iter().enumerate() {
                    out.push(bc::SplitArm {
                        percent: arm.percent.value,
                        name: arm.name.name.clone(),
                        target: self.here(),
                    });
                    self.block(&arm.body)?;
                    // The last arm falls through to what follows the split.
                    if k + 1 < arms.len() {
                        self.set_pos(arm.span);
                        ends.push(self.emit(Instr::Jump(0)));
                    }
                }
                for j in ends {
                    self.patch(j);
                }
                self.tables.splits[usize::from(n)].arms = out;
            }
            StepKind::SetProfile { field, value } => {
                let idx = self.l.profile_field(&field.name, self.at(field.span))?;
                let fty = self.l.profile_field_ty(idx);
                self.expr(value)?;
                let t = self.ty(value)?;
                self.coerce(&t, &fty);
                self.set_pos(s.span);
                self.emit(Instr::SetProfile(idx));
            }
            StepKind::Audience { op, name } => {
                let c = self.constant(Value::str(&name.value));
                self.emit(match op {
                    AudienceOp::Add => Instr::AudienceAdd(c),
                    AudienceOp::Remove => Instr::AudienceRemove(c),
                });
            }
            StepKind::Let { name, value } => {
                let slot = self.slot_of(name)?;
                self.expr(value)?;
                self.set_pos(s.span);
                self.emit(Instr::StoreLocal(slot));
            }
            StepKind::Exit => {
                self.emit(Instr::Exit);
            }
            StepKind::ExitIf(e) => {
                self.expr(e)?;
                self.set_pos(s.span);
                let skip = self.emit(Instr::JumpIfFalse(0));
                self.emit(Instr::Exit);
                self.patch(skip);
            }
            StepKind::Error => {
                return Err(LowerError::new(Some(at), "a step that did not parse"));
            }
        }
        Ok(())
    }

    /// Declares message parameters as slots `0..n`, in order.
    pub(super) fn declare_params(&mut self, names: &[&Ident]) -> R<()> {
        for n in names {
            self.declare(n)?;
        }
        Ok(())
    }
}

/// A short description of a step for listings and reports.
fn step_what(k: &StepKind) -> String {
    match k {
        StepKind::Wait(d) => format!("wait {}", bc::format_duration(d.seconds)),
        StepKind::WaitUntil(_) => "wait until".into(),
        StepKind::WaitFor(w) => {
            let names: Vec<&str> = w.events.iter().map(|e| e.name.as_str()).collect();
            format!("wait for {}", names.join(" or "))
        }
        StepKind::Send(c) => format!("send {}", c.callee.name),
        StepKind::If(_) => "if".into(),
        StepKind::Split(_) => "split".into(),
        StepKind::SetProfile { field, .. } => format!("set profile.{}", field.name),
        StepKind::Audience { op, name } => match op {
            AudienceOp::Add => format!("audience add {:?}", name.value),
            AudienceOp::Remove => format!("audience remove {:?}", name.value),
        },
        StepKind::Let { name, .. } => format!("let {}", name.name),
        StepKind::Exit => "exit".into(),
        StepKind::ExitIf(_) => "exit if".into(),
        StepKind::Error => "error".into(),
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

/// The instruction for an arithmetic operator on two present types, and
/// whether an int left or right operand must first become a decimal.
fn arith(op: BinaryOp, l: &Ty, r: &Ty) -> Option<(Instr, bool, bool)> {
    use BinaryOp as B;
    use Ty::*;
    let num = |t: &Ty| matches!(t, Int | Decimal);
    Some(match (op, l, r) {
        (B::Add, Int, Int) => (Instr::AddInt, false, false),
        (B::Sub, Int, Int) => (Instr::SubInt, false, false),
        (B::Mul, Int, Int) => (Instr::MulInt, false, false),
        (B::Rem, Int, Int) => (Instr::RemInt, false, false),
        (B::Div, Int, Int) => (Instr::DivInt, false, false),
        (B::Add, a, b) if num(a) && num(b) => (Instr::AddDec, true, true),
        (B::Sub, a, b) if num(a) && num(b) => (Instr::SubDec, true, true),
        (B::Mul, a, b) if num(a) && num(b) => (Instr::MulDec, true, true),
        (B::Div, a, b) if num(a) && num(b) => (Instr::DivDec, true, true),
        (B::Add, Money, Money) => (Instr::AddMoney, false, false),
        (B::Sub, Money, Money) => (Instr::SubMoney, false, false),
        (B::Mul, Money, b) if num(b) => (Instr::MulMoney, false, true),
        (B::Mul, a, Money) if num(a) => (Instr::MulMoney, true, false),
        (B::Mul, Money, Percent) | (B::Mul, Percent, Money) => (Instr::MulMoneyPct, false, false),
        (B::Div, Money, b) if num(b) => (Instr::DivMoney, false, true),
        (B::Div, Money, Money) => (Instr::DivMoneyMoney, false, false),
        (B::Add, Percent, Percent) => (Instr::AddPct, false, false),
        (B::Sub, Percent, Percent) => (Instr::SubPct, false, false),
        (B::Add, Duration, Duration) => (Instr::AddDur, false, false),
        (B::Sub, Duration, Duration) => (Instr::SubDur, false, false),
        (B::Mul, Duration, Int) | (B::Mul, Int, Duration) => (Instr::MulDur, false, false),
        (B::Div, Duration, Int) => (Instr::DivDur, false, false),
        (B::Add, Time, Duration) | (B::Add, Duration, Time) => (Instr::AddTimeDur, false, false),
        (B::Sub, Time, Duration) => (Instr::SubTimeDur, false, false),
        (B::Sub, Time, Time) => (Instr::SubTime, false, false),
        (B::Add, Date, Duration) => (Instr::AddDateDur, false, false),
        (B::Sub, Date, Duration) => (Instr::SubDateDur, false, false),
        (B::Sub, Date, Date) => (Instr::SubDate, false, false),
        (B::Add, String, String) => (Instr::Concat(2), false, false),
        _ => return None,
    })
}

/// Matches call arguments to parameters, positional first, then by name.
/// `None` when they do not fit (the checker has reported it).
pub(super) fn match_args<'x, A>(
    params: &[&str],
    args: &'x [A],
    name_of: impl Fn(&A) -> Option<&str>,
) -> Option<Vec<Option<&'x A>>> {
    let mut slots: Vec<Option<&A>> = params.iter().map(|_| None).collect();
    let mut positional = 0;
    for a in args {
        let i = match name_of(a) {
            None => {
                positional += 1;
                positional - 1
            }
            Some(n) => params.iter().position(|p| *p == n)?,
        };
        let slot = slots.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(a);
    }
    Some(slots)
}
