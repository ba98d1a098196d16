//! A customer's profile, kept sparse and packed.
//!
//! The standard profile alone has 29 fields, and a value takes 24 bytes, so
//! a record with a slot for every field costs about 700 bytes per customer
//! while a typical customer sets ten of them. Only fields that hold a value
//! are kept here, with their number; an unset field reads as `none`
//! exactly as a stored `none` did, and the VM and the checkpoint still see
//! a whole [`Record`].
//!
//! Each set field takes 16 bytes: its number, its kind and an 8-byte
//! payload. Instants, integers, flags and amounts of up to 18 digits are
//! held in the payload; a record (consent) by its shared pointer; a text
//! behind one more pointer; anything else as a boxed [`Value`]. A
//! `Field` of number and [`Value`] took 32.

use std::sync::Arc;

use nudge_bytecode::{Record, Value};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One set field, packed into 16 bytes (see the module's comment).
#[derive(Clone, Debug)]
enum Field {
    /// `true` or `false`.
    Bool { number: u16, value: bool },
    /// An integer.
    Int { number: u16, value: i64 },
    /// An instant, in seconds.
    Time { number: u16, value: i64 },
    /// A duration, in seconds.
    Duration { number: u16, value: i64 },
    /// A calendar date.
    Date { number: u16, value: i32 },
    /// A decimal, money or percentage whose mantissa fits 64 bits.
    Amount {
        number: u16,
        kind: Amount,
        scale: u8,
        mantissa: i64,
    },
    /// A record (the consent record, shared between customers).
    Record { number: u16, value: Arc<Record> },
    /// A text; the extra pointer keeps the field at 16 bytes.
    #[allow(clippy::redundant_allocation)]
    Str { number: u16, value: Box<Arc<str>> },
    /// Any other value.
    Other { number: u16, value: Box<Value> },
}

/// Which of the decimal kinds an [`Field::Amount`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Amount {
    /// `Value::Decimal`.
    Decimal,
    /// `Value::Money`.
    Money,
    /// `Value::Percent`.
    Percent,
}

impl Amount {
    /// The value of this kind.
    fn value(self, d: Decimal) -> Value {
        match self {
            Amount::Decimal => Value::Decimal(d),
            Amount::Money => Value::Money(d),
            Amount::Percent => Value::Percent(d),
        }
    }
}

/// Fields are equal when they hold equal values, as [`Value`]s compare
/// (an amount packed or boxed, `1.0` or `1.00`).
impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        self.number() == other.number() && self.value() == other.value()
    }
}

impl Field {
    /// Field `number` holding `value` (never `none`).
    fn new(number: u16, value: Value) -> Field {
        match value {
            Value::Bool(value) => Field::Bool { number, value },
            Value::Int(value) => Field::Int { number, value },
            Value::Time(value) => Field::Time { number, value },
            Value::Duration(value) => Field::Duration { number, value },
            Value::Date(value) => Field::Date { number, value },
            Value::Decimal(d) => Field::amount(number, Amount::Decimal, d),
            Value::Money(d) => Field::amount(number, Amount::Money, d),
            Value::Percent(d) => Field::amount(number, Amount::Percent, d),
            Value::Record(value) => Field::Record { number, value },
            Value::Str(value) => Field::Str {
                number,
                value: Box::new(value),
            },
            value => Field::Other {
                number,
                value: Box::new(value),
            },
        }
    }

    /// An amount, packed when its mantissa fits 64 bits and it comes back
    /// bit for bit (a negative zero does not), else boxed.
    fn amount(number: u16, kind: Amount, d: Decimal) -> Field {
        let packed = i64::try_from(d.mantissa())
            .ok()
            .zip(u8::try_from(d.scale()).ok())
            .filter(|&(m, scale)| {
                Decimal::try_from_i128_with_scale(i128::from(m), u32::from(scale))
                    .is_ok_and(|back| back.serialize() == d.serialize())
            });
        match packed {
            Some((mantissa, scale)) => Field::Amount {
                number,
                kind,
                scale,
                mantissa,
            },
            None => Field::Other {
                number,
                value: Box::new(kind.value(d)),
            },
        }
    }

    /// Its number in the profile's schema.
    fn number(&self) -> u16 {
        match self {
            Field::Bool { number, .. }
            | Field::Int { number, .. }
            | Field::Time { number, .. }
            | Field::Duration { number, .. }
            | Field::Date { number, .. }
            | Field::Amount { number, .. }
            | Field::Record { number, .. }
            | Field::Str { number, .. }
            | Field::Other { number, .. } => *number,
        }
    }

    /// Its value.
    fn value(&self) -> Value {
        match self {
            Field::Bool { value, .. } => Value::Bool(*value),
            Field::Int { value, .. } => Value::Int(*value),
            Field::Time { value, .. } => Value::Time(*value),
            Field::Duration { value, .. } => Value::Duration(*value),
            Field::Date { value, .. } => Value::Date(*value),
            Field::Amount {
                kind,
                scale,
                mantissa,
                ..
            } => kind.value(
                // Checked when packed: it comes back as it went in.
                Decimal::try_from_i128_with_scale(i128::from(*mantissa), u32::from(*scale))
                    .unwrap_or_default(),
            ),
            Field::Record { value, .. } => Value::Record(value.clone()),
            Field::Str { value, .. } => Value::Str(Arc::clone(value)),
            Field::Other { value, .. } => (**value).clone(),
        }
    }
}

