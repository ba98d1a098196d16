//! What the engine keeps of customers' histories, by the retention the
//! bundle declares: kinds nobody reads are not stored, and a kind read by
//! `exit on` is kept exactly while an instance that reads it lives.

mod common;

use common::bundle;
use nudge_runtime::engine::{Config, Engine, Held, MemorySink};
use nudge_runtime::replay::{self, Options};

const SOURCE: &str = r#"
message reminder() {
  channel email
  subject "Hi"
  body "Your cart"
}

flow carts {
  trigger checkout_started
  exit on order_completed
  w: wait 5d
  s: send reminder()
}

// Lives for a month and reads back nothing: it must not hold purchases.
flow lists {
  trigger product_added_to_wishlist
  w: wait 30d
}
"#;

fn track(user: &str, event: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"{user}","timestamp":"{at}","properties":{{}}}}"#
    )
}

/// An engine that works its horizons out at every call.
fn engine(b: &nudge_bytecode::Bundle) -> Engine<'_, MemorySink> {
    let config = Config {
        release_spread: 0,
        forget_every: 1,
        ..Config::default()
    };
    Engine::new(b, MemorySink::default(), config, i64::MIN)
}

fn feed(e: &mut Engine<'_, MemorySink>, lines: &[String]) {
    replay::replay(
        e,
        lines.join("\n").as_bytes(),
        Options::default(),
        &mut |d| panic!("dead letter: {d:?}"),
    )
    .unwrap();
}

#[test]
fn unread_kinds_are_not_stored_and_exit_kinds_live_as_long_as_their_readers() {
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    // Views and wishlists: no rule reads them back.
    feed(
        &mut e,
        &[
            track("u1", "Product Viewed", "2026-01-01T09:00:00Z"),
            track("u2", "Product Viewed", "2026-01-01T09:30:00Z"),
            track("u4", "Product Added to Wishlist", "2026-01-01T09:40:00Z"),
        ],
    );
    assert_eq!(
        e.history_held(),
        Held {
            customers: 3,
            events: 0,
            sends: 0
        }
    );
    // u1's cart starts an instance that reads purchases from 10:00; u2's
    // purchase is kept, as an alias could join u2 to u1 while it lives.
    feed(
        &mut e,
        &[
            track("u1", "Checkout Started", "2026-01-01T10:00:00Z"),
            track("u2", "Order Completed", "2026-01-01T11:00:00Z"),
        ],
    );
    assert_eq!(e.history_held().events, 1);
    // Days later, beyond the lateness bound, it is still kept: the
    // instance lives until its wait ends on the 6th at 10:00.
    feed(
        &mut e,
        &[
            track("u3", "Product Viewed", "2026-01-04T10:00:00Z"),
            track("u3", "Product Viewed", "2026-01-06T09:59:00Z"),
        ],
    );
    assert_eq!(e.instances().count(), 2);
    assert_eq!(e.history_held().events, 1);
    // Once the cart's instance has ended, no rule can read the purchase any
    // more: the wishlist's instance, older and still live, reads no purchases.
    feed(
        &mut e,
        &[track("u3", "Product Viewed", "2026-01-06T10:01:00Z")],
    );
    assert_eq!(e.instances().count(), 1);
    assert_eq!(e.history_held().events, 0);
    // A purchase is then kept for the lateness bound only (a day): a
    // trigger that late would start an instance reading from then.
    feed(
        &mut e,
        &[
            track("u2", "Order Completed", "2026-01-06T12:00:00Z"),
            track("u3", "Product Viewed", "2026-01-07T11:59:00Z"),
        ],
    );
    assert_eq!(e.history_held().events, 1);
    feed(
        &mut e,
        &[track("u3", "Product Viewed", "2026-01-07T12:01:00Z")],
    );
    assert_eq!(e.history_held().events, 0);
}

#[test]
fn without_forgetting_only_read_kinds_are_stored() {
    let b = bundle(SOURCE);
    let mut e = Engine::new(
        &b,
        MemorySink::default(),
        Config {
            forget_every: 0,
            ..Config::default()
        },
        i64::MIN,
    );
    feed(
        &mut e,
        &[
            track("u1", "Product Viewed", "2026-01-01T09:00:00Z"),
            track("u1", "Checkout Started", "2026-01-01T10:00:00Z"),
            track("u1", "Order Completed", "2026-01-01T11:00:00Z"),
            track("u1", "Order Completed", "2026-03-01T11:00:00Z"),
        ],
    );
    assert_eq!(e.history_held().events, 2);
}
