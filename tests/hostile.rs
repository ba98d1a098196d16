//! End-to-end attacks on `nudge serve` and `nudge run` through the real
//! binary: each tries one way a client or a hostile call could hang the
//! server, send early or flood, and checks that it is refused, clamped or
//! cut off, and counted.

mod common;
use common::{Server, WRITE_KEY, basic_auth, receipt_project, start_server_with};

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts a server for `project` whose nudge.toml holds `serve` under `[serve]`.
fn server_with(project: &Path, serve: &str) -> Server {
    std::fs::write(project.join("nudge.toml"), format!("[serve]\n{serve}")).unwrap();
    start_server_with(project, &["--write-key", WRITE_KEY, "--in-memory"], &[])
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent, and when it closed.
fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

fn metric_line(server: &Server, prefix: &str) -> String {
    server
        .metrics()
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .to_string()
}

#[test]
fn slow_headers_and_a_slow_body_are_cut_off_within_their_limits() {
    let (_tmp, project) = receipt_project();
    let server = server_with(
        &project,
        "header_read_timeout = \"2s\"\nbody_read_timeout = \"2s\"\nidle_timeout = \"60s\"\n",
    );

    // Slowloris: a header line every half second, never the blank line.
    let mut slow = connect(&server);
    let started = Instant::now();
    slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut closed = None;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        if slow
            .write_all(format!("X-Drip-{i}: y\r\n").as_bytes())
            .is_err()
        {
            closed = Some(Instant::now());
            break;
        }
        slow.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 64];
        let ended = matches!(slow.read(&mut probe), Ok(0))
            || matches!(slow.read(&mut probe), Err(e) if e.kind() != ErrorKind::WouldBlock);
        slow.set_nonblocking(false).unwrap();
        if ended {
            closed = Some(Instant::now());
            break;
        }
    }
    let took = closed.expect("a slow-header client is disconnected") - started;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "closed after {took:?}, the header limit is 2s"
    );

    // A body that stops half way is answered 408 once the body limit passes.
    let mut stalled = connect(&server);
    let started = Instant::now();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"userId\":",
        basic_auth()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    let (answer, at) = read_until_closed(&mut stalled);
    let took = at - started;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a stalled body is answered 408: {answer:?}"
    );
    assert!(answer.contains("took longer than 2s"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "answered after {took:?}, the body limit is 2s"
    );

    assert_eq!(
        metric_line(&server, "nudge_http_timeouts_total{limit=\"body\"}"),
        "nudge_http_timeouts_total{limit=\"body\"} 1"
    );
    assert_eq!(
        metric_line(&server, "nudge_http_timeouts_total{limit=\"header\"}"),
        "nudge_http_timeouts_total{limit=\"header\"} 1"
    );
    server.terminate();
}

#[test]
fn an_idle_kept_alive_connection_is_closed_within_the_idle_limit() {
    let (_tmp, project) = receipt_project();
    let server = server_with(
        &project,
        "idle_timeout = \"1s\"\nheader_read_timeout = \"60s\"\n",
    );
    let mut conn = connect(&server);
    // One request on a kept-alive connection, then silence.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answered_from = Instant::now();
    let (answer, at) = read_until_closed(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let idle = at - answered_from;
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle, the limit is 1s"
    );
    // A connection that never sends a byte goes the same way.
    let mut silent = connect(&server);
    let started = Instant::now();
    let (nothing, at) = read_until_closed(&mut silent);
    assert_eq!(nothing, "");
    assert!(at - started < Duration::from_secs(4), "{:?}", at - started);
    let idle = metric_line(&server, "nudge_http_timeouts_total{limit=\"idle\"}");
    assert!(
        idle.ends_with(" 2") || idle.ends_with(" 3"),
        "both idle connections are counted: {idle}"
    );
    server.terminate();
}

fn nudge() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
}

