//! End-to-end: push through FCM from `nudge serve` and `nudge run`. Device
//! tokens come from `context.device.token` and from the `deviceToken`
//! trait; a token FCM reports `UNREGISTERED` is removed from the profile,
//! so the next push to that customer is not sent (`no_address`), while
//! other customers' pushes still go out.

mod common;
use common::{basic_auth, explain_json, http_agent, serve_http, start_server_with};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A test service-account key (see crates/nudge-channels/tests/fcm.rs).
const KEY: &str = include_str!("../crates/nudge-channels/tests/fixtures/fcm-service-account.json");

/// A whole HTTP response with a JSON body.
fn response(status: &str, body: &str) -> &'static [u8] {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    )
}

/// Google's token endpoint and FCM on one local listener, answering as
/// they document; every request body is kept.
fn fake_fcm(seen: Arc<Mutex<Vec<String>>>) -> String {
    serve_http(move |body| {
        let text = String::from_utf8_lossy(&body).into_owned();
        seen.lock().unwrap().push(text.clone());
        if text.starts_with("grant_type=") {
            response(
                "200 OK",
                r#"{"access_token":"ya29.test","expires_in":3599,"token_type":"Bearer"}"#,
            )
        } else if text.contains("\"dead-token\"") {
            response(
                "404 Not Found",
                r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
            )
        } else {
            response(
                "200 OK",
                r#"{"name":"projects/nudge-test/messages/0:1500415314455276%31bd1c9631bd1c96"}"#,
            )
        }
    })
}

fn ingest(base: &str, calls: &[Value]) {
    let mut resp = http_agent()
        .post(format!("{base}/v1/batch"))
        .header("Authorization", basic_auth())
        .header("Content-Type", "application/json")
        .send(json!({ "batch": calls }).to_string())
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.body_mut().read_to_string().unwrap());
}

/// The push requests FCM received (the token requests left out).
fn pushes(seen: &Mutex<Vec<String>>) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|b| !b.starts_with("grant_type="))
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

fn wait_for_pushes(seen: &Mutex<Vec<String>>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = pushes(seen);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn order(user: &str, id: &str) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed", "properties": {"order_id": id, "total": 10.0}})
}

/// A project that pushes on every order through FCM at `base`.
fn push_project(base: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("shop");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("flows.flow"),
        r#"message shipped(order_id: string) {
  channel push
  purpose transactional
  title "On its way"
  text "Order {order_id} has shipped."
}

flow on_order {
  trigger order_completed
  entry always
  send shipped(trigger.order_id)
}
"#,
    )
    .unwrap();
    let mut key: Value = serde_json::from_str(KEY).unwrap();
    key["token_uri"] = json!(format!("{base}/token"));
    std::fs::write(project.join("fcm-key.json"), key.to_string()).unwrap();
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[channels.push]\nplugin = \"fcm\"\nservice_account_file = \"fcm-key.json\"\napi_url = \"{base}\"\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    (tmp, project)
}

#[test]
fn an_unregistered_token_is_removed_and_the_next_push_is_not_sent() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = fake_fcm(seen.clone());
    let (_tmp, project) = push_project(&base);
    let server = start_server_with(&project, &["--write-key", common::WRITE_KEY], &[]);
    ingest(
        &server.base,
        &[
            // Segment's mobile libraries send the token in the context.
            json!({"type": "identify", "userId": "u1", "traits": {"email": "ann@example.com"}, "context": {"device": {"type": "android", "token": "dead-token"}}}),
            json!({"type": "identify", "userId": "u2", "traits": {"deviceToken": "good-token"}}),
            json!({"type": "identify", "userId": "u3", "traits": {"email": "carl@example.com"}}),
            order("u1", "o1"),
            order("u2", "o2"),
            order("u3", "o3"),
        ],
    );
    let first = wait_for_pushes(&seen, 2);
    assert_eq!(first.len(), 2, "{first:#?}");
    let tokens: Vec<&str> = first
        .iter()
        .map(|p| p["message"]["token"].as_str().unwrap())
        .collect();
    assert!(
        tokens.contains(&"dead-token") && tokens.contains(&"good-token"),
        "{tokens:?}"
    );
    // Sends are delivered, and the dead token removed, before the engine
    // takes the next request.
    ingest(&server.base, &[order("u1", "o4"), order("u2", "o5")]);
    let after = wait_for_pushes(&seen, 3);
    // A moment more for any push that should not be there.
    std::thread::sleep(Duration::from_millis(500));
    let after = pushes(&seen).len().max(after.len());
    assert_eq!(after, 3, "only u2's second push went out");
    let last = pushes(&seen).pop().unwrap();
    assert_eq!(last["message"]["token"], "good-token");
    assert_eq!(
        last["message"]["notification"]["body"],
        "Order o5 has shipped."
    );
    let token_requests = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.starts_with("grant_type="))
        .count();
    assert_eq!(token_requests, 1, "the access token is kept");
    let metrics = server.metrics();
    for line in [
        "nudge_sends_total{channel=\"push\",outcome=\"failed\"} 1",
        "nudge_sends_total{channel=\"push\",outcome=\"delivered\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.terminate();

    let explain = |who: &str| explain_json(&project, who);
    let ann = explain("u1");
    assert!(ann.contains("no_address"), "{ann}");
    let carl = explain("u3");
    assert!(carl.contains("no_address"), "{carl}");
}

/// `nudge run` on the embedded store: the removal is a stored call, so the
/// next run (which starts from the checkpoint) and a rebuild from the calls
/// both know the token is gone.
#[test]
fn a_replay_removes_an_unregistered_token_for_the_next_run() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = fake_fcm(seen.clone());
    let (_tmp, project) = push_project(&base);
    let events = project.join("events.jsonl");
    let at = |mut call: Value, t: &str| {
        call["timestamp"] = json!(t);
        call.to_string() + "\n"
    };
    let first = [
        at(
            json!({"type": "identify", "userId": "u1", "context": {"device": {"token": "dead-token"}}}),
            "2026-01-05T09:00:00Z",
        ),
        at(
            json!({"type": "identify", "userId": "u2", "traits": {"deviceToken": "good-token"}}),
            "2026-01-05T09:00:00Z",
        ),
        at(order("u1", "o1"), "2026-01-05T10:00:00Z"),
        at(order("u2", "o2"), "2026-01-05T10:00:00Z"),
    ]
    .concat();
    std::fs::write(&events, &first).unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
            .arg("run")
            .arg(&project)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    assert_eq!(pushes(&seen).len(), 2, "{:#?}", pushes(&seen));
    // More orders arrive; the next run starts from the store.
    let second = [
        at(order("u1", "o3"), "2026-01-06T10:00:00Z"),
        at(order("u2", "o4"), "2026-01-06T10:00:00Z"),
    ]
    .concat();
    std::fs::write(&events, format!("{first}{second}")).unwrap();
    run();
    let all = pushes(&seen);
    assert_eq!(all.len(), 3, "only u2's second push went out: {all:#?}");
    assert_eq!(all[2]["message"]["token"], "good-token");
    let ann = explain_json(&project, "u1");
    assert!(ann.contains("no_address"), "{ann}");
    // A rebuild from the stored calls reaches the same state: no push is
    // owed again, and u1's token stays gone.
    let checkpointless = project.join(".nudge");
    assert!(checkpointless.is_dir());
    run();
    assert_eq!(pushes(&seen).len(), 3, "nothing is sent twice");
}
