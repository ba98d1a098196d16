//! The builtin functions of the flow language: one table that the type
//! checker, the VM, the language server and `docs/stdlib.md` all read.
//!
//! # Adding a builtin
//!
//! 1. Add a row at the end of the `builtins!` table below: the `Builtin`
//!    variant, the next free id, the name, the typed parameters and result,
//!    and the one-line doc (a sentence or two ending with an example in
//!    backticks). Ids are never reused or renumbered.
//! 2. Implement it in the exhaustive `match` on [`Builtin`] in
//!    `crates/nudge-vm/src/builtins.rs`; until then the workspace does not
//!    compile.
//! 3. Copy the signature and doc into `docs/stdlib.md`; the test in
//!    `tests/docs.rs` names the row it cannot find.
//!
//! The checker, completion, hover and signature help pick the new row up on
//! their own.

use std::fmt;

/// A type variable of a signature, bound afresh at each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// Any type.
    T,
    /// Any type, independent of `T`.
    U,
    /// A numeric type: `int`, `decimal`, `money` or `duration`.
    N,
    /// An event's record type.
    E,
    /// A moment: `time` or `date`.
    D,
}

impl Var {
    /// The letter the variable is written as.
    pub fn letter(self) -> char {
        match self {
            Var::T => 'T',
            Var::U => 'U',
            Var::N => 'N',
            Var::E => 'E',
            Var::D => 'D',
        }
    }
}

/// A type in a builtin signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigTy {
    /// A named type: a scalar such as `int` or `string`, or a stdlib record such as `Product`.
    Named(&'static str),
    /// `list<T>`.
    List(&'static SigTy),
    /// A type variable.
    Var(Var),
    /// `T?`: the value may be none.
    Optional(&'static SigTy),
    /// `fn(A, B) -> R`: the argument is a lambda.
    Fn(&'static [SigTy], &'static SigTy),
    /// `event<E>`: the argument names an event, binding the variable to its record.
    EventOf(Var),
}

impl fmt::Display for SigTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigTy::Named(n) => f.write_str(n),
            SigTy::List(t) => write!(f, "list<{t}>"),
            SigTy::Var(v) => write!(f, "{}", v.letter()),
            SigTy::Optional(t) => write!(f, "{t}?"),
            SigTy::Fn(ps, r) => {
                f.write_str("fn(")?;
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                write!(f, ") -> {r}")
            }
            SigTy::EventOf(v) => write!(f, "event<{}>", v.letter()),
        }
    }
}

/// A parameter of a builtin: its name (for named arguments) and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The name a call may give the argument by (`any(items: xs, test: …)`).
    pub name: &'static str,
    /// The parameter's type.
    pub ty: SigTy,
}

/// The signature of a builtin, displayed as `any(items: list<T>, test: fn(T) -> bool) -> bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The function's name.
    pub name: &'static str,
    /// The parameters in order.
    pub params: &'static [Param],
    /// The result type.
    pub ret: SigTy,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", p.name, p.ty)?;
        }
        write!(f, ") -> {}", self.ret)
    }
}

/// One row of the builtin table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinDef {
    /// Which builtin this row describes.
    pub builtin: Builtin,
    /// Its typed signature, which also carries its name.
    pub signature: Signature,
    /// One or two sentences ending with an example, for hover, completion and `docs/stdlib.md`.
    pub doc: &'static str,
}

impl BuiltinDef {
    /// The name used in calls.
    pub fn name(&self) -> &'static str {
        self.signature.name
    }
}

/// Declares the [`Builtin`] enum and the [`BUILTINS`] table from one list of
/// rows, so an enum variant without a row (or the reverse) cannot exist.
macro_rules! builtins {
    ($(
        $variant:ident = $id:literal,
        $name:literal ( $($param:ident : $ty:expr),* ) -> $ret:expr,
        $doc:literal;
    )*) => {
        /// A builtin function. The discriminant is its stable numeric id.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Builtin {
            $(
                #[doc = $doc]
                $variant = $id,
            )*
        }

        /// Every builtin with its signature and doc, in id order.
        pub const BUILTINS: &[BuiltinDef] = &[$(
            BuiltinDef {
                builtin: Builtin::$variant,
                signature: Signature {
                    name: $name,
                    params: &[$(Param { name: stringify!($param), ty: $ty }),*],
                    ret: $ret,
                },
                doc: $doc,
            },
        )*];
    };
}

