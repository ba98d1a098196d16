//! The send circuit breaker of `nudge run --in-memory`: without a ledger to
//! hold a step's sends in, it lets the first `max_sends_per_step` sends of a
//! step out and holds every send after them, for the rest of the run, in a
//! file an operator can read and send again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::Outgoing;
use nudge_runtime::engine::{Sink, Step};
use nudge_runtime::record::{Membership, Record};

/// A sink that passes everything on to `inner` until one step makes more
/// sends than allowed; from then on sends are written to the held file and
/// reported to the engine as not delivered.
pub struct Breaker<S> {
    inner: S,
    max: usize,
    step: Step,
    made: usize,
    /// Why it tripped, once it has.
    tripped: Option<String>,
    held_path: PathBuf,
    held: Option<BufWriter<File>>,
    count: u64,
    error: Option<String>,
}

impl<S> Breaker<S> {
    /// A breaker of `max` sends per step in front of `inner`, holding sends
    /// in `held_path` (removed now: a run in memory starts from nothing).
    pub fn new(inner: S, max: usize, held_path: &Path) -> Result<Self, String> {
        match std::fs::remove_file(held_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", held_path.display())),
        }
        Ok(Breaker {
            inner,
            max,
            step: Step::Line(0),
            made: 0,
            tripped: None,
            held_path: held_path.to_path_buf(),
            held: None,
            count: 0,
            error: None,
        })
    }

    /// The sink behind the breaker, why it tripped (if it did), and how
    /// many sends it held; a failure to write the held file is an error.
    pub fn finish(mut self) -> Result<(S, Option<String>, u64), String> {
        if let Some(f) = &mut self.held
            && let Err(e) = f.flush()
        {
            self.error.get_or_insert(e.to_string());
        }
        match self.error {
            Some(e) => Err(format!("{}: {e}", self.held_path.display())),
            None => Ok((self.inner, self.tripped, self.count)),
        }
    }

    fn hold(&mut self, message: &Outgoing) -> Result<(), String> {
        if self.held.is_none() {
            let file = crate::feeds::create_file(&self.held_path)?;
            self.held = Some(BufWriter::new(file));
        }
        let line = message.to_json_line().map_err(|e| e.to_string())?;
        if let Some(f) = &mut self.held {
            writeln!(f, "{line}").map_err(|e| e.to_string())?;
        }
        self.count += 1;
        Ok(())
    }
}

impl<S: Sink> Sink for Breaker<S> {
    fn deliver(&mut self, channel: Channel, message: &Outgoing) -> Result<(), String> {
        self.made += 1;
        if self.tripped.is_none() && self.made > self.max {
            let why = format!("{} made more than {} sends", self.step, self.max);
            eprintln!(
                "alert: delivery paused by the send circuit breaker ([runtime] max_sends_per_step = {}): {why}; every send from here on is held in {}",
                self.max,
                self.held_path.display()
            );
            self.tripped = Some(why);
        }
        if self.tripped.is_none() {
            return self.inner.deliver(channel, message);
        }
        if let Err(e) = self.hold(message) {
            self.error.get_or_insert(e);
        }
        Err(format!(
            "held by the send circuit breaker ([runtime] max_sends_per_step = {}), not delivered",
            self.max
        ))
    }

    fn record(&mut self, record: Record) {
        self.inner.record(record);
    }

    fn membership(&mut self, change: Membership) {
        self.inner.membership(change);
    }

    fn step(&mut self, step: Step) {
        self.step = step;
        self.made = 0;
        self.inner.step(step);
    }
}
