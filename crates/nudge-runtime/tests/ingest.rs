//! The decoder every host uses (`ingest`) against the tree reader kept as
//! its oracle (`segment::parse_line`, then the engine's decoding with
//! `decode`, under the `oracle` feature): the
//! same typed calls and the same refusals, word for word, on the example
//! events, on generated streams with and without bad lines, on hand-made
//! faults and on random damage to good lines.

use std::collections::HashMap;

use nudge_bytecode::{Bundle, Value};
use nudge_runtime::decode;
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::identity::Names;
use nudge_runtime::ingest::{self, Decoded, Note, Notes, TypedCall};
use nudge_runtime::segment::{self, CallKind, GROUP_EVENT, PAGE_EVENT, SCREEN_EVENT};
use nudge_test_support::{example_bundle, example_events, example_names};
use proptest::prelude::*;

fn generated(events: u64, bad_rate: f64, seed: u64) -> String {
    let mut config = nudge_gen::GenConfig::new(events);
    config.bad_rate = bad_rate;
    config.seed = seed;
    let mut out = Vec::new();
    nudge_gen::generate(&config, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Event schemas by wire name, as the engine finds them.
fn by_wire(bundle: &Bundle) -> HashMap<String, u32> {
    bundle
        .schemas
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.wire.clone().map(|w| (w, i as u32)))
        .collect()
}

/// What the tree path makes of a line: `parse_line`, then the decoding
/// `Engine::apply` does before anything else (same steps, same messages).
fn tree(bundle: &Bundle, by_wire: &HashMap<String, u32>, line: &str) -> String {
    let call = match segment::parse_line(line) {
        Ok(call) => call,
        Err(r) => return format!("bad: {}", r.reason),
    };
    let mut dropped = Vec::new();
    let mut event = None;
    let mut note = Note::Plain;
    let named =
        |props: &serde_json::Map<String, serde_json::Value>, key: &str, text: &Option<String>| {
            let mut props = props.clone();
            if let Some(n) = text {
                props
                    .entry(key)
                    .or_insert_with(|| serde_json::Value::String(n.clone()));
            }
            props
        };
    let track = match &call.kind {
        CallKind::Track { event, properties } => Some((event.as_str(), properties.clone())),
        CallKind::Page { name, properties } => Some((PAGE_EVENT, named(properties, "name", name))),
        CallKind::Screen { name, properties } => {
            Some((SCREEN_EVENT, named(properties, "name", name)))
        }
        CallKind::Group { group_id, traits } => {
            note = Note::Group;
            Some((GROUP_EVENT, named(traits, "group_id", group_id)))
        }
        _ => None,
    };
    if let Some((wire, props)) = track {
        match by_wire.get(wire) {
            Some(&schema) => {
                let v = decode::record(bundle, schema, &props, "properties", &mut dropped);
                event = Some((schema, v));
            }
            None if note == Note::Group => {}
            None => note = Note::Undeclared,
        }
    }
    let traits = match &call.kind {
        CallKind::Identify { traits } => decode::traits(bundle, traits, &mut dropped),
        _ => Vec::new(),
    };
    let typed = TypedCall {
        at: call.timestamp.timestamp_millis(),
        names: Names::of(&call),
        message_id: call
            .message_id
            .as_deref()
            .map(nudge_runtime::dedupe::fingerprint),
        event,
        traits,
    };
    let notes = Notes {
        event: call.event_name(),
        dropped,
        kind: note,
        timezone: call.context.timezone.as_deref(),
        locale: call.context.locale.as_deref(),
        device_token: call.context.device_token.as_deref(),
    };
    show(&typed, &notes)
}

/// What the one-pass decoder makes of a line, in the same words.
fn one_pass(bundle: &Bundle, by_wire: &HashMap<String, u32>, line: &str) -> String {
    match ingest::Decoder::new(bundle, by_wire).decode(line) {
        Decoded::Call(mut parts) => {
            let (call, notes) = parts.split();
            show(&call, &notes)
        }
        Decoded::Bad(r) => format!("bad: {}", r.reason),
    }
}

/// Whether `line` holds a run of digits with more significant digits than
/// a binary float keeps (15): the tree reader reads numbers through an
/// `f64`, so it is no oracle for such a line (`919999999999999.9` comes
/// back as `920000000000000.0`), while the decoder reads every digit
/// (`amounts_keep_every_digit_a_decimal_holds`).
fn beyond_the_oracle(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_digit() && c != '.')
        .any(|run| {
            run.trim_start_matches(['0', '.'])
                .chars()
                .filter(char::is_ascii_digit)
                .count()
                > 15
        })
}

