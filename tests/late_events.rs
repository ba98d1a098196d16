//! End-to-end: event time. Calls that arrive late (appended before a
//! resumed `nudge run`, or flushed late to `nudge serve`) are judged by when
//! they happened, so a purchase stops its reminder however late it arrives.

mod common;
use common::{
    WRITE_KEY, afternoon_zone, ago, basic_auth, copy_example, http_agent, s, start_server_with,
};

use nudge_test_support::text;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("nudge runs")
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (customer, message) of every outbox line.
fn sent(project: &Path) -> Vec<(String, String)> {
    jsonl(&project.join(".nudge/outbox.jsonl"))
        .iter()
        .map(|m| {
            (
                m["customer"].as_str().unwrap().to_string(),
                m["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn identify(user: &str, at: &str, zone: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{user}","timestamp":"{at}","traits":{{"email":"{user}@example.com","first_name":"{user}","timezone":"{zone}","consent":{{"email":true}}}}}}"#
    )
}

fn checkout(user: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Checkout Started","userId":"{user}","timestamp":"{at}","messageId":"co-{user}","properties":{{"value":20.0,"products":[{{"product_id":"p1","name":"Mug","price":20.0,"quantity":1}}]}}}}"#
    )
}

fn order(user: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Order Completed","userId":"{user}","timestamp":"{at}","messageId":"o-{user}","properties":{{"order_id":"o-{user}","total":20.0}}}}"#
    )
}

