//! Request bodies into call lines.
//!
//! Each call is kept as its sender wrote it, only made compact, so that an
//! amount keeps every digit (a parsed JSON number is a binary float) and a
//! body is not built into a tree only to be written out again.

use std::borrow::Cow;

use nudge_runtime::ingest;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body was refused.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// Not a usable body or call: the reason, and the call's index in a batch.
    Bad(String, Option<usize>),
    /// The call at this index is larger than the limit.
    TooLarge(usize),
}

/// The calls of a body, and the batch items too large to be calls.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Lines {
    /// Calls as JSON lines, in order.
    pub calls: Vec<String>,
    /// Batch items over the size limit: their index in the batch and the
    /// item as a line, for the dead letters.
    pub too_large: Vec<(usize, String)>,
}

/// The calls of a body as JSON lines: one call for a single-call endpoint
/// (`kind` is its type), else the body's `batch`. A call without a time is
/// stamped with `now`, as Segment stamps calls it receives; with `receipt`,
/// every call gets `receivedAt: now` (and the batch's `sentAt` when it has
/// none), which the decoder corrects its time against. A call longer than
/// `max_call` bytes refuses a single-call body; a batch item that long is
/// set apart in [`Lines::too_large`]. A single call that `nudge run` would
/// refuse refuses the body; a batch item is judged on its own: it is passed
/// on all the same, and the engine writes it to the dead letters (and counts
/// it), so its valid neighbours are not lost with it.
pub(super) fn to_lines(
    kind: Option<&str>,
    text: &str,
    now: &str,
    receipt: bool,
    max_call: usize,
) -> Result<Lines, Refusal> {
    let bad = |msg: &str, index: Option<usize>| Refusal::Bad(msg.to_string(), index);
    let body: &RawValue = match serde_json::from_str(text) {
        Ok(body) => body,
        // The reader of `nudge run` words JSON errors the same way.
        Err(_) => {
            let reason = ingest::check_line(text)
                .err()
                .map_or_else(|| "malformed JSON".to_string(), |r| r.reason);
            return Err(Refusal::Bad(reason, None));
        }
    };
    if !body.get().starts_with('{') {
        return Err(bad("expected a JSON object", None));
    }
    let (calls, batch_sent): (Vec<&RawValue>, _) = match kind {
        Some(_) => (vec![body], None),
        None => {
            let batch = || bad("expected `batch`: an array of calls", None);
            let BatchBody {
                batch: items,
                sent_at,
            } = serde_json::from_str(body.get()).map_err(|_| batch())?;
            match items {
                Some(items) if items.get().starts_with('[') => (
                    serde_json::from_str(items.get()).map_err(|_| batch())?,
                    sent_at.filter(|s| is_plain(s)),
                ),
                _ => return Err(batch()),
            }
        }
    };
    let mut lines = Lines {
        calls: Vec::with_capacity(calls.len()),
        too_large: Vec::new(),
    };
    for (i, call) in calls.into_iter().enumerate() {
        let mut line = compact(call.get());
        if line.starts_with('{') {
            let keys = keys_of(&line);
            // Keys the server sets are taken out first, so that no call
            // reaches the engine with a key twice (it would refuse it): the
            // endpoint's `type` wins over the body's, and the receipt is the
            // server's, never the client's.
            let ours = [
                (kind.is_some() && keys.call_type).then_some("type"),
                (receipt && keys.received_at).then_some("receivedAt"),
            ];
            if ours.iter().any(Option::is_some) {
                line = without(&line, &ours);
            }
            if let Some(kind) = kind {
                append(&mut line, "type", kind);
            }
            if !keys.time {
                append(&mut line, "timestamp", now);
            }
            if receipt {
                if !keys.sent_at
                    && let Some(sent) = &batch_sent
                {
                    append(&mut line, "sentAt", sent);
                }
                // The receipt, as Segment stamps it: the call's time is
                // corrected against it and never later than it.
                append(&mut line, "receivedAt", now);
            }
        }
        if line.len() > max_call {
            if kind.is_some() {
                return Err(Refusal::TooLarge(i));
            }
            lines.too_large.push((i, line));
            continue;
        }
        if kind.is_some()
            && let Err(r) = ingest::check_line(&line)
        {
            return Err(Refusal::Bad(r.reason, Some(i)));
        }
        lines.calls.push(line);
    }
    Ok(lines)
}

/// A batch body: only `batch` and `sentAt` are read.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    /// When the client sent the batch, on its own clock; calls without a
    /// `sentAt` of their own take it, for the clock-skew correction.
    #[serde(borrow, rename = "sentAt", default)]
    sent_at: Option<Cow<'a, str>>,
}

/// `json` (valid JSON) without the whitespace between its tokens, so that
/// it fits on one line.
fn compact(json: &str) -> String {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
        }
    }
    // Only ASCII bytes were left out, so the rest is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| json.to_string())
}