/// A profile: the fields that are set, by number. Serialized as the whole
/// [`Record`] it stands for, so the checkpoint's layout is the record's
/// (written and read straight from the set fields: a customer's row is
/// written at each checkpoint that changed it, and a frozen customer's at
/// every freeze, so no whole record is built for it).
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The profile's schema.
    schema: u32,
    /// How many fields the schema has.
    len: u32,
    /// The set fields, by increasing number. Boxed, not a vector: a
    /// profile gains its fields in its first calls and then keeps them.
    set: Box<[Field]>,
}

impl Profile {
    /// A profile of schema `schema` with these field values, in order.
    pub fn new(schema: u32, fields: impl IntoIterator<Item = Value>) -> Profile {
        let mut len = 0u32;
        let set: Vec<Field> = (0u16..)
            .zip(fields)
            .inspect(|_| len += 1)
            .filter(|(_, v)| !v.is_none())
            .map(|(number, value)| Field::new(number, value))
            .collect();
        Profile {
            schema,
            len,
            set: exact(set),
        }
    }

    /// How many fields the profile has, set or not.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the profile has no fields at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where field `number` is in `set`, or where it would go.
    fn find(&self, number: u16) -> Result<usize, usize> {
        self.set.binary_search_by_key(&number, Field::number)
    }

    /// Field `number`'s value (`none` when unset); `None` for a number
    /// beyond the profile's fields.
    pub fn get(&self, number: usize) -> Option<Value> {
        Some(self.field(number)?.map_or(Value::None, Field::value))
    }

    /// Field `number` when set (`Some(None)` when unset); `None` for a
    /// number beyond the profile's fields.
    fn field(&self, number: usize) -> Option<Option<&Field>> {
        if number >= self.len() {
            return None;
        }
        let number = u16::try_from(number).ok()?;
        Some(self.find(number).ok().and_then(|i| self.set.get(i)))
    }

    /// Whether field `number` is set (to anything but `none`).
    pub fn is_set(&self, number: usize) -> bool {
        self.field(number).flatten().is_some()
    }

    /// Field `number`'s text, when it holds one: read in place, where
    /// [`Profile::get`] would count one more holder of it.
    pub fn text(&self, number: usize) -> Option<&str> {
        match self.field(number)?? {
            Field::Str { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Field `number`'s record, when it holds one (read in place).
    pub fn record(&self, number: usize) -> Option<&Arc<Record>> {
        match self.field(number)?? {
            Field::Record { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Sets field `number` (a `none` unsets it); returns false, changing
    /// nothing, for a number beyond the profile's fields.
    pub fn set(&mut self, number: usize, value: Value) -> bool {
        let Ok(n) = u16::try_from(number) else {
            return false;
        };
        if number >= self.len() {
            return false;
        }
        match (self.find(n), value.is_none()) {
            (Ok(i), false) => {
                if let Some(f) = self.set.get_mut(i) {
                    *f = Field::new(n, value);
                }
            }
            (Ok(i), true) => {
                let mut set = std::mem::take(&mut self.set).into_vec();
                set.remove(i);
                self.set = set.into_boxed_slice();
            }
            (Err(i), false) => {
                // One more at a time: a profile gains its fields in the first
                // few calls and then keeps them, and spare room would be
                // kept for ever (exactly one more, so boxing moves nothing).
                let mut set = std::mem::take(&mut self.set).into_vec();
                set.reserve_exact(1);
                set.insert(i, Field::new(n, value));
                self.set = set.into_boxed_slice();
            }
            (Err(_), true) => {}
        }
        true
    }

    /// The whole record, every field in order.
    pub fn to_record(&self) -> Record {
        let mut fields = vec![Value::None; self.len()];
        for f in &self.set {
            if let Some(slot) = fields.get_mut(usize::from(f.number())) {
                *slot = f.value();
            }
        }
        Record {
            schema: self.schema,
            fields,
        }
    }

    /// Drops the last field (a checkpoint test's damage).
    #[cfg(test)]
    pub(crate) fn drop_last_field(&mut self) {
        self.len = self.len.saturating_sub(1);
        let mut set = std::mem::take(&mut self.set).into_vec();
        set.retain(|f| u32::from(f.number()) < self.len);
        self.set = set.into_boxed_slice();
    }
}

/// `v` without spare room, boxed.
fn exact<T>(v: Vec<T>) -> Box<[T]> {
    v.into_boxed_slice()
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
        st.serialize_field("schema", &self.schema)?;
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
        let mut seq = serializer.serialize_seq(Some(p.len()))?;
        let mut set = p.set.iter().peekable();
        for n in 0..p.len {
            match set.next_if(|f| u32::from(f.number()) == n) {
                Some(f) => seq.serialize_element(&f.value())?,
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
        Ok(Profile { schema, len, set })
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
        Ok(Profile { schema, len, set })
    }
}

/// A record's fields read as a profile keeps them: how many, and the set ones.
struct SetFields((u32, Box<[Field]>));

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
                        set.push(Field::new(number, value));
                    }
                    len += 1;
                }
                Ok(SetFields((len, exact(set))))
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
        assert_eq!(p.set.len(), 2, "a none is not kept");
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
    fn a_set_field_takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Field>(), 16);
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
        ];
        let n = values.len();
        let profile = Profile::new(7, values.clone());
        assert_eq!(profile.set.len(), n);
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
        let packed = |i: usize| matches!(profile.set[i], Field::Amount { .. });
        assert!(packed(5) && packed(6) && packed(7) && packed(10));
        assert!(!packed(8), "a mantissa beyond 64 bits is boxed");
        assert!(!packed(9), "a negative zero is boxed");
        assert_eq!(profile.text(11), Some("c-1@shop.example"));
        assert_eq!(profile.text(12), None, "a zone is not a text");
        assert!(profile.record(14).is_some() && profile.record(0).is_none());
        assert!(profile.is_set(3) && profile.text(n).is_none());
    }
}
