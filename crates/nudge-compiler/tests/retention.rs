//! The retention the compiler records in a bundle: per event kind, which
//! rules read it back and for how long; and for sends, the longest cap.

use nudge_compiler::bytecode::{Bundle, Readers, disassemble};
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
        instances,
        goals,
    }
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

#[test]
fn a_format_2_bundle_gets_its_retention_derived() {
    let b = example_bundle("cart_recovery");
    // Without splits, format 2 is format 6 less the policy's currency, the
    // retention and the change points, written last: with no currency, no schemas, no cap
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
    // Format 4 is format 6 less the change points (none: one zero byte),
    // with no splits (format 6 added their `optimise`).
    assert!(b.flows.iter().all(|f| f.splits.is_empty()));
    let mut v4 = b.encode();
    assert_eq!(v4.pop(), Some(0), "no change points");
    v4[6..8].copy_from_slice(&4u16.to_le_bytes());
    assert_eq!(Bundle::decode(&v4).expect("format 4 still decodes"), b);
    // Format 3 is format 4 less the policy's currency.
    let mut bytes = v4;
    let retention = nudge_compiler::bytecode::Bundle {
        retention: Default::default(),
        ..b.clone()
    };
    let tail = b.encode().len() - (retention.encode().len() - 2);
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
