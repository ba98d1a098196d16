//! One focused test per runtime rule: the clock, exits, waits, identities,
//! deduplication, dead letters and the non-event triggers.

mod common;

use common::{bundle, replay, replay_with, sends};
use nudge_runtime::record::{Outcome, What};
use nudge_runtime::replay::Options;

/// Messages and a consenting customer `u1` shared by most tests.
const MESSAGES: &str = r#"
message reminder() {
  channel email
  subject "Your cart is waiting"
  body "Come back"
}
message apology() {
  channel email
  subject "Sorry for the delay"
  body "Your parcel is late"
}
message review() {
  channel email
  subject "How was it?"
  body "Tell us"
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
    )
}

fn track(who: &str, event: &str, at: &str, props: &str) -> String {
    format!(r#"{{"type":"track","event":"{event}",{who},"timestamp":"{at}","properties":{props}}}"#)
}

fn lines(parts: &[String]) -> String {
    parts.join("\n")
}

const CART: &str = r#"
flow cart {
  trigger checkout_started
  exit on order_completed
  wait 1h
  send reminder()
}
"#;

#[test]
fn an_event_at_a_timers_second_is_applied_first() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    let purchase_at = |t: &str| {
        lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                t,
                r#"{"order_id":"o1"}"#,
            ),
        ])
    };
    // The purchase at the reminder's very second wins.
    let (sink, _) = replay(&b, &purchase_at("2026-01-05T11:00:00Z"));
    assert_eq!(sends(&sink), Vec::<String>::new());
    // One second later, the reminder has gone.
    let (sink, _) = replay(&b, &purchase_at("2026-01-05T11:00:01Z"));
    assert_eq!(sends(&sink), vec!["2026-01-05T11:00:00Z u1 reminder"]);
}

#[test]
fn an_exit_event_preempts_a_long_wait_and_runs_on_exit() {
    let src = format!(
        r#"{MESSAGES}
flow long {{
  trigger checkout_started
  exit on order_completed
  on exit {{
    audience remove "shoppers"
  }}
  audience add "shoppers"
  wait 30d
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-15T10:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
        ]),
    );
    assert!(sink.outbox.is_empty());
    let exit = sink
        .records
        .iter()
        .find(|r| matches!(r.what, What::Exited { .. }))
        .expect("an exit");
    assert_eq!(exit.at, "2026-01-15T10:00:00Z");
    assert!(matches!(&exit.what, What::Exited { reason, .. } if reason == "order_completed"));
    let actions: Vec<(String, String)> = sink
        .memberships
        .iter()
        .map(|m| (m.at.clone(), m.action.clone()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("2026-01-05T10:00:00Z".to_string(), "add".to_string()),
            ("2026-01-15T10:00:00Z".to_string(), "remove".to_string())
        ]
    );
}

const DELIVERY: &str = r#"
flow delivery {
  trigger order_completed
  wait 1d
  let delivered = wait for order_delivered where event.order_id == trigger.order_id within 14d
  if delivered == none {
    send apology()
    exit
  }
  send review()
}
"#;

#[test]
fn wait_for_looks_back_to_the_instance_start() {
    let b = bundle(&format!("{MESSAGES}{DELIVERY}"));
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
            // Delivered before the wait for begins, and a delivery of another order.
            track(
                r#""userId":"u1""#,
                "Order Delivered",
                "2026-01-05T12:00:00Z",
                r#"{"order_id":"o0"}"#,
            ),
            track(
                r#""userId":"u1""#,
                "Order Delivered",
                "2026-01-05T14:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
        ]),
    );
    assert_eq!(sends(&sink), vec!["2026-01-06T10:00:00Z u1 review"]);
}

#[test]
fn wait_for_binds_none_on_timeout() {
    let b = bundle(&format!("{MESSAGES}{DELIVERY}"));
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
            track(
                r#""userId":"u1""#,
                "Order Delivered",
                "2026-01-08T12:00:00Z",
                r#"{"order_id":"o2"}"#,
            ),
        ]),
    );
    assert_eq!(sends(&sink), vec!["2026-01-20T10:00:00Z u1 apology"]);
}

