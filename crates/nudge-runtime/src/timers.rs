//! The timer queue: what is due when, in two priority queues.
//!
//! Every operation costs O(log n) in the number of pending timers, so a
//! million sleeping instances cost no more per event than a thousand; a
//! timer due no earlier than the last one set (most of them: the clock only
//! moves on, and waits of one flow are alike) costs O(1) (see
//! [`crate::queue`]).
//! Cancelling is lazy: a timer carries the generation of what it wakes, and
//! a woken owner whose generation has moved on ignores it. That keeps
//! cancellation O(1) at the price of stale entries, which pop in due course.
//!
//! Nearly every timer wakes an instance, and there is one per sleeping
//! instance, so those are kept packed in 24 bytes (the due time, the
//! priority and insertion number in one word, the slot and generation);
//! the others (and instance timers of an extreme priority) keep the full
//! form in a second queue. Popping takes the earlier of the two heads, so the
//! order is exactly that of one queue.
//!
//! With a store behind it, memory holds only the timers due soon: once a
//! take of them is committed, timers due an hour or more past the clock
//! are let go ([`Timers::let_go`]), and read back by due time before the
//! clock reaches them ([`Timers::to_read`], [`Timers::read_back`]).

use serde::{Deserialize, Serialize};

use crate::queue::RunQueue;

/// What a timer wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// A `trigger entering` flow's segment can change with time alone for
    /// one customer: look at it again.
    Segment {
        /// The customer.
        customer: u32,
        /// The flow.
        flow: u32,
        /// The arming's generation.
        generation: u32,
    },
}

/// The bit of a [`Wake::DateTrigger`]'s generation that marks a yearly
/// trigger's timer: it repeats, as a schedule does. The generation counts
/// re-armings of one customer's trigger, which never reach it; keeping the
/// mark there leaves the timer's layout (and the checkpoint's) as it was.
pub const YEARLY: u32 = 1 << 31;

/// The bit of a [`Wake::Schedule`]'s generation that marks a campaign's
/// timer (`trigger once on DATE`): it does not repeat, so draining waits
/// for it. Kept in the generation for the reason [`YEARLY`] is.
pub const ONCE: u32 = 1 << 31;

impl Wake {
    /// Whether this timer repeats forever (a schedule, a yearly date, a
    /// segment's next look), so draining need not wait for it.
    pub fn recurring(&self) -> bool {
        match self {
            Wake::Schedule { generation, .. } => generation & ONCE == 0,
            Wake::Segment { .. } => true,
            Wake::DateTrigger { generation, .. } => generation & YEARLY != 0,
            Wake::Instance { .. } => false,
        }
    }
}

/// A pending timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timer {
    /// When it is due, in seconds since the epoch.
    pub due: i64,
    /// Among timers due at once, higher priority first (stored negated).
    order: i64,
    /// Among equal priorities, first set first; unique, so it names the timer.
    pub seq: u64,
    /// What it wakes.
    pub wake: Wake,
}

/// An instance timer, packed: `tie` holds the order (biased to be
/// unsigned) above the insertion number, so comparing it compares both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Packed {
    due: i64,
    tie: u64,
    id: u32,
    generation: u32,
}

/// Bits of `Packed::tie` holding the insertion number; the order takes the rest.
const SEQ_BITS: u32 = 48;
/// Added to the order to make it unsigned: orders in `-BIAS..BIAS` pack.
const BIAS: i64 = 1 << (63 - SEQ_BITS);

impl Packed {
    /// The packed form, when the order and insertion number fit.
    fn of(t: &Timer) -> Option<Packed> {
        let Wake::Instance { id, generation } = t.wake else {
            return None;
        };
        let order = u64::try_from(t.order.checked_add(BIAS)?).ok()?;
        if order >= 1 << (64 - SEQ_BITS) || t.seq >= 1 << SEQ_BITS {
            return None;
        }
        Some(Packed {
            due: t.due,
            tie: order << SEQ_BITS | t.seq,
            id,
            generation,
        })
    }

