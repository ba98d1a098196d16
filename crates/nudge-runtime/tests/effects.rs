//! The engine as a state machine: calls and ticks in, effects out as data,
//! and a send a host could not hand over taken back exactly.

mod common;

use common::bundle;
use nudge_bytecode::Channel;
use nudge_channels::Outgoing;
use nudge_runtime::engine::{Config, Effect, Engine, Machine, Sink};
use nudge_runtime::ingest::{self, Decoded};
use nudge_runtime::record::{Membership, Outcome, Record, SendReason, What};
use serde_json::json;

const PROJECT: &str = r#"
message promo() {
  channel email
  subject "A deal"
  body "Just for you"
}
policy {
  cap marketing 2 per 1d
}
flow f {
  trigger checkout_started
  entry always
  send promo()
}
"#;

fn lines() -> Vec<String> {
    let mut out = vec![
        json!({"type": "identify", "userId": "u1", "timestamp": "2026-01-05T09:00:00Z",
               "traits": {"email": "u1@example.com", "consent": {"email": true}}})
        .to_string(),
    ];
    for hour in ["10", "11", "12", "13"] {
        out.push(
            json!({"type": "track", "event": "Checkout Started", "userId": "u1",
                   "timestamp": format!("2026-01-05T{hour}:00:00Z"), "properties": {"value": 20}})
            .to_string(),
        );
    }
    out
}

/// The decisions in the records, as `outcome reason` strings.
fn decisions(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.what {
            What::Send {
                outcome, reason, ..
            } => Some(format!(
                "{} {}",
                outcome.name(),
                reason.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn the_machine_returns_its_effects_as_data_in_the_order_they_happened() {
    let b = bundle(PROJECT);
    let run = || {
        let mut machine = Machine::new(&b, Config::default(), i64::MIN);
        let mut all = Vec::new();
        for line in lines() {
            feed(&mut machine, &line);
            all.push(machine.take_effects());
        }
        all
    };
    let effects = run();
    // Deterministic: the same input gives the same effects, value for value.
    assert_eq!(effects, run());
    // The identify changes nothing a flow sees; each checkout enters the
    // flow, then sends: the send intent comes before its record.
    assert!(effects[0].is_empty(), "{:?}", effects[0]);
    let kinds = |es: &[Effect]| -> Vec<String> {
        es.iter()
            .map(|e| match e {
                Effect::Send { message, .. } => format!("send {}", message.message),
                Effect::Record(r) => match &r.what {
                    What::Send { outcome, .. } => format!("record {}", outcome.name()),
                    What::Entered { .. } => "record entered".into(),
                    What::Completed { .. } => "record completed".into(),
                    other => format!("record {other:?}"),
                },
                Effect::Membership(m) => format!("membership {}", m.audience),
            })
            .collect()
    };
    assert_eq!(
        kinds(&effects[1]),
        [
            "record entered",
            "send promo",
            "record sent",
            "record completed"
        ]
    );
    // The third checkout is over the cap of two a day: no send intent.
    assert_eq!(
        kinds(&effects[3]),
        ["record entered", "record capped", "record completed"]
    );
    // Effects are handed out once.
    let mut machine = Machine::new(&b, Config::default(), i64::MIN);
    for line in &lines()[..2] {
        feed(&mut machine, line);
    }
    assert!(!machine.take_effects().is_empty());
    assert!(machine.take_effects().is_empty());
}

/// A sink whose first delivery fails.
#[derive(Default)]
struct FirstFails {
    tried: usize,
    delivered: Vec<Outgoing>,
    records: Vec<Record>,
}

impl Sink for FirstFails {
    fn deliver(&mut self, _: Channel, message: &Outgoing) -> Result<(), String> {
        self.tried += 1;
        if self.tried == 1 {
            return Err("connection refused".into());
        }
        self.delivered.push(message.clone());
        Ok(())
    }
    fn record(&mut self, record: Record) {
        self.records.push(record);
    }
    fn membership(&mut self, _: Membership) {}
}

#[test]
fn a_send_the_host_could_not_hand_over_is_taken_back_and_recorded_as_failed() {
    let b = bundle(PROJECT);
    let mut engine = Engine::new(&b, FirstFails::default(), Config::default(), i64::MIN);
    for line in lines() {
        ingest::apply_line_now(&mut engine, &line).unwrap();
    }
    // The failed send does not count toward the cap of two a day: the
    // second and third checkouts are sent, the fourth is capped.
    let stats = engine.stats();
    let sink = engine.into_sink();
    assert_eq!(
        decisions(&sink.records),
        [
            "failed connection refused",
            "sent -",
            "sent -",
            "capped cap marketing 2 per 1d"
        ]
    );
    let failed = sink
        .records
        .iter()
        .find_map(|r| match &r.what {
            What::Send {
                outcome: Outcome::Failed,
                code,
                step,
                ..
            } => Some((*code, *step)),
            _ => None,
        })
        .unwrap();
    // The record keeps its place in the flow and gets the failure's code.
    assert_eq!(failed, (Some(SendReason::DeliveryFailed), 0));
    assert_eq!(sink.delivered.len(), 2);
    let f = &stats.flows["f"];
    assert_eq!(f.sends.get("email"), Some(&2));
    assert_eq!(f.decisions.get("failed: delivery"), Some(&1));
    assert_eq!(f.decisions.get("sent"), Some(&2));
    assert_eq!(f.by_code.get(&("sent", "")), Some(&2));
    assert_eq!(f.by_code.get(&("failed", "delivery_failed")), Some(&1));
}

#[test]
fn only_a_send_of_the_current_step_can_be_taken_back() {
    let b = bundle(PROJECT);
    let mut machine = Machine::new(&b, Config::default(), i64::MIN);
    let lines = lines();
    for line in &lines[..2] {
        feed(&mut machine, line);
    }
    let key = machine
        .take_effects()
        .into_iter()
        .find_map(|e| match e {
            Effect::Send { message, .. } => Some(message.idempotency_key),
            _ => None,
        })
        .unwrap();
    assert!(!machine.delivery_failed("no/such/key"));
    // The next input settles the send: it can no longer be taken back.
    feed(&mut machine, &lines[2]);
    assert!(!machine.delivery_failed(&key));
    assert_eq!(machine.stats().flows["f"].sends.get("email"), Some(&2));
}

/// Applies one line at the machine's clock, read by the decoder every host uses.
fn feed(machine: &mut Machine<'_>, line: &str) {
    let mut parts = match machine.decoder().decode(line) {
        Decoded::Call(parts) => parts,
        Decoded::Bad(r) => panic!("{line}: {r}"),
    };
    let (call, notes) = parts.split();
    machine.apply_noted(call, notes).unwrap();
}