#[test]
fn a_purchase_joined_to_the_cart_later_still_stops_the_reminder() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    let (sink, dead) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(r#""anonymousId":"a9""#, "Checkout Started", "2026-01-05T10:00:00Z", "{}"),
            track(r#""userId":"u1""#, "Order Completed", "2026-01-05T10:30:00Z", r#"{"order_id":"o1"}"#),
            r#"{"type":"alias","previousId":"a9","userId":"u1","timestamp":"2026-01-05T10:45:00Z"}"#.into(),
        ]),
    );
    assert!(dead.is_empty(), "{dead:?}");
    assert!(sink.outbox.is_empty(), "{:?}", sends(&sink));
    let exits: Vec<(&str, &str)> = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Exited { reason, .. } => Some((r.at.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![("2026-01-05T10:45:00Z", "order_completed")]);
}

#[test]
fn a_repeated_message_id_is_applied_once() {
    let src = format!(
        r#"{MESSAGES}
flow every_time {{
  trigger checkout_started
  entry always
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let dup = r#"{"type":"track","event":"Checkout Started","userId":"u1","timestamp":"2026-01-05T10:00:00Z","messageId":"m-1","properties":{}}"#;
    let other = dup.replace("m-1", "m-2");
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            dup.into(),
            dup.into(),
            other,
        ]),
    );
    assert_eq!(sink.outbox.len(), 2);
}

#[test]
fn only_unreadable_envelopes_are_dead_letters_and_bad_properties_are_dropped() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    let input = lines(&[
        identify("u1", "2026-01-05T09:00:00Z"),
        "{not json".into(),
        r#"{"type":"screen","userId":"u1","timestamp":"2026-01-05T09:10:00Z"}"#.into(),
        track(
            r#""userId":"u1""#,
            "Cart Exploded",
            "2026-01-05T09:20:00Z",
            "{}",
        ),
        track(
            r#""userId":"u1""#,
            "Checkout Started",
            "2026-01-05T09:30:00Z",
            r#"{"value":"lots"}"#,
        ),
        track(
            r#""userId":"u1""#,
            "Order Completed",
            "2026-01-05T09:40:00Z",
            "{}",
        ),
        track(
            r#""userId":"u1""#,
            "Checkout Started",
            "2026-01-05T10:00:00Z",
            r#"{"value":12.5}"#,
        ),
        r#"{"type":"track","event":"Checkout Started","timestamp":"2026-01-05T10:05:00Z"}"#.into(),
    ]);
    let (sink, dead) = replay(&b, &input);
    let got: Vec<(usize, &str)> = dead.iter().map(|d| (d.line, d.reason.as_str())).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].0, 2);
    assert!(got[0].1.starts_with("malformed JSON"), "{}", got[0].1);
    assert_eq!(got[1].0, 8);
    assert!(got[1].1.contains("names no customer"), "{}", got[1].1);
    // The checkout with a bad value still started the flow, and the order
    // without an `order_id` still ended it: no reminder for it.
    let dropped: Vec<(&str, &str, Option<&str>)> = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Dropped {
                path, reason, used, ..
            } => Some((path.as_str(), reason.as_str(), used.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        [
            (
                "properties.value",
                "expected an amount (a number), found the string \"lots\"",
                Some("$0"),
            ),
            ("properties.order_id", "required but missing", Some("\"\"")),
        ]
    );
    let exits = sink
        .records
        .iter()
        .filter(|r| matches!(&r.what, What::Exited { reason, .. } if reason == "order_completed"))
        .count();
    assert_eq!(
        exits, 1,
        "the order without an id ended the first checkout's instance"
    );
    assert_eq!(sends(&sink), vec!["2026-01-05T11:00:00Z u1 reminder"]);
}

#[test]
fn a_date_trigger_is_rearmed_when_the_date_changes() {
    let src = format!(
        r#"{MESSAGES}
flow lapsed {{
  trigger 30d after profile.last_order_at
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-15T10:00:00Z",
                r#"{"order_id":"o2"}"#,
            ),
        ]),
    );
    assert_eq!(sends(&sink), vec!["2026-02-14T10:00:00Z u1 reminder"]);
}

