//! Partition workers: events applied and committed per second by one
//! worker, against one in-memory engine over the same calls (the
//! baseline, measured in the same run), and the failover time when a
//! worker dies.
//!
//! `cargo bench -p nudge-cluster --bench workers` creates a cluster of its
//! own (a fresh PostgreSQL schema and stream), ingests a generated stream
//! through the identity stage, then:
//!
//! 1. times one in-memory engine over the stream (no store: the baseline);
//! 2. times one worker (`Clock::Calls`, no dispatch) from its first round
//!    until every partition's applied position is its last message;
//! 3. starts two workers on the wall clock with the default leases (4 s,
//!    renewed every second), lets them share the partitions, drops one
//!    without releasing (as a killed process), and times until the other
//!    holds every partition;
//! 4. with one worker on the wall clock holding every partition, signs
//!    devices in as known users (every other one across two partitions)
//!    and times each joining call from its acknowledgement until its
//!    `joined` decision is committed.
//!
//! Settings (environment variables):
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `NUDGE_BENCH_EVENTS` | 100000 | events ingested |
//! | `NUDGE_BENCH_PARTITIONS` | 64 | the cluster's partitions |
//! | `NUDGE_BENCH_BATCH` | 1000 | calls per partition per commit |
//! | `NUDGE_BENCH_MERGES` | 40 | merges timed, half across partitions |
//! | `NUDGE_BENCH_BUDGET` | unset | `customers_in_memory` of the workers of parts 2 and 3 |
//! | `NUDGE_BENCH_NATS` | `nats://127.0.0.1:4222` | NATS |
//! | `NUDGE_BENCH_POSTGRES` | `host=127.0.0.1 user=postgres dbname=test` | PostgreSQL |
//!
//! Without the services it says why and ends.

use std::time::{Duration, Instant};

use nudge_cluster::worker::{Clock, Code, Options};
use nudge_cluster::{Ingest, Settings, Worker};
use nudge_host::durable::Bundles;
use nudge_runtime::engine::{Config, Engine, MemorySink};

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

