//! Segment tracking-spec calls, one JSON object per line.
//!
//! Only the envelope is checked here (call type, ids, time, event name);
//! properties are validated against the project's event schemas later, when
//! the compiled bundle says what each event carries.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A Segment call the runtime understands.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// What the call does.
    pub kind: CallKind,
    /// The store's own id for the customer, when known.
    pub user_id: Option<String>,
    /// The device or browser id, for customers not yet identified.
    pub anonymous_id: Option<String>,
    /// When the call happened, in UTC.
    pub timestamp: DateTime<Utc>,
    /// The sender's unique id for the call, used to drop repeats.
    pub message_id: Option<String>,
}

/// The kinds of call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallKind {
    /// `track`: an event with properties.
    Track {
        /// The event's wire name, such as "Order Completed".
        event: String,
        /// The event's properties.
        properties: Map<String, Value>,
    },
    /// `identify`: traits of the customer.
    Identify {
        /// The traits.
        traits: Map<String, Value>,
    },
    /// `alias`: `previous_id` and the call's `user_id` are one customer.
    Alias {
        /// The id being joined to the user id.
        previous_id: String,
    },
    /// `page`: a page view, handled as a track of "Page Viewed".
    Page {
        /// The page's name, when given.
        name: Option<String>,
        /// The page's properties.
        properties: Map<String, Value>,
    },
}

impl Call {
    /// The wire name of the event this call amounts to, for track and page calls.
    pub fn event_name(&self) -> Option<&str> {
        match &self.kind {
            CallKind::Track { event, .. } => Some(event),
            CallKind::Page { .. } => Some(PAGE_EVENT),
            _ => None,
        }
    }
}

/// The event a `page` call becomes.
pub const PAGE_EVENT: &str = "Page Viewed";

/// Why a line could not be used; written to the dead-letter file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong, for a person to read.
    pub reason: String,
}

impl Rejection {
    fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Reads one line of JSON as a Segment call.
pub fn parse_line(line: &str) -> Result<Call, Rejection> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        Rejection::new(format!(
            "malformed JSON at column {}: {}",
            e.column(),
            strip_position(&e.to_string())
        ))
    })?;
    let Value::Object(mut obj) = value else {
        return Err(Rejection::new(format!(
            "expected a JSON object, found {}",
            kind_of(&value)
        )));
    };
    let call_type = string_field(&obj, "type")?.ok_or_else(|| Rejection::new("missing `type`"))?;
    let user_id = id_field(&obj, "userId")?;
    let anonymous_id = id_field(&obj, "anonymousId")?;
    let message_id = string_field(&obj, "messageId")?;
    let timestamp = timestamp(&obj)?;
    let kind = match call_type.as_str() {
        "track" => {
            let event = string_field(&obj, "event")?
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| Rejection::new("a track call needs a non-empty `event`"))?;
            CallKind::Track {
                event,
                properties: object_field(&mut obj, "properties")?,
            }
        }
        "page" => CallKind::Page {
            name: string_field(&obj, "name")?,
            properties: object_field(&mut obj, "properties")?,
        },
        "identify" => CallKind::Identify {
            traits: object_field(&mut obj, "traits")?,
        },
        "alias" => {
            let previous_id = id_field(&obj, "previousId")?
                .ok_or_else(|| Rejection::new("an alias call needs `previousId`"))?;
            if user_id.is_none() {
                return Err(Rejection::new("an alias call needs `userId`"));
            }
            CallKind::Alias { previous_id }
        }
        other => {
            return Err(Rejection::new(format!(
                "unsupported call type `{other}`: expected track, identify, alias or page"
            )));
        }
    };
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(Rejection::new(
            "the call names no customer: give `userId` or `anonymousId`",
        ));
    }
    Ok(Call {
        kind,
        user_id,
        anonymous_id,
        timestamp,
        message_id,
    })
}

/// serde_json appends "at line L column C"; the dead letter has its own line.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Rejection::new(format!(
            "`{key}` must be a string, found {}",
            kind_of(other)
        ))),
    }
}

/// Ids may arrive as numbers from some SDKs; they are kept as their text.
fn id_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match obj.get(key) {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => Ok(string_field(obj, key)?.filter(|s| !s.is_empty())),
    }
}

fn object_field(obj: &mut Map<String, Value>, key: &str) -> Result<Map<String, Value>, Rejection> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(Rejection::new(format!(
            "`{key}` must be an object, found {}",
            kind_of(&other)
        ))),
    }
}

/// The call's time: `timestamp`, else `originalTimestamp` (as analytics.js sends it).
fn timestamp(obj: &Map<String, Value>) -> Result<DateTime<Utc>, Rejection> {
    let (key, text) = match string_field(obj, "timestamp")? {
        Some(t) => ("timestamp", t),
        None => match string_field(obj, "originalTimestamp")? {
            Some(t) => ("originalTimestamp", t),
            None => return Err(Rejection::new("missing `timestamp`")),
        },
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Rejection::new(format!("`{key}` is not an RFC 3339 time ({text:?}): {e}")))
}

/// Just the time of a call, read without building the rest of it: the
/// replay orders lines by this before parsing each one in full, once.
/// Gives `None` for a line `parse_line` would refuse for its time or its JSON.
pub fn time_of(line: &str) -> Option<i64> {
    if let Some(t) = time_of_fast(line) {
        return Some(t);
    }
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        timestamp: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default, rename = "originalTimestamp")]
        original: Option<std::borrow::Cow<'a, str>>,
    }
    let e: Envelope = serde_json::from_str(line).ok()?;
    let text = e.timestamp.or(e.original)?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.timestamp())
}

