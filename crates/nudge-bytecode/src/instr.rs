//! The instruction set of the stack machine. `docs/bytecode.md` describes
//! each instruction's operands, stack effect and meaning.

/// One instruction. Operands index the tables of the enclosing [`crate::Unit`]
/// (constants, blocks), of the [`crate::Flow`] (waits, splits) or of the
/// [`crate::Bundle`] (schemas, lets, segments, messages, builtins).
///
/// Jump targets are instruction indexes within the same block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instr {
    // ---- values ----
    /// Push constant `n` of the unit.
    Const(u32),
    /// Drop the top of the stack.
    Pop,
    /// Push local slot `n`.
    LoadLocal(u16),
    /// Pop into local slot `n`.
    StoreLocal(u16),
    /// Push the event that started the instance.
    LoadTrigger,
    /// Push the event being matched by a `where` predicate.
    LoadEvent,
    /// Push the whole profile record.
    LoadProfile,
    /// Push field `n` of the profile.
    LoadProfileField(u16),
    /// Pop a record of `schema`, push its field `field`.
    LoadField {
        /// The record's schema (for listings and checks).
        schema: u32,
        /// The field index in that schema.
        field: u16,
    },
    /// Like `LoadField`, but a `none` record gives `none` (`?.`).
    LoadFieldOpt {
        /// The record's schema (for listings and checks).
        schema: u32,
        /// The field index in that schema.
        field: u16,
    },
    /// Push the value of top-level `let` `n`.
    LoadLet(u32),
    /// Push whether the customer is in segment `n`.
    EvalSegment(u32),
    /// Pop `n` values, push them as a list (first pushed first).
    MakeList(u32),
    /// Pop `n` values, push the concatenation of their texts.
    Concat(u16),
    /// Convert the top of the stack from int to decimal (into lists; none stays none).
    IntToDec,

    // ---- operators ----
    /// Boolean negation.
    Not,
    /// Arithmetic negation; keeps the type.
    Neg,
    /// Equality of any two values.
    Eq,
    /// Inequality of any two values.
    Ne,
    /// Less than (same ordered type).
    Lt,
    /// Less or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater or equal.
    Ge,
    /// Membership of a value in a list.
    In,
    /// int + int
    AddInt,
    /// int - int
    SubInt,
    /// int * int
    MulInt,
    /// int / int, giving a decimal
    DivInt,
    /// int % int
    RemInt,
    /// decimal + decimal
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
    /// money * decimal, in either order
    MulMoney,
    /// money * percent, in either order
    MulMoneyPct,
    /// money / decimal
    DivMoney,
    /// money / money, giving a decimal
    DivMoneyMoney,
    /// percent + percent
    AddPct,
    /// percent - percent
    SubPct,
    /// duration + duration
    AddDur,
    /// duration - duration
    SubDur,
    /// duration * int, in either order
    MulDur,
    /// duration / int
    DivDur,
    /// time + duration, in either order
    AddTimeDur,
    /// time - duration
    SubTimeDur,
    /// time - time, giving a duration
    SubTime,
    /// date + duration
    AddDateDur,
    /// date - duration
    SubDateDur,
    /// date - date, giving a duration
    SubDate,

    // ---- calls and control ----
    /// Pop `argc` arguments, call builtin `builtin`, push its result.
    Call {
        /// Index in [`crate::Bundle::builtins`].
        builtin: u16,
        /// Number of value arguments.
        argc: u8,
    },
    /// Like `Call`, passing block `block` of the unit as the function argument.
    CallLambda {
        /// Index in [`crate::Bundle::builtins`].
        builtin: u16,
        /// Number of value arguments.
        argc: u8,
        /// The lambda's block.
        block: u32,
    },
    /// Call a builtin over this customer's events of one schema (`any_event`).
    CallEvent {
        /// Index in [`crate::Bundle::builtins`].
        builtin: u16,
        /// The event schema.
        event: u32,
        /// The test lambda's block, when the builtin takes one.
        block: Option<u32>,
    },
    /// Jump to instruction `n` of this block.
    Jump(u32),
    /// Pop a bool; jump when false.
    JumpIfFalse(u32),
    /// Pop a bool; jump when true.
    JumpIfTrue(u32),
    /// When the top is not none, jump keeping it; otherwise pop it (`??`).
    JumpIfNotNone(u32),
    /// Pop the block's result and return it to the caller.
    Return,

    // ---- steps ----
    /// Step boundary `n` (index in [`crate::Flow::steps`]): standing exit rules are checked here.
    Step(u16),
    /// Sleep for `n` seconds.
    Wait(i64),
    /// Pop an instant; sleep until it (continue at once when it is past).
    WaitUntil,
    /// Wait for an event as described by [`crate::Flow::waits`] entry `n`.
    WaitFor(u16),
    /// Pop the given arguments and ask for message `message` to be sent.
    Send {
        /// Index in [`crate::Bundle::messages`].
        message: u32,
        /// Bit `i` set: parameter `i` is given (on the stack, in parameter order).
        given: u64,
    },
    /// Pop a value into profile field `n`.
    SetProfile(u16),
    /// Add the customer to the audience named by constant `n`.
    AudienceAdd(u32),
    /// Remove the customer from the audience named by constant `n`.
    AudienceRemove(u32),
    /// Take one arm of [`crate::Flow::splits`] entry `n` (jump to its target).
    Split(u16),
    /// End the instance here (`exit`).
    Exit,
    /// The block's steps are done: the instance (or its `on exit` block) completes.
    End,
}

