//! `nudge run` with `nudge.toml` pointing the email channel at a local SMTP
//! server: every cart reminder arrives as a real multipart email with the
//! one-click unsubscribe headers.

mod common;
use common::{copy_example, s, serve_smtp};

use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[test]
fn nudge_run_sends_cart_reminders_as_multipart_email_over_smtp() {
    let (tmp, dir) = copy_example("cart_recovery");
    let plain = tmp.path().join("plain.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&dir), "--in-memory", "--outbox", s(&plain)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(&plain)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|m: &serde_json::Value| m["channel"] == "email")
        .collect();
    assert!(!expected.is_empty());

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    serve_smtp(listener, Arc::clone(&messages));
    std::fs::write(
        dir.join("nudge.toml"),
        format!(
            "[channels.email]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"Shop <news@shop.example>\"\nunsubscribe_url = \"https://shop.example/unsubscribe\"\nunsubscribe_secret = \"${{UNSUBSCRIBE_SECRET}}\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&dir), "--in-memory"])
        .env("UNSUBSCRIBE_SECRET", "a-long-random-test-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let received = messages.lock().unwrap().clone();
    assert_eq!(received.len(), expected.len());
    for (mail, sent) in received.iter().zip(&expected) {
        let to = sent["to"].as_str().unwrap();
        assert_eq!(header(mail, "To"), Some(to), "{mail}");
        assert_eq!(header(mail, "From"), Some("Shop <news@shop.example>"));
        let key = sent["idempotency_key"].as_str().unwrap();
        assert_eq!(
            header(mail, "Message-ID"),
            Some(nudge_channels::message_id(key, "shop.example").as_str())
        );
        let customer = sent["customer"].as_str().unwrap();
        let links = nudge_channels::Unsubscribe::new(
            "smtp",
            "https://shop.example/unsubscribe",
            "a-long-random-test-secret",
        )
        .unwrap();
        assert_eq!(
            header(mail, "List-Unsubscribe"),
            Some(format!("<{}>", links.url(customer, "email")).as_str()),
            "{mail}"
        );
        assert_eq!(
            header(mail, "List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(
            header(mail, "Content-Type").is_some_and(|v| v.starts_with("multipart/alternative")),
            "{mail}"
        );
        let plain_at = mail.find("Content-Type: text/plain").expect("a text part");
        let html_at = mail.find("Content-Type: text/html").expect("an HTML part");
        assert!(plain_at < html_at, "the text part comes first");
    }
}
