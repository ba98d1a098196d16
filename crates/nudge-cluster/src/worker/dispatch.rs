//! Dispatch: send intents committed by the workers, claimed from
//! PostgreSQL with `FOR UPDATE SKIP LOCKED` (so that any number of
//! dispatchers share them without taking one twice), delivered through the
//! same channel plugins as single-node mode (`nudge_host::durable::Router`)
//! with their idempotency key, and their outcome recorded.
//!
//! A claim is committed before delivery (`sending`, with the claimer and
//! an expiry), so a dispatcher that dies mid-delivery leaves its claims to
//! expire; whoever takes such a claim again first asks the outbox file
//! whether the message is already there, as `nudge run` does after a crash.

use std::time::Duration;

use nudge_channels::Outgoing;
use nudge_host::durable::{self, Report, Router};
use nudge_store::{Intent, Mark};
use tokio_postgres::Client;

use crate::{ClusterError, Settings};

/// Delivery attempts before a send that keeps failing is given up.
pub const MAX_ATTEMPTS: i32 = 5;

/// What one round of dispatch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// Sends the plugins accepted.
    pub delivered: usize,
    /// Sends found already in the outbox (delivered before a crash).
    pub found: usize,
    /// Sends refused: given up, or back to pending to be tried later.
    pub failed: usize,
}

impl Dispatched {
    /// How many sends the round settled or tried.
    pub fn total(&self) -> usize {
        self.delivered + self.found + self.failed
    }
}