impl Instr {
    /// The mnemonic used in listings and in `docs/bytecode.md`.
    pub fn mnemonic(&self) -> &'static str {
        use Instr::*;
        match self {
            Const(_) => "const",
            Pop => "pop",
            LoadLocal(_) => "load_local",
            StoreLocal(_) => "store_local",
            LoadTrigger => "load_trigger",
            LoadEvent => "load_event",
            LoadProfile => "load_profile",
            LoadProfileField(_) => "load_profile_field",
            LoadField { .. } => "load_field",
            LoadFieldOpt { .. } => "load_field_opt",
            LoadLet(_) => "load_let",
            EvalSegment(_) => "eval_segment",
            MakeList(_) => "make_list",
            Concat(_) => "concat",
            IntToDec => "int_to_dec",
            Not => "not",
            Neg => "neg",
            Eq => "eq",
            Ne => "ne",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
            In => "in",
            AddInt => "add_int",
            SubInt => "sub_int",
            MulInt => "mul_int",
            DivInt => "div_int",
            RemInt => "rem_int",
            AddDec => "add_dec",
            SubDec => "sub_dec",
            MulDec => "mul_dec",
            DivDec => "div_dec",
            AddMoney => "add_money",
            SubMoney => "sub_money",
            MulMoney => "mul_money",
            MulMoneyPct => "mul_money_pct",
            DivMoney => "div_money",
            DivMoneyMoney => "div_money_money",
            AddPct => "add_pct",
            SubPct => "sub_pct",
            AddDur => "add_dur",
            SubDur => "sub_dur",
            MulDur => "mul_dur",
            DivDur => "div_dur",
            AddTimeDur => "add_time_dur",
            SubTimeDur => "sub_time_dur",
            SubTime => "sub_time",
            AddDateDur => "add_date_dur",
            SubDateDur => "sub_date_dur",
            SubDate => "sub_date",
            Call { .. } => "call",
            CallLambda { .. } => "call_lambda",
            CallEvent { .. } => "call_event",
            Jump(_) => "jump",
            JumpIfFalse(_) => "jump_if_false",
            JumpIfTrue(_) => "jump_if_true",
            JumpIfNotNone(_) => "jump_if_not_none",
            Return => "return",
            Step(_) => "step",
            Wait(_) => "wait",
            WaitUntil => "wait_until",
            WaitFor(_) => "wait_for",
            Send { .. } => "send",
            SetProfile(_) => "set_profile",
            AudienceAdd(_) => "audience_add",
            AudienceRemove(_) => "audience_remove",
            Split(_) => "split",
            Exit => "exit",
            End => "end",
        }
    }
}
