//! The identities of the graph's nodes, end to end in chunks of text.
//!
//! A node per identity, two or three per customer, each held for ever: as
//! an [`Identity`] (32 bytes) with its text in a heap block of its own
//! (another 24 to 40 with the allocator's rounding), a million customers
//! held about 130 MB of them. Here a node costs its text, one byte for its
//! kind and an 8-byte end: about a third of that. The text is kept in
//! chunks of a fixed size rather than one growing buffer, so that growing
//! never copies it (a copy holds the old and the new buffer at once, which
//! at a restart of a million customers was the peak).

use super::Kind;

/// The mark of a kind: one ASCII byte before each text, so the buffer stays
/// one valid UTF-8 string that is sliced without being checked again.
fn mark(kind: Kind) -> char {
    match kind {
        Kind::User => 'u',
        Kind::Anonymous => 'a',
        Kind::Email => 'e',
    }
}

/// An entry's kind and text: its kind mark, then the text.
pub(super) fn entry(entry: &str) -> Option<(Kind, &str)> {
    let mut chars = entry.chars();
    let kind = match chars.next()? {
        'u' => Kind::User,
        'a' => Kind::Anonymous,
        'e' => Kind::Email,
        _ => return None,
    };
    Some((kind, chars.as_str()))
}

/// An entry as [`entry`] reads it: the kind mark, then the text. A store
/// looks nodes up by it (their *name*).
pub(super) fn make_entry(kind: Kind, text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 1);
    s.push(mark(kind));
    s.push_str(text);
    s
}

/// The size of a chunk of text; a longer entry has a chunk of its own.
const CHUNK: usize = 1 << 20;

/// Every node's kind and text, by node number.
#[derive(Clone, Debug, Default)]
pub(super) struct Members {
    /// Each node's kind mark and text, end to end, in chunks that are
    /// never grown: an entry that does not fit starts the next one.
    chunks: Vec<String>,
    /// Where each node's entry ends: its chunk in the high 32 bits, the
    /// offset in the low (it starts where the one before ends, when that
    /// one is in the same chunk, else at the chunk's start).
    ends: Vec<u64>,
}

/// An entry's chunk and end offset, from its packed end.
fn unpack(end: u64) -> (usize, usize) {
    ((end >> 32) as usize, (end & 0xffff_ffff) as usize)
}

impl Members {
    /// How many nodes there are.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Makes room for `n` more nodes.
    pub(super) fn reserve(&mut self, n: usize) {
        self.ends.reserve_exact(n);
    }

    /// Node `n`'s kind and text.
    pub(super) fn get(&self, n: u32) -> Option<(Kind, &str)> {
        let i = n as usize;
        let (chunk, end) = unpack(*self.ends.get(i)?);
        let start = match i.checked_sub(1).and_then(|before| self.ends.get(before)) {
            Some(&e) if unpack(e).0 == chunk => unpack(e).1,
            _ => 0,
        };
        entry(self.chunks.get(chunk)?.get(start..end)?)
    }

    /// Adds the next node.
    pub(super) fn push(&mut self, kind: Kind, text: &str) {
        let need = text.len() + 1;
        // A chunk grows like any string up to the chunk size (a small
        // graph stays small); then the next one is made whole.
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.len() + need <= CHUNK.max(c.capacity()));
        if !fits {
            let size = if self.chunks.is_empty() {
                need
            } else {
                need.max(CHUNK)
            };
            self.chunks.push(String::with_capacity(size));
        }
        let chunk = self.chunks.len() - 1;
        if let Some(c) = self.chunks.last_mut() {
            c.push(mark(kind));
            c.push_str(text);
            self.ends.push((chunk as u64) << 32 | c.len() as u64);
        }
    }

    /// Drops the last node (a checkpoint test's damage).
    #[cfg(test)]
    pub(super) fn pop(&mut self) {
        let Some(last) = self.ends.pop() else {
            return;
        };
        let (chunk, _) = unpack(last);
        let start = match self.ends.last() {
            Some(&e) if unpack(e).0 == chunk => unpack(e).1,
            _ => 0,
        };
        if let Some(c) = self.chunks.get_mut(chunk) {
            c.truncate(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn entries_fill_chunks_without_straddling_them() {
        let mut m = Members::default();
        let long = "x".repeat(CHUNK + 5);
        let texts: Vec<String> = (0..3000)
            .map(|i| match i {
                1000 => long.clone(),
                _ => format!("{i}-{}", "y".repeat(i % 700)),
            })
            .collect();
        for t in &texts {
            m.push(Kind::Anonymous, t);
        }
        assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());
        assert!(m.chunks.iter().skip(1).all(|c| c.capacity() >= CHUNK));
        for (n, t) in (0u32..).zip(&texts) {
            assert_eq!(m.get(n), Some((Kind::Anonymous, t.as_str())), "node {n}");
        }
    }

    #[test]
    fn nodes_read_back_as_pushed() {
        let mut m = Members::default();
        let ids = [
            Identity::User("u-1".into()),
            Identity::Anonymous(String::new()),
            Identity::Email("é@example.com".into()),
            Identity::User("ünï".into()),
        ];
        for id in &ids {
            let (kind, text) = Kind::of(id);
            m.push(kind, text);
        }
        assert_eq!(m.len(), 4);
        for (n, id) in (0u32..).zip(&ids) {
            assert_eq!(m.get(n), Some(Kind::of(id)));
            let entry = make_entry(Kind::of(id).0, Kind::of(id).1);
            assert_eq!(super::entry(&entry), Some(Kind::of(id)));
        }
        assert_eq!(m.get(4), None);
        m.pop();
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(3), None);
        m.push(Kind::Anonymous, "d");
        assert_eq!(m.get(3), Some((Kind::Anonymous, "d")));
    }
}
