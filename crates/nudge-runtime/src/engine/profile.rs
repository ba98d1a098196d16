//! A customer's profile, kept sparse.
//!
//! The standard profile alone has 29 fields, and a value takes 24 bytes, so
//! a record with a slot for every field costs about 700 bytes per customer
//! while a typical customer sets ten of them. Only fields that hold a value
//! are kept here, with their number; an unset field reads as `none`
//! exactly as a stored `none` did, and the VM and the checkpoint still see
//! a whole [`Record`].

use nudge_bytecode::{Record, Value};
use serde::{Deserialize, Serialize};

/// What an unset field reads as.
static NONE: Value = Value::None;

/// One set field.
#[derive(Clone, Debug, PartialEq)]
struct Field {
    /// Its number in the profile's schema.
    number: u16,
    /// Its value, never `none`.
    value: Value,
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
    /// The set fields, by increasing number.
    set: Vec<Field>,
}

impl Profile {
    /// A profile of schema `schema` with these field values, in order.
    pub fn new(schema: u32, fields: impl IntoIterator<Item = Value>) -> Profile {
        let mut len = 0u32;
        let set: Vec<Field> = (0u16..)
            .zip(fields)
            .inspect(|_| len += 1)
            .filter(|(_, v)| !v.is_none())
            .map(|(number, value)| Field { number, value })
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
        self.set.binary_search_by_key(&number, |f| f.number)
    }

    /// Field `number`'s value (`none` when unset); `None` for a number
    /// beyond the profile's fields.
    pub fn get(&self, number: usize) -> Option<&Value> {
        if number >= self.len() {
            return None;
        }
        let number = u16::try_from(number).ok()?;
        Some(match self.find(number) {
            Ok(i) => self.set.get(i).map_or(&NONE, |f| &f.value),
            Err(_) => &NONE,
        })
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
                    f.value = value;
                }
            }
            (Ok(i), true) => {
                self.set.remove(i);
            }
            (Err(i), false) => {
                // One more at a time: a profile gains its fields in the first
                // few calls and then keeps them, and spare room would be
                // kept for ever.
                self.set.reserve_exact(1);
                self.set.insert(i, Field { number: n, value });
            }
            (Err(_), true) => {}
        }
        true
    }

    /// The whole record, every field in order.
    pub fn to_record(&self) -> Record {
        let mut fields = vec![Value::None; self.len()];
        for f in &self.set {
            if let Some(slot) = fields.get_mut(usize::from(f.number)) {
                *slot = f.value.clone();
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
        self.set.retain(|f| u32::from(f.number) < self.len);
    }
}

/// `v` without spare room.
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
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
            match set.next_if(|f| u32::from(f.number) == n) {
                Some(f) => seq.serialize_element(&f.value)?,
                None => seq.serialize_element(&NONE)?,
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
struct SetFields((u32, Vec<Field>));

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
                        set.push(Field { number, value });
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
        assert_eq!(p.get(0), Some(&Value::None));
        assert_eq!(p.get(1), Some(&Value::Int(0)));
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
        assert_eq!(p.get(1), Some(&Value::None));
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
}
