//! `recommend` in flows and messages: neighbours from the store's orders,
//! the fallbacks in order, what is never suggested, the trace's record of
//! the source, the catalogue file, the saved state and the profile API.

mod common;

use std::sync::Arc;

use nudge_bytecode::{Bundle, Retention};
use nudge_runtime::catalogue::CatalogueFile;
use nudge_runtime::engine::rows::MemoryRows;
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::ingest;
use nudge_runtime::record::What;
use serde_json::json;

const SOURCE: &str = r#"
message picks(items: list<Product>) {
  channel email
  subject "{len(items)} picks"
  body "{map(items, p => p.product_id)}"
}

flow after_order {
  trigger order_completed
  entry always
  later: wait 1d
  send picks(recommend(3))
}

flow after_view {
  trigger product_viewed
  entry always
  later: wait 2h
  send picks(recommend_excluding(3, last_event(cart_viewed)?.products ?? []))
}
"#;

fn order(user: &str, day: u32, items: &[(&str, &str)]) -> String {
    let products: Vec<serde_json::Value> = items
        .iter()
        .map(|(id, cat)| json!({"product_id": id, "category": cat, "name": format!("Name of {id}"), "price": "9.50"}))
        .collect();
    json!({
        "type": "track", "event": "Order Completed", "userId": user,
        "timestamp": format!("2026-03-{day:02}T10:00:00Z"),
        "messageId": format!("{user}-{day}-order"),
        "properties": {"order_id": format!("{user}-{day}"), "currency": "EUR", "products": products}
    })
    .to_string()
}

fn line(user: &str, day: u32, hour: u32, event: &str, props: serde_json::Value) -> String {
    json!({
        "type": "track", "event": event, "userId": user,
        "timestamp": format!("2026-03-{day:02}T{hour:02}:00:00Z"),
        "messageId": format!("{user}-{day}-{hour}-{event}"),
        "properties": props
    })
    .to_string()
}

fn identify(user: &str) -> String {
    json!({
        "type": "identify", "userId": user, "timestamp": "2026-03-01T08:00:00Z",
        "traits": {"email": format!("{user}@example.com"), "consent": {"email": true}}
    })
    .to_string()
}

/// A store's history: `a` goes with `b` twice and with `c` once; `d` is
/// the best seller, alone in its baskets; `e` shares `a`'s category.
fn history() -> Vec<String> {
    let mut lines: Vec<String> = ["s1", "s2", "s3", "s4", "s5", "s6", "buyer", "viewer"]
        .iter()
        .map(|u| identify(u))
        .collect();
    lines.push(order("s1", 2, &[("a", "tea"), ("b", "tea")]));
    lines.push(order("s2", 2, &[("a", "tea"), ("b", "tea")]));
    lines.push(order("s3", 2, &[("a", "tea"), ("c", "cups")]));
    lines.push(order("s4", 3, &[("d", "cups")]));
    lines.push(order("s5", 3, &[("d", "cups")]));
    lines.push(order("s6", 3, &[("d", "cups"), ("e", "tea")]));
    lines
}

/// The `recommended` records of the trace: products and sources.
fn served(sink: &MemorySink) -> Vec<(String, Vec<String>, Vec<String>)> {
    sink.records
        .iter()
        .filter_map(|r| match &r.what {
            What::Recommended {
                products, sources, ..
            } => Some((r.customer.clone(), products.clone(), sources.clone())),
            _ => None,
        })
        .collect()
}