/// Adds `"key":"value"` at the end of the object `call` (compact, so it
/// ends with `}`). `value` needs no escaping: a call type or a time.
fn append(call: &mut String, key: &str, value: &str) {
    call.pop();
    if call.len() > 1 {
        call.push(',');
    }
    call.push_str(&format!("\"{key}\":\"{value}\"}}"));
}

/// Whether a text can be written into a JSON string as it is.
fn is_plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// Which of the keys the server may add an object has.
#[derive(Default)]
struct TimeKeys {
    /// `timestamp` or `originalTimestamp`.
    time: bool,
    /// `sentAt`.
    sent_at: bool,
    /// `type`.
    call_type: bool,
    /// `receivedAt`.
    received_at: bool,
}

/// The compact object `call` without any of the keys in `drop`; the other
/// entries keep their order and their text.
fn without(call: &str, drop: &[Option<&str>]) -> String {
    use serde::de::Deserializer as _;
    struct Entries<'a>(&'a [Option<&'a str>]);
    impl<'de> Visitor<'de> for Entries<'_> {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
            let mut out = String::from("{");
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let value: &'de RawValue = map.next_value()?;
                if self.0.contains(&Some(&*key)) {
                    continue;
                }
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(&key).map_err(serde::de::Error::custom)?);
                out.push(':');
                out.push_str(value.get());
            }
            out.push('}');
            Ok(out)
        }
    }
    serde_json::Deserializer::from_str(call)
        .deserialize_map(Entries(drop))
        .unwrap_or_else(|_| call.to_string())
}

/// The time keys of the object `call`.
fn keys_of(call: &str) -> TimeKeys {
    serde_json::Deserializer::from_str(call)
        .deserialize_map(TimeKeysVisitor)
        .unwrap_or_default()
}

/// Looks through an object's keys for times.
struct TimeKeysVisitor;

