//! End-to-end: a store's log of calls is compacted, by `[store] keep_calls`
//! as the runs go or by `nudge store compact`, and the runs after it make
//! exactly the decisions a store that kept every call makes.

mod common;
use common::{copy_example, nudge, run_json, s};

use nudge_test_support::text;
use std::path::Path;

/// `nudge store compact DIR --keep KEEP --format json`.
fn compact_json(dir: &Path, keep: &str) -> serde_json::Value {
    let out = nudge(&[
        "store",
        "compact",
        s(dir),
        "--keep",
        keep,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).unwrap()
}

/// A copy of `cart_recovery` that reads `lines` as its events and takes a
/// checkpoint every 500 calls, with `extra` added to its nudge.toml.
fn project(lines: &str, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, dir) = copy_example("cart_recovery");
    let toml = dir.join("nudge.toml");
    let mut settings = std::fs::read_to_string(&toml).unwrap();
    settings.push_str("\n[runtime]\nmax_future = \"3650d\"\ncheckpoint_every = 500\n");
    settings.push_str(extra);
    std::fs::write(&toml, settings).unwrap();
    std::fs::write(dir.join("events.jsonl"), lines).unwrap();
    (tmp, dir)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn compacted_stores_make_the_decisions_of_a_store_that_kept_every_call() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.jsonl");
    let out = nudge(&["gen", "--events", "6000", "--seed", "5", "-o", s(&all)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = read(&all).lines().map(|l| format!("{l}\n")).collect();
    let (head, whole) = (lines[..4000].concat(), lines.concat());

    // Three stores over the same calls, in two runs each: one keeps every
    // call, one keeps five days of them as it goes, one is compacted by
    // the command between the runs.
    let (_a, kept) = project(&head, "");
    let (_b, rolling) = project(&head, "\n[store]\nkeep_calls = \"5d\"\n");
    let (_c, between) = project(&head, "");
    for dir in [&kept, &rolling, &between] {
        run_json(dir, &[]);
    }
    let first = compact_json(&between, "2d");
    assert!(first["removed"].as_u64().unwrap() > 1000, "{first}");
    // What the setting removed as the run went, the command finds gone.
    let after_rolling = compact_json(&rolling, "5d");
    assert_eq!(after_rolling["removed"], 0, "{after_rolling}");
    assert_eq!(after_rolling["stopped"], "cutoff");
    assert!(after_rolling["through"].as_i64().unwrap() > 1000);

    for dir in [&kept, &rolling, &between] {
        std::fs::write(dir.join("events.jsonl"), &whole).unwrap();
        let second = run_json(dir, &["--drain"]);
        assert_eq!(second["store"]["applied"], 2000);
        assert_eq!(second["store"]["rebuilt"], 0);
        assert_eq!(second["store"]["diverged"], false);
    }
    let outbox = |dir: &Path| read(&dir.join(".nudge/outbox.jsonl"));
    let trace = |dir: &Path| read(&dir.join(".nudge/trace.jsonl"));
    assert!(!outbox(&kept).is_empty());
    for dir in [&rolling, &between] {
        assert_eq!(outbox(dir), outbox(&kept));
        assert_eq!(trace(dir), trace(&kept));
    }

    // A third run over a compacted store starts from its checkpoint and
    // applies nothing again.
    let again = run_json(&between, &["--drain"]);
    assert_eq!(again["store"]["applied"], 0);
    assert_eq!(again["store"]["delivered"], 0);
    assert_eq!(outbox(&between), outbox(&kept));
}

#[test]
fn compacting_explains_what_it_cannot_do() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let bad = nudge(&["store", "compact", s(&dir), "--keep", "a year"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--keep \"a year\": expected a duration"),
        "{}",
        text(&bad.stderr)
    );
    let none = nudge(&["store", "compact", s(&dir), "--keep", "30d"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("there is no store at"),
        "{}",
        text(&none.stderr)
    );
    // The whole of a short history, but the call its checkpoint ends on.
    run_json(&dir, &[]);
    let sent = read(&dir.join(".nudge/outbox.jsonl"));
    let done = compact_json(&dir, "0d");
    assert!(done["removed"].as_u64().unwrap() > 10, "{done}");
    let again = run_json(&dir, &["--drain"]);
    assert_eq!(again["store"]["applied"], 0);
    assert!(read(&dir.join(".nudge/outbox.jsonl")).starts_with(&sent));
    let broken = dir.join("nudge.toml");
    let mut settings = read(&broken);
    settings.push_str("\n[store]\nkeep_calls = \"forever\"\n");
    std::fs::write(&broken, settings).unwrap();
    let refused = nudge(&["run", s(&dir)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("[store] keep_calls"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn a_lost_trace_after_compaction_starts_afresh_from_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.jsonl");
    let out = nudge(&["gen", "--events", "4000", "--seed", "9", "-o", s(&all)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = read(&all).lines().map(|l| format!("{l}\n")).collect();
    let (head, whole) = (lines[..3000].concat(), lines.concat());

    let (_a, kept) = project(&head, "");
    let (_b, compacted) = project(&head, "");
    for dir in [&kept, &compacted] {
        run_json(dir, &[]);
    }
    assert!(compact_json(&compacted, "1d")["removed"].as_u64().unwrap() > 0);
    for dir in [&kept, &compacted] {
        std::fs::remove_file(dir.join(".nudge/trace.jsonl")).unwrap();
        std::fs::write(dir.join("events.jsonl"), &whole).unwrap();
    }
    // The whole store rebuilds from its calls and writes the trace again.
    let rebuilt = run_json(&kept, &["--drain"]);
    assert_eq!(rebuilt["store"]["restored"], 0);
    // The compacted one cannot: it goes on from its checkpoint, says so,
    // and its trace holds what came after it.
    let out = nudge(&["run", s(&compacted), "--format", "json", "--drain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("they start afresh from the checkpoint"),
        "{}",
        text(&out.stderr)
    );
    let went_on: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(went_on["store"]["restored"].as_u64().unwrap() > 3000);
    assert_eq!(went_on["store"]["applied"], 1000);
    assert_eq!(went_on["stats"], rebuilt["stats"]);
    let outbox = |dir: &Path| read(&dir.join(".nudge/outbox.jsonl"));
    assert_eq!(outbox(&compacted), outbox(&kept));
    let trace = |dir: &Path| read(&dir.join(".nudge/trace.jsonl"));
    assert!(trace(&kept).ends_with(&trace(&compacted)));
    assert!(trace(&compacted).len() < trace(&kept).len());
}
