/// A builtin function: its name, its signature and what it does.
///
/// The signature is written in the flow type syntax (see `docs/stdlib.md`),
/// so that the type checker and the documentation read the same text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    /// The name used in calls.
    pub name: &'static str,
    /// The signature, such as `any(items: list<T>, test: fn(T) -> bool) -> bool`.
    pub signature: &'static str,
    /// One or two sentences for hover and completion.
    pub doc: &'static str,
}

// Shorthand for one table row, so each builtin reads as one line of three strings.
const fn b(name: &'static str, signature: &'static str, doc: &'static str) -> Builtin {
    Builtin {
        name,
        signature,
        doc,
    }
}

/// Every builtin function.
pub const BUILTINS: &[Builtin] = &[
    // Lists.
    b(
        "any",
        "any(items: list<T>, test: fn(T) -> bool) -> bool",
        "Whether at least one item passes the test; false for an empty list. \
         `any(trigger.products, p => p.price > $100)`",
    ),
    b(
        "all",
        "all(items: list<T>, test: fn(T) -> bool) -> bool",
        "Whether every item passes the test; true for an empty list. \
         `all(trigger.products, p => p.category == \"Coffee\")`",
    ),
    b(
        "count",
        "count(items: list<T>, test: fn(T) -> bool) -> int",
        "How many items pass the test. `count(trigger.products, p => p.quantity > 1)`",
    ),
    b(
        "first",
        "first(items: list<T>, test: fn(T) -> bool) -> T?",
        "The first item that passes the test, or none when no item does. \
         `first(trigger.products, p => p.brand == \"Acme\")`",
    ),
    b(
        "filter",
        "filter(items: list<T>, test: fn(T) -> bool) -> list<T>",
        "The items that pass the test, in their original order. \
         `filter(trigger.products, p => p.price >= $20)`",
    ),
    b(
        "map",
        "map(items: list<T>, f: fn(T) -> U) -> list<U>",
        "Each item transformed by the function, in order. \
         `map(trigger.products, p => p.name ?? p.product_id)`",
    ),
    b(
        "sum",
        "sum(items: list<T>, f: fn(T) -> N) -> N",
        "The total of the function over all items; zero for an empty list. \
         `sum(trigger.products, p => p.price * p.quantity)`",
    ),
    b(
        "len",
        "len(items: list<T>) -> int",
        "The number of items in the list. `len(trigger.products) > 2`",
    ),
    // Numbers.
    b(
        "min",
        "min(a: N, b: N) -> N",
        "The smaller of two numbers of the same type. `min(trigger.discount, $20)`",
    ),
    b(
        "max",
        "max(a: N, b: N) -> N",
        "The larger of two numbers of the same type. `max(trigger.discount, $5)`",
    ),
    b(
        "round",
        "round(value: N, places: int) -> N",
        "The number rounded to that many decimal places, halves away from zero. \
         `round(trigger.total / 3, 2)`",
    ),
    // Text.
    b(
        "contains",
        "contains(text: string, part: string) -> bool",
        "Whether the text contains the part, case-sensitively. \
         `contains(event.url ?? \"\", \"/sale/\")`",
    ),
    b(
        "starts_with",
        "starts_with(text: string, prefix: string) -> bool",
        "Whether the text begins with the prefix, case-sensitively. \
         `starts_with(profile.phone ?? \"\", \"+1\")`",
    ),
    b(
        "ends_with",
        "ends_with(text: string, suffix: string) -> bool",
        "Whether the text ends with the suffix, case-sensitively. \
         `ends_with(profile.email ?? \"\", \"@example.com\")`",
    ),
    b(
        "lower",
        "lower(text: string) -> string",
        "The text in lower case, so comparisons ignore case. \
         `lower(trim(event.text)) == \"stop\"`",
    ),
    b(
        "upper",
        "upper(text: string) -> string",
        "The text in upper case. `upper(trigger.coupon ?? \"\")`",
    ),
    b(
        "trim",
        "trim(text: string) -> string",
        "The text without leading and trailing whitespace. `trim(event.text)`",
    ),
    b(
        "format_money",
        "format_money(amount: money) -> string",
        "The amount as shoppers read it, with a currency sign and two decimals. \
         `format_money($12.5)` is `\"$12.50\"`",
    ),
    b(
        "url_encode",
        "url_encode(text: string) -> string",
        "The text percent-encoded for use inside a URL query. \
         `\"https://shop.example/search?q={url_encode(event.query ?? \"\")}\"`",
    ),
    // Time.
    b(
        "now",
        "now() -> time",
        "The current instant: the virtual clock in replays and tests, the wall clock live. \
         `now() < holiday_cutoff`",
    ),
    b(
        "date_of",
        "date_of(t: time) -> date",
        "The calendar date of an instant in the recipient's time zone (the policy zone when the profile has none). \
         `date_of(now()) == 2026-12-24`",
    ),
    b(
        "days_between",
        "days_between(a: time, b: time) -> int",
        "Whole days from a to b, counting 24-hour periods; negative when b is before a. \
         `days_between(profile.last_order_at ?? now(), now()) >= 60`",
    ),
    // This customer's events.
    b(
        "any_event",
        "any_event(kind: event<E>, test: fn(E) -> bool) -> bool",
        "Whether this customer sent an event of that kind, passing the test, since the flow instance started. \
         `any_event(return_requested, r => r.order_id == trigger.order_id)`",
    ),
    b(
        "count_events",
        "count_events(kind: event<E>, test: fn(E) -> bool) -> int",
        "How many events of that kind, passing the test, this customer sent since the flow instance started. \
         `count_events(product_viewed, v => v.product_id == trigger.product_id)`",
    ),
    b(
        "last_event",
        "last_event(kind: event<E>) -> E?",
        "The latest event of that kind from this customer since the flow instance started, or none. \
         `last_event(cart_viewed)?.cart_id`",
    ),
];

/// Finds a builtin by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_listed_builtins_and_rejects_others() {
        let any = builtin("any").expect("any is a builtin");
        assert_eq!(
            any.signature,
            "any(items: list<T>, test: fn(T) -> bool) -> bool"
        );
        assert!(builtin("Any").is_none(), "names are case-sensitive");
        assert!(builtin("product_viewed").is_none());
    }

    #[test]
    fn each_signature_starts_with_its_own_name() {
        for b in BUILTINS {
            assert!(
                b.signature.starts_with(&format!("{}(", b.name)),
                "signature of `{}` names another function: {}",
                b.name,
                b.signature
            );
        }
    }
}