fn bodies(sink: &MemorySink, customer: &str) -> Vec<String> {
    sink.outbox
        .iter()
        .filter(|m| m.customer == customer)
        .map(|m| m.content["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn run(bundle: &Bundle, config: Config, lines: &[String]) -> MemorySink {
    let mut e = Engine::new(bundle, MemorySink::default(), config, i64::MIN);
    for l in lines {
        ingest::apply_line(&mut e, l).expect("a good line");
    }
    e.drain();
    e.into_sink()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn neighbours_come_first_then_the_category_then_the_best_sellers() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut lines = history();
    lines.push(order("buyer", 5, &[("a", "tea")]));
    let sink = run(&bundle, Config::default(), &lines);
    // `b` goes with `a` more than `c` does, and `a` itself was bought;
    // then `e`, the one other tea, before the best seller `d`.
    let got = served(&sink);
    let buyer: Vec<_> = got.iter().filter(|(c, ..)| c == "buyer").collect();
    assert_eq!(buyer.len(), 1, "{got:?}");
    assert_eq!(buyer[0].1, strings(&["b", "c", "e"]));
    assert_eq!(
        buyer[0].2,
        strings(&["co_purchase", "co_purchase", "category"])
    );
    assert_eq!(bodies(&sink, "buyer"), ["b, c, e"]);
}

#[test]
fn the_trigger_what_was_bought_and_what_is_out_of_stock_are_never_suggested() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut lines = history();
    lines.push(order("viewer", 4, &[("c", "cups")]));
    lines.push(line(
        "viewer",
        6,
        8,
        "Product Viewed",
        json!({"product_id": "a", "category": "tea"}),
    ));
    lines.push(line(
        "viewer",
        6,
        9,
        "Cart Viewed",
        json!({"products": [{"product_id": "e"}]}),
    ));
    let file = CatalogueFile {
        products: CatalogueFile::parse("c.csv", "id,in_stock\nb,false\n")
            .unwrap()
            .products,
        fallback: strings(&["gift", "d", "z"]),
    };
    let config = Config {
        catalogue: Arc::new(file),
        ..Config::default()
    };
    let sink = run(&bundle, config, &lines);
    let got = served(&sink);
    let viewer: Vec<_> = got
        .iter()
        .filter(|(c, ..)| c == "viewer")
        .map(|(_, p, s)| (p.clone(), s.clone()))
        .collect();
    // After the order of `c`, one day on; then after the view of `a`.
    assert_eq!(viewer.len(), 2, "{got:?}");
    // `a` (trigger), `c` (bought), `e` (excluded: in the cart), `b` (out
    // of stock) are never served: `d` sells best in cups, the category of
    // `c`; then the list, without `d` twice.
    assert_eq!(
        viewer[1],
        (
            strings(&["d", "gift", "z"]),
            strings(&["category", "fallback", "fallback"])
        )
    );
}

#[test]
fn code_that_recommends_keeps_the_whole_order_history() {
    let with = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let without = nudge_test_support::build(&[(
        "test.flow",
        "flow f {\n  trigger order_completed\n  later: wait 1d\n}\n",
    )]);
    let orders = |b: &Bundle| {
        b.schemas
            .iter()
            .position(|s| s.wire.as_deref() == Some("Order Completed"))
            .unwrap() as u32
    };
    assert!(Retention::derive(&with).of(orders(&with)).unwrap().forever);
    assert!(
        !Retention::derive(&without)
            .of(orders(&without))
            .unwrap()
            .forever
    );
    // And it reads it: an order long before the suggestion still counts.
    let mut lines = history();
    lines.push(order("buyer", 4, &[("b", "tea")]));
    for day in 10..20 {
        lines.push(line(
            "s1",
            day,
            12,
            "Product Viewed",
            json!({"product_id": "x"}),
        ));
    }
    lines.push(order("buyer", 28, &[("a", "tea")]));
    // Forgetting runs after every call: only what the bundle declares stays.
    let config = Config {
        forget_every: 1,
        ..Config::default()
    };
    let sink = run(&with, config, &lines);
    let got = served(&sink);
    let last = got.iter().rfind(|(c, ..)| c == "buyer").unwrap();
    assert!(!last.1.contains(&"b".to_string()), "{got:?}");
    assert_eq!(last.1.first().map(String::as_str), Some("c"));
}

#[test]
fn what_was_learned_survives_the_rows_and_the_whole_state() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let lines = history();
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut rows = MemoryRows::default();
    rows.apply(e.take_changes().unwrap());
    for l in &lines {
        ingest::apply_line(&mut e, l).unwrap();
    }
    rows.apply(e.take_changes().unwrap());
    let whole = e.checkpoint().unwrap();
    assert_eq!(e.learned().orders(), 6);

    let mut from_rows = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    from_rows
        .restore_rows(rows.rows(), &bundle, common::arena())
        .unwrap();
    assert_eq!(from_rows.learned(), e.learned());
    let mut from_whole = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    from_whole
        .restore(&whole, &bundle, common::arena())
        .unwrap();
    assert_eq!(from_whole.learned(), e.learned());
}

