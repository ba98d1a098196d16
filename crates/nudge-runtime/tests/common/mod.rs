//! Shared helpers: compile inline sources and replay JSON lines in memory.

#![allow(dead_code)]

use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink};
use nudge_runtime::replay::{self, DeadLetter, Options};

/// Compiles one `.flow` source; panics with the diagnostics when it does not check.
pub fn bundle(source: &str) -> Bundle {
    nudge_test_support::build(&[("test.flow", source)])
}

/// Replays JSON lines through a bundle, draining timers at the end.
pub fn replay(bundle: &Bundle, lines: &str) -> (MemorySink, Vec<DeadLetter>) {
    replay_with(
        bundle,
        lines,
        Options {
            until: None,
            drain: true,
        },
    )
}

/// Replays with explicit options.
pub fn replay_with(
    bundle: &Bundle,
    lines: &str,
    options: Options,
) -> (MemorySink, Vec<DeadLetter>) {
    let config = Config {
        release_spread: 0,
        ..Config::default()
    };
    let mut engine = Engine::new(bundle, MemorySink::default(), config, i64::MIN);
    let mut dead = Vec::new();
    replay::replay(&mut engine, lines.as_bytes(), options, &mut |d| {
        dead.push(d)
    })
    .unwrap();
    (engine.into_sink(), dead)
}

/// The sends as `time customer message` lines, for compact assertions.
pub fn sends(sink: &MemorySink) -> Vec<String> {
    sink.outbox
        .iter()
        .map(|m| format!("{} {} {}", m.at, m.customer, m.message))
        .collect()
}

/// Where a deploy's rebased bundles live: as long as the test.
pub fn arena() -> &'static Bundles {
    Box::leak(Box::new(Bundles::new()))
}

/// An engine that releases quiet-hours sends at once, clock unset.
pub fn engine(b: &Bundle) -> Engine<'_, MemorySink> {
    let config = Config {
        release_spread: 0,
        ..Config::default()
    };
    Engine::new(b, MemorySink::default(), config, i64::MIN)
}

/// Applies calls (in time order) and leaves the clock at the last one; a dead letter fails the test.
pub fn feed(engine: &mut Engine<'_, MemorySink>, lines: &[String]) {
    replay::replay(
        engine,
        lines.join("\n").as_bytes(),
        Options::default(),
        &mut |d| panic!("dead letter: {d:?}"),
    )
    .unwrap();
}

/// `at customer message subject` for each message sent.
pub fn sent(engine: &Engine<'_, MemorySink>) -> Vec<String> {
    engine
        .sink()
        .outbox
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m.at, m.customer, m.message, m.content["subject"]
            )
        })
        .collect()
}
