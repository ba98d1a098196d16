//! A customer handed from one engine to another (a merge across a
//! cluster's partitions) ends where one engine holding everyone would:
//! same sends, same idempotency keys, same exits, entry rules and goals.

mod common;

use common::{arena, bundle, engine, feed};
use nudge_runtime::engine::{Engine, MemorySink};
use nudge_runtime::identity::Identity;
use nudge_runtime::record::What;

const SOURCE: &str = r#"
message reminder() {
  channel email
  subject "Your cart is waiting"
  body "Come back"
}

message hello() {
  channel email
  subject "Welcome"
  body "Hi"
}

flow cart {
  trigger checkout_started
  exit on order_completed
  wait 1h
  send reminder()
  wait 1d
  send reminder()
}

flow welcome {
  trigger signed_up
  entry once
  send hello()
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
    )
}

/// The laptop, anonymous, with an address of its own.
fn device() -> String {
    r#"{"type":"identify","anonymousId":"d1","timestamp":"2026-01-05T07:00:00Z","traits":{"email":"laptop@example.com","timezone":"UTC","consent":{"email":true}}}"#.to_string()
}

const DEVICE: &[&str] = &["d1", "email:laptop@example.com"];

fn track(event: &str, who: &str, at: &str) -> String {
    format!(r#"{{"type":"track","event":"{event}",{who},"timestamp":"{at}","properties":{{}}}}"#)
}

/// Where a line goes in the two-engine run.
#[derive(Clone, Copy, PartialEq)]
enum To {
    /// The kept customer's engine.
    A,
    /// The absorbed customer's engine.
    B,
    /// The kept customer's engine, after `B` hands over the customer with
    /// these identities (the call that joins them).
    Join(&'static [&'static str]),
}

/// Every send as `at key message`, sorted by key.
fn outbox(sinks: &[&MemorySink]) -> Vec<String> {
    let mut out: Vec<String> = sinks
        .iter()
        .flat_map(|s| s.outbox.iter())
        .map(|m| format!("{} {} {}", m.at, m.idempotency_key, m.message))
        .collect();
    out.sort_by(|a, b| a.split(' ').nth(1).cmp(&b.split(' ').nth(1)));
    out
}

fn at_of(line: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    nudge_runtime::millis::ms(
        nudge_runtime::decode::parse_time(v["timestamp"].as_str().unwrap()).unwrap(),
    )
}

/// One engine holding everyone, drained.
fn single(b: &nudge_bytecode::Bundle, lines: &[(To, String)]) -> Vec<String> {
    let mut e = engine(b);
    let all: Vec<String> = lines.iter().map(|(_, l)| l.clone()).collect();
    feed(&mut e, &all);
    e.drain();
    outbox(&[e.sink()])
}

/// Two engines, the customer handed from B to A at the joining call; both drained.
fn split(
    b: &nudge_bytecode::Bundle,
    lines: &[(To, String)],
    hand_over: bool,
) -> (Vec<String>, Engine<'static, MemorySink>) {
    let b: &'static nudge_bytecode::Bundle = Box::leak(Box::new(b.clone()));
    let (mut a_engine, mut b_engine) = (engine(b), engine(b));
    for (to, line) in lines {
        match to {
            To::A => feed(&mut a_engine, std::slice::from_ref(line)),
            To::B => feed(&mut b_engine, std::slice::from_ref(line)),
            To::Join(ids) => {
                if hand_over {
                    // The giving engine's clock reaches the joining call first.
                    b_engine.advance_before(at_of(line));
                    let ids: Vec<Identity> = ids
                        .iter()
                        .map(|s| {
                            if let Some(u) = s.strip_prefix("user:") {
                                Identity::User(u.into())
                            } else if let Some(e) = s.strip_prefix("email:") {
                                Identity::email(e)
                            } else {
                                Identity::Anonymous(s.to_string())
                            }
                        })
                        .collect();
                    let bytes = b_engine.hand_off(&ids).unwrap().expect("B holds them");
                    a_engine.take_in(&bytes, arena()).unwrap();
                }
                feed(&mut a_engine, std::slice::from_ref(line));
            }
        }
    }
    a_engine.drain();
    b_engine.drain();
    let out = outbox(&[a_engine.sink(), b_engine.sink()]);
    (out, a_engine)
}

