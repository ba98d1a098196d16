//! Keeping the outbox file exactly-once across crashes.
//!
//! A message is marked done only after the outbox was flushed and synced,
//! so after a crash the file can hold, past the last done message, whole
//! lines of messages still pending and one partial line. The partial line is
//! cut off, and pending messages whose lines are there are marked done
//! instead of being written again.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Cuts a partial last line (one without its newline) off the outbox at
/// `path`; a missing file is left missing. Returns the bytes removed.
pub fn repair(path: &Path) -> io::Result<u64> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Look back in chunks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        // At most `buf.len()` bytes: `start` is at most that far before `end`.
        let chunk = buf.get_mut(..(end - start) as usize).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
    }
    Ok(len)
}

/// The idempotency keys of the outbox lines at `path` that `wanted`
/// accepts; lines that are not messages are skipped.
pub fn keys_present(path: &Path, wanted: impl Fn(&str) -> bool) -> io::Result<HashSet<String>> {
    let mut found = HashSet::new();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        idempotency_key: std::borrow::Cow<'a, str>,
    }
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if let Ok(k) = serde_json::from_slice::<Key<'_>>(&line)
            && wanted(&k.idempotency_key)
        {
            found.insert(k.idempotency_key.into_owned());
        }
    }
    Ok(found)
}
