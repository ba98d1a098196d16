//! The cluster's decision trace: the records each worker commits with the
//! batch that made them, read back in time order as the lines of a
//! `trace.jsonl`, for `nudge explain` and `nudge report`.

use std::io::Write;

use crate::{ClusterError, Settings, connect_postgres};

/// How many lines one query reads.
const PAGE: i64 = 10_000;

/// Writes every trace record of the cluster to `out`, one JSON line each,
/// ordered by their instant (records of one instant in the order they
/// were committed); returns how many.
pub async fn export(settings: &Settings, out: &mut dyn Write) -> Result<u64, ClusterError> {
    let pg = connect_postgres(settings).await?;
    let query = format!(
        "SELECT at, id, line FROM {} WHERE (at, id) > ($1, $2) ORDER BY at, id LIMIT $3",
        settings.table("trace")
    );
    let (mut at, mut id) = (String::new(), 0i64);
    let mut written = 0u64;
    loop {
        let rows = pg
            .query(&query, &[&at, &id, &PAGE])
            .await
            .map_err(|e| ClusterError::pg("reading the trace", &e))?;
        for row in &rows {
            let line: &str = row.get(2);
            writeln!(out, "{line}").map_err(|e| ClusterError::Output(e.to_string()))?;
            written += 1;
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => {
                at = last.get(0);
                id = last.get(1);
            }
            _ => return Ok(written),
        }
    }
}
