//! The reorder window of a streamed replay: lines are read one at a time,
//! held for a bounded number of lines, and let out in time order.
//!
//! A line leaves the window when the line `lines` after it in the file has
//! been read (or at the end of the input); whenever one must leave, every
//! held line stamped earlier leaves first. So lines out of order by fewer
//! than `lines` lines of the file come out exactly as a stable sort by time
//! would put them (equal times keep file order), and memory holds at most
//! `lines` lines whatever the input's size. A line that turns up later than
//! that, behind lines already let out, comes out when it is read: the
//! engine applies it as a late call.

use std::collections::VecDeque;

use crate::queue::RunQueue;

/// Lines held by default: a few seconds of a busy export, a few tens of
/// megabytes of memory at most.
pub const DEFAULT_LINES: usize = 100_000;

/// Lines held until they can be let out in time order.
#[derive(Debug)]
pub struct Window<T> {
    lines: u64,
    /// (time, sequence) of each held line, earliest first; most of a
    /// nearly sorted input comes in order, which the queue takes cheaply.
    order: RunQueue<(i64, u64)>,
    /// The held lines by sequence from `first` (`None` for lines let out or
    /// never taken in), so the oldest in the file is at the front: it spans
    /// at most `lines` sequences.
    held: VecDeque<Option<T>>,
    /// The sequence of the front of `held`.
    first: u64,
    /// How many lines are held.
    count: usize,
    /// The sequence of the latest line taken in.
    newest: Option<u64>,
    /// The latest time let out so far.
    out: Option<i64>,
    late: u64,
}

impl<T> Window<T> {
    /// A window holding lines until `lines` later lines were read; 0 lets
    /// every line out at once (file order) and `usize::MAX` holds them all
    /// (a full stable sort).
    pub fn new(lines: usize) -> Window<T> {
        Window {
            lines: u64::try_from(lines).unwrap_or(u64::MAX),
            order: RunQueue::default(),
            held: VecDeque::new(),
            first: 0,
            count: 0,
            newest: None,
            out: None,
            late: 0,
        }
    }

    /// Takes in a line stamped `time`; `seq` is its place in the input and
    /// must grow from one call to the next.
    pub fn push(&mut self, time: i64, seq: u64, item: T) {
        debug_assert!(self.newest.is_none_or(|n| n < seq), "sequences grow");
        self.newest = Some(seq);
        self.order.push((time, seq));
        if self.held.is_empty() {
            self.first = seq;
        }
        while self.first + (self.held.len() as u64) < seq {
            self.held.push_back(None);
        }
        self.held.push_back(Some(item));
        self.count += 1;
    }

    /// The next line that must leave now: while the oldest held line has
    /// been overtaken by `lines` later ones, the earliest-stamped one.
    pub fn next_due(&mut self) -> Option<(i64, u64, T)> {
        let (oldest, _) = self.oldest()?;
        let newest = self.newest?;
        if newest - oldest < self.lines {
            return None;
        }
        self.pop()
    }

    /// The earliest-stamped held line, at the end of the input.
    pub fn pop(&mut self) -> Option<(i64, u64, T)> {
        let (time, seq) = self.order.pop()?;
        // Every sequence in `order` has its line in `held`, counted from
        // `first`: `push` puts both, and only this takes from either.
        #[allow(clippy::expect_used, clippy::indexing_slicing)]
        let item = {
            let slot = usize::try_from(seq - self.first).expect("a held line is in the deque");
            self.held[slot].take().expect("every ordered line is held")
        };
        self.count -= 1;
        while matches!(self.held.front(), Some(None)) {
            self.held.pop_front();
            self.first += 1;
        }
        if self.out.is_some_and(|out| time < out) {
            self.late += 1;
        }
        self.out = Some(self.out.map_or(time, |out| out.max(time)));
        Some((time, seq, item))
    }

    /// The held line that comes first in the file, with its sequence.
    pub fn oldest(&self) -> Option<(u64, &T)> {
        match self.held.front() {
            Some(Some(item)) => Some((self.first, item)),
            _ => None,
        }
    }

    /// How many lines are held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no line is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Lines let out after a later-stamped one: out of order by more than
    /// the window, applied as late calls.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything `times` gives through a window of `lines`, as (time, seq).
    fn through(lines: usize, times: &[i64]) -> (Vec<(i64, u64)>, u64, usize) {
        let mut w = Window::new(lines);
        let mut out = Vec::new();
        let mut most = 0;
        for (i, &t) in times.iter().enumerate() {
            w.push(t, i as u64, ());
            while let Some((t, s, ())) = w.next_due() {
                out.push((t, s));
            }
            most = most.max(w.len());
        }
        while let Some((t, s, ())) = w.pop() {
            out.push((t, s));
        }
        (out, w.late(), most)
    }

