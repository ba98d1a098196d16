//! The durable store of `nudge run`: an SQLite database (WAL mode) holding
//! the accepted input and the send ledger.
//!
//! The engine is deterministic, so the store keeps what went in rather than
//! every internal structure: the calls in the order they were applied (with
//! the clock marks of `--until` and `--drain`), how far each events file was
//! read, and one row per send intent with its delivery state. Profiles,
//! instances, timers and counters are rebuilt by restoring the engine's last
//! checkpoint (kept in the same transaction as the calls it covers) and
//! feeding it the calls stored after it (see `nudge_host::durable`).

// A panic in the store loses a batch that was on its way to disk: every
// fallible path returns a `StoreError` instead. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;
use std::path::{Path, PathBuf};

use nudge_channels::Outgoing;
use nudge_runtime::engine::ClockStep;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

mod hash;
pub mod outbox;

pub use hash::{TAIL, fingerprint, portable, tail_hash, tail_hash_of};

/// Each migration brings the schema from its index to the next version;
/// append only, never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE sources(
         id INTEGER PRIMARY KEY,
         path TEXT NOT NULL UNIQUE,
         position INTEGER NOT NULL,
         line INTEGER NOT NULL,
         tail_hash TEXT NOT NULL);
     CREATE TABLE calls(
         seq INTEGER PRIMARY KEY,
         kind INTEGER NOT NULL,
         source INTEGER,
         line INTEGER,
         at INTEGER,
         body BLOB);
     CREATE TABLE sends(
         key TEXT PRIMARY KEY,
         call INTEGER NOT NULL,
         channel TEXT NOT NULL,
         message TEXT NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
         attempts INTEGER NOT NULL DEFAULT 0,
         last_error TEXT);
     CREATE INDEX sends_pending ON sends(state) WHERE state = 'pending';",
    // Version 2: the engine's instants are milliseconds, no longer seconds
    // (clock marks and the recorded clock; a clock still at its start,
    // the smallest integer, stays as it is).
    "UPDATE calls SET at = at * 1000 WHERE kind = 1 AND at IS NOT NULL;
     UPDATE meta SET value = CAST(CAST(value AS INTEGER) * 1000 AS TEXT)
         WHERE key = 'clock'
         AND CAST(value AS INTEGER) BETWEEN -9000000000000000 AND 9000000000000000;",
    // Version 3: the engine's state as of a call, so that a restart loads it
    // and replays only the calls after it. One checkpoint is kept; its bytes
    // are split into parts, since a large state outgrows one blob.
    "CREATE TABLE checkpoint(
         id INTEGER PRIMARY KEY CHECK (id = 1),
         call INTEGER NOT NULL,
         format INTEGER NOT NULL,
         sends INTEGER NOT NULL,
         feeds TEXT NOT NULL,
         dead TEXT NOT NULL,
         made INTEGER NOT NULL);
     CREATE TABLE checkpoint_parts(part INTEGER PRIMARY KEY, body BLOB NOT NULL);
     CREATE INDEX calls_deploys ON calls(seq) WHERE kind = 3;
     ALTER TABLE sources ADD COLUMN beyond TEXT NOT NULL DEFAULT '';",
    // Version 4: what `nudge serve`'s alerts need after a restart: their
    // counters sampled on the engine's clock (the host's own text), so that
    // windows and baselines go on where they stood. Their states are a
    // `meta` value written with the samples.
    "CREATE TABLE alert_samples(at INTEGER PRIMARY KEY, counters TEXT NOT NULL);",
    // Version 5: the engine's state as rows (`nudge_runtime::engine::rows`),
    // so that a checkpoint writes only what changed since the last one.
    // Timers are indexed by when they are due. Message ids are appended
    // (an id is remembered once) in generation order, and leave a
    // generation at a time: keyed by their random fingerprints, every
    // insert was a write somewhere in a large tree. The `checkpoint` row keeps
    // where the state stands; `checkpoint_parts` holds a whole-state value
    // only in a store an earlier release wrote, until its next checkpoint.
    "CREATE TABLE state_head(id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB NOT NULL);
     CREATE TABLE state_releases(release INTEGER PRIMARY KEY, body BLOB NOT NULL);
     CREATE TABLE state_customers(customer INTEGER PRIMARY KEY, body BLOB NOT NULL);
     CREATE TABLE state_instances(slot INTEGER PRIMARY KEY, body BLOB NOT NULL);
     CREATE TABLE state_nodes(node INTEGER PRIMARY KEY, body BLOB NOT NULL);
     CREATE TABLE state_timers(seq INTEGER PRIMARY KEY, due INTEGER NOT NULL, body BLOB NOT NULL);
     CREATE INDEX state_timers_due ON state_timers(due);
     CREATE TABLE state_message_ids(generation INTEGER NOT NULL, id BLOB NOT NULL);
     CREATE INDEX state_message_ids_generation ON state_message_ids(generation);
     CREATE TABLE state_sent_keys(key BLOB PRIMARY KEY) WITHOUT ROWID;
     CREATE TABLE dead_letters(n INTEGER PRIMARY KEY, line TEXT NOT NULL);",
    // Version 6: which checkpoint a send's outcome came after. Checkpoints
    // are numbered (`epoch`); an outcome committed after checkpoint n is
    // stamped n + 1, so a restart from checkpoint n finds the outcomes whose
    // trace lines it cut away by the index, without reading the whole
    // ledger and the whole trace. Outcomes settled before this version are
    // unstamped until the next checkpoint stamps them.
    "ALTER TABLE sends ADD COLUMN settled INTEGER;
     ALTER TABLE checkpoint ADD COLUMN epoch INTEGER;
     CREATE INDEX sends_settled ON sends(settled) WHERE settled IS NOT NULL;
     CREATE INDEX sends_unstamped ON sends(key) WHERE settled IS NULL AND state != 'pending';",
    // Version 7: remembered message ids packed into chunks, their 16-byte
    // fingerprints end to end ([`ID_CHUNK`] at most to a row). A row each
    // made a restart of ten million ids step through ten million rows;
    // chunks are read as a few large values. Existing rows are packed by
    // generation, [`ID_CHUNK`] of them to a chunk.
    "CREATE TABLE state_message_id_chunks(generation INTEGER NOT NULL, ids BLOB NOT NULL);
     INSERT INTO state_message_id_chunks(generation, ids)
         SELECT generation, unhex(group_concat(hex(id), ''))
         FROM state_message_ids
         GROUP BY generation, rowid / 65536;
     DROP TABLE state_message_ids;",
    // Version 8: identity nodes by name (`nudge_runtime::identity::stored_name`),
    // so that an engine with a budget looks a call's identities up here
    // instead of holding every node's text. Filled from `state_nodes` by
    // [`name_nodes`] as the migration runs.
    "CREATE TABLE state_node_names(name BLOB PRIMARY KEY, node INTEGER NOT NULL) WITHOUT ROWID;",
];

/// The schema version whose migration creates `state_node_names`, which
/// [`name_nodes`] fills from the stored nodes.
const NAMES_VERSION: usize = 8;

/// Writes the name of every stored identity node (the migration to
/// [`NAMES_VERSION`]: the names are inside the nodes' rows, which SQL
/// cannot read).
fn name_nodes(tx: &rusqlite::Transaction<'_>) -> Result<(), String> {
    let mut st = tx
        .prepare("SELECT node, body FROM state_nodes")
        .map_err(|e| e.to_string())?;
    let mut put = tx
        .prepare("INSERT OR REPLACE INTO state_node_names(name, node) VALUES (?1, ?2)")
        .map_err(|e| e.to_string())?;
    let mut rows = st.query([]).map_err(|e| e.to_string())?;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let n: i64 = row.get(0).map_err(|e| e.to_string())?;
        let body = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(|e| e.to_string())?;
        let node = nudge_runtime::identity::NodeRow::decode(body)
            .map_err(|e| format!("identity node {n}: {e}"))?;
        put.execute(params![
            nudge_runtime::identity::stored_name(&node.member),
            n
        ])
        .map_err(|e| e.to_string())?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value)
         SELECT 'names_stored', coalesce(max(node) + 1, 0) FROM state_nodes",
        [],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The most message ids one row of `state_message_id_chunks` holds: a
