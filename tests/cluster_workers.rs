//! End-to-end: a generated stream ingested into a cluster and worked by
//! three `nudge worker` processes, one SIGKILLed and restarted again and
//! again, ends with the outbox `nudge run` writes for the same stream:
//! the same idempotency keys with the same contents, none twice. Against
//! the local NATS JetStream and PostgreSQL; without them the test says
//! why and skips.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    cluster_services_unreachable, command_text, copy_example, nudge, s, trial_cluster,
    write_cluster,
};
use nudge_cluster::{Ingest, Settings};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The workers still running and the trial cluster, removed at the end.
struct Trial {
    settings: Settings,
    workers: Vec<Child>,
}

impl Drop for Trial {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = runtime().block_on(nudge_cluster::init::destroy(&self.settings));
    }
}

fn worker(dir: &Path, id: &str, until: &str, outbox: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "worker",
            s(dir),
            "--id",
            id,
            "--clock",
            "calls",
            "--until",
            until,
            "--batch",
            "50",
            "--outbox",
            s(outbox),
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{id}.log"))).unwrap())
        .spawn()
        .expect("nudge worker starts")
}

/// Idempotency key → the message, from an outbox file; fails on a key twice.
fn outbox(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for m in nudge_channels::read_outbox(path).unwrap() {
        let key = m.idempotency_key.clone();
        assert!(
            out.insert(key.clone(), serde_json::to_value(&m).unwrap())
                .is_none(),
            "{key} written twice to {}",
            path.display()
        );
    }
    out
}