    fn stable_sort(times: &[i64]) -> Vec<(i64, u64)> {
        let mut v: Vec<(i64, u64)> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i as u64))
            .collect();
        v.sort_by_key(|&(t, _)| t);
        v
    }

    #[test]
    fn sorted_input_comes_out_in_file_order_and_holds_at_most_the_window() {
        let times: Vec<i64> = (0..1000).map(|i| i / 3).collect();
        let (out, late, most) = through(10, &times);
        assert_eq!(out, stable_sort(&times));
        assert_eq!(late, 0);
        assert_eq!(most, 10);
    }

    #[test]
    fn a_line_late_by_less_than_the_window_is_put_in_its_place() {
        let times = [10, 20, 30, 40, 15, 50, 60];
        let (out, late, _) = through(4, &times);
        assert_eq!(out, stable_sort(&times));
        assert_eq!(late, 0);
    }

    #[test]
    fn a_line_late_by_more_than_the_window_comes_out_when_read() {
        let times = [10, 20, 30, 40, 50, 60, 15, 70];
        let (out, late, most) = through(3, &times);
        let seqs: Vec<u64> = out.iter().map(|&(_, s)| s).collect();
        // The late line leaves with the first line forced out after it.
        assert_eq!(seqs, [0, 1, 2, 6, 3, 4, 5, 7]);
        assert_eq!(late, 1);
        assert!(most <= 3);
    }

    #[test]
    fn a_line_stamped_far_ahead_does_not_hold_the_window_open() {
        let times = [10, 1_000_000, 20, 30, 40, 50, 60];
        let mut w = Window::new(2);
        let mut out = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            w.push(t, i as u64, ());
            while let Some((_, s, ())) = w.next_due() {
                out.push(s);
            }
            // The read position of a durable run is the oldest held line.
            if let Some((oldest, ())) = w.oldest() {
                assert!(i as u64 - oldest < 2, "line {oldest} held at {i}");
            }
        }
        while let Some((_, s, ())) = w.pop() {
            out.push(s);
        }
        // Line 1 leaves once two lines were read after it, with the earlier
        // ones; the lines after it are then late.
        assert_eq!(out, [0, 2, 3, 1, 4, 5, 6]);
        assert_eq!(w.late(), 3);
    }

    #[test]
    fn no_window_is_file_order_and_an_unbounded_one_a_full_sort() {
        let times = [5, 3, 9, 1, 1, 7];
        let (out, _, _) = through(0, &times);
        let seqs: Vec<u64> = out.iter().map(|&(_, s)| s).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        let (out, late, _) = through(usize::MAX, &times);
        assert_eq!(out, stable_sort(&times));
        assert_eq!(late, 0);
    }

    proptest! {
        /// Lines moved by fewer than the window come out as the stable sort.
        #[test]
        fn local_disorder_within_the_window_equals_the_stable_sort(
            base in proptest::collection::vec(0i64..50, 1..300),
            moves in proptest::collection::vec((0usize..300, 0usize..8), 0..40),
            window in 8usize..20,
        ) {
            // A sorted stream, then lines swapped with one at most 7 later:
            // every inverted pair is fewer than 8 lines apart.
            let mut times = base;
            times.sort();
            let n = times.len();
            for (at, by) in moves {
                let (a, b) = (at % n, (at % n + by).min(n - 1));
                times.swap(a, b);
            }
            let inverted_far = (0..n).any(|i| (i + window + 1..n).any(|j| times[j] < times[i]));
            prop_assume!(!inverted_far);
            let (out, late, most) = through(window, &times);
            prop_assert_eq!(out, stable_sort(&times));
            prop_assert_eq!(late, 0);
            prop_assert!(most <= window);
        }

        /// Any input, however far out of order, leaves as one ordered set
        /// of every held line would let it out.
        #[test]
        fn the_run_and_the_heap_let_lines_out_as_one_queue(
            times in proptest::collection::vec(-20i64..20, 0..300),
            window in 0usize..30,
        ) {
            let mut w = Window::new(window);
            let mut model = std::collections::BTreeSet::new();
            let mut seqs = std::collections::BTreeSet::new();
            for (seq, &t) in times.iter().enumerate() {
                let seq = seq as u64;
                w.push(t, seq, ());
                model.insert((t, seq));
                seqs.insert(seq);
                while seqs.first().is_some_and(|&o| seq - o >= window as u64) {
                    let first = model.pop_first();
                    let (time, s, ()) = w.next_due().expect("a line is due");
                    prop_assert_eq!(Some((time, s)), first);
                    seqs.remove(&s);
                }
                prop_assert!(w.next_due().is_none());
            }
            while let Some(first) = model.pop_first() {
                let (time, s, ()) = w.pop().expect("a line is held");
                prop_assert_eq!((time, s), first);
            }
            prop_assert!(w.pop().is_none());
        }

        /// Sequences with gaps (blank or refused lines are not taken in):
        /// every line still comes out once, the oldest held is right, and
        /// no line is held once `lines` sequences passed it.
        #[test]
        fn gaps_in_the_sequence_are_kept_apart(
            lines in proptest::collection::vec((-50i64..50, 1u64..6), 0..200),
            window in 1usize..20,
        ) {
            let mut w = Window::new(window);
            let mut seq = 0;
            let mut held = std::collections::BTreeSet::new();
            let mut out = 0;
            for (t, gap) in &lines {
                seq += gap;
                w.push(*t, seq, seq);
                held.insert(seq);
                while let Some((_, s, item)) = w.next_due() {
                    prop_assert_eq!(s, item);
                    prop_assert!(held.remove(&s));
                    out += 1;
                }
                prop_assert_eq!(w.oldest().map(|(s, &i)| (s, i)), held.first().map(|&s| (s, s)));
                prop_assert_eq!(w.len(), held.len());
                prop_assert!(held.first().is_none_or(|&o| seq - o < window as u64));
            }
            while let Some((_, s, _)) = w.pop() {
                prop_assert!(held.remove(&s));
                out += 1;
            }
            prop_assert_eq!(out, lines.len());
            prop_assert!(w.is_empty());
        }

        /// Whatever the input, every line comes out exactly once and the
        /// window never holds more than its size.
        #[test]
        fn every_line_comes_out_once(
            times in proptest::collection::vec(-100i64..100, 0..300),
            window in 1usize..30,
        ) {
            let (out, _, most) = through(window, &times);
            let mut seqs: Vec<u64> = out.iter().map(|&(_, s)| s).collect();
            seqs.sort_unstable();
            prop_assert_eq!(seqs, (0..times.len() as u64).collect::<Vec<_>>());
            prop_assert!(most <= window);
        }
    }
}