fn write_lines(path: &Path, lines: &[String], append: bool) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn late_lines_appended_before_a_resumed_run_are_judged_by_when_they_happened() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let events = dir.join("events.jsonl");
    // On time: dan checks out at 10:00 and gets his reminder at 11:00; the
    // last call moves the clock to 12:00.
    write_lines(
        &events,
        &[
            identify("ana", "2026-11-23T08:00:00Z", "UTC"),
            identify("ben", "2026-11-23T08:00:00Z", "UTC"),
            identify("cat", "2026-11-23T08:00:00Z", "UTC"),
            identify("dan", "2026-11-23T08:00:00Z", "UTC"),
            checkout("dan", "2026-11-23T10:00:00Z"),
            identify("zed", "2026-11-23T12:00:00Z", "UTC"),
        ],
        false,
    );
    let first = nudge(&["run", s(&dir)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(sent(&dir), [("dan".into(), "cart_reminder".into())]);

    // Then lines that happened earlier arrive.
    write_lines(
        &events,
        &[
            // Ana checked out at 10:00 and bought at 10:40: no reminder.
            checkout("ana", "2026-11-23T10:00:00Z"),
            order("ana", "2026-11-23T10:40:00Z"),
            // Ben checked out at 10:05 and did not buy: his reminder fell
            // due at 11:05, while his checkout was on its way; it goes now.
            checkout("ben", "2026-11-23T10:05:00Z"),
            // Cat's checkout is two days old: past the lateness bound.
            checkout("cat", "2026-11-21T10:00:00Z"),
            // Dan bought at 10:30, before the reminder he was already sent.
            order("dan", "2026-11-23T10:30:00Z"),
        ],
        true,
    );
    let second = nudge(&["run", s(&dir), "--drain"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).contains("5 new lines applied (5 late"),
        "{}",
        text(&second.stdout)
    );
    let outbox = jsonl(&dir.join(".nudge/outbox.jsonl"));
    let to = |who: &str| -> Vec<&serde_json::Value> {
        outbox.iter().filter(|m| m["customer"] == who).collect()
    };
    assert!(to("ana").is_empty(), "{outbox:?}");
    assert!(to("cat").is_empty(), "{outbox:?}");
    let ben = to("ben");
    assert_eq!(
        ben.len(),
        2,
        "reminder and discount (no phone, no SMS): {ben:?}"
    );
    assert_eq!(ben[0]["message"], "cart_reminder");
    // Sent when the clock could act on it (the first advance after the
    // late lines), not an hour after the checkout arrived.
    assert_eq!(ben[0]["at"], "2026-11-23T12:00:00Z");
    // Counted from the checkout: 10:05 + 1h + 23h.
    assert_eq!(ben[1]["message"], "cart_discount");
    assert_eq!(ben[1]["at"], "2026-11-24T10:05:00Z");

    let trace = jsonl(&dir.join(".nudge/trace.jsonl"));
    let of = |who: &str, kind: &str| -> Vec<&serde_json::Value> {
        trace
            .iter()
            .filter(|r| r["customer"] == who && r["kind"] == kind)
            .collect()
    };
    assert_eq!(of("ana", "exited")[0]["reason"], "order_completed");
    let cat = of("cat", "not_entered");
    assert_eq!(cat[0]["reason"], "late", "{cat:?}");
    assert_eq!(cat[0]["late_by"], "2d 2h");
    let dan = of("dan", "exited_late");
    assert_eq!(dan.len(), 1, "{trace:?}");
    assert_eq!(dan[0]["messages"], serde_json::json!(["cart_reminder"]));
    assert_eq!(dan[0]["happened"], "2026-11-23T10:30:00Z");
    assert_eq!(dan[0]["late_by"], "1h 30m");

    // The report counts what went out before the purchase was known, and
    // explain tells the story.
    let report = nudge(&["report", s(&dir)]);
    assert!(
        text(&report.stdout).contains("sent before a stopping event was known: 1"),
        "{}",
        text(&report.stdout)
    );
    let explain = nudge(&["explain", "dan", s(&dir)]);
    assert!(
        text(&explain.stdout).contains("arrived 1h 30m late: already sent cart_reminder"),
        "{}",
        text(&explain.stdout)
    );
}

#[test]
fn the_events_own_times_decide_even_within_a_second() {
    // A call for another customer a tenth of a second later reaches the
    // engine first; x's checkout and purchase still count in their order.
    let (tmp, dir) = copy_example("cart_recovery");
    let lines = [
        identify("x", "2026-11-23T09:00:00Z", "UTC"),
        identify("y", "2026-11-23T09:00:00Z", "UTC"),
        identify("other", "2026-11-23T10:00:01.000Z", "UTC"),
        checkout("x", "2026-11-23T10:00:00.900Z"),
        order("x", "2026-11-23T10:00:00.918Z"),
        checkout("y", "2026-11-23T10:00:00.900Z"),
        identify("other", "2026-11-23T12:00:00Z", "UTC"),
    ];
    let out = tmp.path().join("out.jsonl");
    common::serve_stdin(&dir, &["--in-memory", "--outbox", s(&out)], &lines);
    let outbox = jsonl(&tmp.path().join("out.jsonl"));
    let to: Vec<&str> = outbox
        .iter()
        .map(|m| m["customer"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["y"], "{outbox:?}");
}

/// Posts a batch; panics unless it is taken.
fn post_batch(base: &str, lines: &[String]) {
    let body = format!("{{\"batch\":[{}]}}", lines.join(","));
    let resp = http_agent()
        .post(format!("{base}/v1/batch"))
        .header("Authorization", &basic_auth())
        .send(body.as_str())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// Waits until `done` holds or `limit` passes.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_late_batch_holding_a_checkout_and_its_purchase_sends_no_reminder() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let zone = afternoon_zone();
    // A phone flushes calls made 63 minutes ago: the reminder would have
    // been due three minutes ago. Ana bought; Ben did not.
    post_batch(
        &server.base,
        &[
            identify("ana", &ago(4000), &zone),
            identify("ben", &ago(4000), &zone),
            checkout("ana", &ago(3780)),
            order("ana", &ago(3700)),
            checkout("ben", &ago(3780)),
        ],
    );
    wait_until(Duration::from_secs(15), || !sent(&dir).is_empty());
    // Another tick for anything else that might be overdue.
    std::thread::sleep(Duration::from_millis(1500));
    server.terminate();
    assert_eq!(sent(&dir), [("ben".into(), "cart_reminder".into())]);
}

#[test]
fn a_call_stamped_in_the_future_fires_nobody_elses_timers() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let zone = afternoon_zone();
    // Ana's reminder falls due six seconds from now.
    post_batch(
        &server.base,
        &[
            identify("ana", &ago(4000), &zone),
            checkout("ana", &ago(3594)),
        ],
    );
    // A phone whose clock is two days ahead (and a client that sends no
    // `sentAt` to correct it by).
    let ahead = (chrono::Utc::now() + chrono::Duration::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    post_batch(&server.base, &[identify("zed", &ahead, &zone)]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(sent(&dir).is_empty(), "sent early: {:?}", sent(&dir));
    wait_until(Duration::from_secs(15), || !sent(&dir).is_empty());
    server.terminate();
    let outbox = jsonl(&dir.join(".nudge/outbox.jsonl"));
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let at = chrono::DateTime::parse_from_rfc3339(outbox[0]["at"].as_str().unwrap()).unwrap();
    let off = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds();
    assert!((0..60).contains(&off), "sent at {at}, {off}s from now");
}

#[test]
fn a_skewed_client_clock_is_corrected_by_its_sent_at() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let zone = afternoon_zone();
    // The phone's clock is a day behind: it stamped the checkout "a day and
    // 63 minutes ago" and sent it "a day ago". Corrected, the checkout was
    // 63 minutes ago (within the lateness bound) and its reminder is due.
    let behind = |secs: i64| ago(86_400 + secs);
    let body = format!(
        "{{\"sentAt\":\"{}\",\"batch\":[{},{}]}}",
        behind(0),
        identify("ana", &behind(4000), &zone),
        checkout("ana", &behind(3780)),
    );
    let resp = http_agent()
        .post(format!("{}/v1/batch", server.base))
        .header("Authorization", &basic_auth())
        .send(body.as_str())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    wait_until(Duration::from_secs(15), || !sent(&dir).is_empty());
    server.terminate();
    assert_eq!(sent(&dir), [("ana".into(), "cart_reminder".into())]);
}

/// The wall-clock instant `ms` milliseconds ago.
fn ago_ms(ms: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::milliseconds(ms))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn under_concurrent_batched_load_no_buyer_gets_a_reminder() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25;
    let (_tmp, dir) = copy_example("cart_recovery");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let zone = afternoon_zone();
    // Each request holds one shopper's checkout and, for four in five, the
    // purchase 18 ms later; the checkouts are an hour and a minute old, so
    // a reminder that wrongly survived its purchase is due at once.
    let batch = |n: usize| {
        let user = format!("c{n}");
        let checkout_ms = 3_660_000 + (n as i64 * 37) % 1000;
        let mut lines = vec![
            identify(&user, &ago(4000), &zone),
            checkout(&user, &ago_ms(checkout_ms)),
        ];
        if !n.is_multiple_of(5) {
            lines.push(order(&user, &ago_ms(checkout_ms - 18)));
        }
        lines
    };
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (base, batch) = (&server.base, &batch);
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    post_batch(base, &batch(t * PER_THREAD + i));
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    let shoppers = total / 5;
    wait_until(Duration::from_secs(20), || sent(&dir).len() >= shoppers);
    std::thread::sleep(Duration::from_millis(1500));
    server.terminate();
    let mut got: Vec<String> = sent(&dir)
        .into_iter()
        .filter(|(_, m)| m == "cart_reminder")
        .map(|(c, _)| c)
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..total).step_by(5).map(|n| format!("c{n}")).collect();
    want.sort();
    assert_eq!(got, want, "reminders only to the shoppers who did not buy");
}

