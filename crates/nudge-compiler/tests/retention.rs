//! The retention the compiler records in a bundle: per event kind, which
//! rules read it back and for how long; and for sends, the longest cap.

use nudge_compiler::bytecode::{Bundle, Readers, Retention, disassemble};
use nudge_test_support::{build, example_bundle};

/// Flows reading history in every way: `exit on`, `wait for`, a history
/// builtin in the flow, one in a message, a goal with a history builtin
/// in its condition; a segment reading history; and kinds nobody reads.
const SHOP: &str = r#"
segment reviewer = any_event(product_reviewed, r => r.review_body != none)

message follow_up(n: int) {
  channel email
  subject "You looked {count_events(product_viewed, v => true)} times"
  body "n = {n}"
}

flow carts {
  trigger checkout_started
  exit on order_completed
  cap email 1 per 16h
  goal order_completed where any_event(coupon_applied, c => true) within 5d

  w: wait 1h
  s: send follow_up(1)
}

flow browse {
  trigger product_viewed
  exit on order_completed
  let added = wait for product_added within 2d
  if added != none {
    done: exit
  }
  if any_event(cart_viewed, c => true) {
    stop: exit
  }
}

flow shipped {
  trigger order_shipped
  w: wait 1d
}

policy {
  cap marketing 3 per 7d
}
"#;

fn readers<'a>(b: &'a Bundle, event: &str) -> &'a Readers {
    let s = b
        .schemas
        .iter()
        .position(|s| s.name == event)
        .unwrap_or_else(|| panic!("no schema {event}"));
    &b.retention.events[s]
}

fn flow(b: &Bundle, name: &str) -> u32 {
    b.flows
        .iter()
        .position(|f| f.name == name)
        .unwrap_or_else(|| panic!("no flow {name}")) as u32
}

fn readers_of(forever: bool, instances: Vec<u32>, goals: Vec<u32>) -> Readers {
    Readers {
        forever,
        within: 0,
        instances,
        goals,
    }
}

/// Segments and lets reading events within windows: literal, through
/// constant lets, several windows over one kind, and windows that are not
/// constants.
const WINDOWS: &str = r#"
let interest = 30d
let same_interest = interest
let computed = interest + 1d

segment interested = any_event_within(product_viewed, interest, v => v.category == "Brewing")
segment viewers = count_events_within(product_viewed, 7d, v => true) >= 3
segment carting = count_events_within(cart_viewed, same_interest, c => true) > 0
segment lapsed = not any_event_within(order_completed, computed, o => true)
segment reviewing = count_events_within(product_reviewed, 14d, r => true) > 1
  or any_event(product_reviewed, r => true)
segment nested = any_event_within(coupon_applied, 2d, c => count_events_within(products_searched, 1d, s => true) > 0)
segment zero = any_event_within(checkout_started, 0s, c => true)
"#;

const DAY: i64 = 24 * 3600;

#[test]
fn a_constant_window_keeps_its_kind_that_long_only() {
    let b = build(&[("w.flow", WINDOWS)]);
    let within = |within: i64| Readers {
        within,
        ..Readers::default()
    };
    // A literal, and a constant let, over one kind: the longer window.
    assert_eq!(*readers(&b, "product_viewed"), within(30 * DAY));
    // A let that is another constant let.
    assert_eq!(*readers(&b, "cart_viewed"), within(30 * DAY));
    // A window computed at run time: the whole history.
    assert_eq!(
        *readers(&b, "order_completed"),
        readers_of(true, vec![], vec![])
    );
    // A read without a window beside one with: both are recorded, and the
    // whole history wins.
    let reviewed = readers(&b, "product_reviewed");
    assert!(reviewed.forever);
    assert_eq!(reviewed.within, 14 * DAY);
    // Inside a windowed read's test, a windowed read of its own.
    assert_eq!(*readers(&b, "coupon_applied"), within(2 * DAY));
    assert_eq!(*readers(&b, "products_searched"), within(DAY));
    // A zero window still reads the current second.
    assert_eq!(*readers(&b, "checkout_started"), within(1));
    let windows: Vec<(&str, i64)> = b
        .retention
        .windows()
        .map(|(s, w)| (b.schemas[s as usize].name.as_str(), w))
        .collect();
    assert!(
        windows.contains(&("product_viewed", 30 * DAY)),
        "{windows:?}"
    );
    let forever: Vec<&str> = b
        .retention
        .forever()
        .map(|s| b.schemas[s as usize].name.as_str())
        .collect();
    assert_eq!(forever, ["order_completed", "product_reviewed"]);
}

#[test]
fn a_window_that_is_not_one_constant_keeps_the_whole_history() {
    // `??` jumps onto the call: the window is the trait or the default.
    let b = build(&[(
        "w.flow",
        "profile {\n  browse_window: duration?\n}\n\nsegment chosen = any_event_within(cart_viewed, profile.browse_window ?? 7d, c => true)\n",
    )]);
    assert_eq!(
        *readers(&b, "cart_viewed"),
        readers_of(true, vec![], vec![])
    );
}

