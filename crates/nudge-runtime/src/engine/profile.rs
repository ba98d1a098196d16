//! A customer's profile, kept sparse and packed into one block of bytes.
//!
//! The standard profile alone has 29 fields and a [`Value`] takes 24
//! bytes, so a record with a slot for every field costs about 700 bytes per
//! customer while a typical customer sets ten of them: instants, counts, a
//! sum of money and two short texts. Only set fields are kept, in
//! increasing number, each as its number, a kind byte, the payload's size
//! in a byte (so that finding a field skips the others without reading
//! them) and a compact payload (integers, instants and amounts as
//! variable-length integers, texts in line); an unset field reads as `none`
//! exactly as a stored `none` did, and the VM and the checkpoint still see
//! a whole [`Record`].
//!
//! Values that are shared, nested or long (the consent record, lists,
//! amounts wider than 64 bits, texts of more than 255 bytes) stay
//! [`Value`]s beside the bytes, in field order. A
//! customer of a purchase history (an email address, a first name, consent,
//! order counts and four instants) takes about 130 bytes this way, where
//! 16-byte fields with their texts out of line took about 256.

use std::sync::Arc;

use nudge_bytecode::{Record, Value};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thin_vec::ThinVec;

/// The kind byte that follows a field's number, and says what its payload is.
mod kind {
    /// `false`; no payload.
    pub const FALSE: u8 = 0;
    /// `true`; no payload.
    pub const TRUE: u8 = 1;
    /// An integer, zigzag varint.
    pub const INT: u8 = 2;
    /// An instant in seconds, zigzag varint.
    pub const TIME: u8 = 3;
    /// A duration in seconds, zigzag varint.
    pub const DURATION: u8 = 4;
    /// A date in days, zigzag varint.
    pub const DATE: u8 = 5;
    /// A time of day in minutes, zigzag varint.
    pub const TIME_OF_DAY: u8 = 6;
    /// A decimal: a scale byte, then the mantissa as a zigzag varint.
    pub const DECIMAL: u8 = 7;
    /// Money, as [`DECIMAL`].
    pub const MONEY: u8 = 8;
    /// A percentage, as [`DECIMAL`].
    pub const PERCENT: u8 = 9;
    /// A text of at most [`super::TEXT_MAX`] bytes: its UTF-8 bytes.
    pub const STR: u8 = 10;
    /// A zone name, as [`STR`].
    pub const ZONE: u8 = 11;
    /// The next of the profile's values kept beside the bytes; no payload.
    pub const SIDE: u8 = 12;
}

/// The longest text kept in line: a field's size is one byte.
const TEXT_MAX: usize = 255;

/// The head of a field as written, on the stack: its number (at most 3
/// bytes), the kind, the size and a payload of at most 11 bytes (an
/// amount's scale and a 10-byte varint). A text's bytes follow it straight
/// from the value, so a write copies no more than it keeps.
struct Head {
    bytes: [u8; 16],
    len: usize,
}

impl Head {
    /// Nothing written yet.
    fn empty() -> Head {
        Head {
            bytes: [0; 16],
            len: 0,
        }
    }

    /// Appends a byte (what [`encode`] writes fits: see the sizes above).
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// Appends `v` as a LEB128 varint.
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }

    /// What was written.
    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// One field as written: its head, then a text's bytes, borrowed from the
/// value (empty for other kinds).
struct Written<'v> {
    head: Head,
    text: &'v [u8],
    /// Whether the value itself is kept beside the bytes.
    side: bool,
}

impl Written<'_> {
    /// How many bytes the field takes.
    fn len(&self) -> usize {
        self.head.len + self.text.len()
    }

    /// Writes the field over `slot`, which is [`Written::len`] long.
    fn copy_into(&self, slot: &mut [u8]) {
        if let Some((head, text)) = slot.split_at_mut_checked(self.head.len) {
            head.copy_from_slice(self.head.as_slice());
            text.copy_from_slice(self.text);
        }
    }

    /// Appends the field to `out`.
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_slice());
        out.extend_from_slice(self.text);
    }
}

