//! The engine's customers, found by number without hashing.
//!
//! A customer's number is the root of its set in the identity graph, so
//! numbers are dense (at most the number of identities). A table indexed
//! by number costs one pointer per identity and a lookup is one load; a
//! hash map of the records themselves held each in a bucket of its own
//! size, and at a million customers half of its 2²¹ buckets stood empty
//! (about 500 bytes per customer). The records are boxed so that an empty
//! entry costs 8 bytes.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::customer::Customer;
use super::marks::{Marks, Taken};

/// Customers by number. Serialized as a map from number to customer, the
/// layout a `HashMap<u32, Customer>` has, in increasing number.
///
/// A customer is *in memory* (its record is here) or *stored*: the store
/// holds its row, unchanged since the last take, or (with no store) the
/// table holds the row's bytes, *frozen*; the engine reads it back when it
/// needs it (see `Machine::page_in`). Lookups see customers in memory
/// only; [`Customers::contains_key`] and [`Customers::len`] count both.
#[derive(Clone, Debug, Default)]
pub(crate) struct Customers {
    /// Entry `n` holds customer `n`, if it is in memory.
    slots: Vec<Option<Box<Customer>>>,
    /// How many entries hold a customer.
    len: usize,
    /// One bit per number: the customer is stored, not in memory.
    stored: Vec<u64>,
    /// How many customers are stored.
    stored_len: usize,
    /// Entry `n` holds frozen customer `n`'s row: its record as the store
    /// would write it, about a quarter of the memory of the record.
    frozen: Vec<Option<Box<[u8]>>>,
    /// How many entries of `frozen` hold a row.
    frozen_len: usize,
    /// Customers changed since the store last took them.
    marks: Marks,
}

impl Customers {
    /// Customer `c`, if it is in memory.
    pub fn get(&self, c: &u32) -> Option<&Customer> {
        debug_assert!(
            !self.is_stored(*c),
            "customer {c} is read without paging it in"
        );
        self.slots.get(*c as usize)?.as_deref()
    }

    /// Customer `c`, to change, if it is in memory.
    pub fn get_mut(&mut self, c: &u32) -> Option<&mut Customer> {
        debug_assert!(
            !self.is_stored(*c),
            "customer {c} is changed without paging it in"
        );
        self.marks.mark(*c);
        self.slots.get_mut(*c as usize)?.as_deref_mut()
    }

    /// Whether there is a customer `c`, in memory or stored.
    pub fn contains_key(&self, c: &u32) -> bool {
        self.slots.get(*c as usize).is_some_and(Option::is_some) || self.is_stored(*c)
    }

    /// Whether customer `c` is stored and not in memory.
    pub fn is_stored(&self, c: u32) -> bool {
        let (word, bit) = ((c / 64) as usize, 1u64 << (c % 64));
        self.stored.get(word).is_some_and(|w| w & bit != 0)
    }

    fn set_stored(&mut self, c: u32, on: bool) {
        let (word, bit) = ((c / 64) as usize, 1u64 << (c % 64));
        if word >= self.stored.len() {
            self.stored.resize(word + 1, 0);
        }
        if let Some(w) = self.stored.get_mut(word) {
            let was = *w & bit != 0;
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
            match (was, on) {
                (false, true) => self.stored_len += 1,
                (true, false) => self.stored_len -= 1,
                _ => {}
            }
        }
    }

    /// Notes that customer `c` is stored, not in memory (a restore that
    /// reads customers when first needed).
    pub fn note_stored(&mut self, c: u32) {
        if self.slots.get(c as usize).is_none_or(Option::is_none) {
            self.set_stored(c, true);
        }
    }

    /// Lets customer `c`'s record go: the store holds it as it is. Not
    /// counted as a change.
    pub fn let_go(&mut self, c: u32) -> bool {
        let Some(slot) = self.slots.get_mut(c as usize) else {
            return false;
        };
        if slot.take().is_none() {
            return false;
        }
        self.len -= 1;
        self.set_stored(c, true);
        true
    }

    /// Freezes customer `c`: its record gives way to `row`, its encoding.
    /// Not counted as a change.
    pub fn freeze(&mut self, c: u32, row: Box<[u8]>) -> bool {
        let i = c as usize;
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        if slot.take().is_none() {
            return false;
        }
        self.len -= 1;
        if i >= self.frozen.len() {
            // An eighth more at a time: the table is held for ever.
            let want = i + 1 - self.frozen.len();
            self.frozen.reserve_exact(want.max(self.frozen.len() / 8));
            self.frozen.resize_with(i + 1, || None);
        }
        if let Some(f) = self.frozen.get_mut(i)
            && f.replace(row).is_none()
        {
            self.frozen_len += 1;
        }
        self.set_stored(c, true);
        true
    }

    /// Frozen customer `c`'s row, if it is frozen.
    pub fn frozen(&self, c: u32) -> Option<&[u8]> {
        self.frozen.get(c as usize)?.as_deref()
    }

    /// Drops frozen customer `c`'s row, once it is decoded and its record
    /// is about to come back ([`Customers::bring_back`]).
    pub fn thaw(&mut self, c: u32) {
        self.unfreeze(c);
    }

    /// Drops frozen customer `c`'s row; false when it has none.
    fn unfreeze(&mut self, c: u32) -> bool {
        let Some(f) = self.frozen.get_mut(c as usize) else {
            return false;
        };
        if f.take().is_none() {
            return false;
        }
        self.frozen_len -= 1;
        true
    }

