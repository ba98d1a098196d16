//! End-to-end: the ad_retargeting example synced to a local mock of Meta's
//! `/{audience_id}/users` by `nudge run`, in two runs, so that a shopper
//! who buys after joining the cart audience leaves it on the platform; and
//! `nudge audiences export` writing the same changes as upload files; and
//! `nudge serve` sending each change after the group of calls that made it.
//! Hashes were computed apart from the code (`printf %s VALUE | sha256sum`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

mod common;

use common::{WRITE_KEY, basic_auth, http_agent, start_server_with};
use nudge_test_support::copy_example;
use serde_json::{Value, json};

const ANA: &str = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11";
const BEN: &str = "f871a76fb7b15231306b634dd91b385c48e9298974308e28e161d845e3e6f060";

/// One request as the mock saw it: method, path, form fields.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The hashed emails of the request's `payload` rows.
    fn emails(&self) -> Vec<String> {
        let payload: Value = serde_json::from_str(self.field("payload")).unwrap();
        assert_eq!(payload["schema"], serde_json::json!(["EMAIL", "PHONE"]));
        payload["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_str().unwrap().to_string())
            .collect()
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Meta's Graph API on a local port, answering every upload as documented.
fn fake_meta(seen: Arc<Mutex<Vec<Seen>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let form = String::from_utf8_lossy(&body)
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect();
            seen.lock().unwrap().push(Seen { method, path, form });
            let answer = r#"{"audience_id":"111","session_id":"1","num_received":1,"num_invalid_entries":0,"invalid_entry_samples":{}}"#;
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .as_bytes(),
            );
        }
    });
    base
}

fn nudge(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .current_dir(project)
        .env("NUDGE_TEST_META_TOKEN", "meta-token-e2e")
        .output()
        .unwrap()
}

/// Points the project's `[channels.audience]` at the mock.
fn sync_to(project: &Path, api: &str) {
    let mut toml = std::fs::read_to_string(project.join("nudge.toml")).unwrap();
    toml.push_str(&format!(
        "\n[channels.audience]\nplugin = \"meta_audience\"\naccess_token = \"${{NUDGE_TEST_META_TOKEN}}\"\napi_url = \"{api}\"\naudiences = {{ cart_abandoners = \"111\", product_viewers = \"222\" }}\n"
    ));
    std::fs::write(project.join("nudge.toml"), toml).unwrap();
}