/// megabyte of fingerprints, few rows for millions of ids and a small
/// value for a checkpoint's few. The migration to version 7 packs by the
/// same number.
const ID_CHUNK: usize = 65_536;

/// The 16-byte fingerprints a chunk of `state_message_id_chunks` holds, or
/// `None` when it is empty or its length is not a multiple of 16.
fn id_chunk(bytes: &[u8]) -> Option<impl Iterator<Item = u128> + '_> {
    (!bytes.is_empty() && bytes.len().is_multiple_of(16)).then(|| {
        bytes
            .chunks_exact(16)
            .filter_map(|b| b.try_into().ok())
            .map(u128::from_be_bytes)
    })
}

/// The tables of the engine's state as rows, emptied when a checkpoint
/// writes the whole state afresh.
const STATE_TABLES: &[&str] = &[
    "state_head",
    "state_releases",
    "state_customers",
    "state_instances",
    "state_nodes",
    "state_node_names",
    "state_timers",
    "state_message_id_chunks",
    "state_sent_keys",
];

/// The largest part a checkpoint's bytes are split into: well under
/// SQLite's one-gigabyte limit on a value, large enough that a big state
/// takes few rows.
const CHECKPOINT_PART: usize = 64 << 20;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const KIND_LINE: i64 = 0;
const KIND_UNTIL: i64 = 1;
const KIND_DRAIN: i64 = 2;
/// Written out as `3` in the queries that the partial index `calls_deploys` serves.
const KIND_DEPLOY: i64 = 3;
/// A part of an `--until` step: `at` is where the part ended, `line` the step's end.
const KIND_UNTIL_PART: i64 = 4;
/// A part of a `--drain` step: `at` is where the part ended.
const KIND_DRAIN_PART: i64 = 5;

/// Why the store could not be used.
#[derive(Debug)]
pub enum StoreError {
    /// The file could not be opened or created.
    Open {
        /// The store's path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not a Nudge store, or is damaged.
    NotAStore {
        /// The store's path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The store was written by a newer Nudge.
    TooNew {
        /// The store's path.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// Another process holds the store.
    InUse {
        /// The store's path.
        path: PathBuf,
    },
    /// The project (or its settings) changed since the stored calls were applied.
    ProjectChanged {
        /// The store's path.
        path: PathBuf,
    },
    /// The project cannot take over from the code the history was applied under.
    Deploy {
        /// The store's path.
        path: PathBuf,
        /// Why, from the engine.
        reason: String,
    },
    /// The events file could not be read.
    Source {
        /// The events file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The events file no longer starts with what was already applied.
    SourceChanged {
        /// The events file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The log was compacted and the checkpoint that replaced its first
    /// calls cannot be read by this build.
    Compacted {
        /// The store's path.
        path: PathBuf,
        /// The last call removed from the log.
        through: i64,
        /// The stored checkpoint's layout version, when there is one.
        found: Option<u32>,
    },
    /// Something the host had to write with a batch could not be made:
    /// a checkpoint of the engine, its feeds' marks, a message as JSON.
    Write {
        /// The store's path.
        path: PathBuf,
        /// What could not be written, and why.
        reason: String,
    },
    /// A database error while reading or writing.
    Sql {
        /// The store's path.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, reason } => {
                write!(f, "cannot open the store {}: {reason}", path.display())
            }
            StoreError::Write { path, reason } => {
                write!(f, "cannot write to the store {}: {reason}", path.display())
            }
            StoreError::NotAStore { path, reason } => {
                write!(
                    f,
                    "{} is not a usable Nudge store: {reason}",
                    path.display()
                )
            }
            StoreError::TooNew { path, found } => write!(
                f,
                "the store {} has schema version {found}, newer than this nudge reads ({SCHEMA_VERSION})",
                path.display()
            ),
            StoreError::InUse { path } => write!(
                f,
                "the store {} is in use by another process",
                path.display()
            ),
            StoreError::ProjectChanged { path } => write!(
                f,
                "the run settings (suppression lists, --release-spread) changed since the store {} was written, or an older nudge wrote it; its history cannot be replayed under them",
                path.display()
            ),
            StoreError::Deploy { path, reason } => write!(
                f,
                "the project cannot be deployed over the history in {}: {reason}",
                path.display()
            ),
            StoreError::Source { path, reason } => {
                write!(f, "cannot read events from {}: {reason}", path.display())
            }
            StoreError::SourceChanged { path, reason } => write!(
                f,
                "the events file {} does not continue what was applied: {reason}",
                path.display()
            ),
            StoreError::Compacted {
                path,
                through,
                found,
            } => {
                write!(
                    f,
                    "the store {} was compacted (its calls up to {through} were removed), so it can only start from its checkpoint, and ",
                    path.display()
                )?;
                match found {
                    Some(v) => write!(
                        f,
                        "its checkpoint has layout version {v}, which this nudge does not read ({} to {})",
                        nudge_runtime::engine::checkpoint::BLOB_FORMAT,
                        nudge_runtime::engine::checkpoint::FORMAT
                    ),
                    None => write!(f, "it has no checkpoint"),
                }
            }
            StoreError::Sql { path, source } => {
                write!(f, "store {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// What the person can do about it, when there is something.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            StoreError::Deploy { .. } => Some(
                "change the project as each line says and run again; or start over with --reset (the history is discarded), name another file with --store PATH, or use --in-memory",
            ),
            StoreError::NotAStore { .. } | StoreError::ProjectChanged { .. } => Some(
                "start over with --reset (the history is discarded), name another file with --store PATH, or use --in-memory",
            ),
            StoreError::SourceChanged { .. } => Some(
                "append new calls to the end of the events file; to replay a different history, use --reset or --store PATH",
            ),
            StoreError::TooNew { .. } | StoreError::Compacted { .. } => {
                Some("use the nudge that wrote it, or --store PATH")
            }
            StoreError::InUse { .. } => Some("wait for the other `nudge run` to finish"),
            _ => None,
        }
    }
}

/// How far an events file was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePos {
    /// The source's id in the store.
    pub id: i64,
    /// Bytes applied: every line before this offset.
    pub position: u64,
    /// Lines before `position`, so the next line is numbered `line + 1`.
    pub line: u64,
    /// [`tail_hash`] of the bytes before `position`.
    pub tail_hash: String,
    /// Lines after `position` already applied (a file applied in time order
    /// rather than file order leaves some), which must not be applied again.
    pub beyond: Vec<u64>,
}

/// One stored entry of the history, in the order it was applied.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored<'a> {
    /// A line of an events file.
    Line {
        /// The source it came from.
        source: i64,
        /// Its line number in that file, from 1.
        line: u64,
        /// The line as read.
        body: &'a [u8],
    },
    /// `--until`: timers due up to this instant (milliseconds since the epoch) fired.
    Until(i64),
    /// `--drain`: timers fired until only schedules remained.
    Drain,
    /// A part of a clock step committed before the step ended (see
    /// [`nudge_runtime::engine::Machine::advance_part`]).
    Part {
        /// The step it is a part of.
        step: ClockStep,
        /// The instant the part ended at.
        through: i64,
    },
    /// A compiled bundle (its wire encoding) took over from here on; the
    /// first one is the bundle the history started with.
    Deploy(&'a [u8]),
}

/// A new entry for the history; lines are borrowed from the input, which
/// outlives the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewCall<'a> {
    /// A line of an events file.
    Line {
        /// The source it came from.
        source: i64,
        /// Its line number, from 1.
        line: u64,
        /// The line as read.
        body: &'a [u8],
    },
    /// A line of an events file read from a stream, owned by the batch
    /// since the stream keeps no copy of it; stored as a [`NewCall::Line`].
    Read {
        /// The source it came from.
        source: i64,
        /// Its line number, from 1.
        line: u64,
        /// The line as read.
        body: Vec<u8>,
    },
    /// `--until`, in milliseconds since the epoch.
    Until(i64),
    /// `--drain`.
    Drain,
    /// A part of a clock step, committed before the step ended.
    Part {
        /// The step it is a part of.
        step: ClockStep,
        /// The instant the part ended at.
        through: i64,
    },
    /// A bundle deployed from here on, in its wire encoding.
    Deploy(Vec<u8>),
}

/// A message the engine decided to send, not yet known to be delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    /// The message, whose idempotency key names the intent.
    pub message: Outgoing,
}

/// Where a page of pending sends ended, to read the next from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingAfter(i64);

/// Pending sends read a page at a time (see [`Store::pending_page`]).
#[derive(Debug)]
pub struct PendingPage {
    /// The page's intents, oldest first.
    pub intents: Vec<Intent>,
    /// Where the next page starts after.
    pub last: PendingAfter,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The plugin accepted it.
    Done {
        /// The idempotency key.
        key: String,
        /// Tries the plugin made.
        attempts: u32,
    },
    /// The plugin refused it; retryable failures stay pending for the next run.
    Failed {
        /// The idempotency key.
        key: String,
        /// Tries the plugin made.
        attempts: u32,
        /// Why.
        reason: String,
        /// Whether a later run should try again.
        retryable: bool,
    },
}

/// The engine's state after the last call of a batch, written with it.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// The engine's layout version (`nudge_runtime::engine::checkpoint::FORMAT`).
    pub format: u32,
    /// The engine's state.
    pub engine: EngineState,
    /// Where the host's derived output files stood (the host's own text).
    pub feeds: String,
    /// Dead letters as JSON lines: with the engine's rows, the ones since
    /// the last checkpoint (or every one, with `dead_whole`); with a whole
    /// state, every one.
    pub dead: String,
    /// `dead` holds every dead letter up to here, replacing the stored ones.
    pub dead_whole: bool,
}

