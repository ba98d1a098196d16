//! End-to-end through the real binary: hostile profile values arrive inert
//! in every kind of content, and templates cannot read files outside the
//! project.

mod common;
use common::s;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("nudge runs")
}

const FLOW: &str = r#"message note(name: string) {
  channel email
  purpose transactional
  subject "Thanks, {name}"
  preheader "A note for {name}"
  body "<p>Hello {name}</p>"
}

message page(name: string) {
  channel email
  purpose transactional
  subject "Page"
  body template "templates/page.html"
}

message hook(name: string) {
  channel webhook
  purpose transactional
  url "https://hooks.example/customers/{name}"
  payload template "templates/hook.json"
}

message text(name: string) {
  channel sms
  purpose transactional
  text "Hi {name}, your order shipped."
}

flow thanks {
  trigger order_completed
  send note(profile.first_name ?? "")
  send page(profile.first_name ?? "")
  send hook(profile.first_name ?? "")
  send text(profile.first_name ?? "")
}
"#;

/// The outbox's content fields by message.
fn content(dir: &Path) -> std::collections::BTreeMap<String, Value> {
    std::fs::read_to_string(dir.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["message"].as_str().unwrap().to_string(),
                v["content"].clone(),
            )
        })
        .collect()
}

#[test]
fn hostile_traits_arrive_inert_in_every_kind_of_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("nudge.toml"), "").unwrap();
    std::fs::write(dir.join("shop.flow"), FLOW).unwrap();
    std::fs::write(dir.join("templates/page.html"), "<h1>{{ name }}</h1>\n").unwrap();
    std::fs::write(
        dir.join("templates/hook.json"),
        "{\"name\": \"{{ name }}\", \"admin\": false}\n",
    )
    .unwrap();
    let hostile = "<script>x</script>\"},\"admin\":true,\"a\":\"\r\nBcc: all@evil.example a b&c=d";
    let lines = [
        json!({"type": "identify", "userId": "u1", "timestamp": "2026-01-05T09:00:00Z",
               "traits": {"email": "u1@example.com", "phone": "+14155550100", "first_name": hostile}}),
        json!({"type": "track", "event": "Order Completed", "userId": "u1",
               "timestamp": "2026-01-05T10:00:00Z", "properties": {"order_id": "o1", "total": 10}}),
    ];
    let events = dir.join("events.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&events, text.join("\n") + "\n").unwrap();
    let out = nudge(&["run", s(&dir), "--events", s(&events), "--drain"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = content(&dir);
    let inline_html = "&lt;script&gt;x&lt;/script&gt;&quot;},&quot;admin&quot;:true,&quot;a&quot;:&quot;\r\nBcc: all@evil.example a b&amp;c=d";
    // HTML: the inline body exactly like the template.
    assert_eq!(c["note"]["body"], format!("<p>Hello {inline_html}</p>"));
    assert_eq!(c["page"]["body"], format!("<h1>{inline_html}</h1>"));
    // Header-like fields: no line break survives, so no header can be added.
    let one_line = "<script>x</script>\"},\"admin\":true,\"a\":\"Bcc: all@evil.example a b&c=d";
    assert_eq!(c["note"]["subject"], format!("Thanks, {one_line}"));
    assert_eq!(c["note"]["preheader"], format!("A note for {one_line}"));
    assert_eq!(
        c["text"]["text"],
        format!("Hi {one_line}, your order shipped.")
    );
    // JSON: the payload still parses, with the value as one string.
    let payload: Value =
        serde_json::from_str(c["hook"]["payload"].as_str().unwrap()).expect("valid JSON");
    assert_eq!(payload, json!({"name": hostile, "admin": false}));
    // URL: the value is one percent-encoded path segment.
    let url = c["hook"]["url"].as_str().unwrap();
    let segment = url
        .strip_prefix("https://hooks.example/customers/")
        .unwrap();
    assert!(
        segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{url}"
    );
    assert!(segment.ends_with("a%20b%26c%3Dd"), "{url}");
}

#[test]
fn nudge_check_refuses_templates_outside_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("nudge.toml"), "").unwrap();
    std::fs::write(tmp.path().join("secret.env"), "ADMIN_TOKEN=hunter2\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        tmp.path().join("secret.env"),
        dir.join("templates/link.html"),
    )
    .unwrap();
    let mut paths = vec!["/etc/hostname", "/proc/self/environ", "../secret.env"];
    if cfg!(unix) {
        paths.push("templates/link.html");
    }
    for path in paths {
        std::fs::write(
            dir.join("shop.flow"),
            FLOW.replace("templates/page.html", path),
        )
        .unwrap();
        let out = nudge(&["check", s(&dir), "--format", "short"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{path}: {stdout}");
        assert!(
            stdout.contains("error[E0409]") && !stdout.contains("hunter2"),
            "{path}: {stdout}"
        );
        // And nothing is built from it.
        let bundle = tmp.path().join("out.nudgeb");
        let out = nudge(&["build", s(&dir), "-o", s(&bundle)]);
        assert_ne!(out.status.code(), Some(0), "{path}");
        assert!(!bundle.exists(), "{path}");
    }
}

#[test]
fn dates_and_money_are_written_in_the_recipients_zone_locale_and_currency() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("nudge.toml"), "").unwrap();
    std::fs::write(
        dir.join("shop.flow"),
        r#"policy {
  currency "EUR"
}

profile {
  renews_at: time?
}

message receipt(order: order_completed) {
  channel email
  purpose transactional
  subject "Paid {order.total}, renews {format_date(profile.renews_at ?? now(), "long")}"
  body template "templates/receipt.html"
}

message reminder(order: order_completed) {
  channel sms
  purpose transactional
  text "{format_money_in(order.total, order.currency ?? "EUR")} on {format_date(now(), "%a %-d %b %H:%M %Z")}"
}

flow thanks {
  trigger order_completed
  send receipt(trigger)
  send reminder(trigger)
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("templates/receipt.html"),
        "{% for p in order.products %}{{ p.name }} {{ p.price }}; {% endfor %}total {{ order.total }}, store {{ format_total }}\n",
    )
    .unwrap();
    // A template can read a let; it is written in the store's currency.
    let flow = std::fs::read_to_string(dir.join("shop.flow")).unwrap();
    std::fs::write(
        dir.join("shop.flow"),
        format!("let format_total = $1000\n\n{flow}"),
    )
    .unwrap();
    let lines = [
        json!({"type": "identify", "userId": "u1", "timestamp": "2026-01-05T09:00:00Z",
               "traits": {"email": "u1@example.com", "phone": "+4915112345678",
                          "timezone": "Europe/Berlin", "locale": "de-DE",
                          "renews_at": "2026-12-24T16:30:00Z"}}),
        json!({"type": "track", "event": "Order Completed", "userId": "u1",
               "timestamp": "2026-01-05T10:00:00Z",
               "properties": {"order_id": "o1", "total": 1250, "currency": "JPY",
                              "products": [{"product_id": "p1", "name": "Tee", "price": 1250.5}]}}),
    ];
    let events = dir.join("events.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&events, text.join("\n") + "\n").unwrap();
    let out = nudge(&["run", s(&dir), "--events", s(&events), "--drain"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = content(&dir);
    // Inline content: the store's currency; the date in Berlin, in German.
    assert_eq!(
        c["receipt"]["subject"],
        "Paid €1250.00, renews 24. Dezember 2026"
    );
    // The template: the order's own currency (yen: no minor units) for it
    // and its products, the store's for a constant.
    assert_eq!(
        c["receipt"]["body"],
        "Tee ¥1251; total ¥1250, store €1000.00"
    );
    assert_eq!(c["reminder"]["text"], "¥1250 on Mo. 5 Jan. 11:00 CET");
}
