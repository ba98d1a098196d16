//! Crash safety: `nudge run` killed with SIGKILL at many moments and
//! restarted each time ends with the same outbox and counters as a run that
//! was never interrupted: no call lost or applied twice, no send lost or
//! duplicated.

mod common;
use common::{Lcg, copy_project, copy_tree, outbox_by_key, s, trace_parts};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills per test run: enough to land in every phase (rebuild, batches,
/// delivery, drain), few enough for CI.
const KILLS: usize = 15;

fn project(root: &Path, name: &str, events: &Path, window: Option<usize>) -> PathBuf {
    let dir = root.join(name);
    copy_project(&nudge_test_support::example_dir("cart_recovery"), &dir);
    std::fs::copy(events, dir.join("events.jsonl")).unwrap();
    let manifest = dir.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    // A checkpoint every three batches: kills land before, during and after
    // checkpoints, and restarts start from them.
    toml.push_str("\n[runtime]\ncheckpoint_every = 1500\n");
    if let Some(lines) = window {
        toml.push_str(&format!("reorder_window = {lines}\n"));
    }
    std::fs::write(&manifest, toml).unwrap();
    dir
}

/// `nudge run` of `dir` with `args` and a JSON summary, as the harnesses
/// start it again and again.
fn nudge_run(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nudge"));
    c.args(["run", s(dir), "--format", "json"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

fn command(dir: &Path) -> Command {
    // Small batches: many commits, so kills land between them as well as inside.
    nudge_run(dir, &["--drain", "--batch-lines", "500"])
}

/// Runs `command` to its end, which must succeed; its JSON summary.
fn summary_of(mut command: Command) -> serde_json::Value {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Lets `command` run to its end after `kills` killed runs, and checks
/// that it counts, keeps in its ledger and never diverges from what the
/// uninterrupted run's `reference` summary says; its summary.
fn finish_like(command: Command, reference: &serde_json::Value, kills: usize) -> serde_json::Value {
    let summary = summary_of(command);
    assert_eq!(
        summary["stats"], reference["stats"],
        "counters differ after {kills} kills"
    );
    assert_eq!(summary["store"]["ledger"], reference["store"]["ledger"]);
    assert_eq!(summary["store"]["diverged"], false);
    summary
}

/// Starts [`KILLS`] runs of `command` in `dir` one after the other,
/// killing each with SIGKILL at a random moment (`seed`) of an
/// uninterrupted run's length `took`, unless it finished first; returns how
/// many were killed.
fn kill_at_random(
    dir: &Path,
    command: impl Fn() -> Command,
    mut took: Duration,
    seed: u64,
) -> usize {
    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut completed = 0;
    // The state the runs start from, to start again from when the first
    // runs outpace the reference run (a loaded machine times it slow).
    let start = dir.with_extension("start");
    copy_tree(dir, &start);
    for _ in 0..KILLS {
        let mut child = command().stdout(Stdio::null()).spawn().unwrap();
        // Anywhere from the start to a little past a whole run's length;
        // until a run has been killed, within its length.
        let span = if kills == 0 { 9 } else { 11 };
        let wait = rng.below(took.as_millis() as u64 * span / 10 + 1);
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        } else if kills == 0 {
            completed += 1;
            // A finished run leaves the next ones nothing to do but end
            // at once from its checkpoint, so nothing would be killed
            // mid-run: start again from the first state, with this run's
            // wait as the new bound on its length.
            std::fs::remove_dir_all(dir).unwrap();
            copy_tree(&start, dir);
            took = Duration::from_millis(wait);
        } else {
            // It finished first; later runs then crash while rebuilding.
            completed += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "no run was killed ({completed} finished first)");
    kills
}

#[test]
fn killed_and_restarted_runs_end_like_an_uninterrupted_one() {
    killed_and_restarted(None);
}

#[test]
fn killed_and_restarted_runs_of_a_file_out_of_order_end_like_an_uninterrupted_one() {
    // Every block of 32 lines reversed, a window of 40: a kill leaves held
    // lines behind the read position and applied ones past it.
    killed_and_restarted(Some((32, 40)));
}

/// The harness; `shuffle` reverses blocks of that many lines of the
/// generated stream and replays it with that reorder window.
fn killed_and_restarted(shuffle: Option<(usize, usize)>) {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let generated = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["gen", "--events", "20000", "--seed", "5", "-o", s(&events)])
        .output()
        .unwrap();
    assert!(generated.status.success());
    if let Some((block, _)) = shuffle {
        let text = std::fs::read_to_string(&events).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = String::new();
        for b in lines.chunks(block) {
            for l in b.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        std::fs::write(&events, out).unwrap();
    }
    let window = shuffle.map(|(_, w)| w);

    let reference_dir = project(tmp.path(), "reference", &events, window);
    let started = Instant::now();
    let reference = summary_of(command(&reference_dir));
    let took = started.elapsed();
    let reference_outbox = outbox_by_key(&reference_dir.join(".nudge/outbox.jsonl"));
    assert!(reference_outbox.len() > 50, "the stream should send plenty");

    let dir = project(tmp.path(), "crashy", &events, window);
    let kills = kill_at_random(&dir, || command(&dir), took, 0x5eed);
    // The last run is left to finish.
    finish_like(command(&dir), &reference, kills);
    let got = outbox_by_key(&dir.join(".nudge/outbox.jsonl"));
    let duplicated: Vec<&String> = got
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(
        duplicated.is_empty(),
        "sent twice after {kills} kills: {duplicated:?}"
    );
    let lost: Vec<&String> = reference_outbox
        .keys()
        .filter(|k| !got.contains_key(*k))
        .collect();
    assert!(lost.is_empty(), "never sent after {kills} kills: {lost:?}");
    assert_eq!(got, reference_outbox);
    // The trace, cut back to a checkpoint at each restart and continued,
    // says what an uninterrupted run's says: the same decisions in the same
    // order, and for every send the same final delivery outcome.
    let trace = |d: &Path| trace_parts(&d.join(".nudge/trace.jsonl"));
    let ((want, want_deliveries), (have, have_deliveries)) = (trace(&reference_dir), trace(&dir));
    assert!(
        want == have,
        "the trace differs after {kills} kills: {} lines, {} expected",
        have.lines().count(),
        want.lines().count()
    );
    assert_eq!(
        want_deliveries.len(),
        reference_outbox.len(),
        "one delivery outcome per send"
    );
    let lost: Vec<&String> = want_deliveries
        .keys()
        .filter(|k| !have_deliveries.contains_key(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "delivery outcomes lost after {kills} kills: {lost:?}"
    );
    assert_eq!(
        have_deliveries, want_deliveries,
        "delivery outcomes differ after {kills} kills"
    );
}

/// Past every win-back of the generated purchase history.
const AFTER_THE_WIN_BACKS: &str = "2028-01-01T00:00:00Z";

/// The win-back benchmark project in `root/name` with at most five
/// customers in memory, and one run of `events` into its store.
fn win_back_store(root: &Path, name: &str, events: &Path) -> PathBuf {
    win_back_store_with(root, name, events, "customers_in_memory = 5")
}

/// [`win_back_store`] with other `[runtime]` settings.
fn win_back_store_with(root: &Path, name: &str, events: &Path, runtime: &str) -> PathBuf {
    let dir = root.join(name);
    common::win_back_project(&dir, runtime);
    std::fs::copy(events, dir.join("events.jsonl")).unwrap();
    let out = common::nudge(&["run", s(&dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn until(dir: &Path) -> Command {
    nudge_run(dir, &["--until", AFTER_THE_WIN_BACKS])
}

/// Writes 3,000 lines of purchases under `root`: hundreds of customers
/// whose win-back falls due after the file.
fn purchases(root: &Path) -> PathBuf {
    let events = root.join("events.jsonl");
    let generated = common::nudge(&[
        "gen",
        "--shape",
        "purchases",
        "--events",
        "3000",
        "--seed",
        "7",
        "-o",
        s(&events),
    ]);
    assert!(generated.status.success());
    events
}

#[test]
fn killed_and_restarted_clock_steps_in_parts_end_like_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let events = purchases(tmp.path());

    // Hundreds of win-backs fall due after the file: one step of the
    // clock, taken in parts of five timers (the budget).
    let reference_dir = win_back_store(tmp.path(), "reference", &events);
    let started = Instant::now();
    let reference = summary_of(until(&reference_dir));
    let took = started.elapsed();
    assert!(
        reference["store"]["delivered"].as_u64().unwrap() > 100,
        "{reference}"
    );
    let reference_outbox = outbox_by_key(&reference_dir.join(".nudge/outbox.jsonl"));

    let dir = win_back_store(tmp.path(), "crashy", &events);
    let kills = kill_at_random(&dir, || until(&dir), took, 0x57e9);
    finish_like(until(&dir), &reference, kills);
    assert_eq!(
        outbox_by_key(&dir.join(".nudge/outbox.jsonl")),
        reference_outbox,
        "sends lost or made twice after {kills} kills"
    );
    let trace = |d: &Path| trace_parts(&d.join(".nudge/trace.jsonl"));
    assert!(
        trace(&reference_dir) == trace(&dir),
        "the trace differs after {kills} kills"
    );
}

#[test]
fn killed_and_restarted_releases_of_held_sends_deliver_each_once() {
    let tmp = tempfile::tempdir().unwrap();
    let events = purchases(tmp.path());
    // Every win-back of the step held by the breaker, then released in
    // pages of five (the budget), each page's results stored before the
    // next is read: a kill leaves some delivered and marked, perhaps one
    // page written to the outbox and not marked, the rest pending.
    let held = |name: &str| {
        let dir = win_back_store_with(
            tmp.path(),
            name,
            &events,
            "customers_in_memory = 5\nmax_sends_per_step = 40",
        );
        let out = until(&dir).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    };
    let release = |dir: &Path| nudge_run(dir, &["--release-sends"]);
    let reference_dir = held("reference");
    let outbox = |d: &Path| outbox_by_key(&d.join(".nudge/outbox.jsonl"));
    let sent_before = outbox(&reference_dir).len() as u64;
    let started = Instant::now();
    let reference = summary_of(release(&reference_dir));
    let took = started.elapsed();
    let released = reference["store"]["retried"].as_u64().unwrap();
    assert!(released > 100, "{reference}");
    assert_eq!(reference["store"]["ledger"]["pending"], 0, "{reference}");
    let reference_outbox = outbox(&reference_dir);
    assert_eq!(reference_outbox.len() as u64, sent_before + released);

    let dir = held("crashy");
    let kills = kill_at_random(&dir, || release(&dir), took, 0x7e1e);
    finish_like(release(&dir), &reference, kills);
    assert_eq!(
        outbox(&dir),
        reference_outbox,
        "held sends lost or sent twice after {kills} kills"
    );
}
