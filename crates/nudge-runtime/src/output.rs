//! Files a run writes: messages through channel plugins (the outbox file by
//! default), the decision trace, and one membership feed per audience.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::{AudienceSync, OutboxFile, Outgoing, Plugin};

use crate::engine::Sink;
use crate::record::{Membership, Record};

/// A sink writing to files and plugins. Write errors are kept, not lost:
/// the first one is returned by [`FileSink::finish`].
pub struct FileSink {
    default: Box<dyn Plugin>,
    routes: HashMap<Channel, Box<dyn Plugin>>,
    trace: Option<BufWriter<File>>,
    audiences_dir: PathBuf,
    audiences: HashMap<String, BufWriter<File>>,
    sync: Option<AudienceSyncer>,
    error: Option<String>,
    /// A trace record's line as it is written: kept between records, so
    /// that a run writing one per send allocates none.
    line: Vec<u8>,
}

/// An ad-platform plugin fed with a host's membership changes. A failure
/// does not stop the run: the first one is kept for [`AudienceSyncer::finish`],
/// and the audience feeds still hold every change. After a failure, flushes
/// are skipped for [`AudienceSyncer::PAUSE`] (changes keep waiting in the
/// plugin), so a platform that is down does not hold up every batch of
/// calls by a full round of retries.
pub struct AudienceSyncer {
    plugin: Box<dyn AudienceSync>,
    error: Option<String>,
    paused_until: Option<std::time::Instant>,
}

/// What an [`AudienceSyncer`] did over a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The plugin (`meta_audience`, `google_customer_match`).
    pub plugin: String,
    /// One line per audience: added, removed, unmatched, failed.
    pub lines: Vec<String>,
    /// The first failure, if any.
    pub error: Option<String>,
    /// Changes never sent: still waiting when the run ended, after the
    /// platform failed the last batches.
    pub unsent: u64,
}

impl AudienceSyncer {
    /// Feeds `plugin`.
    pub fn new(plugin: Box<dyn AudienceSync>) -> Self {
        AudienceSyncer {
            plugin,
            error: None,
            paused_until: None,
        }
    }

    /// How long flushes wait after a failed one.
    pub const PAUSE: std::time::Duration = std::time::Duration::from_secs(60);

    /// Hands one change to the plugin, which sends a batch when one is full.
    pub fn change(&mut self, change: &Membership) {
        if let Err(e) = self.plugin.change(&change.to_change()) {
            self.error.get_or_insert(e.to_string());
        }
    }

    /// Sends everything pending, unless a recent failure paused syncing.
    pub fn flush(&mut self) {
        if self
            .paused_until
            .is_some_and(|until| std::time::Instant::now() < until)
        {
            return;
        }
        self.flush_now();
    }

    fn flush_now(&mut self) {
        self.paused_until = None;
        if let Err(e) = self.plugin.flush() {
            self.error.get_or_insert(e.to_string());
            self.paused_until = Some(std::time::Instant::now() + Self::PAUSE);
        }
    }

    /// Sends everything pending and says what came of the run.
    pub fn finish(mut self) -> Synced {
        self.flush_now();
        Synced {
            plugin: self.plugin.name().to_string(),
            lines: self.plugin.report().lines(),
            error: self.error,
            unsent: self.plugin.pending(),
        }
    }
}