/// A typed call and its notes as text. `Debug` shows decimals with their
/// scale, so `45.0` and `45` differ here although they are equal numbers.
/// A number kept as text (an id sent as a number) is shown in its shortest
/// form: the one-pass decoder keeps the digits as written, the tree path
/// has only the parsed number (`4.50` is `4.5` to it), and that is the one
/// difference allowed between them (`numbers_kept_as_text_keep_their_digits`).
fn show(call: &TypedCall<'_>, notes: &Notes<'_>) -> String {
    shortest_numbers(&format!("{call:?} {notes:?}"))
}

/// Every quoted string of a `Debug` text that is a JSON number, in the
/// number's shortest form.
fn shortest_numbers(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let mut end = 0;
        let bytes = rest.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(rest.len());
        let text = &rest[..end];
        match serde_json::from_str::<serde_json::Number>(text) {
            Ok(n) if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                out.push_str(&n.to_string())
            }
            _ => out.push_str(text),
        }
        out.push_str(rest.get(end..(end + 1).min(rest.len())).unwrap_or_default());
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Checks that every line decodes as the tree reader reads it.
fn assert_same(bundle: &Bundle, text: &str, what: &str) {
    let wires = by_wire(bundle);
    for (i, line) in text.lines().enumerate() {
        let want = tree(bundle, &wires, line);
        assert_eq!(
            one_pass(bundle, &wires, line),
            want,
            "{what} line {}: {line}",
            i + 1
        );
    }
}

#[test]
fn every_example_event_decodes_as_the_tree_path_decodes_it() {
    for name in example_names() {
        let bundle = example_bundle(&name);
        assert_same(&bundle, &example_events(&name), &name);
    }
}

#[test]
fn generated_streams_decode_as_the_tree_path_decodes_them() {
    // Every example, since each declares its own events; bad lines are
    // half broken JSON, half wrong property types.
    for (k, name) in example_names().iter().enumerate() {
        let bundle = example_bundle(name);
        let clean = generated(4_000, 0.0, 11 + k as u64);
        assert_same(&bundle, &clean, name);
        let dirty = generated(4_000, 0.2, 31 + k as u64);
        assert_same(&bundle, &dirty, name);
    }
}

