//! Cluster mode: calls taken in by any number of stateless ingest nodes,
//! each routed to the partition of its canonical customer and kept in a
//! NATS JetStream stream, with the identity graph that decides the
//! canonical customer shared in PostgreSQL.
//!
//! - [`stage`]: the identity stage, which maps every identifier a call
//!   carries to its canonical customer in PostgreSQL, safely under
//!   concurrent ingest nodes, and records merges with their forwarding.
//! - [`log`]: the partitioned log of calls on JetStream: the stream, its
//!   subjects, and publishing with `messageId` as the deduplication id.
//! - [`ingest`]: both together, what an ingest node does with the calls of
//!   one HTTP request before it answers.
//! - [`init`]: creating the stream and the PostgreSQL schema, and the check
//!   that the partition count is the one recorded.
//! - [`worker`]: partition workers, which lease partitions, run the engine
//!   on their calls with its state as rows in PostgreSQL, and dispatch the
//!   sends it makes.
//! - [`trace`]: the decision trace the workers commit, read back in time
//!   order.
//! - [`deploy`]: new code for every partition, through the log.
//!
//! docs/cluster.md describes the architecture and what does not exist yet.

// A panic in an ingest node drops requests that were on their way to the
// log: every fallible path returns an error instead. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;
use std::time::Duration;

pub mod calls;
pub mod deploy;
pub mod ingest;
pub mod init;
pub mod log;
pub mod stage;
pub mod trace;
pub mod worker;

pub use calls::{Identifiers, Kind};
pub use ingest::{Ingest, Ingested};
pub use init::{Initialised, init};
pub use stage::{Merge, Route, Stage};
pub use worker::Worker;

/// How a cluster is reached and laid out: `nudge.toml`'s `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The NATS server(s), such as `nats://127.0.0.1:4222`; several are
    /// separated by commas.
    pub nats: String,
    /// The PostgreSQL connection string (a URL or `key=value` pairs).
    pub postgres: String,
    /// The PostgreSQL schema that holds the cluster's tables.
    pub schema: String,
    /// How many virtual partitions customers are spread over; fixed when
    /// the cluster is created.
    pub partitions: u32,
    /// Names the JetStream stream (`PREFIX-calls`) and its subjects
    /// (`PREFIX.calls.N`, `PREFIX.dead`).
    pub prefix: String,
    /// How long JetStream remembers a `messageId` to drop a repeat.
    pub duplicate_window: Duration,
    /// How many copies of the stream a NATS cluster keeps.
    pub replicas: usize,
    /// PostgreSQL connections per ingest node.
    pub connections: usize,
    /// How long a partition's calls stay in the log after its worker
    /// committed them; `None` keeps them for ever.
    pub keep: Option<Duration>,
}

impl Settings {
    /// Settings with the defaults for everything but where the services are.
    pub fn new(nats: &str, postgres: &str) -> Settings {
        Settings {
            nats: nats.to_string(),
            postgres: postgres.to_string(),
            schema: DEFAULT_SCHEMA.to_string(),
            partitions: DEFAULT_PARTITIONS,
            prefix: DEFAULT_PREFIX.to_string(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            replicas: 1,
            connections: DEFAULT_CONNECTIONS,
            keep: Some(DEFAULT_KEEP),
        }
    }

    /// The JetStream stream that holds every partition's calls.
    pub fn stream(&self) -> String {
        format!("{}-calls", self.prefix)
    }

    /// The subject of partition `partition`'s calls.
    pub fn subject(&self, partition: u32) -> String {
        format!("{}.calls.{partition}", self.prefix)
    }

    /// The subject of calls that cannot be routed (dead letters).
    pub fn dead_subject(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The table `table` of the cluster's schema, quoted for SQL.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.schema)
    }

    /// Checks the names and numbers: what `nudge.toml` would be refused for.
    pub fn check(&self) -> Result<(), String> {
        check_names(&self.schema, &self.prefix, self.partitions)?;
        if self.connections == 0 {
            return Err("`cluster.connections`: at least 1".into());
        }
        Ok(())
    }
}

/// The default `[cluster] partitions`: many more than nodes will ever be,
/// so that partitions can be spread over workers without being split.
pub const DEFAULT_PARTITIONS: u32 = 256;
/// The default `[cluster] prefix`.
pub const DEFAULT_PREFIX: &str = "nudge";
/// The default `[cluster] schema`.
pub const DEFAULT_SCHEMA: &str = "nudge";
/// The default `[cluster] duplicate_window`: Segment's clients retry for
/// about this long, and JetStream's own default.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The default `[cluster] keep`: a week of committed calls stays in the
/// log for inspection and audit, and the log stays bounded.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default `[cluster] connections`.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// The most partitions a cluster may have.
pub const MAX_PARTITIONS: u32 = 65_536;

/// Checks a schema name, a prefix and a partition count.
pub fn check_names(schema: &str, prefix: &str, partitions: u32) -> Result<(), String> {
    let lower = |c: char| c.is_ascii_lowercase() || c == '_';
    if schema.is_empty()
        || schema.len() > 63
        || !schema.starts_with(lower)
        || !schema.chars().all(|c| lower(c) || c.is_ascii_digit())
    {
        return Err(format!(
            "`cluster.schema`: `{schema}` is not a plain PostgreSQL name: lower-case letters, digits and `_`, 1 to 63 of them, not starting with a digit"
        ));
    }
    if prefix.is_empty()
        || prefix.len() > 32
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "`cluster.prefix`: `{prefix}` cannot name a stream and its subjects: letters, digits, `_` and `-`, 1 to 32 of them"
        ));
    }
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(format!(
            "`cluster.partitions`: {partitions} is outside 1 to {MAX_PARTITIONS}"
        ));
    }
    Ok(())
}

