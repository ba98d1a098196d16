//! The identities of the graph's nodes, end to end in one buffer.
//!
//! A node per identity, two or three per customer, each held for ever: as
//! an [`Identity`] (32 bytes) with its text in a heap block of its own
//! (another 24 to 40 with the allocator's rounding), a million customers
//! held about 130 MB of them. Here a node costs its text, one byte for its
//! kind and an 8-byte end: about a third of that.

use super::{Identity, Kind};

/// The mark of a kind: one ASCII byte before each text, so the buffer stays
/// one valid UTF-8 string that is sliced without being checked again.
fn mark(kind: Kind) -> char {
    match kind {
        Kind::User => 'u',
        Kind::Anonymous => 'a',
        Kind::Email => 'e',
    }
}

/// Every node's kind and text, by node number.
#[derive(Clone, Debug, Default)]
pub(super) struct Members {
    /// Each node's kind mark and text, end to end.
    text: String,
    /// Where each node's entry ends in `text` (it starts where the one
    /// before ends).
    ends: Vec<u64>,
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
        let end = usize::try_from(*self.ends.get(i)?).ok()?;
        let start = match i.checked_sub(1) {
            Some(before) => usize::try_from(*self.ends.get(before)?).ok()?,
            None => 0,
        };
        let entry = self.text.get(start..end)?;
        let mut chars = entry.chars();
        let kind = match chars.next()? {
            'u' => Kind::User,
            'a' => Kind::Anonymous,
            'e' => Kind::Email,
            _ => return None,
        };
        Some((kind, chars.as_str()))
    }

    /// Node `n`'s identity, as an owned value.
    pub(super) fn identity(&self, n: u32) -> Option<Identity> {
        let (kind, text) = self.get(n)?;
        let text = text.to_string();
        Some(match kind {
            Kind::User => Identity::User(text),
            Kind::Anonymous => Identity::Anonymous(text),
            Kind::Email => Identity::Email(text),
        })
    }

    /// Adds the next node.
    pub(super) fn push(&mut self, kind: Kind, text: &str) {
        let need = text.len() + 1;
        if self.text.capacity() - self.text.len() < need {
            // An eighth more rather than as much again: the buffer is
            // held for ever, and doubling would leave up to half unused.
            self.text
                .reserve_exact(need.max(self.text.len() / 8).max(4096));
        }
        self.text.push(mark(kind));
        self.text.push_str(text);
        self.ends.push(self.text.len() as u64);
    }

    /// Adds the next node, from its identity.
    pub(super) fn push_identity(&mut self, id: &Identity) {
        let (kind, text) = Kind::of(id);
        self.push(kind, text);
    }

    /// Every node's identity, in order, for the whole-state checkpoint.
    pub(super) fn iter(&self) -> impl Iterator<Item = Option<(Kind, &str)>> + '_ {
        (0..self.ends.len() as u32).map(|n| self.get(n))
    }

    /// Drops the last node (a checkpoint test's damage).
    #[cfg(test)]
    pub(super) fn pop(&mut self) {
        self.ends.pop();
        let end = self.ends.last().map_or(0, |&e| e as usize);
        self.text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            m.push_identity(id);
        }
        assert_eq!(m.len(), 4);
        for (n, id) in (0u32..).zip(&ids) {
            assert_eq!(m.identity(n).as_ref(), Some(id));
            assert_eq!(m.get(n), Some(Kind::of(id)));
        }
        assert_eq!(m.get(4), None);
        m.pop();
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(3), None);
        m.push(Kind::Anonymous, "d");
        assert_eq!(m.identity(3), Some(Identity::Anonymous("d".into())));
    }
}
