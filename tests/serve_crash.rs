//! Crash safety of `nudge serve` under a steady load: a client thread sends a
//! generated stream in `/v1/batch` requests the way a Segment client does
//! (a batch whose 200 never came is sent again, so delivery is at least
//! once and messageIds make it idempotent), while the server is killed with
//! SIGKILL at random moments and restarted on the same store. The outbox at
//! the end must hold every message of an uninterrupted `nudge run` exactly
//! once, and the engine's counters must agree with that run's.

mod common;
use common::{
    Lcg, WRITE_KEY, basic_auth, copy_project, http_agent, outbox_by_key, s, spawn_server_with,
    start_server_with,
};

/// The server replays the stream on the events' clock, as `nudge run` does.
const EVENT_CLOCK: [&str; 4] = ["--write-key", WRITE_KEY, "--clock", "events"];

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills per test run: enough to land in commits, deliveries, answers and
/// rebuilds, few enough for a debug build in CI.
const KILLS: usize = 8;
/// Calls per request; Segment's libraries send batches of this order.
const BATCH: usize = 50;
/// The client's pause between batches: a steady stream rather than one
/// burst, so the kills fall while it is under way.
const PACE: Duration = Duration::from_millis(5);

/// A copy of cart_recovery, the project `nudge gen` writes streams for.
fn project(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    copy_project(&nudge_test_support::example_dir("cart_recovery"), &dir);
    dir
}

/// A generated stream in time order. The server runs on the events' clock
/// (`--clock events`): only the calls move it, as in `nudge run`, and both
/// apply the same calls at the same times.
fn stream(dir: &Path) -> Vec<String> {
    let generated = dir.join("generated.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["gen", "--events", "5000", "--seed", "17"])
        .args(["--start", "2030-03-02T00:00:00Z", "--days", "20"])
        .args(["-o", s(&generated)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&generated).unwrap();
    let mut lines: Vec<(i64, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp();
            (t, l.to_string())
        })
        .collect();
    // A server applies calls as they arrive, `nudge run` in time order: a
    // stream in time order makes the two the same.
    lines.sort_by_key(|(t, _)| *t);
    lines.into_iter().map(|(_, l)| l).collect()
}

/// What the client thread and the killer share.
#[derive(Default)]
struct Shared {
    /// Where the server listens; `None` while it is down.
    base: Mutex<Option<String>>,
    /// A request is on the wire and not yet answered.
    in_flight: AtomicBool,
    /// Batches acknowledged with a 200.
    acked: AtomicUsize,
    /// How long the last acknowledged request took, in microseconds.
    latency: AtomicU64,
    /// Requests that got no 200 (the server died under them or was down)
    /// and were sent again.
    retried: AtomicUsize,
    /// Every batch was acknowledged.
    done: AtomicBool,
}

/// Sends every batch until it gets a 200, following the server to its
/// current address. Only a failed connection or a 5xx is retried, as
/// Segment's libraries do; any other answer is a bug and fails the test.
fn client(batches: Vec<String>, shared: &Shared) {
    let agent = http_agent();
    let auth = basic_auth();
    for body in batches {
        loop {
            let Some(url) = shared.base.lock().unwrap().clone() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            shared.in_flight.store(true, Ordering::SeqCst);
            let sent_at = Instant::now();
            let answer = agent
                .post(format!("{url}/v1/batch"))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.as_str());
            shared.in_flight.store(false, Ordering::SeqCst);
            match answer {
                Ok(r) if r.status() == 200 => {
                    let took = sent_at.elapsed().as_micros() as u64;
                    shared.latency.store(took, Ordering::SeqCst);
                    break;
                }
                Ok(mut r) if r.status().is_server_error() => {
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    eprintln!("retrying after {}: {text}", r.status());
                }
                Ok(mut r) => panic!(
                    "the server refused a batch: {} {}",
                    r.status(),
                    r.body_mut().read_to_string().unwrap_or_default()
                ),
                Err(_) => {} // Killed mid-request.
            }
            shared.retried.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
        }
        shared.acked.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(PACE);
    }
    shared.done.store(true, Ordering::SeqCst);
}

