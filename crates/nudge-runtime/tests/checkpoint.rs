//! A checkpoint taken at any point and restored into a fresh engine carries
//! on exactly as the engine it was taken from: the same sends, records,
//! memberships and counters as a run that never stopped. An engine that
//! lets every customer it can go after each take, and reads them back from
//! the rows when needed, decides the same too.

mod common;

use nudge_bytecode::Bundle;
use nudge_runtime::engine::rows::MemoryRows;
use std::sync::{Arc, Mutex};

use nudge_runtime::engine::{Config, Engine, MemorySink, Pager};
use nudge_runtime::ingest;

/// Rows shared by the test, which writes them, and the engine's pager,
/// which reads customers back from them.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemoryRows>>, Arc<Requests>);

/// What the engine asked a [`Shared`] pager for customers.
#[derive(Default)]
struct Requests {
    /// Customers asked for one at a time.
    one: std::sync::atomic::AtomicU64,
    /// Customers asked for together ([`Pager::customers`]).
    together: std::sync::atomic::AtomicU64,
}

impl Pager for Shared {
    fn customer(&mut self, number: u32) -> Result<Option<Vec<u8>>, String> {
        self.1
            .one
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.0.lock().map_err(|e| e.to_string())?.customer(number))
    }

    fn customers(&mut self, numbers: &[u32]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.1
            .together
            .fetch_add(numbers.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let rows = self.0.lock().map_err(|e| e.to_string())?;
        Ok(numbers.iter().map(|&n| rows.customer(n)).collect())
    }

    fn timers(&mut self, read: nudge_runtime::timers::ToRead) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.timers(read))
    }

    fn node_named(&mut self, name: &[u8]) -> Result<Option<u32>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.node_named(name))
    }

    fn nodes_named(&mut self, names: &[Vec<u8>]) -> Result<Vec<Option<u32>>, String> {
        // A store across a network answers each request in a round trip.
        assert!(!names.is_empty(), "the store was asked for no names");
        let rows = self.0.lock().map_err(|e| e.to_string())?;
        Ok(names.iter().map(|name| rows.node_named(name)).collect())
    }

    fn node(&mut self, n: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.node(n))
    }
}

fn example(name: &str) -> (Bundle, String) {
    (
        nudge_test_support::example_bundle(name),
        nudge_test_support::example_events(name),
    )
}

fn config() -> Config {
    Config {
        release_spread: 0,
        // Forgetting after a restore must pick up where it left off.
        forget_every: 7,
        ..Config::default()
    }
}

fn new_engine(bundle: &Bundle) -> Engine<'_, MemorySink> {
    Engine::new(bundle, MemorySink::default(), config(), i64::MIN)
}

/// The engine of the run that stops: with [`Keep::Frozen`], one that
/// freezes every customer it can before each call.
fn stepped_engine(bundle: &Bundle, keep: Keep) -> Engine<'_, MemorySink> {
    let mut config = config();
    if let Keep::Frozen { .. } = keep {
        config.customers_in_memory = Some(0);
    }
    Engine::new(bundle, MemorySink::default(), config, i64::MIN)
}

/// How a run keeps its state across a stop.
#[derive(Clone, Copy)]
enum Keep {
    /// The whole state in one value, taken at the stop.
    Whole,
    /// Rows, with changes taken after every `every` lines and at each stop
    /// (as a store commits them): a change any table failed to note shows
    /// as a difference from the run that never stopped.
    Rows { every: usize },
    /// As `Rows`, and after each take every customer that can be is let
    /// go; a restore reads none, and customers are read back when needed.
    Paged { every: usize },
    /// As `Paged`, with the customers and identities of each `every`
    /// lines, and those of the timers due by the last of them, read ahead
    /// together before they are applied (as a cluster worker reads a
    /// batch's).
    ReadAhead { every: usize },
    /// As `Paged`, with each take committed only once the next is taken
    /// (as `nudge run` pipelines its batches), so what is let go after a
    /// commit is let go while the next take is still in flight.
    Pipelined { every: usize },
    /// As `Rows`, with no store to read customers back from: every
    /// customer that can be is frozen before each call, and a take writes
    /// frozen customers' rows from their bytes.
    Frozen { every: usize },
}

/// Runs `lines` without a stop, then again stopping after each of `cuts`
/// lines (state kept as `keep` says, restored into a fresh engine, go on),
/// and checks that both runs did the same. Returns how many customers were
/// read back and how many timers let go (with [`Keep::Paged`]).
fn assert_restores(bundle: &Bundle, lines: &[&str], cuts: &[usize], keep: Keep) -> (u64, usize) {
    let (read_back, timers, _, _) = assert_restores_paged(bundle, lines, cuts, keep);
    (read_back, timers)
}

/// What a paged run let go and read back: customers read back, timers let
/// go, identities' texts let go and identities read back by name or
/// number, and customers the pager was asked for one at a time and together.
type PagedCounts = (u64, usize, (usize, u64), (u64, u64));