/// Runs `nudge run` on `project` (in memory, or on its store), giving up
/// (and failing) after a minute: a flood must not hang the test.
fn run_project(project: &Path, in_memory: bool) -> std::process::Output {
    let mut cmd = nudge();
    cmd.args(["run", common::s(project), "--format", "json"]);
    if in_memory {
        cmd.arg("--in-memory");
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nudge run did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_far_future_line_in_nudge_run_is_refused_and_sends_nothing_early() {
    for in_memory in [true, false] {
        let (_tmp, project) = common::copy_example("newsletter");
        let clean = run_project(&project, in_memory);
        assert!(clean.status.success(), "{clean:?}");
        let outbox = lines_of(&project.join(".nudge/outbox.jsonl"));
        std::fs::remove_dir_all(project.join(".nudge")).unwrap();

        // The attack of issue 21: one identify stamped at the end of time,
        // and one a phone a few days ahead would send.
        let events = project.join("events.jsonl");
        let mut text = std::fs::read_to_string(&events).unwrap();
        let ahead = (chrono::Utc::now() + chrono::Duration::days(3))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        text.push_str(&format!(
            "{{\"type\":\"identify\",\"userId\":\"u1\",\"timestamp\":\"9999-12-31T23:59:59Z\",\"traits\":{{\"first_name\":\"Zed\"}}}}\n{{\"type\":\"identify\",\"userId\":\"u3\",\"timestamp\":\"{ahead}\"}}\n"
        ));
        std::fs::write(&events, text).unwrap();
        let attacked = run_project(&project, in_memory);
        assert!(attacked.status.success(), "{attacked:?}");
        assert_eq!(
            lines_of(&project.join(".nudge/outbox.jsonl")),
            outbox,
            "in memory: {in_memory}: the far-future lines changed what was sent"
        );
        let dead = lines_of(&project.join(".nudge/dead_letters.jsonl"));
        let refused: Vec<&String> = dead
            .iter()
            .filter(|l| l.contains("refused, as applying it would move the clock there"))
            .collect();
        assert_eq!(refused.len(), 2, "in memory: {in_memory}: {dead:#?}");
        assert!(
            refused[0]
                .contains("stamped 9999-12-31T23:59:59Z, more than 86400s after the wall clock")
        );
        assert!(refused[0].contains("\"line\":13"), "{}", refused[0]);
        if !in_memory {
            let summary: serde_json::Value =
                serde_json::from_slice(&attacked.stdout).expect("a JSON summary");
            assert_eq!(summary["store"]["beyond_horizon"], 2, "{summary}");
            // Not stored: a second run rebuilds without them and sends nothing more.
            let again = run_project(&project, false);
            assert!(again.status.success());
            assert_eq!(lines_of(&project.join(".nudge/outbox.jsonl")), outbox);
        }
    }
}

/// A project whose one flow sends two emails for every order.
fn two_sends_project() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("twice");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("twice.flow"),
        r#"message first_note(total: money) {
  channel email
  purpose transactional
  subject "Your order"
  body "You paid {total}."
}

message second_note(total: money) {
  channel email
  purpose transactional
  subject "Your order, again"
  body "Still {total}."
}

flow twice {
  trigger order_completed
  entry always
  send first_note(trigger.total)
  send second_note(trigger.total)
}
"#,
    )
    .unwrap();
    (tmp, project)
}

fn post_json(server: &Server, path: &str, auth: &str, body: &str) -> (u16, serde_json::Value) {
    let mut resp = common::http_agent()
        .post(format!("{}{path}", server.base))
        .header("Authorization", auth)
        .send(body)
        .expect("the request completes");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text:?}")),
    )
}

