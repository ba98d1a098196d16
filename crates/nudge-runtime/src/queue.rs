//! A priority queue for items that mostly come in order: the timers (each
//! set some time after a clock that only moves on) and a replay's reorder
//! window (a file that is nearly sorted).
//!
//! Items not before the last one of the run are appended to it, a deque in
//! order; the others go to a binary heap. The earlier of the two fronts
//! leaves first, so the order is exactly one heap's, while the items that
//! came in order cost O(1) to take in and let out instead of a heap's
//! O(log n) walk through memory far apart.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Items let out smallest first.
#[derive(Clone, Debug)]
pub(crate) struct RunQueue<T> {
    /// Items in order, each not before the one ahead of it.
    run: VecDeque<T>,
    /// The items that came out of order.
    heap: BinaryHeap<Reverse<T>>,
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        RunQueue {
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }
}

/// Room to add to a full table: an eighth of it rather than as much again,
/// so at most a ninth of its memory sits unused instead of up to half
/// (growth stays amortized O(1); the table is only copied more often).
fn room(len: usize) -> usize {
    (len / 8).max(16)
}

impl<T: Ord + Copy> RunQueue<T> {
    /// Takes in `item`.
    pub(crate) fn push(&mut self, item: T) {
        if self.run.back().is_none_or(|last| item >= *last) {
            if self.run.len() == self.run.capacity() {
                self.run.reserve_exact(room(self.run.len()));
            }
            self.run.push_back(item);
        } else {
            if self.heap.len() == self.heap.capacity() {
                self.heap.reserve_exact(room(self.heap.len()));
            }
            self.heap.push(Reverse(item));
        }
    }

    /// The smallest item, and whether it is the run's.
    fn front(&self) -> Option<(T, bool)> {
        match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(Reverse(h))) if h < r => Some((*h, false)),
            (Some(r), _) => Some((*r, true)),
            (None, h) => h.map(|Reverse(h)| (*h, false)),
        }
    }

    /// The smallest item.
    pub(crate) fn peek(&self) -> Option<T> {
        self.front().map(|(item, _)| item)
    }

    /// Takes out the smallest item.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let (item, in_run) = self.front()?;
        if in_run {
            self.run.pop_front();
        } else {
            self.heap.pop();
        }
        Some(item)
    }

    /// The items that came in order, from the front while `keep` holds (a
    /// cheap look ahead: those that came out of order are left out).
    pub(crate) fn run_while(&self, keep: impl Fn(&T) -> bool) -> impl Iterator<Item = &T> {
        self.run.iter().take_while(move |t| keep(t))
    }

    /// Every item, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.run.iter().chain(self.heap.iter().map(|Reverse(t)| t))
    }

    /// How many items are held.
    pub(crate) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    /// Keeps only the items `keep` says to, and gives back the room the
    /// others took beyond what growth leaves spare: what is let go leaves
    /// memory, not only the queue. Returns how many were dropped.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.len();
        self.run.retain(|t| keep(t));
        self.heap.retain(|Reverse(t)| keep(t));
        let (run, heap) = (self.run.len(), self.heap.len());
        self.run.shrink_to(run + room(run));
        self.heap.shrink_to(heap + room(heap));
        before - self.len()
    }
}

/// A sequence of the items, as the binary heap it replaced wrote itself,
/// so that whole-state checkpoints written before read back.
impl<T: serde::Serialize> serde::Serialize for RunQueue<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.run.iter().chain(self.heap.iter().map(|Reverse(t)| t)))
    }
}

impl<'de, T: serde::Deserialize<'de> + Ord + Copy> serde::Deserialize<'de> for RunQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items: Vec<T> = Vec::deserialize(deserializer)?;
        Ok(RunQueue {
            run: VecDeque::new(),
            heap: items.into_iter().map(Reverse).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Pushes and pops in any mix let items out as a binary heap does.
        #[test]
        fn items_leave_as_from_one_heap(ops in proptest::collection::vec(proptest::option::of(-30i64..30), 0..400)) {
            let mut q = RunQueue::default();
            let mut model = BinaryHeap::new();
            for op in ops {
                match op {
                    Some(v) => {
                        q.push(v);
                        model.push(Reverse(v));
                    }
                    None => prop_assert_eq!(q.pop(), model.pop().map(|Reverse(v)| v)),
                }
                prop_assert_eq!(q.peek(), model.peek().map(|Reverse(v)| *v));
                prop_assert_eq!(q.len(), model.len());
            }
            let dropped = q.retain(|v| v % 3 != 0);
            let kept: BinaryHeap<Reverse<i64>> = model.iter().copied().filter(|Reverse(v)| v % 3 != 0).collect();
            prop_assert_eq!(dropped, model.len() - kept.len());
            model = kept;
            prop_assert_eq!(q.peek(), model.peek().map(|Reverse(v)| *v));
            let mut all: Vec<i64> = q.iter().copied().collect();
            all.sort_unstable();
            let mut want: Vec<i64> = model.into_iter().map(|Reverse(v)| v).collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }

    #[test]
    fn the_serialised_form_is_the_heaps_it_replaced() {
        let heap: BinaryHeap<Reverse<i64>> = [5, 1, 3].into_iter().map(Reverse).collect();
        let bytes = postcard::to_allocvec(&heap).unwrap();
        let mut q: RunQueue<i64> = postcard::from_bytes(&bytes).unwrap();
        q.push(9);
        let again: BinaryHeap<Reverse<i64>> =
            postcard::from_bytes(&postcard::to_allocvec(&q).unwrap()).unwrap();
        let mut back: Vec<i64> = again.into_iter().map(|Reverse(v)| v).collect();
        back.sort_unstable();
        assert_eq!(back, [1, 3, 5, 9]);
        assert_eq!(q.pop(), Some(1));
    }
}
