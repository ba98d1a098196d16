//! The typed IR: what the checker hands to lowering.
//!
//! A checked project without errors becomes a [`Program`]: its `let`s,
//! segments, messages, flows, policy and test conditions with every name
//! resolved (to a table index, a schema, a field number or a local slot) and
//! every expression carrying its type and its span. Lowering reads only this
//! tree, so it has nothing left to look up and nothing left to refuse: each
//! node here is something it can write as bytecode. Numbers that the
//! bundle keeps in small integers are checked when the tree is built:
//! slots, fields, string parts and arguments are stored at their final
//! width, and a flow holds at most 65,535 steps, waits and splits, so
//! lowering can number them as it writes them.

use nudge_bytecode::{self as bc, Type, Value};
use nudge_diagnostics::{FileId, Span};
use nudge_syntax::ast::BinaryOp;
use rust_decimal::Decimal;

use crate::types::Ty;

/// A checked project, ready to be lowered.
#[derive(Clone, Debug)]
pub struct Program {
    /// Every record's schema, in the order of the checker's type table.
    pub schemas: Vec<bc::Schema>,
    /// Every enum, in the order of the checker's type table.
    pub enums: Vec<bc::EnumSchema>,
    /// The schema of the profile.
    pub profile: u32,
    /// Top-level `let`s, sorted by name: a `let`'s index is its place here.
    pub lets: Vec<Let>,
    /// Segments, sorted by name.
    pub segments: Vec<Segment>,
    /// Messages, sorted by name.
    pub messages: Vec<Message>,
    /// Flows, sorted by name.
    pub flows: Vec<Flow>,
    /// The merged `policy` blocks.
    pub policy: bc::Policy,
    /// The `where` conditions of the tests' `expect send`, in source order.
    pub conditions: Vec<Condition>,
}

/// A top-level `let`.
#[derive(Clone, Debug)]
pub struct Let {
    /// Its name.
    pub name: String,
    /// The file it is declared in.
    pub file: FileId,
    /// Its declared or inferred type.
    pub ty: Ty,
    /// That type in the bundle.
    pub bc_ty: Type,
    /// Its value.
    pub value: Expr,
    /// The local slots its code uses (lambda parameters).
    pub slots: u16,
}

/// A segment: a named condition on a customer.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Its name.
    pub name: String,
    /// The file it is declared in.
    pub file: FileId,
    /// Its condition.
    pub predicate: Expr,
    /// The local slots its code uses.
    pub slots: u16,
}

/// A message.
#[derive(Clone, Debug)]
pub struct Message {
    /// Its name.
    pub name: String,
    /// The file it is declared in.
    pub file: FileId,
    /// Its channel.
    pub channel: bc::Channel,
    /// Marketing or transactional.
    pub purpose: bc::Purpose,
    /// Its parameters, in slots `0..params.len()`.
    pub params: Vec<Param>,
    /// Its content keys other than `channel` and `purpose`, in source order.
    pub content: Vec<Content>,
    /// The local slots its code uses, parameters included.
    pub slots: u16,
}

/// A message parameter.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its declared type.
    pub ty: Ty,
    /// That type in the bundle.
    pub bc_ty: Type,
    /// Its default value, when it has one.
    pub default: Option<Expr>,
}

/// One content key of a message.
#[derive(Clone, Debug)]
pub struct Content {
    /// The key (`subject`, `body`, ...).
    pub key: String,
    /// Its value.
    pub value: ContentValue,
}

/// The value of a content key.
#[derive(Clone, Debug)]
pub enum ContentValue {
    /// An expression, whose values are escaped for the channel and key.
    Code {
        /// The value.
        expr: Expr,
        /// How what lands in it is escaped.
        escape: bc::Escape,
    },
    /// A template file, read and checked.
    Template(bc::Template),
}

