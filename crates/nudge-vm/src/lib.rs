//! The Nudge virtual machine: runs the code of a compiled [`Bundle`].
//!
//! The VM is pure computation. Everything it needs to know about the world
//! (the customer's profile, the clock, the recipient's zone, the customer's
//! past events) it asks of a [`Host`], which the runtime's engine provides.
//! Steps that affect the world (sleeping, waiting for an event, sending,
//! audience changes, exits) are handed back to the engine as a [`Yield`], so
//! the engine decides what happens next and the VM never blocks.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use chrono_tz::Tz;
use nudge_bytecode::{Bundle, Instr, Pos, Record, Value};

pub mod bandit;
mod builtins;
mod exec;
mod ops;
mod render;

use serde::{Deserialize, Serialize};

/// What the VM asks of the engine while it runs code.
pub trait Host {
    /// The customer's profile: a record of the bundle's profile schema
    /// (borrowed where the host keeps one, made where it keeps it otherwise).
    fn profile(&self) -> Cow<'_, Record>;
    /// Profile field `field` as stored (`none` when unset), or `None` when
    /// the profile has no such field; read without making the whole record.
    fn profile_field(&self, field: u16) -> Option<Value> {
        self.profile().fields.get(usize::from(field)).cloned()
    }
    /// Writes profile field `field` (`set profile.f = v`).
    fn set_profile(&mut self, field: u16, value: Value);
    /// The current instant in whole seconds since the Unix epoch (virtual or
    /// wall clock): the language's instants are whole seconds.
    fn now(&self) -> i64;
    /// The recipient's time zone (the profile's, else the policy's, else UTC).
    fn timezone(&self) -> Tz;
    /// Calls `f` with this customer's events of schema `schema` that happened at
    /// or after `since` (milliseconds since the epoch, as [`Scope::since`]),
    /// oldest first, until `f` returns false.
    fn for_each_event(&self, schema: u32, since: i64, f: &mut dyn FnMut(&Value) -> bool);
    /// A stable key for the customer (their display id), for deterministic splits.
    fn customer_key(&self) -> &str;
    /// Up to `n` products to suggest to the customer (`recommend`), none of
    /// those in `exclude` (product ids). A host without a catalogue has
    /// nothing to suggest.
    fn recommend(&mut self, n: usize, exclude: &[String]) -> Vec<Suggestion> {
        let _ = (n, exclude);
        Vec::new()
    }
    /// When the customer will likely order product `product_id` again, in
    /// whole seconds since the epoch (`next_order_at`); `None` when they
    /// never ordered it or no reorder gap is known.
    fn next_order_at(&mut self, product_id: &str) -> Option<i64> {
        let _ = product_id;
        None
    }
    /// What each arm of split `split` of flow `flow` (a split that
    /// optimises) has done so far, in arm order (`arms` names them), for
    /// `split optimise` to choose from. A host that keeps no counts knows
    /// nothing yet: every arm at zero.
    fn split_counts(
        &self,
        flow: &str,
        split: u16,
        arms: &[nudge_bytecode::SplitArm],
    ) -> Vec<bandit::Arm> {
        let _ = (flow, split);
        vec![bandit::Arm::default(); arms.len()]
    }
}

/// A product a [`Host`] suggests: the fields of the stdlib's `Product`
/// record that a catalogue knows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Suggestion {
    /// `product_id`.
    pub product_id: String,
    /// `name`.
    pub name: Option<String>,
    /// `category`.
    pub category: Option<String>,
    /// `price`, exact; `$0` when unknown, as the record's default.
    pub price: Option<rust_decimal::Decimal>,
    /// `url`.
    pub url: Option<String>,
    /// `image_url`.
    pub image_url: Option<String>,
}

