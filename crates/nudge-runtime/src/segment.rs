//! Segment tracking-spec calls, one JSON object per line.
//!
//! Only the envelope is checked here (call type, ids, time, event name);
//! properties are validated against the project's event schemas later, when
//! the compiled bundle says what each event carries. Hosts read lines with
//! [`crate::ingest`]; the tree reader `parse_line` and its `Call` exist
//! only with the `oracle` feature, as the tests' second opinion.

use std::borrow::Cow;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use memchr::memmem;
#[cfg(feature = "oracle")]
use serde_json::{Map, Value};

#[cfg(feature = "oracle")]
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
    /// What the sender's library said of the device, as far as the profile uses it.
    pub context: Context,
}

#[cfg(feature = "oracle")]
/// The parts of a call's `context` the runtime uses: they fill the
/// profile's `timezone` and `locale` when it has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `context.timezone`, an IANA zone name as Segment's libraries send it.
    pub timezone: Option<String>,
    /// `context.locale`, a language tag such as `de-DE`.
    pub locale: Option<String>,
    /// `context.device.token`, the device's push token.
    pub device_token: Option<String>,
}

#[cfg(feature = "oracle")]
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
    /// `screen`: a mobile app's screen view, handled as a track of "Screen Viewed".
    Screen {
        /// The screen's name, when given.
        name: Option<String>,
        /// The screen's properties.
        properties: Map<String, Value>,
    },
    /// `group`: the customer belongs to a company or account; recorded,
    /// and applied as a track of "Group" only when the project declares it.
    Group {
        /// The group's id.
        group_id: Option<String>,
        /// The group's traits.
        traits: Map<String, Value>,
    },
}

#[cfg(feature = "oracle")]
impl Call {
    /// The wire name of the event this call amounts to, for track and page calls.
    pub fn event_name(&self) -> Option<&str> {
        match &self.kind {
            CallKind::Track { event, .. } => Some(event),
            CallKind::Page { .. } => Some(PAGE_EVENT),
            CallKind::Screen { .. } => Some(SCREEN_EVENT),
            CallKind::Group { .. } => Some(GROUP_EVENT),
            _ => None,
        }
    }
}

/// The event a `page` call becomes.
pub const PAGE_EVENT: &str = "Page Viewed";

/// The event a `screen` call becomes.
pub const SCREEN_EVENT: &str = "Screen Viewed";

/// The event a `group` call becomes when a project declares it.
pub const GROUP_EVENT: &str = "Group";

/// Why a line could not be used; written to the dead-letter file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong, for a person to read.
    pub reason: String,
}

