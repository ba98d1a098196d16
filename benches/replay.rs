//! In-memory replay throughput against the cost of merely parsing the same
//! JSON lines with serde_json.
//!
//! `cargo bench --bench replay` generates a stream with `nudge gen`'s
//! library (1,000,000 events by default; set NUDGE_BENCH_EVENTS), times
//! (a) parsing every line into a `serde_json::Value`, then for each example
//! project (c) decoding every line into the typed call the engine applies
//! (the one-pass decoder alone) and (b) a full replay on the virtual clock
//! with an in-memory sink, and prints events per second and the ratio b / a.
//!
//! Then the same on a send-heavy purchase history (`nudge gen --shape
//! purchases`: 1,100,000 lines by default, NUDGE_BENCH_PURCHASES) through
//! the one-send win-back of `benches/winback`: parse only, decode only,
//! the replay with every effect dropped (the engine's own cost), and the
//! replay writing the outbox and trace files as `nudge run --in-memory`
//! does (their difference is what writing the files costs).
//! `cargo bench --bench replay -- purchases` runs this part alone.

use std::time::Instant;

use nudge_runtime::engine::{Config, Engine, MemorySink, Sink};
use nudge_runtime::ingest::Decoded;
use nudge_runtime::replay::{self, Options};

// The same allocator as the `nudge` binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let events: u64 = std::env::var("NUDGE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.as_deref() == Some("purchases") {
        purchases();
        return;
    }
    let config = nudge_gen::GenConfig::new(events);
    let mut stream = Vec::new();
    nudge_gen::generate(&config, &mut stream).expect("generation succeeds");
    let text = String::from_utf8(stream).expect("UTF-8");
    println!(
        "stream: {events} events, {} customers, {:.0} MB",
        config.customers,
        text.len() as f64 / 1e6
    );

    let parse = parse_all(&text, events);
    println!(
        "serde_json parse only: {:.2} s, {:.0} events/s",
        parse,
        events as f64 / parse
    );

    println!(
        "{:<20} {:>11} {:>9} {:>13} {:>7} {:>9} {:>6}",
        "example", "decode/s", "seconds", "events/s", "ratio", "sends", "dead"
    );
    for name in nudge_test_support::example_names() {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let bundle = nudge_test_support::example_bundle(&name);
        let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let (decode, calls) = decode_all(&engine, &text);
        assert!(calls > 0, "{name}: some lines decode");
        let mut dead = 0u64;
        let t = Instant::now();
        replay::replay_bytes(
            &mut engine,
            text.as_bytes(),
            Options::default(),
            &mut |_| dead += 1,
        );
        let secs = t.elapsed().as_secs_f64();
        let sends = engine.sink().outbox.len();
        println!(
            "{:<20} {:>11.0} {:>9.2} {:>13.0} {:>7.2} {:>9} {:>6}",
            name,
            events as f64 / decode,
            secs,
            events as f64 / secs,
            secs / parse,
            sends,
            dead
        );
    }
}

/// Seconds to parse every line of `text` into a `serde_json::Value` (the
/// baseline every ratio is taken against); `lines` is how many there are.
fn parse_all(text: &str, lines: u64) -> f64 {
    let t = Instant::now();
    let mut parsed = 0u64;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("generated lines parse");
        parsed += u64::from(v.is_object());
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(parsed, lines);
    secs
}

/// Seconds to decode every line of `text` into the engine's typed call,
/// without applying it, and how many lines decoded to a call.
fn decode_all<S: Sink>(engine: &Engine<'_, S>, text: &str) -> (f64, u64) {
    let t = Instant::now();
    let mut calls = 0u64;
    for line in text.lines() {
        let decoded = engine.decoder().decode(line);
        calls += u64::from(matches!(decoded, Decoded::Call(_)));
        drop(std::hint::black_box(decoded));
    }
    (t.elapsed().as_secs_f64(), calls)
}