#[test]
fn killed_and_restarted_server_sends_every_message_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = stream(tmp.path());
    let sorted = tmp.path().join("sorted.jsonl");
    std::fs::write(&sorted, lines.join("\n") + "\n").unwrap();

    // The uninterrupted reference; its calls are dated years ahead, past
    // the horizon a replay accepts by default.
    let reference = project(tmp.path(), "reference");
    let toml = reference.join("nudge.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text.push_str("\n[runtime]\nmax_future = \"3650d\"\n");
    std::fs::write(&toml, text).unwrap();
    let reference_outbox = tmp.path().join("reference-outbox.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["run", s(&reference), "--in-memory", "--format", "json"])
        .args(["--events", s(&sorted), "--outbox", s(&reference_outbox)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = outbox_by_key(&reference_outbox);
    assert!(expected.len() > 20, "the stream should send plenty");

    let batches: Vec<String> = lines
        .chunks(BATCH)
        .map(|c| format!("{{\"batch\":[{}]}}", c.join(",")))
        .collect();
    let requests = batches.len();
    let served = project(tmp.path(), "served");
    // A checkpoint every few requests: kills land around them, and
    // restarts load them and cut the trace back to where they left it.
    let toml = served.join("nudge.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text.push_str("\n[runtime]\ncheckpoint_every = 120\n");
    std::fs::write(&toml, text).unwrap();
    let started = Instant::now();
    let mut server = start_server_with(&served, &EVENT_CLOCK, &[]);
    let startup = started.elapsed();
    let shared = Arc::new(Shared::default());
    *shared.base.lock().unwrap() = Some(server.base.clone());
    let sender = {
        let shared = shared.clone();
        std::thread::spawn(move || client(batches, &shared))
    };

    let mut rng = Lcg(0x5eed_c0de);
    // (batches acknowledged, whether a request was on the wire) at each kill.
    let mut kills: Vec<(usize, bool)> = Vec::new();
    let mut startup_kills = 0;
    let span = requests / KILLS;
    for k in 0..KILLS {
        // A random point of the k-th part of the stream, so the kills find
        // the engine with few and with many instances and timers.
        let target = k * span + rng.below(span as u64) as usize;
        let waiting = Instant::now();
        while shared.acked.load(Ordering::SeqCst) < target {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "the client is stuck at {} batches",
                shared.acked.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Then into the next request, at a random point of its second half
        // or just past its end (a request takes about as long as the last
        // one): applying, committing, delivering, answering. The commit and
        // the deliveries come last, and a kill between the commit and the
        // answer is the one that makes the client send committed calls again.
        while !shared.in_flight.load(Ordering::SeqCst) && !shared.done.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let latency = shared.latency.load(Ordering::SeqCst);
        let into = latency / 2 + rng.below(latency * 3 / 4);
        std::thread::sleep(Duration::from_micros(into));
        *shared.base.lock().unwrap() = None;
        let in_flight = shared.in_flight.load(Ordering::SeqCst);
        server.kill();
        kills.push((shared.acked.load(Ordering::SeqCst), in_flight));
        // Now and then the next server is killed too while it starts:
        // rebuilding from the store, reconciling pending sends with the
        // outbox and delivering the rest.
        if rng.below(3) == 0 {
            let mut child = spawn_server_with(&served, &EVENT_CLOCK, &[]);
            let wait = rng.below(startup.as_micros() as u64);
            std::thread::sleep(Duration::from_micros(wait));
            child.kill().unwrap();
            child.wait().unwrap();
            startup_kills += 1;
        }
        server = start_server_with(&served, &EVENT_CLOCK, &[]);
        *shared.base.lock().unwrap() = Some(server.base.clone());
    }
    sender.join().expect("the client thread");
    server.terminate();
    let took = started.elapsed();
    let retried = shared.retried.load(Ordering::SeqCst);
    eprintln!(
        "{requests} batches in {took:?}; (acknowledged batches, request in flight) at each kill: \
         {kills:?}; {startup_kills} more kills while starting; {retried} requests sent again"
    );
    assert!(
        kills.iter().all(|&(acked, _)| acked < requests),
        "every kill falls while the client is sending: {kills:?}"
    );

    let got = outbox_by_key(&served.join(".nudge/outbox.jsonl"));
    let duplicated: Vec<&String> = got
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(duplicated.is_empty(), "sent twice: {duplicated:?}");
    let lost: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(lost.is_empty(), "never sent: {lost:?}");
    let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(extra.is_empty(), "sent but not by nudge run: {extra:?}");
    assert_eq!(got, expected, "message lines differ");

    // The counters the last lifetime stored at shutdown, rebuilt from every
    // call the store holds: the same flows, customers and events. Only the
    // duplicates differ: calls committed before a kill whose 200 was lost,
    // sent again and dropped by messageId.
    let store = nudge_store::Store::open(&served.join(".nudge/state.db")).unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&store.meta("stats").unwrap().expect("stats at shutdown")).unwrap();
    let counts = store.counts().unwrap();
    drop(store);
    let want = &summary["stats"];
    for key in ["events", "dead_letters", "customers", "flows"] {
        assert_eq!(stats[key], want[key], "stats.{key} differ");
    }
    let duplicates = stats["duplicates"].as_u64().unwrap();
    assert!(
        duplicates <= (retried * BATCH) as u64,
        "{duplicates} duplicates from {retried} resent requests"
    );
    assert_eq!(
        (counts.done, counts.pending, counts.failed),
        (expected.len() as u64, 0, 0),
        "the send ledger"
    );
    eprintln!("{duplicates} calls arrived twice and were dropped");

    // The decision trace, continued from checkpoint to checkpoint across
    // the kills: `nudge report` reads the same funnel, outcomes and revenue
    // from it.
    let report = |dir: &Path| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(["report", s(dir), "--format", "json"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The server's trace also records each delivery's outcome, which the
    // in-memory reference (delivering as it decides) has no records of:
    // every one of them is delivered, and the rest reads the same.
    let mut served_report = report(&served);
    let outcomes = take_delivery_failures(&mut served_report);
    assert!(outcomes > 0, "the served report counts delivery outcomes");
    assert_eq!(served_report, report(&reference), "nudge report differs");
}

/// Takes the `failed` and `unknown` delivery counts out of a report (every
/// send count and step has them when the trace has delivery records),
/// checking each is zero; returns how many it took.
fn take_delivery_failures(v: &mut serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(map) => {
            let mut taken = 0;
            if map.contains_key("sent") {
                for key in ["failed", "unknown"] {
                    if let Some(n) = map.remove(key) {
                        assert_eq!(n, 0, "{key} deliveries: {map:?}");
                        taken += 1;
                    }
                }
            }
            taken + map.values_mut().map(take_delivery_failures).sum::<usize>()
        }
        serde_json::Value::Array(items) => items.iter_mut().map(take_delivery_failures).sum(),
        _ => 0,
    }
}