/// Claims up to `limit` sends due for delivery, delivers them through
/// `router` and records what became of each. `claim_for` is how long a
/// claim keeps others off before it counts as abandoned.
pub async fn dispatch_once(
    client: &mut Client,
    s: &Settings,
    id: &str,
    router: &mut Router,
    limit: usize,
    claim_for: Duration,
) -> Result<Dispatched, ClusterError> {
    let t = s.table("send_intents");
    let rows = client
        .query(
            &format!(
                "WITH due AS (
                     SELECT id, status FROM {t}
                     WHERE status IN ('pending', 'sending')
                       AND (claimed_until IS NULL OR claimed_until < now())
                     ORDER BY id LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 UPDATE {t} i SET status = 'sending', claimed_by = $1,
                     claimed_until = now() + $3::float8 * interval '1 millisecond',
                     attempts = i.attempts + 1
                 FROM due WHERE i.id = due.id
                 RETURNING i.id, i.contents, due.status, i.attempts, i.partition"
            ),
            &[&id, &(limit as i64), &(claim_for.as_secs_f64() * 1000.0)],
        )
        .await
        .map_err(|e| ClusterError::pg("claiming send intents", &e))?;
    if rows.is_empty() {
        return Ok(Dispatched::default());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut intents = Vec::with_capacity(rows.len());
    let mut attempts = Vec::with_capacity(rows.len());
    let mut partitions = Vec::with_capacity(rows.len());
    let mut retaken = Vec::new();
    let mut broken = Vec::new();
    for r in rows {
        let row_id: i64 = r.get(0);
        let contents: String = r.get(1);
        let was: String = r.get(2);
        match serde_json::from_str::<Outgoing>(&contents) {
            Ok(message) => {
                if was == "sending" {
                    retaken.push(intents.len());
                }
                ids.push(row_id);
                attempts.push(r.get::<_, i32>(3));
                partitions.push(r.get::<_, i32>(4));
                intents.push(Intent { message });
            }
            Err(e) => broken.push((row_id, format!("the stored message cannot be read: {e}"))),
        }
    }
    // Claims a dead dispatcher left: their message may be in the outbox.
    let mut found = std::collections::HashSet::new();
    if !retaken.is_empty() {
        let again: Vec<Intent> = retaken
            .iter()
            .filter_map(|&i| intents.get(i).cloned())
            .collect();
        found = router
            .already_delivered(&again)
            .map_err(|e| ClusterError::Postgres {
                doing: "reading the outbox to reconcile abandoned sends".into(),
                reason: e.to_string(),
            })?;
    }
    let (done, todo): (Vec<usize>, Vec<usize>) = (0..intents.len()).partition(|&i| {
        intents
            .get(i)
            .is_some_and(|x| found.contains(&x.message.idempotency_key))
    });
    let todo_intents: Vec<Intent> = todo
        .iter()
        .filter_map(|&i| intents.get(i).cloned())
        .collect();
    let mut marks: Vec<Mark> = Vec::with_capacity(todo_intents.len());
    let mut report = Report::default();
    durable::deliver(router, &todo_intents, &mut marks, &mut report);

    let mut out = Dispatched {
        found: done.len(),
        ..Dispatched::default()
    };
    let mut set_ids = Vec::new();
    let mut statuses = Vec::new();
    let mut outcomes: Vec<Option<String>> = Vec::new();
    // The delivery records, as the single-node trace has them: one per
    // send settled (delivered, found delivered, or given up).
    let mut records: Vec<(i64, i32, String, String)> = Vec::new();
    let mut record = |i: usize, mark: &Mark| {
        let (Some(intent), Some(&p), Some(&row)) = (intents.get(i), partitions.get(i), ids.get(i))
        else {
            return;
        };
        let r = durable::delivery_record(router, intent, mark);
        if let Ok(line) = serde_json::to_string(&r) {
            records.push((row, p, r.at, line));
        }
    };
    for i in done {
        if let Some(&row) = ids.get(i) {
            set_ids.push(row);
            statuses.push("done".to_string());
            outcomes.push(Some("delivered (found in the outbox)".into()));
            let key = intents
                .get(i)
                .map(|x| x.message.idempotency_key.clone())
                .unwrap_or_default();
            record(i, &Mark::Done { key, attempts: 1 });
        }
    }
    for (&i, mark) in todo.iter().zip(&marks) {
        let (Some(&row), Some(&tries)) = (ids.get(i), attempts.get(i)) else {
            continue;
        };
        let again = matches!(
            mark,
            Mark::Failed {
                retryable: true,
                ..
            }
        ) && tries < MAX_ATTEMPTS;
        if !again {
            record(i, mark);
        }
        set_ids.push(row);
        match mark {
            Mark::Done { .. } => {
                out.delivered += 1;
                statuses.push("done".into());
                outcomes.push(Some("delivered".into()));
            }
            Mark::Failed { reason, .. } => {
                out.failed += 1;
                statuses.push(if again { "pending" } else { "failed" }.into());
                outcomes.push(Some(reason.clone()));
            }
        }
    }
    for (row, reason) in broken {
        out.failed += 1;
        set_ids.push(row);
        statuses.push("failed".into());
        outcomes.push(Some(reason));
    }
    // A failure to retry waits a little longer after each attempt; a
    // settled send drops its claim. Its delivery record goes with it.
    let tx = client
        .transaction()
        .await
        .map_err(|e| ClusterError::pg("starting to record outcomes", &e))?;
    let settled = tx
        .query(
            &format!(
                "UPDATE {t} i SET status = u.s, outcome = u.o,
                     claimed_by = CASE WHEN u.s = 'pending' THEN NULL ELSE i.claimed_by END,
                     claimed_until = CASE WHEN u.s = 'pending'
                         THEN now() + i.attempts * interval '2 seconds' ELSE NULL END,
                     settled_at = CASE WHEN u.s = 'pending' THEN NULL ELSE now() END
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, s, o)
                 WHERE i.id = u.id AND i.claimed_by = $4
                 RETURNING i.id"
            ),
            &[&set_ids, &statuses, &outcomes, &id],
        )
        .await
        .map_err(|e| ClusterError::pg("recording delivery outcomes", &e))?;
    // A claim taken over meanwhile (this dispatcher paused past it) was
    // not ours to settle: its record is the new claimer's to write.
    let settled: std::collections::HashSet<i64> = settled.iter().map(|r| r.get(0)).collect();
    let (mut record_parts, mut record_ats, mut record_lines) = (Vec::new(), Vec::new(), Vec::new());
    for (row, p, at, line) in records {
        if settled.contains(&row) {
            record_parts.push(p);
            record_ats.push(at);
            record_lines.push(line);
        }
    }
    if !record_lines.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {} (partition, at, line)
                 SELECT p, a, l FROM unnest($1::int4[], $2::text[], $3::text[])
                     WITH ORDINALITY AS u(p, a, l, n) ORDER BY n",
                s.table("trace")
            ),
            &[&record_parts, &record_ats, &record_lines],
        )
        .await
        .map_err(|e| ClusterError::pg("writing delivery records", &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| ClusterError::pg("recording delivery outcomes", &e))?;
    Ok(out)
}