#[test]
fn the_listing_shows_a_window() {
    let b = build(&[("w.flow", WINDOWS)]);
    let listing = disassemble(&b, &|_| None);
    for line in [
        "  product_viewed: 30d before now (segments, lets)",
        "  order_completed: for ever (segments, lets)",
    ] {
        assert!(
            listing.lines().any(|l| l == line),
            "missing {line:?} in\n{listing}"
        );
    }
}

#[test]
fn a_bundle_that_keeps_less_than_a_window_is_refused() {
    let mut b = build(&[("w.flow", WINDOWS)]);
    let s = b
        .schemas
        .iter()
        .position(|s| s.name == "product_viewed")
        .expect("schema");
    b.retention.events[s].within = 7 * DAY;
    let err = Bundle::decode(&b.encode()).expect_err("short window");
    assert!(
        err.to_string().contains(
            "the retention of product_viewed leaves out segments and lets reading 2592000s back (it keeps 604800s)"
        ),
        "{err}"
    );
    // Keeping the whole history covers any window.
    b.retention.events[s] = readers_of(true, vec![], vec![]);
    Bundle::decode(&b.encode()).expect("for ever covers a window");
}

#[test]
fn each_kind_is_kept_for_the_rules_that_read_it() {
    let b = build(&[("shop.flow", SHOP)]);
    let (carts, browse) = (flow(&b, "carts"), flow(&b, "browse"));
    // `exit on` reads from the instance's start; the goal event also in its window.
    assert_eq!(
        *readers(&b, "order_completed"),
        readers_of(false, vec![browse, carts], vec![carts])
    );
    // Read by the goal's condition only: its instances read it too, as the
    // condition is flow code that runs while one lives.
    assert_eq!(
        *readers(&b, "coupon_applied"),
        readers_of(false, vec![carts], vec![carts])
    );
    // `wait for`, and a history builtin in the flow's steps.
    assert_eq!(
        *readers(&b, "product_added"),
        readers_of(false, vec![browse], vec![])
    );
    assert_eq!(
        *readers(&b, "cart_viewed"),
        readers_of(false, vec![browse], vec![])
    );
    // A history builtin in a message the flow sends.
    assert_eq!(
        *readers(&b, "product_viewed"),
        readers_of(false, vec![carts], vec![])
    );
    // A segment reads the whole history.
    assert_eq!(
        *readers(&b, "product_reviewed"),
        readers_of(true, vec![], vec![])
    );
    // Triggers are not read back: their own flows see them as they come.
    for unread in ["checkout_started", "order_shipped", "products_searched"] {
        assert!(!readers(&b, unread).read(), "{unread} is read");
    }
    // Caps: the longest window, the policy's 7 days over the flow's 16 hours.
    assert_eq!(b.retention.sends, 7 * 24 * 3600);
    // Only events have readers; every schema has an entry.
    assert_eq!(b.retention.events.len(), b.schemas.len());
    assert!(!readers(&b, "profile").read());
}

#[test]
fn the_listing_shows_the_retention() {
    let b = build(&[("shop.flow", SHOP)]);
    let listing = disassemble(&b, &|_| None);
    for line in [
        "retention:",
        "  sends: 7d (caps)",
        "  order_completed: while instances live: browse, carts; goal windows: carts 5d",
        "  product_reviewed: for ever (segments, lets)",
        "  checkout_started: not kept",
    ] {
        assert!(
            listing.lines().any(|l| l == line),
            "missing {line:?} in\n{listing}"
        );
    }
}

#[test]
fn a_bundle_that_declares_less_than_its_code_reads_is_refused() {
    let mut b = build(&[("shop.flow", SHOP)]);
    let s = b
        .schemas
        .iter()
        .position(|s| s.name == "order_completed")
        .expect("schema");
    b.retention.events[s].instances.clear();
    let err = Bundle::decode(&b.encode()).expect_err("under-declared retention");
    assert!(
        err.to_string()
            .contains("the retention of order_completed leaves out instances of flow browse"),
        "{err}"
    );
    let mut b = build(&[("shop.flow", SHOP)]);
    b.retention.sends = 3600;
    let err = Bundle::decode(&b.encode()).expect_err("short send retention");
    assert!(
        err.to_string().contains("shorter than the longest cap"),
        "{err}"
    );
}

