//! End-to-end: an events file shuffled as a whole, sorted by `nudge events
//! sort` or by `nudge run --sort`, replays as the file sorted by time.

mod common;
use common::{copy_example, s};

use nudge_test_support::text;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("nudge runs")
}

/// Runs `nudge ARGS` in `dir` with `input` on its standard input.
fn piped(args: &[&str], dir: &Path, input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nudge runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(path, body).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A generated stream (in time order) of `events` lines.
fn generated(dir: &Path, events: u32) -> Vec<String> {
    let path = dir.join("generated.jsonl");
    let made = nudge(&[
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        "5",
        "--days",
        "4",
        "-o",
        s(&path),
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let lines = read_lines(&path);
    std::fs::remove_file(&path).unwrap();
    lines
}

/// `lines` in a fixed pseudo-random order, with lines whose time cannot be
/// read and a blank line among them.
fn shuffled(lines: &[String]) -> Vec<String> {
    let mut out = lines.to_vec();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out.insert(
        out.len() / 3,
        "{\"type\":\"track\",\"userId\":\"u1\",".to_string(),
    );
    out.insert(out.len() / 2, String::new());
    out.insert(
        out.len() * 2 / 3,
        r#"{"type":"track","event":"Order Completed","userId":"u2","timestamp":"someday"}"#
            .to_string(),
    );
    out
}

/// The time the test reads on a line: its `timestamp` (the generated
/// lines carry no clock correction), or `None`.
fn time(line: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?;
    Some(t.timestamp_millis())
}

/// `lines` stably sorted by time; a line without one takes the latest
/// time before it in the file; blank lines left out.
fn by_time(lines: &[String]) -> Vec<String> {
    let mut last = i64::MIN;
    let mut keyed: Vec<(i64, &String)> = Vec::new();
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let t = time(line).unwrap_or(last);
        last = last.max(t);
        keyed.push((t, line));
    }
    keyed.sort_by_key(|&(t, _)| t);
    keyed.into_iter().map(|(_, l)| l.clone()).collect()
}

/// Runs `nudge run` on `events` with its outputs in `out`.
fn replay_into(project: &Path, events: &Path, out: &Path, extra: &[&str]) -> Output {
    let _ = std::fs::remove_dir_all(out);
    let names = ["outbox.jsonl", "trace.jsonl", "dead.jsonl", "state.db"].map(|f| out.join(f));
    let mut args = vec!["run", s(project), "--events", s(events), "--drain"];
    args.extend(["--outbox", s(&names[0]), "--trace", s(&names[1])]);
    args.extend(["--dead-letters", s(&names[2])]);
    if !extra.contains(&"--in-memory") {
        args.extend(["--store", s(&names[3])]);
    }
    args.extend(extra);
    let ran = nudge(&args);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    ran
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What is in a directory (nothing when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_shuffled_file_replayed_with_sort_gives_the_outputs_of_the_sorted_file() {
    let (tmp, dir) = copy_example("cart_recovery");
    // A window far shorter than the file, as a large file's would be.
    let manifest = dir.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    assert!(!toml.contains("[runtime]"), "the example sets no [runtime]");
    toml.push_str("\n[runtime]\nreorder_window = 100\n");
    std::fs::write(&manifest, toml).unwrap();
    let work = tmp.path();
    let lines = shuffled(&generated(work, 2400));
    let (unsorted, sorted) = (work.join("unsorted.jsonl"), work.join("sorted.jsonl"));
    write_lines(&unsorted, &lines);

    // The sort command, with a budget small enough to spill many runs.
    let runs = work.join("runs");
    let made = nudge(&[
        "events",
        "sort",
        s(&unsorted),
        "-o",
        s(&sorted),
        "--memory",
        "64K",
        "--temp-dir",
        s(&runs),
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let said = text(&made.stderr);
    assert!(said.contains("sorted 2402 lines by time"), "{said}");
    assert!(said.contains("2 without a readable time"), "{said}");
    assert!(said.contains("1 blank lines dropped"), "{said}");
    assert!(said.contains("runs of at most 64K spilled"), "{said}");
    assert_eq!(read_lines(&sorted), by_time(&lines));
    assert!(entries(&runs).is_empty(), "{:?}", entries(&runs));

    // The sorted file replays as it is.
    let want = work.join("want");
    replay_into(&dir, &sorted, &want, &["--in-memory"]);
    let outbox = read(want.join("outbox.jsonl"));
    assert!(outbox.lines().count() > 10, "the stream sends: {outbox}");

    // Replaying the shuffled file without sorting warns, naming the sort,
    // and sends otherwise.
    let plain = work.join("plain");
    let ran = replay_into(&dir, &unsorted, &plain, &["--in-memory"]);
    let warned = text(&ran.stderr);
    assert!(warned.contains("out of time order"), "{warned}");
    assert!(
        warned.contains("nudge events sort FILE -o SORTED"),
        "{warned}"
    );
    assert_ne!(read(plain.join("outbox.jsonl")), outbox);

    // With --sort, in runs spilled next to the store: the same outbox and
    // trace as the sorted file, and no temporary file left behind.
    let got = work.join("got");
    let ran = replay_into(
        &dir,
        &unsorted,
        &got,
        &["--in-memory", "--sort", "--sort-memory", "32K"],
    );
    assert!(!text(&ran.stderr).contains("out of time order"));
    assert!(read(got.join("outbox.jsonl")) == outbox, "the same sends");
    assert!(
        read(got.join("trace.jsonl")) == read(want.join("trace.jsonl")),
        "the same trace"
    );
    let leftovers: Vec<String> = entries(&dir.join(".nudge"))
        .into_iter()
        .filter(|e| e.starts_with("sort-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same dead letters, with the line numbers of the file replayed.
    let dead = |path: PathBuf| -> Vec<serde_json::Value> {
        read(path)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (want_dead, got_dead) = (dead(want.join("dead.jsonl")), dead(got.join("dead.jsonl")));
    assert_eq!(got_dead.len(), 2, "{got_dead:?}");
    for (w, g) in want_dead.iter().zip(&got_dead) {
        assert_eq!((&w["input"], &w["reason"]), (&g["input"], &g["reason"]));
        let line = g["line"].as_u64().unwrap() as usize;
        assert_eq!(lines[line - 1], g["input"].as_str().unwrap());
    }

    // The durable store replays the sorted file to the same outbox.
    let durable = work.join("durable");
    replay_into(&dir, &sorted, &durable, &[]);
    assert!(read(durable.join("outbox.jsonl")) == outbox);
}

#[test]
fn sort_with_the_durable_store_is_refused_naming_the_sort_command() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let ran = nudge(&["run", s(&dir), "--sort"]);
    assert_eq!(ran.status.code(), Some(2));
    let said = text(&ran.stderr);
    assert!(said.contains("--sort replays in memory only"), "{said}");
    assert!(said.contains("nudge events sort FILE -o SORTED"), "{said}");
    assert!(!dir.join(".nudge/state.db").exists());
    // Its settings need --sort.
    let ran = nudge(&["run", s(&dir), "--in-memory", "--sort-memory", "1M"]);
    assert_eq!(ran.status.code(), Some(2));
    assert!(
        text(&ran.stderr).contains("--sort"),
        "{}",
        text(&ran.stderr)
    );
}

#[test]
fn events_sort_reads_standard_input_and_sorts_a_file_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = shuffled(&generated(tmp.path(), 300));
    let mut input = lines.join("\n");
    input.push('\n');

    let out = piped(
        &["events", "sort", "-", "--memory", "4K"],
        tmp.path(),
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = by_time(&lines);
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Runs spilled in the current directory, then removed.
    assert!(
        text(&out.stderr).contains("spilled"),
        "{}",
        text(&out.stderr)
    );
    let left: Vec<String> = entries(tmp.path())
        .into_iter()
        .filter(|e| e != "in.jsonl")
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // In place: the output replaces the input once it is complete.
    let file = tmp.path().join("in.jsonl");
    write_lines(&file, &lines);
    let ran = nudge(&["events", "sort", s(&file), "-o", s(&file), "--memory", "4K"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert_eq!(read_lines(&file), want);
    assert_eq!(entries(tmp.path()), ["in.jsonl"]);
}

#[test]
fn events_sort_reports_bad_input_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.jsonl");
    let out = tmp.path().join("out.jsonl");
    let ran = nudge(&["events", "sort", s(&missing), "-o", s(&out)]);
    assert_eq!(ran.status.code(), Some(2));
    let said = text(&ran.stderr);
    assert!(said.contains("cannot read events from"), "{said}");
    assert!(said.contains("missing.jsonl"), "{said}");

    let ran = nudge(&["events", "sort", s(&missing), "--memory", "lots"]);
    assert_eq!(ran.status.code(), Some(2));
    assert!(
        text(&ran.stderr).contains("not a size"),
        "{}",
        text(&ran.stderr)
    );

    // Runs cannot be written where a file stands: the error names it, and
    // neither the output nor a partial one is left.
    let lines = shuffled(&generated(tmp.path(), 200));
    let input = tmp.path().join("in.jsonl");
    write_lines(&input, &lines);
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, "a file").unwrap();
    let ran = nudge(&[
        "events",
        "sort",
        s(&input),
        "-o",
        s(&out),
        "--memory",
        "1K",
        "--temp-dir",
        s(&blocker),
    ]);
    assert_eq!(ran.status.code(), Some(2));
    let said = text(&ran.stderr);
    assert!(said.contains("cannot sort events from"), "{said}");
    assert!(said.contains("blocker"), "{said}");
    let mut left = entries(tmp.path());
    left.sort();
    assert_eq!(left, ["blocker", "in.jsonl"]);
}

#[test]
fn calls_read_from_standard_input_replay_as_the_file_and_a_durable_run_refuses_them() {
    let (tmp, dir) = copy_example("cart_recovery");
    let work = tmp.path();
    let lines = shuffled(&generated(work, 600));
    let events = work.join("events.jsonl");
    write_lines(&events, &lines);
    let want = work.join("want");
    replay_into(&dir, &events, &want, &["--in-memory", "--sort"]);
    let outbox = read(want.join("outbox.jsonl"));
    assert!(outbox.lines().count() > 2, "the stream sends: {outbox}");

    // The same calls piped in, sorted as they come: the same outputs.
    let got = work.join("got");
    let names = ["outbox.jsonl", "trace.jsonl", "dead.jsonl"].map(|f| got.join(f));
    let ran = piped(
        &[
            "run",
            s(&dir),
            "--events",
            "-",
            "--drain",
            "--in-memory",
            "--sort",
            "--outbox",
            s(&names[0]),
            "--trace",
            s(&names[1]),
            "--dead-letters",
            s(&names[2]),
        ],
        work,
        &std::fs::read(&events).unwrap(),
    );
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert!(read(names[0].clone()) == outbox, "the same sends");
    assert!(
        read(names[1].clone()) == read(want.join("trace.jsonl")),
        "the same trace"
    );
    assert_eq!(read(names[2].clone()), read(want.join("dead.jsonl")));

    // The store cannot go on from a position in standard input.
    let refused = nudge(&["run", s(&dir), "--events", "-"]);
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.contains("--events - (standard input) replays in memory only"),
        "{said}"
    );
    assert!(said.contains("save the calls to a file"), "{said}");
    assert!(!dir.join(".nudge/state.db").exists(), "no store was made");
}