/// [`assert_restores`], also counting identities' texts let go and read back.
fn assert_restores_paged(
    bundle: &Bundle,
    lines: &[&str],
    cuts: &[usize],
    keep: Keep,
) -> PagedCounts {
    let mut whole = new_engine(bundle);
    for line in lines {
        let _ = ingest::apply_line(&mut whole, line);
    }
    whole.drain();
    let whole_stats = whole.stats();
    let whole_held = whole.history_held();
    let whole = whole.into_sink();

    let shared = Shared::default();
    let paged = matches!(
        keep,
        Keep::Paged { .. } | Keep::Pipelined { .. } | Keep::ReadAhead { .. }
    );
    let pipelined = matches!(keep, Keep::Pipelined { .. });
    let timers_let_go = std::cell::Cell::new(0);
    let texts_let_go = std::cell::Cell::new(0);
    let in_flight = std::cell::RefCell::new(None);
    let commit = |changes: nudge_runtime::engine::rows::Changes,
                  engine: &mut Engine<'_, MemorySink>,
                  unsaved: &[u32]| {
        let (timers, nodes) = (changes.timer_seq, changes.names_stored);
        shared.0.lock().unwrap().apply(changes);
        if paged {
            engine.let_go(0, unsaved);
            timers_let_go.set(timers_let_go.get() + engine.let_timers_go(timers));
            texts_let_go.set(texts_let_go.get() + engine.let_texts_go(nodes));
        }
    };
    let take = |engine: &mut Engine<'_, MemorySink>| {
        let changes = engine.take_changes().expect("changes");
        if !pipelined {
            commit(changes, engine, &[]);
            return;
        }
        let unsaved: Vec<u32> = changes.customers.iter().map(|(c, _)| *c).collect();
        if let Some(before) = in_flight.borrow_mut().replace(changes) {
            commit(before, engine, &unsaved);
        }
    };
    // Commits the take in flight (before a stop).
    let settle = |engine: &mut Engine<'_, MemorySink>| {
        if let Some(last) = in_flight.borrow_mut().take() {
            commit(last, engine, &[]);
        }
    };
    let mut got = MemorySink::default();
    let mut engine = stepped_engine(bundle, keep);
    if paged {
        engine.set_pager(Box::new(shared.clone()));
    }
    if let Keep::Rows { .. }
    | Keep::Paged { .. }
    | Keep::Pipelined { .. }
    | Keep::ReadAhead { .. }
    | Keep::Frozen { .. } = keep
    {
        take(&mut engine);
    }
    let mut read_back = 0;
    let mut texts_read = 0;
    let mut from = 0;
    for &cut in cuts {
        for (i, line) in (from..).zip(&lines[from..cut]) {
            // Each batch's customers are read ahead after the take before
            // it (which lets customers go): from here through the next take.
            if let Keep::ReadAhead { every } = keep
                && (i == from || (i - 1) % every == 0)
            {
                let next_take = i.div_ceil(every) * every;
                let ahead = &lines[i..cut.min(next_take + 1)];
                let decoder = engine.decoder();
                let decoded: Vec<_> = ahead.iter().map(|l| decoder.decode(l)).collect();
                let parts = || {
                    decoded.iter().filter_map(|d| match d {
                        ingest::Decoded::Call(parts) => Some(parts),
                        ingest::Decoded::Bad(_) => None,
                    })
                };
                assert!(
                    engine.read_ahead(parts().map(|p| p.names())),
                    "{:?}",
                    engine.page_fault()
                );
                // And the customers of the timers due by the last of them.
                if let Some(through) = parts().map(|p| p.at()).max() {
                    assert!(
                        engine.read_timers_ahead(through, every),
                        "{:?}",
                        engine.page_fault()
                    );
                }
            }
            let _ = ingest::apply_line(&mut engine, line);
            if let Keep::Rows { every }
            | Keep::Paged { every }
            | Keep::Pipelined { every }
            | Keep::ReadAhead { every }
            | Keep::Frozen { every } = keep
                && i % every == 0
            {
                take(&mut engine);
            }
        }
        from = cut;
        let whole_state = match keep {
            Keep::Whole => Some(engine.checkpoint().expect("a checkpoint")),
            Keep::Rows { .. }
            | Keep::Paged { .. }
            | Keep::Pipelined { .. }
            | Keep::ReadAhead { .. }
            | Keep::Frozen { .. } => {
                take(&mut engine);
                settle(&mut engine);
                None
            }
        };
        let before = engine.stats();
        read_back += engine.paging().read_back;
        texts_read += engine.paging().texts_read;
        append(&mut got, std::mem::take(engine.sink_mut()));
        engine = stepped_engine(bundle, keep);
        let rows = shared.0.lock().unwrap();
        match whole_state {
            Some(bytes) => engine.restore(&bytes, bundle, common::arena()),
            None if paged => {
                engine.set_pager(Box::new(shared.clone()));
                engine.restore_rows(rows.rows_without_customers(), bundle, common::arena())
            }
            None => engine.restore_rows(rows.rows(), bundle, common::arena()),
        }
        .expect("restores");
        drop(rows);
        assert_eq!(
            engine.stats(),
            before,
            "counters after a restore at line {cut}"
        );
    }
    for line in &lines[from..] {
        let _ = ingest::apply_line(&mut engine, line);
    }
    engine.drain();
    assert_eq!(engine.stats(), whole_stats);
    assert!(engine.page_fault().is_none(), "{:?}", engine.page_fault());
    read_back += engine.paging().read_back;
    texts_read += engine.paging().texts_read;
    // Once a sweep has come after the last stop, the restored engine holds
    // the history the uninterrupted one holds (between a restore and the
    // next sweep a call's own customer is not trimmed: the horizons are
    // not stored). Sweeps come every `forget_every` (7) calls applied.
    // (Customers let go or frozen are not swept.)
    let frozen = matches!(keep, Keep::Frozen { .. });
    if lines.len() >= from + 14 && !paged && !frozen {
        assert_eq!(engine.history_held(), whole_held, "history held");
    }
    append(&mut got, engine.into_sink());
    assert_eq!(got.outbox, whole.outbox, "sends");
    assert_eq!(got.records, whole.records, "records");
    assert_eq!(got.memberships, whole.memberships, "memberships");
    let asked = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    (
        read_back,
        timers_let_go.get(),
        (texts_let_go.get(), texts_read),
        (asked(&shared.1.one), asked(&shared.1.together)),
    )
}