/// Whether every partition ran to `until` past its last message, and
/// every send committed is settled.
async fn finished(settings: &Settings, last: &BTreeMap<i32, i64>, until: i64) -> bool {
    let (pg, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = pg
        .query(
            &format!(
                "SELECT partition, applied, clock FROM \"{}\".partitions",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let done = rows.iter().filter(|r| {
        let (p, applied, clock): (i32, i64, i64) = (r.get(0), r.get(1), r.get(2));
        clock >= until && applied >= last.get(&p).copied().unwrap_or(0)
    });
    if done.count() < settings.partitions as usize {
        return false;
    }
    let open: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".send_intents WHERE status <> 'done'",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    open == 0
}

/// Every identifier of a customer that absorbed one from another partition.
async fn joined_across_partitions(settings: &Settings) -> Vec<String> {
    let (pg, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    pg.query(
        &format!(
            "SELECT value FROM \"{s}\".identities WHERE customer IN
                 (SELECT kept FROM \"{s}\".merges WHERE kept_partition <> absorbed_partition)",
            s = settings.schema
        ),
        &[],
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn workers_killed_at_random_moments_send_what_one_node_sends() {
    killed_workers_send_what_one_node_sends("diff", "");
}

/// The same with `[runtime] customers_in_memory`: each partition's engine
/// keeps few customers, restarts without reading them, and reads them
/// back from PostgreSQL as calls and timers need them.
#[test]
fn workers_with_a_budget_killed_at_random_moments_send_what_one_node_sends() {
    killed_workers_send_what_one_node_sends("budget", "\n[runtime]\ncustomers_in_memory = 5\n");
}

/// Three workers of cart_recovery's project with `manifest_tail` added to
/// its manifest, one of them killed and restarted three times, against
/// `nudge run --in-memory` on the same stream.
fn killed_workers_send_what_one_node_sends(name: &str, manifest_tail: &str) {
    if let Some(why) = cluster_services_unreachable() {
        eprintln!("skipping: {why}");
        return;
    }
    let (_tmp, dir) = copy_example("cart_recovery");
    let manifest = dir.join("nudge.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}{manifest_tail}")).unwrap();
    let settings = trial_cluster(&format!("w{}_{name}", std::process::id()), 16);
    write_cluster(&dir, &settings);
    let mut trial = Trial {
        settings: settings.clone(),
        workers: Vec::new(),
    };

    // A generated stream, with anonymous visitors signing in and second devices.
    let mut config = nudge_gen::GenConfig::new(30_000);
    config.customers = 600;
    config.days = 10;
    let mut bytes = Vec::new();
    nudge_gen::generate(&config, &mut bytes).unwrap();
    let events = dir.join("stream.jsonl");
    std::fs::write(&events, &bytes).unwrap();
    let lines: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last_time = lines
        .iter()
        .filter_map(|l| nudge_runtime::segment::time_and_clamp_of(l))
        .map(|(t, _)| t)
        .max()
        .unwrap();
    let until_ms = last_time + 10 * 86_400_000;
    let until = chrono::DateTime::from_timestamp_millis(until_ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    // One node.
    let single = dir.join("single.jsonl");
    let single_trace = dir.join("single-trace.jsonl");
    let out = nudge(&[
        "run",
        s(&dir),
        "--in-memory",
        "--events",
        s(&events),
        "--until",
        &until,
        "--outbox",
        s(&single),
        "--trace",
        s(&single_trace),
    ]);
    assert!(out.status.success(), "{}", command_text(&out));
    let want = outbox(&single);
    assert!(want.len() > 20, "{}", want.len());

    // The cluster: every call in the log first, then the workers.
    let out = nudge(&["cluster", "init", s(&dir)]);
    assert!(out.status.success(), "{}", command_text(&out));
    let rt = runtime();
    let last = rt.block_on(async {
        let ingest = Ingest::connect(&settings).await.unwrap();
        for chunk in lines.chunks(500) {
            ingest.accept(chunk.to_vec(), Vec::new()).await.unwrap();
        }
        // The last message of each partition: sequences count from 1.
        let mut last = BTreeMap::new();
        for (i, m) in ingest.log().messages().await.unwrap().iter().enumerate() {
            if let Some(p) = m.subject.rsplit('.').next().and_then(|p| p.parse().ok()) {
                last.insert(p, i as i64 + 1);
            }
        }
        last
    });
    let cluster_outbox: PathBuf = dir.join("cluster.jsonl");
    for id in ["w1", "w2", "w3"] {
        trial
            .workers
            .push(worker(&dir, id, &until, &cluster_outbox));
    }
    let started = Instant::now();
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(800);
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the cluster did not finish"
        );
        if kills < 3 && Instant::now() >= next_kill {
            // The first worker dies mid-work and comes back under a new name.
            let mut dead = trial.workers.remove(0);
            dead.kill().unwrap();
            dead.wait().unwrap();
            kills += 1;
            trial.workers.push(worker(
                &dir,
                &format!("w1-{kills}"),
                &until,
                &cluster_outbox,
            ));
            next_kill = Instant::now() + Duration::from_millis(1000 + 500 * kills);
            continue;
        }
        if kills >= 3 && rt.block_on(finished(&settings, &last, until_ms)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = outbox(&cluster_outbox);
    // Customers joined across partitions had their state handed over to
    // the kept customer's partition: they must be among the equal ones.
    let joined = rt.block_on(joined_across_partitions(&settings));
    assert!(
        !joined.is_empty(),
        "the stream joins no one across partitions"
    );
    let moved = want
        .iter()
        .filter(|(key, m)| {
            let customer = m["customer"].as_str().unwrap_or_default();
            joined
                .iter()
                .any(|id| customer == id || key.contains(&format!("/{id}/")))
        })
        .count();
    assert!(moved > 0, "no send of a customer joined across partitions");
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing, {} extra of {}: {:?} {:?}",
        missing.len(),
        extra.len(),
        want.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(got, want);

    // The decision trace the workers committed: per customer, in order,
    // exactly the records one node writes, including customers joined
    // across partitions, and a delivery record for each send (dispatch
    // writes it as it settles the send); not one record twice despite the
    // kills.
    let cluster_trace = dir.join("cluster-trace.jsonl");
    let out = nudge(&["cluster", "trace", s(&dir), "-o", s(&cluster_trace)]);
    assert!(out.status.success(), "{}", command_text(&out));
    let by_customer = |path: &Path| {
        let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        let mut deliveries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let customer = r["customer"].as_str().unwrap_or_default().to_string();
            if r["kind"] == "delivery" {
                deliveries.entry(customer).or_default().push(r.to_string());
                continue;
            }
            out.entry(customer).or_default().push(r);
        }
        for list in deliveries.values_mut() {
            list.sort();
        }
        (out, deliveries)
    };
    let ((want_trace, want_deliveries), (got_trace, got_deliveries)) =
        (by_customer(&single_trace), by_customer(&cluster_trace));
    assert!(want_trace.len() > 100, "{}", want_trace.len());
    // One node in memory records no deliveries; the cluster's dispatch
    // records one per send, each delivered once despite the kills.
    assert!(want_deliveries.is_empty());
    let mut delivered: Vec<String> = got_deliveries
        .values()
        .flatten()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(r["outcome"], "delivered", "{line}");
            r["key"].as_str().unwrap().to_string()
        })
        .collect();
    delivered.sort();
    let sent: Vec<String> = got.keys().cloned().collect();
    assert_eq!(delivered, sent);
    let differ: Vec<&String> = want_trace
        .keys()
        .chain(got_trace.keys())
        .filter(|c| want_trace.get(*c) != got_trace.get(*c))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} customers' records differ: {:?}",
        differ.len(),
        want_trace.len(),
        differ.iter().take(3).collect::<Vec<_>>()
    );
    let report = nudge(&["report", s(&dir), "--trace", s(&cluster_trace)]);
    assert!(report.status.success(), "{}", command_text(&report));
    assert!(
        String::from_utf8_lossy(&report.stdout).contains("cart_recovery"),
        "{}",
        command_text(&report)
    );
    eprintln!(
        "{} sends, as one node, after {kills} kills in {:?} ({moved} of customers joined across partitions)",
        got.len(),
        started.elapsed()
    );
    if !manifest_tail.is_empty() {
        // Stopped, the workers still running say how many customers they
        // read back: the budget reached them through nudge.toml.
        for w in &mut trial.workers {
            let term = Command::new("kill")
                .args(["-TERM", &w.id().to_string()])
                .status()
                .unwrap();
            assert!(term.success());
            w.wait().unwrap();
        }
        let mut read_back = 0u64;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(&path).unwrap();
                if log.contains("started on") {
                    assert!(log.contains("at most 5 idle customers"), "{log}");
                }
                read_back += log
                    .lines()
                    .filter_map(|l| {
                        l.split(": ")
                            .nth(1)?
                            .strip_suffix(" customers read back from PostgreSQL")
                    })
                    .map(|n| n.parse::<u64>().unwrap())
                    .sum::<u64>();
            }
        }
        assert!(read_back > 0, "no worker read a customer back");
    }
}