/// A flow: at most 65,535 steps (its `on exit` steps included), waits
/// and splits.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Its name.
    pub name: String,
    /// The file it is declared in.
    pub file: FileId,
    /// What starts it (the first `trigger`).
    pub trigger: Trigger,
    /// The clauses with code written before the trigger, in source order.
    pub before_trigger: Vec<Clause>,
    /// The clauses with code written after the trigger, in source order.
    pub after_trigger: Vec<Clause>,
    /// How often a customer may enter.
    pub entry: bc::Entry,
    /// The flow's quiet hours.
    pub quiet: Vec<bc::QuietHours>,
    /// The flow's frequency caps.
    pub caps: Vec<bc::Cap>,
    /// The holdout share, if any.
    pub holdout: Option<Decimal>,
    /// The priority among flows sending at once.
    pub priority: i64,
    /// The steps.
    pub steps: Vec<Step>,
    /// The closing brace of the flow, where its `end` is placed.
    pub end: Span,
    /// The `on exit` steps (all blocks, in source order) and their closing brace.
    pub on_exit: Option<(Vec<Step>, Span)>,
    /// Slots kept while an instance sleeps: `0..locals`.
    pub locals: u16,
    /// The names of those slots, with the steps that declare them.
    pub local_names: Vec<bc::LocalName>,
    /// Every slot the flow's code uses.
    pub slots: u16,
}

/// A flow header clause that has code.
#[derive(Clone, Debug)]
pub enum Clause {
    /// `exit on EVENT where …`
    ExitOn(Rule),
    /// `exit if …`
    ExitIf(Expr),
    /// `suppress if …`
    Suppress(Expr),
    /// The first `goal`.
    Goal {
        /// The conversion event.
        rule: Rule,
        /// The attribution window, in seconds.
        within: i64,
    },
}

/// An event with an optional condition on it.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The event's schema.
    pub event: u32,
    /// The condition, in which `event` is the candidate.
    pub predicate: Option<Expr>,
}

/// What starts a flow.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// An event.
    Event(Rule),
    /// A schedule.
    Schedule {
        /// How often.
        cadence: bc::Cadence,
        /// Minutes after midnight.
        at: u16,
        /// In the customer's zone rather than the policy's.
        local: bool,
        /// The segment of customers it starts for.
        segment: Option<u32>,
    },
    /// A date in the profile, with an offset in seconds.
    DateProperty {
        /// The offset: negative before the date.
        offset: i64,
        /// The profile field.
        field: u16,
        /// On each anniversary of the date.
        yearly: bool,
        /// The local time of day, in minutes since midnight.
        at: Option<u16>,
        /// How long past its time a date learned late still fires, in seconds.
        grace: Option<i64>,
    },
    /// Entering a segment.
    Entering {
        /// The segment.
        segment: u32,
        /// Where the segment is named.
        at: Span,
    },
}

/// A step of a flow.
#[derive(Clone, Debug)]
pub struct Step {
    /// Its label, if written.
    pub label: Option<String>,
    /// What it is, for listings and reports (`send cart_reminder`).
    pub what: String,
    /// The whole step.
    pub span: Span,
    /// What it does.
    pub kind: StepKind,
}

/// The kinds of step.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// `wait D`, in seconds.
    Wait(i64),
    /// `wait until T`.
    WaitUntil(Expr),
    /// `wait for`.
    WaitFor(WaitFor),
    /// `send MESSAGE(args)`.
    Send {
        /// The message.
        message: u32,
        /// The arguments given, in parameter order.
        args: Vec<SendArg>,
        /// Which parameters were given, one bit each.
        given: u64,
    },
    /// `if`, `else if`, `else`.
    If {
        /// The conditions and their steps.
        branches: Vec<(Expr, Block)>,
        /// The `else` steps.
        otherwise: Option<Block>,
    },
    /// `split`.
    Split {
        /// The arms, in source order.
        arms: Vec<SplitArm>,
        /// For `split optimise`, the floor every arm keeps, in percent.
        optimise: Option<Decimal>,
    },
    /// `set profile.FIELD = value`.
    SetProfile {
        /// The field.
        field: u16,
        /// Its type.
        field_ty: Ty,
        /// The new value.
        value: Expr,
    },
    /// `audience add "NAME"`.
    AudienceAdd(String),
    /// `audience remove "NAME"`.
    AudienceRemove(String),
    /// `let NAME = value`, stored in a persistent slot.
    Let {
        /// The slot.
        slot: u16,
        /// The value.
        value: Expr,
    },
    /// `exit`.
    Exit,
    /// `exit if …` among the steps.
    ExitIf(Expr),
}

