//! Request bodies into call lines.
//!
//! Each call is kept as its sender wrote it, only made compact, so that an
//! amount keeps every digit (a parsed JSON number is a binary float) and a
//! body is not built into a tree only to be written out again.

use std::borrow::Cow;

use nudge_runtime::segment;
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

/// The calls of a body as JSON lines: one call for a single-call endpoint
/// (`kind` is its type), else the body's `batch`. A call without a time is
/// stamped with `now`, as Segment stamps calls it receives; a call longer
/// than `max_call` bytes refuses the body. A single call that `nudge run`
/// would refuse refuses the body; a batch item is judged on its own: it is
/// passed on all the same, and the engine writes it to the dead letters
/// (and counts it), so its valid neighbours are not lost with it.
pub(super) fn to_lines(
    kind: Option<&str>,
    text: &str,
    now: &str,
    max_call: usize,
) -> Result<Vec<String>, Refusal> {
    let bad = |msg: &str, index: Option<usize>| Refusal::Bad(msg.to_string(), index);
    let body: &RawValue = match serde_json::from_str(text) {
        Ok(body) => body,
        // The reader of `nudge run` words JSON errors the same way.
        Err(_) => {
            let reason = segment::parse_line(text)
                .err()
                .map_or_else(|| "malformed JSON".to_string(), |r| r.reason);
            return Err(Refusal::Bad(reason, None));
        }
    };
    if !body.get().starts_with('{') {
        return Err(bad("expected a JSON object", None));
    }
    let calls: Vec<&RawValue> = match kind {
        Some(_) => vec![body],
        None => {
            let batch = || bad("expected `batch`: an array of calls", None);
            let BatchBody { batch: items } =
                serde_json::from_str(body.get()).map_err(|_| batch())?;
            match items {
                Some(items) if items.get().starts_with('[') => {
                    serde_json::from_str(items.get()).map_err(|_| batch())?
                }
                _ => return Err(batch()),
            }
        }
    };
    let mut lines = Vec::with_capacity(calls.len());
    for (i, call) in calls.into_iter().enumerate() {
        let mut line = compact(call.get());
        if line.starts_with('{') {
            // Added last: of repeated keys the last counts, as in a map.
            if let Some(kind) = kind {
                append(&mut line, "type", kind);
            }
            if !has_time(&line) {
                append(&mut line, "timestamp", now);
            }
        }
        if line.len() > max_call {
            return Err(Refusal::TooLarge(i));
        }
        if kind.is_some()
            && let Err(r) = segment::parse_line(&line)
        {
            return Err(Refusal::Bad(r.reason, Some(i)));
        }
        lines.push(line);
    }
    Ok(lines)
}

/// A batch body: only `batch` is read.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
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

/// Whether the object `call` has a `timestamp` or `originalTimestamp` key.
fn has_time(call: &str) -> bool {
    serde_json::Deserializer::from_str(call)
        .deserialize_map(TimeKeys)
        .unwrap_or(false)
}

/// Looks through an object's keys for a time.
struct TimeKeys;

impl<'de> Visitor<'de> for TimeKeys {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(is_time) = map.next_key_seed(IsTime)? {
            found |= is_time;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}

/// Whether a key names a time.
struct IsTime;

impl<'de> DeserializeSeed<'de> for IsTime {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        let key = Cow::<'de, str>::deserialize(d)?;
        Ok(key == "timestamp" || key == "originalTimestamp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-05T10:00:00.000Z";

    fn lines(kind: Option<&str>, body: &str) -> Result<Vec<String>, Refusal> {
        to_lines(kind, body, NOW, 32 * 1024)
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
                r#"{{"type":"track","userId":"u1","type":"identify","timestamp":"{NOW}"}}"#
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
            r#"{{"batch":[{{"type":"identify","userId":"u1","traits":{{"x":"{}"}}}}]}}"#,
            "y".repeat(40_000)
        );
        assert_eq!(lines(None, &big), Err(Refusal::TooLarge(0)));
    }

    #[test]
    fn a_batch_passes_on_every_item_for_the_engine_to_judge() {
        let body = r#"{"batch":[{"type":"screen","userId":"u1","name":"Home"},{"type":"track","userId":"u1"},5,{"type":"identify","userId":"u1"}]}"#;
        let got = lines(None, body).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with(r#"{"type":"screen","userId":"u1","name":"Home""#));
        // The bad items reach the engine as written, and it refuses them
        // alone, with `nudge run`'s reasons.
        assert!(segment::parse_line(&got[1]).is_err());
        assert_eq!(got[2], "5");
        assert!(segment::parse_line(&got[3]).is_ok());
    }
}
