//! The log: one JetStream stream (`PREFIX-calls`) whose subject
//! `PREFIX.calls.N` is partition N's ordered log of calls and merge
//! records, and `PREFIX.dead` for calls that name no customer.
//!
//! Every message carries `Nudge-Kind` (`call`, `merge`, `deploy` or `dead`); calls
//! and merges carry `Nudge-Customer`, the canonical customer they are for.
//! A call's `messageId` is its `Nats-Msg-Id`, so JetStream drops a repeat
//! sent within the duplicate window; a merge's is `nudge-merge:ABSORBED`,
//! as a customer is absorbed once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use serde::Serialize;

use crate::stage::Merge;
use crate::{ClusterError, Settings, connect_nats};

/// One message for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A call for its customer's partition.
    Call {
        /// The partition.
        partition: u32,
        /// The canonical customer.
        customer: i64,
        /// The call's `messageId`, its deduplication id.
        message_id: Option<String>,
        /// The call as a JSON line.
        line: String,
        /// Customers of other partitions this call joins to its customer
        /// (`Nudge-Absorbs`): their state must be taken in before it applies.
        absorbs: Vec<i64>,
    },
    /// A merge record for the absorbed customer's partition.
    Merge(Merge),
    /// A deploy record: the partition's engine takes deploy `seq`'s code
    /// (`deploys`) before the calls after it.
    Deploy {
        /// The partition told.
        partition: u32,
        /// The deploy's number.
        seq: i64,
    },
    /// A line that cannot be routed, with the reason; deduplicated by its
    /// `messageId` when one can be read from it (as `dead:ID`, apart from
    /// the calls' own ids).
    Dead {
        /// The line as received.
        line: String,
        /// Why it cannot be routed.
        reason: String,
    },
}

/// The `messageId` of a line that may be no call at all.
fn loose_message_id(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    }
    serde_json::from_str::<Id>(line).ok()?.message_id
}

/// A merge record's body (`Nudge-Kind: merge`), as documented in docs/cluster.md.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MergeRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    kept: i64,
    absorbed: i64,
    kept_partition: u32,
    absorbed_partition: u32,
    /// RFC 3339, UTC, to the millisecond.
    at: String,
    message_id: Option<&'a str>,
    /// When the joining call happened, RFC 3339, UTC, to the millisecond.
    call_at: Option<String>,
    /// The absorbed customer's identifiers: `[kind, value]` pairs.
    identities: Vec<(&'static str, &'a str)>,
}

/// An instant as the log writes it: RFC 3339, UTC, to the millisecond.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The body of a merge record.
pub fn merge_record(m: &Merge) -> String {
    serde_json::to_string(&MergeRecord {
        kind: "merge",
        kept: m.kept,
        absorbed: m.absorbed,
        kept_partition: m.kept_partition,
        absorbed_partition: m.absorbed_partition,
        at: rfc3339(m.at),
        message_id: m.message_id.as_deref(),
        call_at: m.call_at.map(rfc3339),
        identities: m
            .identities
            .iter()
            .map(|(k, v)| (k.name(), v.as_str()))
            .collect(),
    })
    .unwrap_or_default()
}

/// How a batch of messages was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Messages JetStream stored.
    pub stored: usize,
    /// Messages it had already (same `Nats-Msg-Id` within the window).
    pub duplicates: usize,
}

/// A message as the stream holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its subject: `PREFIX.calls.N` or `PREFIX.dead`.
    pub subject: String,
    /// `Nudge-Kind`: `call`, `merge` or `dead`.
    pub kind: String,
    /// `Nudge-Customer`, for calls and merges.
    pub customer: Option<i64>,
    /// `Nats-Msg-Id`, when it has one.
    pub message_id: Option<String>,
    /// `Nudge-Reason`, for dead letters.
    pub reason: Option<String>,
    /// The body: the call's line, or the merge record.
    pub body: String,
}

/// A connection to the log.
#[derive(Clone)]
pub struct Log {
    js: async_nats::jetstream::Context,
    settings: Arc<Settings>,
}