/// Why the cluster could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// PostgreSQL could not be reached or refused a statement.
    Postgres {
        /// What was being done.
        doing: String,
        /// What PostgreSQL said.
        reason: String,
    },
    /// NATS could not be reached or JetStream refused a request.
    Nats {
        /// What was being done.
        doing: String,
        /// What NATS said.
        reason: String,
    },
    /// No JetStream stream takes the calls' subjects.
    NoStream {
        /// The stream that should.
        stream: String,
    },
    /// The schema holds no cluster: `nudge cluster init` has not run.
    NotInitialised {
        /// The PostgreSQL schema.
        schema: String,
    },
    /// The cluster was created with another partition count or prefix.
    Mismatch {
        /// What differs, in words.
        what: String,
    },
    /// Concurrent ingest kept changing the same customers.
    Contended {
        /// How many times it was tried.
        tries: u32,
    },
    /// Another worker took the partition: this one may not commit.
    LeaseLost {
        /// The partition.
        partition: u32,
        /// The epoch this worker held it at.
        epoch: i64,
    },
    /// A partition's engine state could not be restored, taken or deployed.
    Engine {
        /// The partition.
        partition: u32,
        /// What went wrong.
        reason: String,
    },
    /// What was read could not be written out (the trace's file).
    Output(String),
    /// New code that some partition's state cannot follow.
    Incompatible {
        /// Each problem, prefixed with its partition.
        problems: Vec<String>,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Postgres { doing, reason } => {
                write!(f, "PostgreSQL: {doing}: {reason}")
            }
            ClusterError::Nats { doing, reason } => write!(f, "NATS: {doing}: {reason}"),
            ClusterError::NoStream { stream } => write!(
                f,
                "JetStream has no stream `{stream}` for the calls: run `nudge cluster init`"
            ),
            ClusterError::NotInitialised { schema } => write!(
                f,
                "PostgreSQL schema `{schema}` holds no cluster: run `nudge cluster init`"
            ),
            ClusterError::Mismatch { what } => write!(f, "{what}"),
            ClusterError::Contended { tries } => write!(
                f,
                "the identity stage gave up after {tries} tries against concurrent changes to the same customers: retry shortly"
            ),
            ClusterError::LeaseLost { partition, epoch } => write!(
                f,
                "partition {partition}: the lease held at epoch {epoch} was taken by another worker; nothing was committed"
            ),
            ClusterError::Engine { partition, reason } => {
                write!(f, "partition {partition}: {reason}")
            }
            ClusterError::Output(reason) => write!(f, "writing the output: {reason}"),
            ClusterError::Incompatible { problems } => {
                f.write_str(
                    "the code cannot be deployed: the state of some partitions cannot follow it",
                )?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ClusterError {}

impl ClusterError {
    /// A PostgreSQL error while `doing`.
    pub(crate) fn pg(doing: &str, e: &tokio_postgres::Error) -> ClusterError {
        let reason = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        ClusterError::Postgres {
            doing: doing.to_string(),
            reason,
        }
    }

    /// A NATS error while `doing`.
    pub(crate) fn nats(doing: &str, e: impl fmt::Display) -> ClusterError {
        ClusterError::Nats {
            doing: doing.to_string(),
            reason: e.to_string(),
        }
    }
}

/// Opens one PostgreSQL connection; its driver runs on the current tokio runtime.
pub(crate) async fn connect_postgres(
    settings: &Settings,
) -> Result<tokio_postgres::Client, ClusterError> {
    let (client, connection) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
        .await
        .map_err(|e| ClusterError::pg("connecting", &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("warning: PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// Opens the NATS connection; `settings.nats` may list several servers,
/// separated by commas.
pub(crate) async fn connect_nats(settings: &Settings) -> Result<async_nats::Client, ClusterError> {
    let servers: Vec<&str> = settings
        .nats
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| ClusterError::nats(&format!("connecting to {}", settings.nats), e))
}
