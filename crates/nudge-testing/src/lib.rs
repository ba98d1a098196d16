//! Runs the `test` blocks of a Nudge project.
//!
//! Each test becomes a list of Segment calls and a list of expectations. The
//! calls go through a fresh [`nudge_runtime::engine::Engine`] with an
//! in-memory sink: the very engine `nudge run` uses, on its virtual clock, so
//! a test can never pass on behaviour production would not show. Tests are
//! independent, so they run in parallel.
//!
//! Time in a test: the test starts at midnight UTC of the day of its earliest
//! absolute `at` instant, or at [`DEFAULT_START`] (Monday 2026-01-05) when it
//! names none. `at 10:00` is that first day at 10:00 UTC and `at +2d` is two
//! days after the start. `run 3d` moves the clock three days past the
//! latest call written before it (or past the previous `run`), firing every
//! timer due. Expectations are checked once the clock has run.

mod eval;
mod expect;
pub mod report;
mod scenario;
mod timeline;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nudge_bytecode::Bundle;
use nudge_compiler::{Analysis, Project};
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::millis::ms;

pub use scenario::DEFAULT_START;

/// The result of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// The file that declares it.
    pub file: String,
    /// The line of its `test` keyword, from 1.
    pub line: usize,
    /// What did not hold; empty when the test passed.
    pub failures: Vec<Failure>,
    /// How long the test took to run (wall-clock), for JUnit's `time`.
    pub duration: Duration,
}

impl TestResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One expectation that did not hold (or a call the engine refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The statement as written.
    pub expected: String,
    /// Its line, from 1.
    pub line: usize,
    /// What happened instead, one fact per line.
    pub actual: Vec<String>,
    /// The timelines of the customers concerned: the id, then one line per happening.
    pub timelines: Vec<(String, Vec<String>)>,
}

/// Runs every test of a checked, lowered project whose name contains
/// `filter` (ignoring case), in source order of the results. The tests are
/// read from the trees of the project's analysis, and their `where`
/// conditions compiled from its typed program: nothing is parsed or
/// checked again.
pub fn run_tests(
    project: &Project,
    analysis: &Analysis,
    bundle: &Bundle,
    filter: Option<&str>,
) -> Vec<TestResult> {
    let parsed: Vec<_> = project
        .user_files()
        .map(|id| {
            let src = project.sources.get(id);
            // An analysis made by `check` has every user file's tree.
            let tree = analysis
                .tree(id)
                .cloned()
                .unwrap_or_else(|| Arc::new(nudge_syntax::parse(id, &src.text)));
            (id, src, tree)
        })
        .collect();
    let conditions = eval::Conditions::new(project, analysis);
    let filter = filter.map(str::to_lowercase);
    let mut scenarios = Vec::new();
    for (id, src, p) in &parsed {
        for item in &p.file.items {
            let nudge_syntax::ast::Item::Test(t) = item else {
                continue;
            };
            if let Some(f) = &filter
                && !t.name.value.to_lowercase().contains(f.as_str())
            {
                continue;
            }
            scenarios.push(scenario::build(t, src, bundle, conditions.of_file(*id)));
        }
    }
    let results: Vec<Mutex<Option<TestResult>>> =
        scenarios.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(scenarios.len())
        .max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sc) = scenarios.get(i) else { break };
                    let r = run_one(sc, bundle);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

fn run_one(sc: &scenario::Scenario<'_>, bundle: &Bundle) -> TestResult {
    let started = Instant::now();
    // Scenarios count in the language's whole seconds; the engine in milliseconds.
    let mut engine = Engine::new(
        bundle,
        MemorySink::default(),
        Config::default(),
        ms(sc.start),
    );
    let mut failures = sc.problems.clone();
    for step in &sc.calls {
        engine.advance_before(ms(step.arrives));
        if let Err(r) = nudge_runtime::ingest::apply_line_now(&mut engine, &step.call) {
            failures.push(Failure {
                expected: step.text.clone(),
                line: step.line,
                actual: vec![format!("the engine refused this call: {}", r.reason)],
                timelines: Vec::new(),
            });
        }
    }
    engine.advance_through(ms(sc.end));
    let profiles = expect::profiles(sc, &mut engine);
    let sink = engine.into_sink();
    let world = expect::World::new(sc, &sink, profiles);
    for x in &sc.expects {
        if let Some(f) = world.check(x, bundle) {
            failures.push(f);
        }
    }
    failures.sort_by_key(|f| f.line);
    TestResult {
        name: sc.name.clone(),
        file: sc.file.clone(),
        line: sc.line,
        failures,
        duration: started.elapsed(),
    }
}