/// Steps between braces.
#[derive(Clone, Debug)]
pub struct Block {
    /// The steps.
    pub steps: Vec<Step>,
    /// The braces.
    pub span: Span,
}

/// One arm of a `split`.
#[derive(Clone, Debug)]
pub struct SplitArm {
    /// Its share, in percent (zero in a split that optimises).
    pub percent: Decimal,
    /// Its name.
    pub name: String,
    /// Its steps.
    pub body: Block,
    /// The whole arm.
    pub span: Span,
}

/// A `wait for`.
#[derive(Clone, Debug)]
pub struct WaitFor {
    /// The events awaited, with how each maps onto the shared record.
    pub events: Vec<bc::WaitEvent>,
    /// The schema of the event as seen by the predicate and the binding.
    pub schema: u32,
    /// The condition on the candidate event.
    pub predicate: Option<Expr>,
    /// How long to wait, in seconds.
    pub within: i64,
    /// The persistent slot the event is bound to.
    pub bind: Option<u16>,
}

/// An argument of a `send`.
#[derive(Clone, Debug)]
pub struct SendArg {
    /// The value.
    pub value: Expr,
    /// The parameter's type, which the value is widened to.
    pub param_ty: Ty,
}

/// The `where` condition of an `expect send` in a test.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The file of the test.
    pub file: FileId,
    /// The message the statement expects.
    pub message: String,
    /// The schema of the `content` record in slot 0.
    pub content: u32,
    /// The condition.
    pub predicate: Expr,
    /// The local slots its code uses, `content` included.
    pub slots: u16,
}

/// An expression with its type and place.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Its type, as the checker found it.
    pub ty: Ty,
    /// Where it is written.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// A constant: a literal, or a string without interpolation.
    Const(Value),
    /// A string literal without interpolation (a `Const` as far as code goes;
    /// kept apart because message content escapes string literals part by part).
    PlainStr(Value),
    /// An interpolated string.
    Interp {
        /// Its parts.
        parts: Vec<StrPart>,
        /// How many.
        count: u16,
    },
    /// A local variable or parameter.
    Local(u16),
    /// A top-level `let`, by index.
    Let(u32),
    /// A segment, by index.
    Segment(u32),
    /// `profile`.
    Profile,
    /// `trigger`.
    Trigger,
    /// `event`.
    Event,
    /// `profile.FIELD`.
    ProfileField {
        /// The field.
        field: u16,
        /// Where the field's name is.
        field_span: Span,
    },
    /// `base.FIELD` or `base?.FIELD` on a record.
    Field {
        /// The record.
        base: Box<Expr>,
        /// Its schema.
        schema: u32,
        /// The field.
        field: u16,
        /// Whether none is passed through (`?.`, or an optional base).
        optional: bool,
        /// Where the field's name is.
        field_span: Span,
    },
    /// A builtin call.
    Call {
        /// The builtin's index.
        builtin: u16,
        /// The arguments, in parameter order.
        args: Vec<CallArg>,
        /// How many of them are values on the stack.
        argc: u8,
    },
    /// `not e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// `a and b`, `a or b`, short-circuiting.
    Logic {
        /// `and` or `or`.
        and: bool,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `a ?? b`.
    Default {
        /// The optional value.
        lhs: Box<Expr>,
        /// The default.
        rhs: Box<Expr>,
    },
    /// A comparison or `in`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// Arithmetic with an instruction for these operand types.
    Arith {
        /// The operation, and which int operands become decimals.
        op: Arith,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `[a, b, …]`.
    List {
        /// The items.
        items: Vec<Expr>,
        /// How many.
        count: u32,
    },
}

/// A piece of an interpolated string.
#[derive(Clone, Debug)]
pub enum StrPart {
    /// Literal text.
    Text(String, Span),
    /// `{expr}`.
    Interp(Expr),
}

/// An argument of a builtin call.
#[derive(Clone, Debug)]
pub enum CallArg {
    /// An event name, by schema.
    Event(u32),
    /// A function.
    Lambda(Lambda),
    /// A value, widened to the parameter's type.
    Value {
        /// The value.
        expr: Expr,
        /// The parameter's type where it is known.
        target: Ty,
    },
}

/// A function passed to a builtin.
#[derive(Clone, Debug)]
pub struct Lambda {
    /// The slots of its parameters.
    pub params: Vec<u16>,
    /// Its body.
    pub body: Box<Expr>,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
}

/// An arithmetic operation on two present operands of known types: one per
/// instruction, so the checker accepts exactly the arithmetic that lowering
/// can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// int + int
    AddInt,
    /// int - int
    SubInt,
    /// int * int
    MulInt,
    /// int % int
    RemInt,
    /// int / int, a decimal
    DivInt,
    /// decimal + decimal (ints widened)
    AddDec,
    /// decimal - decimal
    SubDec,
    /// decimal * decimal
    MulDec,
    /// decimal / decimal
    DivDec,
    /// money + money
    AddMoney,
    /// money - money
    SubMoney,
    /// money * number
    MulMoney,
    /// money * percent
    MulMoneyPct,
    /// money / number
    DivMoney,
    /// money / money, a decimal
    DivMoneyMoney,
    /// percent + percent
    AddPct,
    /// percent - percent
    SubPct,
    /// duration + duration
    AddDur,
    /// duration - duration
    SubDur,
    /// duration * int
    MulDur,
    /// duration / int
    DivDur,
    /// time + duration
    AddTimeDur,
    /// time - duration
    SubTimeDur,
    /// time - time, a duration
    SubTime,
    /// date + duration
    AddDateDur,
    /// date - duration
    SubDateDur,
    /// date - date, a duration
    SubDate,
    /// string + string
    Concat,
}