// Shorthands that keep each row of the table on a few lines.
const T: SigTy = SigTy::Var(Var::T);
const U: SigTy = SigTy::Var(Var::U);
const N: SigTy = SigTy::Var(Var::N);
const E: SigTy = SigTy::Var(Var::E);
const D: SigTy = SigTy::Var(Var::D);
const INT: SigTy = SigTy::Named("int");
const BOOL: SigTy = SigTy::Named("bool");
const STRING: SigTy = SigTy::Named("string");
const MONEY: SigTy = SigTy::Named("money");
const TIME: SigTy = SigTy::Named("time");
const DATE: SigTy = SigTy::Named("date");
const LIST_T: SigTy = SigTy::List(&T);
const TEST_T: SigTy = SigTy::Fn(&[T], &BOOL);
const EVENT_E: SigTy = SigTy::EventOf(Var::E);
const TEST_E: SigTy = SigTy::Fn(&[E], &BOOL);
const DURATION: SigTy = SigTy::Named("duration");
const PRODUCTS: SigTy = SigTy::List(&SigTy::Named("Product"));

builtins! {
    // Lists.
    Any = 0, "any"(items: LIST_T, test: TEST_T) -> BOOL,
        "Whether at least one item passes the test; false for an empty list. \
         `any(trigger.products, p => p.price > $100)`";
    All = 1, "all"(items: LIST_T, test: TEST_T) -> BOOL,
        "Whether every item passes the test; true for an empty list. \
         `all(trigger.products, p => p.category == \"Coffee\")`";
    Count = 2, "count"(items: LIST_T, test: TEST_T) -> INT,
        "How many items pass the test. `count(trigger.products, p => p.quantity > 1)`";
    First = 3, "first"(items: LIST_T, test: TEST_T) -> SigTy::Optional(&T),
        "The first item that passes the test, or none when no item does. \
         `first(trigger.products, p => p.brand == \"Acme\")`";
    Filter = 4, "filter"(items: LIST_T, test: TEST_T) -> LIST_T,
        "The items that pass the test, in their original order. \
         `filter(trigger.products, p => p.price >= $20)`";
    Map = 5, "map"(items: LIST_T, f: SigTy::Fn(&[T], &U)) -> SigTy::List(&U),
        "Each item transformed by the function, in order. \
         `map(trigger.products, p => p.name ?? p.product_id)`";
    Sum = 6, "sum"(items: LIST_T, f: SigTy::Fn(&[T], &N)) -> N,
        "The total of the function over all items; zero for an empty list. \
         `sum(trigger.products, p => p.price * p.quantity)`";
    Len = 7, "len"(items: LIST_T) -> INT,
        "The number of items in the list. `len(trigger.products) > 2`";
    // Numbers.
    Min = 8, "min"(a: N, b: N) -> N,
        "The smaller of two numbers of the same type. `min(trigger.discount, $20)`";
    Max = 9, "max"(a: N, b: N) -> N,
        "The larger of two numbers of the same type. `max(trigger.discount, $5)`";
    Round = 10, "round"(value: N, places: INT) -> N,
        "The number rounded to that many decimal places, halves away from zero. \
         `round(trigger.total / 3, 2)`";
    // Text.
    Contains = 11, "contains"(text: STRING, part: STRING) -> BOOL,
        "Whether the text contains the part, case-sensitively. \
         `contains(event.url ?? \"\", \"/sale/\")`";
    StartsWith = 12, "starts_with"(text: STRING, prefix: STRING) -> BOOL,
        "Whether the text begins with the prefix, case-sensitively. \
         `starts_with(profile.phone ?? \"\", \"+1\")`";
    EndsWith = 13, "ends_with"(text: STRING, suffix: STRING) -> BOOL,
        "Whether the text ends with the suffix, case-sensitively. \
         `ends_with(profile.email ?? \"\", \"@example.com\")`";
    Lower = 14, "lower"(text: STRING) -> STRING,
        "The text in lower case, so comparisons ignore case. \
         `lower(trim(event.text)) == \"stop\"`";
    Upper = 15, "upper"(text: STRING) -> STRING,
        "The text in upper case. `upper(trigger.coupon ?? \"\")`";
    Trim = 16, "trim"(text: STRING) -> STRING,
        "The text without leading and trailing whitespace. `trim(event.text)`";
    FormatMoney = 17, "format_money"(amount: MONEY) -> STRING,
        "The amount as shoppers read it, in the store's currency (the policy's `currency`; `$` and two decimals without one). \
         `format_money($12.5)` is `\"$12.50\"`";
    UrlEncode = 18, "url_encode"(text: STRING) -> STRING,
        "The text percent-encoded for use inside a URL query. \
         `\"https://shop.example/search?q={url_encode(event.query ?? \"\")}\"`";
    // Time.
    Now = 19, "now"() -> TIME,
        "The current instant: the virtual clock in replays and tests, the wall clock live. \
         `now() < holiday_cutoff`";
    DateOf = 20, "date_of"(t: TIME) -> DATE,
        "The calendar date of an instant in the recipient's time zone (the policy zone when the profile has none). \
         `date_of(now()) == 2026-12-24`";
    DaysBetween = 21, "days_between"(a: TIME, b: TIME) -> INT,
        "Whole days from a to b, counting 24-hour periods; negative when b is before a. \
         `days_between(profile.last_order_at ?? now(), now()) >= 60`";
    // This customer's events.
    AnyEvent = 22, "any_event"(kind: EVENT_E, test: TEST_E) -> BOOL,
        "Whether this customer sent an event of that kind, passing the test, since the flow instance started. \
         `any_event(return_requested, r => r.order_id == trigger.order_id)`";
    CountEvents = 23, "count_events"(kind: EVENT_E, test: TEST_E) -> INT,
        "How many events of that kind, passing the test, this customer sent since the flow instance started. \
         `count_events(product_viewed, v => v.product_id == trigger.product_id)`";
    LastEvent = 24, "last_event"(kind: EVENT_E) -> SigTy::Optional(&E),
        "The latest event of that kind from this customer since the flow instance started, or none. \
         `last_event(cart_viewed)?.cart_id`";
    // Formatting for messages.
    FormatDate = 25, "format_date"(moment: D, format: STRING) -> STRING,
        "An instant or a date as the recipient reads it, in their time zone and in the language of `profile.locale`: \
         a style (`short`, `medium`, `long`, `full`, `time`) or a pattern (`%d %B %Y`). \
         `format_date(profile.renews_at ?? now(), \"long\")` is `\"December 24, 2026\"`";
    FormatMoneyIn = 26, "format_money_in"(amount: MONEY, currency: STRING) -> STRING,
        "The amount as shoppers read it in a currency given by its ISO 4217 code: its sign and minor units. \
         `format_money_in(order.total, order.currency ?? \"EUR\")` is `\"€12.50\"`";
    // Recommendations.
    Recommend = 27, "recommend"(n: INT) -> PRODUCTS,
        "Up to n products to suggest to this customer from the store's orders, never one they bought, one in the trigger or one out of stock; \
         best sellers of the category, of the store, then the project's list fill in. \
         `recommend(3)`";
    RecommendExcluding = 28, "recommend_excluding"(n: INT, exclude: PRODUCTS) -> PRODUCTS,
        "As `recommend`, never suggesting the products listed either. \
         `recommend_excluding(3, last_event(cart_viewed)?.products ?? [])`";
    NextOrderAt = 29, "next_order_at"(product_id: STRING) -> SigTy::Optional(&TIME),
        "When this customer will likely order the product again: their last order of it plus their own average gap between orders of it, \
         else the product's average reorder gap, else its category's; none when they never ordered it or no gap is known. \
         `next_order_at(\"beans-1kg\")`";
    // This customer's events within a window, for segments over behaviour.
    AnyEventWithin = 30, "any_event_within"(kind: EVENT_E, within: DURATION, test: TEST_E) -> BOOL,
        "Whether this customer sent an event of that kind, passing the test, within that long before now (and since the flow instance started, in a flow). \
         `any_event_within(order_completed, 90d, o => true)`";
    CountEventsWithin = 31, "count_events_within"(kind: EVENT_E, within: DURATION, test: TEST_E) -> INT,
        "How many events of that kind, passing the test, this customer sent within that long before now (and since the flow instance started, in a flow). \
         `count_events_within(product_viewed, 30d, v => v.category == \"Shoes\") >= 3`";
    SumEventsWithin = 32, "sum_events_within"(kind: EVENT_E, within: DURATION, f: SigTy::Fn(&[E], &N)) -> N,
        "The total of the function over this customer's events of that kind within that long before now (and since the flow instance started, in a flow); zero for none. \
         `sum_events_within(order_completed, 365d, o => o.total) >= $500`";
    LastEventWithin = 33, "last_event_within"(kind: EVENT_E, within: DURATION) -> SigTy::Optional(&E),
        "The latest event of that kind from this customer within that long before now (and since the flow instance started, in a flow), or none. \
         `last_event_within(product_viewed, 7d)?.category`";
}