#[test]
fn the_send_breaker_holds_a_flood_across_a_restart_until_released() {
    let (_tmp, project) = two_sends_project();
    std::fs::write(
        project.join("nudge.toml"),
        "[serve]\nadmin_token = \"adm\"\n\n[runtime]\nmax_sends_per_step = 1\n",
    )
    .unwrap();
    let outbox = project.join(".nudge/outbox.jsonl");
    let start = || start_server_with(&project, &["--write-key", WRITE_KEY], &[]);
    let server = start();
    let batch = format!(
        r#"{{"batch":[{{"type":"identify","userId":"u1","timestamp":"{}","traits":{{"email":"a@example.com"}}}},{{"type":"track","event":"Order Completed","userId":"u1","timestamp":"{}","properties":{{"order_id":"o1","total":5}}}}]}}"#,
        common::ago(60),
        common::ago(30)
    );
    let (status, answer) = post_json(&server, "/v1/batch", &basic_auth(), &batch);
    assert_eq!(status, 200, "{answer}");
    let metrics = common::wait_for_metric(&server, "nudge_sends_held 2");
    assert!(metrics.contains("nudge_send_breaker_open 1"), "{metrics}");
    assert!(
        metrics.contains("nudge_send_breaker_trips_total 1"),
        "{metrics}"
    );
    assert!(lines_of(&outbox).is_empty(), "held sends went out");
    // Without the admin token nothing is released.
    let (status, _) = post_json(&server, "/admin/release-sends", "Bearer nope", "");
    assert_eq!(status, 401);
    server.terminate();

    // A restart does not let the held sends out either.
    let server = start();
    let metrics = common::wait_for_metric(&server, "nudge_sends_held 2");
    assert!(metrics.contains("nudge_send_breaker_open 1"), "{metrics}");
    assert!(
        lines_of(&outbox).is_empty(),
        "a restart delivered held sends"
    );
    let (status, answer) = post_json(&server, "/admin/release-sends", "Bearer adm", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["released"], 2, "{answer}");
    let metrics = common::wait_for_metric(&server, "nudge_send_breaker_open 0");
    assert!(metrics.contains("nudge_sends_held 0"), "{metrics}");
    server.terminate();
    assert_eq!(
        lines_of(&outbox).len(),
        2,
        "both sends go out once released"
    );
}