/// Which unit of the bundle a block belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitRef {
    /// `Bundle::flows[n]`.
    Flow(u32),
    /// `Bundle::messages[n]`.
    Message(u32),
    /// `Bundle::lets[n]`.
    Let(u32),
    /// `Bundle::segments[n]`.
    Segment(u32),
    /// `Bundle::change_points[n]`.
    ChangePoints(u32),
}

/// The names an expression block can see besides locals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// The event that started the instance (`trigger`).
    pub trigger: Option<&'a Value>,
    /// The event being matched by a `where` predicate (`event`).
    pub event: Option<&'a Value>,
    /// When the instance started, in milliseconds since the epoch: `any_event`
    /// and friends see events from here on. The VM only hands it back to the host.
    pub since: i64,
}

/// Where a flow instance is in its code: plain data, so it can be stored and resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The block being run (0: the steps; else the `on exit` block).
    pub block: u32,
    /// The next instruction to run.
    pub pc: u32,
    /// The local slots; only the flow's first `locals` slots survive a sleep.
    pub locals: Vec<Value>,
}

/// Why `run_steps` handed control back to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Yield {
    /// Step `n` begins: the engine checks the standing `exit if` rules, then resumes.
    Step(u16),
    /// Sleep until this instant in seconds since the epoch (`wait until`), then resume.
    Sleep(i64),
    /// Sleep this many seconds (`wait`), then resume: the engine counts them
    /// from its own clock, which keeps milliseconds, so a wait never ends early.
    SleepFor(i64),
    /// Wait as `Flow::waits[n]` says; before resuming, the engine stores the
    /// match (or `none` on timeout) in the wait's bound slot, if any.
    WaitFor(u16),
    /// Send message `message` with its complete arguments in parameter order
    /// (defaults already computed).
    Send {
        /// Index in `Bundle::messages`.
        message: u32,
        /// One value per parameter.
        args: Vec<Value>,
    },
    /// Add the customer to, or remove them from, an audience.
    Audience {
        /// The audience's name.
        name: Arc<str>,
        /// True to add, false to remove.
        add: bool,
    },
    /// Arm `arm` of `Flow::splits[split]` was chosen (and already jumped to).
    Split {
        /// Index in `Flow::splits`.
        split: u16,
        /// Index in that split's arms.
        arm: u16,
    },
    /// `exit`: end the instance (the engine then runs its `on exit` block).
    Exit,
    /// The block's steps are done.
    End,
}

/// The rendered content of a message, in the message's content order.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// `(key, text)` pairs: `subject`, `body`, `text`, ...
    pub content: Vec<(String, String)>,
}

/// What went wrong while running code.
#[derive(Clone, Debug, PartialEq)]
pub enum VmErrorKind {
    /// Integer overflow or a decimal out of range.
    Overflow,
    /// Division or remainder by zero.
    DivisionByZero,
    /// A value of the wrong shape for the instruction: a bundle the checker did not produce.
    BadCode(String),
    /// A template failed to render.
    Template(String),
    /// A value could not be formatted: a date format or a currency code
    /// known only at run time that cannot be read.
    Format(String),
}

/// A runtime error of one instance, with the source position of the failing instruction.
#[derive(Clone, Debug, PartialEq)]
pub struct VmError {
    /// What went wrong.
    pub kind: VmErrorKind,
    /// Where, when known.
    pub pos: Option<Pos>,
}

impl VmError {
    /// An error of this kind, its position to be filled in by the instruction that failed.
    pub fn new(kind: VmErrorKind) -> Self {
        VmError { kind, pos: None }
    }

    /// The error with its position shown as `file:line:col` using the bundle's file names.
    pub fn display<'a>(&'a self, bundle: &'a Bundle) -> impl fmt::Display + 'a {
        WithFiles { err: self, bundle }
    }
}

/// Shorthand for a [`VmErrorKind::BadCode`] error.
pub(crate) fn bad(msg: impl Into<String>) -> VmError {
    VmError::new(VmErrorKind::BadCode(msg.into()))
}

