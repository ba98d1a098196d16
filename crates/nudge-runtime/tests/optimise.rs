//! Splits that optimise the flow's goal: traffic moves to the arm that
//! converts better, every arm keeps its floor, the choices are the same on
//! a replay of the same calls, and the counts survive a restore.

mod common;

use common::bundle;
use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink, rows::MemoryRows};
use nudge_runtime::ingest::apply_line;
use nudge_runtime::record::What;
use serde_json::json;

const PROJECT: &str = r#"
message short_note() {
  channel email
  subject "Your cart"
  body "It is waiting"
}
message long_note() {
  channel email
  subject "Your cart, and a word about it"
  body "It is waiting, with free shipping"
}
flow cart {
  trigger checkout_started
  entry always
  goal order_completed within 1d
  split optimise floor 10% {
    a {
      send short_note()
    }
    b {
      send long_note()
    }
  }
}
"#;

/// Customers who enter, one every ten minutes.
const CUSTOMERS: usize = 600;

fn at(minutes: usize) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap()
        + chrono::Duration::minutes(minutes as i64);
    t.with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Whether customer `i` buys after taking `arm`: one in three on `b`,
/// one in twenty-five on `a`, by a fixed pattern.
fn buys(i: usize, arm: &str) -> bool {
    match arm {
        "b" => i.is_multiple_of(3),
        _ => i.is_multiple_of(25),
    }
}

/// Runs the customers through an engine, each buying or not by the arm
/// the split gave them: the lines applied and the arms taken, in order.
fn simulate(engine: &mut Engine<'_, MemorySink>) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut arms = Vec::new();
    for i in 0..CUSTOMERS {
        let user = format!("u{i}");
        let start = i * 10;
        let enter = [
            json!({"type": "identify", "userId": user, "timestamp": at(start),
                   "traits": {"email": format!("{user}@example.com"), "consent": {"email": true}}}),
            json!({"type": "track", "event": "Checkout Started", "userId": user,
                   "timestamp": at(start), "properties": {"value": 20}}),
        ];
        for l in enter {
            let l = l.to_string();
            apply_line(engine, &l).unwrap();
            lines.push(l);
        }
        let arm = engine
            .sink()
            .records
            .iter()
            .rev()
            .find_map(|r| match &r.what {
                What::Variant { variant, floor, .. } if r.customer == user => {
                    assert_eq!(floor.as_deref(), Some("10%"));
                    Some(variant.clone())
                }
                _ => None,
            })
            .expect("the split chose an arm");
        if buys(i, &arm) {
            let l = json!({"type": "track", "event": "Order Completed", "userId": user,
                           "timestamp": at(start + 1),
                           "properties": {"order_id": format!("o{i}"), "revenue": 30, "currency": "USD"}})
            .to_string();
            apply_line(engine, &l).unwrap();
            lines.push(l);
        }
        arms.push(arm);
    }
    (lines, arms)
}

fn config() -> Config {
    Config {
        release_spread: 0,
        ..Config::default()
    }
}

#[test]
fn traffic_moves_to_the_better_arm_and_the_other_keeps_its_floor() {
    let b = bundle(PROJECT);
    let mut engine = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    let (_, arms) = simulate(&mut engine);
    let late = &arms[CUSTOMERS - 200..];
    let to_b = late.iter().filter(|a| *a == "b").count();
    let to_a = late.len() - to_b;
    // b converts eight times better: most late entries go to it...
    assert!(to_b >= 160, "b got {to_b} of the last 200");
    // ...and a keeps its floor: 10% of the traffic in expectation.
    assert!(to_a >= 8, "a got {to_a} of the last 200");
    // The counts follow what the instances did.
    let counts = engine.split_counts().all();
    assert_eq!(counts.len(), 2, "{counts:?}");
    let entries: u64 = counts.iter().map(|c| c.entries).sum();
    assert_eq!(entries, CUSTOMERS as u64);
    for c in &counts {
        let took = arms.iter().filter(|a| **a == c.arm).count() as u64;
        let bought = arms
            .iter()
            .enumerate()
            .filter(|(i, a)| **a == c.arm && buys(*i, a))
            .count() as u64;
        assert_eq!((c.entries, c.conversions), (took, bought), "{c:?}");
        assert_eq!((c.flow.as_str(), c.split), ("cart", 0));
    }
}

#[test]
fn a_replay_of_the_same_calls_makes_the_same_choices() {
    let b = bundle(PROJECT);
    let mut first = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    let (lines, _) = simulate(&mut first);
    let mut again = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    for l in &lines {
        apply_line(&mut again, l).unwrap();
    }
    let (one, two) = (first.into_sink(), again.into_sink());
    assert!(!one.outbox.is_empty());
    assert_eq!(one.outbox, two.outbox);
    assert_eq!(one.records, two.records);
}

#[test]
fn the_counts_survive_a_restore_and_the_choices_go_on_the_same() {
    let b = bundle(PROJECT);
    let arena = Bundles::new();
    let mut whole = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    let (lines, _) = simulate(&mut whole);
    let half = lines.len() / 2;
    // Half the calls, saved as rows, restored into a fresh engine that
    // takes the other half.
    let mut first = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    for l in &lines[..half] {
        apply_line(&mut first, l).unwrap();
    }
    let mut rows = MemoryRows::default();
    rows.apply(first.take_changes().unwrap());
    let mut second = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    second.restore_rows(rows.rows(), &b, &arena).unwrap();
    assert_eq!(second.split_counts(), first.split_counts());
    for l in &lines[half..] {
        apply_line(&mut second, l).unwrap();
    }
    assert_eq!(second.split_counts(), whole.split_counts());
    let mut later = first.into_sink().outbox;
    later.extend(second.into_sink().outbox);
    assert_eq!(later, whole.into_sink().outbox);
    // The whole-state checkpoint keeps them too.
    let mut third = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    for l in &lines[..half] {
        apply_line(&mut third, l).unwrap();
    }
    let bytes = third.checkpoint().unwrap();
    let mut fourth = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    fourth.restore(&bytes, &b, &arena).unwrap();
    assert_eq!(fourth.split_counts(), third.split_counts());
    assert!(!fourth.split_counts().all().is_empty());
}

#[test]
fn held_out_instances_count_for_no_arm() {
    let b = bundle(&PROJECT.replace(
        "  goal order_completed within 1d\n",
        "  goal order_completed within 1d\n  holdout 50%\n",
    ));
    let mut engine = Engine::new(&b, MemorySink::default(), config(), i64::MIN);
    let (_, arms) = simulate(&mut engine);
    let held: Vec<bool> = engine
        .sink()
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Entered { holdout, .. } => Some(*holdout),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), CUSTOMERS);
    let treated = held.iter().filter(|h| !**h).count();
    assert!(treated > 200 && treated < 400, "{treated} treated");
    let counts = engine.split_counts().all();
    let entries: u64 = counts.iter().map(|c| c.entries).sum();
    let conversions: u64 = counts.iter().map(|c| c.conversions).sum();
    // The split runs for everyone; only the treated count.
    assert_eq!(entries, treated as u64);
    let bought = arms
        .iter()
        .zip(&held)
        .enumerate()
        .filter(|(i, (a, h))| !**h && buys(*i, a))
        .count() as u64;
    assert_eq!(conversions, bought);
}
