//! The texts of the graph's nodes: every one in memory, or, once a store
//! holds them, only those the engine needs now.
//!
//! A node's links (its parent, its set's size and user id) are 12 bytes and
//! stay in memory; its text is most of what a node costs (a million
//! customers' user ids and addresses are tens of megabytes) and is read
//! only to find a node by name, to show a customer's id, and to write a
//! node's row. A text never changes once its node is made, so a text the
//! store holds can be let go and read back when needed.

use super::Kind;
use super::members::{Members, entry, make_entry};
use super::seen::Seen;

/// The texts of the graph's nodes.
#[derive(Clone, Debug)]
pub(super) enum Texts {
    /// Every node's text, by number.
    All(Members),
    /// Some nodes' texts (kind mark, then text); a store holds every
    /// node's, and the engine reads one back by name or by number when a
    /// call, a lookup or a take needs it. `seen` has every node's name.
    Some {
        kept: crate::fast::Map<u32, Box<str>>,
        seen: Seen,
    },
}

impl Default for Texts {
    fn default() -> Self {
        Texts::All(Members::default())
    }
}

impl Texts {
    /// No text in memory, for a graph of about `nodes` nodes whose names
    /// are noted as they come ([`Texts::note`]).
    pub(super) fn left(nodes: usize) -> Texts {
        Texts::Some {
            kept: Default::default(),
            seen: Seen::with_capacity(nodes.saturating_mul(2)),
        }
    }

    /// Notes that a node of this name is stored (its text left there).
    pub(super) fn note(&mut self, kind: Kind, text: &str) {
        if let Texts::Some { seen, .. } = self {
            seen.put(kind, text);
        }
    }

    /// False when no node of this name is stored (nor in memory).
    pub(super) fn may_be_stored(&self, kind: Kind, text: &str) -> bool {
        match self {
            Texts::All(_) => false,
            Texts::Some { seen, .. } => seen.may_have(kind, text),
        }
    }

    /// Node `n`'s kind and text, when in memory.
    pub(super) fn get(&self, n: u32) -> Option<(Kind, &str)> {
        match self {
            Texts::All(m) => m.get(n),
            Texts::Some { kept, .. } => entry(kept.get(&n)?),
        }
    }

    /// Adds node `n`, the next one.
    pub(super) fn push(&mut self, n: u32, kind: Kind, text: &str) {
        match self {
            Texts::All(m) => m.push(kind, text),
            Texts::Some { kept, seen } => {
                kept.insert(n, make_entry(kind, text).into_boxed_str());
                seen.put(kind, text);
            }
        }
    }

    /// Keeps node `n`'s text, read back from the store. False when every
    /// text is in memory already (nothing is read back then).
    pub(super) fn learn(&mut self, n: u32, kind: Kind, text: &str) -> bool {
        match self {
            Texts::All(_) => false,
            Texts::Some { kept, .. } => {
                kept.entry(n)
                    .or_insert_with(|| make_entry(kind, text).into_boxed_str());
                true
            }
        }
    }

    /// Whether only some texts are in memory.
    pub(super) fn partial(&self) -> bool {
        matches!(self, Texts::Some { .. })
    }

    /// Lets go of the texts `keep` says no to, keeping only some from now
    /// on. The caller says which the store holds.
    pub(super) fn keep_only(&mut self, nodes: u32, mut keep: impl FnMut(u32) -> bool) {
        match self {
            Texts::All(m) => {
                let mut kept = crate::fast::Map::default();
                let mut seen = Seen::with_capacity((nodes as usize).saturating_mul(2));
                for n in 0..nodes {
                    if let Some((kind, text)) = m.get(n) {
                        seen.put(kind, text);
                        if keep(n) {
                            kept.insert(n, make_entry(kind, text).into_boxed_str());
                        }
                    }
                }
                *self = Texts::Some { kept, seen };
            }
            Texts::Some { kept, .. } => {
                kept.retain(|&n, _| keep(n));
                // A flood of names read back leaves its table large.
                if kept.capacity() > 64 && kept.capacity() > 4 * kept.len() {
                    kept.shrink_to_fit();
                }
            }
        }
    }

    /// Every text in memory again, once each of the `nodes` nodes has its
    /// own (after every one was read back): `false` while one is missing.
    pub(super) fn make_whole(&mut self, nodes: u32) -> bool {
        let Texts::Some { kept: map, .. } = self else {
            return true;
        };
        if map.len() != nodes as usize {
            return false;
        }
        let mut m = Members::default();
        m.reserve(nodes as usize);
        for n in 0..nodes {
            match map.get(&n).and_then(|e| entry(e)) {
                Some((kind, text)) => m.push(kind, text),
                None => return false,
            }
        }
        *self = Texts::All(m);
        true
    }

    /// The nodes whose texts are in memory, out of `nodes`.
    pub(super) fn numbers(&self, nodes: u32) -> Vec<u32> {
        match self {
            Texts::All(m) => (0..nodes.min(m.len() as u32)).collect(),
            Texts::Some { kept, .. } => kept.keys().copied().collect(),
        }
    }

    /// Whether the texts fit a graph of `nodes` nodes: one each when all
    /// are in memory; none beyond the last node otherwise.
    pub(super) fn fits(&self, nodes: usize) -> bool {
        match self {
            Texts::All(m) => m.len() == nodes,
            Texts::Some { kept, .. } => kept.keys().all(|&n| (n as usize) < nodes),
        }
    }

    /// Makes room for `n` more nodes.
    pub(super) fn reserve(&mut self, n: usize) {
        if let Texts::All(m) = self {
            m.reserve(n);
        }
    }

    /// Drops the last node's text (a checkpoint test's damage).
    #[cfg(test)]
    pub(super) fn pop(&mut self) {
        if let Texts::All(m) = self {
            m.pop();
        }
    }
}