impl Log {
    /// Connects to NATS and checks that the stream is there.
    pub async fn connect(settings: &Settings) -> Result<Log, ClusterError> {
        let client = connect_nats(settings).await?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client);
        let log = Log {
            js,
            settings: Arc::new(settings.clone()),
        };
        log.check_stream().await?;
        Ok(log)
    }

    /// Whether the stream is there (for readiness, and at start).
    pub async fn check_stream(&self) -> Result<(), ClusterError> {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::context::GetStreamErrorKind;
        match self.js.get_stream(self.settings.stream()).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Err(ClusterError::NoStream {
                        stream: self.settings.stream(),
                    })
                }
                _ => Err(ClusterError::nats("looking up the stream", e)),
            },
        }
    }

    /// The JetStream context, for tests and tools that read the stream.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// Publishes `messages` in order and waits until JetStream has
    /// acknowledged every one; an error means some may not be stored.
    pub async fn publish(&self, messages: &[Outgoing]) -> Result<Acked, ClusterError> {
        let no_stream = || ClusterError::NoStream {
            stream: self.settings.stream(),
        };
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let (subject, publish) = self.message(m);
            let ack = self
                .js
                .send_publish(subject, publish)
                .await
                .map_err(|e| match e.kind() {
                    PublishErrorKind::StreamNotFound => no_stream(),
                    _ => ClusterError::nats("publishing", e),
                })?;
            pending.push(ack);
        }
        let mut acked = Acked::default();
        for ack in pending {
            let ack = ack.await.map_err(|e| match e.kind() {
                PublishErrorKind::StreamNotFound => no_stream(),
                _ => ClusterError::nats("waiting for the acknowledgement", e),
            })?;
            if ack.duplicate {
                acked.duplicates += 1;
            } else {
                acked.stored += 1;
            }
        }
        Ok(acked)
    }

    /// Every message in the stream, oldest first: for inspecting a small
    /// stream (tests, a trial cluster); a worker reads with a consumer.
    pub async fn messages(&self) -> Result<Vec<Stored>, ClusterError> {
        let mut stream = self
            .js
            .get_stream(self.settings.stream())
            .await
            .map_err(|e| ClusterError::nats("looking up the stream", e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| ClusterError::nats("reading the stream", e))?
            .state
            .clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let m = stream
                .get_raw_message(seq)
                .await
                .map_err(|e| ClusterError::nats(&format!("reading message {seq}"), e))?;
            let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
            out.push(Stored {
                subject: m.subject.to_string(),
                kind: header("Nudge-Kind").unwrap_or_default(),
                customer: header("Nudge-Customer").and_then(|c| c.parse().ok()),
                message_id: header("Nats-Msg-Id"),
                reason: header("Nudge-Reason"),
                body: String::from_utf8_lossy(&m.payload).into_owned(),
            });
        }
        Ok(out)
    }

    fn message(&self, m: &Outgoing) -> (String, Publish) {
        match m {
            Outgoing::Call {
                partition,
                customer,
                message_id,
                line,
                absorbs,
            } => {
                let mut p = Publish::build()
                    .payload(Bytes::copy_from_slice(line.as_bytes()))
                    .header("Nudge-Kind", "call")
                    .header("Nudge-Customer", customer.to_string().as_str());
                if !absorbs.is_empty() {
                    let list: Vec<String> = absorbs.iter().map(i64::to_string).collect();
                    p = p.header("Nudge-Absorbs", list.join(",").as_str());
                }
                if let Some(id) = message_id.as_deref().filter(|id| header_safe(id)) {
                    p = p.message_id(id);
                }
                (self.settings.subject(*partition), p)
            }
            Outgoing::Merge(merge) => {
                let p = Publish::build()
                    .payload(Bytes::from(merge_record(merge)))
                    .header("Nudge-Kind", "merge")
                    .header("Nudge-Customer", merge.absorbed.to_string().as_str())
                    .message_id(format!("nudge-merge:{}", merge.absorbed));
                (self.settings.subject(merge.absorbed_partition), p)
            }
            Outgoing::Deploy { partition, seq } => {
                let p = Publish::build()
                    .payload(Bytes::from(format!(r#"{{"type":"deploy","seq":{seq}}}"#)))
                    .header("Nudge-Kind", "deploy")
                    .header("Nudge-Deploy", seq.to_string().as_str())
                    .message_id(format!("nudge-deploy:{seq}:{partition}"));
                (self.settings.subject(*partition), p)
            }
            Outgoing::Dead { line, reason } => {
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let mut p = Publish::build()
                    .payload(Bytes::copy_from_slice(line.as_bytes()))
                    .header("Nudge-Kind", "dead")
                    .header("Nudge-Reason", reason.as_str());
                if let Some(id) = loose_message_id(line).filter(|id| header_safe(id)) {
                    p = p.message_id(format!("dead:{id}"));
                }
                (self.settings.dead_subject(), p)
            }
        }
    }
}

/// Whether `id` can travel as a header value; a `messageId` with a line
/// break or other control character is not used to deduplicate.
fn header_safe(id: &str) -> bool {
    !id.is_empty() && id.len() <= 512 && !id.chars().any(char::is_control)
}
