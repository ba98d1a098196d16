//! The timer queue: what is due when, in a binary heap.
//!
//! Every operation costs O(log n) in the number of pending timers, so a
//! million sleeping instances cost no more per event than a thousand.
//! Cancelling is lazy: a timer carries the generation of what it wakes, and
//! a woken owner whose generation has moved on ignores it. That keeps
//! cancellation O(1) at the price of stale entries, which pop in due course.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// A flow instance (sleep ended, wait timed out, deferred send due).
    Instance {
        /// The instance's slot.
        id: u32,
        /// The instance's generation when the timer was set.
        generation: u32,
    },
    /// A date-property trigger for one customer and flow.
    DateTrigger {
        /// The customer.
        customer: u32,
        /// The flow.
        flow: u32,
        /// The arming's generation.
        generation: u32,
    },
    /// A scheduled trigger's next occurrence for one customer.
    Schedule {
        /// The customer.
        customer: u32,
        /// The flow.
        flow: u32,
        /// The arming's generation.
        generation: u32,
    },
}

impl Wake {
    /// Whether this timer repeats forever (a schedule), so draining need not wait for it.
    pub fn recurring(&self) -> bool {
        matches!(self, Wake::Schedule { .. })
    }
}

/// A pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// When it is due, in seconds since the epoch.
    pub due: i64,
    /// Among timers due at once, higher priority first (stored negated).
    order: i64,
    /// Among equal priorities, first set first.
    seq: u64,
    /// What it wakes.
    pub wake: Wake,
}

/// The queue.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    one_shot: usize,
}

impl Timers {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a timer; among timers due at the same second, higher `priority` fires first.
    pub fn set(&mut self, due: i64, priority: i64, wake: Wake) {
        self.seq += 1;
        if !wake.recurring() {
            self.one_shot += 1;
        }
        self.heap.push(Reverse(Timer {
            due,
            order: priority.saturating_neg(),
            seq: self.seq,
            wake,
        }));
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<i64> {
        self.heap.peek().map(|t| t.0.due)
    }

    /// Removes and returns the next timer if it is due at or before `limit`.
    pub fn pop_until(&mut self, limit: i64) -> Option<Timer> {
        if self.next_due()? > limit {
            return None;
        }
        let t = self.heap.pop()?.0;
        if !t.wake.recurring() {
            self.one_shot -= 1;
        }
        Some(t)
    }

    /// How many timers are pending (including stale ones not yet popped).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether any pending timer is not a recurring schedule.
    pub fn has_one_shot(&self) -> bool {
        self.one_shot > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: u32) -> Wake {
        Wake::Instance { id, generation: 0 }
    }

    #[test]
    fn timers_pop_in_due_order_then_priority_then_insertion() {
        let mut t = Timers::new();
        t.set(20, 0, inst(1));
        t.set(10, 0, inst(2));
        t.set(20, 5, inst(3));
        t.set(20, 0, inst(4));
        assert_eq!(t.pop_until(9), None);
        let order: Vec<Wake> = std::iter::from_fn(|| t.pop_until(100).map(|x| x.wake)).collect();
        assert_eq!(order, vec![inst(2), inst(3), inst(1), inst(4)]);
        assert!(t.is_empty());
    }

    #[test]
    fn recurring_timers_do_not_count_as_pending_work() {
        let mut t = Timers::new();
        t.set(
            5,
            0,
            Wake::Schedule {
                customer: 0,
                flow: 0,
                generation: 0,
            },
        );
        assert!(!t.has_one_shot());
        t.set(6, 0, inst(1));
        assert!(t.has_one_shot());
        t.pop_until(5);
        t.pop_until(6);
        assert!(!t.has_one_shot());
    }
}