fn append(to: &mut MemorySink, from: MemorySink) {
    to.outbox.extend(from.outbox);
    to.records.extend(from.records);
    to.memberships.extend(from.memberships);
}

#[test]
fn every_example_goes_on_after_a_restore_at_any_line() {
    for name in nudge_test_support::example_names() {
        let (bundle, events) = example(&name);
        let lines: Vec<&str> = events.lines().collect();
        for cut in 0..=lines.len() {
            let _ = assert_restores(&bundle, &lines, &[cut], Keep::Whole);
        }
    }
}

#[test]
fn every_example_goes_on_from_its_rows_after_a_restore_at_any_line() {
    for name in nudge_test_support::example_names() {
        let (bundle, events) = example(&name);
        let lines: Vec<&str> = events.lines().collect();
        for cut in 0..=lines.len() {
            let _ = assert_restores(&bundle, &lines, &[cut], Keep::Rows { every: 1 });
        }
    }
}

#[test]
fn every_example_goes_on_reading_customers_back_after_a_restore_at_any_line() {
    let (mut total_timers, mut total_texts) = (0, (0, 0));
    for name in nudge_test_support::example_names() {
        let (bundle, events) = example(&name);
        let lines: Vec<&str> = events.lines().collect();
        let (mut read_back, mut timers) = (0, 0);
        for cut in 0..=lines.len() {
            for keep in [
                Keep::Paged { every: 1 },
                Keep::Paged { every: 3 },
                Keep::Pipelined { every: 2 },
                Keep::ReadAhead { every: 3 },
            ] {
                let (r, t, (gone, read), _) = assert_restores_paged(&bundle, &lines, &[cut], keep);
                read_back += r;
                timers += t;
                total_texts.0 += gone;
                total_texts.1 += read;
            }
        }
        total_timers += timers;
        // Customers with nothing live, met again later: some examples have
        // none (one customer, or each met once).
        eprintln!("{name}: {read_back} customers read back, {timers} timers let go");
        assert!(
            read_back > 0 || lines.len() < 8,
            "{name}: nothing was read back"
        );
    }
    // Waits of a day and more, date triggers and schedules: timers an
    // hour or more ahead are let go and read back in many examples.
    assert!(total_timers > 100, "{total_timers} timers let go");
    // Identities' texts are let go after each commit, and a customer met
    // again is found by name in the store.
    assert!(total_texts.0 > 100, "{} texts let go", total_texts.0);
    assert!(
        total_texts.1 > 100,
        "{} identities read back",
        total_texts.1
    );
}

#[test]
fn every_example_decides_the_same_with_its_customers_frozen() {
    for name in nudge_test_support::example_names() {
        let (bundle, events) = example(&name);
        let lines: Vec<&str> = events.lines().collect();
        let mut read_back = 0;
        for cut in [0, lines.len() / 3, lines.len()] {
            for every in [1, 3] {
                let (r, _) = assert_restores(&bundle, &lines, &[cut], Keep::Frozen { every });
                read_back += r;
            }
        }
        assert!(
            read_back > 0 || lines.len() < 8,
            "{name}: no customer was decoded"
        );
    }
}

/// 4,000 generated calls, one in twenty broken.
fn generated_stream() -> String {
    let mut config = nudge_gen::GenConfig::new(4_000);
    config.bad_rate = 0.05;
    config.seed = 11;
    let mut out = Vec::new();
    nudge_gen::generate(&config, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_generated_stream_goes_on_from_its_rows_after_several_restores() {
    let (bundle, _) = example("cart_recovery");
    let text = generated_stream();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let cuts: Vec<usize> = (1..12).map(|i| i * n / 12).collect();
    let _ = assert_restores(&bundle, &lines, &cuts, Keep::Rows { every: 1 });
    let _ = assert_restores(&bundle, &lines, &cuts, Keep::Rows { every: 97 });
    for every in [1, 50] {
        let (_, timers) = assert_restores(&bundle, &lines, &cuts, Keep::Pipelined { every });
        assert!(timers > 20, "{timers} timers let go");
    }
    let (decoded, _) = assert_restores(&bundle, &lines, &cuts, Keep::Frozen { every: 97 });
    assert!(decoded > 100, "{decoded} decoded");
    let mut one_by_one = 0;
    for every in [1, 97] {
        let (read_back, timers, (texts, read), (one, _)) =
            assert_restores_paged(&bundle, &lines, &cuts, Keep::Paged { every });
        assert!(read_back > 100, "{read_back} read back");
        assert!(timers > 20, "{timers} timers let go");
        assert!(texts > 100, "{texts} identities' texts let go");
        assert!(read > 100, "{read} identities read back");
        one_by_one = one;
    }
    // Reading each 97 lines' customers, and their timers', ahead together
    // decides the same, and leaves few to read one at a time (those a
    // merge reaches, or a timer set out of order).
    let (read_back, _, _, (one, together)) =
        assert_restores_paged(&bundle, &lines, &cuts, Keep::ReadAhead { every: 97 });
    eprintln!("read ahead: {one} one at a time, {together} together; without: {one_by_one}");
    assert!(read_back > 100, "{read_back} read back");
    assert!(together > 100, "{together} read together");
    assert!(
        one * 8 < one_by_one,
        "{one} read one at a time, against {one_by_one}"
    );
}

#[test]
fn a_generated_stream_goes_on_after_several_restores() {
    let (bundle, _) = example("cart_recovery");
    let text = generated_stream();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert_restores(
        &bundle,
        &lines,
        &[1, n / 3, n / 3 + 1, 2 * n / 3, n],
        Keep::Whole,
    );
}

const BASE: &str = r#"
message reminder(amount: money) {
  channel email
  subject "reminder {amount}"
  body "Come back"
}
flow cart {
  trigger checkout_started
  exit on order_completed
  let amount = trigger.value
  reminder: wait 1d
  send reminder(amount)
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
    )
}

fn checkout(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Checkout Started","userId":"{id}","timestamp":"{at}","properties":{{"value":12.5}}}}"#
    )
}

