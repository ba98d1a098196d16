//! End-to-end: `nudge cluster init` and `nudge serve --cluster` against the
//! local NATS JetStream and PostgreSQL, driven over HTTP as clients drive
//! `nudge serve`, and by Segment's own Python library. Each test has its
//! own schema and stream, removed at its end; without the services the
//! tests say why and skip.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    WRITE_KEY, basic_auth, cluster_services_unreachable, command_text, copy_example, http_agent,
    nudge, s, segment_library, start_server_with, trial_cluster, write_cluster,
};
use nudge_cluster::Settings;
use nudge_cluster::log::{Log, Stored};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A copy of an example project with a `[cluster]` of its own.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    settings: Settings,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = runtime().block_on(nudge_cluster::init::destroy(&self.settings));
    }
}

fn project(test: &str, partitions: u32) -> Project {
    let (tmp, dir) = copy_example("cart_recovery");
    let settings = trial_cluster(&format!("e{}_{test}", std::process::id()), partitions);
    write_cluster(&dir, &settings);
    Project {
        _tmp: tmp,
        dir,
        settings,
    }
}

fn stored(settings: &Settings) -> Vec<Stored> {
    runtime().block_on(async {
        let log = Log::connect(settings).await.unwrap();
        log.messages().await.unwrap()
    })
}

fn post(base: &str, path: &str, body: &str, auth: &str) -> (u16, serde_json::Value) {
    let mut r = http_agent()
        .post(format!("{base}{path}"))
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[test]
fn init_records_the_partition_count_and_refuses_another() {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let p = project("init", 16);
    let first = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(first.status.success(), "{}", command_text(&first));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.starts_with("cluster created: 16 partitions"), "{out}");
    let again = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(again.status.success(), "{}", command_text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("cluster already there"));
    let mut other = p.settings.clone();
    other.partitions = 32;
    write_cluster(&p.dir, &other);
    let refused = nudge(&["cluster", "init", s(&p.dir)]);
    assert_eq!(refused.status.code(), Some(2), "{}", command_text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("created with 16 partitions, and nudge.toml says 32"),
        "{err}"
    );
    // An ingest node refuses it too, before it listens.
    let serve = nudge(&["serve", s(&p.dir), "--cluster", "--no-auth"]);
    assert_eq!(serve.status.code(), Some(2), "{}", command_text(&serve));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("created with 16 partitions"));
}

#[test]
fn cluster_deploy_sends_the_project_to_every_partition() {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let p = project("deploy", 4);
    let init = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(init.status.success(), "{}", command_text(&init));
    let out = nudge(&["cluster", "deploy", s(&p.dir)]);
    assert!(out.status.success(), "{}", command_text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("deploy 1 (code "), "{said}");
    assert!(said.contains("sent to 4 partitions"), "{said}");
    let records: Vec<String> = stored(&p.settings)
        .into_iter()
        .filter(|m| m.kind == "deploy")
        .map(|m| m.subject)
        .collect();
    let want: Vec<String> = (0..4).map(|n| p.settings.subject(n)).collect();
    assert_eq!(records, want);
    // Nothing ran yet: the feeds are written, empty.
    let feeds = p.dir.join("feeds");
    let out = nudge(&["cluster", "audiences", s(&p.dir), "-o", s(&feeds)]);
    assert!(out.status.success(), "{}", command_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 membership changes of 0 audiences"),
        "{}",
        command_text(&out)
    );
    assert!(feeds.is_dir());
    // A project that does not compile deploys nothing.
    std::fs::write(p.dir.join("broken.flow"), "flow {").unwrap();
    let out = nudge(&["cluster", "deploy", s(&p.dir)]);
    assert!(!out.status.success(), "{}", command_text(&out));
    assert_eq!(
        stored(&p.settings)
            .iter()
            .filter(|m| m.kind == "deploy")
            .count(),
        4
    );
}

#[test]
fn an_ingest_node_answers_as_serve_and_after_the_log_has_the_calls() {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let p = project("ingest", 16);
    let init = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(init.status.success(), "{}", command_text(&init));
    let server = start_server_with(&p.dir, &["--cluster", "--write-key", WRITE_KEY], &[]);
    let auth = basic_auth();
    let batch = r#"{"batch":[
        {"type":"track","event":"Product Viewed","anonymousId":"dev-1","messageId":"b1","timestamp":"2026-03-01T10:00:00.000Z"},
        {"type":"identify","userId":"u-1","anonymousId":"dev-1","messageId":"b2","timestamp":"2026-03-01T10:00:01.000Z","traits":{"email":"ann@example.com"}},
        {"type":"track","event":"X","messageId":"b3","timestamp":"2026-03-01T10:00:02.000Z"}
    ]}"#;
    let (status, body) = post(&server.base, "/v1/batch", batch, &auth);
    assert_eq!((status, body), (200, serde_json::json!({"success": true})));
    // The same answers as the single-node server.
    let (status, body) = post(&server.base, "/v1/track", "{}", "Basic d3Jvbmc6");
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(&server.base, "/v1/track", "{\"type\":", &auth);
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(&server.base, "/v1/nothing", "{}", &auth);
    assert_eq!(status, 404);
    assert_eq!(server.get("/readyz").0, 200);
    // A retry of the whole batch is stored once.
    let (status, _) = post(&server.base, "/v1/batch", batch, &auth);
    assert_eq!(status, 200);
    let log = stored(&p.settings);
    let calls: Vec<&Stored> = log.iter().filter(|m| m.kind == "call").collect();
    assert_eq!(calls.len(), 2, "{log:?}");
    assert_eq!(calls[0].customer, calls[1].customer);
    assert_eq!(calls[0].subject, calls[1].subject);
    // Each call as serve keeps it: with its receipt.
    let first: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(first["messageId"], "b1");
    assert!(first["receivedAt"].as_str().unwrap().ends_with('Z'));
    // The call naming nobody is a dead letter, once.
    let dead: Vec<&Stored> = log.iter().filter(|m| m.kind == "dead").collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].body.contains("\"b3\""));

    // Without the stream nothing is claimed: 503 with the reason.
    runtime().block_on(async {
        let log = Log::connect(&p.settings).await.unwrap();
        log.jetstream()
            .delete_stream(p.settings.stream())
            .await
            .unwrap();
    });
    let (status, body) = post(
        &server.base,
        "/v1/track",
        r#"{"event":"Y","userId":"u-1","messageId":"late","timestamp":"2026-03-01T10:00:03.000Z"}"#,
        &auth,
    );
    assert_eq!(status, 503, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(
        reason.contains(&format!("no stream `{}`", p.settings.stream()))
            && reason.contains("nudge cluster init"),
        "{reason}"
    );
    assert_eq!(server.get("/readyz").0, 503);
    server.terminate();
}