#[test]
fn a_batch_three_minutes_late_with_a_screen_call_stops_the_reminder_and_loses_nothing() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let server = start_server_with(&dir, &["--write-key", WRITE_KEY], &[]);
    let zone = afternoon_zone();
    let screen = format!(
        r#"{{"type":"screen","userId":"ana","name":"Order confirmation","timestamp":"{}"}}"#,
        ago(175)
    );
    post_batch(
        &server.base,
        &[
            identify("ana", &ago(200), &zone),
            checkout("ana", &ago(190)),
            screen,
            order("ana", &ago(170)),
        ],
    );
    let metrics = common::wait_for_metric(&server, "\nnudge_events_total 4\n");
    assert!(metrics.contains("\nnudge_events_total 4\n"), "{metrics}");
    assert!(
        metrics.contains("\nnudge_dead_letters_total 0\n"),
        "{metrics}"
    );
    server.terminate();
    let trace = jsonl(&dir.join(".nudge/trace.jsonl"));
    let ana: Vec<String> = trace
        .iter()
        .filter(|r| r["customer"] == "ana")
        .map(|r| {
            format!(
                "{} {}",
                r["kind"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        ana.contains(&"entered ".to_string())
            && ana.contains(&"exited order_completed".to_string()),
        "{ana:?}"
    );
    assert!(sent(&dir).is_empty(), "{:?}", sent(&dir));
}

/// Sets `[runtime] reorder_window` in the project's nudge.toml.
fn set_window(project: &Path, lines: usize) {
    let manifest = project.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).unwrap();
    assert!(!toml.contains("[runtime]"), "the example sets no [runtime]");
    toml.push_str(&format!("\n[runtime]\nreorder_window = {lines}\n"));
    std::fs::write(&manifest, toml).unwrap();
}

/// Runs `nudge run` on `events` into `out` (outbox, trace, dead letters).
fn replay_into(project: &Path, events: &Path, out: &Path, extra: &[&str]) -> Output {
    let (outbox, trace, dead, store) = (
        out.join("outbox.jsonl"),
        out.join("trace.jsonl"),
        out.join("dead.jsonl"),
        out.join("state.db"),
    );
    let mut args = vec!["run", s(project), "--events", s(events)];
    args.extend(["--outbox", s(&outbox), "--trace", s(&trace)]);
    args.extend(["--dead-letters", s(&dead)]);
    if !extra.contains(&"--in-memory") {
        args.extend(["--store", s(&store)]);
    }
    args.extend(extra);
    let ran = nudge(&args);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    ran
}

/// The outbox, trace and dead letters a replay wrote.
fn outputs(out: &Path) -> [String; 3] {
    ["outbox.jsonl", "trace.jsonl", "dead.jsonl"]
        .map(|f| std::fs::read_to_string(out.join(f)).unwrap_or_default())
}

#[test]
fn lines_out_of_order_within_the_window_replay_as_the_file_sorted_by_time() {
    let (tmp, dir) = copy_example("cart_recovery");
    set_window(&dir, 16);
    // A generated stream (in time order), every block of 8 lines reversed:
    // each line is at most 7 lines from its place, inside the window.
    let generated = tmp.path().join("generated.jsonl");
    let made = nudge(&[
        "gen",
        "--events",
        "2400",
        "--seed",
        "5",
        "--days",
        "4",
        "-o",
        s(&generated),
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let sorted_lines: Vec<String> = std::fs::read_to_string(&generated)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut shuffled: Vec<String> = Vec::new();
    for block in sorted_lines.chunks(8) {
        shuffled.extend(block.iter().rev().cloned());
    }
    // What the whole file sorted (stably) by time gives: equal times keep
    // the shuffled file's order, as a full sort would.
    let time = |l: &String| -> String {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["timestamp"].as_str().unwrap().to_string()
    };
    let mut by_time = shuffled.clone();
    by_time.sort_by_key(time);
    assert_ne!(by_time, shuffled, "the shuffled file is out of order");
    let (sorted, unsorted) = (
        tmp.path().join("sorted.jsonl"),
        tmp.path().join("unsorted.jsonl"),
    );
    write_lines(&sorted, &by_time, false);
    write_lines(&unsorted, &shuffled, false);

    for mode in [&["--in-memory"][..], &["--batch-lines", "7"][..]] {
        let (want, got) = (tmp.path().join("want"), tmp.path().join("got"));
        let _ = std::fs::remove_dir_all(&want);
        let _ = std::fs::remove_dir_all(&got);
        let extra = [mode, &["--drain"]].concat();
        replay_into(&dir, &sorted, &want, &extra);
        let ran = replay_into(&dir, &unsorted, &got, &extra);
        assert!(
            !text(&ran.stderr).contains("out of time order"),
            "{}",
            text(&ran.stderr)
        );
        let [outbox, trace, dead] = outputs(&want);
        assert!(outbox.lines().count() > 10, "the stream sends: {outbox}");
        assert!(dead.is_empty(), "{dead}");
        assert!(outputs(&got) == [outbox, trace, dead], "{mode:?}");
    }

    // Durable in two runs, split between two blocks: the first run stops
    // with nothing held, the second goes on from its read position.
    let (want, got) = (tmp.path().join("want"), tmp.path().join("split"));
    let _ = std::fs::remove_dir_all(&want);
    replay_into(&dir, &unsorted, &want, &["--drain"]);
    let growing = tmp.path().join("growing.jsonl");
    write_lines(&growing, &shuffled[..1200], false);
    replay_into(&dir, &growing, &got, &["--batch-lines", "5"]);
    write_lines(&growing, &shuffled[1200..], true);
    let second = replay_into(&dir, &growing, &got, &["--batch-lines", "5", "--drain"]);
    assert!(
        text(&second.stdout).contains("1200 new lines applied"),
        "{}",
        text(&second.stdout)
    );
    assert!(outputs(&got)[0] == outputs(&want)[0], "the same sends");
    // Nothing new: nothing applied twice.
    let third = replay_into(&dir, &growing, &got, &["--drain"]);
    assert!(
        text(&third.stdout).contains(" 0 new lines applied"),
        "{}",
        text(&third.stdout)
    );
}

#[test]
fn a_line_out_of_order_beyond_the_window_is_applied_late_not_dropped() {
    // Dan checks out at 10:00 and buys at 10:30, but his purchase comes in
    // the file after six calls stamped past his reminder's 11:00.
    let mut lines = vec![
        identify("dan", "2026-11-23T08:00:00Z", "UTC"),
        checkout("dan", "2026-11-23T10:00:00Z"),
    ];
    for i in 0..6 {
        lines.push(identify(
            &format!("other{i}"),
            &format!("2026-11-23T11:{:02}:00Z", 10 + i),
            "UTC",
        ));
    }
    lines.push(order("dan", "2026-11-23T10:30:00Z"));
    for (window, mode) in [
        (20, "--in-memory"),
        (20, "--reset"),
        (4, "--in-memory"),
        (4, "--reset"),
    ] {
        let (tmp, dir) = copy_example("cart_recovery");
        set_window(&dir, window);
        let events = tmp.path().join("events.jsonl");
        write_lines(&events, &lines, false);
        let out = tmp.path().join("out");
        let ran = replay_into(&dir, &events, &out, &[mode]);
        let [outbox, trace, dead] = outputs(&out);
        // Never dropped: the purchase is in the trace, no dead letter.
        assert!(dead.is_empty(), "{dead}");
        let trace: Vec<serde_json::Value> = trace
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let dan = |kind: &str| {
            trace
                .iter()
                .filter(|r| r["customer"] == "dan" && r["kind"] == kind)
                .count()
        };
        let stderr = text(&ran.stderr);
        if window == 20 {
            // Inside the window: put in its place, before the reminder.
            assert!(outbox.is_empty(), "{mode}: {outbox}");
            assert_eq!(dan("exited"), 1, "{mode}: {trace:?}");
            assert!(!stderr.contains("out of time order"), "{stderr}");
        } else {
            // Beyond it: applied late, after the reminder went out.
            let sent: Vec<serde_json::Value> = outbox
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(sent.len(), 1, "{mode}: {outbox}");
            assert_eq!(sent[0]["customer"], "dan");
            assert_eq!(sent[0]["message"], "cart_reminder");
            assert_eq!(dan("exited_late"), 1, "{mode}: {trace:?}");
            assert!(
                stderr.contains("1 line was more than 4 lines out of time order"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_line_stamped_far_ahead_that_empties_the_window_loses_nothing_on_resume() {
    // With a window of two lines, ben's line (stamped hours ahead) holds
    // until two lines follow it, then leaves after them: the window is empty
    // before the end of the file.
    let (tmp, dir) = copy_example("cart_recovery");
    set_window(&dir, 2);
    let events = tmp.path().join("events.jsonl");
    let lines = [
        identify("ana", "2026-11-23T08:00:00Z", "UTC"),
        identify("ben", "2026-11-23T12:00:00Z", "UTC"),
        identify("cat", "2026-11-23T09:00:00Z", "UTC"),
        identify("dan", "2026-11-23T09:30:00Z", "UTC"),
    ];
    write_lines(&events, &lines, false);
    let out = tmp.path().join("out");
    let first = replay_into(&dir, &events, &out, &["--batch-lines", "100"]);
    assert!(
        text(&first.stdout).contains("4 new lines applied"),
        "{}",
        text(&first.stdout)
    );
    // Every line was stored (the checkpoint holds them and the deploy the
    // history starts with), and the read position is the end of the file.
    let again = replay_into(&dir, &events, &out, &[]);
    assert!(
        text(&again.stdout)
            .contains("checkpoint (5 calls), 0 calls replayed from it, 0 new lines applied"),
        "{}",
        text(&again.stdout)
    );
    let customers = |o: &Output| -> String {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["stats"]["customers"].to_string()
    };
    let json = replay_into(&dir, &events, &out, &["--format", "json"]);
    assert_eq!(customers(&json), "4", "{}", text(&json.stdout));
}