impl fmt::Display for VmErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmErrorKind::Overflow => f.write_str("arithmetic overflow"),
            VmErrorKind::DivisionByZero => f.write_str("division by zero"),
            VmErrorKind::BadCode(m) => write!(f, "bad code: {m}"),
            VmErrorKind::Template(m) => write!(f, "template error: {m}"),
            VmErrorKind::Format(m) => write!(f, "cannot format: {m}"),
        }
    }
}

impl fmt::Display for VmError {
    /// Without the bundle the file is shown by its index; see [`VmError::display`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(p) = self.pos {
            write!(f, " (file #{}:{}:{})", p.file, p.line, p.col)?;
        }
        Ok(())
    }
}

impl std::error::Error for VmError {}

struct WithFiles<'a> {
    err: &'a VmError,
    bundle: &'a Bundle,
}

impl fmt::Display for WithFiles<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.err.pos {
            Some(p) => match self.bundle.files.get(p.file as usize) {
                Some(file) => write!(f, "{} ({file}:{}:{})", self.err.kind, p.line, p.col),
                None => write!(f, "{}", self.err),
            },
            None => write!(f, "{}", self.err.kind),
        }
    }
}

/// The instant a date begins in `tz` (after a gap in the local clock, the
/// first instant of the day there is).
fn day_start(days: i32, tz: Tz) -> Option<i64> {
    use chrono::TimeZone;
    let day = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::Duration::days(i64::from(days)))?;
    let mut local = day.and_hms_opt(0, 0, 0)?;
    for _ in 0..(24 * 4) {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return Some(t.timestamp());
        }
        local += chrono::Duration::minutes(15);
    }
    None
}

/// Which of the bundle's `let`s are constants: their code reads no
/// customer, trigger, event or clock, directly or through other lets.
fn constant_lets(bundle: &Bundle) -> Vec<bool> {
    fn visit(bundle: &Bundle, n: usize, known: &mut Vec<Option<bool>>) -> bool {
        if let Some(Some(k)) = known.get(n) {
            return *k;
        }
        // A cycle is refused by the checker; were one here, it is no constant.
        if let Some(k) = known.get_mut(n) {
            *k = Some(false);
        }
        let code = bundle
            .lets
            .get(n)
            .map(|g| g.unit.blocks.iter().flat_map(|b| &b.code));
        let constant = code.is_some_and(|mut code| {
            code.all(|i| match i {
                Instr::LoadTrigger
                | Instr::LoadEvent
                | Instr::LoadProfile
                | Instr::LoadProfileField(_)
                | Instr::EvalSegment(_)
                | Instr::CallEvent { .. } => false,
                Instr::Call { builtin, .. } => {
                    let name = bundle.builtins.get(usize::from(*builtin));
                    match name.map(|n| (n, nudge_stdlib::Builtin::from_name(n))) {
                        Some((_, Some(b))) => !b.reads_context(),
                        // The escapes are internal and read only their argument.
                        Some((n, None)) => nudge_bytecode::Escape::of_builtin(n).is_some(),
                        None => false,
                    }
                }
                Instr::LoadLet(m) => visit(bundle, *m as usize, known),
                _ => true,
            })
        });
        if let Some(k) = known.get_mut(n) {
            *k = Some(constant);
        }
        constant
    }
    let mut known = vec![None; bundle.lets.len()];
    (0..bundle.lets.len())
        .map(|n| visit(bundle, n, &mut known))
        .collect()
}

/// The virtual machine for one bundle. Cheap to share (also across threads);
/// top-level `let`s that read nothing but constants are computed once.
pub struct Vm<'b> {
    bundle: &'b Bundle,
    /// One entry per `Bundle::builtins` name, bound once here so calls
    /// dispatch without comparing strings; an unknown name is kept for its error.
    callees: Vec<Result<builtins::Callee, String>>,
    /// One entry per `Bundle::lets` entry: a cell for a constant, computed
    /// on first use; none for a let that reads the profile, the trigger, the
    /// clock or the customer's events, computed at each use.
    lets: Vec<Option<OnceLock<Value>>>,
    /// Compiled templates, added on first render.
    templates: Mutex<minijinja::Environment<'b>>,
}