impl Rejection {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
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

#[cfg(feature = "oracle")]
/// Reads one line of JSON as a Segment call.
pub fn parse_line(line: &str) -> Result<Call, Rejection> {
    let value: Value = serde_json::from_str(line).map_err(|e| malformed(&e))?;
    let Value::Object(mut obj) = value else {
        return Err(not_an_object(kind_of(&value)));
    };
    // The tree kept only the last of a repeated key: look again at the keys.
    if let Some(key) = first_repeated_key(line) {
        return Err(repeated(key));
    }
    let field = |key: &str| Field::of(obj.get(key));
    let envelope = Envelope {
        call_type: field("type"),
        user_id: field("userId"),
        anonymous_id: field("anonymousId"),
        message_id: field("messageId"),
        timestamp: field("timestamp"),
        original_timestamp: field("originalTimestamp"),
        sent_at: field("sentAt"),
        received_at: field("receivedAt"),
        event: field("event"),
        name: field("name"),
        previous_id: field("previousId"),
        group_id: field("groupId"),
        properties: field("properties"),
        traits: field("traits"),
        context: ContextText::of(obj.get("context")),
    };
    let checked = envelope.check()?.into_owned();
    let mut take = |key: &str| match obj.remove(key) {
        Some(Value::Object(m)) => m,
        // The checks let only an object, null or nothing through.
        _ => Map::new(),
    };
    let kind = match checked.kind {
        Kind::Track { event } => CallKind::Track {
            event: event.into_owned(),
            properties: take("properties"),
        },
        Kind::Page { name } => CallKind::Page {
            name: name.map(Cow::into_owned),
            properties: take("properties"),
        },
        Kind::Screen { name } => CallKind::Screen {
            name: name.map(Cow::into_owned),
            properties: take("properties"),
        },
        Kind::Group { group_id } => CallKind::Group {
            group_id: group_id.map(Cow::into_owned),
            traits: take("traits"),
        },
        Kind::Identify => CallKind::Identify {
            traits: take("traits"),
        },
        Kind::Alias { previous_id } => CallKind::Alias {
            previous_id: previous_id.into_owned(),
        },
    };
    Ok(Call {
        kind,
        user_id: checked.user_id.map(Cow::into_owned),
        anonymous_id: checked.anonymous_id.map(Cow::into_owned),
        timestamp: checked.timestamp,
        message_id: checked.message_id.map(Cow::into_owned),
        context: Context {
            timezone: checked.context.timezone.map(Cow::into_owned),
            locale: checked.context.locale.map(Cow::into_owned),
            device_token: checked.context.device_token.map(Cow::into_owned),
        },
    })
}

/// The envelope's keys (every top-level key the checks read), each with
/// its own bit, so a reader can notice one given twice.
pub(crate) fn envelope_bit(key: &str) -> u32 {
    match key {
        "type" => 1,
        "event" => 1 << 1,
        "userId" => 1 << 2,
        "anonymousId" => 1 << 3,
        "previousId" => 1 << 4,
        "groupId" => 1 << 5,
        "context" => 1 << 6,
        "messageId" => 1 << 7,
        "timestamp" => 1 << 8,
        "originalTimestamp" => 1 << 9,
        "sentAt" => 1 << 10,
        "receivedAt" => 1 << 11,
        "name" => 1 << 12,
        "properties" => 1 << 13,
        "traits" => 1 << 14,
        _ => 0,
    }
}

/// The envelope key of `bit`, for the reason of a repeated key.
pub(crate) fn envelope_key(bit: u32) -> &'static str {
    const KEYS: [&str; 15] = [
        "type",
        "event",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "context",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "name",
        "properties",
        "traits",
    ];
    KEYS.get(bit.trailing_zeros() as usize)
        .copied()
        .unwrap_or("?")
}

/// The reason for a call that gives an envelope key twice: readers that
/// keep the first and readers that keep the last would see two different
/// calls (one time to sort it by, another to apply it at), so it is neither.
pub(crate) fn repeated(key: &str) -> Rejection {
    Rejection::new(format!(
        "`{key}` is given twice: a call's envelope keys must each appear once"
    ))
}

#[cfg(feature = "oracle")]
/// The first envelope key a line (a valid JSON object) gives a second time.
fn first_repeated_key(line: &str) -> Option<&'static str> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<&'static str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // Read to the end: serde_json wants the whole object consumed.
            let (mut seen, mut first) = (0u32, None);
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let bit = envelope_bit(&key);
                if seen & bit != 0 && first.is_none() {
                    first = Some(envelope_key(bit));
                }
                seen |= bit;
                map.next_value::<IgnoredAny>()?;
            }
            Ok(first)
        }
    }
    serde_json::Deserializer::from_str(line)
        .deserialize_map(Keys)
        .ok()
        .flatten()
}

/// The reason for a line that is not JSON.
pub(crate) fn malformed(e: &serde_json::Error) -> Rejection {
    Rejection::new(format!(
        "malformed JSON at column {}: {}",
        e.column(),
        strip_position(&e.to_string())
    ))
}

/// The reason for a line that is JSON but not an object.
pub(crate) fn not_an_object(kind: &str) -> Rejection {
    Rejection::new(format!("expected a JSON object, found {kind}"))
}

/// serde_json appends "at line L column C"; the dead letter has its own line.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(feature = "oracle")]
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

