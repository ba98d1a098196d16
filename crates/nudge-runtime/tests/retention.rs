//! What the engine keeps of customers' histories, by the retention the
//! bundle declares: kinds nobody reads are not stored, and a kind read by
//! `exit on` is kept exactly while an instance that reads it lives.

mod common;

use common::bundle;
use nudge_runtime::engine::{Config, Engine, Held, LET_GO_CALLS, MemorySink};
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

/// Applies one line, which must be taken.
fn apply(e: &mut Engine<'_, MemorySink>, line: String) {
    nudge_runtime::ingest::apply_line(e, &line).expect("applied");
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
fn history_let_go_is_handed_to_whoever_asks_and_dropped_by_the_engine_otherwise() {
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    // A purchase is kept for the lateness bound (a day), then let go.
    apply(
        &mut e,
        track("u2", "Order Completed", "2026-01-06T12:00:00Z"),
    );
    assert_eq!(e.history_held().events, 1);
    assert!(e.take_let_go().is_empty());
    apply(
        &mut e,
        track("u3", "Product Viewed", "2026-01-07T12:01:00Z"),
    );
    assert_eq!(e.history_held().events, 0);
    assert_eq!(e.take_let_go().len(), 1);
    assert!(e.take_let_go().is_empty(), "handed over once");

    // Nobody asks for LET_GO_CALLS calls: the engine drops it itself.
    let calls = LET_GO_CALLS as usize + 10;
    for i in 0..calls {
        let at = format!("2026-02-01T{:02}:{:02}:00Z", i / 600, i / 10 % 60);
        apply(&mut e, track(&format!("c{i}"), "Order Completed", &at));
    }
    assert_eq!(e.history_held().events, calls as u64);
    apply(
        &mut e,
        track("u3", "Product Viewed", "2026-02-03T00:00:00Z"),
    );
    assert_eq!(e.history_held().events, 0);
    assert!(e.take_let_go().is_empty(), "dropped by the engine");
    // Asked again, it holds what it lets go of for the host.
    apply(
        &mut e,
        track("u2", "Order Completed", "2026-02-03T12:00:00Z"),
    );
    apply(
        &mut e,
        track("u3", "Product Viewed", "2026-02-04T12:01:00Z"),
    );
    assert_eq!(e.take_let_go().len(), 1);
}

#[test]
fn the_room_of_history_let_go_is_used_again_once_handed_back_empty() {
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    for i in 0..100 {
        apply(
            &mut e,
            track(&format!("c{i}"), "Order Completed", "2026-02-01T00:00:00Z"),
        );
    }
    assert!(e.take_let_go().is_empty());
    // A day and more later, every purchase goes at once.
    apply(
        &mut e,
        track("u3", "Product Viewed", "2026-02-03T00:00:00Z"),
    );
    let mut swept = e.take_let_go();
    assert_eq!(swept.len(), 100);
    let room = swept.room();
    let one_more = |e: &mut Engine<'_, MemorySink>, day: u32| {
        apply(
            e,
            track(
                "u2",
                "Order Completed",
                &format!("2026-02-{day:02}T12:00:00Z"),
            ),
        );
        apply(
            e,
            track(
                "u3",
                "Product Viewed",
                &format!("2026-02-{:02}T12:01:00Z", day + 1),
            ),
        );
        e.take_let_go()
    };
    // Emptied and given back, its room holds the next events let go of.
    swept.empty();
    assert!(swept.is_empty());
    e.reuse_let_go(swept);
    let next = one_more(&mut e, 3);
    assert_eq!(next.len(), 1);
    assert_eq!(next.room(), room);
    // Given back with its events, it is not taken: they are the host's to drop.
    e.reuse_let_go(next);
    let fresh = one_more(&mut e, 5);
    assert_eq!(fresh.len(), 1);
    assert!(fresh.room() < room, "{} against {room}", fresh.room());
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

/// A segment over the views of one category within a window.
fn fans(window: &str) -> String {
    format!(
        r#"
message note() {{
  channel email
  subject "Hi"
  body "Shoes"
}}

segment fans = count_events_within(product_viewed, {window}, v => v.category == "Shoes") >= 2

flow welcome_fans {{
  trigger entering fans
  entry always
  send note()
}}
"#
    )
}

fn viewed(user: &str, category: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Product Viewed","userId":"{user}","timestamp":"{at}","properties":{{"product_id":"p","category":"{category}"}}}}"#
    )
}

fn consent(user: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{user}","timestamp":"{at}","traits":{{"email":"{user}@example.com","consent":{{"email":true}}}}}}"#
    )
}

#[test]
fn a_kind_read_within_a_window_is_kept_for_the_window_only() {
    let b = bundle(&fans("30d"));
    let lines = [
        consent("u1", "2026-01-01T08:00:00Z"),
        viewed("u1", "Shoes", "2026-01-01T09:00:00Z"),
        // Two within 30 days: a fan.
        viewed("u1", "Shoes", "2026-01-20T09:00:00Z"),
        // The first view left the window on 31 January (no longer a fan);
        // with that of 20 January, a fan again.
        viewed("u1", "Shoes", "2026-02-13T09:00:00Z"),
        // Out again on 19 February, as the view of 20 January leaves.
        viewed("u1", "Hats", "2026-03-01T09:00:00Z"),
        // With the view of 13 February, 25 days before: a fan again.
        viewed("u1", "Shoes", "2026-03-10T09:00:00Z"),
    ];
    let mut forgets = engine(&b);
    feed(&mut forgets, &lines);
    let mut keeps = Engine::new(
        &b,
        MemorySink::default(),
        Config {
            release_spread: 0,
            forget_every: 0,
            ..Config::default()
        },
        i64::MIN,
    );
    feed(&mut keeps, &lines);
    // The views from before 8 February are gone; an engine that forgets
    // nothing still holds every view.
    assert_eq!(forgets.history_held().events, 3);
    assert_eq!(keeps.history_held().events, 5);
    // Both saw the same counts in the window, so both decided the same.
    let sent = |e: Engine<'_, MemorySink>| common::sends(&e.into_sink());
    let expected = [
        "2026-01-20T09:00:00Z u1 note",
        "2026-02-13T09:00:00Z u1 note",
        "2026-03-10T09:00:00Z u1 note",
    ];
    assert_eq!(sent(forgets), expected);
    assert_eq!(sent(keeps), expected);
}

