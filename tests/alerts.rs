//! End-to-end: `[[alerts]]` in nudge.toml, evaluated by `nudge serve` on the
//! calls' own clock and posted to `[alerts_webhook]`; `nudge check` places a
//! bad alert table; `nudge alerts export` writes Prometheus rules.

mod common;
use common::{Server, http_agent, receipt_project, s, start_server_with, wait_for_metric};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// A webhook that answers 200 to every POST and keeps the bodies it got.
fn recording_webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = seen.clone();
    let base = common::serve_http(move |body| {
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        bodies.lock().unwrap().push(json);
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    });
    (format!("{base}/alerts"), seen)
}

/// `2026-06-01T10:00:00Z` plus `secs`, as a Segment timestamp.
fn at(secs: i64) -> String {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z").unwrap();
    (t0 + chrono::Duration::seconds(secs))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn send(server: &Server, lines: &[String]) {
    let body = format!("{{\"batch\":[{}]}}", lines.join(","));
    let mut resp = http_agent()
        .post(format!("{}/v1/batch", server.base))
        .send(body)
        .expect("the request completes");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{text}");
}

fn bounce(user: usize, secs: i64) -> String {
    format!(
        r#"{{"type":"track","event":"Message Bounced","userId":"u{user}","timestamp":"{}","properties":{{"channel":"email","type":"hard"}}}}"#,
        at(secs)
    )
}

fn identify(user: usize, secs: i64) -> String {
    format!(
        r#"{{"type":"identify","userId":"u{user}","timestamp":"{}","traits":{{"email":"u{user}@example.com"}}}}"#,
        at(secs)
    )
}

/// Waits until the webhook has `n` bodies (or a deadline passes).
fn wait_for_bodies(seen: &Mutex<Vec<serde_json::Value>>, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bodies = seen.lock().unwrap().clone();
        if bodies.len() >= n || Instant::now() > deadline {
            return bodies;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bounces over 10% of an hour's deliveries fire the alert once (however
/// many more bounces follow), and an hour without any resolves it once.
#[test]
fn a_bounce_rate_over_its_threshold_is_notified_once_and_resolved_once() {
    let (_tmp, project) = receipt_project();
    let (url, seen) = recording_webhook();
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = 10\nwindow = \"1h\"\nmin_volume = 10\n\n[alerts_webhook]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    let server = start_server_with(&project, &["--no-auth", "--clock", "events"], &[]);
    // 20 receipts delivered in the first minute.
    let mut first = Vec::new();
    for u in 0..20 {
        first.push(identify(u, u as i64));
        first.push(format!(
            r#"{{"type":"track","event":"Order Completed","userId":"u{u}","timestamp":"{}","properties":{{"order_id":"o{u}","total":10}}}}"#,
            at(30 + u as i64)
        ));
    }
    send(&server, &first);
    let metrics = wait_for_metric(
        &server,
        r#"nudge_sends_total{channel="email",outcome="delivered"} 20"#,
    );
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 0"#),
        "{metrics}"
    );
    // 1 bounce of 20 (5%): under the threshold.
    send(&server, &[bounce(0, 300)]);
    // 3 more ten minutes in: 4 of 20, 20%.
    send(&server, &[bounce(1, 600), bounce(2, 601), bounce(3, 602)]);
    let metrics = wait_for_metric(&server, r#"nudge_alerts_firing{alert="bounces"} 1"#);
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 1"#),
        "{metrics}"
    );
    // More bounces while it fires: no second notification.
    send(&server, &[bounce(4, 900), bounce(5, 901)]);
    let metrics = wait_for_metric(
        &server,
        r#"nudge_track_events_total{event="Message Bounced"} 6"#,
    );
    assert!(
        metrics.contains(r#"nudge_track_events_total{event="Message Bounced"} 6"#),
        "{metrics}"
    );
    // Three hours on no send was delivered in the last hour: clear since
    // then, and resolved an hour later.
    send(&server, &[identify(30, 3 * 3600)]);
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 1"#),
        "still firing within the clear window: {metrics}"
    );
    send(&server, &[identify(31, 4 * 3600 + 1)]);
    let metrics = wait_for_metric(&server, r#"nudge_alerts_firing{alert="bounces"} 0"#);
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 0"#),
        "{metrics}"
    );
    server.terminate();
    let bodies = wait_for_bodies(&seen, 2);
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let (fired, resolved) = (&bodies[0], &bodies[1]);
    assert_eq!(fired["alert"], "bounces");
    assert_eq!(fired["kind"], "bounce_rate");
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["value"], 20.0);
    assert_eq!(fired["threshold"], 10.0);
    assert_eq!(fired["at"], at(602));
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["at"], at(4 * 3600 + 1));
}