#[test]
fn a_release_running_rebased_code_is_restored() {
    // The second bundle adds a trait: the first release's instances then
    // run rebased code that exists only in the engine.
    let v1 = common::bundle(BASE);
    let v2 = common::bundle(&format!(
        "{BASE}\nprofile {{\n  tier: string = \"none\"\n}}\n"
    ));
    let arena = common::arena();
    let mut engine = new_engine(&v1);
    common::feed(
        &mut engine,
        &[
            identify("a", "2026-01-01T10:00:00Z"),
            checkout("a", "2026-01-01T10:00:00Z"),
        ],
    );
    let mut rows = MemoryRows::default();
    rows.apply(engine.take_changes().unwrap());
    engine.deploy(&v2, arena).expect("deploys");
    let deployed = engine.take_changes().unwrap();
    assert!(
        !deployed.full,
        "a deploy rewrites what it moved, not the whole state"
    );
    assert_eq!(deployed.releases.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        (deployed.customers.len(), deployed.instances.len()),
        (1, 1),
        "the customer and the instance moved onto the new tables"
    );
    rows.apply(deployed);
    common::feed(
        &mut engine,
        &[
            identify("b", "2026-01-01T11:00:00Z"),
            checkout("b", "2026-01-01T11:00:00Z"),
        ],
    );
    rows.apply(engine.take_changes().unwrap());
    let bytes = engine.checkpoint().unwrap();

    let mut restored = new_engine(&v2);
    restored.restore(&bytes, &v2, arena).expect("restores");
    assert_eq!(restored.releases().count(), 2);
    // The same state kept as rows: taken before the deploy, with it, and
    // after.
    let mut from_rows = new_engine(&v2);
    from_rows
        .restore_rows(rows.rows(), &v2, arena)
        .expect("restores from rows");
    assert_eq!(from_rows.releases().count(), 2);
    restored.drain();
    engine.drain();
    from_rows.drain();
    assert_eq!(common::sent(&from_rows), common::sent(&engine));
    assert_eq!(common::sent(&restored), common::sent(&engine));
    assert_eq!(
        common::sent(&restored).len(),
        2,
        "{:?}",
        common::sent(&restored)
    );
}

#[test]
fn a_damaged_checkpoint_is_refused_and_changes_nothing() {
    let (bundle, events) = example("cart_recovery");
    let mut engine = new_engine(&bundle);
    for line in events.lines() {
        let _ = ingest::apply_line(&mut engine, line);
    }
    let mut bytes = engine.checkpoint().unwrap();
    let len = bytes.len();
    bytes.truncate(len / 2);
    let mut other = new_engine(&bundle);
    let err = other
        .restore(&bytes, &bundle, common::arena())
        .expect_err("half a checkpoint");
    assert!(err.to_string().contains("cannot be read"), "{err}");
    assert_eq!(other.stats(), new_engine(&bundle).stats());
    // Another layout version is named as such.
    let mut versioned = engine.checkpoint().unwrap();
    versioned[0] = 99;
    let err = other
        .restore(&versioned, &bundle, common::arena())
        .expect_err("another version");
    assert!(err.to_string().contains("layout version 99"), "{err}");
    // Rows whose head is cut short, or that name a slot twice.
    let mut rows = MemoryRows::default();
    rows.apply(engine.take_changes().unwrap());
    let mut cut = rows.rows();
    cut.head.truncate(cut.head.len() / 2);
    let err = other
        .restore_rows(cut, &bundle, common::arena())
        .expect_err("half a head");
    assert!(err.to_string().contains("the head"), "{err}");
    let mut doubled = rows.rows();
    if let Some(first) = doubled.instances.first().cloned() {
        doubled.instances.push(first);
        let err = other
            .restore_rows(doubled, &bundle, common::arena())
            .expect_err("a slot twice");
        assert!(err.to_string().contains("stored twice"), "{err}");
    }
    let mut gap = rows.rows();
    gap.nodes.remove(0);
    let err = other
        .restore_rows(gap, &bundle, common::arena())
        .expect_err("a node missing");
    assert!(err.to_string().contains("identity node"), "{err}");
    assert_eq!(other.stats(), new_engine(&bundle).stats());
}

#[test]
fn timers_of_segments_that_change_with_time_survive_a_restore() {
    let bundle = nudge_test_support::build(&[(
        "test.flow",
        r#"
segment lapsed = days_between(profile.last_order_at ?? now(), now()) >= 20
message come_back() {
  channel email
  subject "We miss you"
  body "x"
}
flow win_back {
  trigger entering lapsed
  entry always
  send come_back()
}
"#,
    )]);
    // Customers whose orders lapse one after another, with later calls
    // (new orders for some) carrying the clock past each lapse.
    let mut lines = Vec::new();
    for day in 1..=40u32 {
        let id = day % 7;
        let (month, d) = if day <= 31 { (1, day) } else { (2, day - 31) };
        lines.push(format!(
            r#"{{"type":"identify","userId":"u{id}","timestamp":"2026-{month:02}-{d:02}T09:00:00Z","traits":{{"email":"u{id}@example.com","consent":{{"email":true}},"last_order_at":"2026-{month:02}-{d:02}T08:00:00Z"}}}}"#
        ));
    }
    lines.push(
        r#"{"type":"identify","userId":"late","timestamp":"2026-06-01T00:00:00Z","traits":{}}"#
            .into(),
    );
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut whole = new_engine(&bundle);
    for line in &lines {
        ingest::apply_line(&mut whole, line).unwrap();
    }
    assert_eq!(
        whole.sink().outbox.len(),
        7,
        "each customer lapses once, at the end"
    );
    for cut in 0..=lines.len() {
        assert_restores(&bundle, &lines, &[cut], Keep::Whole);
        assert_restores(&bundle, &lines, &[cut], Keep::Rows { every: 3 });
    }
}