#[test]
fn entering_a_segment_triggers_once_per_entry() {
    let src = format!(
        r#"{MESSAGES}
segment big_spender = profile.total_spent >= $100
flow vip {{
  trigger entering big_spender
  entry always
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let order = |at: &str, id: &str, total: &str| {
        track(
            r#""userId":"u1""#,
            "Order Completed",
            at,
            &format!(r#"{{"order_id":"{id}","total":{total}}}"#),
        )
    };
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            order("2026-01-05T10:00:00Z", "o1", "60"),
            order("2026-01-06T10:00:00Z", "o2", "60"),
            order("2026-01-07T10:00:00Z", "o3", "60"),
        ]),
    );
    assert_eq!(sends(&sink), vec!["2026-01-06T10:00:00Z u1 reminder"]);
}

#[test]
fn weekly_schedules_fire_at_each_recipients_local_time() {
    let src = format!(
        r#"{MESSAGES}
segment subscribers = profile.subscribed
flow weekly {{
  trigger every monday at 09:00 local for subscribers
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let person = |id: &str, tz: &str| {
        format!(
            r#"{{"type":"identify","userId":"{id}","timestamp":"2026-01-04T12:00:00Z","traits":{{"email":"{id}@example.com","timezone":"{tz}","consent":{{"email":true}}}}}}"#
        )
    };
    let (sink, _) = replay_with(
        &b,
        &lines(&[
            person("ber", "Europe/Berlin"),
            person("nyc", "America/New_York"),
        ]),
        Options {
            until: Some(nudge_runtime::millis::ms(
                nudge_runtime::decode::parse_time("2026-01-06T00:00:00Z").unwrap(),
            )),
            drain: false,
        },
    );
    assert_eq!(
        sends(&sink),
        vec![
            "2026-01-05T08:00:00Z ber reminder",
            "2026-01-05T14:00:00Z nyc reminder"
        ]
    );
}

#[test]
fn marketing_without_consent_is_blocked_and_recorded() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    let no_consent = r#"{"type":"identify","userId":"u2","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"u2@example.com"}}"#;
    let (sink, _) = replay(
        &b,
        &lines(&[
            no_consent.into(),
            track(
                r#""userId":"u2""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
        ]),
    );
    assert!(sink.outbox.is_empty());
    let decision = sink
        .records
        .iter()
        .find_map(|r| match &r.what {
            What::Send {
                outcome, reason, ..
            } => Some((*outcome, reason.clone())),
            _ => None,
        })
        .expect("a decision");
    assert_eq!(decision, (Outcome::Blocked, Some("consent".into())));
}

#[test]
fn sleeping_instances_are_plain_data() {
    let b = bundle(&format!("{MESSAGES}{DELIVERY}"));
    let mut engine = nudge_runtime::engine::Engine::new(
        &b,
        nudge_runtime::engine::MemorySink::default(),
        Default::default(),
        i64::MIN,
    );
    let input = lines(&[
        identify("u1", "2026-01-05T09:00:00Z"),
        track(
            r#""userId":"u1""#,
            "Order Completed",
            "2026-01-05T10:00:00Z",
            r#"{"order_id":"o1","total":12.5}"#,
        ),
    ]);
    nudge_runtime::replay::replay(
        &mut engine,
        input.as_bytes(),
        Options::default(),
        &mut |_| {},
    )
    .unwrap();
    let live: Vec<_> = engine.instances().cloned().collect();
    assert_eq!(live.len(), 1);
    let json = serde_json::to_string(&live[0]).unwrap();
    let back: nudge_runtime::engine::Instance = serde_json::from_str(&json).unwrap();
    assert_eq!(back, live[0]);
    assert!(json.contains("\"Sleep\""), "{json}");
    // The flow reads only `trigger.order_id`: that is all the instance keeps.
    assert!(json.contains("\"o1\""), "{json}");
    assert!(
        !json.contains("12.5"),
        "unread trigger fields are dropped: {json}"
    );
    let money =
        serde_json::to_string(&nudge_bytecode::Value::Money("12.5".parse().unwrap())).unwrap();
    assert_eq!(money, r#"{"Money":"12.5"}"#, "money stays an exact string");
}

#[test]
fn set_profile_is_recorded_and_can_start_a_segment_flow() {
    let src = format!(
        r#"{MESSAGES}
profile {{
  tier: string = "none"
}}
segment gold = profile.tier == "gold"
flow promote {{
  trigger order_completed
  set profile.tier = "gold"
}}
flow welcome_gold {{
  trigger entering gold
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:00:00Z",
                r#"{"order_id":"o1"}"#,
            ),
        ]),
    );
    assert_eq!(sends(&sink), vec!["2026-01-05T10:00:00Z u1 reminder"]);
    let write = sink
        .records
        .iter()
        .find_map(|r| match &r.what {
            What::Profile { field, value, .. } => Some((field.as_str(), value.as_str())),
            _ => None,
        })
        .expect("the write is recorded");
    assert_eq!(write, ("tier", "\"gold\""));
}

#[test]
fn a_suppression_list_holds_every_channel() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    let config = nudge_runtime::engine::Config {
        release_spread: 0,
        suppression: ["u1@example.com".to_string()].into_iter().collect(),
        ..Default::default()
    };
    let mut engine = nudge_runtime::engine::Engine::new(
        &b,
        nudge_runtime::engine::MemorySink::default(),
        config,
        i64::MIN,
    );
    let input = lines(&[
        identify("u1", "2026-01-05T09:00:00Z"),
        track(
            r#""userId":"u1""#,
            "Checkout Started",
            "2026-01-05T10:00:00Z",
            "{}",
        ),
    ]);
    let options = Options {
        until: None,
        drain: true,
    };
    nudge_runtime::replay::replay(&mut engine, input.as_bytes(), options, &mut |_| {}).unwrap();
    let sink = engine.into_sink();
    assert!(sink.outbox.is_empty());
    assert!(sink.records.iter().any(|r| matches!(
        &r.what,
        What::Send { outcome: Outcome::Suppressed, reason: Some(reason), .. } if reason == "suppression_list"
    )));
}

#[test]
fn lines_out_of_time_order_are_applied_in_time_order() {
    let b = bundle(&format!("{MESSAGES}{CART}"));
    // The purchase is written first but happens after the checkout.
    let (sink, dead) = replay(
        &b,
        &lines(&[
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:30:00Z",
                r#"{"order_id":"o1"}"#,
            ),
            "   ".into(),
            track(
                r#""userId":"u1""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
            identify("u1", "2026-01-05T09:00:00Z"),
        ]),
    );
    assert!(dead.is_empty(), "{dead:?}");
    assert!(sink.outbox.is_empty(), "{:?}", sends(&sink));
    assert!(sink.records.iter().any(|r| matches!(
        &r.what,
        What::Exited { reason, .. } if reason == "order_completed"
    )));
}

#[test]
fn a_conversion_is_credited_to_the_flows_last_message() {
    let src = format!(
        r#"{MESSAGES}
flow cart {{
  trigger checkout_started
  goal order_completed within 5d
  wait 1h
  send reminder()
  wait 1d
  send review()
}}
"#
    );
    let b = bundle(&src);
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T12:00:00Z",
                r#"{"order_id":"o1","total":30,"revenue":25.5}"#,
            ),
        ]),
    );
    let converted = sink
        .records
        .iter()
        .find_map(|r| match &r.what {
            What::Converted {
                message, revenue, ..
            } => Some((message.clone(), revenue.clone())),
            _ => None,
        })
        .expect("a conversion");
    assert_eq!(
        converted,
        (Some("reminder".to_string()), Some("$25.50".to_string()))
    );
}

