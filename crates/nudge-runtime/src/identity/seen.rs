//! Which identities the graph has: a Bloom filter over their names, so that
//! a call naming an identity never seen (every customer's first call) is
//! not looked up in the store, where it cannot be.
//!
//! A filter answers "maybe" for every name put in and, for a name not put
//! in, "no" but for about three in a thousand; a "maybe" costs a lookup
//! that finds nothing. Names cannot be taken out or the filter rebuilt
//! (their texts are in the store), so a full filter is followed by one
//! twice its size, and a name is looked for in each.

use std::hash::BuildHasher;

use super::Kind;

/// Bits per name a filter is made for.
const BITS_PER_NAME: usize = 12;
/// Bits set per name: with 12 bits a name, about 0.3% false "maybe"s.
const HASHES: u64 = 8;
/// The smallest filter made.
const SMALLEST: usize = 1 << 12;

/// Every name the graph has, as filters of growing size.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    filters: Vec<Filter>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Clone, Debug)]
struct Filter {
    bits: Vec<u64>,
    /// The names it is made for, and the names put in.
    capacity: usize,
    len: usize,
}

impl Filter {
    fn new(capacity: usize) -> Filter {
        let capacity = capacity.max(SMALLEST);
        Filter {
            bits: vec![0; (capacity * BITS_PER_NAME).div_ceil(64)],
            capacity,
            len: 0,
        }
    }

    /// The bits of a name's hash: double hashing over the filter's bits.
    fn positions(&self, h: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let m = (self.bits.len() * 64) as u64;
        let (a, b) = (h, h.rotate_left(32) | 1);
        (0..HASHES).map(move |i| {
            let bit = a.wrapping_add(i.wrapping_mul(b)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn put(&mut self, h: u64) {
        for (word, mask) in self.positions(h) {
            if let Some(w) = self.bits.get_mut(word) {
                *w |= mask;
            }
        }
        self.len += 1;
    }

    fn may_have(&self, h: u64) -> bool {
        self.positions(h)
            .all(|(word, mask)| self.bits.get(word).is_some_and(|w| w & mask != 0))
    }
}

impl Seen {
    /// A filter made for about `names` names.
    pub(super) fn with_capacity(names: usize) -> Seen {
        Seen {
            filters: vec![Filter::new(names)],
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn hash(&self, kind: Kind, text: &str) -> u64 {
        self.hasher.hash_one((kind as u8, text))
    }

    /// Notes that the graph has this identity.
    pub(super) fn put(&mut self, kind: Kind, text: &str) {
        let h = self.hash(kind, text);
        let full = self.filters.last().is_none_or(|f| f.len >= f.capacity);
        if full {
            let next = self.filters.last().map_or(SMALLEST, |f| f.capacity * 2);
            self.filters.push(Filter::new(next));
        }
        if let Some(f) = self.filters.last_mut() {
            f.put(h);
        }
    }

    /// False when the graph certainly does not have this identity.
    pub(super) fn may_have(&self, kind: Kind, text: &str) -> bool {
        let h = self.hash(kind, text);
        self.filters.iter().any(|f| f.may_have(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_put_in_is_found_and_few_others_are() {
        let mut seen = Seen::with_capacity(1000);
        for i in 0..50_000 {
            seen.put(Kind::User, &format!("u{i}"));
        }
        assert!(seen.filters.len() > 1, "the first filter filled up");
        assert!((0..50_000).all(|i| seen.may_have(Kind::User, &format!("u{i}"))));
        // The same text of another kind is another name.
        let false_maybes = (0..50_000)
            .filter(|i| seen.may_have(Kind::Anonymous, &format!("u{i}")))
            .count();
        assert!(false_maybes < 50_000 / 50, "{false_maybes} false maybes");
    }
}