/// One envelope field as the checks see it: strings and numbers in full,
/// anything else by kind. Both `parse_line` and the one-pass decoder
/// (`crate::ingest`) check envelopes through [`Envelope::check`], so they
/// accept the same calls and refuse the others with the same reasons.
#[derive(Clone, Debug, Default)]
pub(crate) enum Field<'a> {
    /// The key is not there.
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
    Number(serde_json::Number),
    /// A number as the sender wrote it (the one-pass decoder keeps ids so).
    Digits(Cow<'a, str>),
    Object,
    /// Any other value, by its kind as [`kind_of`] names it.
    Other(&'static str),
}

impl<'a> Field<'a> {
    #[cfg(feature = "oracle")]
    fn of(value: Option<&'a Value>) -> Field<'a> {
        match value {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => Field::Number(n.clone()),
            Some(Value::Object(_)) => Field::Object,
            Some(other) => Field::Other(kind_of(other)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Field::Absent | Field::Null => "null",
            Field::Str(_) => "a string",
            Field::Number(_) | Field::Digits(_) => "a number",
            Field::Object => "an object",
            Field::Other(kind) => kind,
        }
    }

    fn string(&self, key: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self {
            Field::Absent | Field::Null => Ok(None),
            Field::Str(s) => Ok(Some(s.clone())),
            other => Err(Rejection::new(format!(
                "`{key}` must be a string, found {}",
                other.kind()
            ))),
        }
    }

    /// Ids may arrive as numbers from some SDKs; they are kept as their text.
    fn id(&self, key: &str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self {
            Field::Number(n) => Ok(Some(Cow::Owned(n.to_string()))),
            Field::Digits(text) => Ok(Some(text.clone())),
            _ => Ok(self.string(key)?.filter(|s| !s.is_empty())),
        }
    }

    /// Properties and traits: an object, or nothing (null counts as nothing).
    fn object(&self, key: &str) -> Result<(), Rejection> {
        match self {
            Field::Absent | Field::Null | Field::Object => Ok(()),
            other => Err(Rejection::new(format!(
                "`{key}` must be an object, found {}",
                other.kind()
            ))),
        }
    }
}

/// The envelope fields of a call, one per key the checks read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Envelope<'a> {
    pub call_type: Field<'a>,
    pub user_id: Field<'a>,
    pub anonymous_id: Field<'a>,
    pub message_id: Field<'a>,
    pub timestamp: Field<'a>,
    pub original_timestamp: Field<'a>,
    pub sent_at: Field<'a>,
    pub received_at: Field<'a>,
    pub event: Field<'a>,
    pub name: Field<'a>,
    pub previous_id: Field<'a>,
    pub group_id: Field<'a>,
    pub properties: Field<'a>,
    pub traits: Field<'a>,
    pub context: ContextText<'a>,
}

/// `context.timezone`, `context.locale` and `context.device.token` when
/// they are strings; the rest
/// of `context` (and a `context` that is not an object) is not the
/// runtime's business and never refuses a call.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContextText<'a> {
    pub timezone: Option<Cow<'a, str>>,
    pub locale: Option<Cow<'a, str>>,
    pub device_token: Option<Cow<'a, str>>,
}

impl<'a> ContextText<'a> {
    #[cfg(feature = "oracle")]
    fn of(value: Option<&'a Value>) -> ContextText<'a> {
        let text = |value: Option<&'a Value>, key: &str| match value.and_then(|v| v.get(key)) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(Cow::Borrowed(s.as_str())),
            _ => None,
        };
        ContextText {
            timezone: text(value, "timezone"),
            locale: text(value, "locale"),
            device_token: text(value.and_then(|v| v.get("device")), "token"),
        }
    }

    #[cfg(feature = "oracle")]
    fn into_owned(self) -> ContextText<'static> {
        ContextText {
            timezone: self.timezone.map(|s| Cow::Owned(s.into_owned())),
            locale: self.locale.map(|s| Cow::Owned(s.into_owned())),
            device_token: self.device_token.map(|s| Cow::Owned(s.into_owned())),
        }
    }
}

/// A call whose envelope passed the checks; properties and traits are the caller's.
#[derive(Clone, Debug)]
pub(crate) struct Checked<'a> {
    pub kind: Kind<'a>,
    pub user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub message_id: Option<Cow<'a, str>>,
    pub timestamp: DateTime<Utc>,
    pub context: ContextText<'a>,
}