/// Lines that probe each rule of the tree path, good and bad.
const PROBES: &[&str] = &[
    // An envelope key given twice refuses the call, naming the first repeated.
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","timestamp":"9999-12-31T23:59:59Z"}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","userId":"u2","timestamp":"2026-01-05T10:00:00Z","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"properties":{"total":1},"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":2}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"a@b.c","email":"d@e.f"}}"#,
    // ...but broken JSON after the repeat still wins.
    r#"{"type":"identify","userId":"u1","userId":"u1","timestamp":"2026-01-05T10:00:00Z""#,
    // Broken JSON anywhere wins over everything, with serde_json's column.
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":"x"}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":1}} x"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":1,}}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"total":1e400}}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":{"x":1e999}}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":"\ud800"}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":"a	b"}"#,
    r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":"\x"}"#,
    "",
    "   ",
    "{",
    "nul",
    // Not an object.
    "[1,2]",
    "null",
    "true",
    "12.5",
    r#""text""#,
    // Envelope faults, each behind the one before it.
    r#"{}"#,
    r#"{"type":7}"#,
    r#"{"type":"track","userId":true}"#,
    r#"{"type":"track","userId":"u1","anonymousId":[1]}"#,
    r#"{"type":"track","userId":"u1","messageId":5}"#,
    r#"{"type":"track","userId":"u1"}"#,
    r#"{"type":"track","userId":"u1","timestamp":5}"#,
    r#"{"type":"track","userId":"u1","timestamp":null,"originalTimestamp":"2026-01-05T10:00:00+01:00","event":"Order Completed","properties":{"order_id":"o","total":5}}"#,
    r#"{"type":"track","userId":"u1","originalTimestamp":{}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"yesterday"}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"  "}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":3,"properties":{"total":"x"}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":[{"total":"x"}]}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":"x"}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":7}"#,
    r#"{"type":"track","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"total":"x"}}"#,
    r#"{"type":"track","userId":"","anonymousId":"","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed"}"#,
    r#"{"type":"group","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":5}"#,
    r#"{"type":"alias","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"alias","previousId":"a1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"alias","previousId":"a1","anonymousId":"a2","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"alias","previousId":17,"userId":18,"timestamp":"2026-01-05T10:00:00Z","properties":5,"traits":[]}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":"x"}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":null,"properties":"ignored"}"#,
    // Numeric ids keep their text.
    r#"{"type":"identify","userId":42,"anonymousId":-3,"messageId":"m","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"identify","userId":4.50,"anonymousId":1e3,"timestamp":"2026-01-05T10:00:00Z"}"#,
    // Screens and groups; a context's zone and locale.
    r#"{"type":"screen","userId":"u1","name":"Home","timestamp":"2026-01-05T10:00:00Z","properties":{"category":"Tabs"}}"#,
    r#"{"type":"screen","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"name":5}}"#,
    r#"{"type":"group","userId":"u1","groupId":1234,"timestamp":"2026-01-05T10:00:00Z","traits":{"name":"Acme"}}"#,
    r#"{"type":"group","userId":"u1","groupId":[1],"timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o"},"context":{"timezone":"Europe/Paris","locale":"fr-FR","ip":"1.2.3.4"}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":{"timezone":5,"locale":""},"traits":{"locale":"de-DE"}}"#,
    // A device's push token; a device that is not an object, or a token that is not a string.
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o"},"context":{"device":{"id":"d1","token":"fcm-1","type":"ios"}}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":{"device":"phone"}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","context":{"device":{"token":7,"nested":{"token":"x"}}}}"#,
    // Unknown events are accepted, counted apart, and carry no event.
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Nope","properties":{"a":1}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Nope","properties":[]}"#,
    // Properties: what does not fit is dropped, with its path; ids sent as
    // numbers keep their text; amounts sent as text are read as numbers.
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":4500123,"total":"150.00","products":[{"product_id":77,"price":"9.90","quantity":"2"}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"total":"ten","products":[5,{"price":true},null]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"total":"x","order_id":7}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":12.50,"products":[{"product_id":"p","price":1},{"product_id":"p","price":"2"},{"price":true}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":{"product_id":"p"}}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":[null]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":[{"product_id":null,"quantity":2.0}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":[{"product_id":"p","quantity":2.5}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":[{"product_id":"p","quantity":18446744073709551615}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"products":[{"product_id":"p","quantity":1e20}]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":-0.0,"revenue":1E2,"tax":5e-3}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":-0,"revenue":0.0,"tax":-000.500}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":10000000000000000.0,"revenue":99999999999999.9,"tax":0.000001}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":123456789012345678,"revenue":123456789012345.6,"tax":32.00,"shipping":0.0000000000000000000000012}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"a very long order id that goes past forty characters","total":[]}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"order_id":null}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":7,"total":5,"order_id":"o"}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5},"properties":{"total":5}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5},"properties":null}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"\u00e9\"o\"","total":5,"currency":"\ud83d\ude00"}}"#,
    r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":5,"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}"#,
    // Keys in any order, as long as the type and event come before the properties.
    r#"{"timestamp":"2026-01-05T10:00:00Z","userId":"u1","event":"Order Completed","type":"track","properties":{"order_id":"o","total":5}}"#,
    r#"{"type":"track","type":"page","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"path":"/"}}"#,
    // Pages: the call's name fills a missing `name` property.
    r#"{"type":"page","userId":"u1","name":"Home","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"page","userId":"u1","name":"Home","timestamp":"2026-01-05T10:00:00Z","properties":{"path":"/","name":"Other"}}"#,
    r#"{"type":"page","userId":"u1","name":"Home","timestamp":"2026-01-05T10:00:00Z","properties":{"path":"/","name":null}}"#,
    r#"{"type":"page","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"path":"/"},"name":"After"}"#,
    r#"{"type":"page","userId":"u1","name":5,"timestamp":"2026-01-05T10:00:00Z","properties":{"path":"/"}}"#,
    r#"{"type":"page","userId":"u1","name":null,"timestamp":"2026-01-05T10:00:00Z","properties":null}"#,
    r#"{"type":"page","userId":"u1","timestamp":"2026-01-05T10:00:00Z","properties":{"path":5}}"#,
    // Traits: null is a value, unknown traits are ignored, email joins.
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"Ana@Example.com ","first_name":"Ana","unknown":{"deep":[1,2]},"consent":{"email":true}}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":null}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":5}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"a@b.c","email":null}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"first_name":null,"timezone":"Mars/Base"}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"timezone":"Europe/Paris","first_name":3}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"consent":{"email":"yes"}}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"consent":[true]}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"created_at":"2026-01-01","birthday":"1990-02-30"}}"#,
    // Segment's reserved traits: camelCase names and the address.
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"firstName":"Ana","lastName":7,"first_name":"Anna","createdAt":"2025-03-01T10:00:00Z","address":{"country":"DE","city":"Berlin"},"phone":15555550100}}"#,
    r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"first_name":"Anna","firstName":"Ana","address":[1],"createdAt":"soon"}}"#,
];

