//! Dropping calls that were delivered twice, by their `messageId`.
//!
//! Senders retry, and warehouse exports overlap; the spec's `messageId` is
//! what makes a call unique. Ids are remembered as 128-bit hashes, so memory
//! stays small on long replays while an accidental collision stays out of
//! reach (about one in 10^20 for a billion ids).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// The message ids seen so far.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Dedupe {
    seen: HashSet<u128>,
}

impl Dedupe {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message_id`; returns false when it was already seen.
    pub fn first_time(&mut self, message_id: &str) -> bool {
        self.seen.insert(fingerprint(message_id))
    }

    /// How many distinct ids were seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Two independent 64-bit hashes of the id, side by side.
fn fingerprint(id: &str) -> u128 {
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

    #[test]
    fn repeats_are_caught_and_distinct_ids_are_not() {
        let mut d = Dedupe::new();
        assert!(d.first_time("m-1"));
        assert!(d.first_time("m-2"));
        assert!(!d.first_time("m-1"));
        assert_eq!(d.len(), 2);
        let many: usize = (0..100_000)
            .filter(|i| d.first_time(&format!("id-{i}")))
            .count();
        assert_eq!(many, 100_000, "no false duplicates among distinct ids");
    }

    #[test]
    fn fingerprints_do_not_depend_on_the_process() {
        // Fixed keys: this value must never change, or ids stored by an
        // earlier run would no longer be recognised.
        assert_eq!(fingerprint("m-1"), 220638064234136960513091537899273337876);
    }
}