/// Seconds to replay every line of `text` (all generated, so none may be
/// refused) on the virtual clock.
fn replay_all<S: Sink>(engine: &mut Engine<'_, S>, text: &str) -> f64 {
    let t = Instant::now();
    replay::replay_bytes(engine, text.as_bytes(), Options::default(), &mut |_| {
        panic!("a generated line was refused")
    });
    t.elapsed().as_secs_f64()
}

/// Drops every effect: what is left is the engine's own work.
struct Discard;

impl Sink for Discard {
    fn deliver(
        &mut self,
        _: nudge_bytecode::Channel,
        _: &nudge_channels::Outgoing,
    ) -> Result<(), String> {
        Ok(())
    }

    fn record(&mut self, record: nudge_runtime::record::Record) {
        drop(std::hint::black_box(record));
    }

    fn membership(&mut self, _: nudge_runtime::record::Membership) {}
}

/// The send-heavy half: a purchase history through a one-send win-back.
fn purchases() {
    let events: u64 = std::env::var("NUDGE_BENCH_PURCHASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_100_000);
    let config = nudge_gen::PurchaseConfig::new(events);
    let mut stream = Vec::new();
    let stats = nudge_gen::generate_purchases(&config, &mut stream).expect("generation succeeds");
    let text = String::from_utf8(stream).expect("UTF-8");
    println!(
        "purchases: {} events, {} customers, {} orders, {:.0} MB ({:.0} bytes a line)",
        stats.lines,
        stats.customers,
        stats.orders,
        text.len() as f64 / 1e6,
        text.len() as f64 / stats.lines as f64
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/winback");
    let project =
        nudge_compiler::Project::load(std::slice::from_ref(&dir)).expect("the project loads");
    let bundle = nudge_test_support::build_project(&project);

    let parse = parse_all(&text, stats.lines);
    let rate = |secs: f64| stats.lines as f64 / secs;
    println!(
        "serde_json parse only: {parse:.2} s, {:.0} events/s",
        rate(parse)
    );

    let engine = Engine::new(&bundle, Discard, Config::default(), i64::MIN);
    let (decode, calls) = decode_all(&engine, &text);
    assert_eq!(calls, stats.lines);
    println!(
        "decode only: {decode:.2} s, {:.0} events/s, {:.2}x parse",
        rate(decode),
        decode / parse
    );
    drop(engine);

    let mut engine = Engine::new(&bundle, Discard, Config::default(), i64::MIN);
    let bare = replay_all(&mut engine, &text);
    let done = engine.stats();
    let sends: u64 = done.flows.values().flat_map(|f| f.sends.values()).sum();
    let customers = done.customers;
    drop(engine);
    println!(
        "replay, effects dropped: {bare:.2} s, {:.0} events/s, {:.2}x parse; {sends} sends, {customers} customers",
        rate(bare),
        bare / parse
    );

    let out = tempfile::tempdir().expect("a temporary directory");
    let sink = nudge_runtime::output::FileSink::new(
        &out.path().join("outbox.jsonl"),
        Some(&out.path().join("trace.jsonl")),
        &out.path().join("audiences"),
    )
    .expect("the files can be created");
    let mut engine = Engine::new(&bundle, sink, Config::default(), i64::MIN);
    let t = Instant::now();
    replay_all(&mut engine, &text);
    engine.into_sink().finish().expect("the files are written");
    let files = t.elapsed().as_secs_f64();
    let size = |name: &str| std::fs::metadata(out.path().join(name)).map_or(0, |m| m.len());
    println!(
        "replay, outbox and trace written: {files:.2} s, {:.0} events/s, {:.2}x parse; files {:.2} s ({:.0}% of the run): outbox {:.0} MB, trace {:.0} MB",
        rate(files),
        files / parse,
        files - bare,
        100.0 * (files - bare) / files,
        size("outbox.jsonl") as f64 / 1e6,
        size("trace.jsonl") as f64 / 1e6
    );
}