/// Lines one pass cannot follow: properties or traits before the `type`
/// or `event` that says how to read them.
const OUT_OF_ORDER: &[&str] = &[
    r#"{"properties":{"order_id":"o","total":5},"event":"Order Completed","type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"track","properties":{"order_id":"o","total":5},"event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"track","event":"Order Completed","properties":{"order_id":"o","total":5},"event":"Product Added","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"traits":{"email":"x@y.z"},"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    // A `type` or `event` after properties or traits that were skipped for
    // the type or event given before it.
    r#"{"type":"track","event":null,"properties":{"order_id":"o","total":5},"event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"track","event":"Nope","properties":{"order_id":"o","total":5},"event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":"identify","properties":{"order_id":"o","total":5},"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"type":null,"traits":{"email":"x@y.z"},"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    // Bodies that no `type` or `event` ever says how to read: refused by
    // the envelope, with a body of the wrong shape refused for its shape.
    r#"{"properties":{"order_id":"o","total":5},"userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"traits":{"email":"x@y.z"},"userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"properties":{"order_id":"o"},"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"properties":{"order_id":"o"},"type":"track","event":null,"userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"properties":[1],"userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
    r#"{"traits":5,"type":null,"userId":"u1","timestamp":"2026-01-05T10:00:00Z"}"#,
];

#[test]
fn probes_get_the_same_call_or_the_same_reason() {
    for name in example_names() {
        let bundle = example_bundle(&name);
        let wires = by_wire(&bundle);
        for line in PROBES {
            let want = tree(&bundle, &wires, line);
            assert_eq!(one_pass(&bundle, &wires, line), want, "{name}: {line}");
        }
    }
}