/// Reads a LEB128 varint at `*pos`, moving past it. Field numbers, the
/// header and small counts take one byte: that case is read in line.
#[inline]
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let b = *bytes.get(*pos)?;
    if b < 0x80 {
        *pos += 1;
        return Some(u64::from(b));
    }
    long_varint(bytes, pos)
}

/// [`varint`] of more than one byte.
fn long_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// `v` with its sign in the low bit, so that small negatives stay short.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// An amount's mantissa and scale, when the mantissa fits 64 bits and they
/// give the amount back bit for bit (a negative zero does not).
fn packed_amount(d: &Decimal) -> Option<(i64, u8)> {
    i64::try_from(d.mantissa())
        .ok()
        .zip(u8::try_from(d.scale()).ok())
        .filter(|&(m, scale)| {
            Decimal::try_from_i128_with_scale(i128::from(m), u32::from(scale))
                .is_ok_and(|back| back.serialize() == d.serialize())
        })
}

/// Field `number` holding `value` (never `none`) as written; when
/// [`Written::side`] says so, the value itself is kept beside the bytes.
fn encode(number: u16, value: &Value) -> Written<'_> {
    let mut head = Head::empty();
    head.varint(u64::from(number));
    let kind_and_size = |head: &mut Head, k: u8, size: usize| {
        head.push(k);
        head.push(u8::try_from(size).unwrap_or(u8::MAX));
    };
    let int_size = |v: u64| (64 - (v | 1).leading_zeros() as usize).div_ceil(7);
    let written = |head, text, side| Written { head, text, side };
    let (k, int) = match value {
        Value::Bool(b) => {
            kind_and_size(&mut head, if *b { kind::TRUE } else { kind::FALSE }, 0);
            return written(head, &[], false);
        }
        Value::Int(v) => (kind::INT, *v),
        Value::Time(v) => (kind::TIME, *v),
        Value::Duration(v) => (kind::DURATION, *v),
        Value::Date(v) => (kind::DATE, i64::from(*v)),
        Value::TimeOfDay(v) => (kind::TIME_OF_DAY, i64::from(*v)),
        Value::Str(s) | Value::Timezone(s) if s.len() <= TEXT_MAX => {
            let zone = matches!(value, Value::Timezone(_));
            kind_and_size(
                &mut head,
                if zone { kind::ZONE } else { kind::STR },
                s.len(),
            );
            return written(head, s.as_bytes(), false);
        }
        Value::Decimal(d) | Value::Money(d) | Value::Percent(d)
            if let Some((mantissa, scale)) = packed_amount(d) =>
        {
            let k = match value {
                Value::Money(_) => kind::MONEY,
                Value::Percent(_) => kind::PERCENT,
                _ => kind::DECIMAL,
            };
            kind_and_size(&mut head, k, 1 + int_size(zigzag(mantissa)));
            head.push(scale);
            head.varint(zigzag(mantissa));
            return written(head, &[], false);
        }
        _ => {
            kind_and_size(&mut head, kind::SIDE, 0);
            return written(head, &[], true);
        }
    };
    kind_and_size(&mut head, k, int_size(zigzag(int)));
    head.varint(zigzag(int));
    written(head, &[], false)
}

/// Where one set field is in a profile's bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Its number.
    number: u16,
    /// Where it starts (its number) and ends.
    start: usize,
    end: usize,
    /// Its kind byte.
    kind: u8,
    /// Where its payload starts.
    payload: usize,
    /// How many values beside the bytes come before it: its own index
    /// there when it is one of them.
    side: usize,
}

/// A profile's set fields in order, read from its bytes.
struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
    side: usize,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    #[inline]
    fn next(&mut self) -> Option<Entry> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut pos = start;
        let number = u16::try_from(varint(bytes, &mut pos)?).ok()?;
        let k = *bytes.get(pos)?;
        let size = usize::from(*bytes.get(pos + 1)?);
        let payload = pos + 2;
        let end = payload + size;
        if end > bytes.len() {
            return None;
        }
        let side = self.side;
        if k == kind::SIDE {
            self.side += 1;
        }
        self.pos = end;
        Some(Entry {
            number,
            start,
            end,
            kind: k,
            payload,
            side,
        })
    }
}