/// A pager whose store gives damaged rows.
struct Damaged;

impl Pager for Damaged {
    fn customer(&mut self, _: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(vec![0xff, 0xff, 0xff]))
    }

    fn timers(&mut self, _: nudge_runtime::timers::ToRead) -> Result<Vec<Vec<u8>>, String> {
        Ok(vec![vec![0xff, 0xff, 0xff]])
    }

    fn node_named(&mut self, _: &[u8]) -> Result<Option<u32>, String> {
        Ok(Some(u32::MAX))
    }

    fn node(&mut self, _: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(vec![0xff, 0xff, 0xff]))
    }
}

#[test]
fn a_schema_deploy_leaves_stored_customers_to_move_onto_the_new_tables_when_read() {
    let v1 = common::bundle(BASE);
    let v2 = common::bundle(&format!(
        "{BASE}\nprofile {{\n  tier: string = \"none\"\n}}\n"
    ));
    let arena = common::arena();
    let lines = carts(6);
    // With no store; with one to read customers back from; with one and
    // a budget of no customer; and with no store and that budget (the
    // customers held frozen, as the bytes of their rows).
    let run = |paged: bool, budget: Option<usize>| {
        let (shared, mut engine) = budgeted_engine_and_rows(&v1, paged, budget);
        common::feed(&mut engine, &lines[..6]);
        // The three customers' reminders go out and end; they are let go.
        engine.advance_through(chrono_ms("2026-01-02T13:30:00Z"));
        shared
            .0
            .lock()
            .unwrap()
            .apply(engine.take_changes().unwrap());
        let gone = engine.let_go(0, &[]);
        let before = engine.paging();
        engine.deploy(&v2, arena).expect("deploys");
        let deployed = engine.paging();
        let changes = engine.take_changes().unwrap();
        assert!(
            !changes.full,
            "the take writes what changed, not everything"
        );
        shared.0.lock().unwrap().apply(changes);
        common::feed(&mut engine, &lines[6..]);
        engine.drain();
        let tiers: Vec<_> = (0..6)
            .map(|i| engine.profile_field(&format!("c{i}"), "tier"))
            .collect();
        (engine.into_sink(), gone, before, deployed, tiers)
    };
    let (whole, none, _, deployed, whole_tiers) = run(false, None);
    assert_eq!(none, 0, "nothing is let go without a pager");
    assert_eq!((deployed.in_memory, deployed.frozen), (3, 0));
    for (paged, budget, what) in [
        (true, None, "paged"),
        (true, Some(0), "paged with a budget"),
        (false, Some(0), "frozen"),
    ] {
        let (got, gone, before, deployed, tiers) = run(paged, budget);
        if paged {
            assert_eq!(gone, 3, "the three customers with nothing live are let go");
        }
        assert_eq!(
            (deployed.customers, deployed.in_memory),
            (3, 0),
            "the deploy reads no stored customer back ({what})"
        );
        assert_eq!(deployed.read_back, before.read_back, "{what}");
        assert_eq!(
            deployed.frozen,
            u64::from(!paged) * 3,
            "frozen rows stay frozen ({what})"
        );
        assert_eq!(tiers, whole_tiers, "{what}");
        assert_eq!(got.outbox, whole.outbox, "sends, {what}");
        assert_eq!(got.records, whole.records, "records, {what}");
    }
    assert!(
        whole_tiers.iter().all(|t| t.is_some()),
        "every customer has the new trait: {whole_tiers:?}"
    );
}