    fn unpack(self) -> Timer {
        Timer {
            due: self.due,
            order: (self.tie >> SEQ_BITS) as i64 - BIAS,
            seq: self.tie & ((1 << SEQ_BITS) - 1),
            wake: Wake::Instance {
                id: self.id,
                generation: self.generation,
            },
        }
    }
}

/// The queue.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timers {
    /// Instance timers, packed.
    packed: RunQueue<Packed>,
    /// Every other timer.
    wide: RunQueue<Timer>,
    seq: u64,
    one_shot: usize,
    /// What changed since the store last took it, when followed.
    #[serde(skip)]
    log: Log,
    /// The timers left in the store, when some may be.
    #[serde(skip)]
    stored: Option<Stored>,
}

/// How far ahead of the clock timers stay in memory once a store holds
/// them (milliseconds): an hour, so that a server reads the store for its
/// timers once an hour, and a replay once per hour of the history it
/// replays.
pub const AHEAD: i64 = 3_600_000;

/// Which timers are in the store and not in memory.
///
/// Every pending timer due before `from` is in memory; none numbered at
/// or below `through` and due at or after `from` is, and none that fired
/// was due at or after `from` (firing moves `from` past the timers it
/// pops: see [`Timers::to_read`]). So the store's timers due from `from`
/// on and numbered up to `through` are exactly the ones memory lacks
/// there, even while the store still holds timers that fired since its
/// last commit: reading them back can neither miss nor double one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    /// Wider than a due time: once every timer has been read back it is
    /// past the last one (`i64::MAX + 1`), so timers due at `i64::MAX`
    /// are not read a second time.
    from: i128,
    through: u64,
    /// How many there are (for [`Timers::len`]).
    count: usize,
}

/// Timers to read back from a store: those due from `from` through
/// `until`, numbered at most `through`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToRead {
    /// The first due time to read.
    pub from: i64,
    /// The last due time to read.
    pub until: i64,
    /// The highest insertion number to read.
    pub through: u64,
}

/// The timers set and fired since the store last took them.
#[derive(Clone, Debug, Default)]
struct Log {
    on: bool,
    set: Vec<Timer>,
    fired: Vec<u64>,
}