/// A profile: the fields that are set, packed (see the module's comment).
/// Serialized as the whole [`Record`] it stands for, so the checkpoint's
/// layout is the record's (written and read straight from the set fields:
/// a customer's row is written at each checkpoint that changed it, and a
/// frozen customer's at every freeze, so no whole record is built for it).
#[derive(Clone)]
pub struct Profile {
    /// The schema and the number of fields as varints, then the set fields.
    /// Boxed, not a vector: a profile gains its fields in its first calls
    /// and then keeps them, mostly rewriting them in place.
    bytes: Box<[u8]>,
    /// The values of the fields of kind [`kind::SIDE`], in field order.
    side: ThinVec<Value>,
}

impl Profile {
    /// A profile of schema `schema` with these field values, in order.
    pub fn new(schema: u32, fields: impl IntoIterator<Item = Value>) -> Profile {
        let mut len = 0u32;
        let set: Vec<(u16, Value)> = (0u16..)
            .zip(fields)
            .inspect(|_| len += 1)
            .filter(|(_, v)| !v.is_none())
            .collect();
        Profile::of_set(schema, len, set)
    }

    /// A profile of `len` fields of which `set` (in increasing number, none
    /// of them `none`) are set.
    fn of_set(schema: u32, len: u32, set: Vec<(u16, Value)>) -> Profile {
        let mut header = Head::empty();
        header.varint(u64::from(schema));
        header.varint(u64::from(len));
        let mut bytes = header.as_slice().to_vec();
        let mut side = ThinVec::new();
        for (number, value) in set {
            let written = encode(number, &value);
            written.append_to(&mut bytes);
            if written.side {
                side.push(value);
            }
        }
        side.shrink_to_fit();
        Profile {
            bytes: bytes.into_boxed_slice(),
            side,
        }
    }

    /// The schema, the number of fields, and where the set fields start.
    #[inline]
    fn header(&self) -> (u32, u32, usize) {
        let mut pos = 0;
        let mut next = || {
            varint(&self.bytes, &mut pos)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let schema = next();
        let len = next();
        (schema, len, pos)
    }

    /// The set fields, in order.
    fn entries(&self) -> Entries<'_> {
        Entries {
            bytes: &self.bytes,
            pos: self.header().2,
            side: 0,
        }
    }

