//! An ingest node's work on the calls of one request: read each call's
//! identifiers, route it through the identity stage, publish it (and any
//! merge records) to the log, and return once JetStream has every one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::calls::identifiers;
use crate::log::{Acked, Log, Outgoing};
use crate::stage::{self, Stage};
use crate::{ClusterError, Settings, connect_postgres};

/// How long a recorded merge may wait for its record to reach the log
/// before another node's sweep publishes it.
const SWEEP_AFTER: Duration = Duration::from_secs(30);

/// What an ingest node needs: the identity stage and the log.
#[derive(Clone)]
pub struct Ingest {
    stage: Stage,
    log: Log,
    settings: Arc<Settings>,
    /// For marking merges published, apart from the stage's connections.
    marks: Arc<Mutex<tokio_postgres::Client>>,
}

/// What became of a request's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Calls routed and stored in their partition's log.
    pub calls: usize,
    /// Messages JetStream already had (a retry of the same `messageId`).
    pub duplicates: usize,
    /// Lines that name no customer, stored under the dead-letter subject.
    pub dead: usize,
    /// Merge records published.
    pub merges: usize,
}

impl Ingest {
    /// Connects to PostgreSQL and NATS, checking the recorded partition
    /// count and that the stream exists, and starts the sweep of merge
    /// records a stopped node left unpublished.
    pub async fn connect(settings: &Settings) -> Result<Ingest, ClusterError> {
        settings
            .check()
            .map_err(|what| ClusterError::Mismatch { what })?;
        let stage = Stage::connect(settings).await?;
        let log = Log::connect(settings).await?;
        let marks = Arc::new(Mutex::new(connect_postgres(settings).await?));
        let ingest = Ingest {
            stage,
            log,
            settings: Arc::new(settings.clone()),
            marks,
        };
        tokio::spawn(sweep(ingest.clone()));
        Ok(ingest)
    }

    /// The log, for readiness checks and tools.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Routes and publishes `lines` (calls as JSON lines) and `refused`
    /// (lines already refused, with the reason), returning once JetStream
    /// has acknowledged every message; an error means the request must not
    /// be answered as taken.
    pub async fn accept(
        &self,
        lines: Vec<String>,
        refused: Vec<(String, String)>,
    ) -> Result<Ingested, ClusterError> {
        let mut calls = Vec::with_capacity(lines.len());
        let mut routable = Vec::with_capacity(lines.len());
        let mut dead: Vec<Outgoing> = refused
            .into_iter()
            .map(|(line, reason)| Outgoing::Dead { line, reason })
            .collect();
        for line in lines {
            match identifiers(&line) {
                Ok(ids) => {
                    calls.push(ids);
                    routable.push(line);
                }
                Err(reason) => dead.push(Outgoing::Dead { line, reason }),
            }
        }
        let message_ids: Vec<Option<String>> = calls.iter().map(|c| c.message_id.clone()).collect();
        let resolved = if calls.is_empty() {
            stage::Resolved::default()
        } else {
            self.stage.resolve(calls).await?
        };
        let mut out = Vec::with_capacity(routable.len() + dead.len() + resolved.merges.len());
        let merge_of = |absorbed: i64| resolved.merges.iter().find(|m| m.absorbed == absorbed);
        for (i, ((line, message_id), route)) in routable
            .into_iter()
            .zip(message_ids)
            .zip(&resolved.routes)
            .enumerate()
        {
            // The merge record just before the call that made it: the
            // absorbed partition has applied every call before the join
            // when it hands the customer over, and none after.
            let mut absorbs = Vec::new();
            for &(call, absorbed) in &resolved.joins {
                if call != i {
                    continue;
                }
                if let Some(m) = merge_of(absorbed) {
                    out.push(Outgoing::Merge(m.clone()));
                    if m.absorbed_partition != m.kept_partition {
                        absorbs.push(absorbed);
                    }
                }
            }
            out.push(Outgoing::Call {
                partition: route.partition,
                customer: route.customer,
                message_id,
                line,
                absorbs,
            });
        }
        let (n_calls, n_dead) = (resolved.routes.len(), dead.len());
        out.extend(dead);
        let Acked { duplicates, .. } = self.log.publish(&out).await?;
        let merges = resolved.merges.len();
        if merges > 0 {
            let absorbed: Vec<i64> = resolved.merges.iter().map(|m| m.absorbed).collect();
            // The records are in the log: a failure here only means a sweep
            // publishes them again, which the log drops as repeats.
            let client = self.marks.lock().await;
            if let Err(e) = stage::mark_published(&client, &self.settings, &absorbed).await {
                eprintln!("warning: {e}");
            }
        }
        Ok(Ingested {
            calls: n_calls,
            duplicates,
            dead: n_dead,
            merges,
        })
    }

    /// Publishes merge records recorded more than [`SWEEP_AFTER`] ago and
    /// not yet marked published; returns how many.
    pub async fn sweep_once(&self) -> Result<usize, ClusterError> {
        let client = self.marks.lock().await;
        let merges = stage::unpublished(&client, &self.settings, SWEEP_AFTER).await?;
        if merges.is_empty() {
            return Ok(0);
        }
        let out: Vec<Outgoing> = merges.iter().cloned().map(Outgoing::Merge).collect();
        self.log.publish(&out).await?;
        let absorbed: Vec<i64> = merges.iter().map(|m| m.absorbed).collect();
        stage::mark_published(&client, &self.settings, &absorbed).await?;
        Ok(merges.len())
    }
}

/// Every few seconds, the merges a stopped node recorded but did not publish.
async fn sweep(ingest: Ingest) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Err(e) = ingest.sweep_once().await {
            eprintln!("warning: publishing pending merge records: {e}");
        }
    }
}