/// The timers' changes, as a store applies them: add `set`, then remove
/// the timers numbered in `fired` (a timer may be in both).
#[derive(Clone, Debug, Default)]
pub struct TimerChanges {
    /// Timers set, to be stored.
    pub set: Vec<Timer>,
    /// The insertion numbers ([`Timer::seq`]) of timers that fired.
    pub fired: Vec<u64>,
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
        let timer = Timer {
            due,
            order: priority.saturating_neg(),
            seq: self.seq,
            wake,
        };
        if self.log.on {
            self.log.set.push(timer);
        }
        self.insert(timer);
    }

    /// Puts a timer in its heap.
    fn insert(&mut self, timer: Timer) {
        match Packed::of(&timer) {
            Some(p) => self.packed.push(p),
            None => self.wide.push(timer),
        }
    }

    /// Puts back a stored timer (a restore, one row at a time).
    pub fn restore(&mut self, t: Timer) {
        if !t.wake.recurring() {
            self.one_shot += 1;
        }
        self.insert(t);
    }

    /// Sets the last insertion number, as stored with the timers.
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// The next insertion number's predecessor (stored with the timers).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Every pending timer, in no order (the whole queue, for a store that
    /// writes it afresh).
    pub fn all(&self) -> Vec<Timer> {
        let packed = self.packed.iter().map(|p| p.unpack());
        packed.chain(self.wide.iter().copied()).collect()
    }

    /// Starts following the timers set and fired.
    pub fn start_log(&mut self) {
        self.log.on = true;
        self.log.set.clear();
        self.log.fired.clear();
    }

    /// The timers set and fired since the last take.
    pub fn take_changes(&mut self) -> TimerChanges {
        TimerChanges {
            set: std::mem::take(&mut self.log.set),
            fired: std::mem::take(&mut self.log.fired),
        }
    }

    /// The next timer, and whether it is the packed heap's.
    fn peek(&self) -> Option<(Timer, bool)> {
        let packed = self.packed.peek().map(Packed::unpack);
        let wide = self.wide.peek();
        match (packed, wide) {
            (Some(p), Some(w)) if w < p => Some((w, false)),
            (Some(p), _) => Some((p, true)),
            (None, w) => w.map(|w| (w, false)),
        }
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<i64> {
        let packed = self.packed.peek().map(|p| p.due);
        let wide = self.wide.peek().map(|t| t.due);
        match (packed, wide) {
            (Some(p), Some(w)) => Some(p.min(w)),
            (p, w) => p.or(w),
        }
    }

    /// What up to `most` timers of each kind due at or before `limit` wake,
    /// among those in memory that were set in due order: a look ahead for
    /// reading their customers back together, not every timer due.
    pub fn waking_through(&self, limit: i64, most: usize) -> Vec<Wake> {
        self.packed
            .run_while(|p| p.due <= limit)
            .take(most)
            .map(|p| p.unpack().wake)
            .chain(
                self.wide
                    .run_while(|t| t.due <= limit)
                    .take(most)
                    .map(|t| t.wake),
            )
            .collect()
    }

    /// Removes and returns the next timer if it is due at or before `limit`.
    pub fn pop_until(&mut self, limit: i64) -> Option<Timer> {
        let (t, packed) = self.peek()?;
        if t.due > limit {
            return None;
        }
        if packed {
            self.packed.pop();
        } else {
            self.wide.pop();
        }
        if !t.wake.recurring() {
            self.one_shot -= 1;
        }
        if self.log.on {
            self.log.fired.push(t.seq);
        }
        Some(t)
    }

    /// How many timers are pending (including stale ones not yet popped),
    /// in memory or left in the store.
    pub fn len(&self) -> usize {
        self.in_memory() + self.stored.map_or(0, |s| s.count)
    }

    /// How many timers are in memory.
    pub fn in_memory(&self) -> usize {
        self.packed.len() + self.wide.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// From now on timers may be left in a store. `from` and `through` say
    /// which are already there and not in memory (see [`Stored`]): a
    /// restore that read only the timers due before `from` passes the
    /// store's count of the others; an engine that holds every timer
    /// passes `i64::MAX`, 0 and 0.
    pub fn leave_in_store(&mut self, from: i64, through: u64, count: usize) {
        self.stored = Some(Stored {
            from: i128::from(from),
            through,
            count,
        });
    }

    /// Whether timers may be left in a store.
    pub fn leaves_in_store(&self) -> bool {
        self.stored.is_some()
    }

    /// Which timers to read back from the store before popping those due
    /// through `limit`; `None` when memory holds them all (none due by
    /// then is left in the store).
    ///
    /// Whether or not there is anything to read, the line `from` moves
    /// past `limit` (an hour past it), as [`Timers::read_back`] moves it:
    /// so every timer that fires was due before `from`, and one that fired
    /// but whose firing the store has not committed yet (the store still
    /// holds it) is never read back.
    pub fn to_read(&mut self, limit: i64) -> Option<ToRead> {
        let s = self.stored.as_mut()?;
        let from = i64::try_from(s.from).ok()?;
        if limit < from {
            return None;
        }
        let until = limit.saturating_add(AHEAD);
        if s.count == 0 {
            // Nothing to read: what an empty read would leave.
            s.from = i128::from(until) + 1;
            return None;
        }
        Some(ToRead {
            from,
            until,
            through: s.through,
        })
    }

    /// Which timers to read back to hold every one in memory (before a
    /// drain, or a take that writes them all); as [`Timers::to_read`]
    /// with no limit.
    pub fn to_read_all(&mut self) -> Option<ToRead> {
        self.to_read(i64::MAX)
    }

    /// Puts back the timers a store gave for `read` ([`Timers::to_read`]).
    pub fn read_back(&mut self, read: ToRead, timers: impl IntoIterator<Item = Timer>) {
        let mut n = 0;
        for t in timers {
            self.restore(t);
            n += 1;
        }
        if let Some(s) = &mut self.stored {
            s.count = s.count.saturating_sub(n);
            s.from = s.from.max(i128::from(read.until) + 1);
            if read.until == i64::MAX {
                s.count = 0;
            }
        }
    }

    /// Lets go of the timers a committed take stored (those numbered at or
    /// below `through`) that are due an hour or more past `now`: the store
    /// gives them back before the clock reaches them. Returns how many
    /// were let go.
    pub fn let_go(&mut self, now: i64, through: u64) -> usize {
        let Some(s) = self.stored else {
            return 0;
        };
        // Memory holds every timer due before `s.from`, so the line can
        // come nearer, never go further.
        let from = s.from.min(i128::from(now.saturating_add(AHEAD)));
        let through = through.max(s.through);
        // Instance timers are never recurring.
        let packed = self
            .packed
            .retain(|p| i128::from(p.due) < from || p.tie & ((1 << SEQ_BITS) - 1) > through);
        let mut one_shot = packed;
        let wide = self.wide.retain(|t| {
            let keep = i128::from(t.due) < from || t.seq > through;
            one_shot += usize::from(!keep && !t.wake.recurring());
            keep
        });
        self.one_shot = self.one_shot.saturating_sub(one_shot);
        self.stored = Some(Stored {
            from,
            through,
            count: s.count + packed + wide,
        });
        packed + wide
    }

    /// Whether any pending timer in memory is not a recurring schedule
    /// (read every timer back first: see [`Timers::to_read_all`]).
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

    #[test]
    fn packed_and_wide_timers_pop_in_one_order() {
        let mut t = Timers::new();
        let date = |customer| Wake::DateTrigger {
            customer,
            flow: 0,
            generation: 0,
        };
        t.set(20, 0, inst(1));
        t.set(20, 0, date(7));
        t.set(20, i64::MAX, inst(2)); // too high a priority to pack
        t.set(20, 3, inst(3));
        t.set(10, i64::MIN, inst(4));
        t.set(20, 0, inst(5));
        assert_eq!(std::mem::size_of::<Packed>(), 24);
        assert_eq!(t.len(), 6);
        let order: Vec<Wake> = std::iter::from_fn(|| t.pop_until(100).map(|x| x.wake)).collect();
        assert_eq!(
            order,
            vec![inst(4), inst(2), inst(3), inst(1), date(7), inst(5)]
        );
    }

    #[test]
    fn timers_let_go_come_back_once_even_at_the_end_of_time() {
        let mut t = Timers::new();
        t.leave_in_store(i64::MAX, 0, 0);
        t.set(1_000_000, 0, inst(1));
        t.set(i64::MAX, 0, inst(2));
        let stored = t.all();
        // Both are committed (numbered up to 2); the clock stands at 0.
        assert_eq!(t.let_go(0, 2), 1, "only the one due an hour or more ahead");
        assert_eq!((t.in_memory(), t.len()), (1, 2));
        // The clock nears the end of time: the last one goes too.
        assert_eq!(t.let_go(i64::MAX - 5, 2), 0, "nothing else in memory");
        let read = t.to_read(i64::MAX).expect("something to read");
        assert_eq!((read.from, read.until), (AHEAD, i64::MAX));
        let given: Vec<Timer> = stored
            .iter()
            .copied()
            .filter(|x| x.due >= read.from)
            .collect();
        assert_eq!(given.len(), 1);
        t.read_back(read, given);
        assert_eq!(t.to_read(i64::MAX), None, "nothing is read twice");
        assert_eq!(t.to_read_all(), None);
        let fired: Vec<Wake> =
            std::iter::from_fn(|| t.pop_until(i64::MAX).map(|x| x.wake)).collect();
        assert_eq!(fired, vec![inst(1), inst(2)]);
        assert!(t.is_empty());
    }

    #[test]
    fn packing_keeps_the_order_and_insertion_number() {
        for order in [-BIAS, -1, 0, 1, BIAS - 1] {
            let t = Timer {
                due: -5,
                order,
                seq: (1 << SEQ_BITS) - 1,
                wake: inst(9),
            };
            assert_eq!(Packed::of(&t).map(Packed::unpack), Some(t));
        }
        for (order, seq) in [(BIAS, 1), (-BIAS - 1, 1), (0, 1 << SEQ_BITS)] {
            let t = Timer {
                due: 0,
                order,
                seq,
                wake: inst(9),
            };
            assert_eq!(Packed::of(&t), None);
        }
    }
}
