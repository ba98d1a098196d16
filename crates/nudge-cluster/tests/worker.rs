//! Partition workers against the real local PostgreSQL and NATS JetStream:
//! the lease fence, a restart from rows, dispatch, and the decisions of
//! several workers against one engine over the same calls. Each test has
//! its own schema and stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{postgres, trial};
use nudge_bytecode::Bundle;
use nudge_cluster::calls::{Kind, partition_of};
use nudge_cluster::worker::{Clock, Code, Options, lease};
use nudge_cluster::{Ingest, Settings, Worker};
use nudge_host::durable::Bundles;
use nudge_runtime::engine::{Config, Engine, MemorySink};
use serde_json::Value;

/// The calls of an example project, one per line.
fn example_lines(name: &str) -> Vec<String> {
    nudge_test_support::example_events(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A generated stream of `events` calls.
fn generated(events: u64, customers: u32) -> Vec<String> {
    let mut config = nudge_gen::GenConfig::new(events);
    config.customers = customers;
    config.days = 10;
    let mut out = Vec::new();
    nudge_gen::generate(&config, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The latest time a line carries, plus `days`: where the clock is run to
/// after the input.
fn until_after(lines: &[String], days: i64) -> i64 {
    lines
        .iter()
        .filter_map(|l| nudge_runtime::segment::time_and_clamp_of(l))
        .map(|(t, _)| t)
        .max()
        .unwrap()
        + days * 86_400_000
}

/// What one engine sends for `lines` applied in order and the clock run
/// through `until`: idempotency key → the message as the outbox writes it.
fn single_node(bundle: &Bundle, lines: &[String], until: i64) -> BTreeMap<String, Value> {
    let mut engine = Engine::new(bundle, MemorySink::default(), Config::default(), i64::MIN);
    for l in lines {
        let _ = nudge_runtime::ingest::apply_line(&mut engine, l);
    }
    engine.advance_through(until);
    engine
        .into_sink()
        .outbox
        .into_iter()
        .map(|m| (m.idempotency_key.clone(), serde_json::to_value(&m).unwrap()))
        .collect()
}

/// The send intents the cluster committed, as [`single_node`] gives them;
/// fails on a key committed twice.
async fn intents(settings: &Settings) -> BTreeMap<String, Value> {
    let pg = postgres(settings).await;
    let rows = pg
        .query(
            &format!(
                "SELECT key, contents FROM \"{}\".send_intents ORDER BY id",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for r in rows {
        let key: String = r.get(0);
        let contents: String = r.get(1);
        let value: Value = serde_json::from_str(&contents).unwrap();
        assert!(out.insert(key.clone(), value).is_none(), "{key} twice");
    }
    out
}

/// The applied position of every partition committed.
async fn positions(settings: &Settings) -> BTreeMap<i32, i64> {
    let pg = postgres(settings).await;
    pg.query(
        &format!(
            "SELECT partition, applied FROM \"{}\".partitions",
            settings.schema
        ),
        &[],
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Options for a test worker on the calls' clock.
/// A project's code as the tests' workers run it.
struct Project {
    bundle: Bundle,
    bundles: Bundles,
    config: Config,
}

impl Project {
    /// The cart-recovery example with the engine's default settings.
    fn cart_recovery() -> Project {
        Project {
            bundle: nudge_test_support::example_bundle("cart_recovery"),
            bundles: Bundles::default(),
            config: Config::default(),
        }
    }

    fn code(&self) -> Code<'_> {
        Code {
            bundle: &self.bundle,
            bundles: &self.bundles,
            config: &self.config,
        }
    }
}

fn options(id: &str, until: Option<i64>) -> Options {
    let mut o = Options::new(id);
    o.clock = Clock::Calls { until };
    o.dispatch = false;
    o.batch = 7;
    o
}

/// Steps the workers in turn until none has anything to do twice running.
async fn settle(workers: &mut [&mut Worker<'_>]) {
    let mut quiet = 0;
    for _ in 0..2000 {
        let mut busy = false;
        for w in workers.iter_mut() {
            busy |= w.step().await.unwrap();
        }
        quiet = if busy { 0 } else { quiet + 1 };
        if quiet >= 2 {
            return;
        }
    }
    panic!("the workers never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_cannot_commit() {
    let Some(t) = trial("fence", 1).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let bundle = &project.bundle;
    let lines = example_lines("cart_recovery");
    let (first, rest) = lines.split_at(lines.len() / 2);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(first.to_vec(), Vec::new()).await.unwrap();

    // Leases that renewal will not touch during the test.
    let mut slow = options("a", None);
    slow.lease = Duration::from_secs(60);
    slow.renew_every = Duration::from_secs(60);
    let mut a = Worker::connect(&t.settings, slow.clone(), code, None)
        .await
        .unwrap();
    settle(&mut [&mut a]).await;
    assert_eq!(a.partitions(), [0]);
    let before = positions(&t.settings).await;
    assert!(before.get(&0).is_some_and(|&p| p > 0), "{before:?}");
    let applied_by_a = a.progress().applied;

    // Its lease expires (a long pause) and another worker takes it.
    let pg = postgres(&t.settings).await;
    pg.execute(
        &format!(
            "UPDATE \"{}\".leases SET expires_at = now() - interval '1 second'",
            t.settings.schema
        ),
        &[],
    )
    .await
    .unwrap();
    let mut b_options = slow.clone();
    b_options.id = "b".into();
    let mut b = Worker::connect(&t.settings, b_options, code, None)
        .await
        .unwrap();
    b.step().await.unwrap();
    assert_eq!(b.partitions(), [0]);

    // The first worker wakes up with new calls: it applies them and cannot commit.
    ingest.accept(rest.to_vec(), Vec::new()).await.unwrap();
    let intents_before = intents(&t.settings).await;
    assert!(!a.step().await.unwrap());
    assert_eq!(a.progress().fenced, 1);
    assert!(a.partitions().is_empty());
    assert_eq!(positions(&t.settings).await, before);
    assert_eq!(intents(&t.settings).await, intents_before);
    // Renewal would not give it back either: the epoch moved on.
    let held = lease::Lease {
        partition: 0,
        epoch: 1,
    };
    let renewed = lease::renew(&pg, &t.settings, "a", &[held], Duration::from_secs(5))
        .await
        .unwrap();
    assert!(renewed.is_empty());

    // The new holder applies them, once.
    settle(&mut [&mut b]).await;
    let stored = ingest.log().messages().await.unwrap();
    let calls = stored.iter().filter(|m| m.kind == "call").count() as u64;
    assert_eq!(
        positions(&t.settings).await.get(&0).copied(),
        Some(stored.len() as i64)
    );
    assert_eq!(applied_by_a + b.progress().applied, calls);
    let until = until_after(&lines, 0);
    let want = single_node(bundle, &lines, until);
    let got = intents(&t.settings).await;
    // On the calls' clock without `until`, timers due after the last call
    // have not fired: every send committed is one a single node makes.
    assert!(!got.is_empty());
    for (key, message) in &got {
        assert_eq!(want.get(key), Some(message), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_goes_on_from_the_rows_without_replaying() {
    let Some(t) = trial("restart", 4).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let bundle = &project.bundle;
    let lines = generated(3000, 60);
    let until = until_after(&lines, 10);
    let (first, rest) = lines.split_at(lines.len() / 2);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(first.to_vec(), Vec::new()).await.unwrap();

    let mut short = options("a", Some(until));
    short.lease = Duration::from_secs(1);
    short.renew_every = Duration::from_millis(200);
    let mut a = Worker::connect(&t.settings, short.clone(), code, None)
        .await
        .unwrap();
    // Only the first half: it does not reach the end of the input.
    a.step().await.unwrap();
    for _ in 0..1000 {
        let p = positions(&t.settings).await;
        if p.values().sum::<i64>() > 0 && p.len() == 4 {
            break;
        }
        a.step().await.unwrap();
    }
    let applied_by_a = a.progress().applied;
    assert!(applied_by_a > 0);
    // It dies: no release, no more renewal.
    drop(a);
    ingest.accept(rest.to_vec(), Vec::new()).await.unwrap();

    let mut b_options = short.clone();
    b_options.id = "b".into();
    let mut b = Worker::connect(&t.settings, b_options, code, None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while b.partitions().len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(10), "no failover");
        b.step().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failover too slow"
    );
    settle(&mut [&mut b]).await;
    let progress = b.progress();
    // Restored from rows: it applied only what the first had not committed.
    assert_eq!(
        applied_by_a + progress.applied + progress.refused,
        lines.len() as u64,
        "{progress:?}"
    );
    assert_eq!(progress.taken, 4);
    let want = single_node(bundle, &lines, until);
    let got = intents(&t.settings).await;
    assert!(got.len() > 10, "{}", got.len());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert_eq!(got, want);
}

/// Every remembered message id of the cluster, as (partition, generation, id).
async fn message_ids(settings: &Settings) -> Vec<(i32, i64, Vec<u8>)> {
    let pg = postgres(settings).await;
    let mut out: Vec<(i32, i64, Vec<u8>)> = Vec::new();
    for r in pg
        .query(
            &format!(
                "SELECT partition, generation, ids FROM \"{}\".state_message_id_chunks",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
    {
        let ids: Vec<u8> = r.get(2);
        assert!(ids.len().is_multiple_of(16));
        for id in ids.chunks(16) {
            out.push((r.get(0), r.get(1), id.to_vec()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_the_first_layout_moves_its_message_ids_into_chunks() {
    let Some(t) = trial("layout", 2).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let lines = generated(600, 40);
    let until = until_after(&lines, 10);
    let (first, rest) = lines.split_at(lines.len() / 2);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(first.to_vec(), Vec::new()).await.unwrap();
    // Not run to `until`: the rest of the calls come after.
    let mut a = Worker::connect(&t.settings, options("a", None), code, None)
        .await
        .unwrap();
    settle(&mut [&mut a]).await;
    a.shutdown().await.unwrap();
    let remembered = message_ids(&t.settings).await;
    assert!(remembered.len() >= first.len() / 2, "{}", remembered.len());

    // The same ids as layout 1 kept them: a row each.
    let pg = postgres(&t.settings).await;
    let schema = &t.settings.schema;
    pg.batch_execute(&format!(
        "CREATE TABLE \"{schema}\".state_message_ids (
             partition integer NOT NULL, id bytea NOT NULL, generation bigint NOT NULL);
         INSERT INTO \"{schema}\".state_message_ids (partition, id, generation)
             SELECT partition, substring(ids FROM i * 16 + 1 FOR 16), generation
             FROM \"{schema}\".state_message_id_chunks,
                  generate_series(0, length(ids) / 16 - 1) AS i;
         DROP TABLE \"{schema}\".state_message_id_chunks;
         UPDATE \"{schema}\".cluster SET layout = 1;"
    ))
    .await
    .unwrap();

    // A worker of this build moves them into chunks and goes on.
    ingest.accept(rest.to_vec(), Vec::new()).await.unwrap();
    let mut b = Worker::connect(&t.settings, options("b", Some(until)), code, None)
        .await
        .unwrap();
    let old: Option<String> = pg
        .query_one(
            &format!("SELECT to_regclass('\"{schema}\".state_message_ids')::text"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, None, "the table of one id a row is gone");
    let layout: i32 = pg
        .query_one(&format!("SELECT layout FROM \"{schema}\".cluster"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(layout, 2);
    assert_eq!(message_ids(&t.settings).await, remembered);
    settle(&mut [&mut b]).await;
    assert_eq!(b.progress().taken, 2, "restored from the rows");
    let now = message_ids(&t.settings).await;
    // (Older generations may be forgotten as the clock moves on.)
    assert!(
        now.iter().any(|id| !remembered.contains(id)),
        "the rest's ids are added"
    );
    let want = single_node(&project.bundle, &lines, until);
    assert_eq!(intents(&t.settings).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_decide_what_one_engine_decides() {
    let Some(t) = trial("differential", 16).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let bundle = &project.bundle;
    let lines = generated(4000, 100);
    let until = until_after(&lines, 10);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    for chunk in lines.chunks(500) {
        ingest.accept(chunk.to_vec(), Vec::new()).await.unwrap();
    }
    let mut workers = Vec::new();
    for id in ["w1", "w2", "w3"] {
        let mut o = options(id, Some(until));
        o.renew_every = Duration::from_millis(100);
        workers.push(Worker::connect(&t.settings, o, code, None).await.unwrap());
    }
    let [w1, w2, w3] = &mut workers[..] else {
        unreachable!()
    };
    // The first takes everything, then shares as the others show up.
    settle(&mut [w1, w2, w3]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle(&mut [w1, w2, w3]).await;
    let held: Vec<usize> = [&*w1, &*w2, &*w3]
        .iter()
        .map(|w| w.partitions().len())
        .collect();
    assert_eq!(held.iter().sum::<usize>(), 16, "{held:?}");
    let want = single_node(bundle, &lines, until);
    let got = intents(&t.settings).await;
    assert!(got.len() > 10, "{}", got.len());
    let merged = merged_customers(&t.settings).await;
    let differ: Vec<&String> = want
        .keys()
        .chain(got.keys())
        .filter(|k| want.get(*k) != got.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} differ ({merged} merges): {:?}",
        differ.len(),
        want.len(),
        differ.iter().take(5).collect::<Vec<_>>()
    );
}

/// How many merges the identity stage recorded.
async fn merged_customers(settings: &Settings) -> i64 {
    let pg = postgres(settings).await;
    pg.query_one(
        &format!("SELECT count(*) FROM \"{}\".merges", settings.schema),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_writes_each_send_once_to_the_outbox() {
    let Some(t) = trial("dispatch", 4).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let bundle = &project.bundle;
    let lines = generated(2000, 50);
    let until = until_after(&lines, 10);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(lines.clone(), Vec::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.jsonl");
    let router =
        || nudge_host::setup::router(&outbox, nudge_channels::OutboxMode::Append, &[]).unwrap();
    let mut o = options("d1", Some(until));
    o.dispatch = true;
    let mut d1 = Worker::connect(&t.settings, o.clone(), code, Some(router()))
        .await
        .unwrap();
    o.id = "d2".into();
    let mut d2 = Worker::connect(&t.settings, o, code, Some(router()))
        .await
        .unwrap();
    settle(&mut [&mut d1, &mut d2]).await;
    let written = nudge_channels::read_outbox(&outbox).unwrap();
    let mut seen = BTreeMap::new();
    for m in written {
        let key = m.idempotency_key.clone();
        assert!(
            seen.insert(key.clone(), serde_json::to_value(&m).unwrap())
                .is_none(),
            "{key} written twice"
        );
    }
    assert_eq!(seen, intents(&t.settings).await);
    assert_eq!(seen, single_node(bundle, &lines, until));
    let pg = postgres(&t.settings).await;
    let open: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".send_intents WHERE status <> 'done'",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
    assert_eq!(
        d1.progress().delivered + d2.progress().delivered,
        seen.len() as u64
    );
    // One delivery record per send, in the trace the workers commit.
    let mut recorded: Vec<String> = pg
        .query(
            &format!(
                "SELECT line FROM \"{}\".trace WHERE line LIKE '%\"kind\":\"delivery\"%'",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let line: String = r.get(0);
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["outcome"], "delivered", "{line}");
            v["key"].as_str().unwrap().to_string()
        })
        .collect();
    recorded.sort();
    assert_eq!(recorded, seen.keys().cloned().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_call_for_an_absorbed_customer_goes_to_the_kept_ones_partition() {
    let Some(t) = trial("forward", 2).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let log = nudge_cluster::log::Log::connect(&t.settings).await.unwrap();
    let call = |id: &str, customer: i64, partition: u32| nudge_cluster::log::Outgoing::Call {
        partition,
        customer,
        message_id: Some(id.into()),
        line: common::track(id, Some("u-late"), None),
        absorbs: Vec::new(),
    };
    // Customer 2 (partition 1) is absorbed into customer 1 (partition 0);
    // a node that read the graph before the merge still routes a call to 2.
    log.publish(&[
        call("before", 2, 1),
        nudge_cluster::log::Outgoing::Merge(nudge_cluster::Merge {
            kept: 1,
            absorbed: 2,
            kept_partition: 0,
            absorbed_partition: 1,
            at: 1_700_000_000_000,
            message_id: Some("join".into()),
            call_at: None,
            identities: Vec::new(),
        }),
        call("late", 2, 1),
    ])
    .await
    .unwrap();
    let mut w = Worker::connect(&t.settings, options("f1", None), code, None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    let p = w.progress();
    assert_eq!((p.merges, p.forwarded), (1, 1), "{p:?}");
    // The call before the merge stays; the late one is applied where the kept customer is.
    assert_eq!(p.applied, 2);
    let stored = log.messages().await.unwrap();
    let forwarded: Vec<_> = stored
        .iter()
        .filter(|m| {
            m.message_id
                .as_deref()
                .is_some_and(|id| id.starts_with("nudge-forward:"))
        })
        .collect();
    assert_eq!(forwarded.len(), 1, "{stored:?}");
    assert_eq!(forwarded[0].subject, t.settings.subject(0));
    assert_eq!(forwarded[0].customer, Some(1));
    assert!(forwarded[0].body.contains("\"late\""));
    let positions = positions(&t.settings).await;
    assert_eq!(positions.get(&0), Some(&(stored.len() as i64)));

    // The forwarding is kept: a worker taking the partition later forwards too.
    w.shutdown().await.unwrap();
    drop(w);
    log.publish(&[call("later", 2, 1)]).await.unwrap();
    let mut w2 = Worker::connect(&t.settings, options("f2", None), code, None)
        .await
        .unwrap();
    settle(&mut [&mut w2]).await;
    assert_eq!(w2.progress().forwarded, 1);
    assert_eq!(w2.progress().applied, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_gives_every_lease_up_at_once() {
    let Some(t) = trial("stop", 8).await else {
        return;
    };
    let project = Project::cart_recovery();
    let code = project.code();
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest
        .accept(example_lines("cart_recovery"), Vec::new())
        .await
        .unwrap();
    let mut w = Worker::connect(&t.settings, options("s1", None), code, None)
        .await
        .unwrap();
    w.run_until(tokio::time::sleep(Duration::from_millis(800)))
        .await
        .unwrap();
    assert!(w.progress().applied > 0);
    let pg = postgres(&t.settings).await;
    let owned: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".leases WHERE owner IS NOT NULL",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0);
    // Another takes them all at its first round, without waiting for expiry.
    let mut next = Worker::connect(&t.settings, options("s2", None), code, None)
        .await
        .unwrap();
    next.step().await.unwrap();
    assert_eq!(next.partitions().len(), 8);
}

/// A device's cart and its sign-in, on two partitions, then a purchase.
fn device_and_user(device: &str, user: &str, purchase: bool) -> Vec<String> {
    let product = r#"[{"product_id":"p7","name":"Beans","price":32.0,"quantity":1,"category":"Coffee","url":"https://shop.example/p/beans"}]"#;
    let mut lines = vec![
        format!(
            r#"{{"type":"identify","userId":"{user}","messageId":"h-1","timestamp":"2026-11-23T14:00:00Z","traits":{{"email":"ana@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
        ),
        format!(
            r#"{{"type":"identify","anonymousId":"{device}","messageId":"h-2","timestamp":"2026-11-23T14:05:00Z","traits":{{"email":"laptop@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
        ),
        format!(
            r#"{{"type":"track","event":"Checkout Started","anonymousId":"{device}","messageId":"h-3","timestamp":"2026-11-23T14:10:00Z","properties":{{"value":32.0,"products":{product}}}}}"#
        ),
        // Signing in on the laptop joins the device to the user.
        format!(
            r#"{{"type":"track","event":"Signed In","userId":"{user}","anonymousId":"{device}","messageId":"h-4","timestamp":"2026-11-23T14:20:00Z","properties":{{}}}}"#
        ),
    ];
    if purchase {
        lines.push(format!(
            r#"{{"type":"track","event":"Order Completed","userId":"{user}","messageId":"h-5","timestamp":"2026-11-23T14:40:00Z","properties":{{"order_id":"o1","total":32.0,"products":{product}}}}}"#
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_on_one_partition_stops_a_reminder_whose_customer_lived_on_another() {
    let Some(t) = trial("handoff", 8).await else {
        return;
    };
    let user = "u-ana";
    let device = (0..)
        .map(|i| format!("laptop-{i}"))
        .find(|d| partition_of(Kind::Anonymous, d, 8) != partition_of(Kind::User, user, 8))
        .unwrap();
    let project = Project::cart_recovery();
    let code = project.code();
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let lines = device_and_user(&device, user, true);
    // One request per call, as a site's tracking sends them.
    for l in &lines {
        ingest.accept(vec![l.clone()], Vec::new()).await.unwrap();
    }
    let until = until_after(&lines, 3);
    let mut w1 = Worker::connect(&t.settings, options("h1", Some(until)), code, None)
        .await
        .unwrap();
    let mut w2 = Worker::connect(&t.settings, options("h2", Some(until)), code, None)
        .await
        .unwrap();
    settle(&mut [&mut w1, &mut w2]).await;
    // The device's reminder moved with it and stopped at the purchase, as
    // on one node; nothing was sent.
    let single = single_node(&project.bundle, &lines, until);
    assert_eq!(single, BTreeMap::new());
    assert_eq!(intents(&t.settings).await, single);
    let (p1, p2) = (w1.progress(), w2.progress());
    assert_eq!(p1.taken_in + p2.taken_in, 1, "{p1:?} {p2:?}");
    // The handoff is recorded as taken, its state dropped.
    let pg = postgres(&t.settings).await;
    let row = pg
        .query_one(
            &format!(
                "SELECT state IS NULL, taken_at IS NOT NULL FROM \"{}\".handoffs",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_joins_waits_for_the_customer_handed_over() {
    let Some(t) = trial("handoff_wait", 2).await else {
        return;
    };
    use nudge_cluster::log::Outgoing;
    let project = Project::cart_recovery();
    let code = project.code();
    let log = nudge_cluster::log::Log::connect(&t.settings).await.unwrap();
    // No purchase: the reminders go out, from the partition the person
    // lives on after the join, with the keys one node gives them.
    let lines = device_and_user("laptop", "u-ben", false);
    let call = |i: usize, customer: i64, partition: u32, absorbs: Vec<i64>| Outgoing::Call {
        partition,
        customer,
        message_id: Some(format!("h-{}", i + 1)),
        line: lines[i].clone(),
        absorbs,
    };
    // The user is customer 1 on partition 0, the laptop customer 2 on
    // partition 1; the joining call reaches partition 0 before partition 1
    // has read the merge record (published late, as by a node's sweep).
    log.publish(&[
        call(0, 1, 0, vec![]),
        call(1, 2, 1, vec![]),
        call(2, 2, 1, vec![]),
        call(3, 1, 0, vec![2]),
    ])
    .await
    .unwrap();
    let until = until_after(&lines, 3);
    // Clocks stay at the calls' times until the merge record is in.
    let mut w = Worker::connect(&t.settings, options("w1", None), code, None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    let p = w.progress();
    assert_eq!((p.held_back, p.taken_in, p.applied), (1, 0, 3), "{p:?}");
    assert_eq!(intents(&t.settings).await, BTreeMap::new());
    // A worker that stops while a call waits leaves it to the next one.
    w.shutdown().await.unwrap();
    drop(w);

    // The merge recorded, as by a node that then failed to publish its
    // record: the waiting partition publishes it rather than wait for a
    // node's sweep.
    let pg = postgres(&t.settings).await;
    let (kinds, ids): (Vec<i16>, Vec<&str>) = (vec![2, 3], vec!["laptop", "laptop@example.com"]);
    pg.execute(
        &format!(
            "INSERT INTO \"{}\".merges (absorbed, kept, absorbed_partition, kept_partition, at,
                 message_id, call_at, kinds, ids)
             VALUES (2, 1, 1, 0, now(), 'h-4', 1795443600000, $1, $2)",
            t.settings.schema
        ),
        &[&kinds, &ids],
    )
    .await
    .unwrap();
    let mut w = Worker::connect(&t.settings, options("w2", Some(until)), code, None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    let p = w.progress();
    assert_eq!((p.held_back, p.taken_in, p.applied), (0, 1, 1), "{p:?}");
    let published: bool = pg
        .query_one(
            &format!("SELECT published FROM \"{}\".merges", t.settings.schema),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(published);
    let single = single_node(&project.bundle, &lines, until);
    assert!(!single.is_empty());
    assert_eq!(intents(&t.settings).await, single);
}

/// A small project whose welcome says `subject`, with a stored text trait
/// (`plan`) of type `plan_type`.
fn welcome(subject: &str, plan_type: &str) -> Project {
    let source = format!(
        r#"
profile {{
  plan: {plan_type}?
}}
message hello() {{
  channel email
  subject "{subject}"
  body "Hi"
}}
flow welcome {{
  trigger signed_up
  send hello()
}}
"#
    );
    Project {
        bundle: nudge_test_support::build(&[("welcome.flow", &source)]),
        bundles: Bundles::default(),
        config: Config::default(),
    }
}

fn signed_up(user: &str, at: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"type":"identify","userId":"{user}","messageId":"{user}-i","timestamp":"{at}","traits":{{"email":"{user}@example.com","plan":"gold","consent":{{"email":true}}}}}}"#
        ),
        format!(
            r#"{{"type":"track","event":"Signed Up","userId":"{user}","messageId":"{user}-s","timestamp":"{at}","properties":{{}}}}"#
        ),
    ]
}

/// Signs up `n` users named `prefix` and a number, at `at`, through
/// `ingest`; returns their ids.
async fn sign_up(ingest: &Ingest, prefix: &str, n: usize, at: &str) -> Vec<String> {
    let users: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for u in &users {
        ingest.accept(signed_up(u, at), Vec::new()).await.unwrap();
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reaches_every_partition_through_its_log() {
    deploy_reaches_every_partition("deploy", None).await;
}

/// The same with workers keeping one idle customer a partition in memory
/// (and the second worker taking the partitions over without reading
/// their customers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reaches_every_partition_of_workers_with_a_budget() {
    deploy_reaches_every_partition("deploy_budget", Some(1)).await;
}

/// Deploys a new welcome through the log of a cluster of four partitions
/// whose workers keep `budget` customers a partition in memory.
async fn deploy_reaches_every_partition(name: &str, budget: Option<usize>) {
    let Some(t) = trial(name, 4).await else {
        return;
    };
    let options = |id: &str, until: Option<i64>| {
        let mut o = options(id, until);
        o.customers_in_memory = budget;
        o
    };
    let (v1, v2) = (welcome("v1", "string"), welcome("v2", "string"));
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let users = sign_up(&ingest, "d", 8, "2026-03-01T10:00:00Z").await;
    let mut w = Worker::connect(&t.settings, options("d1", None), v1.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;

    // A type change the stored `plan` values cannot follow is refused,
    // and nothing reaches the log.
    let err = nudge_cluster::deploy::deploy(&t.settings, &welcome("v3", "int").bundle)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, nudge_cluster::ClusterError::Incompatible { problems } if !problems.is_empty()),
        "{err}"
    );
    assert!(err.to_string().contains("plan"), "{err}");
    let before = nudge_cluster::log::Log::connect(&t.settings)
        .await
        .unwrap()
        .messages()
        .await
        .unwrap()
        .len();

    let d = nudge_cluster::deploy::deploy(&t.settings, &v2.bundle)
        .await
        .unwrap();
    assert_eq!((d.partitions, d.seq), (4, 1));
    assert!(d.checked >= 1);
    let log = nudge_cluster::log::Log::connect(&t.settings).await.unwrap();
    assert_eq!(log.messages().await.unwrap().len(), before + 4);
    // Calls after the deploy, on every partition.
    let later = sign_up(&ingest, "e", 8, "2026-03-01T11:00:00Z").await;
    // The worker was started with v1: the log, not its own code, decides.
    settle(&mut [&mut w]).await;
    assert_eq!(w.progress().deploys, 4);
    if let Some(budget) = budget {
        // Nobody has a live instance: the others are in PostgreSQL.
        let held = w.progress().customers_in_memory;
        assert!(held <= 4 * budget as u64, "{held} customers in memory");
    }
    let subjects: BTreeMap<String, String> = intents(&t.settings)
        .await
        .into_values()
        .map(|m| {
            (
                m["customer"].as_str().unwrap().to_string(),
                m["content"]["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for u in &users {
        assert_eq!(subjects[u], "v1", "{u}");
    }
    for u in &later {
        assert_eq!(subjects[u], "v2", "{u}");
    }
    // A worker started later with v1 takes the partitions over on v2.
    w.shutdown().await.unwrap();
    drop(w);
    ingest
        .accept(signed_up("f0", "2026-03-01T12:00:00Z"), Vec::new())
        .await
        .unwrap();
    let mut w2 = Worker::connect(&t.settings, options("d2", None), v1.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w2]).await;
    let last = intents(&t.settings)
        .await
        .into_values()
        .find(|m| m["customer"] == "f0")
        .unwrap();
    assert_eq!(last["content"]["subject"], "v2");
    let codes: Vec<i64> = postgres(&t.settings)
        .await
        .query(
            &format!("SELECT code FROM \"{}\".partitions", t.settings.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(codes.iter().all(|c| *c == d.fingerprint), "{codes:?}");
}

/// The welcome project with a morning greeting that reaches every customer.
fn welcome_and_daily() -> Project {
    let source = r#"
profile {
  plan: string?
}
message hello() {
  channel email
  subject "v2"
  body "Hi"
}
message morning() {
  channel email
  subject "morning"
  body "Hi"
}
flow welcome {
  trigger signed_up
  send hello()
}
flow daily {
  trigger every day at 09:00
  send morning()
}
"#;
    Project {
        bundle: nudge_test_support::build(&[("welcome.flow", source)]),
        bundles: Bundles::default(),
        config: Config::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_arming_a_schedule_commits_in_parts_on_workers_with_a_budget() {
    let Some(t) = trial("deploy_parts", 4).await else {
        return;
    };
    let options = |id: &str, until: Option<i64>| {
        let mut o = options(id, until);
        o.customers_in_memory = Some(1);
        o
    };
    let (v1, v2) = (welcome("v1", "string"), welcome_and_daily());
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let users = sign_up(&ingest, "d", 8, "2026-03-01T10:00:00Z").await;
    let mut w = Worker::connect(&t.settings, options("p1", None), v1.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    nudge_cluster::deploy::deploy(&t.settings, &v2.bundle)
        .await
        .unwrap();
    // Calls after the deploy wait for its parts, then go on v2.
    let later = sign_up(&ingest, "e", 4, "2026-03-01T11:00:00Z").await;
    settle(&mut [&mut w]).await;
    assert_eq!(w.progress().deploys, 4);
    assert_eq!(
        w.progress().deploy_parts,
        8,
        "one customer a part, each committed: {:?}",
        w.progress()
    );
    let held = w.progress().customers_in_memory;
    assert!(held <= 4, "{held} customers in memory");
    w.shutdown().await.unwrap();
    drop(w);
    // A worker taking the partitions over fires the mornings the parts
    // armed, and those of the customers who came after.
    let until = chrono::DateTime::parse_from_rfc3339("2026-03-02T12:00:00Z")
        .unwrap()
        .timestamp_millis();
    let mut w2 = Worker::connect(&t.settings, options("p2", Some(until)), v1.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w2]).await;
    let all = intents(&t.settings).await;
    let mornings: BTreeSet<String> = all
        .values()
        .filter(|m| m["content"]["subject"] == "morning")
        .map(|m| m["customer"].as_str().unwrap().to_string())
        .collect();
    let everyone: BTreeSet<String> = users.iter().chain(&later).cloned().collect();
    assert_eq!(mornings, everyone);
    for u in &later {
        assert!(
            all.values()
                .any(|m| m["customer"] == u.as_str() && m["content"]["subject"] == "v2"),
            "{u}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_changes_are_committed_and_read_back_as_feeds() {
    let Some(t) = trial("audiences", 4).await else {
        return;
    };
    let project = Project {
        bundle: nudge_test_support::example_bundle("ad_retargeting"),
        bundles: Bundles::default(),
        config: Config::default(),
    };
    let lines = example_lines("ad_retargeting");
    let until = until_after(&lines, 20);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    for l in &lines {
        ingest.accept(vec![l.clone()], Vec::new()).await.unwrap();
    }
    let mut w = Worker::connect(
        &t.settings,
        options("a1", Some(until)),
        project.code(),
        None,
    )
    .await
    .unwrap();
    settle(&mut [&mut w]).await;

    // One engine over the same calls: its changes, per audience, in order.
    let mut engine = Engine::new(
        &project.bundle,
        MemorySink::default(),
        Config::default(),
        i64::MIN,
    );
    for l in &lines {
        let _ = nudge_runtime::ingest::apply_line(&mut engine, l);
    }
    engine.advance_through(until);
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in engine.into_sink().memberships {
        want.entry(nudge_runtime::output::audience_file(&m.audience))
            .or_default()
            .push(serde_json::to_string(&m).unwrap());
    }
    assert!(want.len() >= 2, "{want:?}");

    let dir = tempfile::tempdir().unwrap();
    let (files, written) = nudge_cluster::trace::export_audiences(&t.settings, dir.path())
        .await
        .unwrap();
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        got.insert(
            name,
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect(),
        );
    }
    assert_eq!(files, want.len());
    assert_eq!(written as usize, want.values().map(Vec::len).sum::<usize>());
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_calls_are_trimmed_from_the_log_and_a_new_worker_goes_on() {
    let Some(mut t) = trial("trim", 4).await else {
        return;
    };
    t.settings.keep = Some(Duration::ZERO);
    let project = Project::cart_recovery();
    let lines = example_lines("cart_recovery");
    let (first, rest) = lines.split_at(lines.len() / 2);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(first.to_vec(), Vec::new()).await.unwrap();
    let mut w = Worker::connect(&t.settings, options("t1", None), project.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    assert!(w.progress().trimmed_to > 0);
    let log = nudge_cluster::log::Log::connect(&t.settings).await.unwrap();
    let applied = positions(&t.settings).await;
    assert!(!applied.is_empty());
    // Nothing at or below a partition's applied position is left.
    let left = log.messages().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    w.shutdown().await.unwrap();
    drop(w);

    // A worker taking over reads after the applied positions: the rest of
    // the calls give what one engine gives for all of them.
    ingest.accept(rest.to_vec(), Vec::new()).await.unwrap();
    let until = until_after(&lines, 3);
    let mut w = Worker::connect(
        &t.settings,
        options("t2", Some(until)),
        project.code(),
        None,
    )
    .await
    .unwrap();
    settle(&mut [&mut w]).await;
    assert_eq!(
        intents(&t.settings).await,
        single_node(&project.bundle, &lines, until)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_whose_joining_call_never_said_so_is_taken_in_anyway() {
    let Some(t) = trial("orphan", 2).await else {
        return;
    };
    use nudge_cluster::log::Outgoing;
    let project = Project::cart_recovery();
    let log = nudge_cluster::log::Log::connect(&t.settings).await.unwrap();
    let lines = device_and_user("laptop", "u-cy", false);
    let call = |i: usize, customer: i64, partition: u32| Outgoing::Call {
        partition,
        customer,
        message_id: Some(format!("h-{}", i + 1)),
        line: lines[i].clone(),
        absorbs: Vec::new(),
    };
    // The joining call carries no `Nudge-Absorbs`: a retried request
    // whose first try recorded the merge and published only its record.
    log.publish(&[
        call(0, 1, 0),
        call(1, 2, 1),
        call(2, 2, 1),
        Outgoing::Merge(nudge_cluster::Merge {
            kept: 1,
            absorbed: 2,
            kept_partition: 0,
            absorbed_partition: 1,
            at: 1_700_000_000_000,
            message_id: Some("h-4".into()),
            call_at: Some(1_795_443_600_000),
            identities: vec![
                (Kind::Anonymous, "laptop".into()),
                (Kind::Email, "laptop@example.com".into()),
            ],
        }),
        call(3, 1, 0),
    ])
    .await
    .unwrap();
    let until = until_after(&lines, 3);
    let mut o = options("o1", Some(until));
    o.orphan_age = Duration::ZERO;
    let mut w = Worker::connect(&t.settings, o, project.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut w]).await;
    // Taken in late, the device's reminders still go out, once each, with
    // the keys one node gives them.
    assert_eq!(w.progress().taken_in, 1);
    let single = single_node(&project.bundle, &lines, until);
    assert!(!single.is_empty());
    assert_eq!(intents(&t.settings).await, single);
}

/// The win-back example, and 600 lines of purchases by two hundred
/// customers over eighteen months (`nudge gen --shape purchases`).
fn win_back_purchases() -> (Project, Vec<String>) {
    let project = Project {
        bundle: nudge_test_support::example_bundle("win_back"),
        bundles: Bundles::default(),
        config: Config::default(),
    };
    let mut bytes = Vec::new();
    nudge_gen::generate_purchases(&nudge_gen::PurchaseConfig::new(600), &mut bytes).unwrap();
    let lines = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (project, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_step_past_a_batch_of_timers_is_committed_in_parts_and_decides_as_one() {
    let Some(t) = trial("clock_parts", 1).await else {
        return;
    };
    // Orders of two hundred customers over eighteen months, and a
    // win-back ninety days after each one's last: the step to `until`
    // fires every win-back not yet due at the last order.
    let (project, lines) = win_back_purchases();
    let until = until_after(&lines, 200);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    for chunk in lines.chunks(500) {
        ingest.accept(chunk.to_vec(), Vec::new()).await.unwrap();
    }
    // Batches of seven: that step fires many more timers than that, and
    // commits them seven at a time.
    let mut w = Worker::connect(
        &t.settings,
        options("w1", Some(until)),
        project.code(),
        None,
    )
    .await
    .unwrap();
    settle(&mut [&mut w]).await;
    let want = single_node(&project.bundle, &lines, until);
    let got = intents(&t.settings).await;
    let last_call = until - 200 * 86_400_000;
    let after_the_calls = want
        .values()
        .filter(|m| {
            let at = m["at"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(at)
                .unwrap()
                .timestamp_millis()
                > last_call
        })
        .count() as u64;
    assert!(after_the_calls >= 21, "{after_the_calls}");
    let parts = w.progress().clock_parts;
    assert!(
        parts >= after_the_calls / 7 - 1,
        "{parts} parts for {after_the_calls} sends after the calls"
    );
    assert!(got == want, "the parts decided otherwise than one engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_a_budget_read_customers_back_and_decide_as_one() {
    let Some(t) = trial("budget", 2).await else {
        return;
    };
    // Two hundred customers' orders through the win-back; each partition
    // keeps at most three idle customers in memory.
    let (project, lines) = win_back_purchases();
    let until = until_after(&lines, 200);
    let (first, rest) = lines.split_at(lines.len() / 2);
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest.accept(first.to_vec(), Vec::new()).await.unwrap();
    let budget = 3;
    // The first worker's clocks stop at the calls: the rest are still to come.
    let mut short = options("a", None);
    short.customers_in_memory = Some(budget);
    short.lease = Duration::from_secs(1);
    short.renew_every = Duration::from_millis(200);
    let mut a = Worker::connect(&t.settings, short.clone(), project.code(), None)
        .await
        .unwrap();
    settle(&mut [&mut a]).await;
    let by_a = a.progress();
    assert_eq!(by_a.applied + by_a.refused, first.len() as u64, "{by_a:?}");
    assert!(by_a.customers_read_back > 0, "{by_a:?}");
    // Those in memory beyond the budget have a live instance or goal.
    let customers: std::collections::BTreeSet<String> = first
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["userId"].to_string())
        .collect();
    assert!(
        by_a.customers_in_memory * 2 < customers.len() as u64,
        "{} of {} customers in memory",
        by_a.customers_in_memory,
        customers.len()
    );
    // It dies; the next worker restores the partitions without reading
    // their customers, and reads back those the calls and timers need.
    drop(a);
    ingest.accept(rest.to_vec(), Vec::new()).await.unwrap();
    let mut b_options = short.clone();
    b_options.id = "b".into();
    b_options.clock = Clock::Calls { until: Some(until) };
    let mut b = Worker::connect(&t.settings, b_options, project.code(), None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while b.partitions().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no failover");
        b.step().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // PostgreSQL closes the connection that reads customers back (as a
    // restart of the server would): the next read opens another.
    b.step().await.unwrap();
    let pg = postgres(&t.settings).await;
    let closed = pg
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'nudge-pager:' || $1::text",
            &[&t.settings.schema],
        )
        .await
        .unwrap();
    assert!(!closed.is_empty(), "no connection reading customers back");
    settle(&mut [&mut b]).await;
    let by_b = b.progress();
    assert_eq!(by_b.applied + by_b.refused, rest.len() as u64, "{by_b:?}");
    assert!(by_b.customers_read_back > 0, "{by_b:?}");
    let want = single_node(&project.bundle, &lines, until);
    let got = intents(&t.settings).await;
    assert!(want.len() > 20, "{}", want.len());
    assert!(
        got == want,
        "a worker with a budget decided otherwise than one engine"
    );
}
