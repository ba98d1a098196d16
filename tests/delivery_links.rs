//! `unsubscribe_url` and `preferences_url` in message content: usable in
//! an email message's content and templates (a `let` of the same name wins),
//! refused elsewhere with its reason, and rendered as marks that the email
//! plugins replace with the customer's signed links (see the SMTP plugin's
//! tests for the replacement).

mod common;
use common::s;

use std::path::Path;
use std::process::Command;

const MESSAGES: &str = r#"message goodbye(order_id: string) {
  channel email
  subject "Order {order_id}"
  body "<p>Thanks.</p><a href=\"{unsubscribe_url}\">Unsubscribe</a>"
}

message manage() {
  channel email
  subject "Your choices"
  body template "templates/manage.html"
}

flow on_order {
  trigger order_completed
  entry always
  send goodbye(trigger.order_id)
  send manage()
}
"#;

const EVENTS: &str = r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"ann@example.com","consent":{"email":true}}}
{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:05:00Z","properties":{"order_id":"o1","total":10.0}}
"#;

fn project(dir: &Path, messages: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("flows.flow"), messages).unwrap();
    std::fs::write(
        dir.join("templates/manage.html"),
        "<p>Choose what you get: <a href=\"{{ preferences_url }}\">preferences</a>, or <a href=\"{{ unsubscribe_url }}\">stop</a>.</p>\n",
    )
    .unwrap();
    std::fs::write(dir.join("events.jsonl"), EVENTS).unwrap();
}

fn nudge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn email_content_and_templates_render_the_link_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    project(&dir, MESSAGES);
    let outbox = tmp.path().join("outbox.jsonl");
    let out = nudge(&["run", s(&dir), "--in-memory", "--outbox", s(&outbox)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&outbox)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[0]["content"]["body"],
        "<p>Thanks.</p><a href=\"nudge:unsubscribe_url\">Unsubscribe</a>"
    );
    assert_eq!(
        lines[1]["content"]["body"],
        "<p>Choose what you get: <a href=\"nudge:preferences_url\">preferences</a>, or <a href=\"nudge:unsubscribe_url\">stop</a>.</p>"
    );
}

#[test]
fn a_let_of_the_same_name_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    project(
        &dir,
        &format!("let unsubscribe_url = \"https://shop.example/bye\"\n\n{MESSAGES}"),
    );
    let outbox = tmp.path().join("outbox.jsonl");
    let out = nudge(&["run", s(&dir), "--in-memory", "--outbox", s(&outbox)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&outbox).unwrap();
    assert!(
        text.contains("href=\\\"https://shop.example/bye\\\""),
        "{text}"
    );
    assert!(text.contains("nudge:preferences_url"), "{text}");
    assert!(!text.contains("nudge:unsubscribe_url"), "{text}");
}

#[test]
fn the_links_are_refused_outside_email_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    project(
        &dir,
        &format!(
            "{MESSAGES}\nmessage text_note() {{\n  channel sms\n  text \"Stop: {{unsubscribe_url}}\"\n}}\n"
        ),
    );
    let out = nudge(&["check", s(&dir)]);
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("E0201"), "{text}");
    assert!(
        text.contains("`unsubscribe_url` is not available here"),
        "{text}"
    );
    assert!(
        text.contains("only in the content of email messages"),
        "{text}"
    );
    assert!(
        text.contains("flows.flow:"),
        "the error has its place: {text}"
    );
}
