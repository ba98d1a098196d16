//! The line-writer plugin (stdout and any other writer).

mod common;

use std::io::{self, Write};

use common::message;
use nudge_channels::{Lines, Plugin};

#[test]
fn writes_exact_json_lines() {
    let mut plugin = Lines::new(Vec::new());
    assert_eq!(plugin.name(), "lines");
    let mut msg = message(1);
    msg.content = serde_json::Map::new();
    msg.content.insert("text".into(), "Hi \"Ann\"\n".into());
    plugin.deliver(&msg).unwrap();
    plugin.deliver(&msg).unwrap();
    plugin.flush().unwrap();
    let line = concat!(
        r#"{"at":"2024-05-01T10:00:00Z","flow":"onboarding","flow_version":"3f2a9c","#,
        r#""message":"welcome","channel":"email","customer":"cus_1","#,
        r#""to":"user1@example.com","idempotency_key":"onboarding:cus_1:step-2","#,
        r#""content":{"text":"Hi \"Ann\"\n"}}"#,
        "\n"
    );
    assert_eq!(
        String::from_utf8(plugin.into_inner()).unwrap(),
        format!("{line}{line}")
    );
}

#[test]
fn content_keeps_the_message_order() {
    let mut plugin = Lines::new(Vec::new());
    let mut msg = message(1);
    msg.content = serde_json::Map::new();
    for key in ["subject", "body", "a_last"] {
        msg.content.insert(key.into(), key.into());
    }
    plugin.deliver(&msg).unwrap();
    let text = String::from_utf8(plugin.into_inner()).unwrap();
    assert!(
        text.contains(r#""content":{"subject":"subject","body":"body","a_last":"a_last"}"#),
        "{text}"
    );
}

#[test]
fn stdout_plugin_is_named_stdout() {
    assert_eq!(Lines::stdout().name(), "stdout");
    assert_eq!(Lines::with_name("audit", Vec::new()).name(), "audit");
}

/// A writer that always fails, like a closed pipe.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
    }
}

#[test]
fn write_failures_are_returned() {
    let mut plugin = Lines::with_name("pipe", Broken);
    let err = plugin.deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable);
    assert!(err.reason.contains("writing to pipe: pipe closed"), "{err}");
    let err = plugin.flush().unwrap_err();
    assert!(err.reason.contains("flushing pipe"), "{err}");
}
