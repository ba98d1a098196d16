//! Live deploys: instances in flight are carried to a new version by step
//! label or finish on their own release; entry rules, numbering and the
//! report follow the flow by name; incompatible bundles change nothing.

mod common;

use common::{arena, bundle, engine, feed, sent};
use nudge_bytecode::Bundle;
use nudge_runtime::engine::{
    DeployError, Deployed, Engine, Fate, FlowReport, MemorySink, StepReport,
};
use nudge_runtime::record::What;

const MESSAGES: &str = r#"
message reminder_v1(amount: money) {
  channel email
  subject "v1 {amount}"
  body "Come back"
}
message reminder_v2(amount: money) {
  channel email
  subject "v2 {amount}"
  body "Come back"
}
message hello() {
  channel email
  subject "hello"
  body "Hi"
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
    )
}

fn track(id: &str, event: &str, at: &str, props: &str) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"{id}","timestamp":"{at}","properties":{props}}}"#
    )
}

fn checkout(id: &str, at: &str) -> String {
    track(id, "Checkout Started", at, r#"{"value":42}"#)
}

fn src(flows: &str) -> String {
    format!("{MESSAGES}{flows}")
}

const CART_V1: &str = r#"
flow cart {
  trigger checkout_started
  exit on order_completed
  let amount = trigger.value
  reminder: wait 1d
  send reminder_v1(amount)
}
"#;

const CART_V2: &str = r#"
flow cart {
  trigger checkout_started
  exit on order_completed
  let amount = trigger.value
  send hello()
  reminder: wait 3d
  send reminder_v2(amount)
}
"#;

#[test]
fn a_sleeping_instance_at_a_labelled_wait_moves_to_the_new_version() {
    let v1 = bundle(&src(CART_V1));
    let v2 = bundle(&src(CART_V2));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z"),
            checkout("u1", "2026-03-02T10:00:00Z"),
            identify("u9", "2026-03-02T12:00:00Z"),
        ],
    );
    let report = e.deploy(&v2, arena()).expect("same schemas");
    let v1_version = v1.flow("cart").unwrap().version.clone();
    let v2_version = v2.flow("cart").unwrap().version.clone();
    assert_ne!(v1_version, v2_version);
    assert_eq!(
        report.flows,
        vec![FlowReport {
            flow: "cart".into(),
            from: v1_version.clone(),
            to: Some(v2_version.clone()),
            steps: vec![StepReport {
                step: "reminder".into(),
                index: 1,
                instances: 1,
                fate: Fate::Carried {
                    to_step: "reminder".into()
                },
            }],
        }]
    );
    let inst = e.instances().next().expect("still asleep");
    assert_eq!(
        (inst.release, &*inst.version, inst.step),
        (1, &*v2_version, 2)
    );
    assert_eq!(inst.number, 1);

    e.drain();
    // The wake time it had (1d after the checkout, not the new 3d), the new
    // message, the amount carried by name, and no re-run of the new `hello`.
    assert_eq!(
        sent(&e),
        ["2026-03-03T10:00:00Z u1 reminder_v2 \"v2 $42.00\""]
    );
    let out = &e.sink().outbox[0];
    assert_eq!(out.flow_version, v2_version);
    assert_eq!(
        out.idempotency_key,
        format!("cart/{v2_version}/u1/1/send@3")
    );
}

const STAY_V1: &str = r#"
flow cart {
  trigger checkout_started
  let amount = trigger.value
  wait 1d
  send reminder_v1(amount)
}
flow browse {
  trigger product_viewed
  reminder: wait 2d
  send reminder_v1($1)
}
flow promo {
  trigger checkout_started
  reminder: wait 1d
  send hello()
}
"#;

const STAY_V2: &str = r#"
flow cart {
  trigger checkout_started
  let amount = trigger.value
  wait 1d
  send reminder_v2(amount)
}
flow browse {
  trigger product_viewed
  nudge: wait 2d
  send reminder_v2($1)
}
flow promo {
  trigger checkout_started
  reminder: wait 1d
  send reminder_v2(trigger.value)
}
"#;

