//! Deploys that change the schemas: traits, events, properties and records
//! added to a live engine keep every instance in place and every stored
//! value; changes stored values cannot follow are refused and change nothing.

mod common;

use common::{arena, bundle, engine, feed, sent};
use nudge_runtime::engine::{DeployError, Fate};

const BASE: &str = r#"
message reminder(amount: money) {
  channel email
  subject "reminder {amount}"
  body "Come back"
}
message hello() {
  channel email
  subject "hello"
  body "Hi"
}
event gift_claimed "Gift Claimed" {
  code: string
}
flow cart {
  trigger checkout_started
  exit on order_completed
  let amount = trigger.value
  reminder: wait 1d
  send reminder(amount)
}
"#;

fn identify(id: &str, at: &str, traits: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}{traits}}}}}"#
    )
}

fn track(id: &str, event: &str, at: &str, props: &str) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"{id}","timestamp":"{at}","properties":{props}}}"#
    )
}

fn millis(at: &str) -> i64 {
    nudge_runtime::millis::ms(nudge_runtime::decode::parse_time(at).unwrap())
}

#[test]
fn a_new_trait_event_and_property_deploy_onto_a_live_engine_without_losing_anyone() {
    // A flow that reads gifts, so the history keeps them.
    let gifts = "flow gifts {\n  trigger order_completed\n  if any_event(gift_claimed, g => g.code == \"none\") {\n    send hello()\n  }\n}\n";
    let v1 = bundle(&format!("{BASE}{gifts}"));
    let v2 = bundle(&format!(
        r#"{}
profile {{
  tier: string = "none"
  nickname: string?
}}
event review_posted "Review Posted" {{
  stars: int
}}
event gift_claimed "Gift Claimed" {{
  code: string
  channel: string = "web"
}}
message thanks(tier: string, channel: string) {{
  channel email
  subject "thanks {{tier}} {{channel}}"
  body "Thank you"
}}
flow reviews {{
  trigger review_posted
  send thanks(profile.tier, "review")
}}
{gifts}"#,
        BASE.replace(
            "event gift_claimed \"Gift Claimed\" {\n  code: string\n}\n",
            ""
        )
        .replace(
            "  send reminder(amount)\n",
            "  send reminder(amount)\n  send thanks(profile.tier, last_event(gift_claimed)?.channel ?? \"no gift\")\n"
        )
    ));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z", ""),
            track(
                "u1",
                "Checkout Started",
                "2026-03-02T10:00:00Z",
                r#"{"value":42}"#,
            ),
            track(
                "u1",
                "Gift Claimed",
                "2026-03-02T10:30:00Z",
                r#"{"code":"G1"}"#,
            ),
        ],
    );
    let report = e.deploy(&v2, arena()).expect("additions deploy");
    let changes = &report.schemas;
    assert_eq!(changes.added, ["event `review_posted`"]);
    assert_eq!(
        changes.fields_added,
        ["profile.tier", "profile.nickname", "gift_claimed.channel"]
    );
    assert!(changes.removed.is_empty() && changes.fields_removed.is_empty());
    // The sleeping cart instance moved to the new version at its label.
    let cart = report.flows.iter().find(|f| f.flow == "cart").unwrap();
    assert_eq!(cart.steps.len(), 1, "{report}");
    assert_eq!(
        cart.steps[0].fate,
        Fate::Carried {
            to_step: "reminder".into()
        },
        "{report}"
    );

    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T11:00:00Z", r#","tier":"gold""#),
            track(
                "u1",
                "Review Posted",
                "2026-03-02T12:00:00Z",
                r#"{"stars":5}"#,
            ),
        ],
    );
    e.advance_through(millis("2026-03-04T00:00:00Z"));
    assert_eq!(
        sent(&e),
        [
            "2026-03-02T12:00:00Z u1 thanks \"thanks gold review\"",
            // The trigger record stored before the deploy still gives its value.
            "2026-03-03T10:00:00Z u1 reminder \"reminder $42.00\"",
            // The gift stored before the deploy has the new property's default.
            "2026-03-03T10:00:00Z u1 thanks \"thanks gold web\"",
        ]
    );
}

#[test]
fn a_removed_event_that_staying_instances_wait_for_is_refused_and_changes_nothing() {
    let gift_flow = r#"
flow gift {
  trigger checkout_started
  claimed: wait for gift_claimed within 2d
  send hello()
}
"#;
    let v1 = bundle(&format!("{BASE}{gift_flow}"));
    let v2 = bundle(&BASE.replace(
        "event gift_claimed \"Gift Claimed\" {\n  code: string\n}\n",
        "",
    ));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z", ""),
            track(
                "u1",
                "Checkout Started",
                "2026-03-02T10:00:00Z",
                r#"{"value":42}"#,
            ),
        ],
    );
    let instances: Vec<_> = e.instances().cloned().collect();
    let err = e.deploy(&v2, arena()).unwrap_err();
    let DeployError::Incompatible { problems } = &err else {
        panic!("not an incompatible deploy: {err}");
    };
    let version = &v1.flow("gift").unwrap().version;
    assert_eq!(
        problems,
        &[format!(
            "1 instance of `gift` (version {version}) in flight would stay on code that reads event `gift_claimed`, which the new bundle removes; deploy once they have finished, or keep it"
        )]
    );
    assert_eq!(e.releases().count(), 1);
    assert_eq!(e.instances().cloned().collect::<Vec<_>>(), instances);
    // Still running v1: the gift arrives and the wait ends with a send.
    feed(
        &mut e,
        &[track(
            "u1",
            "Gift Claimed",
            "2026-03-02T11:00:00Z",
            r#"{"code":"G"}"#,
        )],
    );
    assert_eq!(sent(&e), ["2026-03-02T11:00:00Z u1 hello \"hello\""]);
}

