//! The syntax tree of a `.flow` file. Every node carries its byte [`Span`].
//!
//! The tree is faithful to the source (it keeps what was written, including
//! literals' own text where precision matters) and makes no semantic
//! decisions beyond the grammar: names are unresolved and types unchecked.
//! Nodes that failed to parse are kept as `Error` variants so that later
//! stages can skip them without reporting follow-on errors.

use rust_decimal::Decimal;
use serde::Serialize;

pub use nudge_diagnostics::Span;

/// A name as written, with its span.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A string literal without interpolation (wire names, paths, test names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StrLit {
    /// The decoded value.
    pub value: String,
    /// The span including the quotes.
    pub span: Span,
}

/// A parsed `.flow` file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct File {
    /// Top-level declarations in source order.
    pub items: Vec<Item>,
    /// The whole file.
    pub span: Span,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Item {
    /// `let NAME = EXPR`
    Let(LetDecl),
    /// `event NAME "Wire Name" { fields }`
    Event(EventDecl),
    /// `type NAME { fields }` or `type NAME = "a" | "b"`
    Type(TypeDecl),
    /// `profile { fields }`
    Profile(ProfileDecl),
    /// `segment NAME = EXPR`
    Segment(SegmentDecl),
    /// `message NAME(params) { content }`
    Message(MessageDecl),
    /// `flow NAME { clauses and steps }`
    Flow(FlowDecl),
    /// `policy { rules }`
    Policy(PolicyDecl),
    /// `test "name" { statements }`
    Test(TestDecl),
    /// Text that could not be parsed as a declaration.
    Error(Span),
}

impl Item {
    /// The span of the whole declaration.
    pub fn span(&self) -> Span {
        match self {
            Item::Let(d) => d.span,
            Item::Event(d) => d.span,
            Item::Type(d) => d.span,
            Item::Profile(d) => d.span,
            Item::Segment(d) => d.span,
            Item::Message(d) => d.span,
            Item::Flow(d) => d.span,
            Item::Policy(d) => d.span,
            Item::Test(d) => d.span,
            Item::Error(s) => *s,
        }
    }
}

/// `let NAME (: TYPE)? = EXPR` at top level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LetDecl {
    /// The constant's name.
    pub name: Ident,
    /// An optional type annotation.
    pub ty: Option<TypeExpr>,
    /// The value.
    pub value: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// A track event's schema.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventDecl {
    /// The name used in flows (`checkout_started`).
    pub name: Ident,
    /// The name on the wire (`"Checkout Started"`).
    pub wire: StrLit,
    /// The event's properties.
    pub fields: Vec<FieldDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// A field of an event, record or the profile: `name: type (= default)?`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDecl {
    /// The field name (keywords allowed).
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
    /// The value used when the data lacks the field.
    pub default: Option<Expr>,
    /// The whole field.
    pub span: Span,
}

/// A named type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeDecl {
    /// The type's name.
    pub name: Ident,
    /// What it is.
    pub kind: TypeDeclKind,
    /// The whole declaration.
    pub span: Span,
}

/// The body of a [`TypeDecl`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TypeDeclKind {
    /// `{ field: type, ... }`
    Record(Vec<FieldDecl>),
    /// `= "a" | "b" | "c"`: an enum whose values are strings.
    Enum(Vec<StrLit>),
}

/// A type as written: `string`, `time?`, `list<Product>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeExpr {
    /// The type's name.
    pub name: Ident,
    /// Type arguments, for `list<T>`.
    pub args: Vec<TypeExpr>,
    /// Whether `?` follows.
    pub optional: bool,
    /// The whole type.
    pub span: Span,
}

/// `profile { fields }`: custom profile traits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileDecl {
    /// The traits.
    pub fields: Vec<FieldDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// `segment NAME = EXPR`: a named predicate over the profile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentDecl {
    /// The segment's name.
    pub name: Ident,
    /// The predicate.
    pub predicate: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// A message template.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageDecl {
    /// The message's name.
    pub name: Ident,
    /// Typed parameters.
    pub params: Vec<Param>,
    /// `channel`, `purpose` and the content fields, in source order.
    pub content: Vec<ContentField>,
    /// The whole declaration.
    pub span: Span,
}

/// A message parameter: `name: type (= default)?`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
    /// The value used when a call leaves it out.
    pub default: Option<Expr>,
    /// The whole parameter.
    pub span: Span,
}

/// One line of a message body: `KEY VALUE`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContentField {
    /// `channel`, `purpose`, `subject`, `body`, `text`, ...
    pub key: Ident,
    /// The value.
    pub value: ContentValue,
    /// The whole line.
    pub span: Span,
}