// Row `i` of the table is the builtin with id `i`, so `Builtin::def` is an index.
const _: () = {
    let mut i = 0;
    while i < BUILTINS.len() {
        assert!(
            BUILTINS[i].builtin as usize == i,
            "the builtin table is not in dense id order"
        );
        i += 1;
    }
};

impl Builtin {
    /// Its stable numeric id.
    pub fn id(self) -> u16 {
        self as u16
    }

    /// The builtin with this id.
    pub fn from_id(id: u16) -> Option<Builtin> {
        BUILTINS.get(usize::from(id)).map(|d| d.builtin)
    }

    /// The builtin called by this name (names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Builtin> {
        builtin(name).map(|d| d.builtin)
    }

    /// Its row of the table.
    pub fn def(self) -> &'static BuiltinDef {
        &BUILTINS[usize::from(self.id())]
    }

    /// The name used in calls.
    pub fn name(self) -> &'static str {
        self.def().signature.name
    }

    /// Its typed signature.
    pub fn signature(self) -> &'static Signature {
        &self.def().signature
    }

    /// Its one-line documentation.
    pub fn doc(self) -> &'static str {
        self.def().doc
    }

    /// Whether it reads this customer's events within a window before now:
    /// its second argument, a duration, is on the stack when it is called.
    pub fn windowed(self) -> bool {
        matches!(
            self,
            Builtin::AnyEventWithin
                | Builtin::CountEventsWithin
                | Builtin::SumEventsWithin
                | Builtin::LastEventWithin
        )
    }

    /// Whether its result depends on more than its arguments: the clock,
    /// the recipient (zone, language) or their events. A top-level `let`
    /// that calls one is computed again at each use, never kept.
    pub fn reads_context(self) -> bool {
        use Builtin as B;
        match self {
            B::Now
            | B::DateOf
            | B::FormatDate
            | B::AnyEvent
            | B::CountEvents
            | B::LastEvent
            | B::Recommend
            | B::RecommendExcluding
            | B::NextOrderAt
            | B::AnyEventWithin
            | B::CountEventsWithin
            | B::SumEventsWithin
            | B::LastEventWithin => true,
            B::Any
            | B::All
            | B::First
            | B::Filter
            | B::Map
            | B::Sum
            | B::Len
            | B::Count
            | B::Min
            | B::Max
            | B::Round
            | B::Contains
            | B::StartsWith
            | B::EndsWith
            | B::Lower
            | B::Upper
            | B::Trim
            | B::FormatMoney
            | B::UrlEncode
            | B::DaysBetween
            | B::FormatMoneyIn => false,
        }
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Finds a builtin's row by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinDef> {
    BUILTINS.iter().find(|b| b.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_listed_builtins_and_rejects_others() {
        let any = builtin("any").expect("any is a builtin");
        assert_eq!(any.builtin, Builtin::Any);
        assert_eq!(
            any.signature.to_string(),
            "any(items: list<T>, test: fn(T) -> bool) -> bool"
        );
        assert!(builtin("Any").is_none(), "names are case-sensitive");
        assert!(builtin("product_viewed").is_none());
        assert_eq!(Builtin::from_name("last_event"), Some(Builtin::LastEvent));
        assert_eq!(Builtin::from_name("escape:html"), None);
    }

    #[test]
    fn ids_and_names_round_trip() {
        for (i, d) in BUILTINS.iter().enumerate() {
            let b = d.builtin;
            assert_eq!(usize::from(b.id()), i);
            assert_eq!(Builtin::from_id(b.id()), Some(b));
            assert_eq!(Builtin::from_name(b.name()), Some(b));
            assert_eq!(b.def(), d);
        }
        let past_end = u16::try_from(BUILTINS.len()).expect("few builtins");
        assert_eq!(Builtin::from_id(past_end), None);
    }

    #[test]
    fn ids_are_stable() {
        // Ids are part of the interface: renumbering one is a breaking change.
        assert_eq!(Builtin::Any.id(), 0);
        assert_eq!(Builtin::Len.id(), 7);
        assert_eq!(Builtin::FormatMoney.id(), 17);
        assert_eq!(Builtin::LastEvent.id(), 24);
    }

    #[test]
    fn signatures_display_in_the_documented_syntax() {
        assert_eq!(
            Builtin::Map.signature().to_string(),
            "map(items: list<T>, f: fn(T) -> U) -> list<U>"
        );
        assert_eq!(Builtin::Now.signature().to_string(), "now() -> time");
        assert_eq!(
            Builtin::LastEvent.signature().to_string(),
            "last_event(kind: event<E>) -> E?"
        );
        let nested = SigTy::Fn(&[INT, SigTy::List(&SigTy::Optional(&STRING))], &BOOL);
        assert_eq!(nested.to_string(), "fn(int, list<string?>) -> bool");
    }
}
