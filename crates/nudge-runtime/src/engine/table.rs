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
#[derive(Clone, Debug, Default)]
pub(crate) struct Customers {
    /// Entry `n` holds customer `n`, if there is one.
    slots: Vec<Option<Box<Customer>>>,
    /// How many entries hold a customer.
    len: usize,
    /// Customers changed since the store last took them.
    marks: Marks,
}

impl Customers {
    /// Customer `c`, if there is one.
    pub fn get(&self, c: &u32) -> Option<&Customer> {
        self.slots.get(*c as usize)?.as_deref()
    }

    /// Customer `c`, to change, if there is one.
    pub fn get_mut(&mut self, c: &u32) -> Option<&mut Customer> {
        self.marks.mark(*c);
        self.slots.get_mut(*c as usize)?.as_deref_mut()
    }

    /// Whether there is a customer `c`.
    pub fn contains_key(&self, c: &u32) -> bool {
        self.get(c).is_some()
    }

    /// Puts customer `c` in, returning the one it replaces.
    pub fn insert(&mut self, c: u32, customer: Customer) -> Option<Customer> {
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
        self.marks.mark(*c);
        let old = self.slots.get_mut(*c as usize)?.take()?;
        self.len -= 1;
        Some(*old)
    }

    /// How many customers there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every customer's number and record, in increasing number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Customer)> {
        (0u32..)
            .zip(&self.slots)
            .filter_map(|(c, s)| Some((c, s.as_deref()?)))
    }

    /// Every customer's number, in increasing number.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter().map(|(c, _)| c)
    }

    /// Every customer, in increasing number.
    pub fn values(&self) -> impl Iterator<Item = &Customer> {
        self.slots.iter().filter_map(|s| s.as_deref())
    }

    /// Every customer, to change, in increasing number.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Customer> {
        self.marks.mark_all();
        self.slots.iter_mut().filter_map(|s| s.as_deref_mut())
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
