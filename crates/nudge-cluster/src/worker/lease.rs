//! Partition leases in PostgreSQL, with an epoch fence.
//!
//! Each partition has one row in `leases`: its owner, an epoch that grows
//! by one every time the partition changes hands, and when the lease
//! expires. A worker claims free or expired partitions (up to a fair share
//! of the live workers), renews the ones it holds, and commits a batch only
//! while the row still names it at the epoch it took the partition with
//! ([`fence`], in the batch's own transaction): a worker whose lease was
//! taken cannot commit, however late it wakes up.

use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use crate::{ClusterError, Settings};

/// A partition held at an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease {
    /// The partition.
    pub partition: u32,
    /// The epoch it was taken at.
    pub epoch: i64,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Notes that worker `id` is alive (the count of live workers sets each
/// one's fair share).
pub(crate) async fn heartbeat(client: &Client, s: &Settings, id: &str) -> Result<(), ClusterError> {
    client
        .execute(
            &format!(
                "INSERT INTO {} (id, seen_at) VALUES ($1, now())
                 ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                s.table("workers")
            ),
            &[&id],
        )
        .await
        .map_err(|e| ClusterError::pg("noting the worker alive", &e))?;
    Ok(())
}

/// Removes worker `id` from the live workers (it stops).
pub(crate) async fn leave(client: &Client, s: &Settings, id: &str) -> Result<(), ClusterError> {
    client
        .execute(
            &format!("DELETE FROM {} WHERE id = $1", s.table("workers")),
            &[&id],
        )
        .await
        .map_err(|e| ClusterError::pg("removing the worker", &e))?;
    Ok(())
}

/// How many partitions each live worker should hold: the partition count
/// over the workers seen within `lease`, rounded up.
pub(crate) async fn fair_share(
    client: &Client,
    s: &Settings,
    lease: Duration,
) -> Result<usize, ClusterError> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE seen_at > now() - $1::float8 * interval '1 millisecond'",
                s.table("workers")
            ),
            &[&millis(lease)],
        )
        .await
        .map_err(|e| ClusterError::pg("counting the live workers", &e))?;
    let live: i64 = row.get(0);
    let live = live.max(1) as usize;
    Ok((s.partitions as usize).div_ceil(live))
}

/// Claims up to `n` partitions that are free or whose lease expired, for
/// worker `id`, each at its next epoch.
pub async fn claim(
    client: &Client,
    s: &Settings,
    id: &str,
    n: usize,
    lease: Duration,
) -> Result<Vec<Lease>, ClusterError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "UPDATE {t} l SET owner = $1, epoch = l.epoch + 1,
                     expires_at = now() + $2::float8 * interval '1 millisecond'
                 FROM (SELECT partition FROM {t}
                       WHERE owner IS NULL OR expires_at < now()
                       ORDER BY partition LIMIT $3
                       FOR UPDATE SKIP LOCKED) free
                 WHERE l.partition = free.partition
                 RETURNING l.partition, l.epoch",
                t = s.table("leases")
            ),
            &[&id, &millis(lease), &(n as i64)],
        )
        .await
        .map_err(|e| ClusterError::pg("claiming partitions", &e))?;
    let mut out: Vec<Lease> = rows
        .into_iter()
        .map(|r| {
            let p: i32 = r.get(0);
            Lease {
                partition: p.max(0) as u32,
                epoch: r.get(1),
            }
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Extends the leases `held` for `lease` from now; returns the ones still
/// held (a lease another worker took is not extended).
pub async fn renew(
    client: &Client,
    s: &Settings,
    id: &str,
    held: &[Lease],
    lease: Duration,
) -> Result<Vec<Lease>, ClusterError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let partitions: Vec<i32> = held.iter().map(|l| l.partition as i32).collect();
    let epochs: Vec<i64> = held.iter().map(|l| l.epoch).collect();
    let rows = client
        .query(
            &format!(
                "UPDATE {t} l SET expires_at = now() + $2::float8 * interval '1 millisecond'
                 FROM unnest($3::integer[], $4::bigint[]) AS h(p, e)
                 WHERE l.partition = h.p AND l.epoch = h.e AND l.owner = $1
                 RETURNING l.partition, l.epoch",
                t = s.table("leases")
            ),
            &[&id, &millis(lease), &partitions, &epochs],
        )
        .await
        .map_err(|e| ClusterError::pg("renewing leases", &e))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let p: i32 = r.get(0);
            Lease {
                partition: p.max(0) as u32,
                epoch: r.get(1),
            }
        })
        .collect())
}

/// Gives a lease up at once, so that another worker can take the
/// partition without waiting for it to expire.
pub async fn release(
    client: &Client,
    s: &Settings,
    id: &str,
    lease: Lease,
) -> Result<(), ClusterError> {
    client
        .execute(
            &format!(
                "UPDATE {} SET owner = NULL, expires_at = '-infinity'
                 WHERE partition = $1 AND owner = $2 AND epoch = $3",
                s.table("leases")
            ),
            &[&(lease.partition as i32), &id, &lease.epoch],
        )
        .await
        .map_err(|e| ClusterError::pg("releasing a lease", &e))?;
    Ok(())
}

/// The fence: fails unless worker `id` still holds `lease` at its epoch,
/// and locks the lease row until `tx` ends, so that no other worker can
/// take the partition while the commit is under way.
pub(crate) async fn fence(
    tx: &Transaction<'_>,
    s: &Settings,
    id: &str,
    lease: Lease,
) -> Result<(), ClusterError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT 1 FROM {} WHERE partition = $1 AND owner = $2 AND epoch = $3 FOR UPDATE",
                s.table("leases")
            ),
            &[&(lease.partition as i32), &id, &lease.epoch],
        )
        .await
        .map_err(|e| ClusterError::pg("checking the lease", &e))?;
    match row {
        Some(_) => Ok(()),
        None => Err(ClusterError::LeaseLost {
            partition: lease.partition,
            epoch: lease.epoch,
        }),
    }
}