impl<'de> Visitor<'de> for TimeKeysVisitor {
    type Value = TimeKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TimeKeys, A::Error> {
        let mut found = TimeKeys::default();
        while let Some(key) = map.next_key_seed(KeyName)? {
            match key {
                Some(Key::Time) => found.time = true,
                Some(Key::SentAt) => found.sent_at = true,
                Some(Key::Type) => found.call_type = true,
                Some(Key::ReceivedAt) => found.received_at = true,
                None => {}
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}

/// A key [`TimeKeysVisitor`] looks for.
enum Key {
    Time,
    SentAt,
    Type,
    ReceivedAt,
}

/// Reads a key as one of the time keys, or `None`.
struct KeyName;

impl<'de> DeserializeSeed<'de> for KeyName {
    type Value = Option<Key>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Key>, D::Error> {
        let key = Cow::<'de, str>::deserialize(d)?;
        Ok(match &*key {
            "timestamp" | "originalTimestamp" => Some(Key::Time),
            "sentAt" => Some(Key::SentAt),
            "type" => Some(Key::Type),
            "receivedAt" => Some(Key::ReceivedAt),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-05T10:00:00.000Z";

    fn lines(kind: Option<&str>, body: &str) -> Result<Vec<String>, Refusal> {
        to_lines(kind, body, NOW, false, 32 * 1024).map(|l| l.calls)
    }

    #[test]
    fn a_received_call_is_stamped_with_its_receipt_and_the_batch_sent_at() {
        let body = r#"{"sentAt":"2026-01-05T10:00:05.000Z","batch":[
            {"type":"track","event":"A","userId":"u","timestamp":"2026-01-05T10:00:04Z"},
            {"type":"track","event":"B","userId":"u","timestamp":"2026-01-05T09:00:00Z","sentAt":"2026-01-05T09:00:01Z"}
        ]}"#;
        assert_eq!(
            to_lines(None, body, NOW, true, 32 * 1024).unwrap().calls,
            [
                format!(
                    r#"{{"type":"track","event":"A","userId":"u","timestamp":"2026-01-05T10:00:04Z","sentAt":"2026-01-05T10:00:05.000Z","receivedAt":"{NOW}"}}"#
                ),
                format!(
                    r#"{{"type":"track","event":"B","userId":"u","timestamp":"2026-01-05T09:00:00Z","sentAt":"2026-01-05T09:00:01Z","receivedAt":"{NOW}"}}"#
                ),
            ]
        );
    }

    #[test]
    fn calls_keep_their_digits_and_lose_their_line_breaks() {
        let body = "{\n  \"batch\": [\n    {\"type\": \"track\", \"event\": \"Order Completed\",\n     \"userId\": \"u 1\", \"timestamp\": \"2026-01-05T10:00:00Z\",\n     \"properties\": {\"total\": 12345678901234567.89, \"note\": \"a \\\"b\\\"\\n c\"}}\n  ]\n}";
        assert_eq!(
            lines(None, body).unwrap(),
            [
                r#"{"type":"track","event":"Order Completed","userId":"u 1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":12345678901234567.89,"note":"a \"b\"\n c"}}"#
            ]
        );
    }

    #[test]
    fn the_endpoint_sets_the_type_and_a_missing_time_is_stamped() {
        assert_eq!(
            lines(Some("identify"), r#"{"type":"track","userId":"u1"}"#).unwrap(),
            [format!(
                r#"{{"userId":"u1","type":"identify","timestamp":"{NOW}"}}"#
            )]
        );
        assert_eq!(
            lines(
                Some("page"),
                r#"{"userId":"u1","originalTimestamp":"2026-01-05T09:00:00Z"}"#
            )
            .unwrap(),
            [r#"{"userId":"u1","originalTimestamp":"2026-01-05T09:00:00Z","type":"page"}"#]
        );
        // A time nested in properties is not the call's.
        let body = r#"{"batch":[{"type":"identify","userId":"u1","traits":{"timestamp":"x"}}]}"#;
        assert!(lines(None, body).unwrap()[0].ends_with(&format!(r#","timestamp":"{NOW}"}}"#)));
    }

    #[test]
    fn keys_the_server_sets_are_never_given_twice() {
        // A client's own receipt is replaced by the server's, wherever it is.
        let body = r#"{"batch":[{"type":"identify","receivedAt":"9999-12-31T23:59:59Z","userId":"u\"1","timestamp":"2026-01-05T09:00:00Z"}]}"#;
        let got = to_lines(None, body, NOW, true, 32 * 1024).unwrap().calls;
        assert_eq!(
            got,
            [format!(
                r#"{{"type":"identify","userId":"u\"1","timestamp":"2026-01-05T09:00:00Z","receivedAt":"{NOW}"}}"#
            )]
        );
        assert!(ingest::check_line(&got[0]).is_ok());
        // A duplicate the client wrote itself is the client's: refused.
        let twice = r#"{"userId":"u1","timestamp":"2026-01-05T09:00:00Z","timestamp":"9999-12-31T23:59:59Z"}"#;
        let Err(Refusal::Bad(reason, Some(0))) = lines(Some("identify"), twice) else {
            panic!("a call with two timestamps is refused");
        };
        assert!(reason.contains("`timestamp` is given twice"), "{reason}");
        // In a batch, only that item is refused, by the engine.
        let batch = format!(
            r#"{{"batch":[{}]}}"#,
            twice.replace('{', r#"{"type":"identify","#)
        );
        let got = lines(None, &batch).unwrap();
        assert!(ingest::check_line(&got[0]).is_err());
    }

    #[test]
    fn bad_bodies_are_refused_with_the_index_of_the_call() {
        let bad = |msg: &str, i| Err(Refusal::Bad(msg.to_string(), i));
        assert_eq!(lines(None, "[1]"), bad("expected a JSON object", None));
        let no_batch = "expected `batch`: an array of calls";
        assert_eq!(lines(None, "{}"), bad(no_batch, None));
        assert_eq!(lines(None, r#"{"batch":{}}"#), bad(no_batch, None));
        assert_eq!(lines(None, r#"{"batch":null}"#), bad(no_batch, None));
        assert_eq!(lines(None, r#"{"batch":[]}"#), Ok(Vec::new()));
        let Err(Refusal::Bad(reason, None)) = lines(None, r#"{"batch":[}"#) else {
            panic!("malformed JSON is refused");
        };
        assert!(
            reason.starts_with("malformed JSON at column 11"),
            "{reason}"
        );
        let Err(Refusal::Bad(reason, Some(0))) = lines(Some("track"), r#"{"userId":"u1"}"#) else {
            panic!("a single call nudge run would refuse is refused");
        };
        assert!(reason.contains("event"), "{reason}");
        let big = format!(
            r#"{{"type":"identify","userId":"u1","traits":{{"x":"{}"}}}}"#,
            "y".repeat(40_000)
        );
        assert_eq!(lines(Some("identify"), &big), Err(Refusal::TooLarge(0)));
        // In a batch, only the item is set apart; its neighbours are calls.
        let batch = format!(
            r#"{{"batch":[{{"type":"identify","userId":"u0"}},{big},{{"type":"identify","userId":"u2"}}]}}"#
        );
        let got = to_lines(None, &batch, NOW, false, 32 * 1024).unwrap();
        assert_eq!(got.calls.len(), 2, "{:?}", got.calls);
        assert!(got.calls[1].contains(r#""userId":"u2""#));
        assert_eq!(got.too_large.len(), 1);
        assert_eq!(got.too_large[0].0, 1);
        assert!(
            got.too_large[0]
                .1
                .starts_with(r#"{"type":"identify","userId":"u1""#)
        );
    }

    #[test]
    fn a_batch_passes_on_every_item_for_the_engine_to_judge() {
        let body = r#"{"batch":[{"type":"screen","userId":"u1","name":"Home"},{"type":"track","userId":"u1"},5,{"type":"identify","userId":"u1"}]}"#;
        let got = lines(None, body).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with(r#"{"type":"screen","userId":"u1","name":"Home""#));
        // The bad items reach the engine as written, and it refuses them
        // alone, with `nudge run`'s reasons.
        assert!(ingest::check_line(&got[1]).is_err());
        assert_eq!(got[2], "5");
        assert!(ingest::check_line(&got[3]).is_ok());
    }
}