#[test]
fn a_deploy_arms_new_triggers_in_parts_with_a_take_between_and_decides_as_at_once() {
    let v1 = common::bundle(BASE);
    let v2 = common::bundle(&format!(
        "{BASE}\nmessage hello() {{\n  channel email\n  subject \"hello\"\n  body \"Hi\"\n}}\n\
         flow daily {{\n  trigger every day at 09:00\n  send hello()\n}}\n"
    ));
    let arena = common::arena();
    let lines = carts(6);
    let end = chrono_ms("2026-01-05T00:00:00Z");
    // Every customer stored, then a deploy whose schedule reaches all six.
    let stored = |budget: Option<usize>| {
        let (shared, mut engine) = budgeted_engine_and_rows(&v1, true, budget);
        common::feed(&mut engine, &lines);
        // The six reminders go out and their instances end.
        engine.advance_through(chrono_ms("2026-01-02T16:00:00Z"));
        let changes = engine.take_changes().unwrap();
        shared.0.lock().unwrap().apply(changes);
        assert_eq!(engine.let_go(0, &[]), 6);
        (shared, engine)
    };
    let (_, mut whole) = stored(None);
    whole.deploy(&v2, arena).expect("deploys");
    assert!(!whole.arming(), "without a budget the deploy arms at once");
    whole.advance_through(end);
    let whole = whole.into_sink();
    let hellos = whole.outbox.iter().filter(|m| m.message == "hello").count();
    assert_eq!(hellos, 12, "two mornings for each of the six");

    let (shared, mut engine) = stored(Some(2));
    engine.deploy(&v2, arena).expect("deploys");
    assert!(
        engine.arming(),
        "with a budget and a store, arming waits for parts"
    );
    assert_eq!(
        engine.paging().in_memory,
        0,
        "the deploy itself read no one back"
    );
    let mut parts = 0;
    let mut peak = 0;
    while engine.arming() {
        engine.arm_part(2).unwrap();
        peak = peak.max(engine.paging().in_memory + engine.paging().frozen);
        shared
            .0
            .lock()
            .unwrap()
            .apply(engine.take_changes().unwrap());
        engine.let_go(2, &[]);
        parts += 1;
        if parts == 1 {
            // A restart between parts goes on where the take left off.
            let rows = shared.0.lock().unwrap().rows_without_customers();
            let mut back = Engine::new(
                &v2,
                MemorySink::default(),
                Config {
                    customers_in_memory: Some(2),
                    ..config()
                },
                i64::MIN,
            );
            back.set_pager(Box::new(shared.clone()));
            back.restore_rows(rows, &v2, arena).expect("restores");
            assert!(back.arming(), "the head keeps the arming still to do");
            let mut back_parts = 1;
            while back.arming() {
                back.arm_part(2).unwrap();
                back_parts += 1;
            }
            assert_eq!(back_parts, 3);
            back.advance_through(end);
            // Its sink starts empty: the schedule's sends are what follow.
            let hellos: Vec<_> = whole
                .outbox
                .iter()
                .filter(|m| m.message == "hello")
                .cloned()
                .collect();
            assert_eq!(back.into_sink().outbox, hellos, "restarted between parts");
        }
    }
    assert_eq!(parts, 3, "six customers, two a part");
    // At once, all six would be held (records or frozen rows) until the
    // one take; in parts, the budget kept plus the part's own.
    assert!(peak <= 4, "{peak}");
    engine.advance_through(end);
    let got = engine.into_sink();
    assert_eq!(got.outbox, whole.outbox);
    assert_eq!(got.records, whole.records);

    // An input between parts arms the rest first: nothing is decided on
    // half-armed customers.
    let (_, mut engine) = stored(Some(2));
    engine.deploy(&v2, arena).expect("deploys");
    engine.arm_part(2).unwrap();
    assert!(engine.arming());
    engine.advance_through(end);
    assert!(!engine.arming());
    assert_eq!(engine.into_sink().outbox, whole.outbox);
}

#[test]
fn customers_whose_goal_windows_passed_are_let_go_without_a_call() {
    let bundle = common::bundle(&BASE.replace(
        "  exit on order_completed\n",
        "  exit on order_completed\n  goal order_completed within 2d\n",
    ));
    let lines = carts(6);
    let (shared, mut engine) = budgeted_engine_and_rows(&bundle, true, Some(0));
    common::feed(&mut engine, &lines);
    // The reminders go out and the instances end; the goals are watched
    // for two days from each cart.
    engine.advance_through(chrono_ms("2026-01-02T16:00:00Z"));
    let take = |engine: &mut Engine<'_, MemorySink>| {
        let changes = engine.take_changes().unwrap();
        shared.0.lock().unwrap().apply(changes);
    };
    take(&mut engine);
    assert_eq!(engine.let_go(0, &[]), 0, "goals watched keep them");
    // Days later, with no call since: nothing reads those goals any more.
    engine.advance_through(chrono_ms("2026-01-05T00:00:00Z"));
    take(&mut engine);
    assert_eq!(engine.let_go(0, &[]), 6);
    assert_eq!(engine.paging().in_memory, 0);
    // Read back, they decide as before: a late order counts for no goal.
    common::feed(
        &mut engine,
        &[r#"{"type":"track","event":"Order Completed","userId":"c0","timestamp":"2026-01-05T01:00:00Z","properties":{"order_id":"o1","total":12.5}}"#.to_string()],
    );
    assert_eq!(engine.stats().flows["cart"].conversions, 0);
}

#[test]
fn a_step_of_the_clock_that_fires_many_timers_keeps_to_the_budget() {
    let bundle = common::bundle(BASE);
    let lines = carts(6);
    // With no budget; with a store and a budget of one; with no store and
    // that budget.
    let run = |paged: bool, budget: Option<usize>| {
        let (shared, mut engine) = budgeted_engine_and_rows(&bundle, paged, budget);
        common::feed(&mut engine, &lines);
        shared
            .0
            .lock()
            .unwrap()
            .apply(engine.take_changes().unwrap());
        engine.let_go(0, &[]);
        let waiting = engine.paging();
        // One step fires the six reminders; each instance ends with its send.
        engine.advance_through(chrono_ms("2026-01-03T00:00:00Z"));
        let fired = engine.paging();
        shared
            .0
            .lock()
            .unwrap()
            .apply(engine.take_changes().unwrap());
        let let_go = engine.let_go(budget.unwrap_or(usize::MAX), &[]);
        let emails: Vec<_> = (0..6)
            .map(|i| engine.profile_field(&format!("c{i}"), "email"))
            .collect();
        (engine.into_sink(), waiting, fired, let_go, emails)
    };
    let (whole, waiting, fired, _, emails) = run(false, None);
    assert_eq!((waiting.in_memory, fired.in_memory), (6, 6));
    assert_eq!(whole.outbox.len(), 6);
    for (paged, what) in [(true, "paged"), (false, "frozen")] {
        let (got, waiting, fired, let_go, got_emails) = run(paged, Some(1));
        assert_eq!(
            waiting.in_memory, 6,
            "customers with a live instance stay records ({what})"
        );
        assert_eq!(
            (fired.in_memory, fired.frozen),
            (1, 5),
            "each one the step fired is frozen once over the budget ({what})"
        );
        if paged {
            assert_eq!(let_go, 5, "once written, the frozen rows go");
        }
        assert_eq!(got.outbox, whole.outbox, "sends, {what}");
        assert_eq!(got.records, whole.records, "records, {what}");
        assert_eq!(got_emails, emails, "{what}");
    }
}

