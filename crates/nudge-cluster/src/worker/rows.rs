//! A partition's engine state in PostgreSQL, as rows: the tables of the
//! single-node store's `state_*` with a `partition` column, written from
//! the engine's [`Changes`] and read back whole as [`Rows`] when a worker
//! takes the partition. Rows are the engine's own bytes (postcard); the
//! tables only key them.

use std::collections::BTreeMap;

use nudge_runtime::engine::rows::{Changes, Restore, Rows};
use tokio_postgres::{Client, Transaction};

use crate::{ClusterError, Settings};

/// The state tables, each keyed by partition first.
pub(crate) const STATE_TABLES: [&str; 9] = [
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

/// The most message ids a row of `state_message_id_chunks` holds (1 MiB
/// of fingerprints), as in the single-node store.
const IDS_PER_CHUNK: usize = 65_536;

/// The workers' tables: leases, positions, state, forwarding, send
/// intents and the decision trace (docs/cluster.md, "Partition workers").
pub(crate) fn ddl(s: &Settings) -> String {
    let t = |name: &str| s.table(name);
    format!(
        "CREATE TABLE IF NOT EXISTS {workers} (
             id text PRIMARY KEY,
             seen_at timestamptz NOT NULL);
         CREATE TABLE IF NOT EXISTS {leases} (
             partition integer PRIMARY KEY,
             owner text,
             epoch bigint NOT NULL DEFAULT 0,
             expires_at timestamptz NOT NULL DEFAULT '-infinity');
         CREATE TABLE IF NOT EXISTS {partitions} (
             partition integer PRIMARY KEY,
             applied bigint NOT NULL,
             code bigint NOT NULL,
             clock bigint NOT NULL,
             committed_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {head} (
             partition integer PRIMARY KEY,
             body bytea NOT NULL);
         CREATE TABLE IF NOT EXISTS {releases} (
             partition integer NOT NULL, release bigint NOT NULL, body bytea NOT NULL,
             PRIMARY KEY (partition, release));
         CREATE TABLE IF NOT EXISTS {customers} (
             partition integer NOT NULL, customer bigint NOT NULL, body bytea NOT NULL,
             PRIMARY KEY (partition, customer));
         CREATE TABLE IF NOT EXISTS {instances} (
             partition integer NOT NULL, slot bigint NOT NULL, body bytea NOT NULL,
             PRIMARY KEY (partition, slot));
         CREATE TABLE IF NOT EXISTS {nodes} (
             partition integer NOT NULL, node bigint NOT NULL, body bytea NOT NULL,
             PRIMARY KEY (partition, node));
         CREATE TABLE IF NOT EXISTS {names} (
             partition integer NOT NULL, name bytea NOT NULL, node bigint NOT NULL,
             PRIMARY KEY (partition, name));
         ALTER TABLE {head} ADD COLUMN IF NOT EXISTS names_stored bigint;
         CREATE TABLE IF NOT EXISTS {timers} (
             partition integer NOT NULL, seq bigint NOT NULL, due bigint NOT NULL,
             body bytea NOT NULL,
             PRIMARY KEY (partition, seq));
         CREATE INDEX IF NOT EXISTS state_timers_due ON {timers} (partition, due);
         CREATE TABLE IF NOT EXISTS {chunks} (
             partition integer NOT NULL, generation bigint NOT NULL, ids bytea NOT NULL);
         CREATE INDEX IF NOT EXISTS state_message_id_chunks_generation
             ON {chunks} (partition, generation);
         DO $$ BEGIN
             IF to_regclass('{message_ids}') IS NOT NULL THEN
                 -- Writers of the older layout wait here, then fail on the
                 -- dropped table: their batch is not committed.
                 LOCK TABLE {message_ids} IN ACCESS EXCLUSIVE MODE;
                 INSERT INTO {chunks} (partition, generation, ids)
                     SELECT partition, generation, string_agg(id, ''::bytea ORDER BY id)
                     FROM (SELECT partition, generation, id,
                                  (row_number() OVER (PARTITION BY partition, generation ORDER BY id) - 1)
                                      / {per_chunk} AS part
                           FROM {message_ids}) AS numbered
                     GROUP BY partition, generation, part;
                 DROP TABLE {message_ids};
             END IF;
         END $$;
         UPDATE {cluster} SET layout = GREATEST(layout, 2);
         CREATE TABLE IF NOT EXISTS {sent_keys} (
             partition integer NOT NULL, key bytea NOT NULL,
             PRIMARY KEY (partition, key));
         CREATE TABLE IF NOT EXISTS {forwards} (
             absorbed bigint PRIMARY KEY,
             partition integer NOT NULL,
             kept bigint NOT NULL,
             kept_partition integer NOT NULL);
         CREATE TABLE IF NOT EXISTS {handoffs} (
             absorbed bigint PRIMARY KEY,
             kept bigint NOT NULL,
             partition integer NOT NULL,
             kept_partition integer NOT NULL,
             state bytea,
             made_at timestamptz NOT NULL DEFAULT now(),
             taken_at timestamptz);
         CREATE TABLE IF NOT EXISTS {deploys} (
             seq bigserial PRIMARY KEY,
             fingerprint bigint NOT NULL,
             bundle bytea NOT NULL,
             deployed_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {intents} (
             id bigserial PRIMARY KEY,
             key text NOT NULL UNIQUE,
             partition integer NOT NULL,
             channel text NOT NULL,
             contents text NOT NULL,
             status text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sending', 'done', 'failed')),
             attempts integer NOT NULL DEFAULT 0,
             outcome text,
             claimed_by text,
             claimed_until timestamptz,
             created_at timestamptz NOT NULL DEFAULT now(),
             settled_at timestamptz);
         CREATE INDEX IF NOT EXISTS send_intents_open
             ON {intents} (id) WHERE status IN ('pending', 'sending');
         CREATE TABLE IF NOT EXISTS {trace} (
             id bigserial PRIMARY KEY,
             partition integer NOT NULL,
             at text NOT NULL,
             line text NOT NULL);
         CREATE INDEX IF NOT EXISTS trace_by_time ON {trace} (at, id);
         CREATE TABLE IF NOT EXISTS {audience_changes} (
             id bigserial PRIMARY KEY,
             partition integer NOT NULL,
             audience text NOT NULL,
             at text NOT NULL,
             line text NOT NULL);
         CREATE INDEX IF NOT EXISTS audience_changes_by_time
             ON {audience_changes} (audience, at, id);
         INSERT INTO {leases} (partition)
             SELECT generate_series(0, (SELECT partitions FROM {cluster}) - 1)
             ON CONFLICT DO NOTHING;",
        workers = t("workers"),
        leases = t("leases"),
        partitions = t("partitions"),
        head = t("state_head"),
        releases = t("state_releases"),
        customers = t("state_customers"),
        instances = t("state_instances"),
        nodes = t("state_nodes"),
        timers = t("state_timers"),
        names = t("state_node_names"),
        message_ids = t("state_message_ids"),
        chunks = t("state_message_id_chunks"),
        per_chunk = IDS_PER_CHUNK,
        sent_keys = t("state_sent_keys"),
        forwards = t("forwards"),
        handoffs = t("handoffs"),
        deploys = t("deploys"),
        audience_changes = t("audience_changes"),
        intents = t("send_intents"),
        trace = t("trace"),
        cluster = t("cluster"),
    )
}

/// Where a partition stands in PostgreSQL.
#[derive(Default)]
pub(crate) struct Stored {
    /// The engine's rows, or `None` for a partition never committed (or
    /// read lazily).
    pub rows: Option<Rows>,
    /// What a lazy read gives instead of `rows`: a restore holding what an
    /// engine with a pager needs at once.
    pub lazy: Option<Restore>,
    /// The stream sequence of the last message applied (0: none).
    pub applied: u64,
    /// The fingerprint of the code the state was last committed under.
    pub code: i64,
    /// Absorbed customers of this partition: their late calls go to the
    /// kept customer's partition.
    pub forwards: Vec<(i64, i64, u32)>,
}

fn numbered(
    rows: Vec<tokio_postgres::Row>,
    what: &str,
) -> Result<Vec<(u32, Vec<u8>)>, ClusterError> {
    rows.into_iter()
        .map(|r| Ok((number(r.get(0), what)?, r.get(1))))
        .collect()
}

fn fingerprint(bytes: &[u8], what: &str) -> Result<u128, ClusterError> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| ClusterError::Postgres {
            doing: format!("reading the partition's {what}"),
            reason: format!("a fingerprint of {} bytes", bytes.len()),
        })
}

