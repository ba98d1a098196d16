//! Deploys through the log: new code reaches every partition as a record in
//! its own log, so each partition's engine changes code between the same
//! two calls whichever worker holds it, and a partition taken over later
//! finds the record where it left off.
//!
//! `deploy` first tries the code on every partition's committed state (a
//! partition that cannot follow refuses the whole deploy, with its
//! problems), then stores the bundle in `deploys` (numbered, with its
//! fingerprint) and publishes one deploy record per partition
//! (`Nudge-Kind: deploy`, `Nudge-Deploy: SEQ`, deduplicated by
//! `nudge-deploy:SEQ:PARTITION`).

use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink};

use crate::log::{Log, Outgoing};
use crate::worker::{ensure_tables, fingerprint_of, rows};
use crate::{ClusterError, Settings, connect_postgres};

/// What a deploy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The deploy's number in `deploys`.
    pub seq: i64,
    /// The code's fingerprint (what `partitions.code` shows once applied).
    pub fingerprint: i64,
    /// Partitions whose committed state was tried and can follow.
    pub checked: u32,
    /// Partitions told (every one).
    pub partitions: u32,
}

/// Deploys `bundle` to every partition through its log, once every
/// partition's committed state has been shown to follow it; refuses with
/// [`ClusterError::Incompatible`] otherwise, publishing nothing.
pub async fn deploy(settings: &Settings, bundle: &Bundle) -> Result<Deployed, ClusterError> {
    let mut pg = connect_postgres(settings).await?;
    crate::init::check_recorded(&pg, settings).await?;
    ensure_tables(&mut pg, settings).await?;
    let log = Log::connect(settings).await?;

    let mut problems = Vec::new();
    let mut checked = 0;
    for partition in 0..settings.partitions {
        let stored = rows::read(&pg, settings, partition, false).await?;
        let Some(state) = stored.rows else {
            continue;
        };
        let arena = Bundles::new();
        let mut engine = Engine::new(bundle, MemorySink::default(), Config::default(), i64::MIN);
        let engine_err = |reason: String| ClusterError::Engine { partition, reason };
        engine
            .restore_rows(state, bundle, &arena)
            .map_err(|e| engine_err(format!("restoring its state to try the code: {e}")))?;
        if let Err(e) = engine.deploy(bundle, &arena) {
            problems.push(format!("partition {partition}: {e}"));
        }
        checked += 1;
    }
    if !problems.is_empty() {
        return Err(ClusterError::Incompatible { problems });
    }

    let fingerprint = fingerprint_of(bundle);
    let row = pg
        .query_one(
            &format!(
                "INSERT INTO {} (fingerprint, bundle) VALUES ($1, $2) RETURNING seq",
                settings.table("deploys")
            ),
            &[&fingerprint, &bundle.encode()],
        )
        .await
        .map_err(|e| ClusterError::pg("recording the deploy", &e))?;
    let seq: i64 = row.get(0);
    let records: Vec<Outgoing> = (0..settings.partitions)
        .map(|partition| Outgoing::Deploy { partition, seq })
        .collect();
    log.publish(&records).await?;
    Ok(Deployed {
        seq,
        fingerprint,
        checked,
        partitions: settings.partitions,
    })
}

/// The bundle of deploy `seq`, decoded, with its fingerprint.
pub(crate) async fn bundle_of(
    client: &tokio_postgres::Client,
    settings: &Settings,
    seq: i64,
) -> Result<(Bundle, i64), ClusterError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT bundle, fingerprint FROM {} WHERE seq = $1",
                settings.table("deploys")
            ),
            &[&seq],
        )
        .await
        .map_err(|e| ClusterError::pg("reading a deploy", &e))?
        .ok_or_else(|| ClusterError::Postgres {
            doing: "reading a deploy".into(),
            reason: format!("deploy {seq} is not in `deploys`"),
        })?;
    let bytes: Vec<u8> = row.get(0);
    let bundle = Bundle::decode(&bytes).map_err(|e| ClusterError::Postgres {
        doing: format!("reading deploy {seq}"),
        reason: format!("its bundle cannot be read: {e}"),
    })?;
    Ok((bundle, row.get(1)))
}

/// Whether any deploy was made through the log: then a worker never puts
/// its own code on a partition (the log says what each one runs).
pub(crate) async fn any(
    client: &tokio_postgres::Client,
    settings: &Settings,
) -> Result<bool, ClusterError> {
    let row = client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {})",
                settings.table("deploys")
            ),
            &[],
        )
        .await
        .map_err(|e| ClusterError::pg("reading the deploys", &e))?;
    Ok(row.get(0))
}