    /// How many customers are frozen.
    pub fn frozen_len(&self) -> usize {
        self.frozen_len
    }

    /// The numbers of the frozen customers, in increasing number.
    pub fn frozen_numbers(&self) -> Vec<u32> {
        if self.frozen_len == 0 {
            return Vec::new();
        }
        (0u32..)
            .zip(&self.frozen)
            .filter_map(|(c, f)| f.as_ref().map(|_| c))
            .collect()
    }

    /// Drops frozen customer `c`'s row because the store holds it as it
    /// is: `c` stays stored, to be read back from the store. Once none is
    /// frozen, the table of rows goes too (a store-backed engine freezes
    /// only for a deploy).
    pub fn let_frozen_go(&mut self, c: u32) -> bool {
        if !self.unfreeze(c) {
            return false;
        }
        if self.frozen_len == 0 {
            self.frozen = Vec::new();
        }
        true
    }

    /// Puts stored customer `c`, read back from the store, in memory. Not
    /// counted as a change: the store holds it as it is.
    pub fn bring_back(&mut self, c: u32, customer: Customer) {
        self.set_stored(c, false);
        let i = c as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(i)
            && slot.replace(Box::new(customer)).is_none()
        {
            self.len += 1;
        }
    }

    /// The numbers of the stored customers, in increasing number.
    pub fn stored(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.stored_len);
        for (word, &bits) in (0u32..).zip(&self.stored) {
            let mut b = bits;
            while b != 0 {
                out.push(word * 64 + b.trailing_zeros());
                b &= b - 1;
            }
        }
        out
    }

    /// Customer `c`'s record if it is in memory, whether or not `c` is stored.
    pub fn peek(&self, c: u32) -> Option<&Customer> {
        self.slots.get(c as usize)?.as_deref()
    }

    /// One more than the highest number a customer, in memory or stored,
    /// can have.
    pub fn number_end(&self) -> u32 {
        let stored = self.stored.len().saturating_mul(64);
        u32::try_from(self.slots.len().max(stored)).unwrap_or(u32::MAX)
    }

    /// One more than the highest number an entry has.
    pub fn slots_len(&self) -> usize {
        self.slots.len()
    }

    /// How many customers are in memory.
    pub fn in_memory(&self) -> usize {
        self.len
    }

    /// How many customers changed since the store last took the changes;
    /// `None` while every customer counts as changed (or none was taken).
    pub fn changed(&self) -> Option<usize> {
        self.marks.count()
    }

    /// Whether customer `c` changed since the store last took the changes.
    pub fn changed_since_take(&self, c: u32) -> bool {
        self.marks.is_marked(c)
    }

    /// Puts customer `c` in, returning the one it replaces.
    pub fn insert(&mut self, c: u32, customer: Customer) -> Option<Customer> {
        debug_assert!(!self.is_stored(c), "customer {c} is replaced while stored");
        self.marks.mark(c);
        let i = c as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let slot = self.slots.get_mut(i)?;
        let old = slot.replace(Box::new(customer));
        if old.is_none() {
            self.len += 1;
        }
        old.map(|b| *b)
    }

    /// Takes customer `c` out.
    pub fn remove(&mut self, c: &u32) -> Option<Customer> {
        debug_assert!(!self.is_stored(*c), "customer {c} is removed while stored");
        self.marks.mark(*c);
        let old = self.slots.get_mut(*c as usize)?.take()?;
        self.len -= 1;
        Some(*old)
    }

    /// How many customers there are, in memory or stored.
    pub fn len(&self) -> usize {
        self.len + self.stored_len
    }

    /// Every customer in memory: number and record, in increasing number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Customer)> {
        (0u32..)
            .zip(&self.slots)
            .filter_map(|(c, s)| Some((c, s.as_deref()?)))
    }

    /// Every customer in memory's number, in increasing number.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter().map(|(c, _)| c)
    }

    /// Every customer in memory, in increasing number.
    pub fn values(&self) -> impl Iterator<Item = &Customer> {
        self.slots.iter().filter_map(|s| s.as_deref())
    }
}

impl Customers {
    /// Every customer's number and record, to change, in increasing
    /// number, without counting them changed: the caller marks the ones it
    /// changes (a sweep that touches few of many).
    pub fn iter_unmarked_mut(&mut self) -> impl Iterator<Item = (u32, &mut Customer)> {
        (0u32..)
            .zip(&mut self.slots)
            .filter_map(|(c, s)| Some((c, s.as_deref_mut()?)))
    }

    /// Notes that customer `c` changed.
    pub fn mark(&mut self, c: u32) {
        self.marks.mark(c);
    }

    /// Starts following which customers change (all or none counted as changed).
    pub fn start_marks(&mut self, all: bool) {
        self.marks.start(all);
    }

    /// The customers changed since the last take.
    pub fn take_marks(&mut self) -> Taken {
        self.marks.take()
    }
}

impl Serialize for Customers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (c, customer) in self.iter() {
            map.serialize_entry(&c, customer)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Customers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> Visitor<'de> for Entries {
            type Value = Customers;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from customer number to customer")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Customers, A::Error> {
                let mut out = Customers::default();
                while let Some((c, customer)) = map.next_entry::<u32, Customer>()? {
                    out.insert(c, customer);
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(Entries)
    }
}
