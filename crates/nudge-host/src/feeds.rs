//! The host's output files: the decision trace and the audience feeds of a
//! durable run (cut back to a checkpoint on restart), and the dead letters.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::AudienceSync;
use nudge_runtime::engine::Sink;
use nudge_runtime::output::{AudienceSyncer, Synced, audience_file};
use nudge_runtime::record::{DeliveryRecord, Membership, Record};
use nudge_runtime::replay::DeadLetter;

use crate::durable;

/// Rewrites the dead-letter file with every refused line of the history.
pub fn write_dead_letters(path: &Path, dead: &[DeadLetter]) -> Result<(), String> {
    let mut f = BufWriter::new(create_file(path)?);
    let err = |e: std::io::Error| format!("writing {}: {e}", path.display());
    for d in dead {
        let line = serde_json::to_string(d).map_err(|e| e.to_string())?;
        writeln!(f, "{line}").map_err(err)?;
    }
    f.flush().map_err(err)
}

/// The trace and audience feeds of a durable run. They are derived output:
/// a run that starts from the store's checkpoint cuts them back to where
/// they stood when it was taken and appends what the calls after it
/// produce; a run that replays the whole history rewrites them in full.
pub struct Feeds {
    trace: BufWriter<File>,
    audiences_dir: PathBuf,
    audiences: HashMap<String, BufWriter<File>>,
    error: Option<String>,
    /// Where the delivery records the trace kept from before a restart are:
    /// its first bytes, read only when asked for (see
    /// [`crate::durable::Feed::take_recorded`]): a restart whose ledger
    /// tells which outcomes the cut trace lost never reads them.
    recorded: Option<(PathBuf, u64)>,
    /// The ad platform membership changes also go to. Changes replayed
    /// after a checkpoint are sent again; the platforms take a repeated
    /// add or remove as no change.
    sync: Option<AudienceSyncer>,
}

/// Where the feeds stood at a checkpoint: their lengths in bytes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct FeedMarks {
    /// The trace's length.
    trace: u64,
    /// Each audience feed's length, by file name.
    audiences: std::collections::BTreeMap<String, u64>,
}

impl Feeds {
    /// The feeds for a run over `store`, and the checkpoint it starts from:
    /// the store's, when the feeds on disk still hold what they held when it
    /// was taken (else the history is replayed in full and they are
    /// rewritten; or, when the log was compacted and cannot be replayed,
    /// they start afresh from the checkpoint).
    pub fn open(
        store: &nudge_store::Store,
        trace: &Path,
        audiences_dir: &Path,
    ) -> Result<(Feeds, Option<nudge_store::Saved>), String> {
        let with_hint = |e: nudge_store::StoreError| match e.hint() {
            Some(h) => format!("{e}\nhelp: {h}"),
            None => e.to_string(),
        };
        let saved = store.usable_checkpoint().map_err(with_hint)?;
        if let Some(saved) = saved {
            if let Some(feeds) = Feeds::cut_back(trace, audiences_dir, &saved.feeds)? {
                return Ok((feeds, Some(saved)));
            }
            // Replaying the whole history would start from a partial log:
            // the state comes from the checkpoint, and only the derived
            // files lose what cannot be derived again.
            let through = store.compacted_through().map_err(with_hint)?;
            if through > 0 {
                eprintln!(
                    "warning: the trace or the audience feeds hold less than the store's checkpoint says (moved, replaced or deleted), and the calls up to {through} were compacted, so their records cannot be written again: they start afresh from the checkpoint"
                );
                return Ok((Feeds::new(trace, audiences_dir)?, Some(saved)));
            }
        }
        Ok((Feeds::new(trace, audiences_dir)?, None))
    }

    /// Opens the feeds to append, cut back to the lengths in `marks`; `None`
    /// when a feed is shorter than its mark (moved, replaced or lost).
    fn cut_back(trace: &Path, audiences_dir: &Path, marks: &str) -> Result<Option<Feeds>, String> {
        let Ok(marks) = serde_json::from_str::<FeedMarks>(marks) else {
            return Ok(None);
        };
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        if len(trace) < marks.trace
            || marks
                .audiences
                .iter()
                .any(|(file, &n)| len(&audiences_dir.join(file)) < n)
        {
            return Ok(None);
        }
        let recorded = Some((trace.to_path_buf(), marks.trace));
        let trace = cut(trace, marks.trace)?;
        if let Ok(entries) = std::fs::read_dir(audiences_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.extension().is_none_or(|x| x != "jsonl") {
                    continue;
                }
                match marks.audiences.get(&name) {
                    Some(&n) => drop(cut(&path, n)?),
                    // Written after the checkpoint: written again.
                    None => {
                        std::fs::remove_file(&path)
                            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                    }
                }
            }
        }
        Ok(Some(Feeds {
            trace: BufWriter::new(trace),
            audiences_dir: audiences_dir.to_path_buf(),
            audiences: HashMap::new(),
            error: None,
            recorded,
            sync: None,
        }))
    }

    /// Fresh feeds: the trace created empty, earlier audience feeds removed.
    pub fn new(trace: &Path, audiences_dir: &Path) -> Result<Feeds, String> {
        let trace = BufWriter::new(create_file(trace)?);
        // Feeds from an earlier run would be written again after them.
        if let Ok(entries) = std::fs::read_dir(audiences_dir) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|x| x == "jsonl") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Feeds {
            trace,
            audiences_dir: audiences_dir.to_path_buf(),
            audiences: HashMap::new(),
            error: None,
            recorded: None,
            sync: None,
        })
    }

    /// Sends membership changes to an ad platform too, besides the feeds.
    pub fn sync_audiences(&mut self, plugin: Box<dyn AudienceSync>) {
        self.sync = Some(AudienceSyncer::new(plugin));
    }

    /// Sends what the audience plugin holds and says what came of the run;
    /// `None` when no platform is configured.
    pub fn finish_sync(&mut self) -> Option<Synced> {
        self.sync.take().map(AudienceSyncer::finish)
    }

    /// Writes out what is buffered, so that readers of the trace and the
    /// feeds (`nudge explain`, `nudge report`) see it while serving, and
    /// sends the pending audience changes (at each checkpoint of a run,
    /// after each group of requests while serving).
    pub fn flush(&mut self) {
        if let Some(sync) = &mut self.sync {
            sync.flush();
        }
        if let Err(e) = self.trace.flush() {
            self.error.get_or_insert(format!("trace: {e}"));
        }
        for (name, f) in &mut self.audiences {
            if let Err(e) = f.flush() {
                self.error.get_or_insert(format!("audience {name}: {e}"));
            }
        }
    }

    /// Writes out what is buffered; the first write error of the run, if any.
    pub fn finish(mut self) -> Result<(), String> {
        if let Err(e) = self.trace.flush() {
            self.error.get_or_insert(format!("trace: {e}"));
        }
        for (name, f) in &mut self.audiences {
            if let Err(e) = f.flush() {
                self.error.get_or_insert(format!("audience {name}: {e}"));
            }
        }
        self.error.map_or(Ok(()), Err)
    }
}