#[test]
fn rows_of_every_generation_of_tables_read_after_two_schema_deploys() {
    let v1 = common::bundle(BASE);
    let v2 = common::bundle(&format!(
        "{BASE}\nprofile {{\n  tier: string = \"none\"\n}}\n"
    ));
    let v3 = common::bundle(&format!(
        "{BASE}\nprofile {{\n  tier: string = \"none\"\n  points: int = 7\n}}\n"
    ));
    let arena = common::arena();
    let lines = carts(6);
    let shared = Shared::default();
    let mut engine = Engine::new(&v1, MemorySink::default(), config(), i64::MIN);
    engine.set_pager(Box::new(shared.clone()));
    let commit = |engine: &mut Engine<'_, MemorySink>| {
        shared
            .0
            .lock()
            .unwrap()
            .apply(engine.take_changes().unwrap());
        engine.let_go(0, &[])
    };
    // c0's row is of the first tables, c1's of the second, c2's of the
    // third; the whole store is read once lazily and once whole.
    common::feed(&mut engine, &lines[..2]);
    engine.advance_through(chrono_ms("2026-01-02T13:30:00Z"));
    assert_eq!(commit(&mut engine), 1);
    engine.deploy(&v2, arena).expect("deploys");
    common::feed(&mut engine, &lines[2..4]);
    engine.advance_through(chrono_ms("2026-01-02T13:30:00Z"));
    assert_eq!(commit(&mut engine), 1, "c0 was never read back");
    engine.deploy(&v3, arena).expect("deploys");
    common::feed(&mut engine, &lines[4..6]);
    engine.advance_through(chrono_ms("2026-01-02T13:30:00Z"));
    assert_eq!(commit(&mut engine), 1);
    assert_eq!(engine.paging().read_back, 0);
    let stored = shared.0.lock().unwrap().clone();
    for lazily in [true, false] {
        let mut back = Engine::new(&v3, MemorySink::default(), config(), i64::MIN);
        back.set_pager(Box::new(shared.clone()));
        let rows = if lazily {
            stored.rows_without_customers()
        } else {
            stored.rows()
        };
        back.restore_rows(rows, &v3, arena).expect("restores");
        for c in ["c0", "c1", "c2"] {
            assert_eq!(
                back.profile_field(c, "points"),
                Some(nudge_bytecode::Value::Int(7)),
                "{c}, lazily: {lazily}"
            );
            assert_eq!(
                back.profile_field(c, "tier"),
                Some(nudge_bytecode::Value::Str("none".into())),
                "{c}, lazily: {lazily}"
            );
            assert_eq!(
                back.profile_field(c, "email"),
                engine.profile_field(c, "email"),
                "the values the first tables held are kept"
            );
            assert!(
                back.profile_field(c, "email")
                    .is_some_and(|e| e != nudge_bytecode::Value::None)
            );
        }
    }
}

#[test]
fn a_deploy_that_changes_only_code_reads_no_customer_or_timer_back() {
    let v1 = common::bundle(BASE);
    // A new message text and a second reminder: instances waiting at
    // `reminder` are carried to the new flow, still woken by the timers
    // they had (some of them left in the store).
    let changed = BASE.replace("Come back", "Your cart is waiting").replace(
        "  send reminder(amount)\n}",
        "  send reminder(amount)\n  wait 1h\n  send reminder(amount)\n}",
    );
    assert_ne!(changed, BASE);
    let v2 = common::bundle(&changed);
    let run = |paged: bool| {
        let (shared, mut engine) = engine_and_rows(&v1, paged);
        common::feed(&mut engine, &carts(6));
        engine.advance_through(chrono_ms("2026-01-02T13:30:00Z"));
        let changes = engine.take_changes().unwrap();
        let seq = changes.timer_seq;
        shared.0.lock().unwrap().apply(changes);
        let let_go = (engine.let_go(0, &[]), engine.let_timers_go(seq));
        let before = engine.paging();
        let report = engine.deploy(&v2, common::arena()).expect("deploys");
        let after = engine.paging();
        assert_eq!(
            (after.read_back, after.in_memory),
            (before.read_back, before.in_memory),
            "the stored customers stay in the store"
        );
        let timers = engine.timers_in_memory();
        engine.drain();
        (engine.into_sink(), let_go, timers, report)
    };
    let (whole, _, _, whole_report) = run(false);
    let (paged, let_go, timers_in_memory, report) = run(true);
    assert_eq!(
        let_go,
        (4, 1),
        "four customers whose reminders went out; the reminder due at 15:00"
    );
    assert_eq!(timers_in_memory, 1, "the deploy read no timer back");
    assert_eq!(report, whole_report);
    assert!(
        report.to_string().contains("carried"),
        "the waiting instances move to the new flow: {report}"
    );
    assert_eq!(paged.outbox, whole.outbox, "sends");
    assert_eq!(paged.outbox.len(), 4 + 2 * 2, "{:?}", paged.outbox);
    assert_eq!(paged.records, whole.records, "records");
}