/// The value of a [`ContentField`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ContentValue {
    /// An expression (a name for `channel` and `purpose`).
    Expr(Expr),
    /// `template "path"`: a template file relative to the `.flow` file.
    Template(StrLit),
}

/// `flow NAME { ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowDecl {
    /// The flow's name.
    pub name: Ident,
    /// Clauses and steps in source order.
    pub items: Vec<FlowItem>,
    /// The whole declaration.
    pub span: Span,
}

impl FlowDecl {
    /// The flow's top-level steps, in source order (its clauses left out).
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.items.iter().filter_map(|i| match i {
            FlowItem::Step(s) => Some(s),
            FlowItem::Clause(_) => None,
        })
    }

    /// The blocks of its `on exit` clauses, in source order.
    pub fn on_exit_blocks(&self) -> impl Iterator<Item = &Block> {
        self.items.iter().filter_map(|i| match i {
            FlowItem::Clause(Clause {
                kind: ClauseKind::OnExit(b),
                ..
            }) => Some(b),
            _ => None,
        })
    }
}

/// A flow body element.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum FlowItem {
    /// A header clause (rule that holds for the whole flow).
    Clause(Clause),
    /// A step of the journey.
    Step(Step),
}

/// A flow header clause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Clause {
    /// Which clause.
    pub kind: ClauseKind,
    /// The whole clause.
    pub span: Span,
}

/// The kinds of flow header clause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ClauseKind {
    /// `trigger ...`
    Trigger(Trigger),
    /// `entry once | once per D | always`
    Entry(EntryRule),
    /// `exit on EVENT (where PRED)?`
    ExitOn(EventFilter),
    /// `exit if PRED` before the first step: re-checked before every step.
    ExitIf(Expr),
    /// `suppress if PRED`
    Suppress(Expr),
    /// `quiet hours (CHANNEL)? T1 to T2`
    QuietHours(QuietHours),
    /// `cap (CHANNEL | marketing) N per D (then skip|defer)?`
    Cap(Cap),
    /// `goal EVENT (where PRED)? within D`
    Goal(Goal),
    /// `holdout P%`
    Holdout(PercentLit),
    /// `priority N`
    Priority(IntLit),
    /// `on exit { steps }`
    OnExit(Block),
}

/// An event name with an optional `where` predicate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventFilter {
    /// The event's flow-level name.
    pub event: Ident,
    /// The predicate, in which `event` is the matching event.
    pub predicate: Option<Expr>,
}

/// What starts a flow instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Trigger {
    /// `trigger EVENT (where PRED)?`
    Event(EventFilter),
    /// `trigger every CADENCE at T (local)? (for SEGMENT)?`, or a campaign:
    /// `trigger once on DATE at T (local)? (for SEGMENT)?`
    Schedule {
        /// How often.
        cadence: Cadence,
        /// At what time of day.
        at: TimeLit,
        /// Whether the time is the recipient's local time (else the policy zone).
        local: bool,
        /// Who receives it; everyone when absent.
        segment: Option<Ident>,
    },
    /// `trigger (D after | D before | on) profile.FIELD (every year)? (at T)? (grace D)?`
    DateProperty {
        /// How long after (or before) the date; none for `on`, the date itself.
        offset: Option<DurationLit>,
        /// Whether the offset counts back from the date (`before`).
        before: bool,
        /// The profile field holding the date.
        field: Ident,
        /// `every year`: on each anniversary of the date.
        yearly: Option<Span>,
        /// `at T`: the time of day, in the recipient's zone.
        at: Option<TimeLit>,
        /// `grace D`: a date learned this long past still fires at once.
        grace: Option<DurationLit>,
    },
    /// `trigger entering SEGMENT`
    Entering(Ident),
}

/// How often a scheduled trigger fires.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Cadence {
    /// `every day`
    Day(Span),
    /// `every monday` ... `every sunday`
    Weekday(Ident),
    /// `every month on N`
    Month(IntLit),
    /// `once on DATE`: a campaign, sent one time.
    Once(DateLit),
}

/// The re-entry rule of a flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum EntryRule {
    /// `entry once`: at most one instance per customer, ever.
    Once,
    /// `entry once per D`: at most one entry per window.
    OncePer(DurationLit),
    /// `entry always`: every trigger starts an instance.
    Always,
}

/// `quiet hours (CHANNEL)? FROM to TO`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuietHours {
    /// The channel it applies to; all channels when absent.
    pub channel: Option<Ident>,
    /// Start of the quiet window (local time).
    pub from: TimeLit,
    /// End of the quiet window (local time).
    pub to: TimeLit,
}