#[test]
fn the_profile_api_suggests_on_request() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut lines = history();
    lines.push(order("buyer", 5, &[("a", "tea")]));
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    for l in &lines {
        ingest::apply_line(&mut e, l).unwrap();
    }
    let plain = e.profile_view("buyer", &[]).unwrap();
    assert_eq!(plain.recommendations, None);
    assert!(
        serde_json::to_value(&plain)
            .unwrap()
            .get("recommendations")
            .is_none()
    );
    let view = e.profile_view_with("buyer", &[], Some(2)).unwrap();
    assert_eq!(
        serde_json::to_value(&view).unwrap()["recommendations"],
        json!([
            {"product_id": "b", "name": "Name of b", "category": "tea", "price": "9.5",
             "currency": "EUR", "url": null, "image_url": null, "source": "co_purchase"},
            {"product_id": "c", "name": "Name of c", "category": "cups", "price": "9.5",
             "currency": "EUR", "url": null, "image_url": null, "source": "co_purchase"}
        ])
    );
}

#[test]
fn a_condition_that_recommends_is_traced_too() {
    let source = r#"
message picks(items: list<Product>) {
  channel email
  subject "{len(items)} picks"
  body "-"
}

flow guarded {
  trigger product_viewed
  exit if len(recommend(1)) == 0
  later: wait 1h
  send picks(recommend(1))
}
"#;
    let bundle = nudge_test_support::build(&[("test.flow", source)]);
    // Nothing ordered yet: the standing rule finds nothing and ends it.
    let lines = [
        identify("viewer"),
        line("viewer", 6, 8, "Product Viewed", json!({"product_id": "a"})),
    ];
    let sink = run(&bundle, Config::default(), &lines);
    let got = served(&sink);
    assert!(!got.is_empty(), "{:?}", sink.records);
    assert!(
        got.iter().all(|(c, p, _)| c == "viewer" && p.is_empty()),
        "{got:?}"
    );
    assert!(sink.outbox.is_empty());
    assert!(sink.records.iter().any(|r| matches!(
        &r.what,
        What::Recommended { flow, .. } if flow == "guarded"
    )));
}

#[test]
fn the_next_order_comes_from_the_customer_then_the_product() {
    let source = r#"
profile {
  refill_at: time?
}

flow refill {
  trigger order_completed
  entry always
  set profile.refill_at = next_order_at("p")
}
"#;
    let bundle = nudge_test_support::build(&[("test.flow", source)]);
    let lines = [
        // A: twice, ten days apart: her own gap.
        order("a", 1, &[("p", "tea")]),
        order("a", 11, &[("p", "tea"), ("x", "cups")]),
        // B: once, after A's gap was counted: the product's gap.
        order("b", 13, &[("p", "tea")]),
        // D: never ordered `p`: nothing to go on.
        order("d", 14, &[("q", "tea")]),
    ];
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    for l in &lines {
        ingest::apply_line(&mut e, l).unwrap();
    }
    let refill = |e: &mut Engine<'_, MemorySink>, who: &str| {
        let view = e.profile_view(who, &["refill_at".to_string()]).unwrap();
        view.traits["refill_at"].clone()
    };
    assert_eq!(refill(&mut e, "a"), json!("2026-03-21T10:00:00Z"));
    assert_eq!(refill(&mut e, "b"), json!("2026-03-23T10:00:00Z"));
    assert_eq!(refill(&mut e, "d"), json!(null));
}