#[test]
fn a_live_clock_that_jumps_fires_a_schedule_once_for_its_latest_occurrence() {
    let src =
        format!("{MESSAGES}\nflow daily {{\n  trigger every day at 09:00\n  send reminder()\n}}\n");
    let b = bundle(&src);
    let person = r#"{"type":"identify","userId":"u1","timestamp":"2026-01-04T12:00:00Z","traits":{"email":"u1@example.com","timezone":"UTC","consent":{"email":true}}}"#;
    let at = |t: &str| nudge_runtime::millis::ms(nudge_runtime::decode::parse_time(t).unwrap());
    let run = |catch_up: bool| {
        let config = nudge_runtime::engine::Config {
            release_spread: 0,
            catch_up_schedules: catch_up,
            ..nudge_runtime::engine::Config::default()
        };
        let mut e = nudge_runtime::engine::Engine::new(
            &b,
            nudge_runtime::engine::MemorySink::default(),
            config,
            i64::MIN,
        );
        nudge_runtime::replay::replay(&mut e, person.as_bytes(), Options::default(), &mut |d| {
            panic!("{d:?}")
        })
        .unwrap();
        // One ordinary day, then the clock jumps five days at once.
        e.advance_through(at("2026-01-05T10:00:00Z"));
        e.advance_through(at("2026-01-10T10:00:00Z"));
        e.sink()
            .outbox
            .iter()
            .map(|m| m.at.clone())
            .collect::<Vec<_>>()
    };
    // A replay's virtual clock: every day went by, every newsletter is sent.
    assert_eq!(
        run(true),
        [
            "2026-01-05T09:00:00Z",
            "2026-01-06T09:00:00Z",
            "2026-01-07T09:00:00Z",
            "2026-01-08T09:00:00Z",
            "2026-01-09T09:00:00Z",
            "2026-01-10T09:00:00Z",
        ]
    );
    // A live clock that jumped: one send, for the latest occurrence.
    assert_eq!(run(false), ["2026-01-05T09:00:00Z", "2026-01-10T09:00:00Z"]);
}

