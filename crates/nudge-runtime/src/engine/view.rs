//! What a store's website may read of a customer: the traits it chose and
//! the segments the customer is in now, as JSON (the profile API of
//! `nudge serve`).

use std::collections::BTreeMap;

use nudge_bytecode::{Bundle, Value, civil_from_days, format_duration, format_instant};
use serde::Serialize;

use super::{Machine, Tables};
use crate::identity::Identity;

/// A customer as the profile API shows them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileView {
    /// The id asked for.
    pub id: String,
    /// The chosen traits the profile declares, by name; `null` when unset.
    pub traits: BTreeMap<String, serde_json::Value>,
    /// The newest release's segments the customer is in now, by name.
    pub segments: Vec<String>,
}

impl Machine<'_> {
    /// The customer known by `id` (a user id, an anonymous id or an
    /// email), with the traits named in `traits` and every segment they
    /// are in now; `None` for an id the engine does not know.
    pub fn profile_view(&mut self, id: &str, traits: &[String]) -> Option<ProfileView> {
        let ids = &mut self.identities;
        let c = ids
            .customer_of(&Identity::User(id.to_string()))
            .or_else(|| ids.customer_of(&Identity::Anonymous(id.to_string())))
            .or_else(|| ids.customer_of(&Identity::email(id)))?
            .0;
        let bundle = self.bundle();
        let schema = bundle.profile_schema();
        let profile = &self.customers.get(&c)?.profile;
        let traits = traits
            .iter()
            .filter_map(|name| {
                let i = schema.fields.iter().position(|f| &f.name == name)?;
                let value = profile
                    .get(i)
                    .map_or(serde_json::Value::Null, |v| json_of(v, bundle));
                Some((name.clone(), value))
            })
            .collect();
        let segments = (0..bundle.segments.len() as u32)
            .filter(|&s| self.in_segment(c, s))
            .filter_map(|s| bundle.segments.get(s as usize).map(|g| g.name.clone()))
            .collect();
        Some(ProfileView {
            id: id.to_string(),
            traits,
            segments,
        })
    }
}

/// A value as JSON, written as a tracking call would send it: numbers with
/// a decimal point (money, decimals, percentages) as strings, so no digit
/// is lost to a float; instants in RFC 3339 (UTC); dates as `YYYY-MM-DD`;
/// durations as the language writes them (`7d`).
pub fn json_of(value: &Value, bundle: &Bundle) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::None => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Decimal(d) | Value::Money(d) | Value::Percent(d) => J::String(d.to_string()),
        Value::Str(s) | Value::Timezone(s) => J::String(s.to_string()),
        Value::Duration(s) => J::String(format_duration(*s)),
        Value::Time(t) => J::String(format_instant(*t)),
        Value::Date(d) => {
            let (y, m, d) = civil_from_days(i64::from(*d));
            J::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        Value::TimeOfDay(m) => J::String(format!("{:02}:{:02}", m / 60, m % 60)),
        Value::List(items) => J::Array(items.iter().map(|v| json_of(v, bundle)).collect()),
        Value::Record(r) => {
            let names = bundle.schemas.get(r.schema as usize).map(|s| &s.fields);
            J::Object(
                r.fields
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let name = names
                            .and_then(|f| f.get(i))
                            .map_or_else(|| i.to_string(), |f| f.name.clone());
                        (name, json_of(v, bundle))
                    })
                    .collect(),
            )
        }
    }
}