/// The common case without a JSON parser: the line names `"timestamp"` exactly
/// once, as a key followed by a plain string, and has no `originalTimestamp`.
/// Then that key is the envelope's (a nested one would leave the call without
/// a time, which the full parse refuses anyway). Anything else: `None`, and
/// the caller parses properly.
fn time_of_fast(line: &str) -> Option<i64> {
    const KEY: &str = "\"timestamp\"";
    let at = line.find(KEY)?;
    let rest = &line[at + KEY.len()..];
    if rest.contains(KEY) || line.contains("\"originalTimestamp\"") {
        return None;
    }
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let text = &rest[..end];
    if text.contains('\\') {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_briefs_three_calls() {
        let identify = parse_line(r#"{"type":"identify","userId":"u1","anonymousId":"a9","timestamp":"2026-11-23T09:00:00Z","traits":{"email":"ana@example.com","consent":{"email":true,"sms":false}}}"#).unwrap();
        assert_eq!(identify.user_id.as_deref(), Some("u1"));
        let CallKind::Identify { traits } = &identify.kind else {
            panic!("not an identify: {identify:?}")
        };
        assert_eq!(traits["email"], "ana@example.com");

        let track = parse_line(r#"{"type":"track","event":"Product Added","anonymousId":"a9","timestamp":"2026-11-23T10:00:00+01:00","messageId":"m-1","properties":{"price":12.5}}"#).unwrap();
        assert_eq!(track.event_name(), Some("Product Added"));
        assert_eq!(track.message_id.as_deref(), Some("m-1"));
        // Offsets are folded into UTC.
        assert_eq!(track.timestamp.to_rfc3339(), "2026-11-23T09:00:00+00:00");

        let alias = parse_line(
            r#"{"type":"alias","previousId":"a9","userId":"u1","timestamp":"2026-11-23T10:05:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            alias.kind,
            CallKind::Alias {
                previous_id: "a9".into()
            }
        );
    }

    #[test]
    fn page_becomes_page_viewed() {
        let page = parse_line(
            r#"{"type":"page","userId":"u1","name":"Home","timestamp":"2026-11-23T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(page.event_name(), Some(PAGE_EVENT));
    }

    #[test]
    fn every_bad_line_gets_a_reason() {
        let cases = [
            ("{not json", "malformed JSON at column 2"),
            ("[1,2]", "expected a JSON object, found an array"),
            (
                r#"{"userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
                "missing `type`",
            ),
            (
                r#"{"type":"group","userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
                "unsupported call type `group`",
            ),
            (
                r#"{"type":"track","userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
                "needs a non-empty `event`",
            ),
            (
                r#"{"type":"track","event":"X","timestamp":"2026-11-23T10:00:00Z"}"#,
                "names no customer",
            ),
            (
                r#"{"type":"track","event":"X","userId":"u1"}"#,
                "missing `timestamp`",
            ),
            (
                r#"{"type":"track","event":"X","userId":"u1","timestamp":"yesterday"}"#,
                "not an RFC 3339 time",
            ),
            (
                r#"{"type":"track","event":"X","userId":"u1","timestamp":"2026-11-23T10:00:00Z","properties":[1]}"#,
                "`properties` must be an object, found an array",
            ),
            (
                r#"{"type":"alias","userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
                "needs `previousId`",
            ),
        ];
        for (line, want) in cases {
            let err = parse_line(line).expect_err(line);
            assert!(err.reason.contains(want), "{line}: {}", err.reason);
        }
    }

    #[test]
    fn numeric_ids_are_kept_as_text() {
        let call =
            parse_line(r#"{"type":"identify","userId":42,"timestamp":"2026-11-23T10:00:00Z"}"#)
                .unwrap();
        assert_eq!(call.user_id.as_deref(), Some("42"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line in ".*") {
            let _ = parse_line(&line);
        }
    }

    #[test]
    fn time_of_reads_only_the_envelope_time() {
        let line = r#"{"type":"track","event":"X","userId":"u","timestamp":"2026-01-05T10:00:00Z","properties":{"timestamp":"nope"}}"#;
        assert_eq!(time_of(line), Some(1_767_607_200));
        let original =
            r#"{"type":"page","userId":"u","originalTimestamp":"2026-01-05T10:00:00+01:00"}"#;
        assert_eq!(time_of(original), Some(1_767_603_600));
        assert_eq!(time_of("{broken"), None);
        assert_eq!(time_of(r#"{"timestamp":"yesterday"}"#), None);
        // The fast path and the parser agree, and the fast path steps aside
        // when the key could be ambiguous.
        for line in [
            r#"{"type":"track","timestamp" : "2026-01-05T10:00:00Z","userId":"u"}"#,
            r#"{"event":"timestamp","timestamp":"2026-01-05T10:00:00Z"}"#,
            r#"{"properties":{"timestamp":"2020-01-01T00:00:00Z"},"timestamp":"2026-01-05T10:00:00Z"}"#,
        ] {
            assert_eq!(time_of(line), Some(1_767_607_200), "{line}");
        }
        assert_eq!(
            time_of_fast(r#"{"event":"timestamp","timestamp":"2026-01-05T10:00:00Z"}"#),
            None
        );
    }
}
