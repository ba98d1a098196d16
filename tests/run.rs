//! End-to-end: `nudge run` replays events and writes the outbox, dead
//! letters, trace and summary.

mod common;
use common::{copy_example, receipt_bodies, receipt_project, s};

use nudge_test_support::text;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nudge runs")
}

fn outbox(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn cart_recovery_sends_no_reminder_after_a_purchase_on_a_joined_identity() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let events = dir.join("events.jsonl");
    let out = nudge(&["run", s(&dir), "--events", s(&events), "--drain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The summary: four entries, two stopped by a purchase.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("cart_recovery "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1..4], ["4", "0", "2"], "{row}");
    assert_eq!(cells[4], "order_completed 2", "{row}");
    assert!(
        stdout.contains("1 duplicates dropped, 0 dead letters"),
        "{stdout}"
    );

    let sent = outbox(&dir);
    // Ana shopped as a9, bought as u1 at 10:30 and was joined at 10:45: nothing goes to her.
    assert!(
        sent.iter().all(|m| m["customer"] != "u1"
            && m["customer"] != "a9"
            && m["to"] != "ana@example.com"),
        "{sent:#?}"
    );
    let reminders: Vec<&str> = sent
        .iter()
        .filter(|m| m["message"] == "cart_reminder")
        .map(|m| m["customer"].as_str().unwrap())
        .collect();
    assert_eq!(reminders, ["u3", "u2"]);
    let first = &sent[0];
    assert_eq!(first["flow"], "cart_recovery");
    assert_eq!(first["channel"], "email");
    assert!(
        first["idempotency_key"]
            .as_str()
            .unwrap()
            .ends_with("/u3/1/send@1")
    );
    assert_eq!(
        first["content"]["subject"],
        "Chloe, you left something behind"
    );

    // The trace explains the exit.
    let trace = std::fs::read_to_string(dir.join(".nudge/trace.jsonl")).unwrap();
    assert!(
        trace.lines().any(|l| l.contains(r#""kind":"exited""#)
            && l.contains(r#""customer":"u1""#)
            && l.contains(r#""reason":"order_completed""#)),
        "{trace}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".nudge/dead_letters.jsonl")).unwrap(),
        ""
    );
}

#[test]
fn bad_lines_go_to_the_dead_letter_file_with_their_line_numbers() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let events = dir.join("bad.jsonl");
    std::fs::write(
        &events,
        "{\"type\":\"track\",\"event\":\"Checkout Started\",\"userId\":\"u9\",\"timestamp\":\"2026-11-23T10:00:00Z\",\"properties\":{\"value\":\"ten\"}}\nnot json\n",
    )
    .unwrap();
    let dead = dir.join("dead.jsonl");
    let out = nudge(&[
        "run",
        s(&dir),
        "--events",
        s(&events),
        "--dead-letters",
        s(&dead),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A property that does not fit is dropped, not the call: only the
    // unreadable line is a dead letter.
    assert!(text(&out.stdout).contains("1 dead letters"));
    assert!(text(&out.stdout).contains("1 properties dropped"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["line"], 2);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );
}

#[test]
fn until_stops_the_clock_and_leaves_instances_active() {
    let (_tmp, dir) = copy_example("cart_recovery");
    // The calls up to 12:40 on the first day; the run stops at 15:00.
    let events = dir.join("morning.jsonl");
    let all = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let morning: Vec<&str> = all.lines().take(19).collect();
    std::fs::write(&events, morning.join("\n")).unwrap();
    let out = nudge(&[
        "run",
        s(&dir),
        "--events",
        s(&events),
        "--until",
        "2026-11-23T15:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let flow = &summary["stats"]["flows"]["cart_recovery"];
    assert_eq!(flow["active"], 2, "{summary:#}");
    let sent = outbox(&dir);
    assert_eq!(
        sent.len(),
        1,
        "only Chloe's reminder is due by 15:00: {sent:#?}"
    );
}

#[test]
fn a_channel_can_be_delivered_by_webhook() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push(line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        (head, String::from_utf8(body).unwrap())
    });
    let route = format!("sms=webhook={url}");
    let out = nudge(&["run", s(&dir), "--drain", "--deliver", &route]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (head, body) = server.join().unwrap();
    assert!(head[0].starts_with("POST /sms "), "{head:?}");
    let key = head
        .iter()
        .find_map(|h| {
            h.strip_prefix("idempotency-key: ")
                .or(h.strip_prefix("Idempotency-Key: "))
        })
        .expect("an Idempotency-Key header");
    assert!(key.trim().ends_with("/u2/1/send@7"), "{key}");
    let msg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(msg["message"], "cart_sms");
    assert_eq!(msg["to"], "+13105550142");
    // The SMS went to the webhook, not the outbox.
    assert!(outbox(&dir).iter().all(|m| m["channel"] != "sms"));
}

#[test]
fn run_refuses_unusable_arguments() {
    let out = nudge(&[
        "run",
        "examples/",
        "--events",
        "examples/cart_recovery/events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("name files of one project"),
        "{}",
        text(&out.stderr)
    );
    let out = nudge(&["run", "examples/cart_recovery", "--until", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("RFC 3339"));
    let out = nudge(&["run", "examples/cart_recovery", "--deliver", "fax=stdout"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown channel \"fax\""),
        "{}",
        text(&out.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("nudge.toml"), "").unwrap();
    std::fs::write(tmp.path().join("a.flow"), "let x = 1\n").unwrap();
    let out = nudge(&["run", s(tmp.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read events from"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_suppression_list_from_the_command_line_is_honoured() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let list = dir.join("suppressed.txt");
    std::fs::write(&list, "# complaints\nChloe@Example.com\n\n").unwrap();
    let out = nudge(&["run", s(&dir), "--drain", "--suppress", s(&list)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(outbox(&dir).iter().all(|m| m["customer"] != "u3"));
    assert!(
        text(&out.stdout).contains("suppressed: suppression_list"),
        "{}",
        text(&out.stdout)
    );
    let missing = dir.join("nope.txt");
    let out = nudge(&["run", s(&dir), "--suppress", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the suppression list"));
}

#[test]
fn nudge_toml_sets_the_store_and_channel_plugins_with_secrets_from_the_environment() {
    let (tmp, dir) = copy_example("cart_recovery");
    let plain = tmp.path().join("plain.jsonl");
    assert!(
        nudge(&["run", s(&dir), "--in-memory", "--outbox", s(&plain)])
            .status
            .success()
    );
    let emails = std::fs::read_to_string(&plain)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"channel\":\"email\""))
        .count();
    assert!(emails > 0);
    // A webhook that records what it is sent; the header's secret comes
    // from the environment through `${NAME}`.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    std::fs::write(
        dir.join("nudge.toml"),
        format!(
            "[store]\npath = \"db/journeys.sqlite\"\n\n[channels.email]\nplugin = \"webhook\"\nurl = \"http://{addr}/email\"\nheaders = {{ Authorization = \"Bearer ${{EMAIL_TOKEN}}\" }}\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    let seen = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for stream in server.incoming().take(emails) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            heads.push(head);
        }
        heads
    });
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&dir)])
        .env("EMAIL_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        dir.join("db/journeys.sqlite").exists(),
        "the store is where nudge.toml says"
    );
    assert!(!dir.join(".nudge/state.db").exists());
    // Every email went to the webhook, none to the outbox.
    assert!(outbox(&dir).iter().all(|m| m["channel"] != "email"));
    let heads = seen.join().unwrap();
    assert_eq!(heads.len(), emails);
    for head in heads {
        assert!(head.starts_with("POST /email "), "{head}");
        assert!(head.contains("Bearer s3cret"), "{head}");
    }

    // Without the variable, the run stops before doing anything and says why.
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&dir)])
        .env_remove("EMAIL_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("error[E0501]: `channels.email.headers.Authorization` uses the environment variable EMAIL_TOKEN, which is not set")
            && err.contains("nudge.toml:"),
        "{err}"
    );
    assert!(!dir.join("db").exists());

    // A typo is reported with its line.
    std::fs::write(dir.join("nudge.toml"), "[store]\npaht = \"x\"\n").unwrap();
    let out = nudge(&["run", s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("nudge.toml:2:1") && err.contains("error[E0503]: unknown field `paht`"),
        "{err}"
    );
}

/// Amounts are exact decimals from the event's text to the message: more
/// digits than a binary float holds survive, whatever the order of keys.
#[test]
fn amounts_arrive_with_every_digit() {
    let (_tmp, project) = receipt_project();
    let events = [
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"a@example.com"}}"#,
        r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:01:00Z","properties":{"order_id":"o1","total":12345678901234567.89}}"#,
        // Properties before the `type` and `event` that say how to read them.
        r#"{"properties":{"order_id":"o2","total":-9007199254740993.25},"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:02:00Z"}"#,
        r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-05T10:03:00Z","properties":{"order_id":"o3","total":0.30000000000000001}}"#,
    ];
    std::fs::write(project.join("events.jsonl"), events.join("\n")).unwrap();
    let out = nudge(&["run", s(&project), "--in-memory", "--drain"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        receipt_bodies(&project.join(".nudge/outbox.jsonl")),
        [
            "You paid $12345678901234567.89.",
            "You paid -$9007199254740993.25.",
            "You paid $0.30.",
        ]
    );
}

/// The store and every output file hold customers' addresses: they are
/// private to the user whatever the umask, and so is the state folder.
#[cfg(unix)]
#[test]
fn the_store_and_outputs_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, dir) = copy_example("cart_recovery");
    let state = dir.join(".nudge");
    // A state folder left open by an earlier version is closed too.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" run \"$1\" --drain"])
        .arg(env!("CARGO_BIN_EXE_nudge"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for file in [
        "state.db",
        "outbox.jsonl",
        "trace.jsonl",
        "dead_letters.jsonl",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
}