#[test]
fn a_deploy_widens_or_narrows_the_window_from_then_on() {
    let (narrow, wide) = (bundle(&fans("30d")), bundle(&fans("60d")));
    let narrower = bundle(&fans("30d"));
    let mut e = engine(&narrow);
    feed(
        &mut e,
        &[
            consent("u1", "2026-01-01T08:00:00Z"),
            viewed("u1", "Shoes", "2026-01-01T09:00:00Z"),
            viewed("u1", "Shoes", "2026-01-20T09:00:00Z"),
            viewed("u1", "Hats", "2026-02-15T09:00:00Z"),
        ],
    );
    // 30 days before 15 February: the view of 1 January is gone.
    assert_eq!(e.history_held().events, 2);
    e.deploy(&wide, common::arena()).expect("deploys");
    feed(&mut e, &[viewed("u1", "Hats", "2026-03-10T09:00:00Z")]);
    // 60 days before 10 March: the view of 20 January is kept (30 days
    // would have dropped it); the one of 1 January does not come back.
    assert_eq!(e.history_held().events, 3);
    // Narrowed again, with nothing left running on the wider release: 30
    // days before 11 March, and the view of 20 January goes.
    e.deploy(&narrower, common::arena()).expect("deploys");
    feed(&mut e, &[viewed("u1", "Hats", "2026-03-11T09:00:00Z")]);
    assert_eq!(e.history_held().events, 3);
}

/// Segments over windows read by `trigger entering` and by a daily schedule.
const WINDOWED: &str = r#"
message note() {
  channel email
  subject "Hi"
  body "Shoes"
}

message daily() {
  channel email
  subject "Today"
  body "Shoes"
}

segment fans = count_events_within(product_viewed, 3d, v => v.category == "Shoes") >= 2
  and not any_event_within(order_completed, 1d, o => true)

flow welcome_fans {
  trigger entering fans
  entry always
  send note()
}

flow fans_daily {
  trigger every day at 10:00 for fans
  entry always
  send daily()
}
"#;

/// One call of a random stream: when it happened, when it arrives, what it is.
#[derive(Clone, Debug)]
struct Timed {
    happened: i64,
    arrives: i64,
    line: String,
}

fn stream() -> impl proptest::strategy::Strategy<Value = Vec<Timed>> {
    use proptest::prelude::*;
    const BASE: i64 = 1_767_571_200;
    let delay = prop_oneof![8 => 0..30 * 60i64, 1 => 0..40 * 3600i64];
    let call = (0..3usize, 0..3u8, 0..8 * 24 * 60i64, delay);
    proptest::collection::vec(call, 1..40).prop_map(|calls| {
        let mut out: Vec<Timed> = (0..3)
            .map(|c| Timed {
                happened: BASE,
                arrives: BASE,
                line: consent(&format!("c{c}"), &rfc3339(BASE)),
            })
            .collect();
        for (c, kind, minute, delay) in calls {
            let (user, happened) = (format!("c{c}"), BASE + 60 + minute * 60);
            let at = rfc3339(happened);
            let line = match kind {
                0 => viewed(&user, "Shoes", &at),
                1 => viewed(&user, "Hats", &at),
                _ => track(&user, "Order Completed", &at),
            };
            out.push(Timed {
                happened,
                arrives: happened + delay,
                line,
            });
        }
        out
    })
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The outbox of a stream applied in arrival order, and the events held at the end.
fn outbox(b: &nudge_bytecode::Bundle, calls: &[Timed], forget_every: u32) -> (Vec<String>, u64) {
    let mut order: Vec<&Timed> = calls.iter().collect();
    order.sort_by_key(|c| (c.arrives, c.happened));
    let config = Config {
        release_spread: 0,
        forget_every,
        ..Config::default()
    };
    let mut e = Engine::new(b, MemorySink::default(), config, i64::MIN);
    for c in order {
        e.advance_before(nudge_runtime::millis::ms(c.arrives));
        nudge_runtime::ingest::apply_line(&mut e, &c.line).expect("a valid call");
    }
    e.drain();
    let held = e.history_held().events;
    (common::sends(&e.into_sink()), held)
}

#[test]
fn forgetting_outside_the_windows_changes_no_send() {
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let b = bundle(WINDOWED);
    let (sent, smaller) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    TestRunner::new(RunnerConfig {
        cases: 256,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
    .run(&stream(), |calls| {
        let (forgets, held) = outbox(&b, &calls, 1);
        let (keeps, all) = outbox(&b, &calls, 0);
        proptest::prop_assert_eq!(&forgets, &keeps);
        proptest::prop_assert!(held <= all, "held {held} of {all}");
        sent.set(sent.get() + usize::from(!forgets.is_empty()));
        smaller.set(smaller.get() + usize::from(held < all));
        Ok(())
    })
    .unwrap();
    // The property must have been exercised, not vacuously true.
    let (sent, smaller) = (sent.get(), smaller.get());
    assert!(
        sent > 50 && smaller > 50,
        "{sent} with sends, {smaller} with less held"
    );
}
