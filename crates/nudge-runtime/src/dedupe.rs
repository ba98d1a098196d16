//! Dropping calls that were delivered twice, by their `messageId`.
//!
//! Senders retry, and warehouse exports overlap; the spec's `messageId` is
//! what makes a call unique. Ids are fingerprinted as 128-bit hashes, of
//! which the top 80 bits are compared: a billion calls checked against a
//! window of ten million ids take one for a repeat with odds of about one
//! in 10^8.
//!
//! A store that runs for years cannot remember every id: ids are kept for
//! a window of the engine's clock, in two generations. When the clock has
//! gone a window past the start of the current generation, it becomes the
//! previous one and the one before is dropped. So an id is remembered for
//! at least a window after it was first seen, and for at most about two,
//! and memory holds at most two windows of traffic.
//!
//! Most of a generation's ids are kept sorted, 8 bytes each where a hash
//! table takes about 29: those a store gave back at a restart, and those
//! first seen since, moved there from a small hash table once it holds a
//! quarter as many. Fingerprints are uniform, so an index of where each of
//! 65,536 ranges of values begins names an id's top 16 bits, and the
//! sorted vector keeps only the 64 compared bits after them.

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

    /// Counts a stored id of `generation` that [`Dedupe::restore`] will
    /// put back: a store that counts every id first lets each be placed
    /// straight where it belongs, so a restart holds each id once, in its
    /// 8 bytes.
    pub fn count(&mut self, id: u128, generation: u64) {
        if generation == self.generation {
            self.current.count(id);
        } else if generation.wrapping_add(1) == self.generation {
            self.previous.count(id);
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
        self.first_seen(fingerprint(message_id), now)
    }

    /// [`Dedupe::first_time`] for an id's fingerprint, worked out already
    /// (a replay hashes ids on its decoding thread).
    pub fn first_seen(&mut self, id: u128, now: i64) -> bool {
        self.turn(now);
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

    /// How many ids are remembered (ids put back by a restore count as
    /// given until the first lookup sorts them).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many top bits of an id are compared: two ids that share them are
/// the same id. Among `n` remembered ids a new one is taken for a repeat
/// with odds of n in 2^80: one in 10^17 for a window of ten million ids.
const KEPT_BITS: u32 = 80;

/// How many of those top bits name an id's range in the index: 65,536
/// ranges, so the next 64 bits are all a sorted id keeps.
const RANGE_BITS: u32 = 16;

/// How many ranges the index has.
const RANGES: usize = 1 << RANGE_BITS;

/// The part of `id` that is compared (the rest is zero).
fn kept(id: u128) -> u128 {
    id >> (128 - KEPT_BITS) << (128 - KEPT_BITS)
}

/// The range of `id` in the index.
fn range_of(id: u128) -> usize {
    (id >> (128 - RANGE_BITS)) as usize
}

/// What a sorted id keeps of `id`: the 64 compared bits after its range.
fn key_of(id: u128) -> u64 {
    (id >> (128 - KEPT_BITS)) as u64
}

/// The compared part of the id a range and a key stand for.
fn id_of(range: usize, key: u64) -> u128 {
    ((range as u128) << (128 - RANGE_BITS)) | (u128::from(key) << (128 - KEPT_BITS))
}

/// One generation's ids: most of them sorted, the newest in a hash table.
/// Only the compared part of an id is kept ([`kept`]).
#[derive(Clone, Debug, Default)]
struct Generation {
    /// Ids a store will put back, by range ([`Generation::count`]); empty
    /// unless it counted them.
    counted: Vec<u32>,
    /// Where each range's counted ids go in `placed`, and the end.
    placed_starts: Vec<u32>,
    /// Where the next id put back of each range goes in `placed`.
    cursor: Vec<u32>,
    /// Counted ids put back, each range's keys in arrival order until
    /// [`Generation::settle`] sorts them.
    placed: Vec<u64>,
    /// How many ids are in `placed`.
    placed_n: usize,
    /// Ids put back by [`Generation::restore`] since the last lookup, as
    /// pairs of 64-bit halves, until [`Generation::settle`] moves them in.
    restored: Vec<u64>,
    /// The sorted ids, each as the 64 bits after its range ([`key_of`]),
    /// in increasing order of range, then key.
    keys: Vec<u64>,
    /// Where each range's keys begin in `keys`, and the count at the end;
    /// empty while `keys` is.
    starts: Vec<u32>,
    /// Ids first seen since `keys` last took them in.
    fresh: Set<u128>,
}

/// The fewest fresh ids moved into the sorted keys at once: below it a
/// table's room costs less than a merge.
const FRESH_MIN: usize = 1 << 16;

/// The fewest ids kept sorted: below it the index's 256 KiB cost more
/// than a hash table's room (a cluster worker may hold hundreds of
/// partitions with a few ids each). Tests take it low, so that the small
/// tables they make go both ways.
#[cfg(not(test))]
const SORTED_MIN: usize = 1 << 14;
#[cfg(test)]
const SORTED_MIN: usize = 64;

impl Generation {
    /// Counts an id to be put back (see [`Dedupe::count`]).
    fn count(&mut self, id: u128) {
        if self.counted.is_empty() {
            self.counted = vec![0; RANGES];
        }
        if let Some(c) = self.counted.get_mut(range_of(kept(id))) {
            *c = c.saturating_add(1);
        }
    }

    /// Puts back an id a store kept (moved in at the next lookup): into
    /// its range's room when it was counted, else as a pair of halves. A
    /// store gives each id once, and [`Generation::len`] counts what it
    /// gave until then.
    fn restore(&mut self, id: u128) {
        let id = kept(id);
        if !self.counted.is_empty() && self.place(id) {
            return;
        }
        self.restored.extend([(id >> 64) as u64, id as u64]);
    }

    /// Puts counted `id` in its range's room; false when the room is full
    /// (more ids came than were counted).
    fn place(&mut self, id: u128) -> bool {
        if self.placed_starts.is_empty() {
            self.placed_starts = starts_of(&self.counted);
            self.cursor = self.placed_starts.clone();
            let total = self.placed_starts.last().copied().unwrap_or(0) as usize;
            self.placed = vec![0; total];
        }
        let r = range_of(id);
        let (Some(at), Some(&end)) = (self.cursor.get_mut(r), self.placed_starts.get(r + 1)) else {
            return false;
        };
        if *at >= end {
            return false;
        }
        let Some(slot) = self.placed.get_mut(*at as usize) else {
            return false;
        };
        *slot = key_of(id);
        *at += 1;
        self.placed_n += 1;
        true
    }

    /// The counted ids put back so far, by range: (range, keys).
    fn placed_ranges(&self) -> impl Iterator<Item = (usize, &[u64])> + '_ {
        (0..RANGES).filter_map(move |r| {
            let lo = *self.placed_starts.get(r)? as usize;
            let hi = *self.cursor.get(r)? as usize;
            Some((r, self.placed.get(lo..hi)?))
        })
    }

    /// Sorts the counted ids put back, range by range, moving them
    /// together over any room left unfilled.
    fn settle_placed(&mut self) {
        if self.counted.is_empty() && self.placed_starts.is_empty() {
            return;
        }
        let mut placed = std::mem::take(&mut self.placed);
        let mut counts = vec![0u32; RANGES];
        let mut w = 0usize;
        for r in 0..RANGES {
            let (Some(&lo), Some(&hi)) = (self.placed_starts.get(r), self.cursor.get(r)) else {
                continue;
            };
            let (lo, hi) = (lo as usize, hi as usize);
            let Some(run) = placed.get_mut(lo..hi) else {
                continue;
            };
            run.sort_unstable();
            let mut last = None;
            for i in lo..hi {
                let Some(&key) = placed.get(i) else {
                    break;
                };
                if last == Some(key) {
                    continue;
                }
                last = Some(key);
                // `w <= i`: keys only move down.
                if let Some(slot) = placed.get_mut(w) {
                    *slot = key;
                }
                w += 1;
                if let Some(c) = counts.get_mut(r) {
                    *c += 1;
                }
            }
        }
        placed.truncate(w);
        self.counted = Vec::new();
        self.placed_starts = Vec::new();
        self.cursor = Vec::new();
        self.placed_n = 0;
        if self.keys.is_empty() {
            self.keys = placed;
            self.starts = starts_of(&counts);
        } else {
            self.merge_plainly(ranges_of(&counts, &placed));
        }
    }

    /// Merges `ids` (kept parts) with the sorted keys by building the
    /// table again: for ids put back into a table already in use, which
    /// no store does.
    fn merge_plainly(&mut self, ids: impl Iterator<Item = u128>) {
        let mut all: Vec<u128> = self.sorted_ids().collect();
        all.extend(ids);
        all.sort_unstable();
        all.dedup();
        self.set_sorted(&all);
    }

    /// Moves the ids restored since the last lookup in with the sorted
    /// ones: those counted first are in their ranges' room already; the
    /// others are sorted as pairs of halves where they were put back and
    /// each pair's key written over the front of that same buffer, so the
    /// ids are never held twice. A few ids go to the hash table instead.
    fn settle(&mut self) {
        self.settle_placed();
        self.settle_pairs();
        if !self.keys.is_empty() && self.keys.len() < SORTED_MIN {
            let ids: Vec<u128> = self.sorted_ids().collect();
            self.fresh.extend(ids);
            self.keys = Vec::new();
            self.starts = Vec::new();
        }
    }

    /// Moves the ids restored as pairs of halves in with the sorted ones
    /// (see [`Generation::settle`]).
    fn settle_pairs(&mut self) {
        if self.restored.is_empty() {
            return;
        }
        let mut buffer = std::mem::take(&mut self.restored);
        let (pairs, _) = buffer.as_chunks_mut::<2>();
        pairs.sort_unstable();
        let n = pairs.len();
        let id = |pair: [u64; 2]| (u128::from(pair[0]) << 64) | u128::from(pair[1]);
        let mut counts = vec![0u32; RANGES];
        let mut kept_n = 0;
        let mut last = None;
        for i in 0..n {
            let Some(&pair) = buffer.as_chunks::<2>().0.get(i) else {
                break;
            };
            let value = id(pair);
            if last == Some(value) {
                continue;
            }
            last = Some(value);
            if let Some(c) = counts.get_mut(range_of(value)) {
                *c += 1;
            }
            // `kept_n <= i`: the key goes where a pair was read already.
            if let Some(slot) = buffer.get_mut(kept_n) {
                *slot = key_of(value);
            }
            kept_n += 1;
        }
        buffer.truncate(kept_n);
        buffer.shrink_to_fit();
        if self.keys.is_empty() {
            self.keys = buffer;
            self.starts = starts_of(&counts);
        } else {
            self.merge_plainly(ranges_of(&counts, &buffer));
        }
    }

    /// Replaces the sorted keys with `ids` (sorted, distinct, kept parts).
    fn set_sorted(&mut self, ids: &[u128]) {
        let mut counts = vec![0u32; RANGES];
        self.keys.clear();
        self.keys.reserve_exact(ids.len());
        for &id in ids {
            if let Some(c) = counts.get_mut(range_of(id)) {
                *c += 1;
            }
            self.keys.push(key_of(id));
        }
        self.starts = starts_of(&counts);
    }

    /// The sorted keys of range `r`.
    fn range(&self, r: usize) -> &[u64] {
        match (self.starts.get(r), self.starts.get(r + 1)) {
            (Some(&lo), Some(&hi)) => self.keys.get(lo as usize..hi as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The ids the sorted keys stand for (their kept parts), in order.
    fn sorted_ids(&self) -> impl Iterator<Item = u128> + '_ {
        (0..RANGES).flat_map(move |r| self.range(r).iter().map(move |&k| id_of(r, k)))
    }

    /// Whether the sorted keys hold `id` (a kept part).
    fn sorted_contains(&self, id: u128) -> bool {
        self.range(range_of(id)).binary_search(&key_of(id)).is_ok()
    }

    /// Whether `id` is here.
    fn contains(&mut self, id: u128) -> bool {
        self.settle();
        let id = kept(id);
        self.fresh.contains(&id) || self.sorted_contains(id)
    }

    /// Adds `id`; false when it was here already.
    fn insert(&mut self, id: u128) -> bool {
        self.settle();
        let id = kept(id);
        if self.sorted_contains(id) || !self.fresh.insert(id) {
            return false;
        }
        if self.fresh.len() >= FRESH_MIN.max(self.keys.len() / 4) {
            self.take_in_fresh();
        }
        true
    }

    /// Moves the fresh ids in with the sorted keys, merging from the end
    /// into the room made for them, so no second vector is made.
    fn take_in_fresh(&mut self) {
        self.settle();
        let mut fresh: Vec<u128> = self.fresh.drain().collect();
        fresh.sort_unstable();
        let old = self.keys.len();
        let mut counts: Vec<u32> = (0..RANGES).map(|r| self.range(r).len() as u32).collect();
        for &id in &fresh {
            if let Some(c) = counts.get_mut(range_of(id)) {
                *c += 1;
            }
        }
        // Exactly: a doubling vector would hold up to twice the ids' room.
        self.keys.reserve_exact(fresh.len());
        self.keys.resize(old + fresh.len(), 0);
        // The range of the last old key not yet placed.
        let mut r = RANGES;
        let (mut i, mut j) = (old, fresh.len());
        let mut at = self.keys.len();
        while j > 0 {
            at -= 1;
            let mine = i.checked_sub(1).and_then(|k| {
                while r > 0 && self.starts.get(r).is_none_or(|&s| s as usize > k) {
                    r -= 1;
                }
                self.keys.get(k).map(|&key| id_of(r, key))
            });
            let theirs = fresh.get(j - 1).copied();
            // The sets are disjoint, so no two ids are equal.
            let value = match (mine, theirs) {
                (Some(a), Some(b)) if a > b => {
                    i -= 1;
                    a
                }
                (_, Some(b)) => {
                    j -= 1;
                    b
                }
                (_, None) => break,
            };
            if let Some(slot) = self.keys.get_mut(at) {
                *slot = key_of(value);
            }
        }
        self.starts = starts_of(&counts);
    }

    /// Every id here (its kept part), in no particular order.
    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        let sorted = self.sorted_ids();
        let restored = self
            .restored
            .as_chunks::<2>()
            .0
            .iter()
            .map(|p| (u128::from(p[0]) << 64) | u128::from(p[1]));
        let placed = self
            .placed_ranges()
            .flat_map(|(r, keys)| keys.iter().map(move |&k| id_of(r, k)));
        sorted
            .chain(placed)
            .chain(restored)
            .chain(self.fresh.iter().copied())
    }

    /// How many ids are here.
    fn len(&self) -> usize {
        self.keys.len() + self.placed_n + self.restored.len() / 2 + self.fresh.len()
    }

    /// Forgets every id, keeping the room made for them.
    fn clear(&mut self) {
        self.keys.clear();
        self.starts.clear();
        self.restored.clear();
        self.fresh.clear();
        self.counted = Vec::new();
        self.placed_starts = Vec::new();
        self.cursor = Vec::new();
        self.placed = Vec::new();
        self.placed_n = 0;
    }
}

/// Where each range begins, from how many ids each holds, and the count
/// at the end.
fn starts_of(counts: &[u32]) -> Vec<u32> {
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut at = 0u32;
    starts.push(0);
    for &c in counts {
        at += c;
        starts.push(at);
    }
    starts
}

/// The ids that `keys`, counted by range in `counts`, stand for.
fn ranges_of<'a>(counts: &'a [u32], keys: &'a [u64]) -> impl Iterator<Item = u128> + 'a {
    let mut at = 0usize;
    counts.iter().enumerate().flat_map(move |(r, &c)| {
        let from = at;
        at += c as usize;
        keys.get(from..at)
            .unwrap_or(&[])
            .iter()
            .map(move |&k| id_of(r, k))
    })
}

/// The set's serialised form is a sequence of ids, as the hash set it
/// replaced wrote it, so whole-state checkpoints of earlier releases read.
impl serde::Serialize for Generation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for id in self.iter() {
            seq.serialize_element(&id)?;
        }
        seq.end()
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

    /// Ids from small numbers: `range` picks one of a few ranges, `key`
    /// the compared bits after it, and `noise` bits that are not compared.
    fn id(range: u128, key: u128, noise: u64) -> u128 {
        (range << 112) | (key << 48) | u128::from(noise & 0xffff_ffff_ffff)
    }

    proptest::proptest! {
        #[test]
        fn a_generation_answers_as_a_set_of_kept_parts_does(
            restored in proptest::collection::vec((0u128..4, 0u128..500, proptest::prelude::any::<u64>()), 0..300),
            uniform in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..300),
            ops in proptest::collection::vec((0u128..4, 0u128..500, proptest::prelude::any::<u64>(), proptest::prelude::any::<bool>()), 0..400),
            counted_first in proptest::prelude::any::<bool>(),
        ) {
            let mut g = Generation::default();
            let mut model = std::collections::HashSet::new();
            // A store gives each id back once (counted first, or not).
            let back: Vec<u128> = restored
                .into_iter()
                .map(|(r, k, n)| id(r, k, n))
                .chain(uniform)
                .filter(|&id| model.insert(kept(id)))
                .collect();
            if counted_first {
                back.iter().for_each(|&id| g.count(id));
            }
            for id in back {
                g.restore(id);
            }
            proptest::prop_assert_eq!(g.len(), model.len());
            for (i, (r, k, noise, take_in)) in ops.into_iter().enumerate() {
                let id = id(r, k, noise);
                proptest::prop_assert_eq!(g.insert(id), model.insert(kept(id)), "insert {}", id);
                let other = id ^ (1 << 48);
                proptest::prop_assert_eq!(g.contains(other), model.contains(&kept(other)));
                // Bits below the compared ones make no difference.
                proptest::prop_assert!(g.contains(id ^ 1));
                // Fresh ids moved into the sorted keys now and then, as a
                // larger table would be.
                if take_in && i % 40 == 0 {
                    g.take_in_fresh();
                    proptest::prop_assert!(g.fresh.is_empty());
                }
                proptest::prop_assert_eq!(g.len(), model.len());
            }
            g.take_in_fresh();
            let mut all: Vec<u128> = g.iter().collect();
            proptest::prop_assert!(all.windows(2).all(|w| w[0] < w[1]), "in order");
            all.sort_unstable();
            let mut want: Vec<u128> = model.into_iter().collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(all, want);
        }
    }

    #[test]
    fn counted_ids_are_placed_and_more_or_fewer_than_counted_still_read() {
        // Counted: placed in their ranges' room, never held as pairs.
        let mut g = Generation::default();
        let ids: Vec<u128> = (0..1000u128).map(|i| id(i % 5, i, 3)).collect();
        ids.iter().for_each(|&i| g.count(i));
        ids.iter().for_each(|&i| g.restore(i));
        assert!(g.restored.is_empty());
        assert_eq!(g.len(), 1000);
        assert!(ids.iter().all(|&i| g.contains(i ^ 1)));
        assert!(!g.contains(id(0, 1, 0)), "1 is in range 1");
        assert_eq!(g.keys.len(), 1000);
        // Fewer than the sorted table's least: into the hash table.
        let mut g = Generation::default();
        ids[..SORTED_MIN - 1].iter().for_each(|&i| g.count(i));
        ids[..SORTED_MIN - 1].iter().for_each(|&i| g.restore(i));
        assert!(g.contains(ids[0]));
        assert!(g.keys.is_empty() && g.starts.is_empty());
        assert_eq!(g.fresh.len(), SORTED_MIN - 1);
        // Fewer than counted: the room left is closed up.
        let mut g = Generation::default();
        ids.iter().for_each(|&i| g.count(i));
        ids[..600].iter().for_each(|&i| g.restore(i));
        assert_eq!(g.len(), 600);
        assert!(ids[..600].iter().all(|&i| g.contains(i)));
        assert!(!ids[600..].iter().any(|&i| g.contains(i)));
        // More than counted: the others are kept as pairs, then merged.
        let mut g = Generation::default();
        ids[..10].iter().for_each(|&i| g.count(i));
        ids.iter().for_each(|&i| g.restore(i));
        assert_eq!(g.restored.len(), 2 * 990);
        assert_eq!(g.len(), 1000);
        assert!(ids.iter().all(|&i| g.contains(i)));
        assert_eq!(g.len(), 1000);
    }

    #[test]
    fn ids_restored_into_a_table_in_use_are_merged_with_it() {
        let mut g = Generation::default();
        for i in 0..10u128 {
            g.restore(id(i % 3, i, 7));
        }
        assert!(g.contains(id(0, 0, 1)));
        assert!(g.insert(id(3, 99, 0)));
        g.take_in_fresh();
        for i in 10..20u128 {
            g.restore(id(i % 3, i, 7));
        }
        for i in 0..20u128 {
            assert!(g.contains(id(i % 3, i, 0)), "{i}");
        }
        assert!(g.contains(id(3, 99, 5)) && !g.contains(id(3, 98, 5)));
        assert_eq!(g.len(), 21);
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
        let set: std::collections::HashSet<u128> = [id(0, 3, 0), id(0, 1, 0), id(9, 2, 0)]
            .into_iter()
            .collect();
        let bytes = postcard::to_allocvec(&set).unwrap();
        let mut g: Generation = postcard::from_bytes(&bytes).unwrap();
        assert!(g.contains(id(9, 2, 0)) && g.contains(id(0, 3, 1)) && !g.contains(id(0, 2, 0)));
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