#[test]
fn a_product_without_gaps_of_its_own_takes_its_category_s() {
    let file = CatalogueFile::default();
    let mut learned = nudge_runtime::catalogue::Learned::default();
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    // Teach the categories through an order event of the bundle's schema.
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    ingest::apply_line(&mut e, &order("s", 1, &[("p", "tea"), ("q", "tea")])).unwrap();
    learned.clone_from(e.learned());
    let day = 86_400_000;
    learned.learn_gaps(&[("p".to_string(), 4 * day)]);
    // `q` has no gap of its own: the tea category's four days.
    assert_eq!(learned.next_order(&file, "q", &[day]), Some(5 * day));
    // Its own gaps come first.
    assert_eq!(
        learned.next_order(&file, "q", &[day, 3 * day]),
        Some(5 * day)
    );
    // Never ordered: nothing.
    assert_eq!(learned.next_order(&file, "q", &[]), None);
}

#[test]
fn nothing_is_learned_when_nothing_asks_for_recommendations() {
    // No code asks and no catalogue is named: the work and the state would
    // serve nothing. A catalogue's fallback list alone turns learning on.
    let plain = nudge_test_support::build(&[(
        "test.flow",
        "message m() {\n  channel email\n  subject \"x\"\n  body \"x\"\n}\nflow f {\n  trigger order_completed\n  send m()\n}\n",
    )]);
    let mut e = Engine::new(&plain, MemorySink::default(), Config::default(), i64::MIN);
    for l in &history() {
        ingest::apply_line(&mut e, l).unwrap();
    }
    assert_eq!((e.learned().orders(), e.learned().products()), (0, 0));

    let config = Config {
        catalogue: Arc::new(CatalogueFile {
            fallback: strings(&["mug"]),
            ..CatalogueFile::default()
        }),
        ..Config::default()
    };
    let mut e = Engine::new(&plain, MemorySink::default(), config, i64::MIN);
    for l in &history() {
        ingest::apply_line(&mut e, l).unwrap();
    }
    assert_eq!(e.learned().orders(), 6);
}

#[test]
fn a_behavioural_segment_s_picks_are_the_ones_the_website_shows() {
    // The product's promise in one scenario: a segment of people who viewed
    // a category three times this month and have not bought, three picks
    // with the best sellers as fallback, and the website asking for the
    // same customer's three.
    let source = r#"
message picks(items: list<Product>) {
  channel email
  subject "{len(items)} picks"
  body "{map(items, p => p.product_id)}"
}

segment tea_browsers = count_events_within(product_viewed, 30d, v => v.category == "tea") >= 3
  and not any_event_within(order_completed, 30d, o => true)

flow tea_picks {
  trigger entering tea_browsers
  send picks(recommend(3))
}
"#;
    let bundle = nudge_test_support::build(&[("test.flow", source)]);
    let mut lines = history();
    for hour in [9, 10, 11] {
        lines.push(line(
            "viewer",
            10,
            hour,
            "Product Viewed",
            json!({"product_id": "a", "category": "tea"}),
        ));
    }
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    for l in &lines {
        ingest::apply_line(&mut e, l).unwrap();
    }
    let sent = bodies(e.sink(), "viewer");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let view = e.profile_view_with("viewer", &[], Some(3)).unwrap();
    let shown = serde_json::to_value(&view).unwrap()["recommendations"].clone();
    let ids: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["product_id"].as_str().unwrap())
        .collect();
    let sources: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    // The best seller fills in where the viewer's own history says nothing.
    assert!(sources.contains(&"popular"), "{sources:?}");
    // The message lists the same three, in the same order.
    assert_eq!(sent[0], ids.join(", "));
    // Whoever ordered is not in the segment.
    assert!(bodies(e.sink(), "buyer").is_empty());
}