#[test]
fn segments_python_library_talks_to_an_ingest_node() {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let library = segment_library();
    let p = project("client", 8);
    let init = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(init.status.success(), "{}", command_text(&init));
    let server = start_server_with(&p.dir, &["--cluster", "--write-key", WRITE_KEY], &[]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/segment_client");
    let calls = fixtures.join("events.jsonl");
    let sent = std::process::Command::new("python3")
        .arg(fixtures.join("send.py"))
        .args([&server.base, WRITE_KEY, s(&calls)])
        .env("PYTHONPATH", &library)
        .output()
        .expect("python3 runs");
    assert!(sent.status.success(), "{}", command_text(&sent));
    server.terminate();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|c| c["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // Every call in the log once (the repeated messageId too), none dead.
    let log = stored(&p.settings);
    assert!(log.iter().all(|m| m.kind != "dead"), "{log:?}");
    let mut got: Vec<&str> = log
        .iter()
        .filter(|m| m.kind == "call")
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    // Each customer's calls are in one partition: by user id where the
    // call has one, after the library's alias joined the devices.
    let mut by_user: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    for m in log.iter().filter(|m| m.kind == "call") {
        let call: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(call["context"]["library"]["name"], "analytics-python");
        if let Some(u) = call["userId"].as_str() {
            by_user
                .entry(u.to_string())
                .or_default()
                .insert(m.subject.clone());
        }
    }
    assert!(!by_user.is_empty());
    assert!(
        by_user.values().all(|subjects| subjects.len() == 1),
        "{by_user:?}"
    );
}

/// Kills the process when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_worker_on_the_wall_clock_sends_what_an_ingest_node_took_in() {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let p = project("wall", 4);
    // A flow that sends at once, so the wall clock need not move far.
    std::fs::write(
        p.dir.join("thanks.flow"),
        "message thanks_now() {\n  channel email\n  subject \"Thank you\"\n  body \"x\"\n}\n\nflow thanks {\n  trigger order_completed\n  send thanks_now()\n}\n",
    )
    .unwrap();
    let init = nudge(&["cluster", "init", s(&p.dir)]);
    assert!(init.status.success(), "{}", command_text(&init));
    let server = start_server_with(&p.dir, &["--cluster", "--write-key", WRITE_KEY], &[]);
    let outbox = p.dir.join("worker-outbox.jsonl");
    let _worker = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args([
                "worker",
                s(&p.dir),
                "--id",
                "wall-1",
                "--outbox",
                s(&outbox),
            ])
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nudge worker starts"),
    );
    let now = chrono::Utc::now();
    let at = |ms: i64| {
        (now + chrono::Duration::milliseconds(ms))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let batch = format!(
        r#"{{"batch":[
        {{"type":"identify","userId":"wall-u1","messageId":"w1","timestamp":"{}","traits":{{"email":"ann@example.com","consent":{{"email":true}}}}}},
        {{"type":"track","event":"Order Completed","userId":"wall-u1","messageId":"w2","timestamp":"{}","properties":{{"order_id":"o1","total":12.5}}}}
    ]}}"#,
        at(-2000),
        at(-1000)
    );
    let (status, _) = post(&server.base, "/v1/batch", &batch, &basic_auth());
    assert_eq!(status, 200);
    // The worker takes the partitions, applies the calls on the wall
    // clock, commits the send and delivers it to its outbox.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let sent: Vec<String> = nudge_channels::read_outbox(&outbox)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.message == "thanks_now")
            .map(|m| format!("{} {}", m.customer, m.to))
            .collect();
        if !sent.is_empty() || std::time::Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sent, ["wall-u1 ann@example.com"]);
    // What the worker decided, from the trace it committed.
    let trace = p.dir.join("cluster-trace.jsonl");
    let out = nudge(&["cluster", "trace", s(&p.dir), "-o", s(&trace)]);
    assert!(out.status.success(), "{}", command_text(&out));
    let explain = nudge(&["explain", "wall-u1", s(&p.dir), "--trace", s(&trace)]);
    let text = command_text(&explain);
    assert!(explain.status.success(), "{text}");
    assert!(
        text.contains("thanks") && text.contains("thanks_now"),
        "{text}"
    );
    server.terminate();
}