/// Amounts a binary float cannot hold: the one-pass decoder (the one `nudge
/// run` and `nudge serve` use) reads every digit a decimal holds, where the
/// tree path's numbers have been through an `f64`.
#[test]
fn amounts_keep_every_digit_a_decimal_holds() {
    let bundle = example_bundle("cart_recovery");
    let wires = by_wire(&bundle);
    let line = |total: &str| {
        format!(
            r#"{{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{{"order_id":"o","total":{total}}}}}"#
        )
    };
    for (total, want) in [
        ("12345678901234567.89", "12345678901234567.89"),
        (
            "13456789012345678901234567890",
            "13456789012345678901234567890",
        ),
        ("-9007199254740993.25", "-9007199254740993.25"),
        ("1.0000000000000001e3", "1000.0000000000001"),
        ("999999999999999.9", "999999999999999.9"),
        // Past the 28 decimal places a decimal holds, rounded there.
        (
            "0.1000000000000000055511151231257827",
            "0.1000000000000000055511151231",
        ),
        // A float holds these: read as before, scale included.
        ("12.50", "12.5"),
        ("5", "5"),
    ] {
        let text = line(total);
        let Decoded::Call(mut parts) = ingest::Decoder::new(&bundle, &wires).decode(&text) else {
            panic!("{total} decodes");
        };
        let Some((schema, Value::Record(record))) = parts.typed().event else {
            panic!("{total}: an event record");
        };
        let at = bundle.schemas[schema as usize]
            .fields
            .iter()
            .position(|f| f.name == "total")
            .unwrap();
        let Value::Money(got) = &record.fields[at] else {
            panic!("{total}: money, not {:?}", record.fields[at]);
        };
        assert_eq!(got.to_string(), want, "{total}: the value and its scale");
    }
    // Beyond a decimal's range: refused, in the tree path's words.
    let text = line("123456789012345678901234567890");
    assert_eq!(
        one_pass(&bundle, &wires, &text),
        tree(&bundle, &wires, &text)
    );
}

#[test]
fn keys_out_of_order_are_read_in_a_second_pass() {
    for name in example_names() {
        let bundle = example_bundle(&name);
        let wires = by_wire(&bundle);
        for line in PROBES.iter().chain(OUT_OF_ORDER) {
            let want = tree(&bundle, &wires, line);
            assert_eq!(one_pass(&bundle, &wires, line), want, "{name}: {line}");
        }
    }
}

#[test]
fn deep_nesting_is_refused_the_same_way() {
    let bundle = example_bundle("cart_recovery");
    let wires = by_wire(&bundle);
    for depth in [31, 32, 33, 127, 128, 129, 500] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for line in [
            format!(
                r#"{{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{{"order_id":"o","total":5,"x":{nested}}}}}"#
            ),
            format!(
                r#"{{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{{"order_id":"o","total":5,"products":{nested}}}}}"#
            ),
        ] {
            let want = tree(&bundle, &wires, &line);
            assert_eq!(one_pass(&bundle, &wires, &line), want, "depth {depth}");
        }
    }
}

/// Replays `text` line by line through two engines, one per path, and
/// checks that each line is refused alike and that everything they do is
/// the same.
fn assert_same_run(bundle: &Bundle, text: &str) {
    let config = Config {
        release_spread: 0,
        ..Config::default()
    };
    let mut old = Engine::new(bundle, MemorySink::default(), config.clone(), i64::MIN);
    let mut new = Engine::new(bundle, MemorySink::default(), config, i64::MIN);
    for (i, line) in text.lines().enumerate() {
        let want = match segment::parse_line(line) {
            Ok(call) => {
                old.advance_before(call.timestamp.timestamp_millis());
                old.apply(&call).map(drop).map_err(|r| r.reason)
            }
            Err(r) => Err(r.reason),
        };
        let got = ingest::apply_line(&mut new, line);
        assert_eq!(got, want, "line {}: {line}", i + 1);
    }
    old.drain();
    new.drain();
    assert_eq!(new.stats(), old.stats());
    let (old, new) = (old.into_sink(), new.into_sink());
    assert_eq!(new.outbox, old.outbox);
    assert_eq!(new.records, old.records);
    assert_eq!(new.memberships, old.memberships);
}

#[test]
fn replays_through_either_path_do_the_same() {
    for name in example_names() {
        let bundle = example_bundle(&name);
        assert_same_run(&bundle, &example_events(&name));
    }
    let bundle = example_bundle("cart_recovery");
    assert_same_run(&bundle, &generated(3_000, 0.1, 5));
    assert_same_run(&bundle, &PROBES.join("\n"));
    assert_same_run(&bundle, &OUT_OF_ORDER.join("\n"));
}