/// A frequency cap.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cap {
    /// A channel name or `marketing`.
    pub scope: Ident,
    /// How many sends.
    pub count: IntLit,
    /// Over what rolling window.
    pub per: DurationLit,
    /// What happens to a send beyond the cap.
    pub then: Option<CapAction>,
}

/// What to do with a send the cap does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CapAction {
    /// Drop it (the default).
    Skip,
    /// Hold it until the cap allows it.
    Defer,
}

/// `goal EVENT (where PRED)? within D`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goal {
    /// The conversion event and its predicate.
    pub filter: EventFilter,
    /// The attribution window.
    pub within: DurationArg,
}

/// A step, optionally labelled for versioned deploys (`reminder: send ...`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The label, if any.
    pub label: Option<Ident>,
    /// What the step does.
    pub kind: StepKind,
    /// The whole step, label included.
    pub span: Span,
}

/// The kinds of step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StepKind {
    /// `wait D`
    Wait(DurationArg),
    /// `wait until EXPR` (an instant)
    WaitUntil(Expr),
    /// `(let x =)? wait for E1 (or E2)* (where PRED)? within D`
    WaitFor(WaitFor),
    /// `send MESSAGE(args)`
    Send(Call),
    /// `if C { } else if C { } else { }`
    If(If),
    /// `split { 50% a { } 50% b { } }` or `split optimise floor 10% { a { } b { } }`
    Split(Split),
    /// `set profile.FIELD = EXPR`
    SetProfile {
        /// The profile field.
        field: Ident,
        /// The new value.
        value: Expr,
    },
    /// `audience add|remove "NAME"`
    Audience {
        /// Add or remove.
        op: AudienceOp,
        /// The audience.
        name: StrLit,
    },
    /// `let NAME = EXPR`
    Let {
        /// The local's name.
        name: Ident,
        /// Its value.
        value: Expr,
    },
    /// `exit`
    Exit,
    /// `exit if PRED` among the steps: a one-time check here.
    ExitIf(Expr),
    /// A step that failed to parse.
    Error,
}

/// `wait for` with its optional binding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaitFor {
    /// `let x =`: bound to the event, or `none` on timeout.
    pub binding: Option<Ident>,
    /// The awaited events (any of them).
    pub events: Vec<Ident>,
    /// The predicate, in which `event` is the candidate event.
    pub predicate: Option<Expr>,
    /// How long to wait.
    pub within: DurationArg,
}

/// `if` with its `else if` chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct If {
    /// Conditions and their blocks, in order.
    pub branches: Vec<(Expr, Block)>,
    /// The final `else`, if any.
    pub otherwise: Option<Block>,
}

/// A `split` step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Split {
    /// `optimise`: traffic moves to the arm that meets the flow's goal best.
    pub optimise: Option<Optimise>,
    /// The arms, in source order.
    pub arms: Vec<SplitArm>,
}

/// The `optimise (floor P%)?` of a split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Optimise {
    /// The share every arm keeps, when written.
    pub floor: Option<PercentLit>,
    /// The word `optimise` and its floor.
    pub span: Span,
}

/// One arm of a `split`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitArm {
    /// The share of customers: written for a plain split, not for one that optimises.
    pub percent: Option<PercentLit>,
    /// The variant's name, as reported.
    pub name: Ident,
    /// The steps for this variant.
    pub body: Block,
    /// The whole arm.
    pub span: Span,
}

/// Add to or remove from an audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AudienceOp {
    /// `audience add`
    Add,
    /// `audience remove`
    Remove,
}

/// `{ steps }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    /// The steps.
    pub steps: Vec<Step>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A call of a message or function: `NAME(args)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    /// What is called.
    pub callee: Ident,
    /// The arguments.
    pub args: Vec<Arg>,
    /// The whole call.
    pub span: Span,
}

/// A call argument, positional or `name: value`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arg {
    /// The parameter name, for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// `policy { ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyDecl {
    /// The rules.
    pub items: Vec<PolicyItem>,
    /// The whole declaration.
    pub span: Span,
}

/// A global rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyItem {
    /// Which rule.
    pub kind: PolicyItemKind,
    /// The whole rule.
    pub span: Span,
}