/// Twenty carts abandoned a minute apart and a daily schedule: a clock
/// step whose timers fall on many instants, one of them shared by twenty.
#[test]
fn a_clock_step_taken_in_parts_decides_as_taken_whole() {
    use nudge_runtime::engine::{ClockStep, Config, Engine, MemorySink};
    let src = format!(
        "{MESSAGES}{CART}\nflow daily {{\n  trigger every day at 09:00\n  send review()\n}}\n"
    );
    let b = bundle(&src);
    let mut input = Vec::new();
    for i in 0..20 {
        let id = format!("u{i}");
        let at = format!("2026-01-04T10:{i:02}:00Z");
        input.push(identify(&id, &at));
        input.push(track(
            &format!(r#""userId":"{id}""#),
            "Checkout Started",
            &at,
            "{}",
        ));
    }
    let at = |t: &str| nudge_runtime::millis::ms(nudge_runtime::decode::parse_time(t).unwrap());
    let fresh = || {
        // A live clock's schedules: only the latest occurrence due in a step fires.
        let config = Config {
            release_spread: 0,
            catch_up_schedules: false,
            ..Config::default()
        };
        let mut e = Engine::new(&b, MemorySink::default(), config, i64::MIN);
        common::feed(&mut e, &input);
        e
    };
    let whole_step = |e: &mut Engine<'_, MemorySink>, step: ClockStep| match step {
        ClockStep::Until(t) => e.advance_through(t),
        ClockStep::Drain => e.drain(),
    };
    for step in [
        ClockStep::Until(at("2026-01-09T12:00:00Z")),
        ClockStep::Drain,
    ] {
        let mut whole = fresh();
        whole_step(&mut whole, step);
        let mut parted = fresh();
        let mut ends = Vec::new();
        while let Some(t) = parted.advance_part(step, 3) {
            ends.push(t);
        }
        // A rebuild replays each stored part, then the step's last call.
        let mut rebuilt = fresh();
        for &t in &ends {
            rebuilt.replay_part(step, t);
        }
        whole_step(&mut rebuilt, step);

        assert!(ends.len() >= 6, "{step:?} in parts: {ends:?}");
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
        let whole = whole.into_sink();
        let reviews = sends(&whole)
            .iter()
            .filter(|s| s.ends_with(" review"))
            .count();
        if let ClockStep::Until(_) = step {
            assert!(sends(&whole).contains(&"2026-01-09T09:00:00Z u19 review".to_string()));
            assert_eq!(reviews, 20, "one review each, for the latest day");
        } else {
            assert_eq!(reviews, 0, "a drain stops where only schedules are left");
        }
        assert_eq!(
            sends(&whole)
                .iter()
                .filter(|s| s.ends_with(" reminder"))
                .count(),
            20
        );
        for other in [parted.into_sink(), rebuilt.into_sink()] {
            assert_eq!(sends(&other), sends(&whole));
            assert_eq!(other.records, whole.records);
        }
    }
}