/// One way of damaging a good line.
#[derive(Clone, Debug)]
enum Damage {
    Cut(usize),
    Replace(usize, char),
    Insert(usize, &'static str),
    Remove(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let snippets = prop::sample::select(vec![
        "\"",
        ",",
        "}",
        "]",
        "{",
        "[",
        ":",
        "null",
        "1",
        "-1.5e3",
        "\"x\"",
        "true",
        "\\",
        "\\u0041",
        "\\ud800",
        " ",
        "\"name\":",
        "\"properties\":",
        "\"type\":\"page\",",
        "\"event\":\"Order Completed\",",
        "\"timestamp\":\"2026-01-05T10:00:00Z\",",
        "\"total\":\"x\",",
        "\"products\":[{}],",
        "\"email\":\"a@b.c\",",
    ]);
    prop_oneof![
        any::<prop::sample::Index>().prop_map(|i| Damage::Cut(i.index(1 << 20))),
        (any::<prop::sample::Index>(), any::<char>())
            .prop_map(|(i, c)| Damage::Replace(i.index(1 << 20), c)),
        (any::<prop::sample::Index>(), snippets)
            .prop_map(|(i, s)| Damage::Insert(i.index(1 << 20), s)),
        (any::<prop::sample::Index>(), 1usize..12)
            .prop_map(|(i, n)| Damage::Remove(i.index(1 << 20), n)),
    ]
}

fn apply_damage(line: &str, damage: &[Damage]) -> String {
    let mut chars: Vec<char> = line.chars().collect();
    for d in damage {
        let len = chars.len().max(1);
        match *d {
            Damage::Cut(i) => chars.truncate(i % len),
            Damage::Replace(i, c) => {
                if !chars.is_empty() {
                    chars[i % len] = c;
                }
            }
            Damage::Insert(i, s) => {
                let at = i % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Damage::Remove(i, n) => {
                let at = i % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn damaged_lines_get_the_same_reason(
        pick in any::<prop::sample::Index>(),
        damage in prop::collection::vec(damage(), 1..4),
    ) {
        thread_local! {
            static SETUP: (Bundle, HashMap<String, u32>, Vec<String>) = {
                let bundle = example_bundle("cart_recovery");
                let wires = by_wire(&bundle);
                let mut lines: Vec<String> =
                    example_events("cart_recovery").lines().map(str::to_string).collect();
                lines.extend(generated(400, 0.0, 3).lines().map(str::to_string));
                lines.extend(PROBES.iter().chain(OUT_OF_ORDER).map(|s| s.to_string()));
                (bundle, wires, lines)
            };
        }
        SETUP.with(|(bundle, wires, lines)| {
            let line = apply_damage(&lines[pick.index(lines.len())], &damage);
            prop_assume!(!beyond_the_oracle(&line));
            let want = tree(bundle, wires, &line);
            prop_assert_eq!(one_pass(bundle, wires, &line), want, "{}", line);
            Ok(())
        })?;
    }

    #[test]
    fn keys_in_any_order_or_repeated_read_the_same_either_way(
        pick in any::<prop::sample::Index>(),
        order in any::<prop::sample::Index>(),
        extra in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..3,
        ),
    ) {
        thread_local! {
            static SETUP: (Bundle, HashMap<String, u32>, Vec<String>) = {
                let bundle = example_bundle("cart_recovery");
                let wires = by_wire(&bundle);
                let mut lines: Vec<String> =
                    example_events("cart_recovery").lines().map(str::to_string).collect();
                lines.extend(generated(300, 0.1, 9).lines().map(str::to_string));
                (bundle, wires, lines)
            };
        }
        const KEYS: &[&str] = &[
            "type", "event", "properties", "traits", "name", "userId", "anonymousId",
            "previousId", "timestamp", "messageId",
        ];
        const VALUES: &[&str] = &[
            "null", "5", "\"track\"", "\"page\"", "\"identify\"", "\"alias\"",
            "\"Order Completed\"", "\"Product Added\"", "\"Nope\"", "{}", "[]",
            "{\"order_id\":\"o\",\"total\":5}", "{\"email\":\"a@b.c\",\"first_name\":1}",
            "\"2026-01-05T10:00:00Z\"", "\"u9\"",
        ];
        SETUP.with(|(bundle, wires, lines)| {
            let line = &lines[pick.index(lines.len())];
            let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line) else {
                return Ok(());
            };
            // Entries as text, rotated, with a few keys given again.
            let mut entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            let n = entries.len();
            entries.rotate_left(order.index(n.max(1)));
            for (at, key, value) in &extra {
                let entry = format!("\"{}\":{}", key.get(KEYS), value.get(VALUES));
                entries.insert(at.index(entries.len() + 1), entry);
            }
            let line = format!("{{{}}}", entries.join(","));
            prop_assume!(!beyond_the_oracle(&line));
            let want = tree(bundle, wires, &line);
            prop_assert_eq!(one_pass(bundle, wires, &line), want, "{}", line);
            Ok(())
        })?;
    }

    #[test]
    fn any_text_is_refused_without_a_panic(line in ".*") {
        thread_local! {
            static SETUP: (Bundle, HashMap<String, u32>) = {
                let bundle = example_bundle("cart_recovery");
                let wires = by_wire(&bundle);
                (bundle, wires)
            };
        }
        SETUP.with(|(bundle, wires)| {
            prop_assume!(!beyond_the_oracle(&line));
            let want = tree(bundle, wires, &line);
            prop_assert_eq!(one_pass(bundle, wires, &line), want);
            Ok(())
        })?;
    }
}

#[test]
fn money_keeps_the_numbers_own_digits() {
    let bundle = example_bundle("cart_recovery");
    let wires = by_wire(&bundle);
    let line = r#"{"type":"track","userId":"u1","timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":"o","total":45.0,"revenue":0.1,"tax":3}}"#;
    let Decoded::Call(mut parts) = ingest::Decoder::new(&bundle, &wires).decode(line) else {
        panic!("decodes")
    };
    let Some((schema, Value::Record(r))) = parts.typed().event else {
        panic!("an event")
    };
    let field = |name: &str| {
        let i = bundle.schemas[schema as usize]
            .fields
            .iter()
            .position(|f| f.name == name)
            .unwrap();
        format!("{:?}", r.fields[i])
    };
    assert_eq!(field("total"), "Money(45.0)");
    assert_eq!(field("revenue"), "Money(0.1)");
    assert_eq!(field("tax"), "Money(3)");
}

/// Ids and string properties sent as numbers: the one-pass decoder (the
/// one `nudge run` and `nudge serve` use) keeps the digits as written,
/// where the tree path has only the parsed number.
#[test]
fn numbers_kept_as_text_keep_their_digits() {
    let bundle = example_bundle("cart_recovery");
    let wires = by_wire(&bundle);
    let line = r#"{"type":"track","userId":4.50,"anonymousId":1e3,"timestamp":"2026-01-05T10:00:00Z","event":"Order Completed","properties":{"order_id":123456789012345678901234567,"total":"150.00","products":[{"product_id":-0,"price":"9.90"}]}}"#;
    let Decoded::Call(mut parts) = ingest::Decoder::new(&bundle, &wires).decode(line) else {
        panic!("decodes")
    };
    assert!(parts.dropped().is_empty(), "{:?}", parts.dropped());
    let (call, _) = parts.split();
    assert_eq!(call.names.user_id, Some("4.50"));
    assert_eq!(call.names.anonymous_id, Some("1e3"));
    let Some((schema, Value::Record(r))) = call.event else {
        panic!("an event")
    };
    let field = |name: &str| {
        let i = bundle.schemas[schema as usize]
            .fields
            .iter()
            .position(|f| f.name == name)
            .unwrap();
        r.fields[i].clone()
    };
    assert_eq!(field("order_id"), Value::str("123456789012345678901234567"));
    assert_eq!(format!("{:?}", field("total")), "Money(150.0)");
    let Value::List(products) = field("products") else {
        panic!("a list")
    };
    let Value::Record(p) = &products[0] else {
        panic!("a product")
    };
    assert_eq!(p.fields[0], Value::str("-0"));
    // The tree path reads the same call, with numbers in their shortest form.
    let tree = tree(&bundle, &wires, line);
    assert!(tree.contains(r#"user_id: Some("4.5")"#), "{tree}");
}
