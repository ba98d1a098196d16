//! What the identity stage reads of a call: its identifiers and its
//! `messageId`, read by the runtime's own decoder so that the cluster
//! joins customers on exactly what the engine joins them on.

use std::collections::HashMap;
use std::sync::LazyLock;

use nudge_bytecode::Bundle;
use nudge_runtime::ingest::{Decoded, Decoder};

/// The kind of an identifier, as stored in the `identities` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A `userId`: the store's own id.
    User = 1,
    /// An `anonymousId` (a device or browser).
    Anonymous = 2,
    /// An `identify` call's `email` trait, trimmed and lower-cased.
    Email = 3,
}

impl Kind {
    /// The number stored for the kind.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The kind's name in a merge record: `user`, `anonymous` or `email`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Anonymous => "anonymous",
            Kind::Email => "email",
        }
    }

    /// The kind named `name` in a merge record, if any.
    pub fn of_name(name: &str) -> Option<Kind> {
        [Kind::User, Kind::Anonymous, Kind::Email]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The kind stored as `code`, if any.
    pub fn of_code(code: i16) -> Option<Kind> {
        match code {
            1 => Some(Kind::User),
            2 => Some(Kind::Anonymous),
            3 => Some(Kind::Email),
            _ => None,
        }
    }
}

/// The identifiers one call carries and its deduplication id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identifiers {
    /// `userId`.
    pub user_id: Option<String>,
    /// `anonymousId`.
    pub anonymous_id: Option<String>,
    /// An `alias` call's `previousId`.
    pub previous_id: Option<String>,
    /// An `identify` call's `email` trait, trimmed and lower-cased; never empty.
    pub email: Option<String>,
    /// `messageId`.
    pub message_id: Option<String>,
    /// When the call happened, as the engine reads it (ms since the epoch).
    pub at: Option<i64>,
}

impl Identifiers {
    /// The identifier that names the call's customer: its user id, else its
    /// anonymous id (the engine's rule).
    pub fn primary(&self) -> Option<(Kind, &str)> {
        match (&self.user_id, &self.anonymous_id) {
            (Some(u), _) => Some((Kind::User, u)),
            (None, Some(a)) => Some((Kind::Anonymous, a)),
            (None, None) => None,
        }
    }
}

/// An empty bundle: the envelope and the identifiers do not depend on a
/// project's schemas (an `identify`'s email is read whether or not the
/// profile declares it).
static NO_SCHEMAS: LazyLock<(Bundle, HashMap<String, u32>)> = LazyLock::new(Default::default);

/// Reads the identifiers of a call line, or the reason the engine would
/// refuse it (then it cannot be routed and goes to the dead letters).
pub fn identifiers(line: &str) -> Result<Identifiers, String> {
    let (bundle, by_wire) = &*NO_SCHEMAS;
    match Decoder::new(bundle, by_wire).decode(line) {
        Decoded::Bad(r) => Err(r.reason),
        Decoded::Call(mut parts) => {
            let message_id = parts.message_id().map(str::to_string);
            let call = parts.typed();
            let names = call.names;
            let ids = Identifiers {
                user_id: names.user_id.map(str::to_string),
                anonymous_id: names.anonymous_id.map(str::to_string),
                previous_id: names.previous_id.map(str::to_string),
                email: names
                    .email
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty()),
                message_id,
                at: Some(call.at),
            };
            if ids.primary().is_none() {
                return Err("the call names no customer: no `userId` or `anonymousId`".into());
            }
            Ok(ids)
        }
    }
}

/// The partition a new customer is placed in, from the identifier that
/// created it: FNV-1a, whose output is fixed by its definition, so the
/// placement is the same on every node and release.
pub fn partition_of(kind: Kind, value: &str, partitions: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in std::iter::once(kind as u8).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_identifiers_the_engine_joins_on() {
        let ids = identifiers(
            r#"{"type":"identify","userId":42,"anonymousId":"dev-1","messageId":"m1","timestamp":"2026-01-01T00:00:00Z","traits":{"email":"  Ann@Example.COM "}}"#,
        )
        .unwrap();
        assert_eq!(ids.user_id.as_deref(), Some("42"));
        assert_eq!(ids.anonymous_id.as_deref(), Some("dev-1"));
        assert_eq!(ids.email.as_deref(), Some("ann@example.com"));
        assert_eq!(ids.message_id.as_deref(), Some("m1"));
        assert_eq!(ids.primary(), Some((Kind::User, "42")));
        let alias = identifiers(
            r#"{"type":"alias","userId":"u1","previousId":"anon-9","timestamp":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(alias.previous_id.as_deref(), Some("anon-9"));
        assert_eq!(alias.message_id, None);
        // A track's `email` property is no identifier.
        let track = identifiers(
            r#"{"type":"track","event":"X","anonymousId":"a","timestamp":"2026-01-01T00:00:00Z","properties":{"email":"x@y"}}"#,
        )
        .unwrap();
        assert_eq!(track.email, None);
        assert!(identifiers(r#"{"type":"track","event":"X"}"#).is_err());
        assert!(identifiers("{").is_err());
    }

    #[test]
    fn placement_is_fixed_and_spread() {
        // FNV-1a of [1, b"ann"] is 0x...0f (worked out apart): a change here
        // would move every customer.
        assert_eq!(partition_of(Kind::User, "ann", 256), 15);
        assert_eq!(partition_of(Kind::User, "ann", 256), 15);
        assert_ne!(
            partition_of(Kind::User, "ann", 1 << 16),
            partition_of(Kind::Anonymous, "ann", 1 << 16)
        );
        let mut seen = [0u32; 16];
        for i in 0..16_000 {
            seen[partition_of(Kind::Anonymous, &format!("device-{i}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
