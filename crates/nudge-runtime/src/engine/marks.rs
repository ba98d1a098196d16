//! Which entries of a table changed since a host last took them: what a
//! store writes so that it holds the engine's state row by row, without
//! writing the rows nothing touched.
//!
//! Marking is off until a host asks for changes (an in-memory replay never
//! does, and pays one branch). Each entry is listed once, however often it
//! changes, so the list is bounded by the table.

/// The numbers of changed entries, each once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Marks {
    /// Whether changes are being followed at all.
    on: bool,
    /// Every entry counts as changed (the first take, or after a change to
    /// the whole table): the list is not kept.
    all: bool,
    list: Vec<u32>,
    /// One bit per entry number: whether it is in `list`.
    bits: Vec<u64>,
}

/// What changed, as taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Every entry may have changed.
    All,
    /// These entries changed (in the order first changed).
    Some(Vec<u32>),
}

impl Marks {
    /// Starts following changes, with every entry counted as changed
    /// (`all`) or none.
    pub fn start(&mut self, all: bool) {
        self.on = true;
        self.all = all;
        self.list.clear();
        self.bits.clear();
    }

    /// Notes that entry `n` changed.
    #[inline]
    pub fn mark(&mut self, n: u32) {
        if !self.on || self.all {
            return;
        }
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if let Some(w) = self.bits.get_mut(word)
            && *w & bit == 0
        {
            *w |= bit;
            self.list.push(n);
        }
    }

    /// Whether entry `n` changed since the last take (every entry does
    /// while all count as changed; none while changes are not followed).
    pub fn is_marked(&self, n: u32) -> bool {
        if !self.on {
            return false;
        }
        self.all
            || self
                .bits
                .get((n / 64) as usize)
                .is_some_and(|w| w & (1u64 << (n % 64)) != 0)
    }

    /// The entries changed since the last take, in the order first
    /// changed; `None` while every entry counts as changed or changes are
    /// not followed.
    pub fn list(&self) -> Option<&[u32]> {
        (self.on && !self.all).then_some(&self.list[..])
    }

    /// How many entries changed since the last take; `None` while every
    /// entry counts as changed, or before the first take (nothing of the
    /// table has been taken yet).
    pub fn count(&self) -> Option<usize> {
        (self.on && !self.all).then_some(self.list.len())
    }

    /// Notes that any entry may have changed (the engine marks entries one
    /// at a time; tests use this to check a whole take).
    #[cfg(test)]
    pub fn mark_all(&mut self) {
        if self.on {
            self.all = true;
            self.list.clear();
            self.bits.clear();
        }
    }

    /// What changed since the last take (nothing when not following).
    pub fn take(&mut self) -> Taken {
        if std::mem::take(&mut self.all) {
            self.list.clear();
            self.bits.clear();
            return Taken::All;
        }
        for &n in &self.list {
            if let Some(w) = self.bits.get_mut((n / 64) as usize) {
                *w = 0;
            }
        }
        Taken::Some(std::mem::take(&mut self.list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_followed_until_started() {
        let mut m = Marks::default();
        m.mark(3);
        m.mark_all();
        // Nothing taken yet: the count is unknown, as all may have changed.
        assert_eq!(m.count(), None);
        assert_eq!(m.take(), Taken::Some(vec![]));
    }

    #[test]
    fn the_count_is_of_entries_changed_since_the_last_take() {
        let mut m = Marks::default();
        m.start(false);
        m.mark(3);
        m.mark(3);
        m.mark(70);
        assert_eq!(m.count(), Some(2));
        m.take();
        assert_eq!(m.count(), Some(0));
        m.mark_all();
        assert_eq!(m.count(), None);
    }

    #[test]
    fn each_entry_is_listed_once_in_first_changed_order() {
        let mut m = Marks::default();
        m.start(false);
        assert_eq!(m.take(), Taken::Some(vec![]), "a clean start");
        m.start(true);
        assert_eq!(m.take(), Taken::All, "everything counts at a full start");
        for n in [5, 700, 5, 64, 700, 0] {
            m.mark(n);
        }
        assert_eq!(m.take(), Taken::Some(vec![5, 700, 64, 0]));
        m.mark(5);
        assert_eq!(m.take(), Taken::Some(vec![5]), "a take clears the marks");
        m.mark(9);
        m.mark_all();
        m.mark(10);
        assert_eq!(m.take(), Taken::All);
        assert_eq!(m.take(), Taken::Some(vec![]));
    }
}
