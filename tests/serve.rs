//! End-to-end: `nudge serve` over HTTP (Segment's tracking API) and `--stdin`.

mod common;
use common::{
    Server, add_runtime, afternoon_zone, ago, command_text, copy_example, http_agent, nudge,
    receipt_bodies, receipt_project, s, serve_stdin, start_server_with as start_with,
    wait_for_metric,
};

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Basic auth for write key `k` with an empty password, and for `x`.
const GOOD: &str = "Basic azo=";
const WRONG: &str = "Basic eDo=";

fn event_lines(project: &Path) -> Vec<String> {
    std::fs::read_to_string(project.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A shopper who started checkout 65 minutes ago, in a zone where it is
/// afternoon: the cart reminder (due an hour after the checkout) is due
/// now, whatever the day and hour the test runs at.
fn live_cart_lines() -> Vec<String> {
    vec![
        format!(
            r#"{{"type":"identify","userId":"u9","timestamp":"{}","traits":{{"email":"ivy@example.com","first_name":"Ivy","timezone":"{}","consent":{{"email":true}}}}}}"#,
            ago(7200),
            afternoon_zone()
        ),
        format!(
            r#"{{"type":"track","event":"Checkout Started","userId":"u9","timestamp":"{}","messageId":"live-1","properties":{{"value":20.0,"revenue":20.0,"products":[{{"product_id":"p1","name":"Enamel Mug","price":20.0,"quantity":1,"category":"Mugs","url":"https://shop.example/p/mug"}}]}}}}"#,
            ago(3900)
        ),
    ]
}

fn batch_body(lines: &[String]) -> String {
    format!("{{\"batch\":[{}]}}", lines.join(","))
}

fn start(project: &Path) -> Server {
    start_with(project, &["--write-key", "k"], &[])
}

fn stop(server: Server) {
    server.terminate();
}

fn get(server: &Server, path: &str) -> (u16, String) {
    server.get(path)
}

fn post(server: &Server, path: &str, auth: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut req = http_agent().post(format!("{}{path}", server.base));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.send(body).expect("the request completes");
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text:?}"));
    (status, json)
}

fn outbox_keys(project: &Path) -> Vec<String> {
    std::fs::read_to_string(project.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["idempotency_key"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn http_ingest_is_durable_authenticated_and_validated() {
    let (_tmp, project) = copy_example("cart_recovery");
    let lines = live_cart_lines();
    let body = batch_body(&lines);
    let server = start(&project);

    let (status, json) = post(&server, "/v1/batch", Some(GOOD), &body);
    assert_eq!((status, json), (200, serde_json::json!({"success": true})));

    let (status, json) = post(&server, "/v1/batch", Some(WRONG), &body);
    assert_eq!(status, 401);
    assert!(json["error"].as_str().unwrap().contains("write key"));
    assert_eq!(post(&server, "/v1/track", None, "{}").0, 401);

    let (status, json) = post(&server, "/v1/track", Some(GOOD), "{\"event\":");
    assert_eq!(status, 400);
    assert!(json["error"].as_str().unwrap().contains("malformed JSON"));

    let (status, json) = post(
        &server,
        "/v1/track",
        Some(GOOD),
        r#"{"userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
    );
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("`event`"),
        "{json}"
    );
    assert_eq!(json["index"], 0);

    // A batch judges each item on its own (see the tests at the end); a
    // single call that `nudge run` would refuse is still refused.
    let (status, json) = post(&server, "/v1/screen", Some(GOOD), r#"{"name":"Home"}"#);
    assert_eq!(status, 400);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("names no customer")
    );
    assert_eq!(json["index"], 0);

    // A call over 32 KB: alone it is refused; in a batch only it goes to
    // the dead letters, and its neighbour is applied.
    let note = "x".repeat(40 * 1024);
    let huge_call = format!(r#"{{"userId":"a","traits":{{"note":"{note}"}}}}"#);
    assert_eq!(post(&server, "/v1/identify", Some(GOOD), &huge_call).0, 413);
    let huge_item = format!(
        r#"{{"batch":[{{"type":"identify","userId":"a","traits":{{"note":"{note}"}}}},{{"type":"identify","userId":"b"}}]}}"#
    );
    assert_eq!(
        post(&server, "/v1/batch", Some(GOOD), &huge_item),
        (200, serde_json::json!({"success": true}))
    );
    // A body declared too large is refused before it is read, so the client
    // sends only the head (a client still writing the body may see the
    // connection close instead of the answer).
    let mut raw = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    write!(
        raw,
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {GOOD}\r\nContent-Type: application/json\r\nContent-Length: 600000\r\n\r\n"
    )
    .unwrap();
    let mut status_line = String::new();
    BufReader::new(&raw).read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");

    assert_eq!(post(&server, "/v1/nope", Some(GOOD), "{}").0, 404);
    assert_eq!(get(&server, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&server, "/readyz"), (200, "ok\n".to_string()));
    // The reminder fell due while the checkout was on its way: it goes out
    // at the next tick.
    let delivered = "nudge_sends_total{channel=\"email\",outcome=\"delivered\"}";
    let metrics = wait_for_metric(&server, delivered);
    assert!(
        metrics.contains(&format!("\nnudge_events_total {}\n", lines.len() + 1)),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nnudge_dead_letters_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains(delivered), "{metrics}");
    assert!(metrics.contains("nudge_commit_seconds_count"));
    assert_eq!(get(&server, "/no/such/page").0, 404);
    // The engine's counters per flow, with reasons as stable codes.
    let flow_sends = "nudge_flow_sends_total{flow=\"cart_recovery\",channel=\"email\"}";
    let metrics = wait_for_metric(&server, flow_sends);
    assert!(metrics.contains(flow_sends), "{metrics}");
    assert!(
        metrics.contains("nudge_flow_entered_total{flow=\"cart_recovery\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nudge_flow_decisions_total{flow=\"cart_recovery\",outcome=\"sent\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("nudge_build_info{version="), "{metrics}");
    // Sends by flow, message, channel and outcome; the last call of each
    // declared event.
    assert!(
        metrics.contains(
            "nudge_message_sends_total{flow=\"cart_recovery\",message=\"cart_reminder\",channel=\"email\",outcome=\"delivered\"} 1\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("nudge_track_event_last_timestamp_seconds{event=\"Checkout Started\"} "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("nudge_track_event_last_timestamp_seconds{event=\"Order Completed\"}"),
        "no order came: {metrics}"
    );
    assert!(metrics.contains("\nnudge_releases 1\n"), "{metrics}");
    assert!(metrics.contains("\nnudge_timers_pending "), "{metrics}");
    assert!(metrics.contains("\nnudge_timers_in_memory "), "{metrics}");
    assert!(
        !metrics.contains("\nnudge_last_event_timestamp_seconds 0\n"),
        "a call was committed: {metrics}"
    );
    // Requests by route pattern and status, the refused ones included.
    for needle in [
        "nudge_http_requests_total{route=\"/v1/{kind}\",status=\"200\"}",
        "nudge_http_requests_total{route=\"/v1/{kind}\",status=\"401\"}",
        "nudge_http_requests_total{route=\"/v1/{kind}\",status=\"413\"}",
        "nudge_http_requests_total{route=\"/v1/{kind}\",status=\"404\"}",
        "nudge_http_requests_total{route=\"unmatched\",status=\"404\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} in {metrics}");
    }
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("nudge_flow_decisions_total"))
    {
        let reason = line
            .split("reason=\"")
            .nth(1)
            .map(|r| r.split('"').next().unwrap_or(""));
        assert!(
            reason.is_none_or(|r| r.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
            "a reason label is a code: {line}"
        );
    }
    stop(server);

    let first = outbox_keys(&project);
    assert!(!first.is_empty(), "the example sends messages");
    let dead = std::fs::read_to_string(project.join(".nudge/dead_letters.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("item 0 of the batch is 41"),
        "{}",
        dead[0]["reason"]
    );
    assert!(dead[0]["input"].as_str().unwrap().contains(&note));

    // The same calls again after a restart: messageIds and the ledger keep
    // every message to one send.
    let server = start(&project);
    let (status, _) = post(&server, "/v1/batch", Some(GOOD), &body);
    assert_eq!(status, 200);
    stop(server);
    let second = outbox_keys(&project);
    let unique: HashSet<&String> = second.iter().collect();
    assert_eq!(unique.len(), second.len(), "no message is sent twice");
    assert!(first.iter().all(|k| unique.contains(k)));
}

#[test]
fn serve_refuses_to_start_without_a_write_key() {
    let (_tmp, project) = copy_example("cart_recovery");
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", project.to_str().unwrap()])
        .env_remove("NUDGE_WRITE_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--write-key"));
}

#[test]
fn stdin_matches_an_in_memory_run() {
    let (tmp, project) = copy_example("cart_recovery");
    let p = project.to_str().unwrap();
    let run_outbox = tmp.path().join("run.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "run",
            p,
            "--in-memory",
            "--outbox",
            run_outbox.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(run.status.success());

    // `nudge run` orders a file by time; a stream is applied as it arrives,
    // so the stream is given in time order.
    let mut lines = event_lines(&project);
    lines.sort_by_key(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["timestamp"].as_str().unwrap().to_string()
    });
    let serve_outbox = tmp.path().join("serve.jsonl");
    serve_stdin(
        &project,
        &["--outbox", serve_outbox.to_str().unwrap()],
        &lines,
    );

    let expected = std::fs::read_to_string(&run_outbox).unwrap();
    assert!(!expected.is_empty());
    assert_eq!(std::fs::read_to_string(&serve_outbox).unwrap(), expected);
    assert!(
        project.join(".nudge/state.db").exists(),
        "stdin mode is durable"
    );
}

#[test]
fn write_keys_come_from_nudge_toml_with_secrets_from_the_environment() {
    let (_tmp, project) = copy_example("cart_recovery");
    std::fs::write(
        project.join("nudge.toml"),
        "[serve]\nwrite_keys = [\"${SHOP_KEY}\", \"k\"]\n",
    )
    .unwrap();
    let server = start_with(
        &project,
        &[],
        &[("SHOP_KEY", "x"), ("NUDGE_WRITE_KEY", "ignored")],
    );
    let call = r#"{"userId":"u9","traits":{"email":"u9@example.com"}}"#;
    // "x" (from the environment) and "k" are both accepted.
    assert_eq!(post(&server, "/v1/identify", Some(WRONG), call).0, 200);
    assert_eq!(post(&server, "/v1/identify", Some(GOOD), call).0, 200);
    // The file's keys replace NUDGE_WRITE_KEY.
    let ignored = "Basic aWdub3JlZDo="; // "ignored:"
    assert_eq!(post(&server, "/v1/identify", Some(ignored), call).0, 401);
    stop(server);

    // A variable the file needs but the environment lacks stops the start.
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "serve",
            project.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("SHOP_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`serve.write_keys[0]` uses the environment variable SHOP_KEY"),
        "{err}"
    );
}

/// Posts to `/admin/reload` with a bearer token.
fn reload(server: &Server, token: &str) -> (u16, serde_json::Value) {
    let mut resp = http_agent()
        .post(format!("{}/admin/reload", server.base))
        .header("Authorization", &format!("Bearer {token}"))
        .send("")
        .expect("the request completes");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

/// A customer in a zone where it is afternoon (no quiet hours) checking
/// out at `at`.
fn checkout(user: &str, at: &str) -> String {
    let zone = afternoon_zone();
    format!(
        r#"{{"batch":[
          {{"type":"identify","userId":"{user}","timestamp":"{at}","traits":{{"email":"{user}@example.com","first_name":"{user}","timezone":"{zone}","consent":{{"email":true}}}}}},
          {{"type":"track","event":"Checkout Started","userId":"{user}","timestamp":"{at}","messageId":"co-{user}","properties":{{"value":20.0,"products":[{{"product_id":"p1","name":"Mug","price":20.0,"quantity":1}}]}}}}
        ]}}"#
    )
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Subjects in the outbox by customer.
fn subjects(project: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(project.join(".nudge/outbox.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["customer"].as_str().unwrap().to_string(),
                v["content"]["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn reload_deploys_new_code_and_carries_instances_by_step_label() {
    let (_tmp, project) = copy_example("cart_recovery");
    let flow = project.join("cart_recovery.flow");
    let messages = project.join("messages.flow");
    let token = [("NUDGE_ADMIN_TOKEN", "adm")];
    let server = start_with(&project, &["--write-key", "k"], &token);

    // Nothing changed: nothing is deployed. A wrong token is refused.
    assert_eq!(reload(&server, "nope").0, 401);
    let (status, json) = reload(&server, "adm");
    assert_eq!(
        (status, &json["deployed"]),
        (200, &serde_json::json!(false))
    );

    // Every checkout is stamped so that its reminder (an hour later) falls
    // due 15 seconds after the first request: long after the deploys below,
    // soon enough for the test to wait for it on the wall clock.
    let due = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let stamp = || {
        ago(3600
            - due
                .saturating_duration_since(std::time::Instant::now())
                .as_secs() as i64)
    };
    // Ana sleeps at `first_wait` when the reminder's subject changes: her
    // step keeps its label, so she is carried to the new version.
    let body = checkout("ana", &stamp());
    assert_eq!(post(&server, "/v1/batch", Some(GOOD), &body).0, 200);
    edit(
        &messages,
        "you left something behind",
        "your cart misses you",
    );
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 200, "{json}");
    let flows = json["report"]["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 1, "{json}");
    assert_eq!(flows[0]["flow"], "cart_recovery");
    let steps = flows[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{json}");
    assert_eq!(steps[0]["step"], "first_wait");
    assert_eq!(steps[0]["instances"], 1);
    assert_eq!(
        steps[0]["fate"],
        serde_json::json!({"kind": "carried", "to_step": "first_wait"})
    );

    // Ben (started on the new code) and Ana sleep at `first_wait` when it is
    // renamed: both stay on the code they run, and the answer says why.
    let body = checkout("ben", &stamp());
    assert_eq!(post(&server, "/v1/batch", Some(GOOD), &body).0, 200);
    edit(&flow, "first_wait: wait 1h", "pause: wait 1h");
    edit(
        &messages,
        "your cart misses you",
        "last chance for your cart",
    );
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 200, "{json}");
    let steps = &json["report"]["flows"][0]["steps"];
    assert_eq!(steps.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(steps[0]["instances"], 2, "{json}");
    assert_eq!(steps[0]["fate"]["kind"], "stays", "{json}");
    assert!(
        steps[0]["fate"]["reason"]
            .as_str()
            .unwrap()
            .contains("first_wait"),
        "{json}"
    );

    // A project that does not compile is refused; the server keeps going.
    edit(&flow, "pause: wait 1h", "pause: wait 1h nonsense");
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 422, "{json}");
    assert!(
        json["problems"]
            .as_str()
            .unwrap()
            .contains("cart_recovery.flow")
    );
    edit(&flow, "pause: wait 1h nonsense", "pause: wait 1h");

    // Carol starts after both deploys: she runs the newest code.
    let body = checkout("carol", &stamp());
    assert_eq!(post(&server, "/v1/batch", Some(GOOD), &body).0, 200);

    // A new trait deploys onto the served store: everyone keeps their place
    // (Ana and Ben on the code they run, Carol carried at her label).
    let source = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(
        &flow,
        format!("{source}\nprofile {{\n  loyalty_tier: string = \"none\"\n}}\n"),
    )
    .unwrap();
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["report"]["schemas"]["fields_added"],
        serde_json::json!(["profile.loyalty_tier"]),
        "{json}"
    );

    // Kill the server without warning: the deploys are in the store's
    // history, so a restart rebuilds every release (and the unchanged
    // project deploys nothing new).
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = start_with(&project, &["--write-key", "k"], &token);
    let give_up = due + std::time::Duration::from_secs(20);
    while subjects(&project).len() < 3 && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    stop(server);

    let mut got = subjects(&project);
    got.sort();
    let want = |who: &str, subject: &str| (who.to_string(), format!("{who}, {subject}"));
    assert_eq!(
        got,
        [
            want("ana", "your cart misses you"),
            want("ben", "your cart misses you"),
            want("carol", "last chance for your cart"),
        ]
    );
}

#[test]
fn gzipped_batches_are_inflated_and_bombs_refused() {
    use flate2::{Compression, write::GzEncoder};
    let gzip = |bytes: &[u8]| {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let (_tmp, project) = copy_example("cart_recovery");
    let lines = event_lines(&project);
    let server = start(&project);
    let send = |body: Vec<u8>, encoding: &str| {
        let mut resp = http_agent()
            .post(format!("{}/v1/batch", server.base))
            .header("Authorization", GOOD)
            .header("Content-Encoding", encoding)
            .send(&body[..])
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (resp.status().as_u16(), json)
    };
    let (status, json) = send(gzip(batch_body(&lines).as_bytes()), "gzip");
    assert_eq!((status, json), (200, serde_json::json!({"success": true})));
    // 1 MB of spaces inflates past the 512 KB limit from a few KB.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 8 * 1024);
    assert_eq!(send(bomb, "gzip").0, 413);
    let (status, json) = send(b"not gzip".to_vec(), "gzip");
    assert_eq!(status, 400);
    assert_eq!(json["code"], "bad_request");
    assert!(json["message"].as_str().unwrap().contains("not valid gzip"));
    assert_eq!(send(b"{}".to_vec(), "br").0, 415);
    let metrics = get(&server, "/metrics").1;
    assert!(
        metrics.contains(&format!("\nnudge_events_total {}\n", lines.len())),
        "{metrics}"
    );
    stop(server);
}

/// Requests that arrive together share a commit; each must still be
/// answered, counted and acted on exactly once.
#[test]
fn concurrent_requests_are_each_committed_once() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 30;
    let (_tmp, project) = copy_example("shipping_delay_sms");
    let server = start(&project);
    let batch_for = |n: usize| {
        let user = format!("c{n}");
        batch_body(&[
            format!(
                r#"{{"type":"identify","userId":"{user}","timestamp":"{}","traits":{{"email":"{user}@example.com","consent":{{"email":true}}}}}}"#,
                ago(10)
            ),
            format!(
                r#"{{"type":"track","event":"Shipment Delayed","userId":"{user}","timestamp":"{}","properties":{{"order_id":"o-{n}","new_eta":"Friday"}}}}"#,
                ago(9)
            ),
        ])
    };
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (server, batch_for) = (&server, &batch_for);
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let n = t * PER_THREAD + i;
                    let (status, body) = post(server, "/v1/batch", Some(GOOD), &batch_for(n));
                    assert_eq!(status, 200, "customer {n}: {body}");
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    let metrics = server.metrics();
    assert!(
        metrics.contains(&format!("\nnudge_events_total {}\n", 2 * total)),
        "{metrics}"
    );
    stop(server);

    let outbox = std::fs::read_to_string(project.join(".nudge/outbox.jsonl")).unwrap();
    let mut orders: Vec<(String, String)> = outbox
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            v["message"] == "delay_email" && v["customer"].as_str().unwrap().starts_with('c')
        })
        .map(|v| {
            let customer = v["customer"].as_str().unwrap().to_string();
            let subject = v["content"]["subject"].as_str().unwrap().to_string();
            (customer, subject)
        })
        .collect();
    orders.sort();
    let mut expected: Vec<(String, String)> = (0..total)
        .map(|n| (format!("c{n}"), format!("Order o-{n} is running late")))
        .collect();
    expected.sort();
    assert_eq!(
        orders, expected,
        "one delay email per customer, for their own order"
    );
}

/// An amount sent over HTTP keeps every digit, even in a pretty-printed
/// body whose calls span several lines.
#[test]
fn amounts_sent_over_http_keep_every_digit() {
    let (_tmp, project) = receipt_project();
    let server = start(&project);
    let body = r#"{
  "batch": [
    {
      "type": "identify",
      "userId": "u1",
      "timestamp": "@T0@",
      "traits": {"email": "a@example.com"}
    },
    {
      "properties": {"order_id": "o1", "total": 12345678901234567.89},
      "type": "track",
      "event": "Order Completed",
      "userId": "u1",
      "timestamp": "@T1@"
    }
  ]
}"#
    .replace("@T0@", &ago(120))
    .replace("@T1@", &ago(60));
    let (status, answer) = post(&server, "/v1/batch", Some(GOOD), &body);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(
        &server,
        "/v1/track",
        Some(GOOD),
        &r#"{"event":"Order Completed","userId":"u1","timestamp":"@T2@","properties":{"order_id":"o2","total":98765432109876543.21}}"#
            .replace("@T2@", &ago(1)),
    );
    assert_eq!(status, 200, "{answer}");
    stop(server);
    assert_eq!(
        receipt_bodies(&project.join(".nudge/outbox.jsonl")),
        [
            "You paid $12345678901234567.89.",
            "You paid $98765432109876543.21.",
        ]
    );
}

/// A project that emails a receipt for every order and a note for every
/// screen view, so what a batch applied shows in the outbox.
fn answering_project() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("answering");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("flows.flow"),
        r#"message seen(what: string) {
  channel email
  purpose transactional
  subject "{what}"
  body "{what}"
}

flow on_screen {
  trigger screen_viewed
  entry always
  send seen("screen {trigger.name ?? "?"}")
}

flow on_order {
  trigger order_completed
  entry always
  send seen("order {trigger.order_id}: {format_money(trigger.total)} for {profile.first_name ?? "?"}")
}
"#,
    )
    .unwrap();
    (tmp, project)
}

/// A batch holding a `screen`, bad items and valid calls: the batch is
/// taken, every valid call is applied, and only the bad items go to the
/// dead letters and their metric. The calls carry no timestamp, so the
/// server stamps them on receipt and the test does not depend on the date.
#[test]
fn a_batch_with_a_screen_and_bad_items_loses_no_valid_call() {
    let (_tmp, project) = answering_project();
    let server = start(&project);
    let body = r#"{"batch":[
        {"type":"identify","userId":"u1","traits":{"email":"a@example.com","firstName":"Ana"}},
        {"type":"screen","userId":"u1","name":"Cart"},
        {"type":"track","event":"Order Completed","properties":{"order_id":"o-lost"}},
        "not a call",
        {"type":"track","event":"Wishlist Shared","userId":"u1"},
        {"type":"group","userId":"u1","groupId":7},
        {"type":"track","event":"Order Completed","userId":"u1","properties":{"order_id":4500123,"total":"150.00"}}
    ]}"#;
    let (status, answer) = post(&server, "/v1/batch", Some(GOOD), body);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(
        &server,
        "/v1/screen",
        Some(GOOD),
        r#"{"userId":"u1","name":"Home"}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let metrics = server.metrics();
    for counted in [
        "\nnudge_dead_letters_total 2\n",
        "\nnudge_undeclared_events_total 1\n",
        "\nnudge_group_calls_total 1\n",
    ] {
        assert!(metrics.contains(counted), "{counted:?} in {metrics}");
    }
    stop(server);
    let mut subjects: Vec<String> = std::fs::read_to_string(project.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["content"]["subject"].as_str().unwrap().to_string()
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "order 4500123: $150.00 for Ana",
            "screen Cart",
            "screen Home"
        ]
    );
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(project.join(".nudge/dead_letters.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("names no customer")
    );
    assert!(dead[0]["input"].as_str().unwrap().contains("o-lost"));
    assert!(
        dead[1]["reason"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object")
    );
}

/// A line that is not UTF-8 on stdin is a dead letter; the lines around it
/// are applied, as `nudge run` does.
#[test]
fn stdin_dead_letters_a_line_that_is_not_utf8_and_goes_on() {
    let (tmp, project) = copy_example("cart_recovery");
    let outbox = tmp.path().join("out.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", project.to_str().unwrap(), "--stdin", "--in-memory"])
        .args(["--outbox", outbox.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(br#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T12:00:00Z","traits":{"email":"u1@example.com","timezone":"UTC","consent":{"email":true}}}
{"type":"track","event":"Product Viewed","userId":"u1","timestamp":"2026-01-05T12:01:00Z","properties":{"name":"caf"#).unwrap();
    stdin.write_all(b"\xe9\"}}\n").unwrap();
    stdin.write_all(br#"{"type":"track","event":"Checkout Started","userId":"u1","timestamp":"2026-01-05T12:02:00Z","properties":{"value":5.0,"products":[]}}
{"type":"identify","userId":"u2","timestamp":"2026-01-05T15:00:00Z","traits":{}}
"#).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let sent = std::fs::read_to_string(&outbox).unwrap();
    assert!(sent.contains("\"message\":\"cart_reminder\""), "{sent}");
    let dead = std::fs::read_to_string(project.join(".nudge/dead_letters.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["line"], 2);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not UTF-8 text"),
        "{dead:?}"
    );
}

/// With `metrics_token` set, `/metrics` wants it as a bearer token.
#[test]
fn metrics_can_be_closed_with_a_token() {
    let (_tmp, project) = copy_example("cart_recovery");
    std::fs::write(
        project.join("nudge.toml"),
        "[serve]\nwrite_keys = [\"k\"]\nmetrics_token = \"${METRICS_TOKEN}\"\n",
    )
    .unwrap();
    let server = start_with(&project, &[], &[("METRICS_TOKEN", "m3tr1cs")]);
    let get = |auth: Option<&str>| {
        let mut req = http_agent().get(format!("{}/metrics", server.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().expect("the request completes");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    };
    assert_eq!(get(None).0, 401);
    assert_eq!(get(Some("Bearer wrong")).0, 401);
    let (status, text) = get(Some("Bearer m3tr1cs"));
    assert_eq!(status, 200);
    assert!(text.contains("\nnudge_events_total 0\n"), "{text}");
    // Health stays open: supervisors probe it without credentials.
    assert_eq!(server.get("/healthz").0, 200);
    stop(server);
}

/// A webhook that refuses the first `failures` requests with 500, then
/// accepts; returns its URL and a counter of the requests it has seen.
fn flaky_webhook(failures: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let base = common::serve_http(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < failures {
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        }
    });
    (format!("{base}/hook"), seen)
}

/// A delivery that fails is tried again while serving, after its backoff,
/// without a restart; the trace is readable while the server runs.
#[test]
fn a_failed_delivery_is_retried_while_serving() {
    use std::sync::atomic::Ordering;
    let (_tmp, project) = receipt_project();
    let (url, seen) = flaky_webhook(1);
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[serve]\nretry_backoff = \"1s\"\n\n[channels.email]\nplugin = \"webhook\"\nurl = \"{url}\"\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    let server = start(&project);
    let body = batch_body(&[
        format!(
            r#"{{"type":"identify","userId":"u1","timestamp":"{}","traits":{{"email":"a@example.com"}}}}"#,
            ago(120)
        ),
        format!(
            r#"{{"type":"track","event":"Order Completed","userId":"u1","timestamp":"{}","properties":{{"order_id":"o1","total":12.5}}}}"#,
            ago(60)
        ),
    ]);
    let (status, answer) = post(&server, "/v1/batch", Some(GOOD), &body);
    assert_eq!(status, 200, "{answer}");
    let metrics = wait_for_metric(&server, "\nnudge_delivery_retries_total 1\n");
    assert!(
        metrics.contains("\nnudge_delivery_retries_total 1\n"),
        "{metrics}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "one failure, then one success"
    );
    let metrics = wait_for_metric(&server, "\nnudge_delivery_retrying 0\n");
    assert!(
        metrics.contains(r#"nudge_sends_total{channel="email",outcome="delivered"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nnudge_delivery_given_up_total 0\n"),
        "{metrics}"
    );
    // The trace is on disk while the server still runs, with each
    // attempt's outcome: the refusal, then the delivery.
    let trace = std::fs::read_to_string(project.join(".nudge/trace.jsonl")).unwrap();
    assert!(trace.contains(r#""kind":"send""#), "{trace}");
    let outcomes: Vec<(String, String)> = trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "delivery")
        .map(|v| {
            (
                v["outcome"].as_str().unwrap().to_string(),
                v["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 2, "{trace}");
    assert_eq!(outcomes[0].0, "failed");
    assert!(outcomes[0].1.contains("500"), "{trace}");
    assert_eq!(outcomes[1], ("delivered".to_string(), String::new()));
    stop(server);
}

/// A webhook that refuses every request with 500.
fn refusing_webhook() -> String {
    let base = common::serve_http(|_| {
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    });
    format!("{base}/hook")
}

/// One scrape after known calls shows each metric family added for operators, with
/// the values those calls must give.
#[test]
fn metrics_count_feedback_waits_providers_reasons_events_and_commits() {
    let (_tmp, project) = receipt_project();
    std::fs::write(
        project.join("receipt.flow"),
        r#"message receipt(total: money) {
  channel email
  purpose transactional
  subject "Your order"
  body "You paid {total}."
}

flow receipt {
  trigger order_completed
  entry always
  send receipt(trigger.total)
  pause: wait 2d
  send receipt(trigger.total)
}
"#,
    )
    .unwrap();
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[serve]\nretry_backoff = \"1h\"\n\n[channels.email]\nplugin = \"webhook\"\nurl = \"{}\"\nmax_attempts = 1\n",
            refusing_webhook()
        ),
    )
    .unwrap();
    let server = start(&project);
    let track = |event: &str, user: &str, at: i64, props: &str| {
        format!(
            r#"{{"type":"track","event":"{event}","userId":"{user}","timestamp":"{}","properties":{props}}}"#,
            ago(at)
        )
    };
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = batch_body(&[
        format!(
            r#"{{"type":"identify","userId":"u1","timestamp":"{}","traits":{{"email":"a@example.com"}}}}"#,
            ago(120)
        ),
        track(
            "Order Completed",
            "u1",
            60,
            r#"{"order_id":"o1","total":5}"#,
        ),
        track(
            "Message Bounced",
            "u1",
            50,
            r#"{"channel":"email","flow":"receipt","kind":"soft"}"#,
        ),
        track(
            "Message Clicked",
            "u1",
            49,
            r#"{"channel":"email","flow":"receipt"}"#,
        ),
        track(
            "Message Clicked",
            "u1",
            48,
            r#"{"channel":"email","flow":"nope"}"#,
        ),
        track(
            "Marked As Spam",
            "u1",
            47,
            r#"{"channel":"email","flow":"receipt"}"#,
        ),
        track("Unsubscribed", "u1", 46, r#"{"channel":"email"}"#),
        track("SMS Received", "u3", 45, r#"{"text":"STOP"}"#),
        track("Weird Thing", "u1", 44, "{}"),
        // A clock a day ahead: applied at its receipt, and counted.
        format!(r#"{{"type":"identify","userId":"u4","timestamp":"{tomorrow}"}}"#),
        // The same key twice: this item alone is a dead letter.
        format!(
            r#"{{"type":"identify","userId":"u5","userId":"u6","timestamp":"{}"}}"#,
            ago(40)
        ),
    ]);
    let (status, answer) = post(&server, "/v1/batch", Some(GOOD), &body);
    assert_eq!(status, 200, "{answer}");
    let metrics = wait_for_metric(
        &server,
        "nudge_provider_deliveries_pending{provider=\"webhook\"} 1\n",
    );
    for line in [
        r#"nudge_feedback_total{kind="bounce",flow="receipt"} 1"#,
        r#"nudge_feedback_total{kind="click",flow="receipt"} 1"#,
        r#"nudge_feedback_total{kind="click",flow=""} 1"#,
        r#"nudge_feedback_total{kind="spam",flow="receipt"} 1"#,
        r#"nudge_feedback_total{kind="unsubscribe",flow=""} 1"#,
        r#"nudge_feedback_total{kind="stop",flow=""} 1"#,
        r#"nudge_flow_instances_waiting{flow="receipt",step="pause"} 1"#,
        r#"nudge_provider_deliveries_pending{provider="webhook"} 1"#,
        r#"nudge_provider_retries_total{provider="webhook"} 1"#,
        r#"nudge_provider_failures_total{provider="webhook"} 1"#,
        r#"nudge_dead_letters_by_reason_total{reason="duplicate_key"} 1"#,
        r#"nudge_dead_letters_by_reason_total{reason="malformed_json"} 0"#,
        r#"nudge_track_events_total{event="Order Completed"} 1"#,
        r#"nudge_track_events_total{event="Message Clicked"} 2"#,
        r#"nudge_track_events_total{event="Checkout Started"} 0"#,
        r#"nudge_track_events_total{event="other"} 1"#,
        "nudge_calls_clamped_total 1",
        "# TYPE nudge_commit_seconds histogram",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} is not on /metrics:\n{metrics}"
        );
    }
    // Every commit is in the histogram's last bucket.
    let value = |prefix: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let commits = value("nudge_commit_seconds_count ");
    assert!(commits >= 1);
    assert_eq!(value("nudge_commit_seconds_bucket{le=\"+Inf\"} "), commits);
    stop(server);
}

/// `/admin/reload` reads `[[alerts]]` again: new alerts are watched, an
/// unchanged table keeps its alerts' state, and a bad one is refused with
/// the alerts and code before still running.
#[test]
fn reload_reads_the_alerts_again() {
    let (_tmp, project) = receipt_project();
    let toml = project.join("nudge.toml");
    let serve = "[serve]\nwrite_keys = [\"k\"]\nadmin_token = \"adm\"\n";
    std::fs::write(&toml, serve).unwrap();
    let server = start_with(&project, &[], &[]);
    assert!(!server.metrics().contains("nudge_alerts_firing{"));

    let alerts = "\n[[alerts]]\nname = \"bounces\"\nkind = \"bounce_rate\"\nthreshold = 2\nwindow = \"1h\"\n";
    std::fs::write(&toml, format!("{serve}{alerts}")).unwrap();
    let (status, answer) = reload(&server, "adm");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"], "reloaded", "{answer}");
    assert_eq!(answer["deployed"], false, "{answer}");
    let metrics = server.metrics();
    assert!(
        metrics.contains("\nnudge_alerts_firing{alert=\"bounces\"} 0\n"),
        "{metrics}"
    );

    let (status, answer) = reload(&server, "adm");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"], "unchanged", "{answer}");

    std::fs::write(
        &toml,
        format!("{serve}{}", alerts.replace("bounce_rate", "bounce_rait")),
    )
    .unwrap();
    let (status, answer) = reload(&server, "adm");
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("nudge.toml"),
        "{answer}"
    );
    assert!(
        server
            .metrics()
            .contains("\nnudge_alerts_firing{alert=\"bounces\"} 0\n"),
        "the alerts before a refused reload keep running"
    );

    std::fs::write(&toml, serve).unwrap();
    let (status, answer) = reload(&server, "adm");
    assert_eq!(status, 200, "{answer}");
    assert!(!server.metrics().contains("nudge_alerts_firing{"));
    stop(server);
}

/// `nudge gen`'s calls (`events`, `seed`), in time order: a stream is
/// applied as it arrives, where `nudge run` orders a file by time.
fn generated_lines(dir: &Path, events: usize, seed: u64) -> Vec<String> {
    let path = dir.join("generated.jsonl");
    let (events, seed) = (events.to_string(), seed.to_string());
    let out = nudge(&["gen", "--events", &events, "--seed", &seed, "-o", s(&path)]);
    assert!(out.status.success(), "{}", command_text(&out));
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines.sort_by_key(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["timestamp"].as_str().unwrap().to_string()
    });
    lines
}

/// Posts `lines` to `/v1/batch` a hundred at a time, each answered 200.
fn post_batches(server: &Server, lines: &[String]) {
    for chunk in lines.chunks(100) {
        let (status, body) = post(server, "/v1/batch", Some(GOOD), &batch_body(chunk));
        assert_eq!(status, 200, "{body}");
    }
}

/// Bounds the customers `project` keeps in memory, with a checkpoint every
/// `every` calls.
fn bound_memory(project: &Path, customers: usize, every: usize) {
    add_runtime(
        project,
        &format!("customers_in_memory = {customers}\ncheckpoint_every = {every}"),
    );
}

#[test]
fn a_server_with_a_budget_of_customers_sends_what_a_run_does() {
    let (tmp, project) = copy_example("cart_recovery");
    let lines = generated_lines(tmp.path(), 2000, 3);
    let sorted = tmp.path().join("sorted.jsonl");
    std::fs::write(&sorted, lines.join("\n") + "\n").unwrap();
    let run_outbox = tmp.path().join("run.jsonl");
    let run = nudge(&[
        "run",
        s(&project),
        "--in-memory",
        "--events",
        s(&sorted),
        "--outbox",
        s(&run_outbox),
    ]);
    assert!(run.status.success(), "{}", command_text(&run));
    let expected = std::fs::read_to_string(&run_outbox).unwrap();

    bound_memory(&project, 1, 20);
    let serve_outbox = tmp.path().join("serve.jsonl");
    serve_stdin(
        &project,
        &["--outbox", serve_outbox.to_str().unwrap()],
        &lines,
    );
    assert!(!expected.is_empty());
    assert_eq!(std::fs::read_to_string(&serve_outbox).unwrap(), expected);
}

#[test]
fn a_schema_reload_under_a_budget_reads_no_customer_back_and_the_server_goes_on() {
    let (tmp, project) = copy_example("cart_recovery");
    let lines = generated_lines(tmp.path(), 1500, 4);
    // Checkpoints only when the budget asks for them.
    bound_memory(&project, 2, 1_000_000);
    let token = [("NUDGE_ADMIN_TOKEN", "adm")];
    let server = start_with(&project, &["--write-key", "k"], &token);
    post_batches(&server, &lines[..1000]);
    let epoch = || -> i64 {
        rusqlite::Connection::open(project.join(".nudge/state.db"))
            .unwrap()
            .query_row("SELECT epoch FROM checkpoint", [], |r| r.get(0))
            .unwrap()
    };
    let before = epoch();
    // A new event and a new trait: the customers in memory move onto the
    // new tables, the stored ones stay as they are until read, so the
    // deploy changes no more than the budget and forces no checkpoint.
    std::fs::write(
        project.join("gifts.flow"),
        "event gift_card_bought \"Gift Card Bought\" {\n  amount: money\n}\n\
         profile {\n  tier: string = \"none\"\n}\n",
    )
    .unwrap();
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["deployed"], true, "{json}");
    assert_eq!(epoch(), before, "the deploy forces no checkpoint");
    // The server goes on from there, reading the stored customers back
    // onto the new tables as calls reach them, and after a restart too.
    post_batches(&server, &lines[..1200]);
    stop(server);
    let server = start_with(&project, &["--write-key", "k"], &token);
    post_batches(&server, &lines);
    assert_eq!(get(&server, "/healthz"), (200, "ok\n".to_string()));
    stop(server);
    assert!(epoch() > before, "stopping writes a checkpoint");
}

#[test]
fn a_reload_arming_a_schedule_under_a_budget_commits_it_in_parts() {
    let (tmp, project) = copy_example("cart_recovery");
    let lines = generated_lines(tmp.path(), 1500, 5);
    bound_memory(&project, 2, 1_000_000);
    let token = [("NUDGE_ADMIN_TOKEN", "adm")];
    let server = start_with(&project, &["--write-key", "k"], &token);
    post_batches(&server, &lines[..1000]);
    let db = || rusqlite::Connection::open(project.join(".nudge/state.db")).unwrap();
    let epoch = || -> i64 {
        db().query_row("SELECT epoch FROM checkpoint", [], |r| r.get(0))
            .unwrap()
    };
    let before = epoch();
    // A schedule reaches every customer known: each is read back, armed,
    // and written by the part's checkpoint, two at a time.
    std::fs::write(
        project.join("daily.flow"),
        "message hello() {\n  channel email\n  subject \"hello\"\n  body \"Hi\"\n}\n\
         flow daily {\n  trigger every day at 09:00\n  send hello()\n}\n",
    )
    .unwrap();
    let (status, json) = reload(&server, "adm");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["deployed"], true, "{json}");
    let customers: i64 = db()
        .query_row("SELECT count(*) FROM state_customers", [], |r| r.get(0))
        .unwrap();
    assert!(customers > 20, "{customers}");
    assert_eq!(
        epoch() - before,
        (customers + 1) / 2,
        "a checkpoint for each part of two customers"
    );
    post_batches(&server, &lines[1000..]);
    stop(server);
    // A restart goes on from the parts' checkpoints.
    let server = start_with(&project, &["--write-key", "k"], &token);
    assert_eq!(get(&server, "/healthz"), (200, "ok\n".to_string()));
    stop(server);
}

#[test]
fn a_server_with_a_budget_reports_customers_read_back() {
    let (tmp, project) = copy_example("cart_recovery");
    let lines = generated_lines(tmp.path(), 1500, 4);
    bound_memory(&project, 2, 30);
    let server = start(&project);
    post_batches(&server, &lines);
    let value = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .parse()
            .unwrap()
    };
    // The gauges are published with the server's tick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut metrics = server.metrics();
    while value(&metrics, "nudge_customers") == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        metrics = server.metrics();
    }
    let value = |name: &str| value(&metrics, name);
    let customers = value("nudge_customers");
    assert!(customers > 20, "{metrics}");
    assert!(value("nudge_customers_read_back_total") > 0, "{metrics}");
    // Those changed since the last checkpoint (at most 30 calls' worth)
    // and those with an instance live stay; the rest were let go.
    assert!(value("nudge_customers_in_memory") < customers, "{metrics}");
    // Identities' texts named in the store are let go too, and read back
    // by name when a returning customer's call names them.
    let identities = value("nudge_identities");
    assert!(identities >= customers, "{metrics}");
    assert!(
        value("nudge_identities_in_memory") < identities,
        "{metrics}"
    );
    assert!(value("nudge_identities_read_back_total") > 0, "{metrics}");
    stop(server);
}

/// The win-back benchmark project with `runtime` settings, and a store
/// that `nudge run` filled with 40 customers whose last order was 200 days
/// ago: each one's win-back fell due 110 days ago, while no server ran.
fn overdue_win_backs(runtime: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("winback");
    common::win_back_project(&project, runtime);
    let zone = afternoon_zone();
    let mut lines = String::new();
    for i in 0..40 {
        let at = 200 * 86_400 - i * 60;
        lines.push_str(&format!(
            r#"{{"type":"identify","userId":"u{i}","timestamp":"{}","traits":{{"email":"u{i}@example.com","timezone":"{zone}","consent":{{"email":true}}}}}}"#,
            ago(at + 30)
        ));
        lines.push('\n');
        lines.push_str(&format!(
            r#"{{"type":"track","event":"Order Completed","userId":"u{i}","timestamp":"{}","properties":{{"order_id":"o{i}","total":20}}}}"#,
            ago(at)
        ));
        lines.push('\n');
    }
    std::fs::write(project.join("events.jsonl"), lines).unwrap();
    let out = nudge(&["run", s(&project)]);
    assert!(out.status.success(), "{}", command_text(&out));
    (tmp, project)
}

/// Lines of the project's outbox (none when it has none).
fn outbox_lines(project: &Path) -> usize {
    std::fs::read_to_string(project.join(".nudge/outbox.jsonl")).map_or(0, |t| t.lines().count())
}

/// How many parts of `--until` steps and ticks the project's store holds.
fn clock_parts(project: &Path) -> i64 {
    rusqlite::Connection::open(project.join(".nudge/state.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM calls WHERE kind = 4", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn a_server_back_after_downtime_commits_the_overdue_step_in_parts() {
    let (_tmp, project) = overdue_win_backs("customers_in_memory = 5");
    assert_eq!(outbox_lines(&project), 0);
    let server = start(&project);
    // Its first tick fires the 40 win-backs, five timers a part.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while outbox_lines(&project) < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = server.metrics();
    stop(server);
    assert_eq!(outbox_lines(&project), 40, "{metrics}");
    assert!(metrics.contains("nudge_sends_held 0"), "{metrics}");
    assert!(
        clock_parts(&project) >= 7,
        "{} parts",
        clock_parts(&project)
    );
    // A restart sends none of them again.
    let server = start(&project);
    assert_eq!(get(&server, "/healthz"), (200, "ok\n".to_string()));
    stop(server);
    assert_eq!(outbox_lines(&project), 40);
}

#[test]
fn an_overdue_step_in_parts_over_the_breakers_limit_holds_every_send() {
    let (_tmp, project) = overdue_win_backs("customers_in_memory = 5\nmax_sends_per_step = 10");
    let token = [("NUDGE_ADMIN_TOKEN", "adm")];
    let server = start_with(&project, &["--write-key", "k"], &token);
    // Each part sends fewer than the limit; the step sends more.
    let metrics = wait_for_metric(&server, "nudge_sends_held 40");
    assert!(metrics.contains("nudge_sends_held 40"), "{metrics}");
    assert!(metrics.contains("nudge_send_breaker_open 1"), "{metrics}");
    assert_eq!(outbox_lines(&project), 0, "a held send went out");
    assert!(clock_parts(&project) >= 7);
    stop(server);
    // Held across a restart, counted from the ledger without reading the
    // messages, then read back from it in pages of five (the budget).
    let server = start_with(&project, &["--write-key", "k"], &token);
    let metrics = wait_for_metric(&server, "nudge_sends_held 40");
    assert!(metrics.contains("nudge_send_breaker_open 1"), "{metrics}");
    assert_eq!(outbox_lines(&project), 0, "a restart let a held send out");
    let (status, answer) = post(&server, "/admin/release-sends", Some("Bearer adm"), "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["released"], 40, "{answer}");
    // The release goes on a page a round, between requests: calls are
    // taken meanwhile.
    let order = format!(
        r#"{{"batch":[{{"type":"identify","userId":"new","timestamp":"{}","traits":{{"email":"new@example.com","consent":{{"email":true}}}}}}]}}"#,
        ago(5)
    );
    let (status, answer) = post(&server, "/v1/batch", Some(GOOD), &order);
    assert_eq!(status, 200, "{answer}");
    wait_for_metric(&server, "nudge_sends_held 0");
    stop(server);
    let outbox = common::outbox_by_key(&project.join(".nudge/outbox.jsonl"));
    assert_eq!(outbox.len(), 40);
    assert!(outbox.values().all(|lines| lines.len() == 1), "sent twice");
    let pending: i64 = rusqlite::Connection::open(project.join(".nudge/state.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sends WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0, "the release's results were not all stored");
}
