//! End-to-end: `nudge run` keeps its place in a durable store, so a second
//! run applies only what the first did not.

mod common;
use common::{add_runtime, copy_example, nudge, run_json, s, trace_parts};

use nudge_test_support::text;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The outbox as idempotency key → how many lines carry it.
fn outbox_keys(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        *out.entry(v["idempotency_key"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

fn generate(path: &Path, events: usize, seed: u64) {
    let n = events.to_string();
    let seed = seed.to_string();
    let out = nudge(&["gen", "--events", &n, "--seed", &seed, "-o", s(path)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// 3,000 generated calls (`seed`) as lines, and one durable `--drain` run
/// of all of them through cart_recovery: its folder (kept while the guard
/// lives) and its report.
fn reference_run(
    seed: u64,
) -> (
    Vec<String>,
    tempfile::TempDir,
    std::path::PathBuf,
    serde_json::Value,
) {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.jsonl");
    generate(&all, 3000, seed);
    let lines = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect();
    let (guard, whole) = copy_example("cart_recovery");
    std::fs::copy(&all, whole.join("events.jsonl")).unwrap();
    let reference = run_json(&whole, &["--drain"]);
    (lines, guard, whole, reference)
}

/// A copy of cart_recovery whose store holds the first half of `lines`
/// (one durable run), to go on from with the whole file.
fn first_half_stored(lines: &[String]) -> (tempfile::TempDir, std::path::PathBuf) {
    let (guard, dir) = copy_example("cart_recovery");
    std::fs::write(dir.join("events.jsonl"), lines[..1500].concat()).unwrap();
    run_json(&dir, &[]);
    (guard, dir)
}

#[test]
fn a_second_run_over_the_same_file_applies_and_sends_nothing() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let first = run_json(&dir, &["--drain"]);
    assert!(dir.join(".nudge/state.db").is_file());
    assert_eq!(first["store"]["applied"], 21);
    assert_eq!(first["store"]["delivered"], 4);
    let sent = std::fs::read_to_string(dir.join(".nudge/outbox.jsonl")).unwrap();

    let second = run_json(&dir, &["--drain"]);
    assert_eq!(second["store"]["applied"], 0);
    assert_eq!(second["store"]["delivered"], 0);
    assert_eq!(second["store"]["ledger"]["done"], 4);
    assert_eq!(second["store"]["diverged"], false);
    // The state was rebuilt: the same counters, and the outbox untouched.
    assert_eq!(second["stats"], first["stats"]);
    assert_eq!(
        std::fs::read_to_string(dir.join(".nudge/outbox.jsonl")).unwrap(),
        sent
    );
}

#[test]
fn a_longer_file_continues_where_the_last_run_stopped() {
    // Reference: the whole file in one durable run.
    let (lines, _a, whole, reference) = reference_run(11);

    // The same file in two steps: the first half, then the file grown to all of it.
    let (_b, steps) = copy_example("cart_recovery");
    let events = steps.join("events.jsonl");
    std::fs::write(&events, lines[..1700].concat()).unwrap();
    let first = run_json(&steps, &[]);
    assert_eq!(first["store"]["applied"], 1700);
    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&steps, &["--drain"]);
    assert_eq!(second["store"]["applied"], 1300);
    // The state was loaded from the first run's checkpoint (its 1,700 lines
    // and the deploy the history starts with), not replayed.
    assert_eq!(second["store"]["restored"], 1701);
    assert_eq!(second["store"]["rebuilt"], 0);
    assert_eq!(second["store"]["late"], 0);
    assert_eq!(second["store"]["diverged"], false);

    assert_eq!(second["stats"], reference["stats"]);
    // The trace went on from where the checkpoint left it: the same
    // decisions in the same order, and each send's final delivery outcome
    // (written when each run delivered, so placed by its batches).
    let trace = |dir: &std::path::Path| trace_parts(&dir.join(".nudge/trace.jsonl"));
    let (steps_trace, whole_trace) = (trace(&steps), trace(&whole));
    assert_eq!(steps_trace.0, whole_trace.0);
    assert!(
        !whole_trace.1.is_empty(),
        "the runs record their deliveries"
    );
    assert_eq!(steps_trace.1, whole_trace.1);
    let keys = outbox_keys(&steps);
    assert!(!keys.is_empty());
    assert!(keys.values().all(|&n| n == 1), "a message sent twice");
    assert_eq!(keys, outbox_keys(&whole));
    // And the same as the in-memory replay.
    let memory = run_json(&whole, &["--drain", "--in-memory"]);
    assert_eq!(memory["stats"], reference["stats"]);
}

#[test]
fn in_memory_runs_keep_no_store() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let out = run_json(&dir, &["--drain", "--in-memory"]);
    assert!(out.get("store").is_none());
    assert!(!dir.join(".nudge/state.db").exists());
    assert_eq!(outbox_keys(&dir).len(), 4);
}

#[test]
fn a_file_that_is_not_a_store_is_refused_with_a_way_out() {
    let (_tmp, dir) = copy_example("cart_recovery");
    std::fs::create_dir_all(dir.join(".nudge")).unwrap();
    let db = dir.join(".nudge/state.db");
    std::fs::write(&db, "garbage, not SQLite\n".repeat(100)).unwrap();
    let out = nudge(&["run", s(&dir), "--drain"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("is not a usable Nudge store"), "{err}");
    assert!(err.contains("help: start over with --reset"), "{err}");

    // The garbage is still there: nothing was overwritten behind the user's back.
    assert!(std::fs::read_to_string(&db).unwrap().starts_with("garbage"));

    let out = nudge(&["run", s(&dir), "--drain", "--reset"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(outbox_keys(&dir).len(), 4);
}

#[test]
fn changed_settings_or_a_rewritten_file_are_refused() {
    let (_tmp, dir) = copy_example("cart_recovery");
    run_json(&dir, &[]);
    let out = nudge(&["run", s(&dir), "--release-spread", "60"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("changed since the store"));

    let events = dir.join("events.jsonl");
    let all = std::fs::read_to_string(&events).unwrap();
    std::fs::write(&events, &all[..all.len() / 2]).unwrap();
    let out = nudge(&["run", s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("does not continue what was applied"), "{err}");
    assert!(err.contains("help: append new calls"), "{err}");
}

#[test]
fn a_changed_project_is_deployed_over_the_history_unless_stored_values_cannot_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.jsonl");
    generate(&all, 3_000, 11);
    let stream = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = stream.split_inclusive('\n').collect();

    let (_a, dir) = copy_example("cart_recovery");
    let events = dir.join("events.jsonl");
    std::fs::write(&events, lines[..1500].concat()).unwrap();
    let first = run_json(&dir, &[]);
    assert!(first["store"]["deployed"].is_null());
    let before = outbox_keys(&dir);

    // New copy for the reminder: the next run deploys it before applying
    // the rest of the file, and says what became of the instances in flight.
    let messages = dir.join("messages.flow");
    let source = std::fs::read_to_string(&messages).unwrap();
    std::fs::write(
        &messages,
        source.replace("you left something behind", "your cart misses you"),
    )
    .unwrap();
    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&dir, &["--drain"]);
    let report = second["store"]["deployed"].as_str().unwrap();
    assert!(report.contains("cart_recovery"), "{report}");
    let sent: Vec<serde_json::Value> = std::fs::read_to_string(dir.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let subject =
        |m: &serde_json::Value| m["content"]["subject"].as_str().unwrap_or("").to_string();
    assert!(
        sent.iter()
            .any(|m| subject(m).ends_with("you left something behind"))
    );
    assert!(
        sent.iter()
            .any(|m| subject(m).ends_with("your cart misses you"))
    );
    let after = outbox_keys(&dir);
    assert!(after.values().all(|&n| n == 1), "no message twice");
    assert!(before.keys().all(|k| after.contains_key(k)));

    // The same project again: the history ends on it, nothing is deployed.
    let third = run_json(&dir, &[]);
    assert!(third["store"]["deployed"].is_null());
    assert_eq!(third["store"]["applied"], 0);

    // A new event deploys over the history: nothing is reset.
    std::fs::write(
        dir.join("gifts.flow"),
        "event gift_card_bought \"Gift Card Bought\" {\n  amount: money\n}\n",
    )
    .unwrap();
    let fourth = run_json(&dir, &[]);
    let report = fourth["store"]["deployed"].as_str().unwrap();
    assert!(
        report.contains("schema added: event `gift_card_bought`"),
        "{report}"
    );
    assert_eq!(outbox_keys(&dir), after, "nothing sent again");

    // A required property added to stored events cannot be: they have none.
    std::fs::write(
        dir.join("gifts.flow"),
        "event order_completed \"Order Completed\" {\n  store_code: string\n}\n",
    )
    .unwrap();
    let out = nudge(&["run", s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("cannot be deployed over the history"), "{err}");
    assert!(
        err.contains("`order_completed.store_code` is added as required"),
        "{err}"
    );
    assert!(err.contains("--reset"), "{err}");
}

/// Every file under `.nudge/` a run derives (trace, audience feeds, dead
/// letters, outbox), by name.
fn derived(dir: &Path) -> BTreeMap<String, String> {
    let state = dir.join(".nudge");
    let mut out = BTreeMap::new();
    for name in ["trace.jsonl", "dead_letters.jsonl", "outbox.jsonl"] {
        out.insert(
            name.to_string(),
            std::fs::read_to_string(state.join(name)).unwrap_or_default(),
        );
    }
    // A line beyond the horizon names the wall clock of the run that refused it.
    let dead: Vec<String> = out["dead_letters.jsonl"]
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("wall clock"))
            {
                v["reason"] = "beyond the horizon".into();
            }
            v.to_string()
        })
        .collect();
    out.insert("dead_letters.jsonl".into(), dead.join("\n"));
    if let Ok(entries) = std::fs::read_dir(state.join("audiences")) {
        for e in entries.flatten() {
            let name = format!("audiences/{}", e.file_name().to_string_lossy());
            out.insert(name, std::fs::read_to_string(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn feeds_continued_from_a_checkpoint_say_what_one_run_says_at_every_split() {
    // ad_retargeting writes audience feeds; a bad line makes a dead letter.
    let (_a, whole) = copy_example("ad_retargeting");
    let events = whole.join("events.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect();
    lines.insert(4, "{not json\n".to_string());
    std::fs::write(&events, lines.concat()).unwrap();
    run_json(&whole, &["--drain"]);
    let want = derived(&whole);
    assert!(
        want.keys().any(|k| k.starts_with("audiences/")),
        "the example should write an audience feed: {want:?}"
    );
    assert!(want["dead_letters.jsonl"].contains("{not json"));

    for split in 0..=lines.len() {
        let (_b, steps) = copy_example("ad_retargeting");
        let events = steps.join("events.jsonl");
        std::fs::write(&events, lines[..split].concat()).unwrap();
        run_json(&steps, &[]);
        std::fs::write(&events, lines.concat()).unwrap();
        let second = run_json(&steps, &["--drain"]);
        assert_eq!(second["store"]["rebuilt"], 0, "split {split}");
        assert_eq!(derived(&steps), want, "split after {split} lines");
    }
}

#[test]
fn a_trace_lost_since_the_checkpoint_is_rebuilt_from_the_whole_history() {
    let (_a, whole) = copy_example("cart_recovery");
    run_json(&whole, &["--drain"]);
    let want = std::fs::read_to_string(whole.join(".nudge/trace.jsonl")).unwrap();

    let (_b, dir) = copy_example("cart_recovery");
    let events = dir.join("events.jsonl");
    let all = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = all.split_inclusive('\n').collect();
    std::fs::write(&events, lines[..10].concat()).unwrap();
    run_json(&dir, &[]);
    // The trace is moved away: the checkpoint cannot say where it stood.
    std::fs::remove_file(dir.join(".nudge/trace.jsonl")).unwrap();
    std::fs::write(&events, &all).unwrap();
    let second = run_json(&dir, &["--drain"]);
    assert_eq!(second["store"]["restored"], 0);
    assert_eq!(second["store"]["rebuilt"], 10);
    assert_eq!(
        std::fs::read_to_string(dir.join(".nudge/trace.jsonl")).unwrap(),
        want
    );
}

/// Replaces the store's checkpoint of rows by the same state as one whole
/// value, as releases before layout 5 wrote it, and compacts away every
/// call it covers.
fn checkpoint_whole_as_an_earlier_release(path: &Path) {
    use nudge_runtime::engine::checkpoint::{BLOB_FORMAT, FORMAT};
    use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink};
    use nudge_store::{Batch, Checkpoint, Compaction, EngineState, Store};

    let mut store = Store::open(path).unwrap();
    let saved = store.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(saved.format, FORMAT, "runs write rows");
    let bundle = nudge_bytecode::Bundle::decode(&store.first_deploy().unwrap().unwrap()).unwrap();
    let arena = Bundles::new();
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    engine
        .restore_rows(store.state_rows().unwrap(), &bundle, &arena)
        .unwrap();
    let whole_state = engine.checkpoint().unwrap();
    store
        .commit(&mut Batch {
            checkpoint: Some(Checkpoint {
                format: BLOB_FORMAT,
                engine: EngineState::Whole(whole_state),
                feeds: saved.feeds,
                dead: saved.dead,
                dead_whole: true,
            }),
            compact: Some(Compaction {
                before: i64::MAX,
                limit: u64::MAX,
            }),
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(store.checkpoint().unwrap().unwrap().format, BLOB_FORMAT);
}

#[test]
fn a_store_an_earlier_release_checkpointed_whole_and_compacted_goes_on_as_rows() {
    use nudge_runtime::engine::checkpoint::FORMAT;
    use nudge_store::Store;

    let (lines, _a, whole, reference) = reference_run(17);

    let (_b, steps) = first_half_stored(&lines);
    let events = steps.join("events.jsonl");

    // What an earlier release left: the same state as one whole value (the
    // layout it wrote), and every call it covers compacted away, so that
    // the store can only go on from it.
    let path = steps.join(".nudge/state.db");
    checkpoint_whole_as_an_earlier_release(&path);
    assert!(Store::open(&path).unwrap().compacted_through().unwrap() > 1000);

    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&steps, &["--drain"]);
    assert_eq!(second["store"]["applied"], 1500);
    assert_eq!(second["store"]["rebuilt"], 0);
    assert_eq!(second["stats"], reference["stats"]);
    let keys = outbox_keys(&steps);
    assert!(!keys.is_empty());
    assert_eq!(keys, outbox_keys(&whole));
    // The upgraded store now holds rows, and a third run starts from them.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.checkpoint().unwrap().unwrap().format, FORMAT);
    drop(store);
    let third = run_json(&steps, &["--drain"]);
    assert_eq!(third["store"]["applied"], 0);
    assert_eq!(third["stats"], reference["stats"]);
}

#[test]
fn a_run_with_nothing_new_writes_a_checkpoint_of_an_older_layout_again() {
    use nudge_runtime::engine::checkpoint::FORMAT;
    use nudge_store::Store;

    let (_b, steps) = copy_example("cart_recovery");
    let first = run_json(&steps, &[]);
    let path = steps.join(".nudge/state.db");
    checkpoint_whole_as_an_earlier_release(&path);
    // Nothing new to apply: a start from the current layout writes no
    // checkpoint, one from an older layout writes it again in this one,
    // so that later starts need not read it whole.
    let format = || {
        let store = Store::open(&path).unwrap();
        store.checkpoint().unwrap().unwrap().format
    };
    assert_ne!(format(), FORMAT);
    let again = run_json(&steps, &[]);
    assert_eq!(again["store"]["applied"], 0);
    assert_eq!(again["stats"], first["stats"]);
    assert_eq!(format(), FORMAT);
    let third = run_json(&steps, &[]);
    assert_eq!(third["store"]["applied"], 0);
    assert_eq!(third["stats"], first["stats"]);
    assert_eq!(format(), FORMAT);
}

/// Checks that the run in `bounded` decided and sent what the one in
/// `whole` did (trace decisions and outbox keys).
fn assert_same_decisions(bounded: &Path, whole: &Path) {
    let trace = |dir: &Path| trace_parts(&dir.join(".nudge/trace.jsonl"));
    assert_eq!(trace(bounded).0, trace(whole).0, "decisions");
    assert_eq!(outbox_keys(bounded), outbox_keys(whole));
}

#[test]
fn a_budget_of_customers_in_memory_changes_no_decision() {
    // Reference: the whole file in one durable run, every customer in memory.
    let (lines, _a, whole, reference) = reference_run(13);

    // The same file in two steps, with at most 5 customers kept in memory
    // and a checkpoint every 100 calls, so that customers are let go after
    // each and read back when a call, a timer or the restart needs them.
    let (_b, bounded) = copy_example("cart_recovery");
    add_runtime(&bounded, "checkpoint_every = 100\ncustomers_in_memory = 5");
    let events = bounded.join("events.jsonl");
    std::fs::write(&events, lines[..1700].concat()).unwrap();
    let first = run_json(&bounded, &["--batch-lines", "50"]);
    // A restart with nothing new reads only the timers due within the hour
    // (the carts' waits of a day stay in the store).
    let restart = run_json(&bounded, &["--batch-lines", "50"]);
    assert_eq!(restart["store"]["applied"], 0);
    let m = &restart["store"]["memory"];
    assert_eq!(m["timers"], first["store"]["memory"]["timers"], "{m}");
    assert!(
        m["timers_in_memory"].as_u64().unwrap() < m["timers"].as_u64().unwrap(),
        "{m}"
    );
    // Nor the identities' texts named in the store: calls look theirs up
    // by name (only the last batch's, not yet named, are in memory).
    assert!(m["identities_in_memory"].as_u64().unwrap() <= 8 * 5, "{m}");
    assert_eq!(
        m["identities"], first["store"]["memory"]["identities"],
        "{m}"
    );
    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&bounded, &["--drain", "--batch-lines", "50"]);
    for run in [&first, &second] {
        let m = &run["store"]["memory"];
        assert_eq!(m["budget"], 5, "{run}");
        assert!(m["let_go"].as_u64().unwrap() > 20, "{m}");
        assert!(m["read_back"].as_u64().unwrap() > 20, "{m}");
        assert!(m["identities_read"].as_u64().unwrap() > 20, "{m}");
        assert!(
            m["identities_in_memory"].as_u64().unwrap() < m["identities"].as_u64().unwrap(),
            "{m}"
        );
    }
    // The restart read no customer: it started from the checkpoint.
    assert_eq!(second["store"]["restored"], 1701);
    assert!(reference["store"].get("memory").is_none());

    assert_eq!(second["stats"], reference["stats"]);
    assert_same_decisions(&bounded, &whole);
    let third = run_json(&bounded, &["--drain"]);
    assert_eq!(third["store"]["applied"], 0);
    assert_eq!(third["stats"], reference["stats"]);
}

#[test]
fn a_store_made_without_a_budget_names_its_identities_once_one_is_set() {
    let (lines, _a, whole, reference) = reference_run(19);
    // Without a budget nothing reads names back, so none are written.
    let (_b, project) = first_half_stored(&lines);
    let events = project.join("events.jsonl");
    let names = |dir: &Path| -> i64 {
        let db = rusqlite::Connection::open(dir.join(".nudge/state.db")).unwrap();
        db.query_row("SELECT count(*) FROM state_node_names", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(names(&project), 0);
    // With one, the restart keeps the texts of the nodes not named, the
    // next checkpoints name them and let them go, and nothing changes.
    add_runtime(&project, "checkpoint_every = 100\ncustomers_in_memory = 5");
    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&project, &["--drain", "--batch-lines", "50"]);
    let m = &second["store"]["memory"];
    assert!(names(&project) > 0);
    assert!(
        m["identities_in_memory"].as_u64().unwrap() < m["identities"].as_u64().unwrap(),
        "{m}"
    );
    assert!(m["identities_read"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(second["stats"], reference["stats"]);
    assert_same_decisions(&project, &whole);
}

/// What `nudge run` reports of a deploy onto a stored history, run by
/// [`deploy_between_runs`]: the first half applied, the deploy (nothing new
/// applied), the whole history after it.
struct DeployRuns {
    _guard: tempfile::TempDir,
    dir: std::path::PathBuf,
    first: serde_json::Value,
    deployed: serde_json::Value,
    second: serde_json::Value,
}

/// A copy of cart_recovery with `runtime` settings that stores the first
/// 1,500 of `lines`, gains `file` with `source`, deploys it with a run
/// that applies nothing new, then applies every line and drains.
fn deploy_between_runs(
    lines: &[String],
    runtime: Option<&str>,
    (file, source): (&str, &str),
) -> DeployRuns {
    let (guard, dir) = copy_example("cart_recovery");
    if let Some(settings) = runtime {
        add_runtime(&dir, settings);
    }
    let events = dir.join("events.jsonl");
    std::fs::write(&events, lines[..1500].concat()).unwrap();
    let first = run_json(&dir, &["--batch-lines", "50"]);
    std::fs::write(dir.join(file), source).unwrap();
    let deployed = run_json(&dir, &["--batch-lines", "50"]);
    assert_eq!(deployed["store"]["applied"], 0);
    std::fs::write(&events, lines.concat()).unwrap();
    let second = run_json(&dir, &["--drain", "--batch-lines", "50"]);
    DeployRuns {
        _guard: guard,
        dir,
        first,
        deployed,
        second,
    }
}

#[test]
fn a_schema_deploy_under_a_budget_reads_no_customer_and_changes_no_decision() {
    let (lines, _tmp, _, _) = reference_run(17);
    // A new event and a new trait change the schemas.
    let gifts = (
        "gifts.flow",
        "event gift_card_bought \"Gift Card Bought\" {\n  amount: money\n}\n\
         profile {\n  tier: string = \"none\"\n}\n",
    );
    let whole = deploy_between_runs(&lines, None, gifts);
    let bounded = deploy_between_runs(
        &lines,
        Some("checkpoint_every = 100\ncustomers_in_memory = 5"),
        gifts,
    );
    let report = bounded.deployed["store"]["deployed"].as_str().unwrap();
    assert!(report.contains("gift_card_bought"), "{report}");
    let before = &bounded.first["store"]["memory"];
    assert!(before["let_go"].as_u64().unwrap() > 20, "{before}");
    assert_eq!(
        bounded.deployed["store"]["memory"]["read_back"], 0,
        "the stored customers stay as they are: {}",
        bounded.deployed
    );
    // The calls after it read them back, moved onto the new tables.
    assert!(
        bounded.second["store"]["memory"]["read_back"]
            .as_u64()
            .unwrap()
            > 20
    );
    assert_eq!(bounded.second["stats"], whole.second["stats"]);
    assert_same_decisions(&bounded.dir, &whole.dir);
    // A restart carries on the same.
    let third = run_json(&bounded.dir, &["--drain"]);
    assert_eq!(third["store"]["applied"], 0);
    assert_eq!(third["stats"], whole.second["stats"]);
}

#[test]
fn a_deploy_arming_a_schedule_under_a_budget_commits_in_parts_and_changes_no_decision() {
    let (lines, _tmp, _, _) = reference_run(23);
    // A schedule reaches every customer already known: the deploy arms
    // it for each.
    let daily = (
        "daily.flow",
        "message hello() {\n  channel email\n  subject \"hello\"\n  body \"Hi\"\n}\n\
         flow daily {\n  trigger every day at 09:00\n  send hello()\n}\n",
    );
    let whole = deploy_between_runs(&lines, None, daily);
    assert!(
        whole.deployed["store"].get("deploy_parts").is_none(),
        "{}",
        whole.deployed
    );
    let bounded = deploy_between_runs(
        &lines,
        Some("checkpoint_every = 100\ncustomers_in_memory = 5"),
        daily,
    );
    let customers = bounded.first["store"]["memory"]["customers"]
        .as_u64()
        .unwrap();
    let parts = bounded.deployed["store"]["deploy_parts"].as_u64().unwrap();
    assert_eq!(
        parts,
        customers.div_ceil(5),
        "five customers a part, each committed with a checkpoint: {}",
        bounded.deployed
    );
    // Each stored customer was read back to be armed (the part's records
    // are let go after its commit: see the engine's checkpoint tests).
    let m = &bounded.deployed["store"]["memory"];
    assert!(m["read_back"].as_u64().unwrap() >= customers - 5, "{m}");
    let reference = &whole.second;
    assert!(
        reference["stats"].to_string().contains("daily"),
        "the schedule sends: {reference}"
    );
    assert_eq!(bounded.second["stats"], reference["stats"]);
    assert_same_decisions(&bounded.dir, &whole.dir);
    // A restart carries on the same.
    let third = run_json(&bounded.dir, &["--drain"]);
    assert_eq!(third["store"]["applied"], 0);
    assert_eq!(third["stats"], reference["stats"]);
}

#[test]
fn a_budget_in_memory_freezes_customers_and_changes_no_byte_of_the_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.jsonl");
    generate(&all, 3000, 13);
    let (_a, whole) = copy_example("cart_recovery");
    let (_b, frozen) = copy_example("cart_recovery");
    add_runtime(&frozen, "customers_in_memory = 5");
    let run = |dir: &Path| run_json(dir, &["--in-memory", "--events", s(&all), "--drain"]);
    let reference = run(&whole);
    let bounded = run(&frozen);
    assert!(reference.get("memory").is_none(), "{reference}");
    let m = &bounded["memory"];
    assert_eq!(m["budget"], 5, "{m}");
    assert!(m["let_go"].as_u64().unwrap() > 20, "{m}");
    assert!(m["read_back"].as_u64().unwrap() > 20, "{m}");
    assert!(m["in_memory"].as_u64().unwrap() < m["customers"].as_u64().unwrap());
    assert_eq!(bounded["stats"], reference["stats"]);
    for file in ["outbox.jsonl", "trace.jsonl"] {
        let read = |dir: &Path| std::fs::read(dir.join(".nudge").join(file)).unwrap();
        assert!(read(&frozen) == read(&whole), "{file} differs");
    }
}

#[test]
fn a_budget_takes_a_checkpoint_once_more_customers_changed_than_it_keeps() {
    let (lines, _a, whole, reference) = reference_run(13);
    // No checkpoint by count of calls: only the budget asks for them.
    let (_b, bounded) = copy_example("cart_recovery");
    add_runtime(
        &bounded,
        "checkpoint_every = 1000000\ncustomers_in_memory = 5",
    );
    std::fs::write(bounded.join("events.jsonl"), lines.concat()).unwrap();
    let run = run_json(&bounded, &["--drain", "--batch-lines", "20"]);
    let checkpoints: i64 = rusqlite::Connection::open(bounded.join(".nudge/state.db"))
        .unwrap()
        .query_row("SELECT epoch FROM checkpoint", [], |r| r.get(0))
        .unwrap();
    // Without the budget the run would take one checkpoint, at its end.
    assert!(checkpoints > 10, "{checkpoints} checkpoints");
    let m = &run["store"]["memory"];
    assert!(m["let_go"].as_u64().unwrap() > 20, "{m}");
    assert_eq!(run["stats"], reference["stats"]);
    assert_same_decisions(&bounded, &whole);
}

/// How many calls of `kind` the store in `dir` holds, and its checkpoints so far.
fn parts_and_checkpoints(dir: &Path, kind: i64) -> (i64, i64) {
    let db = rusqlite::Connection::open(dir.join(".nudge/state.db")).unwrap();
    let parts = db
        .query_row("SELECT count(*) FROM calls WHERE kind = ?1", [kind], |r| {
            r.get(0)
        })
        .unwrap();
    let epoch = db
        .query_row("SELECT epoch FROM checkpoint", [], |r| r.get(0))
        .unwrap();
    (parts, epoch)
}

/// The stored call kind of a part of an `--until` step.
const UNTIL_PART: i64 = 4;

/// Past every win-back of [`winback_store`]'s history.
const AFTER_THE_WIN_BACKS: &str = "2028-01-01T00:00:00Z";

/// The win-back benchmark project (`benches/winback`) with `runtime`
/// settings, and one run of 900 generated purchase lines (271 customers
/// over 16 months) into its store: 114 win-backs are left to fire after
/// the file, each with a send.
fn winback_store(runtime: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("winback");
    common::win_back_project(&dir, runtime);
    let events = dir.join("events.jsonl");
    let out = nudge(&[
        "gen",
        "--shape",
        "purchases",
        "--events",
        "900",
        "-o",
        s(&events),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    run_json(&dir, &[]);
    (tmp, dir)
}

#[test]
fn a_long_clock_step_under_a_budget_is_committed_in_parts_and_decides_as_one() {
    let (_a, whole) = winback_store("");
    let until = ["--until", AFTER_THE_WIN_BACKS];
    let reference = run_json(&whole, &until);
    assert_eq!(reference["store"]["delivered"], 114, "{reference}");
    assert_eq!(
        parts_and_checkpoints(&whole, UNTIL_PART).0,
        0,
        "taken whole"
    );

    let (_b, bounded) = winback_store("customers_in_memory = 5");
    let (_, before) = parts_and_checkpoints(&bounded, UNTIL_PART);
    // Five timers a part, each part committed with a checkpoint that lets
    // its customers go.
    let stepped = run_json(&bounded, &until);
    let (parts, after) = parts_and_checkpoints(&bounded, UNTIL_PART);
    // 114 win-backs (and the timers of earlier orders' win-backs, which
    // fire to find them stale), at most 5 a part.
    assert!(parts >= 22, "{parts} parts");
    assert!(after > before + 10, "checkpoints {before} -> {after}");
    let m = &stepped["store"]["memory"];
    assert!(m["in_memory"].as_u64().unwrap() <= 5, "{m}");
    assert!(m["read_back"].as_u64().unwrap() >= 114, "{m}");
    assert_eq!(stepped["store"]["delivered"], 114, "{stepped}");
    assert_eq!(stepped["stats"], reference["stats"]);
    assert_same_decisions(&bounded, &whole);

    // A rebuild of the whole history replays each part as it was taken.
    std::fs::remove_file(bounded.join(".nudge/trace.jsonl")).unwrap();
    let rebuilt = run_json(&bounded, &[]);
    assert_eq!(rebuilt["store"]["restored"], 0, "{rebuilt}");
    assert_eq!(rebuilt["store"]["diverged"], false, "{rebuilt}");
    assert_eq!(rebuilt["store"]["delivered"], 0, "{rebuilt}");
    assert_eq!(rebuilt["stats"], reference["stats"]);
    assert_same_decisions(&bounded, &whole);
}

#[test]
fn a_clock_step_in_parts_over_the_breakers_limit_sends_none_of_its_sends() {
    let (_a, whole) = winback_store("");
    run_json(&whole, &["--until", AFTER_THE_WIN_BACKS]);
    let (_b, dir) = winback_store("customers_in_memory = 5\nmax_sends_per_step = 40");
    let sent = outbox_keys(&dir);

    let out = nudge(&[
        "run",
        s(&dir),
        "--until",
        AFTER_THE_WIN_BACKS,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the clock step of --until made 114 sends"),
        "the alert names the step and all its sends: {err}"
    );
    let summary: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let store = &summary["store"];
    // Every part's sends, none of them out.
    assert_eq!(store["held"], 114, "{summary}");
    assert!(parts_and_checkpoints(&dir, UNTIL_PART).0 >= 22);
    assert_eq!(store["delivered"], 0, "{summary}");
    assert_eq!(store["ledger"]["pending"], 114, "{summary}");
    assert_eq!(outbox_keys(&dir), sent, "a held send went out");

    // Released, each goes out once: the outbox of a run without a limit.
    run_json(&dir, &["--release-sends"]);
    assert_eq!(outbox_keys(&dir), outbox_keys(&whole));
}

#[test]
fn held_sends_the_outbox_already_has_are_released_as_delivered_not_sent_again() {
    let (_a, whole) = winback_store("");
    run_json(&whole, &["--until", AFTER_THE_WIN_BACKS]);
    let (_b, dir) = winback_store("customers_in_memory = 5\nmax_sends_per_step = 40");
    let out = nudge(&["run", s(&dir), "--until", AFTER_THE_WIN_BACKS]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // As if a release had written some of them to the outbox and been
    // killed before storing that: one in each of several pages of five.
    let db = rusqlite::Connection::open(dir.join(".nudge/state.db")).unwrap();
    let written: Vec<String> = db
        .prepare(
            "SELECT message FROM sends WHERE state = 'pending' ORDER BY rowid LIMIT 4 OFFSET 3",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .chain(
            db.prepare(
                "SELECT message FROM sends WHERE state = 'pending' ORDER BY rowid DESC LIMIT 1",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap),
        )
        .collect();
    drop(db);
    assert_eq!(written.len(), 5);
    let mut outbox = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(".nudge/outbox.jsonl"))
        .unwrap();
    for line in &written {
        writeln!(outbox, "{line}").unwrap();
    }
    drop(outbox);

    let released = run_json(&dir, &["--release-sends"]);
    let store = &released["store"];
    assert_eq!(store["retried"], 114, "{released}");
    assert_eq!(store["ledger"]["pending"], 0, "{released}");
    // Each once: the outbox of a run that was never held.
    let sent = outbox_keys(&dir);
    let twice: Vec<&String> = sent
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(twice.is_empty(), "sent again: {twice:?}");
    assert!(
        sent == outbox_keys(&whole),
        "the outbox differs from a run never held"
    );
}

#[test]
fn a_damaged_customer_row_stops_the_run_with_the_reason() {
    let (_tmp, dir) = copy_example("cart_recovery");
    add_runtime(&dir, "customers_in_memory = 1");
    let events = dir.join("events.jsonl");
    let all = std::fs::read_to_string(&events).unwrap();
    let first = run_json(&dir, &[]);
    assert_eq!(
        first["store"]["memory"]["customers"]
            .as_u64()
            .map(|n| n > 1),
        Some(true)
    );
    {
        let db = rusqlite::Connection::open(dir.join(".nudge/state.db")).unwrap();
        db.execute("UPDATE state_customers SET body = x'ffffffff'", [])
            .unwrap();
    }
    // The same calls again, as if sent twice under new message ids: each
    // reaches a customer who must be read back.
    let again: String = all
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(id) = v.get("messageId").and_then(|m| m.as_str()) {
                v["messageId"] = serde_json::json!(format!("{id}-again"));
            }
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&events, format!("{all}{again}")).unwrap();
    let out = nudge(&["run", s(&dir), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot be read back") && err.contains("customer"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
