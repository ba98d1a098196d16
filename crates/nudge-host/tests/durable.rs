//! The durable driver against a real (in-memory) store: deliveries, and
//! settled sends with their records.

use nudge_channels::Outgoing;
use nudge_store::{Batch, Intent, Mark, NewCall, Store};

fn message(key: &str) -> Outgoing {
    Outgoing {
        at: "2026-01-05T00:00:00Z".into(),
        flow: "f".into(),
        flow_version: "v".into(),
        message: "m".into(),
        channel: "email".into(),
        customer: "c".into(),
        to: "c@example.com".into(),
        idempotency_key: key.into(),
        content: Default::default(),
        purpose: Default::default(),
    }
}

#[test]
fn deliveries_report_unknown_apart_from_failed() {
    use nudge_channels::{Delivery, DeliveryError, Plugin, Receipt};
    use nudge_host::durable::{Report, Router, deliver};

    /// Answers by the message's address.
    struct Scripted;
    impl Plugin for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
            match msg.to.as_str() {
                "ok" => Ok(Receipt::first_try()),
                "timeout" => Err(DeliveryError::unknown(1, "no answer within 10s")),
                _ => Err(DeliveryError::permanent(1, "HTTP 400")),
            }
        }
        fn flush(&mut self) -> Result<(), DeliveryError> {
            Ok(())
        }
    }
    let intents: Vec<Intent> = ["ok", "timeout", "refused"]
        .iter()
        .enumerate()
        .map(|(i, to)| {
            let mut m = message(&format!("k{i}"));
            m.to = to.to_string();
            Intent { message: m }
        })
        .collect();
    let mut router = Router::new(Box::new(Scripted), None);
    let mut marks = Vec::new();
    let outcomes = deliver(&mut router, &intents, &mut marks, &mut Report::default());
    let got: Vec<Delivery> = outcomes.into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        got,
        [Delivery::Delivered, Delivery::Unknown, Delivery::Failed]
    );
}

#[test]
fn settled_sends_come_back_with_their_delivery_records() {
    use nudge_channels::{OutboxFile, OutboxMode};
    use nudge_host::durable::{Router, delivery_record};
    use nudge_runtime::record::DeliveryOutcome;

    let mut s = Store::in_memory().unwrap();
    let mut b = Batch {
        calls: vec![NewCall::Drain],
        intents: ["done", "refused", "lost", "later"]
            .map(|k| Intent {
                message: message(k),
            })
            .into(),
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    s.commit(&mut Batch {
        marks: vec![
            Mark::Done {
                key: "done".into(),
                attempts: 2,
            },
            Mark::Failed {
                key: "refused".into(),
                attempts: 1,
                reason: "HTTP 400".into(),
                retryable: false,
            },
            Mark::Failed {
                key: "lost".into(),
                attempts: 1,
                reason: "outcome unknown: no answer within 10s".into(),
                retryable: false,
            },
            // Retryable: stays pending, so it is not settled.
            Mark::Failed {
                key: "later".into(),
                attempts: 1,
                reason: "HTTP 503".into(),
                retryable: true,
            },
        ],
        ..Batch::default()
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxFile::open(dir.path().join("o.jsonl"), OutboxMode::Truncate).unwrap();
    let router = Router::new(Box::new(outbox), None);
    let settled = s.settled(&nudge_store::Recorded::default()).unwrap();
    let records: Vec<(String, DeliveryOutcome, Option<String>)> = settled
        .iter()
        .map(|(i, m)| {
            let r = delivery_record(&router, i, m);
            assert_eq!(r.provider, "outbox");
            assert_eq!(r.customer, i.message.customer);
            (r.key, r.outcome, r.reason)
        })
        .collect();
    assert_eq!(
        records,
        [
            ("done".into(), DeliveryOutcome::Delivered, None),
            (
                "refused".into(),
                DeliveryOutcome::Failed,
                Some("HTTP 400".into())
            ),
            (
                "lost".into(),
                DeliveryOutcome::Unknown,
                Some("no answer within 10s".into())
            ),
        ]
    );
    // Keys the trace already holds are passed over.
    let mut skip = nudge_store::Recorded::default();
    skip.insert("done");
    skip.insert("lost");
    let keys: Vec<String> = s
        .settled(&skip)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i.message.idempotency_key)
        .collect();
    assert_eq!(keys, ["refused"]);
}