/// The kind of a checked call, with its kind's own envelope fields.
#[derive(Clone, Debug)]
pub(crate) enum Kind<'a> {
    Track { event: Cow<'a, str> },
    Page { name: Option<Cow<'a, str>> },
    Screen { name: Option<Cow<'a, str>> },
    Group { group_id: Option<Cow<'a, str>> },
    Identify,
    Alias { previous_id: Cow<'a, str> },
}

impl<'a> Checked<'a> {
    #[cfg(feature = "oracle")]
    fn into_owned(self) -> Checked<'static> {
        let own = |s: Cow<'a, str>| Cow::Owned(s.into_owned());
        Checked {
            kind: match self.kind {
                Kind::Track { event } => Kind::Track { event: own(event) },
                Kind::Page { name } => Kind::Page {
                    name: name.map(own),
                },
                Kind::Screen { name } => Kind::Screen {
                    name: name.map(own),
                },
                Kind::Group { group_id } => Kind::Group {
                    group_id: group_id.map(own),
                },
                Kind::Identify => Kind::Identify,
                Kind::Alias { previous_id } => Kind::Alias {
                    previous_id: own(previous_id),
                },
            },
            user_id: self.user_id.map(own),
            anonymous_id: self.anonymous_id.map(own),
            message_id: self.message_id.map(own),
            timestamp: self.timestamp,
            context: self.context.into_owned(),
        }
    }
}

impl<'a> Envelope<'a> {
    /// Checks the envelope, in a fixed order so that a call with several
    /// faults always gets the same reason.
    pub(crate) fn check(&self) -> Result<Checked<'a>, Rejection> {
        let call_type = self
            .call_type
            .string("type")?
            .ok_or_else(|| Rejection::new("missing `type`"))?;
        let user_id = self.user_id.id("userId")?;
        let anonymous_id = self.anonymous_id.id("anonymousId")?;
        let message_id = self.message_id.string("messageId")?;
        let timestamp = self.time()?;
        let kind = match &*call_type {
            "track" => {
                let event = self
                    .event
                    .string("event")?
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| Rejection::new("a track call needs a non-empty `event`"))?;
                self.properties.object("properties")?;
                Kind::Track { event }
            }
            "page" => {
                let name = self.name.string("name")?;
                self.properties.object("properties")?;
                Kind::Page { name }
            }
            "screen" => {
                let name = self.name.string("name")?;
                self.properties.object("properties")?;
                Kind::Screen { name }
            }
            "group" => {
                let group_id = self.group_id.id("groupId")?;
                self.traits.object("traits")?;
                Kind::Group { group_id }
            }
            "identify" => {
                self.traits.object("traits")?;
                Kind::Identify
            }
            "alias" => {
                let previous_id = self
                    .previous_id
                    .id("previousId")?
                    .ok_or_else(|| Rejection::new("an alias call needs `previousId`"))?;
                if user_id.is_none() {
                    return Err(Rejection::new("an alias call needs `userId`"));
                }
                Kind::Alias { previous_id }
            }
            other => {
                return Err(Rejection::new(format!(
                    "unsupported call type `{other}`: expected track, identify, alias, page, screen or group"
                )));
            }
        };
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(Rejection::new(
                "the call names no customer: give `userId` or `anonymousId`",
            ));
        }
        Ok(Checked {
            kind,
            user_id,
            anonymous_id,
            message_id,
            timestamp,
            context: self.context.clone(),
        })
    }

    /// The call's time: `timestamp`, else `originalTimestamp` (as analytics.js
    /// sends it), corrected for the sender's clock as Segment does (see
    /// [`corrected_time`]) when the call says when it was received.
    fn time(&self) -> Result<DateTime<Utc>, Rejection> {
        let timestamp = self.timestamp.string("timestamp")?;
        let original = self.original_timestamp.string("originalTimestamp")?;
        let (key, text) = match (&timestamp, &original) {
            (Some(t), _) => ("timestamp", t),
            (None, Some(t)) => ("originalTimestamp", t),
            (None, None) => return Err(Rejection::new("missing `timestamp`")),
        };
        let parse = |key: &str, text: &str| {
            rfc3339(text).map_err(|e| {
                Rejection::new(format!("`{key}` is not an RFC 3339 time ({text:?}): {e}"))
            })
        };
        let at = parse(key, text)?;
        let Some(received) = self.received_at.string("receivedAt")? else {
            return Ok(at);
        };
        let received = parse("receivedAt", &received)?;
        let sent = match self.sent_at.string("sentAt")? {
            Some(s) => Some(parse("sentAt", &s)?),
            None => None,
        };
        // With both times given, `timestamp` is Segment's corrected one.
        let corrected = timestamp.is_some() && original.is_some();
        Ok(corrected_time(at, sent, received, corrected))
    }
}