fn nudge() -> Command {
    Command::cargo_bin("nudge").unwrap()
}

fn write_toml(project: &Path, text: &str) {
    std::fs::write(project.join("nudge.toml"), text).unwrap();
}

#[test]
fn check_places_a_bad_alert_at_its_key() {
    let (_tmp, project) = receipt_project();
    write_toml(
        &project,
        "[[alerts]]\nname = \"a\"\nkind = \"bounce_rate\"\nthreshold = 5\nwindow = \"1h\"\n\n[[alerts]]\nname = \"b\"\nkind = \"bounce_rat\"\nthreshold = 5\nwindow = \"1h\"\n",
    );
    let out = nudge()
        .args(["check", "--format", "short", s(&project)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("nudge.toml:9:1: error[E0501]: `alerts[1].kind`: unknown kind `bounce_rat`"),
        "{text}"
    );
    // A missing setting points at its table; a bad duration at its key.
    write_toml(
        &project,
        "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[alerts]]\nname = \"orders\"\nkind = \"event_volume_drop\"\ndrop = 50\nwindow = \"1h\"\n",
    );
    let out = nudge()
        .args(["check", "--format", "short", s(&project)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nudge.toml:4:1: error[E0501]: `alerts[0].event`: an `event_volume_drop` alert needs `event`"),
        "{text}"
    );
    write_toml(
        &project,
        "[[alerts]]\nname = \"dead\"\nkind = \"dead_letter_rate\"\nthreshold = 5\n  window = \"soon\"\n",
    );
    let out = nudge()
        .args(["check", "--format", "short", s(&project)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nudge.toml:5:3: error[E0501]: `alerts[0].window`"),
        "{text}"
    );
    // And serve refuses to start on it.
    nudge()
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", s(&project)])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "`alerts[0].window`: expected a duration such as `15m` or `1h`, found \"soon\"",
        ));
}

/// A small reader of the rules file's shape: each `- alert:` item with the
/// keys under it, checking the indentation YAML needs.
fn rules_of(yaml: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = yaml.lines();
    assert_eq!(lines.next(), Some("groups:"));
    assert_eq!(lines.next(), Some("  - name: nudge"));
    assert_eq!(lines.next(), Some("    rules:"));
    let mut rules = Vec::new();
    let mut section = String::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("      - ") {
            rules.push(std::collections::BTreeMap::new());
            section.clear();
            let (k, v) = rest.split_once(": ").expect("key: value");
            rules
                .last_mut()
                .unwrap()
                .insert(k.to_string(), v.to_string());
        } else if let Some(rest) = line.strip_prefix("          ") {
            let (k, v) = rest.split_once(": ").expect("key: value");
            assert!(
                !section.is_empty(),
                "a nested key outside a section: {line}"
            );
            rules
                .last_mut()
                .unwrap()
                .insert(format!("{section}.{k}"), v.to_string());
        } else if let Some(rest) = line.strip_prefix("        ") {
            let (k, v) = rest.split_once(':').expect("key:");
            let v = v.trim();
            if v.is_empty() {
                section = k.to_string();
            } else {
                section.clear();
                rules
                    .last_mut()
                    .unwrap()
                    .insert(k.to_string(), v.to_string());
            }
        } else {
            panic!("unexpected line: {line:?}");
        }
    }
    rules
}

