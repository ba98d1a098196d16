//! Dropping calls that were delivered twice, by their `messageId`.
//!
//! Senders retry, and warehouse exports overlap; the spec's `messageId` is
//! what makes a call unique. Ids are remembered as 128-bit hashes, so memory
//! stays small on long replays while an accidental collision stays out of
//! reach (about one in 10^20 for a billion ids).
//!
//! A store that runs for years cannot remember every id: ids are kept for
//! a window of the engine's clock, in two generations. When the clock has
//! gone a window past the start of the current generation, it becomes the
//! previous one and the one before is dropped. So an id is remembered for
//! at least a window after it was first seen, and for at most about two,
//! and memory holds at most two windows of traffic.

use crate::fast::Set;
use std::hash::{Hash, Hasher};

/// The message ids seen within the window.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Dedupe {
    /// Ids first seen since `since`.
    current: Set<u128>,
    /// Ids of the generation before.
    previous: Set<u128>,
    /// When the current generation began (milliseconds since the epoch, the
    /// engine's clock); `i64::MIN` before the first id.
    since: i64,
    /// How long an id is remembered at least, in milliseconds; 0 keeps
    /// every id for ever.
    window: i64,
    /// The current generation's number (the previous one's is one less),
    /// by which a store keeps its rows of ids.
    #[serde(skip)]
    generation: u64,
    /// What changed since the store last took it, when followed.
    #[serde(skip)]
    log: Log,
}

/// The ids remembered, and whether generations turned, since the last take.
#[derive(Clone, Debug, Default)]
struct Log {
    on: bool,
    /// Each id with the generation it was seen in.
    added: Vec<(u128, u64)>,
    turned: bool,
}

/// The dedupe table's changes, as a store applies them.
#[derive(Clone, Debug, Default)]
pub struct DedupeChanges {
    /// Ids first seen, with the generation they belong to.
    pub added: Vec<(u128, u64)>,
    /// When set, ids of generations before this one are no longer remembered.
    pub drop_before: Option<u64>,
}

