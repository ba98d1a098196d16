//! Creating a cluster: the PostgreSQL schema and the JetStream stream,
//! both idempotent, and the partition count recorded once and for all.

use std::time::Duration;

use tokio_postgres::Client;

use crate::{ClusterError, Settings, connect_nats, connect_postgres};

/// The layout of the schema this build writes; recorded with the cluster.
/// Layout 2 keeps the remembered message ids in chunks
/// (`state_message_id_chunks`); a cluster of layout 1 is moved onto it
/// when a worker of this build first connects.
pub const LAYOUT: i32 = 2;

/// What `init` found or made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialised {
    /// Whether the cluster was recorded by this call (else it was already).
    pub created: bool,
    /// The partition count, as recorded.
    pub partitions: u32,
    /// The stream that holds the calls.
    pub stream: String,
    /// The PostgreSQL schema.
    pub schema: String,
}

/// The schema's tables; see docs/cluster.md for what each holds.
fn ddl(s: &Settings) -> String {
    let t = |name: &str| s.table(name);
    format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS {cluster} (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             partitions integer NOT NULL,
             prefix text NOT NULL,
             layout integer NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now());
         CREATE SEQUENCE IF NOT EXISTS {ids};
         CREATE TABLE IF NOT EXISTS {customers} (
             id bigint PRIMARY KEY,
             partition integer NOT NULL,
             user_id text,
             merged_into bigint,
             merged_at timestamptz,
             created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {identities} (
             kind smallint NOT NULL,
             value text NOT NULL,
             customer bigint NOT NULL,
             PRIMARY KEY (kind, value));
         CREATE INDEX IF NOT EXISTS identities_by_customer ON {identities} (customer);
         CREATE TABLE IF NOT EXISTS {merges} (
             absorbed bigint PRIMARY KEY,
             kept bigint NOT NULL,
             absorbed_partition integer NOT NULL,
             kept_partition integer NOT NULL,
             at timestamptz NOT NULL,
             message_id text,
             published boolean NOT NULL DEFAULT false);
         CREATE INDEX IF NOT EXISTS merges_unpublished ON {merges} (at) WHERE NOT published;
         ALTER TABLE {merges} ADD COLUMN IF NOT EXISTS call_at bigint;
         ALTER TABLE {merges} ADD COLUMN IF NOT EXISTS kinds smallint[];
         ALTER TABLE {merges} ADD COLUMN IF NOT EXISTS ids text[];",
        schema = s.schema,
        cluster = t("cluster"),
        ids = t("customer_ids"),
        customers = t("customers"),
        identities = t("identities"),
        merges = t("merges"),
    )
}

/// Creates what is missing of the cluster (the schema and its tables, the
/// stream) and records its partition count; refuses settings whose
/// partition count or prefix differ from the recorded ones.
pub async fn init(settings: &Settings) -> Result<Initialised, ClusterError> {
    settings
        .check()
        .map_err(|what| ClusterError::Mismatch { what })?;
    let mut client = connect_postgres(settings).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| ClusterError::pg("starting a transaction", &e))?;
    // Two `init`s at once would race on the catalog: the second waits.
    tx.execute("SELECT pg_advisory_xact_lock(1853189991, 1)", &[])
        .await
        .map_err(|e| ClusterError::pg("locking for init", &e))?;
    tx.batch_execute(&ddl(settings))
        .await
        .map_err(|e| ClusterError::pg("creating the schema", &e))?;
    let created = tx
        .execute(
            &format!(
                "INSERT INTO {} (partitions, prefix, layout) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                settings.table("cluster")
            ),
            &[
                &i32::try_from(settings.partitions).unwrap_or(i32::MAX),
                &settings.prefix,
                &LAYOUT,
            ],
        )
        .await
        .map_err(|e| ClusterError::pg("recording the cluster", &e))?
        == 1;
    tx.batch_execute(&crate::worker::rows::ddl(settings))
        .await
        .map_err(|e| ClusterError::pg("creating the workers' tables", &e))?;
    tx.commit()
        .await
        .map_err(|e| ClusterError::pg("committing the schema", &e))?;
    check_recorded(&client, settings).await?;
    ensure_stream(settings).await?;
    Ok(Initialised {
        created,
        partitions: settings.partitions,
        stream: settings.stream(),
        schema: settings.schema.clone(),
    })
}

