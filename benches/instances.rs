//! Memory per sleeping instance, and the cost of exit-rule checks as the
//! number of waiting instances grows.
//!
//! `cargo bench --bench instances` (set NUDGE_BENCH_INSTANCES to a comma list
//! of counts; default 1000,100000,1000000).
//!
//! Memory is counted by a global allocator that tracks live bytes, so the
//! figure is exact rather than read from the process size. Each count runs
//! twice with the same customers: once with a flow whose trigger never
//! fires (customers only) and once with every customer asleep in a 30-day
//! wait; the difference divided by the count is the cost of one sleeping
//! instance (instance record and its share of the slot table, timer, and the
//! customer's per-flow entry and instance index).
//!
//! The exit cost is the time to apply 100,000 purchases that each end one
//! waiting instance, per purchase.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use nudge_bytecode::Bundle;
use nudge_bytecode::Channel;
use nudge_channels::Outgoing;
use nudge_runtime::engine::{Config, Engine, Sink};
use nudge_runtime::ingest::{self, Decoded};
use nudge_runtime::record::{Membership, Record};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// What `nudge` allocates with (see `src/main.rs`), so that timings are the
/// binary's: with the system allocator they depend on the free lists the
/// previous engine left behind more than on the engine's own work.
static MI: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: forwards to mimalloc unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { MI.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { MI.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `realloc` on the wrapped allocator.
        unsafe { MI.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: &str = r#"
message reminder() {
  channel email
  subject "Your cart"
  body "Come back"
}
"#;

fn bundle(trigger: &str) -> Bundle {
    let src = format!(
        "{MESSAGES}\nflow cart {{\n  trigger {trigger}\n  exit on order_completed\n  wait 30d\n  send reminder()\n}}\n"
    );
    nudge_test_support::build(&[("bench.flow", &src)])
}

fn checkout(i: usize) -> String {
    format!(
        r#"{{"type":"track","event":"Checkout Started","userId":"u{i}","timestamp":"2026-01-05T10:00:00Z","properties":{{"value":10}}}}"#
    )
}

fn purchase(i: usize) -> String {
    format!(
        r#"{{"type":"track","event":"Order Completed","userId":"u{i}","timestamp":"2026-01-06T10:00:00Z","properties":{{"order_id":"o{i}"}}}}"#
    )
}

/// Drops what the engine reports: the trace is the sink's memory, not the
/// instances'.
struct Discard;

impl Sink for Discard {
    fn deliver(&mut self, _: Channel, _: &Outgoing) -> Result<(), String> {
        Ok(())
    }
    fn record(&mut self, _: Record) {}
    fn membership(&mut self, _: Membership) {}
}

/// Live bytes after applying one checkout per customer.
fn load(bundle: &Bundle, n: usize) -> (isize, Engine<'_, Discard>) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut engine = Engine::new(bundle, Discard, Config::default(), i64::MIN);
    for i in 0..n {
        ingest::apply_line(&mut engine, &checkout(i)).expect("applies");
    }
    (LIVE.load(Ordering::Relaxed) - before, engine)
}

/// Set in the child process that measures one count.
const ONE: &str = "NUDGE_BENCH_ONE_COUNT";

fn main() {
    if let Some(n) = std::env::var(ONE).ok().and_then(|n| n.parse().ok()) {
        return measure(n);
    }
    let counts: Vec<usize> = std::env::var("NUDGE_BENCH_INSTANCES")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "size of an instance record: {} bytes",
        std::mem::size_of::<Option<nudge_runtime::engine::Instance>>()
    );
    println!(
        "{:>10} {:>16} {:>16} {:>18}",
        "instances", "bytes/instance", "exit ns/event", "instances alive"
    );
    // Each count in a process of its own: timings taken in a heap that
    // earlier engines had grown and freed swung by half from run to run,
    // with whether the allocator had handed that memory back to the system
    // (most of the time went to page faults).
    let me = std::env::current_exe().expect("the bench knows its path");
    for n in counts {
        let status = std::process::Command::new(&me)
            .env(ONE, n.to_string())
            .status()
            .expect("the bench runs itself");
        assert!(status.success(), "measuring {n} instances failed");
    }
}

/// Measures `n` sleeping instances and prints one row.
fn measure(n: usize) {
    let sleeping = bundle("checkout_started");
    // Same customers and events, but the flow never starts.
    let idle = bundle("order_cancelled");
    // Statics some code fills on first use would otherwise count against
    // the first engine loaded.
    drop(load(&sleeping, 10));
    drop(load(&idle, 10));

    // The timed engine first, in a fresh heap.
    let (with, mut engine) = load(&sleeping, n);
    let live = engine.instances().count();
    assert_eq!(live, n, "every customer is asleep");

    // Purchases by the first 100,000 customers (or all, when fewer).
    let m = n.min(100_000);
    // Decoded before the clock starts: the exits are what is timed.
    let lines: Vec<String> = (0..m).map(purchase).collect();
    let mut calls: Vec<_> = lines
        .iter()
        .map(|line| match engine.decoder().decode(line) {
            Decoded::Call(parts) => parts,
            Decoded::Bad(r) => panic!("{line}: {r}"),
        })
        .collect();
    let t = Instant::now();
    for parts in &mut calls {
        engine.advance_before(parts.at());
        let (call, notes) = parts.split();
        engine.apply_noted(call, notes).expect("applies");
    }
    let per_event = t.elapsed().as_nanos() as f64 / m as f64;
    assert_eq!(
        engine.instances().count(),
        n - m,
        "each purchase ended one instance"
    );
    drop(engine);

    let (base, engine) = load(&idle, n);
    drop(engine);
    let per_instance = (with - base) as f64 / n as f64;
    println!("{n:>10} {per_instance:>16.0} {per_event:>16.0} {live:>18}");
}
