//! The outbox file plugin and `read_outbox`.

mod common;

use std::fs;

use common::message;
use nudge_channels::{OutboxError, OutboxFile, OutboxMode, Plugin, Receipt, read_outbox};

#[test]
fn round_trip_of_three_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Parent directories are created on demand.
    let path = dir.path().join("runs/today/outbox.jsonl");
    let sent = vec![message(1), message(2), message(3)];
    let mut outbox = OutboxFile::create(&path).unwrap();
    assert_eq!(outbox.name(), "outbox");
    assert_eq!(outbox.path(), path);
    for msg in &sent {
        assert_eq!(outbox.deliver(msg).unwrap(), Receipt::first_try());
    }
    outbox.flush().unwrap();
    assert_eq!(read_outbox(&path).unwrap(), sent);

    // One compact JSON object per line, keys in the documented order.
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(text.ends_with('\n'));
    let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "at",
        "flow",
        "flow_version",
        "message",
        "channel",
        "customer",
        "to",
        "idempotency_key",
        "content",
    ];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    assert!(lines[0].starts_with(r#"{"at":"2024-05-01T10:00:00Z","flow":"onboarding","#));
}

#[test]
fn append_keeps_old_lines_and_create_discards_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let mut first = OutboxFile::create(&path).unwrap();
    first.deliver(&message(1)).unwrap();
    first.deliver(&message(2)).unwrap();
    first.flush().unwrap();
    drop(first);

    let mut second = OutboxFile::append(&path).unwrap();
    second.deliver(&message(3)).unwrap();
    second.flush().unwrap();
    drop(second);
    assert_eq!(
        read_outbox(&path).unwrap(),
        vec![message(1), message(2), message(3)]
    );

    let mut fresh = OutboxFile::open(&path, OutboxMode::Truncate).unwrap();
    fresh.deliver(&message(4)).unwrap();
    fresh.flush().unwrap();
    assert_eq!(read_outbox(&path).unwrap(), vec![message(4)]);
}

#[test]
fn append_creates_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/outbox.jsonl");
    let mut outbox = OutboxFile::append(&path).unwrap();
    outbox.deliver(&message(1)).unwrap();
    outbox.flush().unwrap();
    assert_eq!(read_outbox(&path).unwrap(), vec![message(1)]);
}

#[test]
fn append_after_a_torn_last_line_starts_a_fresh_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let good = serde_json::to_string(&message(1)).unwrap();
    fs::write(&path, format!("{good}\n{{\"at\":\"2024")).unwrap();

    let mut outbox = OutboxFile::append(&path).unwrap();
    outbox.deliver(&message(2)).unwrap();
    outbox.flush().unwrap();

    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], "{\"at\":\"2024");
    assert_eq!(
        serde_json::from_str::<nudge_channels::Outgoing>(lines[2]).unwrap(),
        message(2)
    );
    // The torn line is reported, not skipped.
    match read_outbox(&path).unwrap_err() {
        OutboxError::Parse { line, .. } => assert_eq!(line, 2),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn read_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let good = serde_json::to_string(&message(1)).unwrap();
    // Blank lines are skipped but still counted.
    fs::write(&path, format!("{good}\n\n{{\"at\":\"x\"}}\n")).unwrap();
    let err = read_outbox(&path).unwrap_err();
    match &err {
        OutboxError::Parse { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
        }
        other => panic!("expected a parse error, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("outbox.jsonl:3:"), "{text}");
    assert!(text.contains("missing field `flow`"), "{text}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn blank_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    let good = serde_json::to_string(&message(1)).unwrap();
    fs::write(&path, format!("\n{good}\n  \n")).unwrap();
    assert_eq!(read_outbox(&path).unwrap(), vec![message(1)]);
}

#[test]
fn missing_outbox_is_an_io_error_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.jsonl");
    let err = read_outbox(&path).unwrap_err();
    assert!(matches!(err, OutboxError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.jsonl"), "{err}");
}

#[test]
fn an_unopenable_path_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, "").unwrap();
    // A regular file where a parent directory should be.
    let err = OutboxFile::create(blocker.join("outbox.jsonl")).unwrap_err();
    assert!(matches!(err, OutboxError::Io { .. }), "{err}");
}
