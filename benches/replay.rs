//! In-memory replay throughput against the cost of merely parsing the same
//! JSON lines with serde_json.
//!
//! `cargo bench --bench replay` generates a stream with `nudge gen`'s
//! library (1,000,000 events by default; set NUDGE_BENCH_EVENTS), times
//! (a) parsing every line into a `serde_json::Value`, then for each example
//! project (c) decoding every line into the typed call the engine applies
//! (the one-pass decoder alone) and (b) a full replay on the virtual clock
//! with an in-memory sink, and prints events per second and the ratio b / a.

use std::time::Instant;

use nudge_runtime::engine::{Config, Engine, MemorySink};
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
    let config = nudge_gen::GenConfig::new(events);
    let mut stream = Vec::new();
    nudge_gen::generate(&config, &mut stream).expect("generation succeeds");
    let text = String::from_utf8(stream).expect("UTF-8");
    println!(
        "stream: {events} events, {} customers, {:.0} MB",
        config.customers,
        text.len() as f64 / 1e6
    );

    let t = Instant::now();
    let mut parsed = 0usize;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("generated lines parse");
        parsed += usize::from(v.is_object());
    }
    let parse = t.elapsed().as_secs_f64();
    assert_eq!(parsed as u64, events);
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
        let t = Instant::now();
        let mut calls = 0u64;
        for line in text.lines() {
            let decoded = engine.decoder().decode(line);
            calls += u64::from(matches!(decoded, Decoded::Call(_)));
            drop(std::hint::black_box(decoded));
        }
        let decode = t.elapsed().as_secs_f64();
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