#[test]
fn a_customer_that_cannot_be_read_back_is_a_fault_not_a_panic() {
    let bundle = common::bundle(BASE);
    let shared = Shared::default();
    let mut engine = new_engine(&bundle);
    engine.set_pager(Box::new(shared.clone()));
    common::feed(&mut engine, &[identify("a", "2026-01-01T10:00:00Z")]);
    shared
        .0
        .lock()
        .unwrap()
        .apply(engine.take_changes().unwrap());
    assert_eq!(engine.let_go(0, &[]), 1);
    engine.set_pager(Box::new(Damaged));
    let refused = ingest::apply_line(&mut engine, &checkout("a", "2026-01-01T11:00:00Z"));
    assert!(
        refused.is_err(),
        "the call is not applied to a blank customer"
    );
    let fault = engine.page_fault().expect("a fault");
    assert!(fault.contains("customer 0"), "{fault}");
    assert!(
        engine.take_changes().is_err(),
        "no change is taken after a fault"
    );
    assert!(engine.into_sink().outbox.is_empty());
}

#[test]
fn timers_not_due_soon_wait_in_the_store_and_fire_on_time() {
    let bundle = common::bundle(BASE);
    let lines = carts(4);
    let run = |paged: bool| {
        let (shared, mut engine) = engine_and_rows(&bundle, paged);
        common::feed(&mut engine, &lines);
        let changes = engine.take_changes().unwrap();
        let seq = changes.timer_seq;
        shared.0.lock().unwrap().apply(changes);
        // Four reminders, a day after each checkout: none due within the hour.
        let gone = engine.let_timers_go(seq);
        let held = (engine.timers_in_memory(), engine.timers_pending());
        // Two are read back and fire; the others wait in the store still.
        engine.advance_through(chrono_ms("2026-01-02T11:30:00Z"));
        let after_two = (engine.timers_in_memory(), engine.timers_pending());
        let sent_two = engine.sink().outbox.len();
        engine.drain();
        assert!(engine.page_fault().is_none(), "{:?}", engine.page_fault());
        (engine.into_sink(), gone, held, after_two, sent_two)
    };
    let (whole, none, whole_held, _, whole_two) = run(false);
    let (paged, gone, held, after_two, two) = run(true);
    assert_eq!(none, 0, "nothing is let go without a store");
    assert_eq!(whole_held, (4, 4));
    assert_eq!(gone, 4);
    assert_eq!(held, (0, 4), "in the store, still pending");
    // Read back through an hour past the clock: the third is in memory.
    assert_eq!(
        after_two,
        (1, 2),
        "two fired; the third read back, the fourth stored"
    );
    assert_eq!((two, whole_two), (2, 2));
    assert_eq!(paged.outbox, whole.outbox, "sends");
    assert_eq!(paged.records, whole.records, "records");
}

#[test]
fn a_timer_that_cannot_be_read_back_is_a_fault_not_a_panic() {
    let bundle = common::bundle(BASE);
    let shared = Shared::default();
    let mut engine = new_engine(&bundle);
    engine.set_pager(Box::new(shared.clone()));
    let at = "2026-01-01T10:00:00Z";
    common::feed(&mut engine, &[identify("a", at), checkout("a", at)]);
    let changes = engine.take_changes().unwrap();
    let seq = changes.timer_seq;
    shared.0.lock().unwrap().apply(changes);
    assert_eq!(engine.let_timers_go(seq), 1);
    engine.set_pager(Box::new(Damaged));
    engine.advance_through(chrono_ms("2026-01-03T00:00:00Z"));
    let fault = engine.page_fault().expect("a fault");
    assert!(fault.contains("timers due from"), "{fault}");
    assert!(
        engine.take_changes().is_err(),
        "no change is taken after a fault"
    );
    assert!(engine.into_sink().outbox.is_empty());
}

#[test]
fn an_engine_restored_from_a_whole_state_lets_its_timers_go() {
    let bundle = common::bundle(BASE);
    let mut first = new_engine(&bundle);
    common::feed(&mut first, &carts(4));
    let bytes = first.checkpoint().expect("a checkpoint");
    let (shared, mut engine) = engine_and_rows(&bundle, true);
    engine
        .restore(&bytes, &bundle, common::arena())
        .expect("restores");
    let changes = engine.take_changes().unwrap();
    let seq = changes.timer_seq;
    shared.0.lock().unwrap().apply(changes);
    assert_eq!(
        engine.let_timers_go(seq),
        4,
        "the four reminders a day ahead"
    );
}

/// `n` customers, an hour apart, each identified and starting a checkout.
fn carts(n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| {
            let id = format!("c{i}");
            let at = format!("2026-01-01T1{i}:00:00Z");
            [identify(&id, &at), checkout(&id, &at)]
        })
        .collect()
}

/// Rows for a test to write and an engine that reads them back when
/// `paged`, holding at most `budget` customers as records.
fn budgeted_engine_and_rows(
    bundle: &Bundle,
    paged: bool,
    budget: Option<usize>,
) -> (Shared, Engine<'_, MemorySink>) {
    let shared = Shared::default();
    let config = Config {
        customers_in_memory: budget,
        ..config()
    };
    let mut engine = Engine::new(bundle, MemorySink::default(), config, i64::MIN);
    if paged {
        engine.set_pager(Box::new(shared.clone()));
    }
    (shared, engine)
}

/// Rows for a test to write and an engine that reads them back when `paged`.
fn engine_and_rows(bundle: &Bundle, paged: bool) -> (Shared, Engine<'_, MemorySink>) {
    let shared = Shared::default();
    let mut engine = new_engine(bundle);
    if paged {
        engine.set_pager(Box::new(shared.clone()));
    }
    (shared, engine)
}

fn chrono_ms(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_millis()
}