/// A double-quoted YAML scalar (the JSON subset the file uses).
fn unquote(v: &str) -> String {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn export_writes_prometheus_rules_over_serve_metrics() {
    let (tmp, project) = receipt_project();
    write_toml(
        &project,
        "[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = 2.5\nwindow = \"1h\"\nmin_volume = 100\n\n[[alerts]]\nname = \"orders quiet\"\nkind = \"event_volume_drop\"\nevent = \"Order Completed\"\ndrop = 50\nwindow = \"30m\"\nbaseline = \"1d\"\n\n[[alerts]]\nname = \"dead\"\nkind = \"dead_letter_rate\"\nthreshold = 1\nwindow = \"15m\"\n",
    );
    let out = tmp.path().join("rules.yml");
    nudge()
        .args(["alerts", "export", s(&project), "-o", s(&out)])
        .assert()
        .success();
    let yaml = std::fs::read_to_string(&out).unwrap();
    let rules = rules_of(&yaml);
    assert_eq!(rules.len(), 3, "{yaml}");
    let names: Vec<String> = rules.iter().map(|r| unquote(&r["alert"])).collect();
    assert_eq!(names, ["bounces", "orders quiet", "dead"]);
    let exprs: Vec<String> = rules.iter().map(|r| unquote(&r["expr"])).collect();
    assert_eq!(
        exprs[0],
        r#"(100 * sum(increase(nudge_track_events_total{event="Message Bounced"}[1h])) / sum(increase(nudge_sends_total{outcome="delivered"}[1h])) > 2.5) and (sum(increase(nudge_sends_total{outcome="delivered"}[1h])) >= 100)"#
    );
    assert!(
        exprs[1].contains(r#"sum(increase(nudge_track_events_total{event="Order Completed"}[1d] offset 30m)) * 1800 / 86400"#),
        "{}",
        exprs[1]
    );
    assert!(
        exprs[2].starts_with("(100 * sum(increase(nudge_dead_letters_total[15m])) / sum(increase(nudge_events_total[15m])) > 1)"),
        "{}",
        exprs[2]
    );
    let keep: Vec<&str> = rules
        .iter()
        .map(|r| r["keep_firing_for"].as_str())
        .collect();
    assert_eq!(keep, ["1h", "30m", "15m"]);
    assert_eq!(rules[1]["labels.kind"], "event_volume_drop");
    assert!(unquote(&rules[1]["annotations.summary"]).contains("`Order Completed`"));
    // Without alerts: a valid, empty group; to stdout without -o.
    write_toml(&project, "");
    nudge()
        .args(["alerts", "export", s(&project)])
        .assert()
        .success()
        .stdout("groups:\n  - name: nudge\n    rules: []\n");
}

/// 20 receipts delivered within the first minute after `secs`, to users
/// from `first`.
fn receipts(first: usize, secs: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for u in first..first + 20 {
        lines.push(identify(u, secs + (u - first) as i64));
        lines.push(format!(
            r#"{{"type":"track","event":"Order Completed","userId":"u{u}","timestamp":"{}","properties":{{"order_id":"o{u}","total":10}}}}"#,
            at(secs + 30 + (u - first) as i64)
        ));
    }
    lines
}

/// How a server is stopped between the two runs.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
}

/// A firing alert stays fired across a restart: no second `firing` post,
/// even though the bounces after the restart would fire it on their own,
/// and exactly one `resolved` once the rate clears.
fn an_alert_firing_before_a_restart_is_not_fired_again(stop: Stop) {
    let (_tmp, project) = receipt_project();
    let (url, seen) = recording_webhook();
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = 10\nwindow = \"1h\"\nmin_volume = 10\n\n[alerts_webhook]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    let args = ["--no-auth", "--clock", "events"];
    let server = start_server_with(&project, &args, &[]);
    send(&server, &receipts(0, 0));
    wait_for_metric(
        &server,
        r#"nudge_sends_total{channel="email",outcome="delivered"} 20"#,
    );
    // 3 bounces of 20 sends: 15%, over 10%.
    send(&server, &[bounce(0, 600), bounce(1, 601), bounce(2, 602)]);
    send(&server, &[bounce(3, 603)]);
    let bodies = wait_for_bodies(&seen, 1);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["status"], "firing");
    // Once the post is known to have gone out, the store says so too.
    let metrics = wait_for_metric(&server, "nudge_alert_notifications_unposted 0");
    assert!(
        metrics.contains("nudge_alert_notifications_unposted 0"),
        "{metrics}"
    );
    match stop {
        Stop::Term => server.terminate(),
        Stop::Kill => server.kill(),
    }

    let server = start_server_with(&project, &args, &[]);
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 1"#),
        "restored as firing: {metrics}"
    );
    // After the restart, 20 more sends and 3 bounces: 15% of this run's
    // own sends, enough to fire an alert that forgot it was firing.
    send(&server, &receipts(40, 900));
    wait_for_metric(
        &server,
        r#"nudge_sends_total{channel="email",outcome="delivered"} 20"#,
    );
    // Alerts are evaluated a minute of the clock apart (a sixtieth of the
    // window): these come late enough after the receipts to be.
    send(
        &server,
        &[bounce(40, 1100), bounce(41, 1101), bounce(42, 1102)],
    );
    send(&server, &[bounce(43, 1103)]);
    let metrics = wait_for_metric(
        &server,
        r#"nudge_track_events_total{event="Message Bounced"} 4"#,
    );
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 1"#),
        "{metrics}"
    );
    // Clear at 3h (no send in the hour before), resolved an hour later,
    // once.
    send(&server, &[identify(90, 3 * 3600)]);
    send(&server, &[identify(91, 4 * 3600 + 1)]);
    let metrics = wait_for_metric(&server, r#"nudge_alerts_firing{alert="bounces"} 0"#);
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 0"#),
        "{metrics}"
    );
    // A graceful stop posts what is queued first: the count is final.
    server.terminate();
    let bodies = wait_for_bodies(&seen, 2);
    let statuses: Vec<&str> = bodies
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"], "{bodies:?}");
    assert_eq!(bodies[0]["at"], at(602));
    assert_eq!(bodies[1]["alert"], "bounces");
    assert_eq!(bodies[1]["at"], at(4 * 3600 + 1));
}