    /// The set fields' numbers and values, in order.
    fn fields(&self) -> impl Iterator<Item = (u16, Value)> + '_ {
        self.entries().map(|e| (e.number, self.value_of(&e)))
    }

    /// How many fields the profile has, set or not.
    pub fn len(&self) -> usize {
        self.header().1 as usize
    }

    /// Whether the profile has no fields at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `number` when set (`Some(None)` when unset); `None` for a
    /// number beyond the profile's fields.
    fn entry(&self, number: usize) -> Option<Option<Entry>> {
        let (_, len, pos) = self.header();
        if number >= len as usize {
            return None;
        }
        let number = u16::try_from(number).ok()?;
        Some(self.seek(pos, number).filter(|e| e.number == number))
    }

    /// The first set field numbered `number` or more, reading from `pos`
    /// (where a field starts). Every lookup runs this: fields numbered
    /// below 128 (all of the standard profile's) are skipped by their first
    /// and third bytes alone (written out rather than as `Entries::find`,
    /// which counted 1.1% more instructions for the whole replay).
    #[inline]
    fn seek(&self, mut pos: usize, number: u16) -> Option<Entry> {
        let bytes = &*self.bytes;
        let mut side = 0;
        loop {
            let first = *bytes.get(pos)?;
            if first >= 0x80 {
                let mut rest = Entries { bytes, pos, side };
                return rest.find(|e| e.number >= number);
            }
            let size = usize::from(*bytes.get(pos + 2)?);
            let k = *bytes.get(pos + 1)?;
            if u16::from(first) >= number {
                let end = pos + 3 + size;
                return (end <= bytes.len()).then_some(Entry {
                    number: u16::from(first),
                    start: pos,
                    end,
                    kind: k,
                    payload: pos + 3,
                    side,
                });
            }
            side += usize::from(k == kind::SIDE);
            pos += 3 + size;
        }
    }

    /// An entry's payload read as a signed varint.
    fn int_of(&self, e: &Entry, skip: usize) -> i64 {
        let mut pos = e.payload + skip;
        varint(&self.bytes, &mut pos).map_or(0, unzigzag)
    }

    /// An entry's text, when it is a text or a zone.
    fn str_of(&self, e: &Entry) -> Option<&str> {
        std::str::from_utf8(self.bytes.get(e.payload..e.end)?).ok()
    }

    /// An entry's value.
    fn value_of(&self, e: &Entry) -> Value {
        let amount = |scale: Option<&u8>| {
            // Checked when written: it comes back as it went in.
            Decimal::try_from_i128_with_scale(
                i128::from(self.int_of(e, 1)),
                u32::from(scale.copied().unwrap_or(0)),
            )
            .unwrap_or_default()
        };
        let scale = self.bytes.get(e.payload);
        match e.kind {
            kind::FALSE => Value::Bool(false),
            kind::TRUE => Value::Bool(true),
            kind::INT => Value::Int(self.int_of(e, 0)),
            kind::TIME => Value::Time(self.int_of(e, 0)),
            kind::DURATION => Value::Duration(self.int_of(e, 0)),
            kind::DATE => Value::Date(i32::try_from(self.int_of(e, 0)).unwrap_or(0)),
            kind::TIME_OF_DAY => Value::TimeOfDay(u16::try_from(self.int_of(e, 0)).unwrap_or(0)),
            kind::DECIMAL => Value::Decimal(amount(scale)),
            kind::MONEY => Value::Money(amount(scale)),
            kind::PERCENT => Value::Percent(amount(scale)),
            kind::STR => Value::Str(Arc::from(self.str_of(e).unwrap_or_default())),
            kind::ZONE => Value::Timezone(Arc::from(self.str_of(e).unwrap_or_default())),
            _ => self.side.get(e.side).cloned().unwrap_or(Value::None),
        }
    }

    /// Field `number`'s value (`none` when unset); `None` for a number
    /// beyond the profile's fields.
    pub fn get(&self, number: usize) -> Option<Value> {
        Some(
            self.entry(number)?
                .map_or(Value::None, |e| self.value_of(&e)),
        )
    }

    /// Whether field `number` is set (to anything but `none`).
    pub fn is_set(&self, number: usize) -> bool {
        self.entry(number).flatten().is_some()
    }

    /// Field `number`'s text, when it holds one: read in place, where
    /// [`Profile::get`] would copy it.
    pub fn text(&self, number: usize) -> Option<&str> {
        let e = self.entry(number)??;
        match (e.kind, self.side.get(e.side)) {
            (kind::STR, _) => self.str_of(&e),
            (kind::SIDE, Some(Value::Str(s))) => Some(s),
            _ => None,
        }
    }

    /// Whether field `number` holds the text `text` (compared in place).
    pub fn holds_text(&self, number: usize, text: &str) -> bool {
        match self.entry(number).flatten() {
            Some(e) if e.kind == kind::STR => {
                self.bytes.get(e.payload..e.end) == Some(text.as_bytes())
            }
            Some(e) if e.kind == kind::SIDE => {
                matches!(self.side.get(e.side), Some(Value::Str(s)) if **s == *text)
            }
            _ => false,
        }
    }

    /// Field `number`'s record, when it holds one (read in place).
    pub fn record(&self, number: usize) -> Option<&Arc<Record>> {
        let e = self.entry(number)??;
        match (e.kind, self.side.get(e.side)) {
            (kind::SIDE, Some(Value::Record(r))) => Some(r),
            _ => None,
        }
    }

    /// Sets field `number` to the instant `secs` unless it holds that
    /// instant already or, with `only_if_unset`, any value; whether it
    /// changed. Read where it is kept: every call stamps a customer's
    /// `last_seen_at`, and an order two more fields.
    pub fn stamp(&mut self, number: usize, secs: i64, only_if_unset: bool) -> bool {
        let Some((n, next)) = self.locate(number) else {
            return false;
        };
        if let Some(e) = next.filter(|e| e.number == n)
            && (only_if_unset || (e.kind == kind::TIME && self.int_of(&e, 0) == secs))
        {
            return false;
        }
        // The field was found once: the write starts from there.
        self.write(n, next, Value::Time(secs));
        true
    }

    /// Sets field `number` (a `none` unsets it); returns false, changing
    /// nothing, for a number beyond the profile's fields.
    pub fn set(&mut self, number: usize, value: Value) -> bool {
        let Some((n, next)) = self.locate(number) else {
            return false;
        };
        self.write(n, next, value);
        true
    }

    /// Field `number` as a field number, with the first set field numbered
    /// that or more (the field itself, or where it would go); `None` for a
    /// number beyond the profile's fields.
    fn locate(&self, number: usize) -> Option<(u16, Option<Entry>)> {
        let n = u16::try_from(number).ok()?;
        let (_, len, pos) = self.header();
        if number >= len as usize {
            return None;
        }
        Some((n, self.seek(pos, n)))
    }

    /// Writes field `n`, given what [`Profile::locate`] found for it.
    fn write(&mut self, n: u16, next: Option<Entry>, value: Value) {
        let found = next.filter(|e| e.number == n);
        let (start, end, side_at) = match next {
            Some(e) if e.number == n => (e.start, e.end, e.side),
            Some(e) => (e.start, e.start, e.side),
            None => (self.bytes.len(), self.bytes.len(), self.side.len()),
        };
        let was_side = found.is_some_and(|e| e.kind == kind::SIDE);
        let written = (!value.is_none()).then(|| encode(n, &value));
        let size = written.as_ref().map_or(0, Written::len);
        match self.bytes.get_mut(start..end) {
            // Most writes (a new instant, a count) keep the field's length:
            // in place, without a new block.
            Some(old) if old.len() == size => {
                if let Some(w) = &written {
                    w.copy_into(old);
                }
            }
            _ => {
                let mut bytes = Vec::with_capacity(self.bytes.len() - (end - start) + size);
                bytes.extend_from_slice(self.bytes.get(..start).unwrap_or_default());
                if let Some(w) = &written {
                    w.append_to(&mut bytes);
                }
                bytes.extend_from_slice(self.bytes.get(end..).unwrap_or_default());
                self.bytes = bytes.into_boxed_slice();
            }
        }
        let side = written.is_some_and(|w| w.side).then_some(value);
        match (was_side, side) {
            (true, Some(v)) => {
                if let Some(slot) = self.side.get_mut(side_at) {
                    *slot = v;
                }
            }
            (true, None) => {
                if side_at < self.side.len() {
                    self.side.remove(side_at);
                    self.side.shrink_to_fit();
                }
            }
            (false, Some(v)) => {
                // Exactly one more: spare room would be kept for ever.
                self.side.reserve_exact(1);
                self.side.insert(side_at.min(self.side.len()), v);
            }
            (false, None) => {}
        }
    }

    /// The whole record, every field in order.
    pub fn to_record(&self) -> Record {
        let (schema, len, _) = self.header();
        let mut fields = vec![Value::None; len as usize];
        for (number, value) in self.fields() {
            if let Some(slot) = fields.get_mut(usize::from(number)) {
                *slot = value;
            }
        }
        Record { schema, fields }
    }

    /// Drops the last field (a checkpoint test's damage).
    #[cfg(test)]
    pub(crate) fn drop_last_field(&mut self) {
        let (schema, len, _) = self.header();
        let len = len.saturating_sub(1);
        let set = self.fields().filter(|(n, _)| u32::from(*n) < len).collect();
        *self = Profile::of_set(schema, len, set);
    }
}