#[test]
fn a_purchase_takes_the_shopper_out_of_the_meta_audience() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api = fake_meta(seen.clone());
    let (_tmp, project) = copy_example("ad_retargeting");
    sync_to(&project, &api);
    let all = std::fs::read_to_string(project.join("events.jsonl")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    // Up to Ben's add to cart: Ana has been in the cart audience since 10:04.
    let events = project.join("calls.jsonl");
    std::fs::write(&events, format!("{}\n", lines[..9].join("\n"))).unwrap();
    let out = nudge(&project, &["run", ".", "--events", "calls.jsonl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    {
        let seen = seen.lock().unwrap();
        let summary: Vec<(&str, &str)> = seen
            .iter()
            .map(|s| (s.method.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![("POST", "/v25.0/111/users"), ("DELETE", "/v25.0/222/users")],
            "{stderr}"
        );
        assert_eq!(seen[0].emails(), vec![ANA.to_string()]);
        assert_eq!(seen[0].field("access_token"), "meta-token-e2e");
        // Ben viewed anonymously (no email then), and left on adding to the cart.
        assert_eq!(seen[1].emails(), vec![BEN.to_string()]);
    }
    assert!(
        stderr.contains("cart_abandoners: 1 added, 0 removed in 1 batch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("product_viewers: 0 added, 1 removed in 1 batch, 1 unmatched (e.g. a2: no email or phone in the profile)"),
        "{stderr}"
    );

    // The rest: Ana buys on the 25th; Ben's 14 days run out.
    std::fs::write(&events, format!("{}\n", lines.join("\n"))).unwrap();
    let before = seen.lock().unwrap().len();
    let out = nudge(
        &project,
        &["run", ".", "--events", "calls.jsonl", "--drain"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen = seen.lock().unwrap();
    let later = &seen[before..];
    let removed: Vec<&Seen> = later
        .iter()
        .filter(|s| s.method == "DELETE" && s.path == "/v25.0/111/users")
        .collect();
    assert_eq!(removed.len(), 1, "{later:?}");
    let mut emails = removed[0].emails();
    emails.sort();
    assert_eq!(emails, vec![ANA.to_string(), BEN.to_string()]);
    assert!(
        later.iter().all(|s| s.method != "POST"),
        "a customer added and removed within one run is only removed: {later:?}"
    );

    // The feeds keep the identifiers each change was made with, and the
    // export writes the net change as an upload file.
    let feed =
        std::fs::read_to_string(project.join(".nudge/audiences/cart_abandoners.jsonl")).unwrap();
    assert!(
        feed.contains(r#""customer":"u1","action":"remove","email":"ana@example.com""#),
        "{feed}"
    );
    let out = nudge(&project, &["audiences", "export", "--format", "meta"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cart_abandoners: 0 to add, 2 to remove, 0 unmatched"),
        "{stdout}"
    );
    let removals = std::fs::read_to_string(
        project.join(".nudge/audiences/upload/cart_abandoners.meta.remove.csv"),
    )
    .unwrap();
    assert_eq!(removals, format!("email,phone\n{ANA},\n{BEN},\n"));
}

#[test]
fn an_audience_plugin_outside_the_audience_channel_is_refused() {
    let (_tmp, project) = copy_example("ad_retargeting");
    let mut toml = std::fs::read_to_string(project.join("nudge.toml")).unwrap();
    toml.push_str(
        "\n[channels.email]\nplugin = \"meta_audience\"\naccess_token = \"t\"\naudiences = { cart_abandoners = \"111\" }\n",
    );
    std::fs::write(project.join("nudge.toml"), toml).unwrap();
    let out = nudge(&project, &["run", ".", "--events", "events.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[channels.email]: the `meta_audience` plugin syncs ad audiences; configure it under [channels.audience]"),
        "{stderr}"
    );
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

/// Waits up to 30 seconds for a request `pick` accepts.
fn wait_for(seen: &Mutex<Vec<Seen>>, pick: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(s) = seen.lock().unwrap().iter().find(|s| pick(s)) {
            return s.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such request: {:?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn nudge_serve_sends_each_change_after_the_calls_that_made_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api = fake_meta(seen.clone());
    let (_tmp, project) = copy_example("ad_retargeting");
    sync_to(&project, &api);
    let server = start_server_with(
        &project,
        &["--write-key", WRITE_KEY, "--clock", "events"],
        &[("NUDGE_TEST_META_TOKEN", "meta-token-e2e")],
    );
    let track = |event: &str, at: &str, id: &str, properties: Value| {
        json!({ "type": "track", "event": event, "userId": "u1", "timestamp": at,
                "messageId": id, "properties": properties })
    };
    ingest(
        &server.base,
        &[
            json!({ "type": "identify", "userId": "u1", "timestamp": "2026-11-23T09:00:00Z",
                    "messageId": "s-1", "traits": { "email": "Ana@Example.com " } }),
            track(
                "Product Added",
                "2026-11-23T09:34:00Z",
                "s-2",
                json!({ "product_id": "p1", "price": 12.5, "quantity": 1 }),
            ),
        ],
    );
    // A later call moves the events' clock past the half hour.
    ingest(
        &server.base,
        &[
            json!({ "type": "page", "userId": "u1", "timestamp": "2026-11-23T10:10:00Z",
                  "messageId": "s-3", "name": "Home" }),
        ],
    );
    let added = wait_for(&seen, |s| {
        s.method == "POST" && s.path == "/v25.0/111/users"
    });
    assert_eq!(added.emails(), vec![ANA.to_string()]);
    ingest(
        &server.base,
        &[track(
            "Order Completed",
            "2026-11-23T11:00:00Z",
            "s-4",
            json!({ "order_id": "o-1", "total": 12.5, "revenue": 12.5 }),
        )],
    );
    let removed = wait_for(&seen, |s| {
        s.method == "DELETE" && s.path == "/v25.0/111/users"
    });
    assert_eq!(removed.emails(), vec![ANA.to_string()]);
    server.terminate();
}