/// A call's time on the receiver's clock, as Segment computes it: a device
/// whose clock is off by some amount stamps both `timestamp` and `sentAt`
/// with that error, so `receivedAt - (sentAt - timestamp)` removes it. The
/// result is never later than the receipt: a call cannot have happened
/// after it arrived, and a clock far ahead must not fire anyone's timers.
/// `corrected` says the time was already corrected upstream (a Segment
/// export carries `originalTimestamp` beside the corrected `timestamp`).
pub fn corrected_time(
    at: DateTime<Utc>,
    sent: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
    corrected: bool,
) -> DateTime<Utc> {
    skew_corrected(at, sent, received, corrected).min(received)
}

/// Whether [`corrected_time`] clamps this call to its receipt: even after
/// the sender's clock is corrected for, it claims to have happened after
/// it arrived.
pub fn clamped(
    at: DateTime<Utc>,
    sent: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
    corrected: bool,
) -> bool {
    skew_corrected(at, sent, received, corrected) > received
}

/// The call's time corrected for its sender's clock, before the clamp.
fn skew_corrected(
    at: DateTime<Utc>,
    sent: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
    corrected: bool,
) -> DateTime<Utc> {
    match sent {
        Some(sent) if !corrected => received
            .checked_sub_signed(sent.signed_duration_since(at))
            .unwrap_or(at),
        _ => at,
    }
}

/// An RFC 3339 instant, as `DateTime::parse_from_rfc3339` reads it.
pub(crate) fn rfc3339(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match rfc3339_fast(text) {
        Some(t) => Ok(t),
        None => DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)),
    }
}

/// The usual shape of an RFC 3339 instant, `2026-01-05T10:00:00Z`, with an
/// optional fraction of one to nine digits and `Z` or a `±HH:MM` offset,
/// read without chrono's general parser (which costs more than the rest of
/// ordering a line). Anything else, including what chrono also accepts
/// (lower case, a space for the `T`, leap seconds), gives `None`, and
/// chrono decides; so every instant read here is the one chrono reads.
fn rfc3339_fast(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(from..from + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !punctuation.iter().all(|&(i, c)| b.get(i) == Some(&c)) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut i = 19;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n = i - start;
        if !(1..=9).contains(&n) {
            return None;
        }
        nanos = digits(start, n)? * 10u32.pow(9 - n as u32);
    }
    let offset = match *b.get(i)? {
        b'Z' if b.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && b.get(i + 3) == Some(&b':') => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let local = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_opt(hour, minute, second)?;
    DateTime::from_timestamp(local.and_utc().timestamp() - offset, nanos)
}

/// Just the time of a call, read without building the rest of it: the
/// replay orders lines by this before parsing each one in full, once.
/// Milliseconds since the epoch; `None` for a line `parse_line` would
/// refuse for its time or its JSON.
pub fn time_of(line: &str) -> Option<i64> {
    time_and_clamp_of(line).map(|(t, _)| t)
}

/// [`time_of`], and whether the time was clamped to the call's receipt
/// (see [`clamped`]), for hosts that count such calls.
pub fn time_and_clamp_of(line: &str) -> Option<(i64, bool)> {
    if let Some(t) = time_of_fast(line) {
        return Some((t, false));
    }
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        timestamp: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default, rename = "originalTimestamp")]
        original: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default, rename = "sentAt")]
        sent: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default, rename = "receivedAt")]
        received: Option<std::borrow::Cow<'a, str>>,
    }
    let e: Envelope = serde_json::from_str(line).ok()?;
    let corrected = e.timestamp.is_some() && e.original.is_some();
    let text = e.timestamp.or(e.original)?;
    let at = rfc3339(&text).ok()?;
    let Some(received) = e.received else {
        return Some((at.timestamp_millis(), false));
    };
    let received = rfc3339(&received).ok()?;
    let sent = match e.sent {
        Some(s) => Some(rfc3339(&s).ok()?),
        None => None,
    };
    Some((
        corrected_time(at, sent, received, corrected).timestamp_millis(),
        clamped(at, sent, received, corrected),
    ))
}