#[test]
fn instances_that_cannot_be_carried_finish_on_the_old_version() {
    let v1 = bundle(&src(STAY_V1));
    let v2 = bundle(&src(STAY_V2));
    let mut e = engine(&v1);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z"),
            checkout("u1", "2026-03-02T10:00:00Z"),
            track(
                "u1",
                "Product Viewed",
                "2026-03-02T10:30:00Z",
                r#"{"product_id":"p1"}"#,
            ),
        ],
    );
    let report = e.deploy(&v2, arena()).unwrap();
    let reasons: Vec<(&str, &str, &Fate)> = report
        .flows
        .iter()
        .flat_map(|f| {
            f.steps
                .iter()
                .map(move |s| (f.flow.as_str(), s.step.as_str(), &s.fate))
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "browse",
                "reminder",
                &Fate::Stays {
                    reason: "the new version has no step `reminder`".into()
                }
            ),
            (
                "cart",
                "step 1 (wait 1d)",
                &Fate::Stays {
                    reason: "step 1 (wait 1d) has no label".into()
                }
            ),
            (
                "promo",
                "reminder",
                &Fate::Stays {
                    reason:
                        "the new version reads `trigger.value`, which this instance did not keep"
                            .into()
                }
            ),
        ]
    );
    assert!(e.instances().all(|i| i.release == 0));
    e.drain();
    assert_eq!(
        sent(&e),
        [
            "2026-03-03T10:00:00Z u1 reminder_v1 \"v1 $42.00\"",
            "2026-03-03T10:00:00Z u1 hello \"hello\"",
            "2026-03-04T10:30:00Z u1 reminder_v1 \"v1 $1.00\"",
        ]
    );
    let v1_cart = &v1.flow("cart").unwrap().version;
    assert!(
        e.sink().outbox[0]
            .idempotency_key
            .starts_with(&format!("cart/{v1_cart}/u1/1/")),
        "the old version's key"
    );
}

const ENTRY_V1: &str = r#"
flow once {
  trigger checkout_started
  entry once
  send reminder_v1(trigger.value)
}
flow notify {
  trigger order_completed
  entry always
  send hello()
}
"#;

// `aaa` sorts first, so every flow's index moves by one.
const ENTRY_V2: &str = r#"
flow aaa {
  trigger signed_up
  send hello()
}
flow once {
  trigger checkout_started
  entry once
  send reminder_v2(trigger.value)
}
flow notify {
  trigger order_completed
  entry always
  send reminder_v2(trigger.total)
}
"#;

#[test]
fn new_instances_start_on_the_new_version_and_entry_rules_carry_over() {
    let v1 = bundle(&src(ENTRY_V1));
    let v2 = bundle(&src(ENTRY_V2));
    let mut e = engine(&v1);
    let order = |at: &str| track("u1", "Order Completed", at, r#"{"order_id":"o","total":5}"#);
    feed(
        &mut e,
        &[
            identify("u1", "2026-03-02T09:00:00Z"),
            checkout("u1", "2026-03-02T10:00:00Z"),
            order("2026-03-02T11:00:00Z"),
            order("2026-03-02T12:00:00Z"),
        ],
    );
    let report = e.deploy(&v2, arena()).unwrap();
    assert_eq!(
        report
            .added
            .iter()
            .map(|a| a.flow.as_str())
            .collect::<Vec<_>>(),
        ["aaa"]
    );
    feed(
        &mut e,
        &[
            checkout("u1", "2026-03-03T10:00:00Z"),
            identify("u2", "2026-03-03T10:30:00Z"),
            checkout("u2", "2026-03-03T11:00:00Z"),
            order("2026-03-03T12:00:00Z"),
        ],
    );
    assert_eq!(
        sent(&e),
        [
            "2026-03-02T10:00:00Z u1 reminder_v1 \"v1 $42.00\"",
            "2026-03-02T11:00:00Z u1 hello \"hello\"",
            "2026-03-02T12:00:00Z u1 hello \"hello\"",
            "2026-03-03T11:00:00Z u2 reminder_v2 \"v2 $42.00\"",
            "2026-03-03T12:00:00Z u1 reminder_v2 \"v2 $5.00\"",
        ]
    );
    // `entry once` still remembers u1's entry under the old version.
    let refused: Vec<(&str, &str)> = e
        .sink()
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::NotEntered { flow, reason, .. } => Some((r.customer.as_str(), flow.as_str()))
                .filter(|_| *reason == nudge_runtime::record::EntryReason::EnteredBefore),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [("u1", "once")]);
    // Instance numbers go on counting: the third `notify` is number 3.
    let notify_v2 = &v2.flow("notify").unwrap().version;
    let last = e.sink().outbox.last().unwrap();
    assert_eq!(
        last.idempotency_key,
        format!("notify/{notify_v2}/u1/3/send@0")
    );
    let entered: Vec<(&str, u32, &str)> = e
        .sink()
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Entered {
                flow,
                version,
                instance,
                ..
            } if flow == "notify" => Some((flow.as_str(), *instance, version.as_str())),
            _ => None,
        })
        .collect();
    let notify_v1 = &v1.flow("notify").unwrap().version;
    assert_eq!(
        entered,
        [
            ("notify", 1, notify_v1.as_str()),
            ("notify", 2, notify_v1.as_str()),
            ("notify", 3, notify_v2.as_str()),
        ]
    );
    let stats = e.stats();
    assert_eq!(stats.flows["notify"].entered, 3);
    assert_eq!(stats.flows["once"].not_entered, 1);
    assert_eq!(stats.flows["aaa"].entered, 0);
}

