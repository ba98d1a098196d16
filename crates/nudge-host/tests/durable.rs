//! The durable driver against a real (in-memory) store: deliveries, settled
//! sends with their records, compaction of a store whose checkpoint it cannot read.

use nudge_channels::Outgoing;
use nudge_host::durable;
use nudge_store::{
    Batch, Checkpoint, CompactStop, Compaction, Intent, Mark, NewCall, Store, StoreError,
};

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

/// A line of an events file stamped `at` (milliseconds since the epoch,
/// under a minute).
fn line_at(at: i64) -> Vec<u8> {
    let t = format!("1970-01-01T00:00:{:02}.{:03}Z", at / 1000, at % 1000);
    format!(r#"{{"type":"track","event":"E","userId":"u","timestamp":"{t}"}}"#).into_bytes()
}

/// A store whose log holds a deploy, lines stamped 1000, 2000, ... 6000,
/// a clock mark at 6500 and a drain, with a checkpoint after call `covered`
/// (the calls after it are committed without one).
fn history(covered: usize, format: u32) -> Store {
    let mut s = Store::in_memory().unwrap();
    let lines: Vec<Vec<u8>> = (1..=6).map(|i| line_at(i * 1000)).collect();
    let mut calls = vec![NewCall::Deploy(vec![1])];
    calls.extend(lines.iter().enumerate().map(|(i, l)| NewCall::Line {
        source: 1,
        line: i as u64 + 1,
        body: l,
    }));
    calls.push(NewCall::Until(6500));
    calls.push(NewCall::Drain);
    let rest = calls.split_off(covered);
    s.commit(&mut Batch {
        calls,
        checkpoint: Some(Checkpoint {
            format,
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
    s.commit(&mut Batch {
        calls: rest,
        ..Batch::default()
    })
    .unwrap();
    s
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
    use std::collections::HashSet;

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
    let settled = s.settled(&HashSet::new()).unwrap();
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
    let skip: HashSet<String> = ["done".to_string(), "lost".to_string()].into();
    let keys: Vec<String> = s
        .settled(&skip)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i.message.idempotency_key)
        .collect();
    assert_eq!(keys, ["refused"]);
}

#[test]
fn a_compacted_store_whose_checkpoint_cannot_be_read_is_refused() {
    let format = nudge_runtime::engine::checkpoint::FORMAT;
    // Readable: it starts from its checkpoint.
    let mut s = history(9, format);
    durable::compact(
        &mut s,
        Compaction {
            before: 2500,
            limit: u64::MAX,
        },
    )
    .unwrap();
    assert_eq!(durable::usable_checkpoint(&s).unwrap().unwrap().call, 9);
    // Another layout, not compacted: passed over, the calls are replayed.
    let mut old = history(9, format + 1);
    assert!(durable::usable_checkpoint(&old).unwrap().is_none());
    // `durable::compact` leaves such a store whole.
    let done = durable::compact(
        &mut old,
        Compaction {
            before: i64::MAX,
            limit: u64::MAX,
        },
    )
    .unwrap();
    assert_eq!((done.removed, done.stopped), (0, CompactStop::NoCheckpoint));
    // Compacted first (by a nudge that read it), then read by another:
    // the calls are no longer whole, so it is refused with the reason.
    old.compact(Compaction {
        before: 2500,
        limit: u64::MAX,
    })
    .unwrap();
    let err = durable::usable_checkpoint(&old).unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { through: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("calls up to 3 were removed"), "{text}");
    assert!(
        text.contains(&format!("layout version {}", format + 1)),
        "{text}"
    );
}