/// The kinds of global rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PolicyItemKind {
    /// `timezone "Area/City"`: for profiles without one.
    Timezone(StrLit),
    /// `quiet hours (CHANNEL)? T1 to T2`
    QuietHours(QuietHours),
    /// `cap (CHANNEL | marketing) N per D (then ...)?`
    Cap(Cap),
    /// `suppress list "path"`
    SuppressList(StrLit),
    /// `currency "EUR"`: the store's currency, for amounts in messages.
    Currency(StrLit),
}

/// `test "name" { ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestDecl {
    /// The test's name.
    pub name: StrLit,
    /// Its statements.
    pub stmts: Vec<TestStmt>,
    /// The whole declaration.
    pub span: Span,
}

/// A statement of a test block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestStmt {
    /// Which statement.
    pub kind: TestStmtKind,
    /// The whole statement.
    pub span: Span,
}

/// The kinds of test statement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TestStmtKind {
    /// `given profile ID { traits }`
    Given {
        /// The customer id.
        customer: StrLit,
        /// Traits.
        props: Vec<Prop>,
    },
    /// `at TIME CALL (arrives TIME)?`
    At {
        /// When it happens.
        at: TestTime,
        /// What happens.
        call: TestCall,
        /// When it reaches Nudge, if later than it happens (a late call).
        arrives: Option<TestTime>,
    },
    /// `run D`: advance the virtual clock.
    Run(DurationLit),
    /// `expect ...`
    Expect(Expectation),
    /// A statement that failed to parse.
    Error,
}

/// When a test call happens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TestTime {
    /// A time of day on the test's first day (UTC).
    TimeOfDay(TimeLit),
    /// An absolute instant.
    Instant(InstantLit),
    /// `+D` after the test's start.
    Offset(DurationLit),
}

/// A simulated Segment call in a test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TestCall {
    /// `track (anonymous)? ID EVENT { props }`
    Track {
        /// Whether the id is an anonymous id.
        anonymous: bool,
        /// The customer id.
        customer: StrLit,
        /// The event: a wire name string or a flow-level event name.
        event: EventRef,
        /// Event properties.
        props: Vec<Prop>,
    },
    /// `identify (anonymous)? ID { traits }`
    Identify {
        /// Whether the id is an anonymous id.
        anonymous: bool,
        /// The customer id.
        customer: StrLit,
        /// Traits.
        props: Vec<Prop>,
    },
    /// `alias FROM to TO`
    Alias {
        /// The previous id.
        from: StrLit,
        /// The id it joins.
        to: StrLit,
    },
    /// `page (anonymous)? ID ("name")? { props }`
    Page {
        /// Whether the id is an anonymous id.
        anonymous: bool,
        /// The customer id.
        customer: StrLit,
        /// The page name.
        name: Option<StrLit>,
        /// Page properties.
        props: Vec<Prop>,
    },
}

/// An event named in a test: by wire name or by flow-level name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum EventRef {
    /// `"Order Completed"`
    Wire(StrLit),
    /// `order_completed`
    Name(Ident),
}

/// `key: value` in a test's property block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prop {
    /// The property name.
    pub key: Ident,
    /// Its value.
    pub value: Expr,
}

/// An `expect` statement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expectation {
    /// `expect no ...`
    pub negated: bool,
    /// What is expected.
    pub kind: ExpectKind,
}

/// The kinds of expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ExpectKind {
    /// `send MESSAGE (to ID)? (where PRED)? (at TIME | between TIME and TIME)?`
    Send {
        /// The message.
        message: Ident,
        /// The recipient.
        to: Option<StrLit>,
        /// A predicate over the sent content (`content.subject`, ...).
        predicate: Option<Expr>,
        /// When it must have been sent.
        at: Option<TestTime>,
        /// The window it must have been sent in, both ends included.
        window: Option<(TestTime, TestTime)>,
    },
    /// `exit FLOW (reason "...")?`
    Exit {
        /// The flow.
        flow: Ident,
        /// The expected exit reason.
        reason: Option<StrLit>,
    },
    /// `audience "NAME" has ID`
    Audience {
        /// The audience.
        name: StrLit,
        /// The member.
        customer: StrLit,
    },
    /// `profile ID.FIELD == EXPR`
    Profile {
        /// The customer.
        customer: StrLit,
        /// The field.
        field: Ident,
        /// The expected value.
        value: Expr,
    },
    /// `conversion FLOW`
    Conversion {
        /// The flow.
        flow: Ident,
    },
    /// `decision MESSAGE OUTCOME (reason "...")?`
    Decision {
        /// The message.
        message: Ident,
        /// `sent`, `deferred`, `skipped`, `suppressed` or `blocked`.
        outcome: Ident,
        /// The expected reason.
        reason: Option<StrLit>,
    },
}