#[test]
fn each_early_end_is_recorded_with_its_code() {
    use nudge_runtime::record::ExitReason;
    let src = format!(
        r#"{MESSAGES}
let cutoff = 2026-01-05T10:30:00Z
flow stop_on {{
  trigger checkout_started
  exit on order_completed
  wait 1h
  send reminder()
}}
flow stop_if {{
  trigger checkout_started
  exit if now() >= cutoff
  wait 1h
  send reminder()
}}
flow stop_step {{
  trigger checkout_started
  wait 10m
  exit
}}
"#
    );
    let b = bundle(&src);
    let (sink, _) = replay(
        &b,
        &lines(&[
            identify("u1", "2026-01-05T09:00:00Z"),
            track(
                r#""userId":"u1""#,
                "Checkout Started",
                "2026-01-05T10:00:00Z",
                "{}",
            ),
            track(
                r#""userId":"u1""#,
                "Order Completed",
                "2026-01-05T10:20:00Z",
                r#"{"order_id":"o1"}"#,
            ),
        ]),
    );
    let mut exits: Vec<(String, String, Option<ExitReason>)> = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Exited {
                flow, reason, code, ..
            } => Some((flow.clone(), reason.clone(), *code)),
            _ => None,
        })
        .collect();
    exits.sort();
    assert_eq!(
        exits,
        [
            ("stop_if".into(), "exit_if".into(), Some(ExitReason::ExitIf)),
            (
                "stop_on".into(),
                "order_completed".into(),
                Some(ExitReason::ExitOn)
            ),
            ("stop_step".into(), "exit".into(), Some(ExitReason::Exit)),
        ]
    );
    // The trace writes the code beside the reason.
    let line = sink
        .records
        .iter()
        .find(|r| matches!(&r.what, What::Exited { flow, .. } if flow == "stop_on"))
        .map(|r| serde_json::to_string(r).unwrap())
        .unwrap();
    assert!(
        line.contains(r#""reason":"order_completed","code":"exit_on""#),
        "{line}"
    );
}

#[test]
fn revenue_is_counted_per_currency_never_added_across() {
    let src = format!(
        r#"{MESSAGES}
flow cart {{
  trigger checkout_started
  goal order_completed within 5d
  wait 1h
  send reminder()
}}
"#
    );
    let b = bundle(&src);
    let config = nudge_runtime::engine::Config {
        release_spread: 0,
        ..nudge_runtime::engine::Config::default()
    };
    let mut engine = nudge_runtime::engine::Engine::new(
        &b,
        nudge_runtime::engine::MemorySink::default(),
        config,
        i64::MIN,
    );
    let order = |who: &str, at: &str, props: &str| {
        track(
            &format!(r#""userId":"{who}""#),
            "Order Completed",
            at,
            props,
        )
    };
    for line in [
        identify("u1", "2026-01-05T09:00:00Z"),
        identify("u2", "2026-01-05T09:00:00Z"),
        identify("u3", "2026-01-05T09:00:00Z"),
        track(
            r#""userId":"u1""#,
            "Checkout Started",
            "2026-01-05T10:00:00Z",
            "{}",
        ),
        track(
            r#""userId":"u2""#,
            "Checkout Started",
            "2026-01-05T10:00:00Z",
            "{}",
        ),
        track(
            r#""userId":"u3""#,
            "Checkout Started",
            "2026-01-05T10:00:00Z",
            "{}",
        ),
        order(
            "u1",
            "2026-01-05T12:00:00Z",
            r#"{"order_id":"o1","total":30,"revenue":25.5,"currency":"eur"}"#,
        ),
        order(
            "u2",
            "2026-01-05T12:00:00Z",
            r#"{"order_id":"o2","total":10,"revenue":10,"currency":"USD"}"#,
        ),
        order(
            "u3",
            "2026-01-05T12:00:00Z",
            r#"{"order_id":"o3","total":4,"revenue":4}"#,
        ),
    ] {
        nudge_runtime::ingest::apply_line(&mut engine, &line).unwrap();
    }
    engine.drain();
    let stats = engine.stats();
    let cart = &stats.flows["cart"];
    let by: Vec<(String, String)> = cart
        .revenue_by_currency
        .iter()
        .map(|(c, d)| (c.clone(), d.normalize().to_string()))
        .collect();
    assert_eq!(
        by,
        [
            (String::new(), "4".to_string()),
            ("EUR".to_string(), "25.5".to_string()),
            ("USD".to_string(), "10".to_string()),
        ]
    );
    assert_eq!(cart.conversions, 3);
}
