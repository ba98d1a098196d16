//! The profile API's view of a customer: the chosen traits as JSON (exact
//! decimals as strings, dates and instants as text) and the segments the
//! customer is in now, found by any of their ids.

use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::ingest;
use serde_json::json;

const SOURCE: &str = r#"
segment vip = profile.total_spent >= $500
segment repeat = profile.orders_count >= 2
segment berliners = profile.city == "Berlin"

flow viewed {
  trigger product_viewed
  entry always
  pause: wait 1h
}
"#;

fn order(total: &str, day: u32) -> String {
    format!(
        r#"{{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-03-{day:02}T10:00:00Z","properties":{{"order_id":"o{day}","total":{total},"currency":"EUR"}}}}"#
    )
}

#[test]
fn a_customer_shows_the_chosen_traits_and_the_segments_they_are_in() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut e = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let identify = r#"{"type":"identify","userId":"u1","anonymousId":"a1","timestamp":"2026-03-01T09:00:00Z","traits":{"email":"Ann@Example.com","first_name":"Ann","birthday":"1990-05-16","city":"Hamburg"}}"#;
    ingest::apply_line(&mut e, identify).unwrap();
    for (total, day) in [("320.10", 2), ("199.95", 3)] {
        ingest::apply_line(&mut e, &order(total, day)).unwrap();
    }
    let chosen: Vec<String> = [
        "first_name",
        "total_spent",
        "birthday",
        "phone",
        "no_such_trait",
    ]
    .map(String::from)
    .into();
    let view = e.profile_view("u1", &chosen).expect("a known customer");
    assert_eq!(
        serde_json::to_value(&view).unwrap(),
        json!({
            "id": "u1",
            // Exact: 320.10 + 199.95, as a string; a trait never set is null;
            // a name the profile does not declare is left out.
            "traits": {
                "first_name": "Ann",
                "total_spent": "520.05",
                "birthday": "1990-05-16",
                "phone": null
            },
            "segments": ["repeat", "vip"]
        })
    );

    // The anonymous id and the email reach the same customer.
    for id in ["a1", "ann@example.com"] {
        let other = e.profile_view(id, &chosen).expect("the same customer");
        assert_eq!(
            (other.traits, other.segments),
            (view.traits.clone(), view.segments.clone())
        );
    }
    // Segments are evaluated now: a move to Berlin puts them in one more.
    let moved = r#"{"type":"identify","userId":"u1","timestamp":"2026-03-04T09:00:00Z","traits":{"city":"Berlin"}}"#;
    ingest::apply_line(&mut e, moved).unwrap();
    let now = e.profile_view("u1", &[]).unwrap();
    assert!(now.traits.is_empty());
    assert_eq!(now.segments, ["berliners", "repeat", "vip"]);

    assert_eq!(e.profile_view("nobody", &chosen), None);
}