impl FileSink {
    /// Messages go to an outbox file at `outbox` (truncated), the trace to
    /// `trace` when given, and audience feeds into `audiences_dir`.
    pub fn new(outbox: &Path, trace: Option<&Path>, audiences_dir: &Path) -> Result<Self, String> {
        let default = OutboxFile::create(outbox)
            .map_err(|e| format!("cannot create the outbox {}: {e}", outbox.display()))?;
        let trace = match trace {
            Some(p) => Some(BufWriter::new(create(p)?)),
            None => None,
        };
        // Feeds from an earlier run would mix with this one's.
        if audiences_dir.is_dir() {
            for entry in std::fs::read_dir(audiences_dir)
                .map_err(|e| format!("cannot read {}: {e}", audiences_dir.display()))?
                .flatten()
            {
                if entry.path().extension().is_some_and(|x| x == "jsonl") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(FileSink {
            default: Box::new(default),
            routes: HashMap::new(),
            trace,
            audiences_dir: audiences_dir.to_path_buf(),
            audiences: HashMap::new(),
            sync: None,
            error: None,
            line: Vec::new(),
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

    /// Sends one channel's messages to `plugin` instead of the outbox.
    pub fn route(&mut self, channel: Channel, plugin: Box<dyn Plugin>) {
        self.routes.insert(channel, plugin);
    }

    /// Flushes everything; the first write error of the run, if any.
    pub fn finish(mut self) -> Result<(), String> {
        if let Err(e) = self.default.flush() {
            self.keep_error(format!("outbox: {e}"));
        }
        for (ch, p) in &mut self.routes {
            if let Err(e) = p.flush() {
                let msg = format!("{} plugin: {e}", ch.name());
                self.error.get_or_insert(msg);
            }
        }
        if let Some(t) = &mut self.trace
            && let Err(e) = t.flush()
        {
            self.error.get_or_insert(format!("trace: {e}"));
        }
        for (name, f) in &mut self.audiences {
            if let Err(e) = f.flush() {
                self.error.get_or_insert(format!("audience {name}: {e}"));
            }
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn keep_error(&mut self, e: String) {
        self.error.get_or_insert(e);
    }
}

fn create(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// A file name for an audience: its name with anything but letters, digits,
/// `-` and `_` replaced, so no audience name can escape the directory.
pub fn audience_file(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.jsonl")
}

impl Sink for FileSink {
    fn deliver(&mut self, channel: Channel, message: &Outgoing) -> Result<(), String> {
        let plugin = match self.routes.get_mut(&channel) {
            Some(p) => p,
            None => &mut self.default,
        };
        plugin
            .deliver(message)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", plugin.name()))
    }

    fn record(&mut self, record: Record) {
        let Some(t) = &mut self.trace else {
            return;
        };
        // The line is made whole before any of it is written, so a record
        // that cannot be serialized leaves no part of itself in the trace.
        self.line.clear();
        let res = serde_json::to_writer(&mut self.line, &record)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                self.line.push(b'\n');
                t.write_all(&self.line).map_err(|e| e.to_string())
            });
        if let Err(e) = res {
            self.keep_error(format!("trace: {e}"));
        }
    }

    fn membership(&mut self, change: Membership) {
        let res = (|| -> Result<(), String> {
            let f = match self.audiences.entry(change.audience.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let path = self.audiences_dir.join(audience_file(&change.audience));
                    e.insert(BufWriter::new(create(&path)?))
                }
            };
            let line = serde_json::to_string(&change).map_err(|e| e.to_string())?;
            writeln!(f, "{line}").map_err(|e| e.to_string())
        })();
        if let Err(e) = res {
            self.keep_error(format!("audience {}: {e}", change.audience));
        }
        if let Some(sync) = &mut self.sync {
            sync.change(&change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use nudge_channels::{AudienceChange, DeliveryError, SyncReport};

    use super::*;

    /// A platform that fails every flush and counts the flushes tried.
    struct Down {
        flushes: Arc<Mutex<u32>>,
        changes: Vec<AudienceChange>,
        report: SyncReport,
    }

    impl AudienceSync for Down {
        fn name(&self) -> &str {
            "down"
        }

        fn change(&mut self, change: &AudienceChange) -> Result<(), DeliveryError> {
            self.changes.push(change.clone());
            Ok(())
        }

        fn flush(&mut self) -> Result<(), DeliveryError> {
            *self.flushes.lock().unwrap() += 1;
            Err(DeliveryError::transient(3, "HTTP 503"))
        }

        fn report(&self) -> &SyncReport {
            &self.report
        }

        fn pending(&self) -> u64 {
            self.changes.len() as u64
        }
    }

    fn membership(action: &str) -> Membership {
        Membership {
            at: "2026-11-23T10:04:00Z".into(),
            audience: "cart_abandoners".into(),
            customer: "u1".into(),
            action: action.into(),
            email: Some("ana@example.com".into()),
            phone: None,
        }
    }

    #[test]
    fn a_failed_flush_pauses_syncing_until_the_end() {
        let flushes = Arc::new(Mutex::new(0));
        let mut sync = AudienceSyncer::new(Box::new(Down {
            flushes: flushes.clone(),
            changes: Vec::new(),
            report: SyncReport::default(),
        }));
        sync.change(&membership("add"));
        sync.flush();
        assert_eq!(*flushes.lock().unwrap(), 1);
        // Within the pause, flushes are skipped; changes still reach the plugin.
        sync.change(&membership("remove"));
        sync.flush();
        assert_eq!(*flushes.lock().unwrap(), 1);
        let synced = sync.finish();
        assert_eq!(*flushes.lock().unwrap(), 2, "the end always tries");
        assert_eq!(synced.plugin, "down");
        assert_eq!(
            synced.error.as_deref(),
            Some("HTTP 503 (after 3 attempts; may succeed if retried later)")
        );
        assert_eq!(synced.unsent, 2);
    }

    #[test]
    fn a_membership_becomes_the_change_the_plugins_take() {
        let change = membership("remove").to_change();
        assert!(!change.add);
        assert_eq!(change.email.as_deref(), Some("ana@example.com"));
        assert_eq!(change.customer, "u1");
        assert!(membership("add").to_change().add);
    }
}