/// Reads partition `partition`'s state and position. With `lazy`, the
/// customers' rows are left in PostgreSQL (their numbers are read), and
/// the identities' texts named there: an engine with a pager reads each
/// back when first needed.
pub(crate) async fn read(
    client: &Client,
    s: &Settings,
    partition: u32,
    lazy: bool,
) -> Result<Stored, ClusterError> {
    let p = partition as i32;
    let pg = |e: tokio_postgres::Error| ClusterError::pg("reading a partition's state", &e);
    let mut out = Stored::default();
    if let Some(row) = client
        .query_opt(
            &format!(
                "SELECT applied, code FROM {} WHERE partition = $1",
                s.table("partitions")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?
    {
        let applied: i64 = row.get(0);
        out.applied = applied.max(0) as u64;
        out.code = row.get(1);
    }
    for row in client
        .query(
            &format!(
                "SELECT absorbed, kept, kept_partition FROM {} WHERE partition = $1",
                s.table("forwards")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?
    {
        let kept_partition: i32 = row.get(2);
        out.forwards
            .push((row.get(0), row.get(1), kept_partition.max(0) as u32));
    }
    let head = client
        .query_opt(
            &format!(
                "SELECT body, names_stored FROM {} WHERE partition = $1",
                s.table("state_head")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?;
    let Some(head) = head else {
        return Ok(out);
    };
    let keyed = |table: &str, key: &str| {
        format!(
            "SELECT {key}, body FROM {} WHERE partition = $1 ORDER BY {key}",
            s.table(table)
        )
    };
    let releases = client
        .query(&keyed("state_releases", "release"), &[&p])
        .await
        .map_err(pg)?
        .into_iter()
        .map(|r| r.get::<_, Vec<u8>>(1))
        .collect();
    // Clusters from before the names were kept have none.
    let names_stored: Option<i64> = head.get(1);
    let names_stored =
        u32::try_from(names_stored.unwrap_or(0)).map_err(|_| ClusterError::Postgres {
            doing: "reading the partition's state".into(),
            reason: format!("it says {names_stored:?} identities are named"),
        })?;
    if lazy {
        let mut r = Restore::new(head.get(0), releases).map_err(damaged)?;
        r.names_stored(names_stored);
        restore_lazily(client, s, p, &mut r).await?;
        out.lazy = Some(r);
        return Ok(out);
    }
    let customers = numbered(
        client
            .query(&keyed("state_customers", "customer"), &[&p])
            .await
            .map_err(pg)?,
        "customers",
    )?;
    let instances = numbered(
        client
            .query(&keyed("state_instances", "slot"), &[&p])
            .await
            .map_err(pg)?,
        "instances",
    )?;
    let nodes = numbered(
        client
            .query(&keyed("state_nodes", "node"), &[&p])
            .await
            .map_err(pg)?,
        "identity nodes",
    )?;
    let timers = client
        .query(&keyed("state_timers", "seq"), &[&p])
        .await
        .map_err(pg)?
        .into_iter()
        .map(|r| r.get::<_, Vec<u8>>(1))
        .collect();
    let message_ids = message_id_chunks(client, s, p).await?;
    let sent_keys = sent_keys(client, s, p).await?;
    out.rows = Some(Rows {
        head: head.get(0),
        releases,
        customers,
        // A worker without a budget holds its partition's customers in memory.
        stored: Vec::new(),
        instances,
        nodes,
        // And its timers and identities' texts.
        timers,
        timers_left: false,
        texts_left: false,
        names_stored: Some(names_stored),
        message_ids,
        sent_keys,
    });
    Ok(out)
}

/// A restore that reads what PostgreSQL holds of partition `p` beyond its
/// head and releases as the single-node store's lazy restore does: the
/// customers' numbers, the identity nodes' links (their texts named in
/// `state_node_names` stay there), the timers due within the hour past
/// the stored clock (the others are counted), the remembered message ids
/// and sent keys. An engine with a pager reads the rest back when needed.
async fn restore_lazily(
    client: &Client,
    s: &Settings,
    p: i32,
    r: &mut Restore,
) -> Result<(), ClusterError> {
    let pg = |e: tokio_postgres::Error| ClusterError::pg("reading a partition's state", &e);
    let count = |sql: String| async move {
        let n: Option<i64> = client.query_one(&sql, &[&p]).await.map_err(pg)?.get(0);
        Ok::<_, ClusterError>(usize::try_from(n.unwrap_or(0)).unwrap_or(0))
    };
    // Nodes are numbered from 0 without a gap (the restore checks it).
    r.reserve(
        count(format!(
            "SELECT max(node) + 1 FROM {} WHERE partition = $1",
            s.table("state_nodes")
        ))
        .await?,
        count(format!(
            "SELECT count(*) FROM {} WHERE partition = $1",
            s.table("state_sent_keys")
        ))
        .await?,
    );
    r.leave_texts_in_store();
    let keyed = |table: &str, key: &str| {
        format!(
            "SELECT {key}, body FROM {} WHERE partition = $1 ORDER BY {key}",
            s.table(table)
        )
    };
    for row in client
        .query(
            &format!(
                "SELECT customer FROM {} WHERE partition = $1 ORDER BY customer",
                s.table("state_customers")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?
    {
        r.stored(number(row.get(0), "customers")?)
            .map_err(damaged)?;
    }
    for row in client
        .query(&keyed("state_instances", "slot"), &[&p])
        .await
        .map_err(pg)?
    {
        r.instance(number(row.get(0), "instances")?, row.get(1))
            .map_err(damaged)?;
    }
    for row in client
        .query(&keyed("state_nodes", "node"), &[&p])
        .await
        .map_err(pg)?
    {
        r.node(number(row.get(0), "identity nodes")?, row.get(1))
            .map_err(damaged)?;
    }
    // Only the timers due soon: the engine reads the others back by due
    // time before its clock reaches them.
    let from = r.leave_timers_in_store();
    for row in client
        .query(
            &format!(
                "SELECT body FROM {} WHERE partition = $1 AND due < $2 ORDER BY seq",
                s.table("state_timers")
            ),
            &[&p, &from],
        )
        .await
        .map_err(pg)?
    {
        r.timer(row.get(0)).map_err(damaged)?;
    }
    let later: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE partition = $1 AND due >= $2",
                s.table("state_timers")
            ),
            &[&p, &from],
        )
        .await
        .map_err(pg)?
        .get(0);
    r.timers_in_store(usize::try_from(later).unwrap_or(0));
    // Counted first, so that each id then goes straight where it belongs.
    let ids = message_id_chunks(client, s, p).await?;
    for &(id, generation) in &ids {
        r.count_message_id(id, generation);
    }
    for (id, generation) in ids {
        r.message_id(id, generation);
    }
    for key in sent_keys(client, s, p).await? {
        r.sent_key(key);
    }
    Ok(())
}

/// Partition `p`'s remembered message ids with their generation.
async fn message_id_chunks(
    client: &Client,
    s: &Settings,
    p: i32,
) -> Result<Vec<(u128, u64)>, ClusterError> {
    let mut out = Vec::new();
    for r in client
        .query(
            &format!(
                "SELECT ids, generation FROM {} WHERE partition = $1",
                s.table("state_message_id_chunks")
            ),
            &[&p],
        )
        .await
        .map_err(|e| ClusterError::pg("reading a partition's state", &e))?
    {
        let ids: &[u8] = r.get(0);
        let generation: i64 = r.get(1);
        if !ids.len().is_multiple_of(16) {
            return Err(ClusterError::Postgres {
                doing: "reading the partition's message ids".into(),
                reason: format!("a chunk of {} bytes, not whole ids", ids.len()),
            });
        }
        for id in ids.chunks_exact(16) {
            out.push((fingerprint(id, "message ids")?, generation.max(0) as u64));
        }
    }
    Ok(out)
}

/// Partition `p`'s fingerprints of every send made (layouts 6 and before).
async fn sent_keys(client: &Client, s: &Settings, p: i32) -> Result<Vec<u128>, ClusterError> {
    let mut out = Vec::new();
    for r in client
        .query(
            &format!(
                "SELECT key FROM {} WHERE partition = $1 ORDER BY key",
                s.table("state_sent_keys")
            ),
            &[&p],
        )
        .await
        .map_err(|e| ClusterError::pg("reading a partition's state", &e))?
    {
        out.push(fingerprint(r.get(0), "sent keys")?);
    }
    Ok(out)
}

/// A state row's number as the engine numbers it.
fn number(n: i64, what: &str) -> Result<u32, ClusterError> {
    u32::try_from(n).map_err(|_| ClusterError::Postgres {
        doing: format!("reading the partition's {what}"),
        reason: format!("a row is numbered {n}"),
    })
}

/// A state row the engine cannot read.
fn damaged(e: nudge_runtime::engine::checkpoint::CheckpointError) -> ClusterError {
    ClusterError::Postgres {
        doing: "restoring a partition's state".into(),
        reason: e.to_string(),
    }
}

/// Writes one take of the engine's changes for `partition`, in `tx`.
pub(crate) async fn write(
    tx: &Transaction<'_>,
    s: &Settings,
    partition: u32,
    c: Changes,
) -> Result<(), ClusterError> {
    let p = partition as i32;
    let pg = |e: tokio_postgres::Error| ClusterError::pg("writing a partition's state", &e);
    if c.full {
        for table in STATE_TABLES {
            tx.execute(
                &format!("DELETE FROM {} WHERE partition = $1", s.table(table)),
                &[&p],
            )
            .await
            .map_err(pg)?;
        }
    }
    tx.execute(
        &format!(
            "INSERT INTO {} (partition, body, names_stored) VALUES ($1, $2, $3)
             ON CONFLICT (partition) DO UPDATE SET body = excluded.body,
                 names_stored = excluded.names_stored",
            s.table("state_head")
        ),
        &[&p, &c.head, &i64::from(c.names_stored)],
    )
    .await
    .map_err(pg)?;
    if let Some(releases) = c.releases {
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE partition = $1",
                s.table("state_releases")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?;
        let rows = releases
            .into_iter()
            .enumerate()
            .map(|(i, b)| (i as i64, Some(b)))
            .collect();
        keyed(tx, s, "state_releases", "release", p, rows).await?;
    }
    let widen = |rows: Vec<(u32, Option<Vec<u8>>)>| {
        rows.into_iter()
            .map(|(n, b)| (i64::from(n), b))
            .collect::<Vec<_>>()
    };
    keyed(tx, s, "state_customers", "customer", p, widen(c.customers)).await?;
    keyed(tx, s, "state_instances", "slot", p, widen(c.instances)).await?;
    let nodes = c
        .nodes
        .into_iter()
        .map(|(n, b)| (i64::from(n), Some(b)))
        .collect();
    keyed(tx, s, "state_nodes", "node", p, nodes).await?;
    if !c.names.is_empty() {
        let (names, numbers): (Vec<Vec<u8>>, Vec<i64>) = c
            .names
            .into_iter()
            .map(|(name, n)| (name, i64::from(n)))
            .unzip();
        tx.execute(
            &format!(
                "INSERT INTO {} (partition, name, node)
                 SELECT $1, n, k FROM unnest($2::bytea[], $3::bigint[]) AS u(n, k)
                 ON CONFLICT (partition, name) DO UPDATE SET node = excluded.node",
                s.table("state_node_names")
            ),
            &[&p, &names, &numbers],
        )
        .await
        .map_err(pg)?;
    }
    // Timers: set, then fired (a timer can be both within one take).
    let mut set: BTreeMap<i64, (i64, Vec<u8>)> = BTreeMap::new();
    for (seq, due, body) in c.timers {
        set.insert(seq as i64, (due, body));
    }
    if !set.is_empty() {
        let mut seqs = Vec::with_capacity(set.len());
        let mut dues = Vec::with_capacity(set.len());
        let mut bodies = Vec::with_capacity(set.len());
        for (seq, (due, body)) in set {
            seqs.push(seq);
            dues.push(due);
            bodies.push(body);
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (partition, seq, due, body)
                 SELECT $1, q, d, b FROM unnest($2::bigint[], $3::bigint[], $4::bytea[]) AS u(q, d, b)
                 ON CONFLICT (partition, seq) DO UPDATE SET due = excluded.due, body = excluded.body",
                s.table("state_timers")
            ),
            &[&p, &seqs, &dues, &bodies],
        )
        .await
        .map_err(pg)?;
    }
    if !c.fired.is_empty() {
        let fired: Vec<i64> = c.fired.iter().map(|&q| q as i64).collect();
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE partition = $1 AND seq = ANY($2)",
                s.table("state_timers")
            ),
            &[&p, &fired],
        )
        .await
        .map_err(pg)?;
    }
    if !c.message_ids.is_empty() {
        let (chunks, generations) = chunked(&c.message_ids);
        tx.execute(
            &format!(
                "INSERT INTO {} (partition, generation, ids)
                 SELECT $1, g, i FROM unnest($2::bigint[], $3::bytea[]) AS u(g, i)",
                s.table("state_message_id_chunks")
            ),
            &[&p, &generations, &chunks],
        )
        .await
        .map_err(pg)?;
    }
    if let Some(before) = c.forget_ids_before {
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE partition = $1 AND generation < $2",
                s.table("state_message_id_chunks")
            ),
            &[&p, &(before as i64)],
        )
        .await
        .map_err(pg)?;
    }
    if c.forget_sent_keys {
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE partition = $1",
                s.table("state_sent_keys")
            ),
            &[&p],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// Message ids as rows of `state_message_id_chunks`: for each generation,
/// its ids' fingerprints end to end, at most [`IDS_PER_CHUNK`] to a row
/// (a row per id made a partition of ten million remembered ids ten
/// million rows to read at a takeover). Returns the chunks and their
/// generations.
fn chunked(ids: &[(u128, u64)]) -> (Vec<Vec<u8>>, Vec<i64>) {
    let mut by_generation: BTreeMap<u64, Vec<u128>> = BTreeMap::new();
    for &(id, generation) in ids {
        by_generation.entry(generation).or_default().push(id);
    }
    let (mut chunks, mut generations) = (Vec::new(), Vec::new());
    for (generation, ids) in by_generation {
        for part in ids.chunks(IDS_PER_CHUNK) {
            chunks.push(part.iter().flat_map(|id| id.to_be_bytes()).collect());
            generations.push(generation as i64);
        }
    }
    (chunks, generations)
}

/// Writes rows keyed by a number: a body replaces the row, `None` removes
/// it; the last word on each key stands.
async fn keyed(
    tx: &Transaction<'_>,
    s: &Settings,
    table: &str,
    key: &str,
    partition: i32,
    rows: Vec<(i64, Option<Vec<u8>>)>,
) -> Result<(), ClusterError> {
    if rows.is_empty() {
        return Ok(());
    }
    let pg = |e: tokio_postgres::Error| ClusterError::pg("writing a partition's state", &e);
    let mut last: BTreeMap<i64, Option<Vec<u8>>> = BTreeMap::new();
    for (k, b) in rows {
        last.insert(k, b);
    }
    let mut put_keys = Vec::new();
    let mut put_bodies = Vec::new();
    let mut gone = Vec::new();
    for (k, b) in last {
        match b {
            Some(b) => {
                put_keys.push(k);
                put_bodies.push(b);
            }
            None => gone.push(k),
        }
    }
    let table = s.table(table);
    if !put_keys.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {table} (partition, {key}, body)
                 SELECT $1, k, b FROM unnest($2::bigint[], $3::bytea[]) AS u(k, b)
                 ON CONFLICT (partition, {key}) DO UPDATE SET body = excluded.body"
            ),
            &[&partition, &put_keys, &put_bodies],
        )
        .await
        .map_err(pg)?;
    }
    if !gone.is_empty() {
        tx.execute(
            &format!("DELETE FROM {table} WHERE partition = $1 AND {key} = ANY($2)"),
            &[&partition, &gone],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}
