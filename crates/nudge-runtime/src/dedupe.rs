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
//!
//! Most of a generation's ids are kept sorted in a plain vector, 16 bytes
//! each where a hash table takes about 29: those a store gave back at a
//! restart, and those first seen since, moved there from a small hash table
//! once it holds a quarter as many. Fingerprints are uniform, so an index of
//! where each range of values begins finds an id in a handful of reads.

use crate::fast::Set;
use std::hash::{Hash, Hasher};

/// The message ids seen within the window.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Dedupe {
    /// Ids first seen since `since`.
    current: Generation,
    /// Ids of the generation before.
    previous: Generation,
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
            current: Generation::default(),
            previous: Generation::default(),
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
            self.current.sorted.reserve(n);
        } else if generation.wrapping_add(1) == self.generation {
            self.previous.sorted.reserve(n);
        }
    }

    /// Puts back a stored id of `generation`: remembered when it is the
    /// current generation or the one before, not otherwise.
    pub fn restore(&mut self, id: u128, generation: u64) {
        if generation == self.generation {
            self.current.restore(id);
        } else if generation.wrapping_add(1) == self.generation {
            self.previous.restore(id);
        }
    }

    /// Sorts the ids put back by [`Dedupe::restore`] (done otherwise at
    /// the first lookup).
    pub fn settle(&mut self) {
        self.current.settle();
        self.previous.settle();
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
        let current = self.current.iter().map(|id| (id, self.generation));
        current
            .chain(self.previous.iter().map(|id| (id, previous)))
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
        let first = !self.previous.contains(id) && self.current.insert(id);
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

/// One generation's ids: most of them sorted, the newest in a hash table.
#[derive(Clone, Debug, Default)]
struct Generation {
    /// Ids in increasing order, once [`Generation::settle`] has run on ids
    /// put back by [`Generation::restore`] (appended as they come).
    sorted: Vec<u128>,
    /// Whether `sorted` may be out of order (ids were restored since).
    restored: bool,
    /// Where the ids of each range of values begin in `sorted`.
    index: Index,
    /// Ids first seen since `sorted` last took them in.
    fresh: Set<u128>,
}

/// The fewest fresh ids moved into the sorted vector at once: below it a
/// table's room costs less than a merge.
const FRESH_MIN: usize = 1 << 16;

impl Generation {
    /// Puts back an id a store kept (sorted at the next lookup); a store
    /// gives each id once, and [`Generation::len`] counts what it gave
    /// until then.
    fn restore(&mut self, id: u128) {
        self.sorted.push(id);
        self.restored = true;
    }

    /// Sorts the ids restored since the last lookup.
    fn settle(&mut self) {
        if std::mem::take(&mut self.restored) {
            self.sorted.sort_unstable();
            self.sorted.dedup();
            self.index = Index::of(&self.sorted);
        }
    }

    /// Whether `id` is here.
    fn contains(&mut self, id: u128) -> bool {
        self.settle();
        self.fresh.contains(&id) || self.index.contains(&self.sorted, id)
    }

    /// Adds `id`; false when it was here already.
    fn insert(&mut self, id: u128) -> bool {
        self.settle();
        if self.index.contains(&self.sorted, id) || !self.fresh.insert(id) {
            return false;
        }
        if self.fresh.len() >= FRESH_MIN.max(self.sorted.len() / 4) {
            self.take_in_fresh();
        }
        true
    }

    /// Moves the fresh ids into the sorted vector, merging from its end
    /// into the room made for them, so no second vector is made.
    fn take_in_fresh(&mut self) {
        let mut fresh: Vec<u128> = self.fresh.drain().collect();
        fresh.sort_unstable();
        let old = self.sorted.len();
        // Exactly: a doubling vector would hold up to twice the ids' room.
        self.sorted.reserve_exact(fresh.len());
        self.sorted.resize(old + fresh.len(), 0);
        let (mut i, mut j) = (old, fresh.len());
        let mut at = self.sorted.len();
        while j > 0 {
            at -= 1;
            // `i` and `j` count what is left of each run, so each index
            // is in bounds; the sets are disjoint, so no id is equal.
            let (mine, theirs) = (
                i.checked_sub(1).and_then(|k| self.sorted.get(k)).copied(),
                fresh.get(j - 1).copied(),
            );
            let take_mine = matches!((mine, theirs), (Some(a), Some(b)) if a > b);
            let value = if take_mine {
                i -= 1;
                mine
            } else {
                j -= 1;
                theirs
            };
            if let (Some(slot), Some(v)) = (self.sorted.get_mut(at), value) {
                *slot = v;
            }
        }
        self.index = Index::of(&self.sorted);
    }

    /// Every id here, in no particular order.
    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.sorted.iter().chain(self.fresh.iter()).copied()
    }

    /// How many ids are here.
    fn len(&self) -> usize {
        self.sorted.len() + self.fresh.len()
    }

    /// Forgets every id, keeping the room made for them.
    fn clear(&mut self) {
        self.sorted.clear();
        self.fresh.clear();
        self.index = Index::default();
        self.restored = false;
    }
}

