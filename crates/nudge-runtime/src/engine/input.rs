//! What the engine notes about a call as it applies it: the properties
//! dropped from it, the calls counted apart (undeclared events, groups),
//! and the zone and language of the sender's device, which fill a profile
//! that has none.

use std::str::FromStr;

use nudge_bytecode::Value;

use super::{Applied, Machine};
use crate::decode::{self, Shape};
use crate::identity::{Identity, Names};
use crate::ingest::{Note, Notes, TypedCall};
use crate::record::What;
use crate::segment::Rejection;

impl Machine<'_> {
    /// Applies a decoded call as [`Machine::apply_typed`] does, then notes
    /// what `notes` says: one `dropped` record per property or trait
    /// dropped, the counters of undeclared events and group calls, and
    /// `context.timezone` / `context.locale` as the profile's when it has
    /// none (before the call is applied, so its flows see them).
    pub fn apply_noted(
        &mut self,
        mut call: TypedCall<'_>,
        notes: Notes<'_>,
    ) -> Result<Applied, Rejection> {
        self.fill_from_context(&call.names, &mut call.traits, &notes);
        let names = call.names;
        let applied = self.apply_typed(call)?;
        if applied == Applied::Duplicate {
            return Ok(applied);
        }
        match notes.kind {
            Note::Undeclared => self.stats.undeclared += 1,
            Note::Group => self.stats.groups += 1,
            Note::Plain => {}
        }
        if notes.dropped.is_empty() {
            return Ok(applied);
        }
        let customer = self.customer_named(&names);
        for d in notes.dropped {
            self.stats.dropped += 1;
            if let Some(c) = customer {
                self.record(
                    c,
                    What::Dropped {
                        event: notes.event.map(str::to_string),
                        path: d.path,
                        reason: d.reason,
                        used: d.used.map(|v| v.to_string()),
                    },
                );
            }
        }
        Ok(applied)
    }

    /// The customer a call's names resolve to now, if any.
    fn customer_named(&mut self, names: &Names<'_>) -> Option<u32> {
        let id = match (names.user_id, names.anonymous_id) {
            (Some(u), _) => Identity::User(u.to_string()),
            (None, Some(a)) => Identity::Anonymous(a.to_string()),
            (None, None) => return None,
        };
        self.customer_known_as(&id).map(|c| c.0)
    }

    /// Adds the context's zone and locale to the traits a call sets, for
    /// profile fields of those names that the profile leaves empty and the
    /// call's own traits do not set, and the device's push token unless the
    /// call's traits set one. A zone that is not an IANA name is left out.
    fn fill_from_context(
        &mut self,
        names: &Names<'_>,
        traits: &mut Vec<(u16, Value)>,
        notes: &Notes<'_>,
    ) {
        if notes.timezone.is_none() && notes.locale.is_none() && notes.device_token.is_none() {
            return;
        }
        let bundle = self.bundle();
        let Some(schema) = bundle.schemas.get(bundle.profile as usize) else {
            return;
        };
        let customer = self.customer_named(names);
        let before = traits.len();
        let fields = [
            ("timezone", notes.timezone),
            ("locale", notes.locale),
            ("device_token", notes.device_token),
        ];
        for (name, text) in fields {
            let Some(text) = text else { continue };
            if name == "timezone" && chrono_tz::Tz::from_str(text).is_err() {
                continue;
            }
            let Some((i, field)) = schema
                .fields
                .iter()
                .enumerate()
                .find(|(_, f)| f.name == name)
            else {
                continue;
            };
            if traits.iter().any(|(j, _)| usize::from(*j) == i) {
                continue;
            }
            // The device's token is its latest: a reinstalled app has a new one.
            let known = name != "device_token"
                && customer
                    .and_then(|c| self.customers.get(&c))
                    .is_some_and(|cust| cust.profile.is_set(i));
            if known {
                continue;
            }
            if let Ok(v) = decode::scalar(bundle, &field.ty, Shape::Str(text)) {
                traits.push((i as u16, v));
            }
        }
        if traits.len() != before {
            traits.sort_by_key(|(i, _)| *i);
        }
    }
}