/// `b` encoded in format 5: format 6 less the window written last in each
/// event kind's readers.
fn format_5(b: &Bundle) -> Vec<u8> {
    fn varint(bytes: &[u8], at: usize) -> usize {
        let end = bytes[at..]
            .iter()
            .position(|x| x & 0x80 == 0)
            .expect("varint");
        end + 1
    }
    let full = b.encode();
    let empty = Bundle {
        retention: Retention {
            events: Vec::new(),
            sends: b.retention.sends,
        },
        ..b.clone()
    }
    .encode();
    // The retention starts where the two differ: its list's length.
    let mut at = full
        .iter()
        .zip(&empty)
        .position(|(x, y)| x != y)
        .expect("the retention differs");
    let mut out = full[..at].to_vec();
    let copy = |at: &mut usize, out: &mut Vec<u8>| {
        let n = varint(&full, *at);
        out.extend_from_slice(&full[*at..*at + n]);
        *at += n;
    };
    copy(&mut at, &mut out);
    for readers in &b.retention.events {
        out.push(full[at]); // forever
        at += 1;
        for list in [&readers.instances, &readers.goals] {
            copy(&mut at, &mut out);
            for _ in list {
                copy(&mut at, &mut out);
            }
        }
        at += varint(&full, at); // within: not in format 5
    }
    out.extend_from_slice(&full[at..]);
    out[6..8].copy_from_slice(&5u16.to_le_bytes());
    out
}

#[test]
fn a_format_5_bundle_keeps_its_windowed_kinds_for_ever() {
    // What an earlier compiler wrote: segments read their kinds for ever.
    let mut b = build(&[("w.flow", WINDOWS)]);
    for r in &mut b.retention.events {
        if r.within > 0 {
            r.forever = true;
            r.within = 0;
        }
    }
    let old = Bundle::decode(&format_5(&b)).expect("format 5 still decodes");
    assert_eq!(old, b);
    assert!(readers(&old, "product_viewed").forever);
    // One that declares less than its code reads is refused, as ever.
    let s = b
        .schemas
        .iter()
        .position(|s| s.name == "product_viewed")
        .expect("schema");
    b.retention.events[s].forever = false;
    let err = Bundle::decode(&format_5(&b)).expect_err("under-declared");
    assert!(
        err.to_string()
            .contains("the retention of product_viewed leaves out segments and lets reading"),
        "{err}"
    );
}

#[test]
fn a_format_2_bundle_gets_its_retention_derived() {
    let b = example_bundle("cart_recovery");
    // Without splits (format 7 added their `optimise`), format 5 is
    // format 7 less the readers' windows.
    assert!(b.flows.iter().all(|f| f.splits.is_empty()));
    let v5 = format_5(&b);
    assert_eq!(Bundle::decode(&v5).expect("format 5 still decodes"), b);
    // Format 2 is format 5 less the policy's currency, the retention and
    // the change points, written last: with no currency, no schemas, no cap
    // window and no change points, that is four zero bytes.
    assert_eq!(b.policy.currency, None);
    assert!(b.change_points.is_empty());
    let mut bytes = Bundle {
        retention: Default::default(),
        ..b.clone()
    }
    .encode();
    assert!(bytes.ends_with(&[0, 0, 0, 0]));
    bytes.truncate(bytes.len() - 4);
    bytes[6..8].copy_from_slice(&2u16.to_le_bytes());
    let old = Bundle::decode(&bytes).expect("format 2 still decodes");
    assert_eq!(old.retention, b.retention);
    assert!(readers(&old, "order_completed").read());
    // Encoding it again writes the current format, retention included.
    assert!(old.encode() == b.encode(), "re-encoded as format 6");
    // Format 4 is format 5 less the change points (none: one zero byte).
    let mut v4 = v5.clone();
    assert_eq!(v4.pop(), Some(0), "no change points");
    v4[6..8].copy_from_slice(&4u16.to_le_bytes());
    assert_eq!(Bundle::decode(&v4).expect("format 4 still decodes"), b);
    // Format 3 is format 4 less the policy's currency.
    let mut bytes = v4;
    let retention = Bundle {
        retention: Default::default(),
        ..b.clone()
    };
    let tail = v5.len() - (retention.encode().len() - 2);
    let currency_at = bytes.len() - tail - 1;
    assert_eq!(bytes[currency_at], 0, "no currency");
    bytes.remove(currency_at);
    bytes[6..8].copy_from_slice(&3u16.to_le_bytes());
    let v3 = Bundle::decode(&bytes).expect("format 3 still decodes");
    assert_eq!(v3, b);
}

#[test]
fn cart_recovery_keeps_purchases_only() {
    let b = example_bundle("cart_recovery");
    let kept: Vec<&str> = b
        .retention
        .read()
        .map(|s| b.schemas[s as usize].name.as_str())
        .collect();
    assert_eq!(kept, ["order_completed"]);
    let cart = flow(&b, "cart_recovery");
    assert_eq!(
        *readers(&b, "order_completed"),
        readers_of(false, vec![cart], vec![cart])
    );
    assert_eq!(b.retention.sends, 7 * 24 * 3600);
}