#[test]
fn a_removed_event_nobody_reads_any_more_is_dropped_from_histories() {
    let counter = r#"
flow counter {
  trigger checkout_started
  send reminder(trigger.value)
}
flow gifts {
  trigger order_completed
  if any_event(gift_claimed, g => g.code == "G") {
    send hello()
  }
}
"#;
    let v1 = bundle(&format!("{BASE}{counter}"));
    let without_gifts = BASE.replace(
        "event gift_claimed \"Gift Claimed\" {\n  code: string\n}\n",
        "",
    );
    let v2 = bundle(&format!(
        "{without_gifts}\nflow counter {{\n  trigger checkout_started\n  send reminder(trigger.value)\n}}\n"
    ));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z", ""),
            track(
                "u1",
                "Gift Claimed",
                "2026-03-02T09:30:00Z",
                r#"{"code":"G"}"#,
            ),
        ],
    );
    let report = e.deploy(&v2, arena()).expect("nobody waits for gifts");
    assert_eq!(report.schemas.removed, ["event `gift_claimed`"]);
    assert_eq!(
        report.flows.iter().find(|f| f.flow == "gifts").unwrap().to,
        None
    );
    // An old-style call is now an undeclared event: counted, not a dead letter.
    feed(
        &mut e,
        &[
            track(
                "u1",
                "Gift Claimed",
                "2026-03-02T10:30:00Z",
                r#"{"code":"G"}"#,
            ),
            track(
                "u1",
                "Checkout Started",
                "2026-03-02T11:00:00Z",
                r#"{"value":7}"#,
            ),
        ],
    );
    assert_eq!(
        sent(&e),
        ["2026-03-02T11:00:00Z u1 reminder \"reminder $7.00\""]
    );
}

#[test]
fn an_instance_carried_to_a_new_version_reads_a_trait_added_by_the_same_deploy() {
    let v1 = bundle(BASE);
    let v2 = bundle(&BASE.replace(
        "  reminder: wait 1d\n  send reminder(amount)\n",
        "  reminder: wait 1d\n  if profile.vip {\n    send reminder(amount)\n  } else {\n    send hello()\n  }\n",
    ).replace("flow cart {", "profile {\n  vip: bool = false\n}\nflow cart {"));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z", ""),
            identify("u2", "2026-03-02T09:00:00Z", ""),
            track(
                "u1",
                "Checkout Started",
                "2026-03-02T10:00:00Z",
                r#"{"value":42}"#,
            ),
            track(
                "u2",
                "Checkout Started",
                "2026-03-02T10:00:00Z",
                r#"{"value":9}"#,
            ),
        ],
    );
    let report = e
        .deploy(&v2, arena())
        .expect("a trait with a default deploys");
    let cart = report.flows.iter().find(|f| f.flow == "cart").unwrap();
    assert!(
        matches!(&cart.steps[0].fate, Fate::Carried { to_step } if to_step == "reminder"),
        "{report}"
    );
    feed(
        &mut e,
        &[identify("u2", "2026-03-02T12:00:00Z", r#","vip":true"#)],
    );
    e.advance_through(millis("2026-03-04T00:00:00Z"));
    assert_eq!(
        sent(&e),
        [
            "2026-03-03T10:00:00Z u1 hello \"hello\"",
            "2026-03-03T10:00:00Z u2 reminder \"reminder $9.00\"",
        ]
    );
}

#[test]
fn a_goal_on_a_removed_event_ends_and_is_counted() {
    let v1 = bundle(&format!(
        "{BASE}\nflow welcome {{\n  trigger checkout_started\n  goal gift_claimed within 7d\n  send hello()\n}}\n"
    ));
    let v2 = bundle(&BASE.replace(
        "event gift_claimed \"Gift Claimed\" {\n  code: string\n}\n",
        "",
    ));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z", ""),
            track(
                "u1",
                "Checkout Started",
                "2026-03-02T10:00:00Z",
                r#"{"value":42}"#,
            ),
        ],
    );
    let report = e.deploy(&v2, arena()).expect("the welcome flow has ended");
    assert_eq!(report.schemas.goals_ended, 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("1 conversion goal being watched ended: its rule reads something removed"),
        "{report}"
    );
}

#[test]
fn replaying_the_same_calls_and_deploys_rebuilds_the_same_state() {
    let v1 = bundle(BASE);
    let v2 = bundle(&BASE.replace("flow cart {", "profile {\n  tier: string?\n}\nflow cart {"));
    let run = || {
        let mut e = engine(&v1);
        feed(
            &mut e,
            &[
                identify("u1", "2026-03-02T09:00:00Z", ""),
                track(
                    "u1",
                    "Checkout Started",
                    "2026-03-02T10:00:00Z",
                    r#"{"value":42}"#,
                ),
            ],
        );
        e.deploy(&v2, arena()).unwrap();
        feed(
            &mut e,
            &[identify("u1", "2026-03-02T11:00:00Z", r#","tier":"gold""#)],
        );
        e.drain();
        (
            serde_json::to_string(&e.sink().outbox).unwrap(),
            serde_json::to_string(&e.sink().records).unwrap(),
            e.instances().cloned().collect::<Vec<_>>(),
        )
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.0.contains("reminder $42.00"), "{}", a.0);
}