/// An integer literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IntLit {
    /// The value.
    pub value: i64,
    /// Where it was written.
    pub span: Span,
}

/// A percentage literal, such as `12.5%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PercentLit {
    /// The value, `12.5` for `12.5%`.
    pub value: Decimal,
    /// Where it was written.
    pub span: Span,
}

/// A duration literal; adjacent parts add up (`1h 30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DurationLit {
    /// Total length in seconds.
    pub seconds: i64,
    /// Where it was written.
    pub span: Span,
}

/// A duration where a flow needs a constant: a literal (`3d`) or the name
/// of a top-level `let` holding one (`grace`), which the checker folds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DurationArg {
    /// A literal such as `1h 30m`.
    Lit(DurationLit),
    /// A name, resolved by the checker to a constant duration.
    Name(Ident),
}

impl DurationArg {
    /// Where it was written.
    pub fn span(&self) -> Span {
        match self {
            DurationArg::Lit(d) => d.span,
            DurationArg::Name(n) => n.span,
        }
    }

    /// The literal's length in seconds; none for a name.
    pub fn literal(&self) -> Option<i64> {
        match self {
            DurationArg::Lit(d) => Some(d.seconds),
            DurationArg::Name(_) => None,
        }
    }
}

/// A time-of-day literal such as `21:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TimeLit {
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Where it was written.
    pub span: Span,
}

/// An instant literal such as `2026-12-18T17:00:00Z`, stored in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct InstantLit {
    /// Seconds since the Unix epoch, UTC.
    pub unix_seconds: i64,
    /// Where it was written.
    pub span: Span,
}

/// A date literal outside an expression, such as `2026-11-27`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DateLit {
    /// Days since 1970-01-01.
    pub days: i32,
    /// Where it was written.
    pub span: Span,
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// The whole expression.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ExprKind {
    /// `42`
    Int(i64),
    /// `12.50`
    Decimal(Decimal),
    /// `$50.00`
    Money(Decimal),
    /// `10%`
    Percent(Decimal),
    /// `1h 30m`, in seconds
    Duration(i64),
    /// `2026-12-18T17:00:00Z`, seconds since the epoch (UTC)
    Instant(i64),
    /// `2026-12-24`, days since 1970-01-01
    Date(i32),
    /// `21:00`, minutes since midnight
    TimeOfDay(u16),
    /// A string, possibly interpolated.
    Str(Vec<StrPart>),
    /// `true` or `false`
    Bool(bool),
    /// `none`
    None,
    /// A name: a constant, segment, parameter, local, `event`, `trigger`, `profile`.
    Name(String),
    /// `base.field` or `base?.field`
    Field {
        /// The record.
        base: Box<Expr>,
        /// The field.
        field: Ident,
        /// Whether written `?.` (none when the base is none).
        optional: bool,
    },
    /// `f(args)`: a builtin function call.
    Call {
        /// The function.
        callee: Ident,
        /// The arguments.
        args: Vec<Arg>,
    },
    /// `-e`, `not e`
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// `a OP b`
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
    /// `x => e` or `(x, y) => e`
    Lambda {
        /// The parameters.
        params: Vec<Ident>,
        /// The body.
        body: Box<Expr>,
    },
    /// `[a, b]`
    List(Vec<Expr>),
    /// `{ key: value }`: a record literal, written only as a value in a test's props.
    Record(Vec<Prop>),
    /// An expression that failed to parse.
    Error,
}

/// A piece of a string literal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StrPart {
    /// Literal text, escapes decoded.
    Text(String, Span),
    /// `{expr}`
    Interp(Expr),
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `not`
    Not,
}

/// Infix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
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
    /// `??`
    Default,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// How tightly a binary operator binds, loosest first: in `a or b and c`
/// the `and` binds first because [`Precedence::And`] is greater.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precedence {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`; these do not chain.
    Compare,
    /// `??`, which groups to the right.
    Default,
    /// `+`, `-`
    Sum,
    /// `*`, `/`, `%`
    Product,
}

impl BinaryOp {
    /// Every binary operator.
    pub const ALL: [BinaryOp; 15] = [
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::In,
        BinaryOp::Default,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ];

    /// How tightly the operator binds.
    pub fn precedence(self) -> Precedence {
        match self {
            BinaryOp::Or => Precedence::Or,
            BinaryOp::And => Precedence::And,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::In => Precedence::Compare,
            BinaryOp::Default => Precedence::Default,
            BinaryOp::Add | BinaryOp::Sub => Precedence::Sum,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => Precedence::Product,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Default => "??",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }
}
