//! The cluster's decision trace: the records each worker commits with the
//! batch that made them, read back in time order as the lines of a
//! `trace.jsonl`, for `nudge explain` and `nudge report`; and its audience
//! feeds, the membership changes committed likewise, read back as the
//! files `audiences/NAME.jsonl` a single node writes.

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

/// Writes each audience's membership changes to `dir/NAME.jsonl` (named as
/// a single node names its feeds), in time order (changes of one instant
/// in the order they were committed); returns how many files and lines.
pub async fn export_audiences(
    settings: &Settings,
    dir: &std::path::Path,
) -> Result<(usize, u64), ClusterError> {
    let pg = connect_postgres(settings).await?;
    let query = format!(
        "SELECT audience, at, id, line FROM {}
         WHERE (audience, at, id) > ($1, $2, $3) ORDER BY audience, at, id LIMIT $4",
        settings.table("audience_changes")
    );
    let output = |e: std::io::Error| ClusterError::Output(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(output)?;
    let (mut audience, mut at, mut id) = (String::new(), String::new(), 0i64);
    let mut file: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
    let (mut files, mut written) = (0usize, 0u64);
    loop {
        let rows = pg
            .query(&query, &[&audience, &at, &id, &PAGE])
            .await
            .map_err(|e| ClusterError::pg("reading audience changes", &e))?;
        for row in &rows {
            let name: &str = row.get(0);
            if file.as_ref().is_none_or(|(open, _)| open != name) {
                if let Some((_, mut f)) = file.take() {
                    f.flush().map_err(output)?;
                }
                let path = dir.join(nudge_runtime::output::audience_file(name));
                let f = std::fs::File::create(&path).map_err(output)?;
                file = Some((name.to_string(), std::io::BufWriter::new(f)));
                files += 1;
            }
            if let Some((_, f)) = file.as_mut() {
                let line: &str = row.get(3);
                writeln!(f, "{line}").map_err(output)?;
                written += 1;
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => {
                audience = last.get(0);
                at = last.get(1);
                id = last.get(2);
            }
            _ => break,
        }
    }
    if let Some((_, mut f)) = file.take() {
        f.flush().map_err(output)?;
    }
    Ok((files, written))
}