/// An arithmetic operation chosen for two operand types, and which int
/// operands become decimals first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arith {
    /// The operation.
    pub op: ArithOp,
    /// Whether an int left operand is widened to a decimal.
    pub widen_lhs: bool,
    /// Whether an int right operand is widened to a decimal.
    pub widen_rhs: bool,
}

impl ArithOp {
    /// The operation for an operator on two present types, if there is one.
    pub fn of(op: BinaryOp, l: &Ty, r: &Ty) -> Option<Arith> {
        use ArithOp as A;
        use BinaryOp as B;
        use Ty::*;
        let num = |t: &Ty| matches!(t, Int | Decimal);
        let (op, widen_lhs, widen_rhs) = match (op, l, r) {
            (B::Add, Int, Int) => (A::AddInt, false, false),
            (B::Sub, Int, Int) => (A::SubInt, false, false),
            (B::Mul, Int, Int) => (A::MulInt, false, false),
            (B::Rem, Int, Int) => (A::RemInt, false, false),
            (B::Div, Int, Int) => (A::DivInt, false, false),
            (B::Add, a, b) if num(a) && num(b) => (A::AddDec, true, true),
            (B::Sub, a, b) if num(a) && num(b) => (A::SubDec, true, true),
            (B::Mul, a, b) if num(a) && num(b) => (A::MulDec, true, true),
            (B::Div, a, b) if num(a) && num(b) => (A::DivDec, true, true),
            (B::Add, Money, Money) => (A::AddMoney, false, false),
            (B::Sub, Money, Money) => (A::SubMoney, false, false),
            (B::Mul, Money, b) if num(b) => (A::MulMoney, false, true),
            (B::Mul, a, Money) if num(a) => (A::MulMoney, true, false),
            (B::Mul, Money, Percent) | (B::Mul, Percent, Money) => (A::MulMoneyPct, false, false),
            (B::Div, Money, b) if num(b) => (A::DivMoney, false, true),
            (B::Div, Money, Money) => (A::DivMoneyMoney, false, false),
            (B::Add, Percent, Percent) => (A::AddPct, false, false),
            (B::Sub, Percent, Percent) => (A::SubPct, false, false),
            (B::Add, Duration, Duration) => (A::AddDur, false, false),
            (B::Sub, Duration, Duration) => (A::SubDur, false, false),
            (B::Mul, Duration, Int) | (B::Mul, Int, Duration) => (A::MulDur, false, false),
            (B::Div, Duration, Int) => (A::DivDur, false, false),
            (B::Add, Time, Duration) | (B::Add, Duration, Time) => (A::AddTimeDur, false, false),
            (B::Sub, Time, Duration) => (A::SubTimeDur, false, false),
            (B::Sub, Time, Time) => (A::SubTime, false, false),
            (B::Add, Date, Duration) => (A::AddDateDur, false, false),
            (B::Sub, Date, Duration) => (A::SubDateDur, false, false),
            (B::Sub, Date, Date) => (A::SubDate, false, false),
            (B::Add, String, String) => (A::Concat, false, false),
            _ => return None,
        };
        Some(Arith {
            op,
            widen_lhs,
            widen_rhs,
        })
    }