#[test]
fn an_incompatible_schema_change_is_refused_and_changes_nothing() {
    let loyalty = "event loyalty_joined \"Loyalty Joined\" {\n  tier: string\n}\n";
    let v1 = bundle(&format!("{}{loyalty}", src(CART_V1)));
    let v2 = bundle(&format!(
        "{}{}event referral_sent \"Referral Sent\" {{\n  code: string\n}}\n",
        src(CART_V2),
        loyalty.replace("tier: string", "tier: int\n  points: int"),
    ));
    let before = [
        identify("u1", "2026-03-02T09:00:00Z"),
        checkout("u1", "2026-03-02T10:00:00Z"),
        identify("u2", "2026-03-02T10:30:00Z"),
    ];
    let after = [
        checkout("u2", "2026-03-02T11:00:00Z"),
        track(
            "u2",
            "Order Completed",
            "2026-03-02T12:00:00Z",
            r#"{"order_id":"o"}"#,
        ),
        checkout("u2", "2026-03-02T13:00:00Z"),
    ];

    let mut asked = engine(&v1);
    feed(&mut asked, &before);
    let instances: Vec<_> = asked.instances().cloned().collect();
    let err = asked.deploy(&v2, arena()).unwrap_err();
    let DeployError::Incompatible { problems } = &err else {
        panic!("not an incompatible deploy: {err}");
    };
    assert_eq!(
        problems,
        &[
            "`loyalty_joined.tier` changes type from `string` to `int`; stored values are `string` (add a field with a new name instead)",
            "`loyalty_joined.points` is added as required, but stored `loyalty_joined` values have none; make it optional (`points: T?`) or give it a default",
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("cannot follow\n  - `loyalty_joined.tier`"),
        "{text}"
    );
    assert_eq!(asked.releases().count(), 1);
    assert_eq!(asked.instances().cloned().collect::<Vec<_>>(), instances);
    feed(&mut asked, &after);
    asked.drain();

    let mut never = engine(&v1);
    assert_ne!(v1.flow("cart"), v2.flow("cart"));
    feed(&mut never, &before);
    feed(&mut never, &after);
    never.drain();
    assert_eq!(
        serde_json::to_string(&asked.sink().outbox).unwrap(),
        serde_json::to_string(&never.sink().outbox).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&asked.sink().records).unwrap(),
        serde_json::to_string(&never.sink().records).unwrap()
    );
    assert_eq!(asked.stats(), never.stats());
    assert_eq!(sent(&asked).len(), 2, "{:?}", sent(&asked));
}

const JOURNEY_V1: &str = r#"
flow journey {
  trigger checkout_started
  entry always
  let amount = trigger.value
  first: wait 1h
  second: let order = wait for order_completed within 3d
  wait 1d
  send reminder_v1(amount)
}
flow steady {
  trigger product_viewed
  entry always
  pause: wait 5d
  send hello()
}
flow needs {
  trigger product_viewed
  entry always
  pause: wait 5d
  send reminder_v1($3)
}
flow gone {
  trigger product_viewed
  entry always
  wait 5d
  send hello()
}
"#;

const JOURNEY_V2: &str = r#"
flow journey {
  trigger checkout_started
  entry always
  let amount = trigger.value
  first: wait for order_completed within 1h
  second: let order = wait for order_completed within 1d
  third: wait 2d
  send reminder_v2(amount)
}
flow steady {
  trigger product_viewed
  entry always
  pause: wait 5d
  send hello()
}
flow needs {
  trigger product_viewed
  entry always
  let extra = $3
  pause: wait 5d
  send reminder_v2(extra)
}
"#;

