//! End-to-end: `nudge run` with the store delivers through a webhook that
//! refuses one customer's message and takes the other's; the trace records
//! both outcomes, `nudge explain` tells them apart and `nudge report` counts
//! them apart.

mod common;
use common::{explain_json, s, serve_http};

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const FLOW: &str = r#"message ping(name: string) {
  channel webhook
  purpose transactional
  url "https://hooks.example/orders/{name}"
}

flow thanks {
  trigger order_completed
  send ping(profile.first_name ?? "")
}
"#;

fn nudge(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nudge {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A project whose flow sends one webhook message per order, with an order
/// from `ok` and one from `refused`.
fn project(root: &Path) -> std::path::PathBuf {
    let dir = root.join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nudge.toml"), "").unwrap();
    std::fs::write(dir.join("shop.flow"), FLOW).unwrap();
    let mut lines = Vec::new();
    for (who, at) in [("ok", "10:00"), ("refused", "10:05")] {
        lines.push(json!({"type": "identify", "userId": who,
            "timestamp": format!("2026-01-05T09:{}:00Z", &at[3..]),
            "traits": {"first_name": who}}));
        lines.push(
            json!({"type": "track", "event": "Order Completed", "userId": who,
            "timestamp": format!("2026-01-05T{at}:00Z"),
            "properties": {"order_id": format!("o-{who}"), "total": 10}}),
        );
    }
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("events.jsonl"), text.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn a_refused_delivery_shows_as_failed_and_an_accepted_one_as_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = project(tmp.path());
    let base = serve_http(|body| {
        let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
        if msg["customer"] == "refused" {
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        }
    });
    let route = format!("webhook=webhook={base}/hook");
    nudge(&["run", s(&dir), "--drain", "--deliver", &route]);

    // The trace: both sends decided `sent`, then one delivery record each.
    let trace = std::fs::read_to_string(dir.join(".nudge/trace.jsonl")).unwrap();
    let deliveries: Vec<Value> = trace
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "delivery")
        .collect();
    assert_eq!(deliveries.len(), 2, "{trace}");
    let of = |who: &str| {
        deliveries
            .iter()
            .find(|d| d["customer"] == who)
            .unwrap_or_else(|| panic!("no delivery record for {who}: {trace}"))
    };
    assert_eq!(of("ok")["outcome"], "delivered");
    assert_eq!(of("ok")["provider"], "webhook");
    assert!(of("ok").get("reason").is_none());
    assert_eq!(of("refused")["outcome"], "failed");
    let reason = of("refused")["reason"].as_str().unwrap();
    assert!(reason.contains("500"), "{reason}");

    // `nudge explain`: in words, and as JSON.
    let ok = nudge(&["explain", "ok", s(&dir)]);
    assert!(
        ok.contains("ping by webhook: delivered [thanks #1 step 0]"),
        "{ok}"
    );
    let refused = nudge(&["explain", "refused", s(&dir)]);
    assert!(
        refused.contains("ping by webhook: failed (") && refused.contains("500"),
        "{refused}"
    );
    let json: Value = serde_json::from_str(&explain_json(&dir, "refused")).unwrap();
    let send = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "send")
        .unwrap();
    assert_eq!(send["outcome"], "sent");
    assert_eq!(send["delivery"], "failed");
    assert!(
        send["delivery_reason"].as_str().unwrap().contains("500"),
        "{send}"
    );

    // `nudge report`: one delivered, one failed, of two sent.
    let report: Value =
        serde_json::from_str(&nudge(&["report", s(&dir), "--format", "json"])).unwrap();
    let flow = &report["flows"][0];
    assert_eq!(flow["flow"], "thanks");
    let step = &flow["steps"][0];
    assert_eq!(step["message"], "ping");
    assert_eq!(
        (
            &step["sent"],
            &step["delivered"],
            &step["failed"],
            &step["unknown"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(0)),
        "{step:#}"
    );
    assert_eq!(flow["funnel"]["messaged"], 2);
    assert_eq!(flow["funnel"]["delivered"], 1);
    let table = nudge(&["report", s(&dir)]);
    assert!(
        table.contains("failed") && table.contains("unknown"),
        "{table}"
    );
}