/// A known user; the laptop, anonymous, on the other engine, starts a
/// checkout; signing in on it joins the device to the user.
fn cart_then_sign_in() -> Vec<(To, String)> {
    vec![
        (To::B, device()),
        (To::A, identify("u1", "2026-01-05T09:00:00Z")),
        (
            To::B,
            track(
                "Checkout Started",
                r#""anonymousId":"d1""#,
                "2026-01-05T10:00:00Z",
            ),
        ),
        (
            To::Join(DEVICE),
            track(
                "Signed In",
                r#""userId":"u1","anonymousId":"d1""#,
                "2026-01-05T10:20:00Z",
            ),
        ),
    ]
}

#[test]
fn a_purchase_on_one_engine_stops_a_reminder_that_lived_on_another() {
    let b = bundle(SOURCE);
    let mut lines = cart_then_sign_in();
    lines.push((
        To::A,
        track(
            "Order Completed",
            r#""userId":"u1""#,
            "2026-01-05T10:40:00Z",
        ),
    ));
    assert_eq!(single(&b, &lines), Vec::<String>::new());
    let (out, a) = split(&b, &lines, true);
    assert_eq!(out, Vec::<String>::new());
    // The instance that moved was the one that exited, on the taking engine.
    assert!(a.sink().records.iter().any(|r| matches!(
        &r.what,
        What::Exited { reason, .. } if reason == "order_completed"
    )));
    // Without the handoff the reminder goes out from the other engine.
    let (out, _) = split(&b, &lines, false);
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn a_reminder_that_moved_goes_out_once_with_its_own_key() {
    let b = bundle(SOURCE);
    let lines = cart_then_sign_in();
    let expected = single(&b, &lines);
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert_eq!(split(&b, &lines, true).0, expected);
}

#[test]
fn entry_once_and_late_timers_hold_after_the_move() {
    let b = bundle(SOURCE);
    let lines = vec![
        (To::B, device()),
        (
            To::B,
            track("Signed Up", r#""anonymousId":"d1""#, "2026-01-05T08:00:00Z"),
        ),
        (To::A, identify("u1", "2026-01-05T09:00:00Z")),
        (
            To::B,
            track(
                "Checkout Started",
                r#""anonymousId":"d1""#,
                "2026-01-05T10:00:00Z",
            ),
        ),
        // B hears nothing more after 10:00: its reminder, due at 11:00, is
        // still to fire when the join comes at 12:00.
        (
            To::Join(DEVICE),
            track(
                "Signed In",
                r#""userId":"u1","anonymousId":"d1""#,
                "2026-01-05T12:00:00Z",
            ),
        ),
        // The device's welcome was its one entry: the person does not get another.
        (
            To::A,
            track("Signed Up", r#""userId":"u1""#, "2026-01-05T12:30:00Z"),
        ),
    ];
    let expected = single(&b, &lines);
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(split(&b, &lines, true).0, expected);
}

#[test]
fn a_customer_known_to_the_taker_already_is_joined_not_doubled() {
    for frozen in [false, true] {
        a_known_customer_is_joined(frozen);
    }
}

/// A call for the device that overtook the handoff made it a customer of
/// the taking engine too: taking the state in joins the two, also when
/// the taker holds it frozen (a budget of customers in memory).
fn a_known_customer_is_joined(frozen: bool) {
    let b = bundle(SOURCE);
    let (mut a_engine, mut b_engine) = (engine(&b), engine(&b));
    feed(
        &mut b_engine,
        &[
            device(),
            track(
                "Checkout Started",
                r#""anonymousId":"d1""#,
                "2026-01-05T10:00:00Z",
            ),
        ],
    );
    feed(
        &mut a_engine,
        &[track(
            "Product Viewed",
            r#""anonymousId":"d1""#,
            "2026-01-05T10:10:00Z",
        )],
    );
    if frozen {
        assert_eq!(a_engine.freeze(0), 1, "the device, with nothing live");
    }
    let bytes = b_engine
        .hand_off(&[
            Identity::Anonymous("d1".into()),
            Identity::email("laptop@example.com"),
        ])
        .unwrap()
        .unwrap();
    a_engine.take_in(&bytes, arena()).unwrap();
    assert_eq!(a_engine.paging().customers, 1, "joined, not doubled");
    a_engine.drain();
    b_engine.drain();
    let sends: Vec<_> = a_engine
        .sink()
        .outbox
        .iter()
        .map(|m| m.idempotency_key.clone())
        .collect();
    assert_eq!(sends.len(), 2, "{sends:?}");
    assert!(b_engine.sink().outbox.is_empty());
    // Nothing is left to hand over twice.
    assert!(
        b_engine
            .hand_off(&[Identity::Anonymous("d1".into())])
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_damaged_handoff_is_refused_and_changes_nothing() {
    let b = bundle(SOURCE);
    let mut a_engine = engine(&b);
    let err = a_engine.take_in(b"\x01\x02garbage", arena()).unwrap_err();
    assert!(err.to_string().contains("cannot be read"), "{err}");
    let err = a_engine.take_in(&[9], arena()).unwrap_err();
    assert!(err.to_string().contains("version 9"), "{err}");
}

#[test]
fn an_instance_on_a_release_the_taker_lacks_runs_its_own_code_there() {
    let old = bundle(SOURCE);
    let new = bundle(&format!(
        "{}\nflow follow {{\n  trigger signed_up\n  wait 1h\n  send hello()\n}}\n",
        SOURCE
            .replace("wait 1h", "wait 2h")
            .replace("Your cart", "Still your cart")
    ));
    // The giver deployed `new` while the device's instance was in flight
    // on `old`, then started one on `new`; the taker only ever ran `new`.
    let mut b_engine = engine(&old);
    feed(
        &mut b_engine,
        &[
            device(),
            track(
                "Checkout Started",
                r#""anonymousId":"d1""#,
                "2026-01-05T10:00:00Z",
            ),
        ],
    );
    b_engine.deploy(&new, arena()).unwrap();
    feed(
        &mut b_engine,
        &[track(
            "Signed Up",
            r#""anonymousId":"d1""#,
            "2026-01-05T10:05:00Z",
        )],
    );
    let mut a_engine = engine(&new);
    feed(&mut a_engine, &[identify("u1", "2026-01-05T09:00:00Z")]);
    let bytes = b_engine
        .hand_off(&[
            Identity::Anonymous("d1".into()),
            Identity::email("laptop@example.com"),
        ])
        .unwrap()
        .unwrap();
    a_engine.take_in(&bytes, arena()).unwrap();
    feed(
        &mut a_engine,
        &[
            track(
                "Signed In",
                r#""userId":"u1","anonymousId":"d1""#,
                "2026-01-05T10:20:00Z",
            ),
            track(
                "Checkout Started",
                r#""userId":"u1""#,
                "2026-01-05T10:30:00Z",
            ),
        ],
    );
    a_engine.drain();
    let subjects: Vec<String> = a_engine
        .sink()
        .outbox
        .iter()
        .map(|m| format!("{} {}", m.at, m.content["subject"]))
        .collect();
    // The moved cart instance keeps the old code (an hour's wait, the old
    // subject), the one on the newest release runs the new code; the
    // person's second checkout starts nothing while the cart instance lives
    // (one live instance per customer).
    assert_eq!(
        subjects,
        [
            "2026-01-05T11:00:00Z \"Your cart is waiting\"".to_string(),
            "2026-01-05T11:05:00Z \"Welcome\"".to_string(),
            "2026-01-06T11:00:00Z \"Your cart is waiting\"".to_string(),
        ]
        .to_vec(),
        "{subjects:?}"
    );
}
