//! Delivery records (written by store-backed runs) read by `nudge explain`
//! and `nudge report`: each send's last outcome, bounces after delivery,
//! and traces without delivery records read as before.

use std::path::Path;

use nudge_report::{FlowSpec, Report, Scope, SendState, Timeline, Trace};

/// A send of `welcome` to `who` under key `k-who`, after its entry.
fn send(who: &str, minute: u32) -> String {
    format!(
        concat!(
            r#"{{"at":"2026-03-02T10:{m:02}:00Z","customer":"{w}","kind":"entered","flow":"welcome","version":"v","instance":1,"trigger":"signed_up","holdout":false}}"#,
            "\n",
            r#"{{"at":"2026-03-02T10:{m:02}:00Z","customer":"{w}","kind":"send","flow":"welcome","instance":1,"step":0,"message":"hello","channel":"email","outcome":"sent","key":"k-{w}"}}"#,
            "\n"
        ),
        m = minute,
        w = who
    )
}

/// A delivery record for `k-who`.
fn delivery(who: &str, minute: u32, outcome: &str, reason: Option<&str>) -> String {
    let reason = reason.map_or(String::new(), |r| format!(r#","reason":"{r}""#));
    format!(
        r#"{{"kind":"delivery","at":"2026-03-02T10:{minute:02}:00Z","customer":"{who}","flow":"welcome","message":"hello","channel":"email","outcome":"{outcome}"{reason},"provider":"smtp","key":"k-{who}"}}
"#
    )
}

/// Five sends: delivered then bounced, failed, failed then delivered on a
/// retry, never answered, and one with no outcome yet.
fn trace() -> Trace {
    let mut text = String::new();
    for (i, who) in ["bounced", "failed", "retried", "unknown", "queued"]
        .into_iter()
        .enumerate()
    {
        text.push_str(&send(who, i as u32));
    }
    text.push_str(&delivery("bounced", 0, "delivered", None));
    text.push_str(&delivery("failed", 1, "failed", Some("HTTP 500")));
    text.push_str(&delivery("retried", 2, "failed", Some("HTTP 503")));
    text.push_str(&delivery(
        "unknown",
        3,
        "unknown",
        Some("no answer within 10s"),
    ));
    text.push_str(&delivery("retried", 2, "delivered", None));
    text.push_str(
        r#"{"at":"2026-03-02T11:00:00Z","customer":"bounced","kind":"feedback","feedback":"bounced","channel":"email","message":"hello","flow":"welcome"}"#,
    );
    text.push('\n');
    Trace::parse(&text, Path::new("t.jsonl")).unwrap()
}

fn state(trace: &Trace, who: &str) -> (SendState, String) {
    let t = Timeline::build(trace, who, None).unwrap();
    let states: Vec<&SendState> = t.delivery.values().collect();
    assert_eq!(states.len(), 1, "one send for {who}");
    let line = t
        .human()
        .lines()
        .find(|l| l.contains("hello by email"))
        .unwrap()
        .to_string();
    (states[0].clone(), line)
}

#[test]
fn explain_shows_each_sends_last_outcome() {
    let t = trace();
    let cases = [
        ("bounced", SendState::Bounced, "hello by email: bounced ["),
        (
            "failed",
            SendState::Failed("HTTP 500".into()),
            "hello by email: failed (HTTP 500) [",
        ),
        (
            "retried",
            SendState::Delivered,
            "hello by email: delivered [",
        ),
        (
            "unknown",
            SendState::Unknown("no answer within 10s".into()),
            "hello by email: unknown (no answer within 10s) [",
        ),
        ("queued", SendState::Queued, "hello by email: queued ["),
    ];
    for (who, want, words) in cases {
        let (got, line) = state(&t, who);
        assert_eq!(got, want, "{who}");
        assert!(line.contains(words), "{who}: {line}");
    }
    let json = Timeline::build(&t, "failed", None).unwrap().json();
    let send = &json[1];
    assert_eq!(send["kind"], "send");
    assert_eq!(send["outcome"], "sent");
    assert_eq!(send["delivery"], "failed");
    assert_eq!(send["delivery_reason"], "HTTP 500");
}

#[test]
fn explain_of_a_trace_without_delivery_records_reads_as_before() {
    let t = Trace::parse(&send("plain", 0), Path::new("t.jsonl")).unwrap();
    let timeline = Timeline::build(&t, "plain", None).unwrap();
    assert!(timeline.delivery.is_empty());
    assert!(
        timeline.human().contains("hello by email: sent ["),
        "{}",
        timeline.human()
    );
    assert!(timeline.json()[1].get("delivery").is_none());
}

fn scope() -> Scope {
    Scope {
        flows: vec![FlowSpec {
            name: "welcome".into(),
            goal_window: None,
        }],
        ..Scope::default()
    }
}

#[test]
fn the_report_counts_outcomes_from_delivery_records() {
    let r = Report::build(&trace(), &scope());
    let step = &r.flows[0].steps[0].counts;
    assert_eq!(step.sent, 5);
    // Accepted: `bounced` and `retried`; one of them bounced afterwards.
    assert_eq!(step.delivered, Some(1));
    assert_eq!(
        (step.failed, step.unknown, step.bounced),
        (Some(1), Some(1), 1)
    );
    assert_eq!(r.flows[0].sends.failed, Some(1));
    assert_eq!(r.sends.unknown, Some(1));
    let f = &r.flows[0].funnel;
    // Customers: five messaged, only `retried` reached (one accepted send, not bounced).
    assert_eq!((f.messaged, f.delivered), (5, Some(1)));
    let json = r.json();
    assert_eq!(json["flows"][0]["steps"][0]["failed"], 1);
    assert_eq!(json["flows"][0]["steps"][0]["unknown"], 1);
    let table = r.table();
    assert!(
        table.contains("delivered  failed  unknown  bounced"),
        "{table}"
    );
    let csv = r.csv();
    assert!(csv.contains("welcome,0,hello,email,failed,1\n"), "{csv}");
    assert!(csv.contains("welcome,0,hello,email,unknown,1\n"), "{csv}");
    let html = nudge_report::html::page(&r, "t");
    assert!(html.contains("<th>failed</th><th>unknown</th>"));
}

#[test]
fn a_report_of_a_trace_without_delivery_records_derives_delivered_from_feedback() {
    let mut text = send("a", 0) + &send("b", 1);
    text.push_str(
        r#"{"at":"2026-03-02T11:00:00Z","customer":"a","kind":"feedback","feedback":"bounced","channel":"email","message":"hello"}"#,
    );
    let r = Report::build(&Trace::parse(&text, Path::new("t")).unwrap(), &scope());
    let step = &r.flows[0].steps[0].counts;
    assert_eq!((step.sent, step.delivered, step.bounced), (2, Some(1), 1));
    assert_eq!((step.failed, step.unknown), (None, None));
    assert!(r.json()["flows"][0]["steps"][0].get("failed").is_none());
    assert!(!r.table().contains("unknown"));

    let quiet = Report::build(
        &Trace::parse(&send("c", 0), Path::new("t")).unwrap(),
        &scope(),
    );
    assert_eq!(quiet.flows[0].steps[0].counts.delivered, None);
}
