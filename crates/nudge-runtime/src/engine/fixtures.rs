//! What the engine's own tests share: a flow whose instance waits with a
//! send made, the keys of the sends live instances made, and a pager
//! over rows held in memory.

use nudge_bytecode::Bundle;

use super::{Engine, MemorySink};

/// The source of [`sent_then_waiting`]'s flow.
pub(super) const SENT_THEN_WAITING: &str = "message m() {\n  channel email\n  subject \"s\"\n  body \"b\"\n}\n\
     flow f {\n  trigger checkout_started\n  entry always\n  send m()\n  wait 1d\n  send m()\n}\n";

/// A flow that sends, waits a day and sends again, and the calls that
/// start it for `u0` (who gave an address and consent): its instance
/// waits with one send made.
pub(super) fn sent_then_waiting() -> (Bundle, [&'static str; 2]) {
    let bundle = nudge_test_support::build(&[("t.flow", SENT_THEN_WAITING)]);
    let lines = [
        r#"{"type":"identify","userId":"u0","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"u0@example.com","consent":{"email":true}}}"#,
        r#"{"type":"track","event":"Checkout Started","userId":"u0","timestamp":"2026-01-05T10:00:00Z","properties":{"value":5}}"#,
    ];
    (bundle, lines)
}

/// Applies `lines` to `engine`.
pub(super) fn apply(engine: &mut Engine<'_, MemorySink>, lines: &[&str]) {
    for line in lines {
        crate::ingest::apply_line(engine, line).unwrap();
    }
}

/// The fingerprints of the keys of the sends each live instance made.
pub(super) fn sent_keys(engine: &Engine<'_, MemorySink>) -> Vec<Vec<u128>> {
    engine
        .instances
        .iter()
        .flatten()
        .map(|i| i.sent().to_vec())
        .collect()
}

/// Reads customers back from rows held in a cell, as a store would.
pub(super) struct RowsPager(pub(super) std::sync::Arc<std::sync::Mutex<super::rows::MemoryRows>>);

impl super::Pager for RowsPager {
    fn customer(&mut self, number: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.customer(number))
    }

    fn timers(&mut self, read: crate::timers::ToRead) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.timers(read))
    }

    fn node_named(&mut self, name: &[u8]) -> Result<Option<u32>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.node_named(name))
    }

    fn node(&mut self, n: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.node(n))
    }
}

/// What `engine` changed, taken as rows of the earlier layout `format`
/// (as the release that wrote that layout would have).
pub(super) fn rows_of_layout(
    engine: &mut Engine<'_, MemorySink>,
    format: u32,
) -> super::rows::MemoryRows {
    let _layout = super::checkpoint::layout::at(format);
    let mut changes = engine.take_changes().unwrap();
    changes.head[0] = u8::try_from(format).unwrap();
    let mut rows = super::rows::MemoryRows::default();
    rows.apply(changes);
    rows
}
