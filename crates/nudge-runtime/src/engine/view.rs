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
    /// Products to suggest, when asked for (`?recommendations=N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Vec<Recommendation>>,
}

/// A product the profile API suggests, as `recommend` would.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// The product's id.
    pub product_id: String,
    /// Its name, when known.
    pub name: Option<String>,
    /// Its category, when known.
    pub category: Option<String>,
    /// Its price with every digit, as a string, when known.
    pub price: Option<String>,
    /// The ISO 4217 code of its price, when known.
    pub currency: Option<String>,
    /// Its page, when known.
    pub url: Option<String>,
    /// Its picture, when known.
    pub image_url: Option<String>,
    /// Where it came from: `co_purchase`, `category`, `popular` or `fallback`.
    pub source: &'static str,
}

impl Machine<'_> {
    /// The customer known by `id` (a user id, an anonymous id or an
    /// email), with the traits named in `traits` and every segment they
    /// are in now; `None` for an id the engine does not know.
    pub fn profile_view(&mut self, id: &str, traits: &[String]) -> Option<ProfileView> {
        self.profile_view_with(id, traits, None)
    }

    /// As [`Machine::profile_view`], with `recommendations` products to
    /// suggest when it is `Some` (as `recommend` in the newest release's
    /// code would, with nothing in a trigger).
    pub fn profile_view_with(
        &mut self,
        id: &str,
        traits: &[String],
        recommendations: Option<usize>,
    ) -> Option<ProfileView> {
        let c = self
            .customer_known_as(&Identity::User(id.to_string()))
            .or_else(|| self.customer_known_as(&Identity::Anonymous(id.to_string())))
            .or_else(|| self.customer_known_as(&Identity::email(id)))?
            .0;
        if !self.page_in(c) {
            return None;
        }
        let bundle = self.bundle();
        let schema = bundle.profile_schema();
        let profile = &self.customers.get(&c)?.profile;
        let traits = traits
            .iter()
            .filter_map(|name| {
                let i = schema.fields.iter().position(|f| &f.name == name)?;
                let value = profile
                    .get(i)
                    .map_or(serde_json::Value::Null, |v| json_of(&v, bundle));
                Some((name.clone(), value))
            })
            .collect();
        let segments = (0..bundle.segments.len() as u32)
            .filter(|&s| self.in_segment(c, s))
            .filter_map(|s| bundle.segments.get(s as usize).map(|g| g.name.clone()))
            .collect();
        let recommendations = recommendations.map(|n| {
            let customer = self.customers.get(&c);
            let picks = match customer {
                Some(cust) => super::recs::ask(
                    bundle,
                    &self.learned,
                    &self.config.catalogue,
                    cust,
                    Vec::new(),
                    n,
                    Vec::new(),
                ),
                None => Vec::new(),
            };
            picks
                .into_iter()
                .map(|p| Recommendation {
                    price: p.product.price.map(|d| d.to_string()),
                    product_id: p.product.id,
                    name: p.product.name,
                    category: p.product.category,
                    currency: p.product.currency,
                    url: p.product.url,
                    image_url: p.product.image_url,
                    source: p.source.name(),
                })
                .collect()
        });
        Some(ProfileView {
            id: id.to_string(),
            traits,
            segments,
            recommendations,
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