/// Six journeys parked at three different steps, two `steady`, one `needs`
/// and one `gone`, at 2026-03-10T12:00:00Z.
fn parked() -> Vec<String> {
    let mut lines = Vec::new();
    for c in ["c1", "c2", "c3", "c4", "c5", "c6"] {
        lines.push(identify(c, "2026-03-01T00:00:00Z"));
    }
    // c6 is past `second` (timed out) and in the unlabelled wait.
    lines.push(checkout("c6", "2026-03-06T20:00:00Z"));
    // c4 and c5 wait for an order at `second`.
    lines.push(checkout("c4", "2026-03-10T09:00:00Z"));
    lines.push(checkout("c5", "2026-03-10T09:00:00Z"));
    // One product view starts `steady`, `needs` and `gone`.
    lines.push(track(
        "c1",
        "Product Viewed",
        "2026-03-10T10:00:00Z",
        r#"{"product_id":"p1"}"#,
    ));
    // c1 to c3 sleep at `first`.
    for c in ["c1", "c2", "c3"] {
        lines.push(checkout(c, "2026-03-10T11:30:00Z"));
    }
    lines.push(identify("c9", "2026-03-10T12:00:00Z"));
    lines
}

fn step(step: &str, index: u16, instances: u64, fate: Fate) -> StepReport {
    StepReport {
        step: step.into(),
        index,
        instances,
        fate,
    }
}

fn stays(reason: &str) -> Fate {
    Fate::Stays {
        reason: reason.into(),
    }
}

#[test]
fn the_report_counts_instances_per_step_and_fate() {
    let v1 = bundle(&src(JOURNEY_V1));
    let v2 = bundle(&src(JOURNEY_V2));
    let mut e = engine(&v1);
    feed(&mut e, &parked());
    let report = e.deploy(&v2, arena()).unwrap();
    let version = |b: &Bundle, f: &str| b.flow(f).unwrap().version.clone();
    let expected = Deployed {
        release: 1,
        flows: vec![
            FlowReport {
                flow: "gone".into(),
                from: version(&v1, "gone"),
                to: None,
                steps: vec![step("step 0 (wait 5d)", 0, 1, stays("flow removed"))],
            },
            FlowReport {
                flow: "journey".into(),
                from: version(&v1, "journey"),
                to: Some(version(&v2, "journey")),
                steps: vec![
                    step(
                        "first",
                        1,
                        3,
                        stays("the new version's `first` waits for an event, this one sleeps"),
                    ),
                    step(
                        "second",
                        2,
                        2,
                        Fate::Carried {
                            to_step: "second".into(),
                        },
                    ),
                    step(
                        "step 3 (wait 1d)",
                        3,
                        1,
                        stays("step 3 (wait 1d) has no label"),
                    ),
                ],
            },
            FlowReport {
                flow: "needs".into(),
                from: version(&v1, "needs"),
                to: Some(version(&v2, "needs")),
                steps: vec![step(
                    "pause",
                    0,
                    1,
                    stays("the new version needs `extra` bound before `pause`"),
                )],
            },
            FlowReport {
                flow: "steady".into(),
                from: version(&v1, "steady"),
                to: Some(version(&v1, "steady")),
                steps: vec![step("pause", 0, 1, Fate::Unchanged)],
            },
        ],
        added: vec![],
        schemas: Default::default(),
    };
    assert_eq!(report, expected);
    assert_eq!(version(&v1, "steady"), version(&v2, "steady"));

    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "journey {} -> {}\n  first: 3 instances stay: the new version's `first` waits for an event, this one sleeps\n  second: 2 instances carried to second\n",
            version(&v1, "journey"),
            version(&v2, "journey")
        )),
        "{text}"
    );
    assert!(text.starts_with("release 1\n"), "{text}");
    assert!(
        text.contains(&format!(
            "steady {} unchanged\n  pause: 1 instance unchanged\n",
            version(&v1, "steady")
        )),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["flows"][1]["steps"][1]["fate"],
        serde_json::json!({"kind": "carried", "to_step": "second"})
    );
    assert_eq!(json["flows"][0]["to"], serde_json::Value::Null);
}