/// The engine's state as a checkpoint writes it.
#[derive(Debug)]
pub enum EngineState {
    /// The rows changed since the last checkpoint (`Machine::take_changes`).
    Rows(Box<nudge_runtime::engine::rows::Changes>),
    /// The whole state in one value (`Machine::checkpoint`), the layout of
    /// earlier releases.
    Whole(Vec<u8>),
}

impl Default for EngineState {
    fn default() -> Self {
        EngineState::Whole(Vec::new())
    }
}

/// A checkpoint as the store holds it.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The last call it covers: calls after this one are replayed.
    pub call: i64,
    /// The engine's layout version.
    pub format: u32,
    /// How many sends the ledger held when it was written.
    pub sends: u64,
    /// Where the host's derived output files stood.
    pub feeds: String,
    /// The dead letters of the calls it covers, as JSON lines.
    pub dead: String,
    /// When it was written, in milliseconds since the epoch (wall clock).
    pub made: i64,
    /// Its number: outcomes committed after it are stamped with the next
    /// (see [`Store::settled_after`]). `None` for one an earlier release wrote.
    pub epoch: Option<i64>,
}

/// Everything one transaction writes.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// Calls applied, in order.
    pub calls: Vec<NewCall<'a>>,
    /// Send intents they created; after [`Store::commit`], only the ones the
    /// ledger did not already hold (the ones to deliver).
    pub intents: Vec<Intent>,
    /// Delivery results of earlier intents.
    pub marks: Vec<Mark>,
    /// The new read position of a source.
    pub source: Option<SourcePos>,
    /// Values to keep in `meta` (clock, counters).
    pub meta: Vec<(&'static str, String)>,
    /// The engine's state after the batch's last call, replacing the
    /// store's checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The alerts' state and new samples.
    pub alerts: Option<AlertsWrite>,
    /// Calls of the log to remove once the batch's checkpoint covers them
    /// (see [`Store::compact`]); ignored without a checkpoint in the batch.
    pub compact: Option<Compaction>,
}

/// Which calls of the log a compaction may remove: calls that the
/// checkpoint covers and that are dated before an instant. The calls are
/// the audit trail and the input of what-if replays; the engine's state
/// no longer needs the ones a checkpoint covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Calls dated before this instant (milliseconds since the epoch) may go.
    pub before: i64,
    /// At most this many calls go in one transaction, so that compacting
    /// inside a running host's commit stays short; the rest go at the next.
    pub limit: u64,
}

/// What a compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// Calls removed now.
    pub removed: u64,
    /// The last call removed by any compaction so far (0: none ever was).
    pub through: i64,
    /// Why it stopped where it did.
    pub stopped: CompactStop,
}

/// Why a compaction stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactStop {
    /// It reached a call dated at or after the cutoff: everything older is gone.
    Cutoff,
    /// It reached the last call the checkpoint covers, which is always kept
    /// (the calls after it are what a restart replays).
    Checkpoint,
    /// It removed as many calls as it was allowed to at once.
    Limit,
    /// There is no checkpoint, so every call is still needed.
    NoCheckpoint,
}

/// What `nudge serve` keeps of its alerts: the store holds the host's text
/// and never reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsWrite {
    /// The alerts' state, replacing the last one.
    pub state: String,
    /// New samples of the counters, by instant (milliseconds since the
    /// epoch); one at an instant already held replaces it.
    pub samples: Vec<(i64, String)>,
    /// Samples before this instant are of no more use and are deleted.
    pub keep_from: i64,
}

/// The alerts' state and samples as the store holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertsRead {
    /// The state last written.
    pub state: String,
    /// Every sample kept, oldest first.
    pub samples: Vec<(i64, String)>,
}

/// The ledger's counts by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerCounts {
    /// Delivered.
    pub done: u64,
    /// Not yet delivered (or failed in a way worth retrying).
    pub pending: u64,
    /// Refused for good.
    pub failed: u64,
}

/// An open store; holds an exclusive lock on the file while it lives.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The lock that keeps a second process from writing the store while
    /// this one does; held until the store is dropped (or the process dies).
    _lock: Option<std::fs::File>,
}

/// The idempotency keys of sends whose outcome a trace already holds, kept
/// as their 128-bit fingerprints: a restart reads a million of them from a
/// long trace, and their text would cost a hundred bytes each.
#[derive(Debug, Default)]
pub struct Recorded(std::collections::HashSet<u128, std::hash::BuildHasherDefault<Low64>>);

impl Recorded {
    /// Notes that the outcome of the send with idempotency key `key` is recorded.
    pub fn insert(&mut self, key: &str) {
        self.0.insert(nudge_runtime::dedupe::fingerprint(key));
    }

    /// Whether the outcome of the send with idempotency key `key` is recorded.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(&nudge_runtime::dedupe::fingerprint(key))
    }
}

/// Hashes a fingerprint by its low 64 bits: they are already uniform.
#[derive(Default)]
pub struct Low64(u64);

impl std::hash::Hasher for Low64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// What [`Store::restore_state`] does with each stored row: its number and bytes.
type RowVisit<'a> = dyn FnMut(i64, &[u8]) -> Result<(), StoreError> + 'a;

/// Reads customers' rows back for an engine that let them go (see
/// `nudge_runtime::engine::Pager`), on a read-only connection of its own,
/// so that it reads while the store's writer commits.
pub struct StorePager {
    conn: Connection,
}

impl StorePager {
    /// The one value `sql` selects for `key`, if there is a row.
    fn one<K: rusqlite::ToSql, T: rusqlite::types::FromSql>(
        &mut self,
        sql: &str,
        key: K,
    ) -> Result<Option<T>, String> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
        st.query_row([key], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())
    }
}

impl nudge_runtime::engine::Pager for StorePager {
    fn customer(&mut self, number: u32) -> Result<Option<Vec<u8>>, String> {
        self.one(
            "SELECT body FROM state_customers WHERE customer = ?1",
            i64::from(number),
        )
    }