#[test]
fn a_duplicated_envelope_key_is_refused_by_serve_and_by_run() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, project) = receipt_project();
    // Started under a permissive umask: what serve writes is private all the same.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "umask 000 && exec \"$0\" serve \"$1\" --listen 127.0.0.1:0 --write-key \"$2\"",
        ])
        .arg(env!("CARGO_BIN_EXE_nudge"))
        .arg(&project)
        .arg(WRITE_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let server = Server {
        base: format!(
            "http://{}",
            first
                .trim()
                .strip_prefix("listening on ")
                .expect("an address")
        ),
        child,
        _stdout: stdout,
    };
    let auth = basic_auth();
    let (now, later) = (common::ago(5), "9999-12-31T23:59:59Z");
    // Alone: 400 with the reason.
    let (status, answer) = post_json(
        &server,
        "/v1/identify",
        &auth,
        &format!(r#"{{"userId":"u1","timestamp":"{now}","timestamp":"{later}"}}"#),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"],
        "`timestamp` is given twice: a call's envelope keys must each appear once"
    );
    // In a batch: the item alone is refused, a dead letter, counted.
    let batch = format!(
        r#"{{"batch":[{{"type":"identify","userId":"victim","userId":"u1","timestamp":"{now}"}},{{"type":"identify","userId":"u2","timestamp":"{now}"}}]}}"#
    );
    let (status, answer) = post_json(&server, "/v1/batch", &auth, &batch);
    assert_eq!(status, 200, "{answer}");
    let metrics = server.metrics();
    assert!(metrics.contains("nudge_dead_letters_total 1"), "{metrics}");
    assert!(metrics.contains("nudge_events_total 2"), "{metrics}");
    server.terminate();
    let dead = lines_of(&project.join(".nudge/dead_letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("`userId` is given twice"), "{}", dead[0]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&project.join(".nudge")), 0o700);
    for file in ["state.db", "dead_letters.jsonl", "trace.jsonl"] {
        assert_eq!(mode(&project.join(".nudge").join(file)), 0o600, "{file}");
    }

    // nudge run: the same line is a dead letter and sorts nowhere.
    let (_tmp, project) = receipt_project();
    std::fs::write(
        project.join("events.jsonl"),
        format!(
            "{{\"type\":\"identify\",\"userId\":\"u1\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"timestamp\":\"{later}\",\"traits\":{{\"email\":\"a@example.com\"}}}}\n"
        ),
    )
    .unwrap();
    let out = run_project(&project, true);
    assert!(out.status.success(), "{out:?}");
    let dead = lines_of(&project.join(".nudge/dead_letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("`timestamp` is given twice"),
        "{}",
        dead[0]
    );
}

/// `nudge run` on its store with `extra` arguments, giving up after a minute.
fn run_durable(project: &Path, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let out = nudge()
        .args(["run", common::s(project), "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, summary)
}

#[test]
fn the_run_breaker_holds_a_flood_in_the_ledger_until_a_run_releases_it() {
    let (_tmp, project) = two_sends_project();
    std::fs::write(
        project.join("nudge.toml"),
        "[runtime]\nmax_sends_per_step = 1\n",
    )
    .unwrap();
    // The order makes two sends, one over the limit. The identify claims
    // to have happened half a minute after it was received: clamped.
    std::fs::write(
        project.join("events.jsonl"),
        concat!(
            r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:30Z","receivedAt":"2026-01-05T10:00:00Z","traits":{"email":"a@example.com"}}"#,
            "\n",
            r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:01:00Z","properties":{"order_id":"o1","total":5}}"#,
            "\n",
        ),
    )
    .unwrap();
    let outbox = project.join(".nudge/outbox.jsonl");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let (out, summary) = run_durable(&project, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("alert: delivery paused by the send circuit breaker ([runtime] max_sends_per_step = 1): line 2 made 2 sends"),
        "{err}"
    );
    assert!(err.contains("2 sends are held"), "{err}");
    assert!(err.contains("--release-sends"), "{err}");
    let store = &summary["store"];
    assert_eq!(store["held"], 2, "{summary}");
    assert_eq!(store["delivered"], 0, "{summary}");
    assert_eq!(store["clamped"], 1, "{summary}");
    assert_eq!(store["ledger"]["pending"], 2, "{summary}");
    assert!(lines_of(&outbox).is_empty(), "held sends went out");

    // A run without the release holds them again, and says why.
    let (out, summary) = run_durable(&project, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 sends were pending when the run started"),
        "{}",
        stderr(&out)
    );
    assert_eq!(summary["store"]["held"], 2, "{summary}");
    assert!(
        lines_of(&outbox).is_empty(),
        "a second run delivered held sends"
    );

    // The release delivers each once.
    let (out, summary) = run_durable(&project, &["--release-sends"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary["store"]["retried"], 2, "{summary}");
    assert_eq!(summary["store"]["held"], 0, "{summary}");
    assert_eq!(summary["store"]["ledger"]["pending"], 0, "{summary}");
    assert_eq!(lines_of(&outbox).len(), 2);
    let (out, _) = run_durable(&project, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines_of(&outbox).len(), 2, "sent twice");
}

#[test]
fn the_in_memory_breaker_holds_every_send_past_the_limit_in_a_file() {
    let (_tmp, project) = two_sends_project();
    std::fs::write(
        project.join("nudge.toml"),
        "[runtime]\nmax_sends_per_step = 1\n",
    )
    .unwrap();
    let order = |id: &str, minute: u32| {
        format!(
            r#"{{"type":"track","event":"Order Completed","userId":"{id}","timestamp":"2026-01-05T10:{minute:02}:00Z","properties":{{"order_id":"o-{id}","total":5}}}}"#
        )
    };
    // u1's order makes two sends, one over the limit; u2's, after the trip,
    // are held too.
    let identify = |id: &str| {
        format!(
            r#"{{"type":"identify","userId":"{id}","timestamp":"2026-01-05T10:00:00Z","traits":{{"email":"{id}@example.com"}}}}"#
        )
    };
    std::fs::write(
        project.join("events.jsonl"),
        [
            identify("u1"),
            identify("u2"),
            order("u1", 1),
            order("u2", 2),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let (out, summary) = run_durable(&project, &["--in-memory"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}\n{summary}");
    assert!(
        err.contains("alert: delivery paused by the send circuit breaker ([runtime] max_sends_per_step = 1): line 3 made more than 1 sends"),
        "{err}"
    );
    assert!(err.contains("3 sends were held in"), "{err}");
    let outbox = lines_of(&project.join(".nudge/outbox.jsonl"));
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert!(outbox[0].contains("first_note") && outbox[0].contains("u1"));
    let held = lines_of(&project.join(".nudge/held.jsonl"));
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held[0].contains("second_note") && held[0].contains("u1"));
    // The engine was told: the held sends are failures with their reason,
    // not sends.
    let flow = &summary["stats"]["flows"]["twice"];
    assert_eq!(flow["sends"]["email"], 1, "{summary}");
    let trace = std::fs::read_to_string(project.join(".nudge/trace.jsonl")).unwrap();
    assert_eq!(
        trace.matches("held by the send circuit breaker").count(),
        3,
        "{trace}"
    );

    // A run in memory starts from nothing: within the limit, nothing is held
    // and the file of an earlier run is gone.
    std::fs::write(
        project.join("events.jsonl"),
        format!("{}\n{}\n", identify("u3"), order("u3", 3)),
    )
    .unwrap();
    std::fs::write(
        project.join("nudge.toml"),
        "[runtime]\nmax_sends_per_step = 2\n",
    )
    .unwrap();
    let (out, _) = run_durable(&project, &["--in-memory"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!project.join(".nudge/held.jsonl").exists());
}

#[test]
fn the_run_breaker_trips_on_a_clock_step() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("later");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("later.flow"),
        r#"message note(total: money) {
  channel email
  purpose transactional
  subject "Your order"
  body "You paid {total}."
}

flow later {
  trigger order_completed
  entry always
  wait 1h
  send note(trigger.total)
}
"#,
    )
    .unwrap();
    std::fs::write(
        project.join("nudge.toml"),
        "[runtime]\nmax_sends_per_step = 1\n",
    )
    .unwrap();
    // Each line makes no send; the hour that --until runs makes two.
    let mut events = String::new();
    for u in ["u1", "u2"] {
        events.push_str(&format!(
            "{{\"type\":\"identify\",\"userId\":\"{u}\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"traits\":{{\"email\":\"{u}@example.com\"}}}}\n{{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"{u}\",\"timestamp\":\"2026-01-05T10:01:00Z\",\"properties\":{{\"order_id\":\"o-{u}\",\"total\":5}}}}\n"
        ));
    }
    std::fs::write(project.join("events.jsonl"), events).unwrap();
    let (out, summary) = run_durable(&project, &["--until", "2026-01-05T12:00:00Z"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the clock step of --until made 2 sends"),
        "{err}"
    );
    assert_eq!(summary["store"]["held"], 2, "{summary}");
    assert!(lines_of(&project.join(".nudge/outbox.jsonl")).is_empty());
}

/// A raw HTTP/1.1 request with the write key.
fn raw_track(n: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"userId":"u{n}","event":"Order Completed","timestamp":"{}","properties":{{"order_id":"o{n}","total":1}}}}"#,
        common::ago(5)
    );
    format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        basic_auth(),
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_wedged_engine_fails_its_probes_fills_its_queue_and_ends_the_process() {
    let (_tmp, project) = receipt_project();
    // The hidden debug options: the engine stops coming round its loop a
    // second after it starts; two seconds without a round is a stall, eight
    // a wedge.
    let mut server = start_server_with(
        &project,
        &[
            "--write-key",
            WRITE_KEY,
            "--in-memory",
            "--debug-wedge-after",
            "1000",
            "--debug-stall-limits",
            "2000,8000",
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut health, mut body) = server.get("/healthz");
    while health == 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (health, body) = server.get("/healthz");
    }
    assert_eq!((health, body.as_str()), (503, "engine stalled\n"));
    assert_eq!(server.get("/readyz").0, 503);

    // The queue holds 256 requests; the rest are answered 503 at once.
    let mut held = Vec::new();
    for n in 0..300 {
        let mut conn = connect(&server);
        conn.write_all(&raw_track(n)).unwrap();
        held.push(conn);
    }
    let metrics = common::wait_for_metric(&server, "nudge_http_busy_total 44\n");
    assert!(
        metrics.contains("\nnudge_http_busy_total 44\n"),
        "{metrics}"
    );
    let resp = common::http_agent()
        .post(format!("{}/v1/track", server.base))
        .header("Authorization", &basic_auth())
        .send(
            std::str::from_utf8(&raw_track(300))
                .unwrap()
                .split("\r\n\r\n")
                .nth(1)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );

    // The watchdog ends the process, for a supervisor to restart it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "a wedged server kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(70));
    drop(held);
}

#[test]
fn each_credential_accepts_itself_and_no_near_miss() {
    let (_tmp, project) = receipt_project();
    std::fs::write(
        project.join("nudge.toml"),
        "[serve]\nadmin_token = \"adm-token-7\"\nmetrics_token = \"met-token-7\"\n",
    )
    .unwrap();
    let server = start_server_with(&project, &["--write-key", WRITE_KEY, "--in-memory"], &[]);
    let near_misses = |secret: &str| {
        let mut last_changed = secret.to_string();
        last_changed.pop();
        last_changed.push('8');
        vec![
            secret[..secret.len() - 1].to_string(),
            format!("{secret}7"),
            last_changed,
            secret.to_uppercase(),
            String::new(),
        ]
    };
    let status = |req: ureq::RequestBuilder<ureq::typestate::WithoutBody>| {
        req.call().expect("the request completes").status().as_u16()
    };
    let basic = |key: &str| {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        format!("Basic {encoded}")
    };
    let identify = |auth: &str| {
        let body = format!(r#"{{"userId":"u1","timestamp":"{}"}}"#, common::ago(5));
        common::http_agent()
            .post(format!("{}/v1/identify", server.base))
            .header("Authorization", auth)
            .send(body)
            .expect("the request completes")
            .status()
            .as_u16()
    };
    assert_eq!(identify(&basic(WRITE_KEY)), 200);
    for wrong in near_misses(WRITE_KEY) {
        assert_eq!(identify(&basic(&wrong)), 401, "write key {wrong:?}");
    }
    let release = |token: &str| {
        common::http_agent()
            .post(format!("{}/admin/release-sends", server.base))
            .header("Authorization", &format!("Bearer {token}"))
            .send("")
            .expect("the request completes")
            .status()
            .as_u16()
    };
    assert_eq!(release("adm-token-7"), 200);
    for wrong in near_misses("adm-token-7") {
        assert_eq!(release(&wrong), 401, "admin token {wrong:?}");
    }
    let scrape = |token: &str| {
        status(
            common::http_agent()
                .get(format!("{}/metrics", server.base))
                .header("Authorization", &format!("Bearer {token}")),
        )
    };
    assert_eq!(scrape("met-token-7"), 200);
    for wrong in near_misses("met-token-7") {
        assert_eq!(scrape(&wrong), 401, "metrics token {wrong:?}");
    }
    // Neither token opens the other's door.
    assert_eq!(scrape("adm-token-7"), 401);
    assert_eq!(release("met-token-7"), 401);
    server.terminate();
}

#[test]
fn nudge_run_counts_lines_clamped_to_their_receipt_in_memory_and_on_its_store() {
    let (_tmp, project) = receipt_project();
    // A phone a day ahead, received without `sentAt`: held to its receipt.
    // The second line's clock is corrected by its `sentAt`: not clamped.
    std::fs::write(
        project.join("events.jsonl"),
        concat!(
            r#"{"type":"identify","userId":"u1","timestamp":"2026-01-06T10:00:00Z","receivedAt":"2026-01-05T10:00:00Z","traits":{"email":"a@example.com"}}"#,
            "\n",
            r#"{"type":"identify","userId":"u2","timestamp":"2026-01-06T10:00:00Z","sentAt":"2026-01-06T10:00:01Z","receivedAt":"2026-01-05T10:00:02Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = run_project(&project, true);
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["clamped"], 1, "{summary}");
    let (out, summary) = run_durable(&project, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(summary["clamped"], 1, "{summary}");
    assert_eq!(summary["store"]["clamped"], 1, "{summary}");
    let table = nudge()
        .args(["run", common::s(&project), "--in-memory"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("1 calls stamped later than their receipt (receivedAt), applied at it"),
        "{text}"
    );
}
