//! End-to-end: `nudge serve` driven by Segment's official Python library
//! (segment-analytics-python), so the server is checked against the wire
//! format a real client sends (batch envelope with `sentAt` and `writeKey`,
//! `context.library`, `integrations`, explicit nulls, timestamps with
//! milliseconds and a "+00:00" offset), not only against hand-written JSON.
//!
//! Needs `python3` (3.11 or later) with pip and access to PyPI the first time:
//! the library is installed into a cache under the target directory.

mod common;
use common::{WRITE_KEY, copy_example, outbox_by_key, s, segment_library, start_server_with};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Segment calls, one per line and in time order: cart_recovery's sample
/// events moved to 2030, each with a messageId, plus two page calls. Dated
/// in the future so the wall clock never overtakes them: `nudge serve`
/// applies a call at max(engine clock, its time), so it is the later calls
/// that move the clock past the flow's waits, as in `nudge run`.
fn calls() -> PathBuf {
    fixtures().join("events.jsonl")
}

/// The driver script and its calls.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/segment_client")
}

/// A finished command's status and output, for failure messages.
fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn the_official_python_library_talks_to_nudge_serve() {
    let library = segment_library();
    let (_served_tmp, served) = copy_example("cart_recovery");
    let (reference_tmp, reference) = copy_example("cart_recovery");

    // Recorded calls, served on their own clock so that the outbox can be
    // compared with `nudge run`'s (the wall clock would take them as late).
    let server = start_server_with(
        &served,
        &["--write-key", WRITE_KEY, "--clock", "events"],
        &[],
    );
    let sent = Command::new("python3")
        .arg(fixtures().join("send.py"))
        .args([&server.base, WRITE_KEY, s(&calls())])
        .env("PYTHONPATH", &library)
        .output()
        .expect("python3 runs");
    let calls_text = std::fs::read_to_string(calls()).unwrap();
    let lines = calls_text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(sent.status.success(), "the driver failed:\n{}", text(&sent));
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        format!("sent {lines} calls")
    );
    // Every call arrived and was committed (a 200 means durable), the
    // repeated messageId included; none was refused by the engine.
    let metrics = server.metrics();
    assert_eq!(metric(&metrics, "nudge_events_total"), lines as u64);
    assert_eq!(metric(&metrics, "nudge_dead_letters_total"), 0);
    server.terminate();

    let dead = std::fs::read_to_string(served.join(".nudge/dead_letters.jsonl")).unwrap();
    assert_eq!(dead, "", "calls the engine refused");
    // What was stored is what the library put on the wire, not a rewrite.
    let store = nudge_store::Store::open(&served.join(".nudge/state.db")).unwrap();
    let mut bodies = Vec::new();
    store
        .for_each_call(|call| {
            if let nudge_store::Stored::Line { body, .. } = call {
                bodies.push(String::from_utf8(body.to_vec()).unwrap());
            }
            Ok(())
        })
        .unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&store.meta("stats").unwrap().unwrap()).unwrap();
    drop(store);
    assert_eq!(bodies.len(), lines);
    // The one line sent twice with the same messageId counts once.
    assert_eq!(
        (stats["events"].as_u64(), stats["duplicates"].as_u64()),
        (Some(lines as u64 - 1), Some(1))
    );
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["context"]["library"]["name"], "analytics-python", "{b}");
        assert!(
            v["timestamp"].as_str().unwrap().ends_with(".000+00:00"),
            "{b}"
        );
    }

    // The same calls as JSON lines through `nudge run`: the same messages.
    // They are dated years ahead, past the horizon a replay accepts by default.
    allow_the_future(&reference);
    let run_outbox = reference_tmp.path().join("run.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&reference), "--in-memory"])
        .args(["--events", s(&calls()), "--outbox", s(&run_outbox)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let expected = std::fs::read_to_string(&run_outbox).unwrap();
    let got = std::fs::read_to_string(served.join(".nudge/outbox.jsonl")).unwrap();
    assert_eq!(got, expected, "the served outbox differs from nudge run's");

    let by_key = outbox_by_key(&served.join(".nudge/outbox.jsonl"));
    assert!(
        by_key.values().all(|l| l.len() == 1),
        "a message sent twice"
    );
    let messages: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent_to: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["customer"].as_str().unwrap(),
                m["message"].as_str().unwrap(),
            )
        })
        .collect();
    // Ana (u1) bought on another device and the library's alias call joined
    // it to her anonymous checkout: she gets nothing. Ben's second checkout
    // starts no second sequence (`entry once per 7d`), Dan bought in time
    // and Eve's $0 checkout matches no trigger.
    assert_eq!(
        sent_to,
        [
            ("u3", "cart_reminder"),
            ("u2", "cart_reminder"),
            ("u2", "cart_discount"),
            ("u2", "cart_sms"),
        ]
    );
    let ben = &messages[1];
    assert_eq!(ben["flow"], "cart_recovery");
    assert_eq!(ben["channel"], "email");
    assert_eq!(ben["to"], "ben@example.com");
    assert_eq!(ben["content"]["subject"], "Ben, you left something behind");
    // Due at 21:30 in Los Angeles, inside quiet hours: held until after
    // 08:00 there (16:00 UTC), which the clock reached through later calls.
    let at = ben["at"].as_str().unwrap();
    assert!(
        ("2030-11-23T16:00:00Z".."2030-11-23T16:15:00Z").contains(&at),
        "{at}"
    );
}

/// Lets `nudge run` replay calls dated years ahead of the wall clock.
fn allow_the_future(project: &Path) {
    let toml = project.join("nudge.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text.push_str("\n[runtime]\nmax_future = \"3650d\"\n");
    std::fs::write(&toml, text).unwrap();
}