    fn timers(&mut self, read: nudge_runtime::timers::ToRead) -> Result<Vec<Vec<u8>>, String> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT body FROM state_timers WHERE due BETWEEN ?1 AND ?2 AND seq <= ?3",
            )
            .map_err(|e| e.to_string())?;
        // Insertion numbers are stored as SQLite's signed integers.
        let through = i64::try_from(read.through).unwrap_or(i64::MAX);
        let rows = st
            .query_map((read.from, read.until, through), |r| r.get(0))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    fn node_named(&mut self, name: &[u8]) -> Result<Option<u32>, String> {
        self.one("SELECT node FROM state_node_names WHERE name = ?1", name)
    }

    fn node(&mut self, n: u32) -> Result<Option<Vec<u8>>, String> {
        self.one("SELECT body FROM state_nodes WHERE node = ?1", i64::from(n))
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if path == Path::new(":memory:") {
            // SQLite's name for a database in memory: no file to lock.
            return Store::in_memory();
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        // One writer at a time: a second `nudge run` on the same store fails
        // at once instead of interleaving histories. The lock dies with the
        // process. (A lock file rather than SQLite's exclusive locking mode,
        // which would keep the store's own pager from reading.)
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot open its lock file: {e}"),
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Open {
                    path: path.to_path_buf(),
                    reason: format!("cannot lock it: {e}"),
                });
            }
        }
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut store = Store::setup(conn, path)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// A reader of customers' rows for an engine that lets customers go;
    /// `None` for a store in memory, which no second connection can read.
    pub fn pager(&self) -> Result<Option<StorePager>, StoreError> {
        if self._lock.is_none() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| store_err(&self.path, e))?;
        Ok(Some(StorePager { conn }))
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Store::setup(conn, path)
    }

    fn setup(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            _lock: None,
        };
        let err = |e| store_err(path, e);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if mode != "wal" && mode != "memory" {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot use write-ahead logging (journal mode {mode})"),
            });
        }
        // FULL syncs the log at every commit. Commits are per batch of
        // thousands of calls, so the cost is one fsync per batch, and it makes
        // "the intent is durable before the send" hold across power loss too,
        // not only across a killed process.
        store
            .conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
            .map_err(err)?;
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| store_err(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(err)?;
        let tables: Vec<String> = {
            let mut st = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(err)?;
            st.query_map([], |r| r.get(0))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?
        };
        let version: i64 = if tables.iter().any(|t| t == "schema_version") {
            tx.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .optional()
                .map_err(err)?
                .ok_or_else(|| StoreError::NotAStore {
                    path: path.clone(),
                    reason: "its schema_version table is empty".into(),
                })?
        } else if tables.is_empty() {
            tx.execute_batch(
                "CREATE TABLE schema_version(version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (0);",
            )
            .map_err(err)?;
            0
        } else {
            return Err(StoreError::NotAStore {
                path: path.clone(),
                reason: format!(
                    "it is an SQLite database with other tables ({})",
                    tables.join(", ")
                ),
            });
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.clone(),
                found: version,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(err)?;
            if i + 1 == NAMES_VERSION {
                name_nodes(&tx).map_err(|reason| StoreError::NotAStore {
                    path: path.clone(),
                    reason: format!("its identity nodes cannot be named: {reason}"),
                })?;
            }
            tx.execute("UPDATE schema_version SET version = ?1", [i as i64 + 1])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open store.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        store_err(&self.path, e)
    }

    /// True when nothing was ever committed: no calls and no sends.
    pub fn is_fresh(&self) -> Result<bool, StoreError> {
        // EXISTS stops at the first row: counting would read the whole
        // history on every start.
        let any: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM calls) OR EXISTS (SELECT 1 FROM sends)
                     OR EXISTS (SELECT 1 FROM checkpoint)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(!any)
    }

    /// A value kept in `meta`.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Ties the store to one compiled project and its settings: a fresh store
    /// takes `fingerprint`; a store with history must already have it.
    pub fn claim(&mut self, fingerprint: &str) -> Result<(), StoreError> {
        let fresh = self.is_fresh()?;
        // `fingerprint` named the bundle too before histories kept their
        // deploys; such a history cannot say which code it was applied under.
        let legacy = self.meta("fingerprint")?.is_some() && self.meta("settings")?.is_none();
        if legacy && !fresh {
            return Err(StoreError::ProjectChanged {
                path: self.path.clone(),
            });
        }
        match self.meta("settings")? {
            Some(f) if f == fingerprint => Ok(()),
            Some(_) if !fresh => Err(StoreError::ProjectChanged {
                path: self.path.clone(),
            }),
            _ => self
                .conn
                .execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('settings', ?1)",
                    [fingerprint],
                )
                .map(|_| ())
                .map_err(|e| self.err(e)),
        }
    }

    /// How far the events file `path` was applied; a new source starts at 0.
    pub fn source(&mut self, path: &str) -> Result<SourcePos, StoreError> {
        let found = self
            .conn
            .query_row(
                "SELECT id, position, line, tail_hash, beyond FROM sources WHERE path = ?1",
                [path],
                |r| {
                    let beyond: String = r.get(4)?;
                    Ok(SourcePos {
                        id: r.get(0)?,
                        position: r.get::<_, i64>(1)? as u64,
                        line: r.get::<_, i64>(2)? as u64,
                        tail_hash: r.get(3)?,
                        beyond: beyond
                            .split_ascii_whitespace()
                            .filter_map(|n| n.parse().ok())
                            .collect(),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(s) = found {
            return Ok(s);
        }
        let empty = tail_hash(&[]);
        self.conn
            .execute(
                "INSERT INTO sources(path, position, line, tail_hash) VALUES (?1, 0, 0, ?2)",
                params![path, empty],
            )
            .map_err(|e| self.err(e))?;
        Ok(SourcePos {
            id: self.conn.last_insert_rowid(),
            position: 0,
            line: 0,
            tail_hash: empty,
            beyond: Vec::new(),
        })
    }

    /// The first bundle deployed in the history (its wire encoding), if any.
    pub fn first_deploy(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                // `kind = 3` (KIND_DEPLOY) written out, so that the partial
                // index of deploys serves it rather than a scan of the history.
                "SELECT body FROM calls WHERE kind = 3 ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The stored checkpoint, without the engine's bytes (see
    /// [`Store::checkpoint_bytes`]), if there is one.
    pub fn checkpoint(&self) -> Result<Option<Saved>, StoreError> {
        let Some(mut saved) = self.checkpoint_row()? else {
            return Ok(None);
        };
        if nudge_runtime::engine::checkpoint::in_rows(saved.format) {
            let mut st = self
                .conn
                .prepare("SELECT line FROM dead_letters ORDER BY n")
                .map_err(|e| self.err(e))?;
            let mut rows = st.query([]).map_err(|e| self.err(e))?;
            while let Some(row) = rows.next().map_err(|e| self.err(e))? {
                let line: String = row.get(0).map_err(|e| self.err(e))?;
                saved.dead.push_str(&line);
                saved.dead.push('\n');
            }
        }
        Ok(Some(saved))
    }

    /// The `checkpoint` row as stored.
    fn checkpoint_row(&self) -> Result<Option<Saved>, StoreError> {
        self.conn
            .query_row(
                "SELECT call, format, sends, feeds, dead, made, epoch FROM checkpoint WHERE id = 1",
                [],
                |r| {
                    Ok(Saved {
                        call: r.get(0)?,
                        format: r.get(1)?,
                        sends: r.get::<_, i64>(2)? as u64,
                        feeds: r.get(3)?,
                        dead: r.get(4)?,
                        made: r.get(5)?,
                        epoch: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The engine's state as rows, as the stored checkpoint of layout
    /// `nudge_runtime::engine::checkpoint::FORMAT` left it.
    pub fn state_rows(&self) -> Result<nudge_runtime::engine::rows::Rows, StoreError> {
        let err = |e| self.err(e);
        let blobs = |sql: &str| -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
            let mut st = self.conn.prepare(sql).map_err(err)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)
        };
        let numbered = |sql: &str| -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
            blobs(sql)?
                .into_iter()
                .map(|(n, b)| {
                    u32::try_from(n)
                        .map(|n| (n, b))
                        .map_err(|_| self.damaged(format!("a state row is numbered {n}")))
                })
                .collect()
        };
        let head = self.state_head()?;
        // Fingerprints are read in place: there are millions of them, and a
        // vector each would double the memory a restart peaks at. A row
        // holds one, or a chunk of them when `packed`.
        let fingerprints = |sql: &str, packed: bool| -> Result<Vec<(u128, u64)>, StoreError> {
            let mut st = self.conn.prepare(sql).map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let bytes = row
                    .get_ref(0)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(err)?;
                let generation: i64 = row.get(1).map_err(err)?;
                let fps = (packed || bytes.len() == 16)
                    .then(|| id_chunk(bytes))
                    .flatten()
                    .ok_or_else(|| {
                        self.damaged(format!("a state fingerprint of {} bytes", bytes.len()))
                    })?;
                out.extend(fps.map(|fp| (fp, generation as u64)));
            }
            Ok(out)
        };
        let message_ids =
            fingerprints("SELECT ids, generation FROM state_message_id_chunks", true)?;
        let sent_keys = fingerprints("SELECT key, 0 FROM state_sent_keys ORDER BY key", false)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Ok(nudge_runtime::engine::rows::Rows {
            head,
            releases: blobs("SELECT release, body FROM state_releases ORDER BY release")?
                .into_iter()
                .map(|(_, b)| b)
                .collect(),
            customers: numbered("SELECT customer, body FROM state_customers ORDER BY customer")?,
            stored: Vec::new(),
            instances: numbered("SELECT slot, body FROM state_instances ORDER BY slot")?,
            nodes: numbered("SELECT node, body FROM state_nodes ORDER BY node")?,
            timers: blobs("SELECT seq, body FROM state_timers ORDER BY seq")?
                .into_iter()
                .map(|(_, b)| b)
                .collect(),
            message_ids,
            sent_keys,
            timers_left: false,
            texts_left: false,
            names_stored: self.meta("names_stored")?.and_then(|n| n.parse().ok()),
        })
    }

    /// The engine's state as the stored checkpoint of layout
    /// `nudge_runtime::engine::checkpoint::FORMAT` (or the one before) left
    /// it, read row by row into a restore for
    /// `nudge_runtime::engine::Machine::restore_from`: each row is decoded
    /// as it is read, so no table's stored bytes are held whole. With
    /// `lazy`, customers' rows are not read (their numbers are): an engine
    /// with a [`Store::pager`] reads each back when first needed.
    pub fn restore_state(
        &self,
        lazy: bool,
    ) -> Result<nudge_runtime::engine::rows::Restore, StoreError> {
        use nudge_runtime::engine::rows::Restore;
        let err = |e| self.err(e);
        let bad =
            |e: nudge_runtime::engine::checkpoint::CheckpointError| self.damaged(e.to_string());
        let number = |n: i64| {
            u32::try_from(n).map_err(|_| self.damaged(format!("a state row is numbered {n}")))
        };
        // Each row of `sql` as (number, bytes), borrowed from the cursor.
        let each = |sql: &str, f: &mut RowVisit<'_>| -> Result<(), StoreError> {
            let mut st = self.conn.prepare(sql).map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let n: i64 = row.get(0).map_err(err)?;
                let bytes = row
                    .get_ref(1)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(err)?;
                f(n, bytes)?;
            }
            Ok(())
        };
        let fingerprint = |bytes: &[u8]| {
            <[u8; 16]>::try_from(bytes)
                .map(u128::from_be_bytes)
                .map_err(|_| self.damaged(format!("a state fingerprint of {} bytes", bytes.len())))
        };
        let head = self.state_head()?;
        let mut releases = Vec::new();
        each(
            "SELECT release, body FROM state_releases ORDER BY release",
            &mut |_, b| {
                releases.push(b.to_vec());
                Ok(())
            },
        )?;
        let mut r = Restore::new(&head, releases).map_err(bad)?;
        // Nodes are numbered from 0 without a gap (the restore checks it).
        let count = |sql: &str| -> Result<usize, StoreError> {
            let n: Option<i64> = self.conn.query_row(sql, [], |r| r.get(0)).map_err(err)?;
            Ok(usize::try_from(n.unwrap_or(0)).unwrap_or(0))
        };
        r.reserve(
            count("SELECT max(node) + 1 FROM state_nodes")?,
            count("SELECT count(*) FROM state_sent_keys")?,
        );
        if let Some(n) = self.meta("names_stored")? {
            let n = n
                .parse()
                .map_err(|_| self.damaged(format!("it says {n:?} identities are named")))?;
            r.names_stored(n);
        }
        if lazy {
            // Nodes are read for their links; the texts of those named in
            // the store are looked up by name when a call needs them.
            r.leave_texts_in_store();
            let mut st = self
                .conn
                .prepare("SELECT customer FROM state_customers ORDER BY customer")
                .map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                r.stored(number(row.get(0).map_err(err)?)?).map_err(bad)?;
            }
        } else {
            each(
                "SELECT customer, body FROM state_customers ORDER BY customer",
                &mut |n, b| r.customer(number(n)?, b).map_err(bad),
            )?;
        }
        each(
            "SELECT slot, body FROM state_instances ORDER BY slot",
            &mut |n, b| r.instance(number(n)?, b).map_err(bad),
        )?;
        each(
            "SELECT node, body FROM state_nodes ORDER BY node",
            &mut |n, b| r.node(number(n)?, b).map_err(bad),
        )?;
        if lazy {
            // Only the timers due soon: the engine reads the others back
            // by due time before its clock reaches them.
            let from = r.leave_timers_in_store();
            each(
                &format!("SELECT seq, body FROM state_timers WHERE due < {from} ORDER BY seq"),
                &mut |_, b| r.timer(b).map_err(bad),
            )?;
            r.timers_in_store(count(&format!(
                "SELECT count(*) FROM state_timers WHERE due >= {from}"
            ))?);
        } else {
            each(
                "SELECT seq, body FROM state_timers ORDER BY seq",
                &mut |_, b| r.timer(b).map_err(bad),
            )?;
        }
        // Twice over the chunks (a few large values): counted first, so
        // that each id then goes straight where it belongs.
        for counting in [true, false] {
            each(
                "SELECT generation, ids FROM state_message_id_chunks",
                &mut |g, b| {
                    let ids = id_chunk(b).ok_or_else(|| {
                        self.damaged(format!("a chunk of message ids of {} bytes", b.len()))
                    })?;
                    for id in ids {
                        if counting {
                            r.count_message_id(id, g as u64);
                        } else {
                            r.message_id(id, g as u64);
                        }
                    }
                    Ok(())
                },
            )?;
        }
        each("SELECT 0, key FROM state_sent_keys", &mut |_, b| {
            r.sent_key(fingerprint(b)?);
            Ok(())
        })?;
        Ok(r)
    }

    /// The head row of the engine's state.
    fn state_head(&self) -> Result<Vec<u8>, StoreError> {
        self.conn
            .query_row("SELECT body FROM state_head WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| self.damaged("its checkpoint has no state head".into()))
    }

    /// The store is damaged: `reason` says how.
    fn damaged(&self, reason: String) -> StoreError {
        StoreError::NotAStore {
            path: self.path.clone(),
            reason,
        }
    }

    /// The engine's bytes of a stored whole-state checkpoint (empty when
    /// there is none).
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT body FROM checkpoint_parts ORDER BY part")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let body = row
                .get_ref(0)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(|e| self.err(e))?;
            out.extend_from_slice(body);
        }
        Ok(out)
    }

    /// The last bundle deployed at or before call `call` (its wire encoding).
    pub fn deploy_through(&self, call: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT body FROM calls WHERE kind = 3 AND seq <= ?1 ORDER BY seq DESC LIMIT 1",
                params![call],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Calls `f` with every stored call, in the order they were applied.
    pub fn for_each_call(
        &self,
        f: impl FnMut(Stored<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.for_each_call_after(0, f)
    }

    /// Calls `f` with every stored call after call number `after` (a
    /// checkpoint's [`Saved::call`]), in the order they were applied.
    pub fn for_each_call_after(
        &self,
        after: i64,
        mut f: impl FnMut(Stored<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT kind, source, line, at, body FROM calls WHERE seq > ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([after]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let kind: i64 = row.get(0).map_err(|e| self.err(e))?;
            let stored = match kind {
                KIND_LINE => {
                    let source: i64 = row.get(1).map_err(|e| self.err(e))?;
                    let line: i64 = row.get(2).map_err(|e| self.err(e))?;
                    let body = row
                        .get_ref(4)
                        .and_then(|v| v.as_blob().map_err(Into::into))
                        .map_err(|e| self.err(e))?;
                    Stored::Line {
                        source,
                        line: line as u64,
                        body,
                    }
                }
                KIND_UNTIL => Stored::Until(row.get(3).map_err(|e| self.err(e))?),
                KIND_DRAIN => Stored::Drain,
                KIND_UNTIL_PART => Stored::Part {
                    step: ClockStep::Until(row.get(2).map_err(|e| self.err(e))?),
                    through: row.get(3).map_err(|e| self.err(e))?,
                },
                KIND_DRAIN_PART => Stored::Part {
                    step: ClockStep::Drain,
                    through: row.get(3).map_err(|e| self.err(e))?,
                },
                KIND_DEPLOY => Stored::Deploy(
                    row.get_ref(4)
                        .and_then(|v| v.as_blob().map_err(Into::into))
                        .map_err(|e| self.err(e))?,
                ),
                other => {
                    return Err(StoreError::NotAStore {
                        path: self.path.clone(),
                        reason: format!(
                            "a stored call has unknown kind {other}, which a newer release of nudge writes: run that release or a later one"
                        ),
                    });
                }
            };
            f(stored)?;
        }
        Ok(())
    }

    /// Writes a batch in one transaction; on return it is durable. Intents
    /// whose key the ledger already holds are dropped from `batch.intents`,
    /// so no message is delivered twice.
    pub fn commit(&mut self, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| store_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut call = tx
                .prepare_cached(
                    "INSERT INTO calls(kind, source, line, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            let mut last = 0;
            for c in &batch.calls {
                match c {
                    NewCall::Line { source, line, body } => {
                        call.execute(params![KIND_LINE, source, *line as i64, None::<i64>, body])
                    }
                    NewCall::Read { source, line, body } => call.execute(params![
                        KIND_LINE,
                        source,
                        *line as i64,
                        None::<i64>,
                        body.as_slice()
                    ]),
                    NewCall::Until(t) => call.execute(params![
                        KIND_UNTIL,
                        None::<i64>,
                        None::<i64>,
                        t,
                        None::<&[u8]>
                    ]),
                    NewCall::Drain => call.execute(params![
                        KIND_DRAIN,
                        None::<i64>,
                        None::<i64>,
                        None::<i64>,
                        None::<&[u8]>
                    ]),
                    NewCall::Part {
                        step: ClockStep::Until(t),
                        through,
                    } => call.execute(params![
                        KIND_UNTIL_PART,
                        None::<i64>,
                        t,
                        through,
                        None::<&[u8]>
                    ]),
                    NewCall::Part {
                        step: ClockStep::Drain,
                        through,
                    } => call.execute(params![
                        KIND_DRAIN_PART,
                        None::<i64>,
                        None::<i64>,
                        through,
                        None::<&[u8]>
                    ]),
                    NewCall::Deploy(bundle) => call.execute(params![
                        KIND_DEPLOY,
                        None::<i64>,
                        None::<i64>,
                        None::<i64>,
                        bundle.as_slice()
                    ]),
                }
                .map_err(err)?;
                last = tx.last_insert_rowid();
            }
            let mut send = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO sends(key, call, channel, message, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                )
                .map_err(err)?;
            let mut kept = Vec::with_capacity(batch.intents.len());
            for i in batch.intents.drain(..) {
                let json = i.message.to_json_line().map_err(|e| StoreError::Write {
                    path: path.clone(),
                    reason: format!("a message cannot be written as JSON: {e}"),
                })?;
                let n = send
                    .execute(params![
                        i.message.idempotency_key,
                        last,
                        i.message.channel,
                        json
                    ])
                    .map_err(err)?;
                if n == 1 {
                    kept.push(i);
                }
            }
            batch.intents = kept;
            let mut done = tx
                .prepare_cached(
                    "UPDATE sends SET state = 'done', attempts = attempts + ?2, last_error = NULL,
                         settled = (SELECT coalesce(max(epoch), 0) FROM checkpoint) + 1
                     WHERE key = ?1",
                )
                .map_err(err)?;
            let mut failed = tx
                .prepare_cached(
                    "UPDATE sends SET state = ?2, attempts = attempts + ?3, last_error = ?4,
                         settled = (SELECT coalesce(max(epoch), 0) FROM checkpoint) + 1
                     WHERE key = ?1",
                )
                .map_err(err)?;
            for m in batch.marks.drain(..) {
                match m {
                    Mark::Done { key, attempts } => done.execute(params![key, attempts]),
                    Mark::Failed {
                        key,
                        attempts,
                        reason,
                        retryable,
                    } => {
                        let state = if retryable { "pending" } else { "failed" };
                        failed.execute(params![key, state, attempts, reason])
                    }
                }
                .map_err(err)?;
            }
            if let Some(s) = &batch.source {
                let beyond: Vec<String> = s.beyond.iter().map(u64::to_string).collect();
                tx.execute(
                    "UPDATE sources SET position = ?2, line = ?3, tail_hash = ?4, beyond = ?5 WHERE id = ?1",
                    params![
                        s.id,
                        s.position as i64,
                        s.line as i64,
                        s.tail_hash,
                        beyond.join(" ")
                    ],
                )
                .map_err(err)?;
            }
            for (k, v) in batch.meta.drain(..) {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                    params![k, v],
                )
                .map_err(err)?;
            }
            if let Some(c) = batch.checkpoint.take() {
                write_checkpoint(&tx, &c).map_err(err)?;
                if let Some(keep) = batch.compact {
                    compact_in(&tx, keep).map_err(err)?;
                }
            }
            if let Some(a) = batch.alerts.take() {
                write_alerts(&tx, &a).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        batch.calls.clear();
        batch.source = None;
        Ok(())
    }

    /// Where the last send now pending was committed: a bound for
    /// [`Store::pending_page`] that leaves out sends committed after it.
    pub fn pending_last(&self) -> Result<Option<PendingAfter>, StoreError> {
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT max(rowid) FROM sends WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(last.map(PendingAfter))
    }

    /// At most `limit` intents not yet delivered, oldest first, from after
    /// the `after` of an earlier page (from the first without it) through
    /// `through` (every one without it); `None` once none is left. Paged so
    /// that a held flood of sends is never read into memory whole.
    pub fn pending_page(
        &self,
        after: Option<PendingAfter>,
        through: Option<PendingAfter>,
        limit: usize,
    ) -> Result<Option<PendingPage>, StoreError> {
        // The row number follows the order sends were committed in (rows
        // are only appended), and the partial index of pending sends is
        // ordered by it: a page is a range of that index, not a sort.
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT rowid, message FROM sends
                 WHERE state = 'pending' AND rowid > ?1 AND rowid <= ?2
                 ORDER BY rowid LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let from = after.map_or(i64::MIN, |a| a.0);
        let to = through.map_or(i64::MAX, |a| a.0);
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let rows = st
            .query_map(params![from, to, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut intents = Vec::new();
        let mut last = from;
        for row in rows {
            let (rowid, json) = row.map_err(|e| self.err(e))?;
            let message = serde_json::from_str(&json).map_err(|e| StoreError::NotAStore {
                path: self.path.clone(),
                reason: format!("a stored message is not valid: {e}"),
            })?;
            intents.push(Intent { message });
            last = rowid;
        }
        Ok((!intents.is_empty()).then_some(PendingPage {
            intents,
            last: PendingAfter(last),
        }))
    }

    /// Calls `each` with the idempotency key and channel of every send not
    /// yet delivered, without reading their messages.
    pub fn each_pending_key(&self, mut each: impl FnMut(&str, &str)) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT key, channel FROM sends WHERE state = 'pending'")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let text = |i: usize| {
                row.get_ref(i)
                    .map_err(|e| self.err(e))?
                    .as_str()
                    .map_err(|e| StoreError::NotAStore {
                        path: self.path.clone(),
                        reason: format!("a stored send's key or channel is not text: {e}"),
                    })
            };
            each(text(0)?, text(1)?);
        }
        Ok(())
    }

    /// Intents whose delivery is settled (delivered, or failed for good),
    /// oldest first, each with the mark that settled it; those whose key is
    /// in `skip` are passed over without reading their message.
    pub fn settled(&self, skip: &Recorded) -> Result<Vec<(Intent, Mark)>, StoreError> {
        self.settled_where(None, skip)
    }

    /// The settled sends (those stamped after checkpoint `after`, when
    /// given) that `skip` does not hold, in the order their intents were
    /// committed.
    fn settled_where(
        &self,
        after: Option<i64>,
        skip: &Recorded,
    ) -> Result<Vec<(Intent, Mark)>, StoreError> {
        // Read in table order and sorted here: almost every row is skipped
        // (its outcome is in the trace), and an ORDER BY the table has no
        // index for would sort the whole ledger on disk at every start.
        let err = |e| self.err(e);
        // With a checkpoint, by the index of stamps.
        let sql = match after {
            Some(_) => {
                "SELECT key, call, rowid, message, state, attempts, last_error FROM sends
                 WHERE settled > ?1 AND state != 'pending'"
            }
            None => {
                "SELECT key, call, rowid, message, state, attempts, last_error FROM sends
                 WHERE ?1 IS NULL AND state != 'pending'"
            }
        };
        let mut st = self.conn.prepare(sql).map_err(err)?;
        let mut rows = st.query([after]).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let key = row
                .get_ref(0)
                .and_then(|v| v.as_str().map_err(Into::into))
                .map_err(err)?;
            if skip.contains(key) {
                continue;
            }
            let key = key.to_string();
            let order: (i64, i64) = (row.get(1).map_err(err)?, row.get(2).map_err(err)?);
            let json: String = row.get(3).map_err(err)?;
            let state: String = row.get(4).map_err(err)?;
            let attempts: i64 = row.get(5).map_err(err)?;
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let mark = match state.as_str() {
                "done" => Mark::Done {
                    key: key.clone(),
                    attempts,
                },
                _ => Mark::Failed {
                    key: key.clone(),
                    attempts,
                    reason: row
                        .get::<_, Option<String>>(6)
                        .map_err(err)?
                        .unwrap_or_default(),
                    retryable: false,
                },
            };
            let intent = Intent {
                message: self.message_of(&json)?,
            };
            out.push((order, intent, mark));
        }
        out.sort_by_key(|(order, _, _)| *order);
        Ok(out.into_iter().map(|(_, i, m)| (i, m)).collect())
    }

    /// The settled sends whose outcome was committed after checkpoint
    /// `epoch` ([`Saved::epoch`]), in the order their intents were
    /// committed: the ones whose trace lines a restart from that checkpoint
    /// cut away. `None` when the ledger holds outcomes from before
    /// checkpoints were numbered: then [`Store::settled`] and the trace
    /// tell them.
    pub fn settled_after(&self, epoch: i64) -> Result<Option<Vec<(Intent, Mark)>>, StoreError> {
        let err = |e| self.err(e);
        let unstamped: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sends WHERE settled IS NULL AND state != 'pending')",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if unstamped {
            return Ok(None);
        }
        self.settled_where(Some(epoch), &Recorded::default())
            .map(Some)
    }

    /// How many intents are in each state.
    pub fn counts(&self) -> Result<LedgerCounts, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT state, count(*) FROM sends GROUP BY state")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let mut c = LedgerCounts::default();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let state: String = row.get(0).map_err(|e| self.err(e))?;
            let n: i64 = row.get(1).map_err(|e| self.err(e))?;
            match state.as_str() {
                "done" => c.done = n as u64,
                "pending" => c.pending = n as u64,
                _ => c.failed = n as u64,
            }
        }
        Ok(c)
    }

    /// The state of one intent (`pending`, `done` or `failed`), if the ledger holds it.
    pub fn send_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT state FROM sends WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The message the ledger holds under this idempotency key, so that a
    /// provider's report about it (a bounce, a complaint) finds its customer.
    pub fn sent(&self, key: &str) -> Result<Option<Outgoing>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT message FROM sends WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| self.message_of(&j)).transpose()
    }

    /// The last message on `channel` to `address` (compared without regard
    /// to case), for reports that name only the address: an inbound SMS, a
    /// bounce of a provider that returned no key. Scans the channel's sends.
    pub fn last_sent_to(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Option<Outgoing>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT message FROM sends WHERE channel = ?1 \
                 AND lower(json_extract(message, '$.to')) = lower(?2) \
                 ORDER BY call DESC, rowid DESC LIMIT 1",
                [channel, address.trim()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| self.message_of(&j)).transpose()
    }

    fn message_of(&self, json: &str) -> Result<Outgoing, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::NotAStore {
            path: self.path.clone(),
            reason: format!("a stored message is not valid: {e}"),
        })
    }

    /// The alerts' state and samples `nudge serve` wrote, if it wrote any.
    pub fn alerts(&self) -> Result<Option<AlertsRead>, StoreError> {
        let Some(state) = self.meta("alerts")? else {
            return Ok(None);
        };
        let mut st = self
            .conn
            .prepare("SELECT at, counters FROM alert_samples ORDER BY at")
            .map_err(|e| self.err(e))?;
        let samples = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<(i64, String)>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(Some(AlertsRead { state, samples }))
    }

    /// How many calls the history holds.
    pub fn call_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The last call removed from the log by a compaction (0: none was).
    /// A store compacted past its first call can no longer be rebuilt
    /// from its calls alone: it needs its checkpoint.
    pub fn compacted_through(&self) -> Result<i64, StoreError> {
        Ok(self
            .meta(META_COMPACTED)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The stored checkpoint, when the engine can read it: a restart then
    /// starts from it. A checkpoint of another layout version is passed
    /// over (the whole history is replayed instead), unless the log was
    /// compacted: then the history is no longer whole, and the store is
    /// refused.
    pub fn usable_checkpoint(&self) -> Result<Option<Saved>, StoreError> {
        let saved = self.checkpoint()?;
        let found = saved.as_ref().map(|c| c.format);
        let usable = saved.filter(|c| nudge_runtime::engine::checkpoint::readable(c.format));
        if usable.is_none() {
            let through = self.compacted_through()?;
            if through > 0 {
                return Err(StoreError::Compacted {
                    path: self.path.clone(),
                    through,
                    found,
                });
            }
        }
        Ok(usable)
    }

    /// [`Store::compact`], once the checkpoint is known to be one this
    /// engine can start from; else nothing is removed.
    pub fn compact_readable(&mut self, keep: Compaction) -> Result<Compacted, StoreError> {
        if self.usable_checkpoint()?.is_none() {
            return Ok(Compacted {
                removed: 0,
                through: self.compacted_through()?,
                stopped: CompactStop::NoCheckpoint,
            });
        }
        self.compact(keep)
    }

    /// Removes calls that the stored checkpoint covers and that are dated
    /// before `keep.before`, oldest first, in one transaction. Deploys stay
    /// (the history of the code is small and says what ran when), and so
    /// does the last call the checkpoint covers, so that call numbers are
    /// never handed out twice. The caller checks that the checkpoint is one
    /// the engine can read (see [`Store::compact_readable`]).
    pub fn compact(&mut self, keep: Compaction) -> Result<Compacted, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| store_err(&path, e))?;
        let done = compact_in(&tx, keep).map_err(|e| store_err(&path, e))?;
        tx.commit().map_err(|e| store_err(&path, e))?;
        Ok(done)
    }
}