    /// The type of the result.
    pub fn result(self) -> Ty {
        use ArithOp as A;
        match self {
            A::AddInt | A::SubInt | A::MulInt | A::RemInt => Ty::Int,
            A::DivInt | A::AddDec | A::SubDec | A::MulDec | A::DivDec | A::DivMoneyMoney => {
                Ty::Decimal
            }
            A::AddMoney | A::SubMoney | A::MulMoney | A::MulMoneyPct | A::DivMoney => Ty::Money,
            A::AddPct | A::SubPct => Ty::Percent,
            A::AddDur | A::SubDur | A::MulDur | A::DivDur | A::SubTime | A::SubDate => Ty::Duration,
            A::AddTimeDur | A::SubTimeDur => Ty::Time,
            A::AddDateDur | A::SubDateDur => Ty::Date,
            A::Concat => Ty::String,
        }
    }

    /// The instruction that performs it.
    pub fn instr(self) -> bc::Instr {
        use ArithOp as A;
        use bc::Instr as I;
        match self {
            A::AddInt => I::AddInt,
            A::SubInt => I::SubInt,
            A::MulInt => I::MulInt,
            A::RemInt => I::RemInt,
            A::DivInt => I::DivInt,
            A::AddDec => I::AddDec,
            A::SubDec => I::SubDec,
            A::MulDec => I::MulDec,
            A::DivDec => I::DivDec,
            A::AddMoney => I::AddMoney,
            A::SubMoney => I::SubMoney,
            A::MulMoney => I::MulMoney,
            A::MulMoneyPct => I::MulMoneyPct,
            A::DivMoney => I::DivMoney,
            A::DivMoneyMoney => I::DivMoneyMoney,
            A::AddPct => I::AddPct,
            A::SubPct => I::SubPct,
            A::AddDur => I::AddDur,
            A::SubDur => I::SubDur,
            A::MulDur => I::MulDur,
            A::DivDur => I::DivDur,
            A::AddTimeDur => I::AddTimeDur,
            A::SubTimeDur => I::SubTimeDur,
            A::SubTime => I::SubTime,
            A::AddDateDur => I::AddDateDur,
            A::SubDateDur => I::SubDateDur,
            A::SubDate => I::SubDate,
            A::Concat => I::Concat(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operator on every pair of scalar types: where there is an
    /// operation, its result is what the checker's arithmetic said before
    /// the two tables became one.
    #[test]
    fn results_follow_the_operand_types() {
        use BinaryOp as B;
        assert_eq!(
            ArithOp::of(B::Div, &Ty::Int, &Ty::Int).map(|a| a.op.result()),
            Some(Ty::Decimal)
        );
        assert_eq!(
            ArithOp::of(B::Sub, &Ty::Time, &Ty::Time).map(|a| a.op.result()),
            Some(Ty::Duration)
        );
        assert_eq!(
            ArithOp::of(B::Mul, &Ty::Int, &Ty::Money),
            Some(Arith {
                op: ArithOp::MulMoney,
                widen_lhs: true,
                widen_rhs: false
            })
        );
        assert_eq!(ArithOp::of(B::Rem, &Ty::Decimal, &Ty::Int), None);
        assert_eq!(ArithOp::of(B::Sub, &Ty::Duration, &Ty::Time), None);
    }
}