/// Profiles are equal when they have the same schema and fields and their
/// set fields hold equal values, as [`Value`]s compare (`1.0` and `1.00`).
impl PartialEq for Profile {
    fn eq(&self, other: &Profile) -> bool {
        let (a, b) = (self.header(), other.header());
        a.0 == b.0 && a.1 == b.1 && self.fields().eq(other.fields())
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// The set fields as a map from number to value.
        struct Set<'a>(&'a Profile);
        impl std::fmt::Debug for Set<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map().entries(self.0.fields()).finish()
            }
        }
        let (schema, len, _) = self.header();
        f.debug_struct("Profile")
            .field("schema", &schema)
            .field("len", &len)
            .field("set", &Set(self))
            .finish()
    }
}

impl From<Record> for Profile {
    fn from(r: Record) -> Profile {
        Profile::new(r.schema, r.fields)
    }
}

/// Serialized as [`Record`]'s derive does: the schema, then every field
/// (`none` where unset) as a sequence.
impl Serialize for Profile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = serializer.serialize_struct("Record", 2)?;
        st.serialize_field("schema", &self.header().0)?;
        st.serialize_field("fields", &AllFields(self))?;
        st.end()
    }
}

/// A profile's fields in order, unset ones as `none`.
struct AllFields<'a>(&'a Profile);