/// The `meta` key of [`Store::compacted_through`].
const META_COMPACTED: &str = "compacted_through";

/// [`Store::compact`] inside a transaction (also a batch's, after its
/// checkpoint is written).
fn compact_in(tx: &rusqlite::Transaction<'_>, keep: Compaction) -> rusqlite::Result<Compacted> {
    let from: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [META_COMPACTED],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let checkpoint: Option<i64> = tx
        .query_row("SELECT call FROM checkpoint WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    let Some(covered) = checkpoint else {
        return Ok(Compacted {
            removed: 0,
            through: from,
            stopped: CompactStop::NoCheckpoint,
        });
    };
    // Find how far to go: the calls are in the order they were applied,
    // which is time order but for late calls, so the first call dated at
    // or after the cutoff ends the run (a late call after it is kept
    // with it, never one before it lost).
    let mut through = from;
    let mut removed = 0u64;
    let mut stopped = CompactStop::Checkpoint;
    {
        let mut st = tx.prepare(
            "SELECT seq, kind, at, body FROM calls WHERE seq > ?1 AND seq < ?2 ORDER BY seq",
        )?;
        let mut rows = st.query(params![from, covered])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let kind: i64 = row.get(1)?;
            let at = match kind {
                KIND_LINE => {
                    // A line whose time cannot be read was refused when it
                    // was applied (its dead letter is in the checkpoint): it
                    // goes with its neighbours.
                    let body = row
                        .get_ref(3)?
                        .as_blob_or_null()
                        .map_err(rusqlite::Error::from)?
                        .unwrap_or_default();
                    std::str::from_utf8(body)
                        .ok()
                        .and_then(nudge_runtime::segment::time_of)
                }
                KIND_UNTIL | KIND_UNTIL_PART | KIND_DRAIN_PART => row.get(2)?,
                _ => None,
            };
            if at.is_some_and(|t| t >= keep.before) {
                stopped = CompactStop::Cutoff;
                break;
            }
            if removed == keep.limit {
                stopped = CompactStop::Limit;
                break;
            }
            if kind != KIND_DEPLOY {
                removed += 1;
            }
            through = seq;
        }
    }
    if through > from {
        tx.execute(
            "DELETE FROM calls WHERE seq > ?1 AND seq <= ?2 AND kind <> 3",
            params![from, through],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![META_COMPACTED, through.to_string()],
        )?;
    }
    Ok(Compacted {
        removed,
        through,
        stopped,
    })
}

