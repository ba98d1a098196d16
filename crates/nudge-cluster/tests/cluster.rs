//! The identity stage and the log against the real local PostgreSQL and
//! NATS JetStream: routing, deduplication, acknowledgement, merges and
//! concurrent ingest. Each test has its own schema and stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::{identify, postgres, track, trial};
use nudge_cluster::calls::{identifiers, partition_of};
use nudge_cluster::log::Stored;
use nudge_cluster::{ClusterError, Ingest, Kind, Settings, Stage};

/// The calls (not merges or dead letters) in the stream, by subject.
fn calls(stored: &[Stored]) -> Vec<&Stored> {
    stored.iter().filter(|m| m.kind == "call").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_always_goes_to_one_partition() {
    let Some(t) = trial("routing", 64).await else {
        return;
    };
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    // A device first seen anonymously, then identified, then back as the user.
    let lines = vec![
        track("r1", None, Some("dev-1")),
        track("r2", None, Some("dev-1")),
        identify("r3", "user-1", Some("dev-1"), Some("Ann@Example.com")),
        track("r4", Some("user-1"), None),
    ];
    let got = ingest.accept(lines, Vec::new()).await.unwrap();
    assert_eq!((got.calls, got.dead, got.merges), (4, 0, 0));
    // Later requests, through the stored graph rather than this batch's.
    ingest
        .accept(vec![track("r5", Some("user-1"), Some("dev-1"))], Vec::new())
        .await
        .unwrap();
    ingest
        .accept(
            vec![identify("r6", "user-1", None, Some(" ann@example.COM"))],
            Vec::new(),
        )
        .await
        .unwrap();
    let stored = ingest.log().messages().await.unwrap();
    let calls = calls(&stored);
    assert_eq!(calls.len(), 6);
    let customers: HashSet<i64> = calls.iter().filter_map(|m| m.customer).collect();
    assert_eq!(customers.len(), 1, "{calls:?}");
    // The customer was made by its first identifier, the device.
    let expected = t
        .settings
        .subject(partition_of(Kind::Anonymous, "dev-1", 64));
    assert!(calls.iter().all(|m| m.subject == expected), "{calls:?}");
    // Each call is stored as it came, under its messageId.
    let ids: Vec<_> = calls
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4", "r5", "r6"]);
    assert!(calls[2].body.contains("Ann@Example.com"));
    // Another customer is another row, placed by its own identifier.
    ingest
        .accept(vec![track("r7", Some("user-2"), None)], Vec::new())
        .await
        .unwrap();
    let stored = ingest.log().messages().await.unwrap();
    let last = stored.last().unwrap();
    assert_ne!(last.customer, calls[0].customer);
    assert_eq!(
        last.subject,
        t.settings.subject(partition_of(Kind::User, "user-2", 64))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_is_stored_once() {
    let Some(t) = trial("dedupe", 8).await else {
        return;
    };
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let call = track("same-id", Some("u"), None);
    let first = ingest.accept(vec![call.clone()], Vec::new()).await.unwrap();
    assert_eq!(first.duplicates, 0);
    // A client's retry, and a second node taking the same call.
    let again = ingest.accept(vec![call.clone()], Vec::new()).await.unwrap();
    assert_eq!(again.duplicates, 1);
    let other = Ingest::connect(&t.settings).await.unwrap();
    let third = other
        .accept(vec![call, track("other-id", Some("u"), None)], Vec::new())
        .await
        .unwrap();
    assert_eq!((third.calls, third.duplicates), (2, 1));
    let stored = ingest.log().messages().await.unwrap();
    let ids: Vec<_> = stored
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    assert_eq!(ids, ["same-id", "other-id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_that_name_no_customer_are_dead_letters() {
    let Some(t) = trial("dead", 4).await else {
        return;
    };
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let got = ingest
        .accept(
            vec![
                r#"{"type":"track","event":"X","timestamp":"2026-03-01T10:00:00Z"}"#.into(),
                track("ok", None, Some("d")),
            ],
            vec![("{\"huge\":1}".into(), "item 3 is too large".into())],
        )
        .await
        .unwrap();
    assert_eq!((got.calls, got.dead), (1, 2));
    let stored = ingest.log().messages().await.unwrap();
    let dead: Vec<_> = stored.iter().filter(|m| m.kind == "dead").collect();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|m| m.subject == t.settings.dead_subject()));
    let reasons: Vec<_> = dead.iter().filter_map(|m| m.reason.as_deref()).collect();
    assert!(reasons.contains(&"item 3 is too large"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("userId")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_taken_without_the_stream() {
    let Some(t) = trial("nostream", 4).await else {
        return;
    };
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    ingest
        .log()
        .jetstream()
        .delete_stream(t.settings.stream())
        .await
        .unwrap();
    let err = ingest
        .accept(vec![track("m", Some("u"), None)], Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ClusterError::NoStream {
            stream: t.settings.stream()
        }
    );
    assert!(err.to_string().contains("nudge cluster init"), "{err}");
    // A node does not start without it either.
    let refused = Ingest::connect(&t.settings).await.err().unwrap();
    assert!(
        matches!(refused, ClusterError::NoStream { .. }),
        "{refused}"
    );
}

/// Two identifiers whose customers land on different partitions.
fn apart(partitions: u32) -> (String, String) {
    let anon = "device-a".to_string();
    let p = partition_of(Kind::Anonymous, &anon, partitions);
    let user = (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| partition_of(Kind::User, u, partitions) != p)
        .unwrap();
    (anon, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_across_partitions_forwards_and_tells_the_absorbed_partition() {
    let Some(t) = trial("merge", 32).await else {
        return;
    };
    let s = &t.settings;
    let ingest = Ingest::connect(s).await.unwrap();
    let (anon, user) = apart(32);
    // Two customers: a device, then a user signed in elsewhere.
    ingest
        .accept(vec![track("m1", None, Some(&anon))], Vec::new())
        .await
        .unwrap();
    ingest
        .accept(vec![track("m2", Some(&user), None)], Vec::new())
        .await
        .unwrap();
    let before = ingest.log().messages().await.unwrap();
    let (device, account) = (before[0].customer.unwrap(), before[1].customer.unwrap());
    assert_ne!(before[0].subject, before[1].subject);
    // The user signs in on the device: one person.
    let got = ingest
        .accept(vec![identify("m3", &user, Some(&anon), None)], Vec::new())
        .await
        .unwrap();
    assert_eq!(got.merges, 1);
    let kept_partition = partition_of(Kind::Anonymous, &anon, 32);
    let absorbed_partition = partition_of(Kind::User, &user, 32);
    // The older customer (the device) is kept.
    let db = postgres(s).await;
    let row = db
        .query_one(
            &format!(
                "SELECT kept, kept_partition, absorbed_partition, published, message_id,
                        merged_at = at
                 FROM \"{0}\".merges m JOIN \"{0}\".customers c ON c.id = m.absorbed
                 WHERE absorbed = $1",
                s.schema
            ),
            &[&account],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), device);
    assert_eq!(row.get::<_, i32>(1) as u32, kept_partition);
    assert_eq!(row.get::<_, i32>(2) as u32, absorbed_partition);
    assert!(row.get::<_, bool>(3), "published once the log had it");
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("m3"));
    assert!(row.get::<_, bool>(5));
    // The forwarding record, and the identifiers moved to the kept customer.
    let forward: Option<i64> = db
        .query_one(
            &format!(
                "SELECT merged_into FROM \"{}\".customers WHERE id = $1",
                s.schema
            ),
            &[&account],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(forward, Some(device));
    let owners: Vec<i64> = db
        .query(
            &format!("SELECT DISTINCT customer FROM \"{}\".identities", s.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, [device]);
    // The merge record went to the absorbed customer's partition, the call
    // that made it to the kept one's.
    let after = ingest.log().messages().await.unwrap();
    let merge = after.iter().find(|m| m.kind == "merge").unwrap();
    assert_eq!(merge.subject, s.subject(absorbed_partition));
    assert_eq!(merge.customer, Some(account));
    assert_eq!(merge.message_id, Some(format!("nudge-merge:{account}")));
    let record: serde_json::Value = serde_json::from_str(&merge.body).unwrap();
    assert_eq!(record["type"], "merge");
    assert_eq!(record["kept"], device);
    assert_eq!(record["absorbed"], account);
    assert_eq!(record["keptPartition"], kept_partition);
    assert_eq!(record["absorbedPartition"], absorbed_partition);
    assert_eq!(record["messageId"], "m3");
    assert!(record["at"].as_str().unwrap().ends_with('Z'));
    let call = after
        .iter()
        .find(|m| m.message_id.as_deref() == Some("m3"))
        .unwrap();
    assert_eq!(call.subject, s.subject(kept_partition));
    // Later calls for the absorbed user id follow the forwarding.
    ingest
        .accept(vec![track("m4", Some(&user), None)], Vec::new())
        .await
        .unwrap();
    let last = ingest.log().messages().await.unwrap().pop().unwrap();
    assert_eq!(
        (last.subject, last.customer),
        (s.subject(kept_partition), Some(device))
    );
    // Nothing is left for the sweep of unpublished merges.
    assert_eq!(ingest.sweep_once().await.unwrap(), 0);
    // A node that stopped between recording a merge and publishing its
    // record: the sweep publishes it (the log drops it as a repeat here).
    db.execute(
        &format!(
            "UPDATE \"{}\".merges SET published = false, at = at - interval '1 minute'",
            s.schema
        ),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(ingest.sweep_once().await.unwrap(), 1);
    assert_eq!(ingest.sweep_once().await.unwrap(), 0);
    let merges = ingest.log().messages().await.unwrap();
    assert_eq!(merges.iter().filter(|m| m.kind == "merge").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_user_ids_are_never_joined() {
    let Some(t) = trial("accounts", 16).await else {
        return;
    };
    let ingest = Ingest::connect(&t.settings).await.unwrap();
    let alias = r#"{"type":"alias","userId":"u1","previousId":"u2","messageId":"a1","timestamp":"2026-03-01T10:00:00Z"}"#;
    let got = ingest
        .accept(
            vec![
                identify("i1", "u1", Some("shared-device"), Some("x@y.z")),
                identify("i2", "u2", Some("shared-device"), Some("x@y.z")),
                alias.to_string(),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(got.merges, 0);
    let stored = ingest.log().messages().await.unwrap();
    let customers: Vec<i64> = stored.iter().filter_map(|m| m.customer).collect();
    assert_eq!(customers[0], customers[2]);
    assert_ne!(customers[0], customers[1]);
    // An alias of a device to a user does join them.
    let alias = r#"{"type":"alias","userId":"u3","previousId":"dev-9","messageId":"a2","timestamp":"2026-03-01T10:00:00Z"}"#;
    ingest
        .accept(vec![track("t9", None, Some("dev-9"))], Vec::new())
        .await
        .unwrap();
    ingest.accept(vec![alias.into()], Vec::new()).await.unwrap();
    ingest
        .accept(vec![track("t10", None, Some("dev-9"))], Vec::new())
        .await
        .unwrap();
    let stored = ingest.log().messages().await.unwrap();
    let n = stored.len();
    assert_eq!(stored[n - 1].customer, stored[n - 2].customer);
    assert_eq!(stored[n - 1].customer, stored[n - 3].customer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nodes_make_one_customer_of_new_identifiers() {
    let Some(t) = trial("concurrent", 16).await else {
        return;
    };
    // Two nodes (connections of their own), the same new people at once.
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let line = if i % 3 == 0 {
                identify(
                    &format!("c{i}"),
                    &format!("u{}", i / 3),
                    Some(&format!("d{i}")),
                    None,
                )
            } else {
                track(&format!("c{i}"), None, Some(&format!("d{}", i - i % 3)))
            };
            identifiers(&line).unwrap()
        })
        .collect();
    let calls = Arc::new(calls);
    for round in 0..3 {
        let stages = [
            Stage::connect(&t.settings).await.unwrap(),
            Stage::connect(&t.settings).await.unwrap(),
        ];
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for (n, stage) in stages.into_iter().enumerate() {
            let (barrier, calls) = (barrier.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                // Each node sees the calls in its own order.
                let mut mine: Vec<_> = calls.iter().cloned().collect();
                if n == 1 {
                    mine.reverse();
                }
                barrier.wait().await;
                let got = stage.resolve(mine).await.unwrap();
                let mut routes = got.routes;
                if n == 1 {
                    routes.reverse();
                }
                routes
            }));
        }
        let a = tasks.remove(0).await.unwrap();
        let b = tasks.remove(0).await.unwrap();
        assert_eq!(a, b, "round {round}: both nodes route every call alike");
    }
    // One customer per person in the table: 100 users, each with its device.
    let db = postgres(&t.settings).await;
    let row = db
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE merged_into IS NULL), count(*) FROM \"{}\".customers",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 100);
    let per: HashMap<i64, i64> = db
        .query(
            &format!(
                "SELECT customer, count(*) FROM \"{}\".identities GROUP BY customer",
                t.settings.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per.len(), 100);
    assert!(per.values().all(|&n| n == 2), "{per:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_count_cannot_change() {
    let Some(t) = trial("partitions", 16).await else {
        return;
    };
    // Init again with the same settings is harmless.
    let again = nudge_cluster::init(&t.settings).await.unwrap();
    assert!(!again.created);
    let other = Settings {
        partitions: 32,
        ..t.settings.clone()
    };
    let err = nudge_cluster::init(&other).await.unwrap_err();
    assert!(
        err.to_string().contains("created with 16 partitions"),
        "{err}"
    );
    let err = Ingest::connect(&other).await.err().unwrap();
    assert!(matches!(err, ClusterError::Mismatch { .. }), "{err}");
    let fresh = Settings {
        schema: format!("{}_none", t.settings.schema),
        ..t.settings.clone()
    };
    let err = Ingest::connect(&fresh).await.err().unwrap();
    assert!(err.to_string().contains("nudge cluster init"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_within_one_batch_forward_to_the_last_kept_customer() {
    let Some(t) = trial("chain", 8).await else {
        return;
    };
    let s = &t.settings;
    let ingest = Ingest::connect(s).await.unwrap();
    // Three customers, made in this order: two devices and a user.
    for line in [
        track("c1", None, Some("dev-a")),
        track("c2", None, Some("dev-b")),
        track("c3", Some("user-c"), None),
    ] {
        ingest.accept(vec![line], Vec::new()).await.unwrap();
    }
    let made: Vec<i64> = ingest
        .log()
        .messages()
        .await
        .unwrap()
        .iter()
        .filter_map(|m| m.customer)
        .collect();
    let [a, b, c] = made[..] else {
        panic!("{made:?}")
    };
    // One request: the user signs in on device b (c into b), then an alias
    // joins the user to device a (b, holding c, into a).
    let alias = r#"{"type":"alias","userId":"user-c","previousId":"dev-a","messageId":"c5","timestamp":"2026-03-01T10:00:00Z"}"#;
    let got = ingest
        .accept(
            vec![identify("c4", "user-c", Some("dev-b"), None), alias.into()],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(got.merges, 2);
    let db = postgres(s).await;
    let rows = db
        .query(
            &format!(
                "SELECT m.absorbed, m.kept, c.merged_into, m.message_id FROM \"{0}\".merges m
                 JOIN \"{0}\".customers c ON c.id = m.absorbed ORDER BY m.absorbed",
                s.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let merges: Vec<(i64, i64, Option<i64>, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        merges,
        [
            (b, a, Some(a), Some("c5".to_string())),
            // c joined b, and b joined a: calls for c go straight to a.
            (c, b, Some(a), Some("c4".to_string()))
        ]
    );
    // Each call goes to its customer as it stood when the call came: the
    // first to b (which takes c in), the second to a (which takes b in).
    let stored = ingest.log().messages().await.unwrap();
    let calls: Vec<_> = stored
        .iter()
        .filter(|m| m.kind == "call")
        .skip(3)
        .map(|m| (m.customer, m.subject.clone()))
        .collect();
    let home = s.subject(partition_of(Kind::Anonymous, "dev-a", 8));
    let b_home = s.subject(partition_of(Kind::Anonymous, "dev-b", 8));
    assert_eq!(calls, [(Some(b), b_home), (Some(a), home)]);
    // Each merge record just before the call that made it.
    let order: Vec<_> = stored
        .iter()
        .skip(3)
        .map(|m| (m.kind.as_str(), m.customer))
        .collect();
    assert_eq!(
        order,
        [
            ("merge", Some(c)),
            ("call", Some(b)),
            ("merge", Some(b)),
            ("call", Some(a))
        ]
    );
}