async fn applied_everywhere(
    settings: &Settings,
    last: &std::collections::BTreeMap<i32, i64>,
) -> bool {
    let (pg, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = pg
        .query(
            &format!(
                "SELECT partition, applied FROM \"{}\".partitions",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let done: std::collections::BTreeMap<i32, i64> =
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    last.iter()
        .all(|(p, l)| done.get(p).is_some_and(|d| d >= l))
}

fn main() {
    let events: u64 = var("NUDGE_BENCH_EVENTS", 100_000);
    let partitions: u32 = var("NUDGE_BENCH_PARTITIONS", 64);
    let batch: usize = var("NUDGE_BENCH_BATCH", 1000);
    let nats: String = var("NUDGE_BENCH_NATS", "nats://127.0.0.1:4222".to_string());
    let pg: String = var(
        "NUDGE_BENCH_POSTGRES",
        "host=127.0.0.1 user=postgres dbname=test".to_string(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut settings = Settings::new(&nats, &pg);
    let unique = format!("bench_workers_{}", std::process::id());
    settings.schema = unique.clone();
    settings.prefix = unique;
    settings.partitions = partitions;
    if let Err(e) = rt.block_on(nudge_cluster::init(&settings)) {
        eprintln!("skipping: {e}");
        return;
    }

    let config = nudge_gen::GenConfig::new(events);
    let mut bytes = Vec::new();
    nudge_gen::generate(&config, &mut bytes).unwrap();
    let lines: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let bundle = nudge_test_support::example_bundle("cart_recovery");
    let bundles = Bundles::default();
    let engine_config = Config::default();

    // 1. The baseline: one engine, in memory.
    let started = Instant::now();
    let mut engine = Engine::new(
        &bundle,
        MemorySink::default(),
        engine_config.clone(),
        i64::MIN,
    );
    for l in &lines {
        let _ = nudge_runtime::ingest::apply_line(&mut engine, l);
    }
    let baseline = started.elapsed();
    let customers = engine.paging().customers;
    let single_sends = engine.into_sink().outbox.len();
    let budget: Option<usize> = std::env::var("NUDGE_BENCH_BUDGET")
        .ok()
        .filter(|b| !b.is_empty())
        .map(|b| {
            b.parse()
                .expect("NUDGE_BENCH_BUDGET: a number of customers")
        });
    let options = |id: &str| {
        let mut o = Options::new(id);
        o.customers_in_memory = budget;
        o
    };

    let last = rt.block_on(async {
        let ingest = Ingest::connect(&settings).await.unwrap();
        for chunk in lines.chunks(2000) {
            ingest.accept(chunk.to_vec(), Vec::new()).await.unwrap();
        }
        let mut last = std::collections::BTreeMap::new();
        for (i, m) in ingest.log().messages().await.unwrap().iter().enumerate() {
            if let Some(p) = m.subject.rsplit('.').next().and_then(|p| p.parse().ok()) {
                last.insert(p, i as i64 + 1);
            }
        }
        last
    });

    let code = Code {
        bundle: &bundle,
        bundles: &bundles,
        config: &engine_config,
    };
    // 2. One worker over the whole backlog.
    let (worker_time, progress) = rt.block_on(async {
        let mut o = options("bench-1");
        o.clock = Clock::Calls { until: None };
        o.dispatch = false;
        o.batch = batch;
        let mut w = Worker::connect(&settings, o, code, None).await.unwrap();
        let started = Instant::now();
        loop {
            let busy = w.step().await.unwrap();
            if !busy && applied_everywhere(&settings, &last).await {
                break;
            }
        }
        let took = started.elapsed();
        let p = w.progress();
        w.shutdown().await.unwrap();
        (took, p)
    });

    // 3. Failover with the default leases.
    let failover = rt.block_on(async {
        let mut a = Worker::connect(&settings, options("bench-a"), code, None)
            .await
            .unwrap();
        let mut b = Worker::connect(&settings, options("bench-b"), code, None)
            .await
            .unwrap();
        let shared = Instant::now();
        while a.partitions().len() + b.partitions().len() < partitions as usize
            || a.partitions().is_empty()
            || b.partitions().is_empty()
        {
            assert!(shared.elapsed() < Duration::from_secs(30), "never shared");
            a.step().await.unwrap();
            b.step().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(a);
        let died = Instant::now();
        while b.partitions().len() < partitions as usize {
            assert!(died.elapsed() < Duration::from_secs(30), "no failover");
            b.step().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = died.elapsed();
        b.shutdown().await.unwrap();
        took
    });

    // 4. Merge latency on the wall clock: a device signs in as a known
    // user, on the same partition and across two, from the joining call's
    // acknowledgement to the join committed in the trace.
    let merges: usize = var("NUDGE_BENCH_MERGES", 40);
    let (same, across) = rt.block_on(async {
        let ingest = Ingest::connect(&settings).await.unwrap();
        let mut w = Worker::connect(&settings, Options::new("bench-m"), code, None)
            .await
            .unwrap();
        while w.partitions().len() < partitions as usize {
            w.step().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (pg, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let (mut same, mut across) = (Vec::new(), Vec::new());
        for i in 0..merges {
            use nudge_cluster::calls::{Kind, partition_of};
            let cross = i % 2 == 1;
            let user = format!("bench-user-{i}");
            let home = partition_of(Kind::User, &user, partitions);
            let device = (0..)
                .map(|k| format!("bench-device-{i}-{k}"))
                .find(|d| (partition_of(Kind::Anonymous, d, partitions) != home) == cross)
                .unwrap();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let call = |id: &str, who: &str| {
                format!(
                    r#"{{"type":"track","event":"Product Viewed","messageId":"{id}",{who},"timestamp":"{now}","properties":{{}}}}"#
                )
            };
            ingest
                .accept(
                    vec![
                        call(&format!("m{i}-u"), &format!(r#""userId":"{user}""#)),
                        call(&format!("m{i}-d"), &format!(r#""anonymousId":"{device}""#)),
                    ],
                    Vec::new(),
                )
                .await
                .unwrap();
            while w.step().await.unwrap() {}
            let join = call(
                &format!("m{i}-j"),
                &format!(r#""userId":"{user}","anonymousId":"{device}""#),
            );
            let started = Instant::now();
            ingest.accept(vec![join], Vec::new()).await.unwrap();
            let pattern = format!(r#"%"customer":"{user}","kind":"joined"%"#);
            loop {
                assert!(started.elapsed() < Duration::from_secs(30), "never joined");
                w.step().await.unwrap();
                let n: i64 = pg
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM \"{}\".trace WHERE line LIKE $1",
                            settings.schema
                        ),
                        &[&pattern],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    break;
                }
            }
            let took = started.elapsed();
            if cross { across.push(took) } else { same.push(took) }
        }
        w.shutdown().await.unwrap();
        (same, across)
    });
    let percentile = |v: &[Duration], p: f64| {
        let mut v = v.to_vec();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };

    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "events: {} lines, {partitions} partitions, batches of {batch}",
        lines.len()
    );
    println!(
        "in-memory engine (baseline): {:.2} s, {:.0} events/s, {single_sends} sends",
        baseline.as_secs_f64(),
        per_s(lines.len() as u64, baseline)
    );
    println!(
        "one worker: {:.2} s, {:.0} events/s ({:.2}x the baseline's time), {} commits, {} intents",
        worker_time.as_secs_f64(),
        per_s(progress.applied, worker_time),
        worker_time.as_secs_f64() / baseline.as_secs_f64(),
        progress.commits,
        progress.intents
    );
    println!(
        "   budget {}: {} of {customers} customers in memory at the end, {} read back from PostgreSQL",
        budget.map_or("none".to_string(), |b| format!("{b} a partition")),
        progress.customers_in_memory,
        progress.customers_read_back
    );
    println!(
        "failover (lease 4 s, renewed every 1 s): {:.2} s until the survivor held all {partitions} partitions",
        failover.as_secs_f64()
    );
    println!(
        "merge, same partition ({} merges): p50 {:.1} ms, p99 {:.1} ms",
        same.len(),
        percentile(&same, 0.5),
        percentile(&same, 0.99)
    );
    println!(
        "merge across partitions, state handed over ({} merges): p50 {:.1} ms, p99 {:.1} ms ({:.2}x the same-partition p50)",
        across.len(),
        percentile(&across, 0.5),
        percentile(&across, 0.99),
        percentile(&across, 0.5) / percentile(&same, 0.5).max(f64::MIN_POSITIVE)
    );
    rt.block_on(nudge_cluster::init::destroy(&settings))
        .unwrap();
}