impl durable::Feed for Feeds {
    fn mark(&mut self) -> Result<String, String> {
        self.flush();
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let len = |f: &File, what: &str| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| format!("{what}: {e}"))
        };
        let mut marks = FeedMarks {
            trace: len(self.trace.get_ref(), "trace")?,
            ..FeedMarks::default()
        };
        for (name, f) in &self.audiences {
            marks
                .audiences
                .insert(audience_file(name), len(f.get_ref(), name)?);
        }
        serde_json::to_string(&marks).map_err(|e| e.to_string())
    }

    fn delivery(&mut self, record: &DeliveryRecord) {
        let res = serde_json::to_string(record)
            .map_err(|e| e.to_string())
            .and_then(|l| writeln!(self.trace, "{l}").map_err(|e| e.to_string()));
        if let Err(e) = res {
            self.error.get_or_insert(format!("trace: {e}"));
        }
    }

    fn take_recorded(&mut self) -> Result<nudge_store::Recorded, String> {
        match self.recorded.take() {
            Some((path, len)) => delivery_keys(&path, len),
            None => Ok(nudge_store::Recorded::default()),
        }
    }
}

/// The idempotency keys of the delivery records in the first `len` bytes
/// of the trace at `path`.
fn delivery_keys(path: &Path, len: u64) -> Result<nudge_store::Recorded, String> {
    /// The part of a trace line that tells a delivery record and its send.
    #[derive(serde::Deserialize)]
    struct Line {
        kind: String,
        key: Option<String>,
    }
    let err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(err)?;
    let mut keys = nudge_store::Recorded::default();
    for line in std::io::BufRead::lines(BufReader::new(file.take(len))) {
        let line = line.map_err(err)?;
        // Only delivery lines are parsed: the trace is mostly decisions.
        if !line.contains(r#""kind":"delivery""#) {
            continue;
        }
        if let Ok(Line {
            kind,
            key: Some(key),
        }) = serde_json::from_str::<Line>(&line)
            && kind == "delivery"
        {
            keys.insert(&key);
        }
    }
    Ok(keys)
}

/// Opens `path` to append, cut back to `len` bytes.
fn cut(path: &Path, len: u64) -> Result<File, String> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.set_len(len)
        .map_err(|e| format!("cannot cut {} back: {e}", path.display()))?;
    Ok(f)
}

impl Sink for Feeds {
    /// Never called: the ledger sink in front keeps sends for the ledger.
    fn deliver(&mut self, _: Channel, _: &nudge_channels::Outgoing) -> Result<(), String> {
        Ok(())
    }

    fn record(&mut self, record: Record) {
        let res = serde_json::to_string(&record)
            .map_err(|e| e.to_string())
            .and_then(|l| writeln!(self.trace, "{l}").map_err(|e| e.to_string()));
        if let Err(e) = res {
            self.error.get_or_insert(format!("trace: {e}"));
        }
    }

    fn membership(&mut self, change: Membership) {
        let res = (|| -> Result<(), String> {
            let f = match self.audiences.entry(change.audience.clone()) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    // Appended to: a feed cut back to a checkpoint goes on from there.
                    let path = self.audiences_dir.join(audience_file(&change.audience));
                    slot.insert(BufWriter::new(append_file(&path)?))
                }
            };
            let line = serde_json::to_string(&change).map_err(|e| e.to_string())?;
            writeln!(f, "{line}").map_err(|e| e.to_string())
        })();
        if let Err(e) = res {
            self.error
                .get_or_insert(format!("audience {}: {e}", change.audience));
        }
        if let Some(sync) = &mut self.sync {
            sync.change(&change);
        }
    }
}

/// Creates (or empties) `path`, creating its folder when missing.
pub fn create_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Opens `path` to append, creating it (and its folder) when missing.
pub fn append_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}
