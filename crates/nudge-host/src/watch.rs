//! Watching a replay's progress: every decision the engine records carries
//! the virtual time, so a sink in front of the real one can tell how far
//! the clock has come without help from the engine.

use nudge_bytecode::Channel;
use nudge_channels::Outgoing;
use nudge_runtime::engine::{Sink, Step};
use nudge_runtime::record::{DeliveryRecord, Membership, Record};

use crate::durable::Feed;

/// Reading every record's time would cost more than showing it: one in
/// this many is read.
const SAMPLE: u32 = 64;

/// Something shown while a replay runs (a progress bar).
pub trait Watch {
    /// Whether anything is shown at all; when not, no time is read.
    fn wants(&self) -> bool;
    /// The replay's virtual clock reached `at` (milliseconds since the epoch).
    fn at(&self, at: i64);
}

/// Shows nothing.
pub struct Unwatched;

impl Watch for Unwatched {
    fn wants(&self) -> bool {
        false
    }

    fn at(&self, _: i64) {}
}

/// A sink that tells a [`Watch`] the records' virtual time and passes
/// everything on to the sink behind it.
pub struct Watched<'w, S> {
    inner: S,
    watch: &'w dyn Watch,
    seen: u32,
}

impl<'w, S> Watched<'w, S> {
    /// Puts `watch` in front of `inner`.
    pub fn new(inner: S, watch: &'w dyn Watch) -> Self {
        Watched {
            inner,
            watch,
            seen: 0,
        }
    }

    /// The sink behind the watch.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Feed> Feed for Watched<'_, S> {
    fn mark(&mut self) -> Result<String, String> {
        self.inner.mark()
    }

    fn delivery(&mut self, record: &DeliveryRecord) {
        self.inner.delivery(record);
    }

    fn take_recorded(&mut self) -> Result<nudge_store::Recorded, String> {
        self.inner.take_recorded()
    }
}

impl<S: Sink> Sink for Watched<'_, S> {
    fn deliver(&mut self, channel: Channel, message: &Outgoing) -> Result<(), String> {
        self.inner.deliver(channel, message)
    }

    fn record(&mut self, record: Record) {
        self.seen = self.seen.wrapping_add(1);
        if self.seen.is_multiple_of(SAMPLE)
            && self.watch.wants()
            && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&record.at)
        {
            self.watch.at(at.timestamp_millis());
        }
        self.inner.record(record);
    }

    fn membership(&mut self, change: Membership) {
        self.inner.membership(change);
    }

    fn step(&mut self, step: Step) {
        self.inner.step(step);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use nudge_runtime::engine::MemorySink;
    use nudge_runtime::record::What;

    use super::*;

    /// Remembers the times it was told.
    struct Seen(RefCell<Vec<i64>>, bool);

    impl Watch for Seen {
        fn wants(&self) -> bool {
            self.1
        }
        fn at(&self, at: i64) {
            self.0.borrow_mut().push(at);
        }
    }

    fn record(at: &str) -> Record {
        Record {
            at: at.into(),
            customer: "c".into(),
            what: What::Joined {
                identities: Vec::new(),
            },
        }
    }

    #[test]
    fn one_record_in_a_sample_tells_its_time_and_every_record_passes() {
        let seen = Seen(RefCell::new(Vec::new()), true);
        let mut sink = Watched::new(MemorySink::default(), &seen);
        for _ in 0..SAMPLE * 2 {
            sink.record(record("2026-01-05T10:00:00Z"));
        }
        assert_eq!(*seen.0.borrow(), [1_767_607_200_000; 2]);
        assert_eq!(sink.into_inner().records.len(), (SAMPLE * 2) as usize);
    }

    #[test]
    fn a_watch_that_shows_nothing_is_told_nothing() {
        let seen = Seen(RefCell::new(Vec::new()), false);
        let mut sink = Watched::new(MemorySink::default(), &seen);
        for _ in 0..SAMPLE * 2 {
            sink.record(record("2026-01-05T10:00:00Z"));
        }
        assert!(seen.0.borrow().is_empty());
    }
}