impl<'b> Vm<'b> {
    /// A VM for this bundle.
    pub fn new(bundle: &'b Bundle) -> Self {
        Vm {
            bundle,
            callees: bundle
                .builtins
                .iter()
                .map(|n| builtins::Callee::bind(n))
                .collect(),
            lets: constant_lets(bundle)
                .into_iter()
                .map(|constant| constant.then(OnceLock::new))
                .collect(),
            templates: Mutex::new({
                let mut env = minijinja::Environment::new();
                env.set_formatter(render::formatter);
                env.set_auto_escape_callback(render::auto_escape);
                env
            }),
        }
    }

    /// The bundle it runs.
    pub fn bundle(&self) -> &'b Bundle {
        self.bundle
    }

    /// The store's currency (the policy's `currency`), in which money is written in text.
    pub(crate) fn currency(&self) -> Option<&'b str> {
        self.bundle.policy.currency.as_deref()
    }

    /// A value as text, money in the store's currency.
    pub(crate) fn text(&self, v: &Value) -> String {
        v.to_text_in(self.currency())
    }

    /// Runs an expression block (`BlockKind::Expr`) of `unit` and returns its result.
    /// `locals` is grown to the unit's slot count when shorter.
    pub fn eval(
        &self,
        unit: UnitRef,
        block: u32,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        self.eval_block(unit, block, locals, scope, host)
    }

    /// Whether the customer is in segment `n` now.
    pub fn segment(&self, n: u32, host: &mut dyn Host) -> Result<bool, VmError> {
        let mut locals = Vec::new();
        match self.eval_block(UnitRef::Segment(n), 0, &mut locals, &Scope::default(), host)? {
            Value::Bool(b) => Ok(b),
            other => Err(bad(format!("segment {n} gave {other}, not a bool"))),
        }
    }

    /// The earliest instant after `after` (seconds since the epoch) at which
    /// segment `n`'s membership can change with time alone, if the bundle
    /// says when it can (`Bundle::change_points`). A point that fails or
    /// gives none is no point: that part of the condition cannot change.
    pub fn next_change(&self, n: u32, after: i64, host: &mut dyn Host) -> Option<i64> {
        let b = self.bundle;
        let index = b
            .change_points
            .binary_search_by_key(&n, |c| c.segment)
            .ok()?;
        let blocks = b.change_points.get(index)?.unit.blocks.len() as u32;
        let mut locals = Vec::new();
        (0..blocks)
            .filter_map(|block| {
                let at = UnitRef::ChangePoints(index as u32);
                match self.eval_block(at, block, &mut locals, &Scope::default(), host) {
                    Ok(Value::Time(t)) => Some(t),
                    Ok(Value::Date(d)) => day_start(d, host.timezone()),
                    _ => None,
                }
            })
            .filter(|&t| t > after)
            .min()
    }

    /// Runs flow `flow`'s steps from `frame` until the next yield. Afterwards
    /// `frame.pc` is the instruction to resume at; on `Sleep` and `WaitFor`
    /// `frame.locals` is truncated to the flow's `locals`.
    pub fn run_steps(
        &self,
        flow: u32,
        frame: &mut Frame,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Yield, VmError> {
        self.steps(flow, frame, scope, host)
    }

    /// Renders message `message`'s content with these arguments.
    pub fn render(
        &self,
        message: u32,
        args: &[Value],
        host: &mut dyn Host,
    ) -> Result<Rendered, VmError> {
        self.render_message(message, args, host)
    }
}

/// A stable bucket in `0..10_000` for a key and a salt, for splits and holdouts.
pub fn bucket(key: &str, salt: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is below 10_000, so it fits.
    (u64::from_be_bytes(first) % 10_000) as u32
}
