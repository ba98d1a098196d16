//! Timelines of the sample trace: joins followed, flows filtered, words checked.

use std::path::Path;

use nudge_report::{Timeline, Trace, UnknownCustomer};

fn sample() -> Trace {
    Trace::parse(include_str!("data/sample.jsonl"), Path::new("sample.jsonl"))
        .expect("sample parses")
}

#[test]
fn a_joined_anonymous_visitor_is_part_of_the_story() {
    let t = Timeline::build(&sample(), "u1", None).unwrap();
    assert_eq!(t.identities, ["a9", "u1"]);
    let customers: Vec<&str> = t
        .entries
        .iter()
        .map(|e| e.record.customer.as_str())
        .collect();
    // In time order: the join (10:45) falls between a9's entry and a9's send.
    assert_eq!(customers, ["a9", "u1", "a9", "a9", "u1", "u1"]);
    insta::assert_snapshot!("u1_human", t.human());
}

#[test]
fn the_absorbed_id_points_to_the_whole_person() {
    let t = Timeline::build(&sample(), "a9", None).unwrap();
    assert_eq!(t.identities, ["a9"]);
    assert_eq!(t.joined_into.as_deref(), Some("u1"));
    assert_eq!(t.entries.len(), 3);
    assert!(t.human().contains("`nudge explain u1`"));
}

#[test]
fn deferrals_show_local_times() {
    let t = Timeline::build(&sample(), "u2", None).unwrap();
    insta::assert_snapshot!("u2_human", t.human());
}

#[test]
fn a_flow_filter_keeps_only_that_flow() {
    let trace = sample();
    let t = Timeline::build(&trace, "u5", Some("welcome")).unwrap();
    assert_eq!(t.entries.len(), 6);
    insta::assert_snapshot!("u5_welcome_human", t.human());
    let json = t.json();
    let kinds: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "entered",
            "send",
            "send",
            "audience",
            "profile",
            "completed"
        ]
    );
}

#[test]
fn unknown_customers_and_flows_list_known_ones() {
    let trace = sample();
    let err = Timeline::build(&trace, "zed", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"no customer "zed" in the trace; known customers: a9, u1, u2, u3, u4, u5"#
    );
    let err = Timeline::build(&trace, "u1", Some("nope")).unwrap_err();
    assert!(matches!(err, UnknownCustomer::Flow { .. }));
    assert_eq!(
        err.to_string(),
        r#"no flow "nope" in the trace; known flows: cart_recovery, welcome"#
    );
}