impl Serialize for AllFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let p = self.0;
        let len = p.header().1;
        let mut seq = serializer.serialize_seq(Some(len as usize))?;
        let mut set = p.entries().peekable();
        for n in 0..len {
            match set.next_if(|e| u32::from(e.number) == n) {
                Some(e) => seq.serialize_element(&p.value_of(&e))?,
                None => seq.serialize_element(&Value::None)?,
            }
        }
        seq.end()
    }
}

/// Read as [`Record`]'s derive reads it, keeping only the set fields.
impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("Record", &["schema", "fields"], ProfileVisitor)
    }
}

struct ProfileVisitor;

impl<'de> serde::de::Visitor<'de> for ProfileVisitor {
    type Value = Profile;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a profile record")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Profile, A::Error> {
        use serde::de::Error;
        let schema: u32 = seq
            .next_element()?
            .ok_or_else(|| A::Error::invalid_length(0, &self))?;
        let (len, set) = seq
            .next_element::<SetFields>()?
            .ok_or_else(|| A::Error::invalid_length(1, &self))?
            .0;
        Ok(Profile::of_set(schema, len, set))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Profile, A::Error> {
        use serde::de::Error;
        let (mut schema, mut fields) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "schema" => schema = Some(map.next_value::<u32>()?),
                "fields" => fields = Some(map.next_value::<SetFields>()?.0),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let schema = schema.ok_or_else(|| A::Error::missing_field("schema"))?;
        let (len, set) = fields.ok_or_else(|| A::Error::missing_field("fields"))?;
        Ok(Profile::of_set(schema, len, set))
    }
}

/// A record's fields read as a profile keeps them: how many, and the set
/// ones with their numbers.
struct SetFields((u32, Vec<(u16, Value)>));