#[test]
fn an_alert_firing_at_a_graceful_stop_is_not_fired_again_and_resolves_once() {
    an_alert_firing_before_a_restart_is_not_fired_again(Stop::Term);
}

#[test]
fn an_alert_firing_when_the_server_is_killed_is_not_fired_again_and_resolves_once() {
    an_alert_firing_before_a_restart_is_not_fired_again(Stop::Kill);
}

/// A damaged alerts state in the store is no reason to stop serving: the
/// alerts start afresh, not firing.
#[test]
fn a_damaged_alerts_state_starts_the_alerts_afresh() {
    let (_tmp, project) = receipt_project();
    std::fs::write(
        project.join("nudge.toml"),
        "[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = 10\nwindow = \"1h\"\nmin_volume = 10\n",
    )
    .unwrap();
    let args = ["--no-auth", "--clock", "events"];
    let server = start_server_with(&project, &args, &[]);
    send(&server, &receipts(0, 0));
    wait_for_metric(
        &server,
        r#"nudge_sends_total{channel="email",outcome="delivered"} 20"#,
    );
    send(&server, &[bounce(0, 600), bounce(1, 601), bounce(2, 602)]);
    wait_for_metric(&server, r#"nudge_alerts_firing{alert="bounces"} 1"#);
    server.terminate();
    {
        let mut store = nudge_store::Store::open(&project.join(".nudge/state.db")).unwrap();
        let kept = store.alerts().unwrap().expect("the alerts' state was kept");
        assert!(kept.state.contains(r#""firing":true"#), "{}", kept.state);
        store
            .commit(&mut nudge_store::Batch {
                alerts: Some(nudge_store::AlertsWrite {
                    state: r#"{"version": 1, "at": "#.into(),
                    samples: vec![(1, "[".into())],
                    keep_from: 0,
                }),
                ..nudge_store::Batch::default()
            })
            .unwrap();
    }
    let server = start_server_with(&project, &args, &[]);
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 0"#),
        "{metrics}"
    );
    server.terminate();
}

/// A reload that changes the alerts keeps the state of each name that
/// stays (a firing alert is not fired again), and resolves a firing alert
/// it removes.
#[test]
fn a_reload_keeps_a_firing_alert_firing_and_resolves_a_removed_one() {
    let (_tmp, project) = receipt_project();
    let (url, seen) = recording_webhook();
    let toml = |threshold: u32, more: &str| {
        format!(
            "[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = {threshold}\nwindow = \"1h\"\nmin_volume = 10\n{more}\n[alerts_webhook]\nurl = \"{url}\"\n"
        )
    };
    std::fs::write(project.join("nudge.toml"), toml(10, "")).unwrap();
    let server = start_server_with(&project, &["--no-auth", "--clock", "events"], &[]);
    send(&server, &receipts(0, 0));
    wait_for_metric(
        &server,
        r#"nudge_sends_total{channel="email",outcome="delivered"} 20"#,
    );
    send(&server, &[bounce(0, 600), bounce(1, 601), bounce(2, 602)]);
    assert_eq!(wait_for_bodies(&seen, 1).len(), 1);
    // Another threshold for it and a new alert beside it, read on SIGHUP.
    std::fs::write(
        project.join("nudge.toml"),
        toml(
            12,
            "\n[[alerts]]\nname = \"dead\"\nkind = \"dead_letter_rate\"\nthreshold = 50\nwindow = \"1h\"\n",
        ),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let metrics = wait_for_metric(&server, r#"nudge_alerts_firing{alert="dead"} 0"#);
    assert!(
        metrics.contains(r#"nudge_alerts_firing{alert="bounces"} 1"#),
        "{metrics}"
    );
    // Still over 12%, a minute later: no second firing.
    send(&server, &[bounce(3, 700), bounce(4, 701)]);
    wait_for_metric(
        &server,
        r#"nudge_track_events_total{event="Message Bounced"} 5"#,
    );
    // Removed while firing: resolved once, at the engine's clock.
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[[alerts]]\nname = \"dead\"\nkind = \"dead_letter_rate\"\nthreshold = 50\nwindow = \"1h\"\n\n[alerts_webhook]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let bodies = wait_for_bodies(&seen, 2);
    server.terminate();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["status"], "firing");
    assert_eq!(bodies[1]["alert"], "bounces");
    assert_eq!(bodies[1]["status"], "resolved");
    assert_eq!(bodies[1]["value"], serde_json::Value::Null);
    assert_eq!(bodies[1]["at"], at(701));
    assert_eq!(seen.lock().unwrap().len(), 2);
}