#[test]
fn a_carried_wait_for_keeps_its_deadline_and_binds_with_the_new_code() {
    let v1 = bundle(&src(JOURNEY_V1));
    let v2 = bundle(&src(JOURNEY_V2));
    let mut e = engine(&v1);
    feed(&mut e, &parked());
    e.deploy(&v2, arena()).unwrap();
    feed(
        &mut e,
        &[track(
            "c4",
            "Order Completed",
            "2026-03-11T08:00:00Z",
            r#"{"order_id":"o4"}"#,
        )],
    );
    e.drain();
    let journeys: Vec<String> = sent(&e)
        .into_iter()
        .filter(|s| s.contains("reminder_v") && !s.contains("$3.00"))
        .collect();
    assert_eq!(
        journeys,
        [
            // c6 stayed on v1: 1d after its timeout.
            "2026-03-10T21:00:00Z c6 reminder_v1 \"v1 $42.00\"",
            // c4's order matched v2's wait: then v2's `third: wait 2d`.
            "2026-03-13T08:00:00Z c4 reminder_v2 \"v2 $42.00\"",
            // c1 to c3 stayed on v1: `second` then times out after 3d, then 1d.
            "2026-03-14T12:30:00Z c1 reminder_v1 \"v1 $42.00\"",
            "2026-03-14T12:30:00Z c2 reminder_v1 \"v1 $42.00\"",
            "2026-03-14T12:30:00Z c3 reminder_v1 \"v1 $42.00\"",
            // c5 kept v1's deadline (3d, not v2's 1d), then waited v2's 2d.
            "2026-03-15T10:00:00Z c5 reminder_v2 \"v2 $42.00\"",
        ]
    );
}

#[test]
fn a_deploy_arms_new_schedules_for_customers_already_known() {
    let v1 = bundle(&src(CART_V1));
    let v2 = bundle(&src(&format!(
        "{CART_V1}\nflow daily {{\n  trigger every day at 09:00\n  send hello()\n}}\n"
    )));
    let mut e = engine(&v1);
    feed(&mut e, &[identify("u1", "2026-03-02T10:00:00Z")]);
    let report = e.deploy(&v2, arena()).unwrap();
    assert_eq!(report.added.len(), 1);
    e.advance_through(nudge_runtime::millis::ms(
        nudge_runtime::decode::parse_time("2026-03-03T10:00:00Z").unwrap(),
    ));
    assert_eq!(sent(&e), ["2026-03-03T09:00:00Z u1 hello \"hello\""]);
}

/// Calls, a deploy, more calls: what a durable store replays.
fn run_with_deploy<'b>(v1: &'b Bundle, v2: &'b Bundle) -> (Engine<'b, MemorySink>, Deployed) {
    let mut e = engine(v1);
    feed(&mut e, &parked());
    let report = e.deploy(v2, arena()).unwrap();
    feed(
        &mut e,
        &[
            track(
                "c5",
                "Order Completed",
                "2026-03-11T08:00:00Z",
                r#"{"order_id":"o5"}"#,
            ),
            checkout("c2", "2026-03-11T09:00:00Z"),
            track(
                "c1",
                "Product Viewed",
                "2026-03-11T10:00:00Z",
                r#"{"product_id":"p2","price":7}"#,
            ),
        ],
    );
    e.drain();
    (e, report)
}

#[test]
fn replaying_calls_and_a_deploy_gives_the_same_results() {
    let v1 = bundle(&src(JOURNEY_V1));
    let v2 = bundle(&src(JOURNEY_V2));
    let (a, report_a) = run_with_deploy(&v1, &v2);
    let (b, report_b) = run_with_deploy(&v1, &v2);
    assert_eq!(report_a, report_b);
    let outbox = serde_json::to_string(&a.sink().outbox).unwrap();
    assert_eq!(outbox, serde_json::to_string(&b.sink().outbox).unwrap());
    assert_eq!(
        serde_json::to_string(&a.sink().records).unwrap(),
        serde_json::to_string(&b.sink().records).unwrap()
    );
    assert_eq!(a.stats(), b.stats());
    // Old and new versions both sent, and no idempotency key was used twice.
    assert!(outbox.contains("reminder_v1") && outbox.contains("reminder_v2"));
    let mut keys: Vec<&str> = a
        .sink()
        .outbox
        .iter()
        .map(|m| m.idempotency_key.as_str())
        .collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n);
    assert!(n >= 10, "{n} sends");
}