impl<'de> Deserialize<'de> for SetFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = SetFields;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a record's fields")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SetFields, A::Error> {
                use serde::de::Error;
                let mut set = Vec::new();
                let mut len = 0u32;
                while let Some(value) = seq.next_element::<Value>()? {
                    if !value.is_none() {
                        let number = u16::try_from(len).map_err(|_| {
                            A::Error::custom("a profile of more than 65,536 fields")
                        })?;
                        set.push((number, value));
                    }
                    len += 1;
                }
                Ok(SetFields((len, set)))
            }
        }
        deserializer.deserialize_seq(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_read_as_none_and_numbers_beyond_as_absent() {
        let mut p = Profile::new(3, [Value::None, Value::Int(0), Value::None]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(0), Some(Value::None));
        assert_eq!(p.get(1), Some(Value::Int(0)));
        assert_eq!(p.get(3), None);
        assert!(p.set(2, Value::str("x")));
        assert!(p.set(0, Value::Bool(true)));
        assert!(!p.set(3, Value::Int(1)), "beyond the fields");
        assert_eq!(
            p.to_record(),
            Record {
                schema: 3,
                fields: vec![Value::Bool(true), Value::Int(0), Value::str("x")]
            }
        );
        assert!(p.set(1, Value::None));
        assert_eq!(p.entries().count(), 2, "a none is not kept");
        assert_eq!(p.get(1), Some(Value::None));
    }

    #[test]
    fn a_profile_is_stored_as_the_record_it_stands_for() {
        let record = Record {
            schema: 1,
            fields: vec![Value::None, Value::Time(5), Value::None, Value::str("a")],
        };
        let profile = Profile::from(record.clone());
        let bytes = postcard::to_allocvec(&profile).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&record).unwrap());
        let back: Profile = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, profile);
        assert_eq!(back.to_record(), record);
        let json = serde_json::to_string(&profile).unwrap();
        assert_eq!(json, serde_json::to_string(&record).unwrap());
        let back: Profile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, profile);
    }

    #[test]
    fn a_purchase_historys_profile_takes_about_a_hundred_bytes() {
        // What every customer of a store's order history holds: the numbers
        // are the standard profile's (email, first name, consent, the order
        // counts and instants, subscribed).
        let consent = Value::Record(Arc::new(Record {
            schema: 2,
            fields: vec![Value::Bool(true), Value::None, Value::None],
        }));
        let mut fields = vec![Value::None; 29];
        fields[0] = Value::str("c-1040213@shop.example");
        fields[2] = Value::str("Margarethe");
        fields[21] = consent;
        fields[22] = Value::Int(3);
        fields[23] = Value::Money(Decimal::new(24_850, 2));
        fields[24..28].fill(Value::Time(1_767_571_200));
        fields[28] = Value::Bool(true);
        let mut p = Profile::new(0, fields);
        assert_eq!(std::mem::size_of::<Profile>(), 24);
        assert_eq!(p.bytes.len(), 89, "{:?}", p.bytes);
        assert_eq!(p.side.len(), 1, "the consent record, shared");
        // A new instant of the same length is written in place.
        let block = p.bytes.as_ptr();
        assert!(p.set(25, Value::Time(1_767_657_600)));
        assert_eq!(p.bytes.as_ptr(), block);
        assert_eq!(p.get(25), Some(Value::Time(1_767_657_600)));
    }

    #[test]
    fn every_kind_of_value_comes_back_as_it_went_in() {
        use std::str::FromStr;
        let dec = |s: &str| Decimal::from_str(s).unwrap();
        let mut negative_zero = dec("0.00");
        negative_zero.set_sign_negative(true);
        let values = vec![
            Value::Bool(false),
            Value::Int(i64::MIN),
            Value::Time(1_767_571_200),
            Value::Duration(-5),
            Value::Date(-3),
            Value::Money(dec("198.00")),
            Value::Money(dec("-0.5")),
            Value::Percent(dec("12.5")),
            Value::Decimal(dec("79228162514264337593543950335")),
            Value::Money(negative_zero),
            Value::Decimal(dec("0.0000000000000000000000000001")),
            Value::str("c-1@shop.example"),
            Value::Timezone(Arc::from("Europe/Paris")),
            Value::TimeOfDay(540),
            Value::Record(Arc::new(Record {
                schema: 2,
                fields: vec![Value::Bool(true)],
            })),
            Value::List(Arc::from(vec![Value::Int(1)])),
            Value::str(&"é".repeat(200)),
        ];
        let n = values.len();
        let profile = Profile::new(7, values.clone());
        assert_eq!(profile.entries().count(), n);
        for (i, v) in values.iter().enumerate() {
            let back = profile.get(i).unwrap();
            assert_eq!(&back, v, "field {i}");
            // Bit for bit, not only equal: the stored row is written from it.
            assert_eq!(
                postcard::to_allocvec(&back).unwrap(),
                postcard::to_allocvec(v).unwrap(),
                "field {i}"
            );
        }
        let kinds: Vec<u8> = profile.entries().map(|e| e.kind).collect();
        let packed = |i: usize| kinds[i] != kind::SIDE;
        assert!(packed(5) && packed(6) && packed(7) && packed(10));
        assert!(!packed(8), "a mantissa beyond 64 bits is boxed");
        assert!(!packed(9), "a negative zero is boxed");
        assert_eq!(profile.text(11), Some("c-1@shop.example"));
        assert_eq!(profile.text(12), None, "a zone is not a text");
        assert!(profile.record(14).is_some() && profile.record(0).is_none());
        assert!(profile.is_set(3) && profile.text(n).is_none());
        assert_eq!(
            profile.text(16).map(str::len),
            Some(400),
            "a long text, beside"
        );
        assert_eq!(
            profile.side.len(),
            5,
            "two wide amounts, the record, the list, the long text"
        );
    }

    /// A value of any kind, or `none`.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Time),
            any::<i32>().prop_map(Value::Date),
            any::<u16>().prop_map(Value::TimeOfDay),
            (any::<i64>(), 0u32..29).prop_map(|(m, s)| Value::Money(Decimal::new(m, s))),
            (any::<u128>(), 0u32..29).prop_map(|(m, s)| {
                Value::Decimal(Decimal::from_i128_with_scale((m >> 32) as i128, s))
            }),
            ".{0,20}".prop_map(|s: String| Value::str(&s)),
            "[a-z]{250,260}".prop_map(|s: String| Value::str(&s)),
            ".{0,3}".prop_map(|s: String| Value::Timezone(Arc::from(s))),
            any::<i64>().prop_map(|i| Value::List(Arc::from(vec![Value::Int(i)]))),
            any::<bool>().prop_map(|b| Value::Record(Arc::new(Record {
                schema: 1,
                fields: vec![Value::Bool(b)],
            }))),
        ]
    }

    proptest::proptest! {
        /// Any sequence of writes and stamps leaves the profile reading as
        /// a plain record that took the same writes, bit for bit, and
        /// stored and read back the same.
        #[test]
        fn a_profile_reads_as_the_record_that_took_the_same_writes(
            first in proptest::collection::vec(any_value(), 0..12),
            writes in proptest::collection::vec(
                (0usize..14, any_value(), proptest::option::of((-2i64..3, proptest::bool::ANY))),
                0..40,
            ),
            wide in proptest::bool::ANY,
        ) {
            // Wide: the fields written are numbered around 128, where a
            // field's number takes two bytes.
            let pad = if wide { 120 } else { 0 };
            let mut fields = vec![Value::None; pad];
            fields.extend(first);
            let mut model = Record { schema: 4, fields: fields.clone() };
            let mut p = Profile::new(4, fields);
            for (n, v, stamp) in writes {
                let n = n + pad;
                let inside = n < model.fields.len();
                if let Some((secs, only_if_unset)) = stamp {
                    // A few instants, so that a stamp often finds its own.
                    let new = Value::Time(secs);
                    let changes = model.fields.get_mut(n).filter(|old| {
                        (!only_if_unset || old.is_none()) && **old != new
                    });
                    proptest::prop_assert_eq!(p.stamp(n, secs, only_if_unset), changes.is_some());
                    if let Some(slot) = changes {
                        *slot = new;
                    }
                } else {
                    proptest::prop_assert_eq!(p.set(n, v.clone()), inside);
                    if let Some(slot) = model.fields.get_mut(n) {
                        *slot = v;
                    }
                }
                let back = p.to_record();
                proptest::prop_assert_eq!(
                    postcard::to_allocvec(&back).unwrap(),
                    postcard::to_allocvec(&model).unwrap()
                );
                for (i, want) in model.fields.iter().enumerate() {
                    proptest::prop_assert_eq!(p.get(i), Some(want.clone()));
                    proptest::prop_assert_eq!(p.is_set(i), !want.is_none());
                    let text = match want {
                        Value::Str(s) => Some(&**s),
                        _ => None,
                    };
                    proptest::prop_assert_eq!(p.text(i), text);
                    if let Some(t) = text {
                        proptest::prop_assert!(p.holds_text(i, t));
                        let other = format!("{t}.");
                        proptest::prop_assert!(!p.holds_text(i, &other));
                    }
                }
                let stored = postcard::to_allocvec(&p).unwrap();
                proptest::prop_assert_eq!(&stored, &postcard::to_allocvec(&model).unwrap());
                let read: Profile = postcard::from_bytes(&stored).unwrap();
                proptest::prop_assert_eq!(&read, &p);
                proptest::prop_assert_eq!(&read.bytes, &p.bytes);
            }
        }
    }
}