/// Replaces the alerts' state, adds their new samples and drops old ones.
fn write_alerts(tx: &rusqlite::Transaction<'_>, a: &AlertsWrite) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('alerts', ?1)",
        [&a.state],
    )?;
    let mut sample =
        tx.prepare_cached("INSERT OR REPLACE INTO alert_samples(at, counters) VALUES (?1, ?2)")?;
    for (at, counters) in &a.samples {
        sample.execute(params![at, counters])?;
    }
    tx.execute("DELETE FROM alert_samples WHERE at < ?1", [a.keep_from])?;
    Ok(())
}

/// Replaces the stored checkpoint with `c`, as of the last call stored.
fn write_checkpoint(tx: &rusqlite::Transaction<'_>, c: &Checkpoint) -> rusqlite::Result<()> {
    let epoch: i64 = tx.query_row(
        "SELECT coalesce((SELECT max(epoch) FROM checkpoint), 0) + 1",
        [],
        |r| r.get(0),
    )?;
    // Every outcome committed so far has its trace line before this
    // checkpoint's feed mark: those an earlier release left unstamped (or a
    // restart wrote again) are stamped as covered by it.
    tx.execute(
        "UPDATE sends SET settled = ?1 WHERE settled IS NULL AND state != 'pending'",
        [epoch],
    )?;
    tx.execute_batch("DELETE FROM checkpoint; DELETE FROM checkpoint_parts;")?;
    // The dead letters of a checkpoint of rows grow by appending (a store
    // may hold many, and checkpoints come often); a whole state keeps them
    // in its own row, as earlier releases did.
    let mut legacy_dead = "";
    match &c.engine {
        EngineState::Rows(changes) => {
            write_rows(tx, changes)?;
            if c.dead_whole {
                tx.execute("DELETE FROM dead_letters", [])?;
            }
            let mut add = tx.prepare_cached("INSERT INTO dead_letters(line) VALUES (?1)")?;
            for line in c.dead.lines().filter(|l| !l.is_empty()) {
                add.execute([line])?;
            }
        }
        EngineState::Whole(bytes) => {
            legacy_dead = &c.dead;
            tx.execute("DELETE FROM dead_letters", [])?;
            for table in STATE_TABLES {
                tx.execute(&format!("DELETE FROM {table}"), [])?;
            }
            tx.execute("DELETE FROM meta WHERE key = 'names_stored'", [])?;
            let mut part =
                tx.prepare_cached("INSERT INTO checkpoint_parts(part, body) VALUES (?1, ?2)")?;
            for (i, chunk) in bytes.chunks(CHECKPOINT_PART).enumerate() {
                part.execute(params![i as i64, chunk])?;
            }
        }
    }
    let made = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    tx.execute(
        "INSERT INTO checkpoint(id, call, format, sends, feeds, dead, made, epoch)
         VALUES (1, (SELECT coalesce(max(seq), 0) FROM calls), ?1,
                 (SELECT count(*) FROM sends), ?2, ?3, ?4, ?5)",
        params![c.format, c.feeds, legacy_dead, made, epoch],
    )?;
    Ok(())
}