/// Where the sorted ids of each range of values begin: ids are uniform
/// fingerprints, so with about eight ids to a range (a range per top
/// `bits` of the value) a lookup reads the range's bounds and a few ids,
/// where a binary search over millions reads twenty places far apart.
#[derive(Clone, Debug, Default)]
struct Index {
    /// How many top bits of an id name its range; 0: no index (few ids).
    bits: u32,
    /// The position of the first id of each range, and the count at the end.
    starts: Vec<u32>,
}

impl Index {
    /// The index of `ids` (sorted).
    fn of(ids: &[u128]) -> Index {
        let n = ids.len();
        // Below this a binary search stays within a few cache lines.
        if n < 1024 || u32::try_from(n).is_err() {
            return Index::default();
        }
        let bits = (n / 8).ilog2();
        let ranges = 1usize << bits;
        let mut starts = Vec::with_capacity(ranges + 1);
        let mut at = 0usize;
        for range in 0..ranges as u128 {
            while ids.get(at).is_some_and(|&id| id >> (128 - bits) < range) {
                at += 1;
            }
            starts.push(at as u32);
        }
        starts.push(n as u32);
        Index { bits, starts }
    }

    /// Whether the sorted `ids` this indexes hold `id`.
    fn contains(&self, ids: &[u128], id: u128) -> bool {
        if self.bits == 0 {
            return ids.binary_search(&id).is_ok();
        }
        let range = (id >> (128 - self.bits)) as usize;
        let bound = |r: usize| self.starts.get(r).map(|&s| s as usize);
        match (bound(range), bound(range + 1)) {
            (Some(lo), Some(hi)) => ids
                .get(lo..hi)
                .is_some_and(|run| run.binary_search(&id).is_ok()),
            _ => false,
        }
    }
}

/// The set's serialised form is a sequence of ids, as the hash set it
/// replaced wrote it, so whole-state checkpoints of earlier releases read.
impl serde::Serialize for Generation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Generation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids: Vec<u128> = Vec::deserialize(deserializer)?;
        let mut out = Generation::default();
        for id in ids {
            out.restore(id);
        }
        Ok(out)
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

    proptest::proptest! {
        #[test]
        fn an_indexed_lookup_finds_exactly_what_a_binary_search_finds(
            mut ids in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..3000),
            small in proptest::collection::vec(0u128..1000, 0..300),
            probes in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..50),
        ) {
            // Uniform ids, and ids bunched at the bottom of the range
            // (many in one range, none in most).
            ids.extend(small);
            ids.sort_unstable();
            ids.dedup();
            let index = Index::of(&ids);
            let mut all = probes;
            all.extend(ids.iter().copied());
            all.extend(ids.iter().map(|i| i.wrapping_add(1)));
            all.extend([0, u128::MAX]);
            for p in all {
                proptest::prop_assert_eq!(index.contains(&ids, p), ids.binary_search(&p).is_ok(), "{}", p);
            }
        }

        #[test]
        fn a_generation_answers_as_a_set_does(
            restored in proptest::collection::vec(0u128..2000, 0..200),
            ops in proptest::collection::vec((0u128..2000, proptest::prelude::any::<bool>()), 0..400),
        ) {
            let mut g = Generation::default();
            let mut model = std::collections::HashSet::new();
            // A store gives each id back once.
            for id in restored {
                if model.insert(id) {
                    g.restore(id);
                }
            }
            for (i, (id, take_in)) in ops.into_iter().enumerate() {
                proptest::prop_assert_eq!(g.insert(id), model.insert(id), "insert {}", id);
                proptest::prop_assert_eq!(g.contains(id ^ 1), model.contains(&(id ^ 1)));
                // Fresh ids moved into the sorted vector now and then, as a
                // larger table would be.
                if take_in && i % 7 == 0 {
                    g.take_in_fresh();
                    proptest::prop_assert!(g.fresh.is_empty());
                    proptest::prop_assert!(g.sorted.windows(2).all(|w| w[0] < w[1]));
                }
                proptest::prop_assert_eq!(g.len(), model.len());
            }
            let mut all: Vec<u128> = g.iter().collect();
            all.sort_unstable();
            let mut want: Vec<u128> = model.into_iter().collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(all, want);
        }
    }

    #[test]
    fn many_fresh_ids_move_into_the_sorted_vector_and_are_still_found() {
        let mut d = Dedupe::new(0);
        let n = FRESH_MIN * 2 + 5;
        for i in 0..n {
            assert!(d.first_time(&format!("id-{i}"), 0));
        }
        assert!(
            d.current.fresh.len() < FRESH_MIN,
            "{}",
            d.current.fresh.len()
        );
        assert_eq!(d.len(), n);
        for i in (0..n).step_by(997) {
            assert!(!d.first_time(&format!("id-{i}"), 0), "id-{i}");
        }
        assert!(d.first_time("another", 0));
    }

    #[test]
    fn the_serialised_form_is_the_hash_sets_it_replaced() {
        // Whole-state checkpoints of earlier releases hold a generation
        // as a set of u128: the same bytes must read back.
        let set: std::collections::HashSet<u128> = [3, 1, 2].into_iter().collect();
        let bytes = postcard::to_allocvec(&set).unwrap();
        let mut g: Generation = postcard::from_bytes(&bytes).unwrap();
        assert!(g.contains(2) && g.contains(3) && !g.contains(4));
        let again: std::collections::HashSet<u128> =
            postcard::from_bytes(&postcard::to_allocvec(&g).unwrap()).unwrap();
        assert_eq!(again, set);
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