/// Checks that the schema records a cluster with `settings`' partition
/// count and prefix: a different count would send customers to other
/// partitions than the ones their state is in.
pub(crate) async fn check_recorded(
    client: &Client,
    settings: &Settings,
) -> Result<(), ClusterError> {
    let not_there = || ClusterError::NotInitialised {
        schema: settings.schema.clone(),
    };
    let row = client
        .query_opt(
            &format!(
                "SELECT partitions, prefix, layout FROM {}",
                settings.table("cluster")
            ),
            &[],
        )
        .await
        .map_err(|e| match e.code() {
            Some(c)
                if *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE
                    || *c == tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME =>
            {
                not_there()
            }
            _ => ClusterError::pg("reading the cluster's settings", &e),
        })?
        .ok_or_else(not_there)?;
    let (partitions, prefix, layout): (i32, String, i32) = (row.get(0), row.get(1), row.get(2));
    if i64::from(partitions) != i64::from(settings.partitions) {
        return Err(ClusterError::Mismatch {
            what: format!(
                "the cluster in schema `{}` was created with {partitions} partitions, and nudge.toml says {}: the partition count cannot change (customers would move away from their state)",
                settings.schema, settings.partitions
            ),
        });
    }
    if prefix != settings.prefix {
        return Err(ClusterError::Mismatch {
            what: format!(
                "the cluster in schema `{}` was created with prefix `{prefix}`, and nudge.toml says `{}`",
                settings.schema, settings.prefix
            ),
        });
    }
    if layout > LAYOUT {
        return Err(ClusterError::Mismatch {
            what: format!(
                "the cluster in schema `{}` has layout {layout}, newer than this build's {LAYOUT}: upgrade nudge",
                settings.schema
            ),
        });
    }
    Ok(())
}

/// Creates the stream when missing; refuses one that does not take the
/// calls' subjects.
async fn ensure_stream(settings: &Settings) -> Result<(), ClusterError> {
    use async_nats::jetstream::stream::{Config, StorageType};
    let client = connect_nats(settings).await?;
    let js = async_nats::jetstream::new(client);
    let subjects = vec![
        format!("{}.calls.*", settings.prefix),
        settings.dead_subject(),
    ];
    let mut stream = js
        .get_or_create_stream(Config {
            name: settings.stream(),
            subjects: subjects.clone(),
            storage: StorageType::File,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas.max(1),
            ..Config::default()
        })
        .await
        .map_err(|e| ClusterError::nats(&format!("creating stream `{}`", settings.stream()), e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| ClusterError::nats("reading the stream", e))?;
    if subjects.iter().any(|s| !info.config.subjects.contains(s)) {
        return Err(ClusterError::Mismatch {
            what: format!(
                "stream `{}` exists with subjects {:?}, not {:?}: it belongs to something else",
                settings.stream(),
                info.config.subjects,
                subjects
            ),
        });
    }
    Ok(())
}

/// Removes the cluster: the stream and the schema with everything in it.
/// For tests and for taking a trial cluster down; nothing asks twice.
pub async fn destroy(settings: &Settings) -> Result<(), ClusterError> {
    let client = connect_postgres(settings).await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            settings.schema
        ))
        .await
        .map_err(|e| ClusterError::pg("dropping the schema", &e))?;
    let nats = connect_nats(settings).await?;
    let js = async_nats::jetstream::new(nats);
    // A stream that is not there is already gone.
    let _ = tokio::time::timeout(Duration::from_secs(5), js.delete_stream(settings.stream())).await;
    Ok(())
}