/// The dedupe table's own values besides its ids, stored with the engine's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupeHead {
    /// When the current generation began.
    pub since: i64,
    /// The current generation's number.
    pub generation: u64,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Dedupe {
    /// Nothing seen yet; ids are remembered for at least `window`
    /// milliseconds of the clock (0: for ever).
    pub fn new(window: i64) -> Self {
        Dedupe {
            current: Set::default(),
            previous: Set::default(),
            since: i64::MIN,
            window: window.max(0),
            generation: 0,
            log: Log::default(),
        }
    }

    /// The table of stored ids: those of `head`'s generation and the one
    /// before are remembered, older ones are not.
    pub fn from_rows(head: DedupeHead, window: i64, ids: Vec<(u128, u64)>) -> Self {
        let mut out = Dedupe::at(head, window);
        for (id, generation) in ids {
            out.restore(id, generation);
        }
        out
    }

    /// An empty table at `head`, to [`Dedupe::restore`] stored ids into one
    /// at a time.
    pub fn at(head: DedupeHead, window: i64) -> Self {
        let mut out = Dedupe::new(window);
        out.since = head.since;
        out.generation = head.generation;
        out
    }

    /// Makes room for `n` stored ids of `generation` to come.
    pub fn reserve(&mut self, generation: u64, n: usize) {
        if generation == self.generation {
            self.current.reserve(n);
        } else if generation.wrapping_add(1) == self.generation {
            self.previous.reserve(n);
        }
    }

    /// Puts back a stored id of `generation`: remembered when it is the
    /// current generation or the one before, not otherwise.
    pub fn restore(&mut self, id: u128, generation: u64) {
        if generation == self.generation {
            self.current.insert(id);
        } else if generation.wrapping_add(1) == self.generation {
            self.previous.insert(id);
        }
    }

    /// The values stored beside the ids.
    pub fn head(&self) -> DedupeHead {
        DedupeHead {
            since: self.since,
            generation: self.generation,
        }
    }

    /// Every remembered id with its generation (for a store that writes the
    /// table afresh).
    pub fn all(&self) -> Vec<(u128, u64)> {
        let previous = self.generation.wrapping_sub(1);
        let current = self.current.iter().map(|&id| (id, self.generation));
        current
            .chain(self.previous.iter().map(|&id| (id, previous)))
            .collect()
    }

    /// Starts following the ids remembered.
    pub fn start_log(&mut self) {
        self.log = Log {
            on: true,
            ..Log::default()
        };
    }

    /// The ids remembered and the generations dropped since the last take.
    pub fn take_changes(&mut self) -> DedupeChanges {
        let turned = std::mem::take(&mut self.log.turned);
        DedupeChanges {
            added: std::mem::take(&mut self.log.added),
            drop_before: turned.then(|| self.generation.saturating_sub(1)),
        }
    }

    /// Sets how long ids are remembered from now on (a setting may change
    /// between runs of one store).
    pub fn set_window(&mut self, window: i64) {
        self.window = window.max(0);
    }

    /// Records `message_id`, seen with the clock at `now`; returns false
    /// when it was already seen within the window.
    pub fn first_time(&mut self, message_id: &str, now: i64) -> bool {
        self.turn(now);
        let id = fingerprint(message_id);
        let first = !self.previous.contains(&id) && self.current.insert(id);
        if first && self.log.on {
            self.log.added.push((id, self.generation));
        }
        first
    }

    /// Starts a new generation when the clock has gone a window past the
    /// current one's start (both go when it has gone two).
    fn turn(&mut self, now: i64) {
        if self.window == 0 {
            return;
        }
        if self.since == i64::MIN {
            self.since = now;
            return;
        }
        let elapsed = now.saturating_sub(self.since);
        if elapsed < self.window {
            return;
        }
        if self.log.on {
            self.log.turned = true;
        }
        if elapsed >= self.window.saturating_mul(2) {
            self.previous.clear();
            self.current.clear();
            self.generation = self.generation.wrapping_add(2);
        } else {
            self.generation = self.generation.wrapping_add(1);
            // The dropped generation's table becomes the new current one, so
            // a long replay does not grow (and zero) a fresh table every window.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        self.since = now;
    }

    /// How many distinct ids are remembered.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Two independent 64-bit hashes of the id, side by side.
pub fn fingerprint(id: &str) -> u128 {
    let half = |seed: u64| {
        // SipHash with fixed keys, so fingerprints are the same in every run
        // and can later be stored.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(seed, !seed);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x6e75_6467_6500_0001)) << 64) | u128::from(half(0x6e75_6467_6500_0002))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn repeats_are_caught_and_distinct_ids_are_not() {
        let mut d = Dedupe::new(0);
        assert!(d.first_time("m-1", 0));
        assert!(d.first_time("m-2", 0));
        assert!(!d.first_time("m-1", 0));
        assert_eq!(d.len(), 2);
        let many: usize = (0..100_000)
            .filter(|i| d.first_time(&format!("id-{i}"), i64::from(*i) * DAY))
            .count();
        assert_eq!(many, 100_000, "no false duplicates among distinct ids");
        // Without a window, nothing is ever forgotten.
        assert!(!d.first_time("m-2", 200_000 * DAY));
    }

    #[test]
    fn ids_are_remembered_for_a_window_and_then_forgotten() {
        let mut d = Dedupe::new(7 * DAY);
        assert!(d.first_time("a", 0));
        assert!(d.first_time("b", 6 * DAY));
        // A window on, `a` and `b` move to the previous generation: still seen.
        assert!(!d.first_time("a", 7 * DAY));
        assert!(!d.first_time("b", 12 * DAY));
        assert!(d.first_time("c", 13 * DAY));
        // Two windows on, `a` and `b` are forgotten; `c` (seen a day into
        // the generation that began at day 7) is still remembered.
        assert!(d.first_time("a", 14 * DAY));
        assert!(!d.first_time("c", 14 * DAY));
        assert_eq!(d.len(), 2);
        // Every id is remembered at least a window after it was first seen.
        let mut d = Dedupe::new(7 * DAY);
        for day in 0..100 {
            let id = format!("d-{day}");
            assert!(d.first_time(&id, day * DAY));
            assert!(!d.first_time(&id, (day + 7) * DAY - 1), "day {day}");
        }
        // And memory holds at most two windows of them.
        assert!(d.len() <= 14, "{}", d.len());
    }

    #[test]
    fn a_clock_that_jumps_two_windows_forgets_both_generations() {
        let mut d = Dedupe::new(DAY);
        assert!(d.first_time("a", 0));
        assert!(!d.first_time("a", DAY));
        assert!(d.first_time("a", 4 * DAY));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn fingerprints_do_not_depend_on_the_process() {
        // Fixed keys: this value must never change, or ids stored by an
        // earlier run would no longer be recognised.
        assert_eq!(fingerprint("m-1"), 220638064234136960513091537899273337876);
    }

    #[test]
    fn rows_taken_as_it_goes_restore_the_same_memory() {
        // Ids over 40 days with a 3-day window and a jump of two windows,
        // changes taken every few ids: a table restored from the rows at
        // any take answers every later id as the one that went on.
        let mut d = Dedupe::new(3 * DAY);
        d.start_log();
        let mut rows: std::collections::BTreeMap<u128, u64> = Default::default();
        let mut times: Vec<i64> = (0..40).map(|day| day * DAY / 2).collect();
        times.extend((0..10).map(|h| 30 * DAY + h * 3_600_000));
        for (i, &t) in times.iter().enumerate() {
            d.first_time(&format!("id-{i}"), t);
            d.first_time(&format!("id-{}", i / 2), t);
            if i % 3 == 0 {
                let changes = d.take_changes();
                rows.extend(changes.added);
                if let Some(before) = changes.drop_before {
                    rows.retain(|_, g| *g >= before);
                }
                let ids = rows.iter().map(|(&k, &g)| (k, g)).collect();
                let mut restored = Dedupe::from_rows(d.head(), 3 * DAY, ids);
                let mut going = d.clone();
                assert_eq!(restored.len(), going.len(), "after id {i}");
                for j in 0..times.len() {
                    let (id, at) = (format!("id-{j}"), t + DAY);
                    assert_eq!(restored.first_time(&id, at), going.first_time(&id, at));
                }
            }
        }
    }
}