/// Writes the engine's changed rows (see `nudge_runtime::engine::rows`).
fn write_rows(
    tx: &rusqlite::Transaction<'_>,
    c: &nudge_runtime::engine::rows::Changes,
) -> rusqlite::Result<()> {
    if c.full {
        for table in STATE_TABLES {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
    }
    tx.execute(
        "INSERT OR REPLACE INTO state_head(id, body) VALUES (1, ?1)",
        [&c.head],
    )?;
    if let Some(releases) = &c.releases {
        tx.execute("DELETE FROM state_releases", [])?;
        let mut put =
            tx.prepare_cached("INSERT INTO state_releases(release, body) VALUES (?1, ?2)")?;
        for (i, body) in releases.iter().enumerate() {
            put.execute(params![i as i64, body])?;
        }
    }
    let keyed = |table: &str, key: &str, rows: &[(u32, Option<Vec<u8>>)]| {
        let mut put = tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO {table}({key}, body) VALUES (?1, ?2)"
        ))?;
        let mut gone = tx.prepare_cached(&format!("DELETE FROM {table} WHERE {key} = ?1"))?;
        for (n, row) in rows {
            match row {
                Some(body) => put.execute(params![n, body])?,
                None => gone.execute([n])?,
            };
        }
        Ok::<_, rusqlite::Error>(())
    };
    keyed("state_customers", "customer", &c.customers)?;
    keyed("state_instances", "slot", &c.instances)?;
    let mut node =
        tx.prepare_cached("INSERT OR REPLACE INTO state_nodes(node, body) VALUES (?1, ?2)")?;
    for (n, body) in &c.nodes {
        node.execute(params![n, body])?;
    }
    let mut name =
        tx.prepare_cached("INSERT OR REPLACE INTO state_node_names(name, node) VALUES (?1, ?2)")?;
    for (text, n) in &c.names {
        name.execute(params![text, n])?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('names_stored', ?1)",
        [c.names_stored.to_string()],
    )?;
    let mut timer = tx.prepare_cached(
        "INSERT OR REPLACE INTO state_timers(seq, due, body) VALUES (?1, ?2, ?3)",
    )?;
    for (seq, due, body) in &c.timers {
        timer.execute(params![*seq as i64, due, body])?;
    }
    let mut fired = tx.prepare_cached("DELETE FROM state_timers WHERE seq = ?1")?;
    for seq in &c.fired {
        fired.execute([*seq as i64])?;
    }
    let mut chunk =
        tx.prepare_cached("INSERT INTO state_message_id_chunks(generation, ids) VALUES (?1, ?2)")?;
    // The ids come in the order they were seen, so a generation's are
    // together; a chunk holds one generation's.
    let mut packed = Vec::with_capacity(16 * ID_CHUNK.min(c.message_ids.len()));
    for run in c.message_ids.chunk_by(|a, b| a.1 == b.1) {
        for ids in run.chunks(ID_CHUNK) {
            packed.clear();
            for (fp, _) in ids {
                packed.extend_from_slice(&fp.to_be_bytes());
            }
            let generation = ids.first().map_or(0, |(_, g)| *g as i64);
            chunk.execute(params![generation, &packed[..]])?;
        }
    }
    if let Some(before) = c.forget_ids_before {
        tx.execute(
            "DELETE FROM state_message_id_chunks WHERE generation < ?1",
            [before as i64],
        )?;
    }
    if c.forget_sent_keys {
        tx.execute("DELETE FROM state_sent_keys", [])?;
    }
    Ok(())
}

fn store_err(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::InUse {
            path: path.to_path_buf(),
        },
        _ => StoreError::Sql {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests;
