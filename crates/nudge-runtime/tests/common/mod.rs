//! Shared helpers: compile inline sources and replay JSON lines in memory.

#![allow(dead_code)]

use std::path::PathBuf;

use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink};
use nudge_runtime::replay::{self, DeadLetter, Options};

/// Compiles one `.flow` source; panics with the diagnostics when it does not check.
pub fn bundle(source: &str) -> Bundle {
    let project = nudge_compiler::Project::from_sources(vec![("test.flow".into(), source.into())]);
    let analysis = nudge_compiler::check(&project);
    assert!(
        !analysis.has_errors(),
        "{}",
        nudge_diagnostics::render::short(&project.sources, &analysis.diagnostics)
    );
    nudge_compiler::lower(&project, &analysis).expect("lowers")
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

/// The example projects' names, sorted.
pub fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_root())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("nudge.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The folder of the example projects.
pub fn examples_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// An example project, compiled; panics when it does not check.
pub fn example_bundle(name: &str) -> Bundle {
    let root = examples_root().join(name);
    let project = nudge_compiler::Project::load(std::slice::from_ref(&root)).unwrap();
    let analysis = nudge_compiler::check(&project);
    assert!(!analysis.has_errors(), "{name} does not check");
    nudge_compiler::lower(&project, &analysis).unwrap()
}

/// An example project's events file.
pub fn example_events(name: &str) -> String {
    std::fs::read_to_string(examples_root().join(name).join("events.jsonl")).unwrap()
}
