//! The send pipeline: properties that must hold for any event stream, one
//! example per decision reason, daylight-saving deferrals and flow priority.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use common::{bundle, replay, sends};
use nudge_runtime::engine::MemorySink;
use nudge_runtime::record::{Outcome, What};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Shared input helpers

fn identify(id: &str, at: &str, traits: Value) -> String {
    json!({"type": "identify", "userId": id, "timestamp": at, "traits": traits}).to_string()
}

fn track(id: &str, event: &str, at: &str, properties: Value) -> String {
    json!({"type": "track", "event": event, "userId": id, "timestamp": at, "properties": properties})
        .to_string()
}

fn instant(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp()
}

fn rfc3339(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One send decision, flattened for whole-value assertions.
#[derive(Clone, Debug, PartialEq)]
struct Decision {
    at: String,
    flow: String,
    message: String,
    outcome: Outcome,
    reason: Option<String>,
    until: Option<String>,
    retry_at: Option<String>,
    zone: Option<String>,
}

fn decisions(sink: &MemorySink) -> Vec<Decision> {
    sink.records
        .iter()
        .filter_map(|r| match &r.what {
            What::Send {
                flow,
                message,
                outcome,
                reason,
                until,
                retry_at,
                zone,
                ..
            } => Some(Decision {
                at: r.at.clone(),
                flow: flow.clone(),
                message: message.clone(),
                outcome: *outcome,
                reason: reason.clone(),
                until: until.clone(),
                retry_at: retry_at.clone(),
                zone: zone.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// A decision that is not a deferral, in the recipient's zone.
fn decided(
    at: &str,
    flow: &str,
    message: &str,
    outcome: Outcome,
    reason: Option<&str>,
    zone: &str,
) -> Decision {
    Decision {
        at: at.into(),
        flow: flow.into(),
        message: message.into(),
        outcome,
        reason: reason.map(Into::into),
        until: None,
        retry_at: None,
        zone: Some(zone.into()),
    }
}

/// A deferral; with `release_spread: 0` the retry is the holding rule's end.
fn deferred(
    at: &str,
    flow: &str,
    message: &str,
    reason: &str,
    until: &str,
    zone: &str,
) -> Decision {
    Decision {
        at: at.into(),
        flow: flow.into(),
        message: message.into(),
        outcome: Outcome::Deferred,
        reason: Some(reason.into()),
        until: Some(until.into()),
        retry_at: Some(until.into()),
        zone: Some(zone.into()),
    }
}

// ---------------------------------------------------------------------------
// Properties over random event streams

const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
];

/// Marketing email and SMS from two flows with waits, a flow cap, a deferring
/// flow cap, and transactional messages that the marketing rules must not count.
const PROJECT: &str = r#"
message cart_email() {
  channel email
  subject "Your cart is waiting"
  body "Come back"
}
message cart_sms() {
  channel sms
  text "Your cart is saved. Reply STOP to opt out."
}
message thanks_email() {
  channel email
  subject "Thanks"
  body "Here is something for next time"
}
message thanks_sms() {
  channel sms
  text "Thanks for your order. Reply STOP to opt out."
}
message receipt() {
  channel email
  purpose transactional
  subject "Your receipt"
  body "Paid"
}
message shipped() {
  channel sms
  purpose transactional
  text "Your order shipped"
}

policy {
  timezone "UTC"
  quiet hours sms 21:00 to 08:00
  cap marketing 2 per 1d
}

flow cart {
  trigger checkout_started
  exit on order_completed
  cap email 1 per 16h

  wait 30m
  send cart_email()
  wait 2h
  send cart_sms()
  wait 20h
  send cart_email()
  send cart_sms()
}

flow thanks {
  trigger order_completed
  entry always
  priority 5
  cap sms 1 per 12h then defer

  send receipt()
  wait 3h
  send thanks_sms()
  send shipped()
  wait 1h
  send thanks_email()
}
"#;

const TRANSACTIONAL: [&str; 2] = ["receipt", "shipped"];

/// Events start after the first identify, over ten days across the US
/// spring-forward change on 2026-03-08.
const BASE: &str = "2026-03-03T00:00:00Z";
const SPAN_MINUTES: u32 = 10 * 24 * 60;

#[derive(Clone, Copy, Debug)]
enum Ch {
    Email,
    Sms,
}

impl Ch {
    fn name(self) -> &'static str {
        match self {
            Ch::Email => "email",
            Ch::Sms => "sms",
        }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Identify {
        email: Option<bool>,
        sms: Option<bool>,
        zone: Option<usize>,
    },
    Subscribed(Ch),
    Unsubscribed(Ch),
    Stop,
    Checkout,
    Order,
}

#[derive(Clone, Debug)]
struct Ev {
    who: usize,
    minute: u32,
    kind: Kind,
}

#[derive(Clone, Debug)]
struct Start {
    zone: usize,
    email: Option<bool>,
    sms: Option<bool>,
    phone: bool,
}

#[derive(Clone, Debug)]
struct Stream {
    customers: Vec<Start>,
    events: Vec<Ev>,
}

fn ch() -> impl Strategy<Value = Ch> {
    prop_oneof![Just(Ch::Email), Just(Ch::Sms)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => (any::<Option<bool>>(), any::<Option<bool>>(), proptest::option::weighted(0.3, 0..ZONES.len()))
            .prop_map(|(email, sms, zone)| Kind::Identify { email, sms, zone }),
        2 => ch().prop_map(Kind::Subscribed),
        1 => ch().prop_map(Kind::Unsubscribed),
        1 => Just(Kind::Stop),
        6 => Just(Kind::Checkout),
        3 => Just(Kind::Order),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    let start = (
        0..ZONES.len(),
        any::<Option<bool>>(),
        any::<Option<bool>>(),
        proptest::bool::weighted(0.85),
    )
        .prop_map(|(zone, email, sms, phone)| Start {
            zone,
            email,
            sms,
            phone,
        });
    proptest::collection::vec(start, 1..=4)
        .prop_flat_map(|customers| {
            let n = customers.len();
            let ev = (0..n, 0..SPAN_MINUTES, kind()).prop_map(|(who, minute, kind)| Ev {
                who,
                minute,
                kind,
            });
            (
                Just(customers),
                proptest::collection::vec(ev, 0..40).prop_map(|mut events| {
                    events.sort_by_key(|e| e.minute);
                    events
                }),
            )
        })
        .prop_map(|(customers, events)| Stream { customers, events })
}

fn consent_json(email: Option<bool>, sms: Option<bool>) -> Option<Value> {
    let mut c = serde_json::Map::new();
    if let Some(e) = email {
        c.insert("email".into(), e.into());
    }
    if let Some(s) = sms {
        c.insert("sms".into(), s.into());
    }
    (!c.is_empty()).then_some(Value::Object(c))
}

fn customer_id(i: usize) -> String {
    format!("c{i}")
}

fn event_time(minute: u32) -> i64 {
    instant(BASE) + 60 + i64::from(minute) * 60
}

impl Stream {
    /// The stream as replay lines, in time order (ties keep generation order).
    fn lines(&self) -> String {
        let mut out = Vec::new();
        for (i, c) in self.customers.iter().enumerate() {
            let id = customer_id(i);
            let mut traits = json!({
                "email": format!("{id}@example.com"),
                "timezone": ZONES[c.zone],
            });
            if c.phone {
                traits["phone"] = format!("+1555010000{i}").into();
            }
            if let Some(consent) = consent_json(c.email, c.sms) {
                traits["consent"] = consent;
            }
            out.push(identify(&id, BASE, traits));
        }
        for (n, e) in self.events.iter().enumerate() {
            let id = customer_id(e.who);
            let at = rfc3339(event_time(e.minute));
            out.push(match &e.kind {
                Kind::Identify { email, sms, zone } => {
                    let mut traits = json!({});
                    if let Some(consent) = consent_json(*email, *sms) {
                        traits["consent"] = consent;
                    }
                    if let Some(z) = zone {
                        traits["timezone"] = ZONES[*z].into();
                    }
                    identify(&id, &at, traits)
                }
                Kind::Subscribed(c) => track(&id, "Subscribed", &at, json!({"channel": c.name()})),
                Kind::Unsubscribed(c) => {
                    track(&id, "Unsubscribed", &at, json!({"channel": c.name()}))
                }
                Kind::Stop => track(&id, "SMS Received", &at, json!({"text": "STOP"})),
                Kind::Checkout => track(&id, "Checkout Started", &at, json!({"value": 20})),
                Kind::Order => track(
                    &id,
                    "Order Completed",
                    &at,
                    json!({"order_id": format!("o{n}"), "total": 20}),
                ),
            });
        }
        out.join("\n")
    }

    /// What the customer had told us by `at`: calls at `at` itself are applied
    /// before the timers due then, and every send in `PROJECT` comes from a timer.
    fn state(&self, who: usize, at: i64) -> State {
        let c = &self.customers[who];
        let mut s = State {
            email: c.email,
            sms: c.sms,
            zone: c.zone,
            stopped: false,
        };
        for e in self
            .events
            .iter()
            .filter(|e| e.who == who && event_time(e.minute) <= at)
        {
            match &e.kind {
                Kind::Identify { email, sms, zone } => {
                    s.email = email.or(s.email);
                    s.sms = sms.or(s.sms);
                    s.zone = zone.unwrap_or(s.zone);
                    // An explicit `consent.sms: true` lifts a STOP.
                    s.stopped &= *sms != Some(true);
                }
                Kind::Subscribed(Ch::Email) => s.email = Some(true),
                Kind::Subscribed(Ch::Sms) => {
                    s.sms = Some(true);
                    s.stopped = false;
                }
                Kind::Unsubscribed(Ch::Email) => s.email = Some(false),
                Kind::Unsubscribed(Ch::Sms) => s.sms = Some(false),
                Kind::Stop => {
                    s.sms = Some(false);
                    s.stopped = true;
                }
                Kind::Checkout | Kind::Order => {}
            }
        }
        s
    }
}

struct State {
    email: Option<bool>,
    sms: Option<bool>,
    zone: usize,
    stopped: bool,
}

fn who(customer: &str) -> usize {
    customer
        .strip_prefix('c')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected customer {customer}"))
}

fn local_hour_minute(at: i64, zone: &str) -> (u32, u32) {
    let tz: Tz = zone.parse().expect("a zone");
    let local = DateTime::<Utc>::from_timestamp(at, 0)
        .expect("in range")
        .with_timezone(&tz);
    (local.hour(), local.minute())
}

fn in_quiet_hours(at: i64, zone: &str) -> bool {
    let (h, _) = local_hour_minute(at, zone);
    !(8..21).contains(&h)
}

/// Runs `check` over random streams replayed through `PROJECT`.
fn check_streams(cases: u32, check: impl Fn(&Stream, &MemorySink) -> Result<(), TestCaseError>) {
    let b = bundle(PROJECT);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let seen = RefCell::new(BTreeSet::new());
    let result = runner.run(&stream(), |s| {
        let (sink, dead) = replay(&b, &s.lines());
        prop_assert!(dead.is_empty(), "dead letters: {dead:?}");
        for d in decisions(&sink) {
            seen.borrow_mut().insert((d.outcome, d.reason));
        }
        check(&s, &sink)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The properties are only as good as the decisions the streams reach.
    let seen = seen.into_inner();
    for (outcome, reason) in [
        (Outcome::Sent, None),
        (Outcome::Deferred, Some("quiet_hours")),
        (Outcome::Deferred, Some("flow cap sms 1 per 12h")),
        (Outcome::Capped, Some("cap marketing 2 per 1d")),
        (Outcome::Capped, Some("flow cap email 1 per 16h")),
        (Outcome::Blocked, Some("consent")),
        (Outcome::Blocked, Some("opted_out")),
        (Outcome::Blocked, Some("no_address")),
    ] {
        assert!(
            seen.contains(&(outcome, reason.map(String::from))),
            "no case reached {outcome:?} {reason:?}; reached {seen:?}"
        );
    }
}

#[test]
fn marketing_goes_only_to_customers_consenting_at_the_moment_of_sending() {
    check_streams(300, |s, sink| {
        for m in &sink.outbox {
            let at = instant(&m.at);
            let state = s.state(who(&m.customer), at);
            // A STOP is a hard opt-out: nothing on SMS afterwards, whatever its purpose.
            prop_assert!(
                !(m.channel == "sms" && state.stopped),
                "SMS {} to {} at {} after STOP",
                m.message,
                m.customer,
                m.at
            );
            if TRANSACTIONAL.contains(&m.message.as_str()) {
                continue;
            }
            let consent = match m.channel.as_str() {
                "email" => state.email,
                "sms" => state.sms,
                other => panic!("unexpected channel {other}"),
            };
            prop_assert_eq!(
                consent,
                Some(true),
                "{} to {} at {} without {} consent",
                &m.message,
                &m.customer,
                &m.at,
                &m.channel
            );
        }
        Ok(())
    });
}

#[test]
fn marketing_sms_never_goes_out_in_the_recipients_quiet_hours() {
    check_streams(300, |s, sink| {
        for m in &sink.outbox {
            if m.channel != "sms" || TRANSACTIONAL.contains(&m.message.as_str()) {
                continue;
            }
            let at = instant(&m.at);
            let zone = ZONES[s.state(who(&m.customer), at).zone];
            prop_assert!(
                !in_quiet_hours(at, zone),
                "{} to {} at {} is {:?} in {}",
                &m.message,
                &m.customer,
                &m.at,
                local_hour_minute(at, zone),
                zone
            );
        }
        // A quiet-hours deferral names the recipient's zone and ends at 08:00 there.
        for r in &sink.records {
            if let What::Send {
                reason: Some(reason),
                until,
                zone,
                ..
            } = &r.what
                && reason == "quiet_hours"
            {
                let expected = ZONES[s.state(who(&r.customer), instant(&r.at)).zone];
                prop_assert_eq!(zone.as_deref(), Some(expected));
                let until = until.as_deref().expect("a deferral has an end");
                prop_assert_eq!(local_hour_minute(instant(until), expected), (8, 0));
                prop_assert!(instant(until) > instant(&r.at));
            }
        }
        Ok(())
    });
}

#[test]
fn no_day_holds_more_than_two_marketing_sends_per_customer() {
    check_streams(250, |_, sink| {
        let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for m in &sink.outbox {
            if !TRANSACTIONAL.contains(&m.message.as_str()) {
                times.entry(&m.customer).or_default().push(instant(&m.at));
            }
        }
        for (customer, mut t) in times {
            t.sort_unstable();
            // Three sends inside any half-open day means the first and third are under a day apart.
            for w in t.windows(3) {
                prop_assert!(
                    w[2] - w[0] >= 86_400,
                    "{} got 3 marketing sends within a day: {:?}",
                    customer,
                    w.iter().map(|&x| rfc3339(x)).collect::<Vec<_>>()
                );
            }
        }
        Ok(())
    });
}

#[test]
fn every_idempotency_key_is_sent_once_and_matches_a_sent_record() {
    check_streams(250, |_, sink| {
        let mut keys = BTreeSet::new();
        for m in &sink.outbox {
            prop_assert!(
                keys.insert(m.idempotency_key.as_str()),
                "key {} sent twice",
                &m.idempotency_key
            );
        }
        let recorded: BTreeSet<(&str, &str)> = sink
            .records
            .iter()
            .filter_map(|r| match &r.what {
                What::Send {
                    outcome: Outcome::Sent,
                    key,
                    ..
                } => Some((r.at.as_str(), key.as_str())),
                _ => None,
            })
            .collect();
        let delivered: BTreeSet<(&str, &str)> = sink
            .outbox
            .iter()
            .map(|m| (m.at.as_str(), m.idempotency_key.as_str()))
            .collect();
        prop_assert_eq!(recorded, delivered);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// One example per decision reason

const MESSAGES: &str = r#"
message promo() {
  channel email
  subject "A deal"
  body "Just for you"
}
message promo_sms() {
  channel sms
  text "A deal. Reply STOP to opt out."
}
message notice() {
  channel sms
  purpose transactional
  text "Your order shipped"
}
message receipt() {
  channel email
  purpose transactional
  subject "Your receipt"
  body "Paid"
}
"#;

const QUIET: &str = r#"
policy {
  timezone "UTC"
  quiet hours sms 21:00 to 08:00
}
"#;

/// A customer with an address, a phone and a zone; `consent` is the identify
/// trait as given.
fn customer(id: &str, at: &str, zone: &str, consent: Value) -> String {
    identify(
        id,
        at,
        json!({
            "email": format!("{id}@example.com"),
            "phone": "+15550100001",
            "timezone": zone,
            "consent": consent,
        }),
    )
}

fn checkout(id: &str, at: &str) -> String {
    track(id, "Checkout Started", at, json!({"value": 20}))
}

fn run(source: &str, input: &[String]) -> MemorySink {
    let b = bundle(source);
    let (sink, dead) = replay(&b, &input.join("\n"));
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    sink
}

#[test]
fn a_consenting_customer_is_sent_the_message() {
    let sink = run(
        &format!("{MESSAGES}flow f {{\n trigger checkout_started\n send promo()\n}}"),
        &[
            customer(
                "u1",
                "2026-01-05T09:00:00Z",
                "Europe/Berlin",
                json!({"email": true}),
            ),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        vec![decided(
            "2026-01-05T10:00:00Z",
            "f",
            "promo",
            Outcome::Sent,
            None,
            "Europe/Berlin"
        )]
    );
    assert_eq!(sends(&sink), vec!["2026-01-05T10:00:00Z u1 promo"]);
    assert_eq!(sink.outbox[0].to, "u1@example.com");
}

#[test]
fn an_sms_at_night_is_deferred_to_the_end_of_quiet_hours_in_the_recipients_zone() {
    let sink = run(
        &format!("{MESSAGES}{QUIET}flow f {{\n trigger checkout_started\n send promo_sms()\n}}"),
        &[
            customer(
                "u1",
                "2026-01-05T09:00:00Z",
                "Asia/Tokyo",
                json!({"sms": true}),
            ),
            // 22:30 in Tokyo (UTC+9); 08:00 there is 23:00 UTC the same day.
            checkout("u1", "2026-01-05T13:30:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        vec![
            deferred(
                "2026-01-05T13:30:00Z",
                "f",
                "promo_sms",
                "quiet_hours",
                "2026-01-05T23:00:00Z",
                "Asia/Tokyo"
            ),
            decided(
                "2026-01-05T23:00:00Z",
                "f",
                "promo_sms",
                Outcome::Sent,
                None,
                "Asia/Tokyo"
            ),
        ]
    );
    assert_eq!(sends(&sink), vec!["2026-01-05T23:00:00Z u1 promo_sms"]);
}

#[test]
fn a_full_policy_cap_skips_the_send() {
    let sink = run(
        &format!(
            "{MESSAGES}policy {{\n cap marketing 2 per 1d\n}}\nflow f {{\n trigger checkout_started\n entry always\n send promo()\n}}"
        ),
        &[
            customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
            checkout("u1", "2026-01-05T10:00:00Z"),
            checkout("u1", "2026-01-05T11:00:00Z"),
            checkout("u1", "2026-01-05T12:00:00Z"),
            // The first send has left the window by now.
            checkout("u1", "2026-01-06T10:00:00Z"),
        ],
    );
    let d = decisions(&sink);
    assert_eq!(
        d[2],
        decided(
            "2026-01-05T12:00:00Z",
            "f",
            "promo",
            Outcome::Capped,
            Some("cap marketing 2 per 1d"),
            "UTC"
        )
    );
    assert_eq!(
        sends(&sink),
        vec![
            "2026-01-05T10:00:00Z u1 promo",
            "2026-01-05T11:00:00Z u1 promo",
            "2026-01-06T10:00:00Z u1 promo",
        ]
    );
}

#[test]
fn a_full_flow_cap_skips_the_send() {
    let sink = run(
        &format!(
            "{MESSAGES}flow f {{\n trigger checkout_started\n entry always\n cap email 1 per 16h\n send promo()\n}}"
        ),
        &[
            customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
            checkout("u1", "2026-01-05T10:00:00Z"),
            checkout("u1", "2026-01-05T11:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        vec![
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                "promo",
                Outcome::Sent,
                None,
                "UTC"
            ),
            decided(
                "2026-01-05T11:00:00Z",
                "f",
                "promo",
                Outcome::Capped,
                Some("flow cap email 1 per 16h"),
                "UTC"
            ),
        ]
    );
}

#[test]
fn a_deferring_cap_holds_the_send_until_the_oldest_send_leaves_the_window() {
    let sink = run(
        &format!(
            "{MESSAGES}flow f {{\n trigger checkout_started\n entry always\n cap email 1 per 16h then defer\n send promo()\n}}"
        ),
        &[
            customer(
                "u1",
                "2026-01-05T09:00:00Z",
                "Europe/Berlin",
                json!({"email": true}),
            ),
            checkout("u1", "2026-01-05T10:00:00Z"),
            checkout("u1", "2026-01-05T11:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        vec![
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                "promo",
                Outcome::Sent,
                None,
                "Europe/Berlin"
            ),
            deferred(
                "2026-01-05T11:00:00Z",
                "f",
                "promo",
                "flow cap email 1 per 16h",
                "2026-01-06T02:00:00Z",
                "Europe/Berlin"
            ),
            decided(
                "2026-01-06T02:00:00Z",
                "f",
                "promo",
                Outcome::Sent,
                None,
                "Europe/Berlin"
            ),
        ]
    );
}

/// The one decision of a flow that sends `message` on checkout.
fn single_decision(extra: &str, message: &str, before: &[String]) -> Decision {
    let mut input = before.to_vec();
    input.push(checkout("u1", "2026-01-05T10:00:00Z"));
    let sink = run(
        &format!(
            "{MESSAGES}{QUIET}flow f {{\n trigger checkout_started\n{extra}\n send {message}()\n}}"
        ),
        &input,
    );
    assert!(sink.outbox.is_empty(), "{:?}", sends(&sink));
    let d = decisions(&sink);
    assert_eq!(d.len(), 1, "{d:?}");
    d.into_iter().next().expect("one")
}

#[test]
fn marketing_without_consent_is_blocked() {
    // Consent refused for email, never given for SMS: both count as no.
    let before = [customer(
        "u1",
        "2026-01-05T09:00:00Z",
        "UTC",
        json!({"email": false}),
    )];
    for message in ["promo", "promo_sms"] {
        assert_eq!(
            single_decision("", message, &before),
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                message,
                Outcome::Blocked,
                Some("consent"),
                "UTC"
            )
        );
    }
}

#[test]
fn a_send_without_an_address_is_blocked() {
    let before = [identify(
        "u1",
        "2026-01-05T09:00:00Z",
        json!({"timezone": "UTC", "consent": {"email": true, "sms": true}}),
    )];
    for message in ["promo", "promo_sms"] {
        assert_eq!(
            single_decision("", message, &before),
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                message,
                Outcome::Blocked,
                Some("no_address"),
                "UTC"
            )
        );
    }
}

#[test]
fn a_hard_bounce_makes_the_address_undeliverable() {
    let before = [
        customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
        track(
            "u1",
            "Message Bounced",
            "2026-01-05T09:30:00Z",
            json!({"channel": "email", "kind": "hard"}),
        ),
    ];
    // Transactional mail cannot reach a dead address either.
    for message in ["promo", "receipt"] {
        assert_eq!(
            single_decision("", message, &before),
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                message,
                Outcome::Blocked,
                Some("undeliverable"),
                "UTC"
            )
        );
    }
}

#[test]
fn an_sms_stop_blocks_marketing_and_transactional_sms() {
    let before = [
        customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"sms": true})),
        track(
            "u1",
            "SMS Received",
            "2026-01-05T09:30:00Z",
            json!({"text": "STOP"}),
        ),
    ];
    for message in ["promo_sms", "notice"] {
        assert_eq!(
            single_decision("", message, &before),
            decided(
                "2026-01-05T10:00:00Z",
                "f",
                message,
                Outcome::Blocked,
                Some("opted_out"),
                "UTC"
            )
        );
    }
}

#[test]
fn a_holding_suppress_if_suppresses_the_send() {
    let before = [
        customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
        track(
            "u1",
            "Order Completed",
            "2026-01-05T09:30:00Z",
            json!({"order_id": "o1", "total": 10}),
        ),
    ];
    assert_eq!(
        single_decision(" suppress if profile.orders_count > 0", "promo", &before),
        decided(
            "2026-01-05T10:00:00Z",
            "f",
            "promo",
            Outcome::Suppressed,
            Some("suppress_if"),
            "UTC"
        )
    );
}

#[test]
fn a_customer_in_a_full_holdout_is_held_out() {
    let before = [customer(
        "u1",
        "2026-01-05T09:00:00Z",
        "UTC",
        json!({"email": true}),
    )];
    assert_eq!(
        single_decision(" holdout 100%", "promo", &before),
        decided(
            "2026-01-05T10:00:00Z",
            "f",
            "promo",
            Outcome::HeldOut,
            Some("holdout"),
            "UTC"
        )
    );
}

#[test]
fn transactional_messages_ignore_consent_caps_and_quiet_hours() {
    let sink = run(
        &format!(
            "{MESSAGES}policy {{\n timezone \"UTC\"\n quiet hours 21:00 to 08:00\n cap marketing 1 per 1d\n}}\n\
             flow f {{\n trigger checkout_started\n send notice()\n send receipt()\n send promo()\n}}"
        ),
        &[
            // No marketing consent at all.
            customer("u1", "2026-01-05T09:00:00Z", "America/New_York", json!({})),
            // 22:30 in New York.
            checkout("u1", "2026-01-06T03:30:00Z"),
        ],
    );
    let zone = "America/New_York";
    assert_eq!(
        decisions(&sink),
        vec![
            decided(
                "2026-01-06T03:30:00Z",
                "f",
                "notice",
                Outcome::Sent,
                None,
                zone
            ),
            decided(
                "2026-01-06T03:30:00Z",
                "f",
                "receipt",
                Outcome::Sent,
                None,
                zone
            ),
            decided(
                "2026-01-06T03:30:00Z",
                "f",
                "promo",
                Outcome::Blocked,
                Some("consent"),
                zone
            ),
        ]
    );
}

#[test]
fn transactional_sends_neither_count_toward_nor_are_stopped_by_a_full_cap() {
    let sink = run(
        &format!(
            "{MESSAGES}policy {{\n cap marketing 1 per 1d\n}}\n\
             flow f {{\n trigger checkout_started\n send receipt()\n send promo()\n send receipt()\n send promo()\n}}"
        ),
        &[
            customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    let outcomes: Vec<(String, Outcome)> = decisions(&sink)
        .into_iter()
        .map(|d| (d.message, d.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("receipt".into(), Outcome::Sent),
            ("promo".into(), Outcome::Sent),
            ("receipt".into(), Outcome::Sent),
            ("promo".into(), Outcome::Capped),
        ]
    );
}

// ---------------------------------------------------------------------------
// Daylight saving

fn new_york_sms_at(at: &str) -> Vec<Decision> {
    let sink = run(
        &format!("{MESSAGES}{QUIET}flow f {{\n trigger checkout_started\n send promo_sms()\n}}"),
        &[
            customer(
                "u1",
                "2026-03-01T09:00:00Z",
                "America/New_York",
                json!({"sms": true}),
            ),
            checkout("u1", at),
        ],
    );
    decisions(&sink)
}

#[test]
fn quiet_hours_across_spring_forward_end_at_eight_daylight_time() {
    // 22:30 EST on 7 March; the clocks jump that night, so 08:00 is EDT (UTC-4).
    let zone = "America/New_York";
    assert_eq!(
        new_york_sms_at("2026-03-08T03:30:00Z"),
        vec![
            deferred(
                "2026-03-08T03:30:00Z",
                "f",
                "promo_sms",
                "quiet_hours",
                "2026-03-08T12:00:00Z",
                zone
            ),
            decided(
                "2026-03-08T12:00:00Z",
                "f",
                "promo_sms",
                Outcome::Sent,
                None,
                zone
            ),
        ]
    );
}

#[test]
fn quiet_hours_across_fall_back_end_at_eight_standard_time() {
    // 22:30 EDT on 31 October; the clocks fall back that night, so 08:00 is EST (UTC-5).
    let zone = "America/New_York";
    assert_eq!(
        new_york_sms_at("2026-11-01T02:30:00Z"),
        vec![
            deferred(
                "2026-11-01T02:30:00Z",
                "f",
                "promo_sms",
                "quiet_hours",
                "2026-11-01T13:00:00Z",
                zone
            ),
            decided(
                "2026-11-01T13:00:00Z",
                "f",
                "promo_sms",
                Outcome::Sent,
                None,
                zone
            ),
        ]
    );
}

// ---------------------------------------------------------------------------
// Priority

/// Two flows on the same trigger; `second` is declared last but has the
/// higher priority, so declaration order cannot explain a win.
fn priority_run(steps: &str) -> Vec<(String, Outcome, Option<String>)> {
    let sink = run(
        &format!(
            "{MESSAGES}policy {{\n cap marketing 1 per 1d\n}}\n\
             flow first {{\n trigger checkout_started\n{steps}\n send promo()\n}}\n\
             flow second {{\n trigger checkout_started\n priority 10\n{steps}\n send promo()\n}}"
        ),
        &[
            customer("u1", "2026-01-05T09:00:00Z", "UTC", json!({"email": true})),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    decisions(&sink)
        .into_iter()
        .map(|d| (d.flow, d.outcome, d.reason))
        .collect()
}

#[test]
fn the_higher_priority_flow_gets_the_only_place_under_a_cap() {
    let expected = vec![
        ("second".to_string(), Outcome::Sent, None),
        (
            "first".to_string(),
            Outcome::Capped,
            Some("cap marketing 1 per 1d".to_string()),
        ),
    ];
    // Sending as the trigger arrives, and after waits that end at the same second.
    assert_eq!(priority_run(""), expected);
    assert_eq!(priority_run(" wait 1h"), expected);
}