/// The common case without a JSON parser: the line names `"timestamp"` exactly
/// once, as a key followed by a plain string, and has no `originalTimestamp`.
/// Then that key is the envelope's (a nested one would leave the call without
/// a time, which the full parse refuses anyway). Anything else: `None`, and
/// the caller parses properly.
fn time_of_fast(line: &str) -> Option<i64> {
    // One scan for the tail the two keys share, instead of one per key:
    // exactly one hit, and that one `"timestamp"`.
    static TAIL: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new("imestamp\""));
    static RECEIVED: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new("\"receivedAt\""));
    if RECEIVED.find(line.as_bytes()).is_some() {
        return None; // the time is corrected against the receipt: parse properly
    }
    let mut hits = TAIL.find_iter(line.as_bytes());
    let at = hits.next()?.checked_sub(2)?;
    if hits.next().is_some() || line.get(at..at + 2) != Some("\"t") {
        return None;
    }
    let rest = &line[at + "\"timestamp\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let text = &rest[..end];
    if text.contains('\\') {
        return None;
    }
    rfc3339(text).ok().map(|t| t.timestamp_millis())
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
                r#"{"type":"screem","userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
                "unsupported call type `screem`",
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
    fn screens_groups_and_the_context_are_read() {
        let screen = parse_line(
            r#"{"type":"screen","userId":"u1","name":"Cart","timestamp":"2026-11-23T10:00:00Z","context":{"timezone":"Europe/Paris","locale":"fr-FR","ip":"1.2.3.4","device":{"type":"ios","token":"fcm-tok-1"}}}"#,
        )
        .unwrap();
        assert_eq!(screen.event_name(), Some(SCREEN_EVENT));
        let CallKind::Screen { name, .. } = &screen.kind else {
            panic!("not a screen: {screen:?}")
        };
        assert_eq!(name.as_deref(), Some("Cart"));
        assert_eq!(
            screen.context,
            Context {
                timezone: Some("Europe/Paris".into()),
                locale: Some("fr-FR".into()),
                device_token: Some("fcm-tok-1".into()),
            }
        );
        let group = parse_line(
            r#"{"type":"group","userId":"u1","groupId":12,"timestamp":"2026-11-23T10:00:00Z","traits":{"name":"Acme"},"context":"not an object"}"#,
        )
        .unwrap();
        let CallKind::Group { group_id, traits } = &group.kind else {
            panic!("not a group: {group:?}")
        };
        assert_eq!(group_id.as_deref(), Some("12"));
        assert_eq!(traits["name"], "Acme");
        assert_eq!(group.context, Context::default());
        let e = parse_line(
            r#"{"type":"group","userId":"u1","timestamp":"2026-11-23T10:00:00Z","traits":[1]}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("`traits` must be an object"), "{e}");
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        #[test]
        fn fast_instants_are_chronos_instants(
            text in "[0-9]{4}-[0-1][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,11})?(Z|z|[+-][0-2][0-9]:[0-6][0-9]|[+-][0-9]{4})?"
        ) {
            let chrono = DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).ok();
            if let Some(fast) = rfc3339_fast(&text) {
                proptest::prop_assert_eq!(Some(fast), chrono, "{}", text);
            }
            proptest::prop_assert_eq!(rfc3339(&text).ok(), chrono);
        }
    }

    #[test]
    fn fast_instants_cover_the_usual_shapes() {
        for (text, secs, nanos) in [
            ("2026-01-05T10:00:00Z", 1_767_607_200, 0),
            ("2026-01-05T10:00:00.5Z", 1_767_607_200, 500_000_000),
            (
                "2026-01-05T10:00:00.123456789+01:00",
                1_767_603_600,
                123_456_789,
            ),
            ("2026-01-05T10:00:00-05:30", 1_767_627_000, 0),
            ("2024-02-29T23:59:59Z", 1_709_251_199, 0),
            ("1969-12-31T23:59:59Z", -1, 0),
        ] {
            let t = rfc3339_fast(text).expect(text);
            assert_eq!(
                (t.timestamp(), t.timestamp_subsec_nanos()),
                (secs, nanos),
                "{text}"
            );
            assert_eq!(
                Ok(t),
                DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
            );
        }
        for text in [
            "2026-02-29T10:00:00Z",
            "2026-01-05t10:00:00Z",
            "2026-01-05 10:00:00Z",
            "2026-01-05T10:00:60Z",
            "2026-01-05T10:00:00",
            "2026-01-05T10:00:00.Z",
            "2026-01-05T10:00:00.1234567890Z",
            "2026-01-05T10:00:00+24:00",
            "2026-01-05T10:00:00Zjunk",
            "2026-1-05T10:00:00Z",
            "٢٠٢٦-01-05T10:00:00Z",
        ] {
            assert_eq!(rfc3339_fast(text), None, "{text}");
        }
    }

    #[test]
    fn an_envelope_key_given_twice_is_refused() {
        for (line, key) in [
            (
                r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","timestamp":"9999-12-31T23:59:59Z"}"#,
                "timestamp",
            ),
            (
                r#"{"type":"identify","userId":"victim","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
                "userId",
            ),
            (
                r#"{"type":"track","event":"A","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":{},"context":{"timezone":"UTC"}}"#,
                "context",
            ),
        ] {
            let err = parse_line(line).expect_err(line);
            assert_eq!(
                err.reason,
                format!("`{key}` is given twice: a call's envelope keys must each appear once")
            );
            // Sorted by neither time: the line keeps its place in a replay.
            if key == "timestamp" {
                assert_eq!(time_of(line), None);
            }
        }
        // Keys the envelope does not read, and keys nested deeper, may repeat.
        parse_line(r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","x":1,"x":2,"traits":{"a":1,"a":2}}"#).unwrap();
    }

    #[test]
    fn time_of_reads_only_the_envelope_time() {
        let line = r#"{"type":"track","event":"X","userId":"u","timestamp":"2026-01-05T10:00:00Z","properties":{"timestamp":"nope"}}"#;
        assert_eq!(time_of(line), Some(1_767_607_200_000));
        let original =
            r#"{"type":"page","userId":"u","originalTimestamp":"2026-01-05T10:00:00+01:00"}"#;
        assert_eq!(time_of(original), Some(1_767_603_600_000));
        assert_eq!(time_of("{broken"), None);
        assert_eq!(time_of(r#"{"timestamp":"yesterday"}"#), None);
        // The fast path and the parser agree, and the fast path steps aside
        // when the key could be ambiguous.
        for line in [
            r#"{"type":"track","timestamp" : "2026-01-05T10:00:00Z","userId":"u"}"#,
            r#"{"event":"timestamp","timestamp":"2026-01-05T10:00:00Z"}"#,
            r#"{"properties":{"timestamp":"2020-01-01T00:00:00Z"},"timestamp":"2026-01-05T10:00:00Z"}"#,
        ] {
            assert_eq!(time_of(line), Some(1_767_607_200_000), "{line}");
        }
        assert_eq!(
            time_of_fast(r#"{"event":"timestamp","timestamp":"2026-01-05T10:00:00Z"}"#),
            None
        );
        for line in [
            r#"{"timestamp":"2026-01-05T10:00:00Z","originalTimestamp":"2020-01-01T00:00:00Z"}"#,
            r#"{"originalTimestamp":"2026-01-05T10:00:00Z"}"#,
            r#"{"xtimestamp":"2026-01-05T10:00:00Z"}"#,
            r#"{"timestamp":"2026-01-05T10:00:00\u005a"}"#,
            r#"{"timestamp":5}"#,
            r#"imestamp""#,
        ] {
            assert_eq!(time_of_fast(line), None, "{line}");
        }
    }

    #[test]
    fn a_time_after_its_receipt_is_clamped_and_said_to_be() {
        // A clock a day ahead with no `sentAt` to correct it: clamped.
        let ahead = r#"{"type":"track","timestamp":"2026-01-06T10:00:00Z","receivedAt":"2026-01-05T10:00:00Z"}"#;
        assert_eq!(time_and_clamp_of(ahead), Some((1_767_607_200_000, true)));
        // The same clock with `sentAt`: corrected, so nothing is clamped.
        let skewed = r#"{"type":"track","timestamp":"2026-01-06T10:00:00Z","sentAt":"2026-01-06T10:00:01Z","receivedAt":"2026-01-05T10:00:01Z"}"#;
        assert_eq!(time_and_clamp_of(skewed), Some((1_767_607_200_000, false)));
        // Before its receipt, or with no receipt at all: as it says.
        let plain = r#"{"type":"track","timestamp":"2026-01-05T10:00:00Z"}"#;
        assert_eq!(time_and_clamp_of(plain), Some((1_767_607_200_000, false)));
    }
}
