//! A repeated `messageId` is dropped within the dedupe window, through a
//! checkpoint and restore, and applied again once the window has passed,
//! so that a store running for years does not remember every id.

use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink};
use nudge_runtime::ingest;

const SOURCE: &str =
    "flow viewed {\n  trigger product_viewed\n  entry always\n  pause: wait 1h\n}\n";

fn line(id: &str, day: u32) -> String {
    format!(
        r#"{{"type":"track","event":"Product Viewed","userId":"u1","messageId":"{id}","timestamp":"2026-03-{day:02}T10:00:00Z","properties":{{}}}}"#
    )
}

fn engine(bundle: &nudge_bytecode::Bundle, days: i64) -> Engine<'_, MemorySink> {
    let config = Config {
        dedupe_window: days * 86_400,
        ..Config::default()
    };
    Engine::new(bundle, MemorySink::default(), config, i64::MIN)
}

#[test]
fn repeats_are_dropped_within_the_window_and_applied_after_it() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut e = engine(&bundle, 3);
    for (id, day) in [("m-1", 1), ("m-1", 2), ("m-2", 3), ("m-1", 4)] {
        ingest::apply_line(&mut e, &line(id, day)).unwrap();
    }
    // Within three days of day 1: the repeats on days 2 and 4 are dropped.
    assert_eq!((e.stats().events, e.stats().duplicates), (2, 2));

    // A checkpoint keeps what is remembered: the copy drops the same repeat.
    let bytes = e.checkpoint().unwrap();
    let arena = Bundles::new();
    let mut restored = engine(&bundle, 3);
    restored.restore(&bytes, &bundle, &arena).unwrap();
    ingest::apply_line(&mut restored, &line("m-2", 5)).unwrap();
    assert_eq!(restored.stats().duplicates, 3);

    // Past two windows (day 10), both ids are forgotten: applied again.
    for id in ["m-1", "m-2"] {
        ingest::apply_line(&mut restored, &line(id, 10)).unwrap();
    }
    assert_eq!(
        (restored.stats().events, restored.stats().duplicates),
        (4, 3)
    );
}

#[test]
fn a_window_of_zero_remembers_every_id() {
    let bundle = nudge_test_support::build(&[("test.flow", SOURCE)]);
    let mut e = engine(&bundle, 0);
    for (id, day) in [("m-1", 1), ("m-1", 28)] {
        ingest::apply_line(&mut e, &line(id, day)).unwrap();
    }
    assert_eq!((e.stats().events, e.stats().duplicates), (1, 1));
}
