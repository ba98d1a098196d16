use super::*;

fn message(key: &str) -> Outgoing {
    Outgoing {
        at: "2026-01-05T00:00:00Z".into(),
        flow: "f".into(),
        flow_version: "v".into(),
        message: "m".into(),
        channel: "email".into(),
        customer: "c".into(),
        to: "c@example.com".into(),
        idempotency_key: key.into(),
        content: Default::default(),
        purpose: Default::default(),
    }
}

#[test]
fn migrations_run_once_and_reopening_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let mut b = Batch {
            calls: vec![NewCall::Drain],
            ..Batch::default()
        };
        s.commit(&mut b).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.call_count().unwrap(), 1);
    assert!(!s.is_fresh().unwrap());
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        b"this is not a database, not even close; ".repeat(200),
    )
    .unwrap();
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");

    let foreign = dir.path().join("other.db");
    let conn = Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE customers(id TEXT)")
        .unwrap();
    drop(conn);
    let err = Store::open(&foreign).err().expect("refused");
    assert!(err.to_string().contains("customers"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(conn);
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

#[test]
fn pending_sends_are_read_in_pages_in_the_order_they_were_committed() {
    let mut s = Store::in_memory().unwrap();
    // Committed in two transactions, keys not in their order, so the pages
    // follow the commits and not the keys.
    for keys in [["k7", "k2", "k9"], ["k1", "k8", "k3"]] {
        let mut b = Batch {
            intents: keys
                .iter()
                .map(|k| Intent {
                    message: message(k),
                })
                .collect(),
            ..Batch::default()
        };
        s.commit(&mut b).unwrap();
    }
    // Delivered sends leave the pages; a failure that may be retried stays.
    let mut marks = Batch {
        marks: vec![
            Mark::Done {
                key: "k2".into(),
                attempts: 1,
            },
            Mark::Failed {
                key: "k8".into(),
                attempts: 1,
                reason: "HTTP 503".into(),
                retryable: true,
            },
        ],
        ..Batch::default()
    };
    s.commit(&mut marks).unwrap();
    let mut pages = Vec::new();
    let mut after = None;
    while let Some(page) = s.pending_page(after, None, 2).unwrap() {
        assert!(page.intents.len() <= 2);
        after = Some(page.last);
        let keys: Vec<String> = page
            .intents
            .into_iter()
            .map(|i| i.message.idempotency_key)
            .collect();
        pages.push(keys);
    }
    assert_eq!(pages, [vec!["k7", "k9"], vec!["k1", "k8"], vec!["k3"]]);
    // A bound leaves out what was committed after it.
    let last = s.pending_last().unwrap().unwrap();
    let mut later = Batch {
        intents: vec![Intent {
            message: message("k0"),
        }],
        ..Batch::default()
    };
    s.commit(&mut later).unwrap();
    let bounded = s.pending_page(None, Some(last), 10).unwrap().unwrap();
    assert_eq!(bounded.intents.len(), 5);
    assert!(
        bounded
            .intents
            .iter()
            .all(|i| i.message.idempotency_key != "k0")
    );
    // Keys and channels alone, without the messages.
    let mut keys = Vec::new();
    s.each_pending_key(|key, channel| keys.push(format!("{key} {channel}")))
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "k0 email", "k1 email", "k3 email", "k7 email", "k8 email", "k9 email"
        ]
    );
}

#[test]
fn the_ledger_keeps_each_key_once_and_tracks_its_state() {
    let mut s = Store::in_memory().unwrap();
    let mut b = Batch {
        intents: vec![
            Intent {
                message: message("a"),
            },
            Intent {
                message: message("b"),
            },
        ],
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    assert_eq!(b.intents.len(), 2);
    let pending = s.pending_page(None, None, 10).unwrap().unwrap();
    assert_eq!(pending.intents.len(), 2);
    // The same key again is not a new intent, so it is not delivered again.
    let mut again = Batch {
        intents: vec![Intent {
            message: message("a"),
        }],
        marks: vec![
            Mark::Done {
                key: "a".into(),
                attempts: 1,
            },
            Mark::Failed {
                key: "b".into(),
                attempts: 3,
                reason: "HTTP 503".into(),
                retryable: true,
            },
        ],
        ..Batch::default()
    };
    s.commit(&mut again).unwrap();
    assert!(again.intents.is_empty());
    assert_eq!(s.send_state("a").unwrap().as_deref(), Some("done"));
    assert_eq!(s.send_state("b").unwrap().as_deref(), Some("pending"));
    let mut permanent = Batch {
        marks: vec![Mark::Failed {
            key: "b".into(),
            attempts: 1,
            reason: "HTTP 400".into(),
            retryable: false,
        }],
        ..Batch::default()
    };
    s.commit(&mut permanent).unwrap();
    assert_eq!(
        s.counts().unwrap(),
        LedgerCounts {
            done: 1,
            pending: 0,
            failed: 1
        }
    );
}

#[test]
fn calls_come_back_in_order_and_sources_keep_their_position() {
    let mut s = Store::in_memory().unwrap();
    let src = s.source("/x/events.jsonl").unwrap();
    assert_eq!(src.position, 0);
    let mut b = Batch {
        calls: vec![
            NewCall::Line {
                source: src.id,
                line: 1,
                body: b"{}",
            },
            NewCall::Until(42),
            NewCall::Drain,
            NewCall::Part {
                step: ClockStep::Until(90),
                through: 60,
            },
            NewCall::Part {
                step: ClockStep::Drain,
                through: 75,
            },
        ],
        source: Some(SourcePos {
            beyond: Vec::new(),
            position: 3,
            line: 1,
            tail_hash: tail_hash(b"{}\n"),
            ..src.clone()
        }),
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    let mut seen = Vec::new();
    s.for_each_call(|c| {
        seen.push(format!("{c:?}"));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen[0].contains("line: 1"));
    assert_eq!(seen[1], "Until(42)");
    assert_eq!(seen[2], "Drain");
    // Parts of clock steps come back with their step and where they ended.
    assert_eq!(seen[3], "Part { step: Until(90), through: 60 }");
    assert_eq!(seen[4], "Part { step: Drain, through: 75 }");
    let again = s.source("/x/events.jsonl").unwrap();
    assert_eq!((again.id, again.position, again.line), (src.id, 3, 1));
}

#[test]
fn a_changed_project_is_refused_once_there_is_history() {
    let mut s = Store::in_memory().unwrap();
    s.claim("aaaa").unwrap();
    // Nothing applied yet: a new project may take the store over.
    s.claim("bbbb").unwrap();
    let mut b = Batch {
        calls: vec![NewCall::Drain],
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    s.claim("bbbb").unwrap();
    assert!(matches!(
        s.claim("cccc"),
        Err(StoreError::ProjectChanged { .. })
    ));
}

#[test]
fn repairing_the_outbox_cuts_only_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.jsonl");
    std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
    assert_eq!(outbox::repair(&path).unwrap(), 5);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
    assert_eq!(outbox::repair(&path).unwrap(), 0);
    assert_eq!(outbox::repair(&dir.path().join("missing")).unwrap(), 0);
}

#[test]
fn a_store_of_whole_seconds_moves_to_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        // A store as the first schema left it: a clock mark and the clock in seconds.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version(version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             INSERT INTO calls(seq, kind, at) VALUES (1, 1, 1767607200);
             INSERT INTO meta VALUES ('clock', '1767607200');",
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let mut marks = Vec::new();
    s.for_each_call(|c| {
        if let Stored::Until(t) = c {
            marks.push(t);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(marks, [1_767_607_200_000]);
    assert_eq!(s.meta("clock").unwrap().as_deref(), Some("1767607200000"));
}

#[test]
fn a_clock_that_never_moved_stays_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE schema_version(version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             INSERT INTO meta VALUES ('clock', '{}');",
            i64::MIN
        ))
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.meta("clock").unwrap(), Some(i64::MIN.to_string()));
}

#[test]
fn feedback_finds_a_send_by_its_key_or_its_last_address() {
    let mut s = Store::in_memory().unwrap();
    let to = |key: &str, channel: &str, to: &str, customer: &str| {
        let mut m = message(key);
        m.channel = channel.into();
        m.to = to.into();
        m.customer = customer.into();
        Intent { message: m }
    };
    let mut b = Batch {
        intents: vec![
            to("a", "sms", "+15551230000", "first"),
            to("b", "email", "Ann@Example.com", "ann"),
            to("c", "sms", "+15551230000", "second"),
            to("d", "sms", "+15559990000", "other"),
        ],
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    assert_eq!(s.sent("b").unwrap().unwrap().customer, "ann");
    assert_eq!(s.sent("zz").unwrap(), None);
    let last = s.last_sent_to("sms", "+15551230000").unwrap().unwrap();
    assert_eq!(last.idempotency_key, "c");
    let email = s
        .last_sent_to("email", " ann@example.COM ")
        .unwrap()
        .unwrap();
    assert_eq!(email.customer, "ann");
    assert_eq!(s.last_sent_to("email", "+15551230000").unwrap(), None);
}

#[test]
fn a_checkpoint_replaces_the_last_and_is_read_back_whole() {
    let mut s = Store::in_memory().unwrap();
    assert!(s.checkpoint().unwrap().is_none());
    assert!(s.is_fresh().unwrap());
    let mut b = Batch {
        calls: vec![NewCall::Deploy(vec![1, 2, 3]), NewCall::Drain],
        intents: vec![Intent {
            message: message("k1"),
        }],
        checkpoint: Some(Checkpoint {
            format: 7,
            engine: EngineState::Whole(vec![9; 10]),
            feeds: "{}".into(),
            dead: "one\n".into(),
            dead_whole: true,
        }),
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    let saved = s.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!((saved.call, saved.format, saved.sends), (2, 7, 1));
    assert_eq!(saved.dead, "one\n");
    assert_eq!(s.checkpoint_bytes().unwrap(), vec![9; 10]);
    assert_eq!(s.deploy_through(saved.call).unwrap(), Some(vec![1, 2, 3]));

    // The next one replaces it; calls after it are the ones to replay.
    let mut b = Batch {
        calls: vec![NewCall::Until(5), NewCall::Deploy(vec![4])],
        checkpoint: Some(Checkpoint {
            format: 7,
            engine: EngineState::Whole(vec![8; 3]),
            ..Checkpoint::default()
        }),
        ..Batch::default()
    };
    s.commit(&mut b).unwrap();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        ..Batch::default()
    })
    .unwrap();
    let saved = s.checkpoint().unwrap().unwrap();
    assert_eq!(saved.call, 4);
    assert_eq!(s.checkpoint_bytes().unwrap(), vec![8; 3]);
    assert_eq!(s.deploy_through(3).unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(s.deploy_through(4).unwrap(), Some(vec![4]));
    let mut after = Vec::new();
    s.for_each_call_after(saved.call, |c| {
        after.push(format!("{c:?}"));
        Ok(())
    })
    .unwrap();
    assert_eq!(after, ["Drain"]);
}

#[test]
fn finding_a_deploy_reads_the_index_not_the_history() {
    let s = Store::in_memory().unwrap();
    for sql in [
        "SELECT body FROM calls WHERE kind = 3 ORDER BY seq LIMIT 1",
        "SELECT body FROM calls WHERE kind = 3 AND seq <= 9 ORDER BY seq DESC LIMIT 1",
    ] {
        let plan: Vec<String> = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("calls_deploys")),
            "{sql}: {plan:?}"
        );
    }
}

#[test]
fn alert_state_is_replaced_and_samples_are_kept_from_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.alerts().unwrap(), None);
        let write = |state: &str, samples: &[(i64, &str)], keep_from: i64| Batch {
            alerts: Some(AlertsWrite {
                state: state.into(),
                samples: samples.iter().map(|(t, c)| (*t, c.to_string())).collect(),
                keep_from,
            }),
            ..Batch::default()
        };
        s.commit(&mut write("one", &[(1_000, "a"), (2_000, "b")], 0))
            .unwrap();
        // A sample at an instant already held replaces it; those before
        // the cut go.
        s.commit(&mut write("two", &[(2_000, "b2"), (3_000, "c")], 2_000))
            .unwrap();
    }
    // Read back after reopening: nothing else of the store changed.
    let s = Store::open(&path).unwrap();
    let read = s.alerts().unwrap().expect("written");
    assert_eq!(read.state, "two");
    assert_eq!(
        read.samples,
        [(2_000, "b2".to_string()), (3_000, "c".to_string())]
    );
    assert!(s.is_fresh().unwrap());
}

#[test]
fn a_store_of_schema_3_gains_the_alert_samples_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version(version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (3);
             INSERT INTO calls(seq, kind) VALUES (1, 2);
             INSERT INTO meta VALUES ('clock', '5000');",
        )
        .unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.call_count().unwrap(), 1);
    assert_eq!(s.alerts().unwrap(), None);
    s.commit(&mut Batch {
        alerts: Some(AlertsWrite {
            state: "{}".into(),
            samples: vec![(5_000, "{}".into())],
            keep_from: 0,
        }),
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(s.alerts().unwrap().unwrap().samples.len(), 1);
}

/// A line of an events file stamped `at` (milliseconds since the epoch,
/// under a minute).
fn line_at(at: i64) -> Vec<u8> {
    let t = format!("1970-01-01T00:00:{:02}.{:03}Z", at / 1000, at % 1000);
    format!(r#"{{"type":"track","event":"E","userId":"u","timestamp":"{t}"}}"#).into_bytes()
}

/// The kinds and sequence numbers of the calls the log still holds.
fn calls_left(s: &Store) -> Vec<(i64, i64)> {
    let mut st = s
        .conn
        .prepare("SELECT seq, kind FROM calls ORDER BY seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A store whose log holds a deploy, lines stamped 1000, 2000, ... 6000,
/// a clock mark at 6500 and a drain, with a checkpoint after call `covered`
/// (the calls after it are committed without one).
fn history(covered: usize, format: u32) -> Store {
    let mut s = Store::in_memory().unwrap();
    let lines: Vec<Vec<u8>> = (1..=6).map(|i| line_at(i * 1000)).collect();
    let mut calls = vec![NewCall::Deploy(vec![1])];
    calls.extend(lines.iter().enumerate().map(|(i, l)| NewCall::Line {
        source: 1,
        line: i as u64 + 1,
        body: l,
    }));
    calls.push(NewCall::Until(6500));
    calls.push(NewCall::Drain);
    let rest = calls.split_off(covered);
    s.commit(&mut Batch {
        calls,
        checkpoint: Some(Checkpoint {
            format,
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
    s.commit(&mut Batch {
        calls: rest,
        ..Batch::default()
    })
    .unwrap();
    s
}

#[test]
fn compaction_removes_old_calls_the_checkpoint_covers_and_keeps_deploys() {
    let mut s = history(9, 7);
    let done = s
        .compact(Compaction {
            before: 3500,
            limit: u64::MAX,
        })
        .unwrap();
    // Lines at 1000, 2000 and 3000 go; the one at 4000 stops it.
    assert_eq!(done.removed, 3);
    assert_eq!(done.stopped, CompactStop::Cutoff);
    assert_eq!(done.through, 4);
    assert_eq!(s.compacted_through().unwrap(), 4);
    assert_eq!(
        calls_left(&s),
        [
            (1, KIND_DEPLOY),
            (5, 0),
            (6, 0),
            (7, 0),
            (8, KIND_UNTIL),
            (9, KIND_DRAIN)
        ]
    );
    // Again with the same cutoff: nothing more, from where it stopped.
    let again = s
        .compact(Compaction {
            before: 3500,
            limit: u64::MAX,
        })
        .unwrap();
    assert_eq!((again.removed, again.through), (0, 4));
}

#[test]
fn compaction_keeps_the_last_covered_call_and_everything_after_it() {
    // The checkpoint covers calls 1..=6 (lines up to 5000); 7.. are newer.
    let mut s = history(6, 7);
    let done = s
        .compact(Compaction {
            before: i64::MAX,
            limit: u64::MAX,
        })
        .unwrap();
    assert_eq!(done.stopped, CompactStop::Checkpoint);
    assert_eq!(done.removed, 4);
    assert_eq!(
        calls_left(&s),
        [
            (1, KIND_DEPLOY),
            (6, 0),
            (7, 0),
            (8, KIND_UNTIL),
            (9, KIND_DRAIN)
        ]
    );
    // Call numbers go on from the newest, never reusing a removed one.
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(calls_left(&s).last(), Some(&(10, KIND_DRAIN)));
}

#[test]
fn compaction_goes_in_steps_of_its_limit() {
    let mut s = history(9, 7);
    let keep = Compaction {
        before: i64::MAX,
        limit: 2,
    };
    let first = s.compact(keep).unwrap();
    assert_eq!((first.removed, first.stopped), (2, CompactStop::Limit));
    let second = s.compact(keep).unwrap();
    assert_eq!((second.removed, second.stopped), (2, CompactStop::Limit));
    let third = s.compact(keep).unwrap();
    // The clock mark at 6500 goes too; the drain is the covered call.
    assert_eq!((third.removed, third.stopped), (2, CompactStop::Limit));
    let last = s.compact(keep).unwrap();
    assert_eq!((last.removed, last.stopped), (1, CompactStop::Checkpoint));
    assert_eq!(calls_left(&s), [(1, KIND_DEPLOY), (9, KIND_DRAIN)]);
}

#[test]
fn a_store_without_a_checkpoint_is_not_compacted() {
    let mut s = Store::in_memory().unwrap();
    let l = line_at(1000);
    s.commit(&mut Batch {
        calls: vec![
            NewCall::Line {
                source: 1,
                line: 1,
                body: &l,
            },
            NewCall::Drain,
        ],
        ..Batch::default()
    })
    .unwrap();
    let done = s
        .compact(Compaction {
            before: i64::MAX,
            limit: u64::MAX,
        })
        .unwrap();
    assert_eq!((done.removed, done.stopped), (0, CompactStop::NoCheckpoint));
    assert_eq!(s.call_count().unwrap(), 2);
}

#[test]
fn a_batch_compacts_behind_its_own_checkpoint() {
    let mut s = history(9, 7);
    let l = line_at(7000);
    s.commit(&mut Batch {
        calls: vec![NewCall::Line {
            source: 1,
            line: 7,
            body: &l,
        }],
        checkpoint: Some(Checkpoint {
            format: 7,
            ..Checkpoint::default()
        }),
        compact: Some(Compaction {
            before: 2500,
            limit: u64::MAX,
        }),
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(s.compacted_through().unwrap(), 3);
    assert_eq!(s.call_count().unwrap(), 8);
}

#[test]
fn a_compacted_store_whose_checkpoint_cannot_be_read_is_refused() {
    let format = nudge_runtime::engine::checkpoint::FORMAT;
    // Readable: it starts from its checkpoint.
    let mut s = history(9, format);
    s.compact_readable(Compaction {
        before: 2500,
        limit: u64::MAX,
    })
    .unwrap();
    assert_eq!(s.usable_checkpoint().unwrap().unwrap().call, 9);
    // Another layout, not compacted: passed over, the calls are replayed.
    let mut old = history(9, format + 1);
    assert!(old.usable_checkpoint().unwrap().is_none());
    // `compact_readable` leaves such a store whole.
    let done = old
        .compact_readable(Compaction {
            before: i64::MAX,
            limit: u64::MAX,
        })
        .unwrap();
    assert_eq!((done.removed, done.stopped), (0, CompactStop::NoCheckpoint));
    // Compacted first (by a nudge that read it), then read by another:
    // the calls are no longer whole, so it is refused with the reason.
    old.compact(Compaction {
        before: 2500,
        limit: u64::MAX,
    })
    .unwrap();
    let err = old.usable_checkpoint().unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { through: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("calls up to 3 were removed"), "{text}");
    assert!(
        text.contains(&format!("layout version {}", format + 1)),
        "{text}"
    );
}

/// Commits one take of the engine's rows, with a call of its own.
fn commit_rows(s: &mut Store, changes: nudge_runtime::engine::rows::Changes) {
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        checkpoint: Some(Checkpoint {
            format: nudge_runtime::engine::checkpoint::FORMAT,
            engine: EngineState::Rows(Box::new(changes)),
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
}

#[test]
fn rows_written_change_by_change_read_back_as_the_engine_keeps_them() {
    use nudge_runtime::engine::rows::{MemoryRows, Rows};
    use nudge_runtime::engine::{Config, Engine, MemorySink};

    // Every example's calls, the changes committed after each one with a
    // call of its own, against the reference of rows kept in memory.
    for name in nudge_test_support::example_names() {
        let bundle = nudge_test_support::example_bundle(&name);
        let events = nudge_test_support::example_events(&name);
        let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let mut s = Store::in_memory().unwrap();
        let mut memory = MemoryRows::default();
        let mut commit = |engine: &mut Engine<'_, MemorySink>, s: &mut Store| {
            let changes = engine.take_changes().unwrap();
            memory.apply(changes.clone());
            commit_rows(s, changes);
        };
        commit(&mut engine, &mut s);
        for line in events.lines() {
            let _ = nudge_runtime::ingest::apply_line(&mut engine, line);
            commit(&mut engine, &mut s);
        }
        engine.drain();
        commit(&mut engine, &mut s);
        let sorted = |mut r: Rows| {
            r.message_ids.sort();
            r.sent_keys.sort();
            format!("{r:?}")
        };
        let stored = s.state_rows().unwrap();
        assert!(!stored.customers.is_empty(), "{name}: customers stored");
        assert_eq!(sorted(stored), sorted(memory.rows()), "{name}");
    }
}

#[test]
fn dead_letters_of_checkpoints_of_rows_are_appended_unless_written_whole() {
    let mut s = Store::in_memory().unwrap();
    let rows = |dead: &str, whole: bool| Checkpoint {
        format: nudge_runtime::engine::checkpoint::FORMAT,
        engine: EngineState::Rows(Box::default()),
        feeds: String::new(),
        dead: dead.into(),
        dead_whole: whole,
    };
    for (dead, whole, want) in [
        ("a\n", true, "a\n"),
        ("b\nc\n", false, "a\nb\nc\n"),
        ("", false, "a\nb\nc\n"),
        ("d\n", true, "d\n"),
    ] {
        s.commit(&mut Batch {
            calls: vec![NewCall::Drain],
            checkpoint: Some(rows(dead, whole)),
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(s.checkpoint().unwrap().unwrap().dead, want);
    }
    // A whole state keeps its own, as earlier releases wrote them.
    s.commit(&mut Batch {
        checkpoint: Some(Checkpoint {
            format: nudge_runtime::engine::checkpoint::BLOB_FORMAT,
            engine: EngineState::Whole(vec![1]),
            dead: "e\n".into(),
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(s.checkpoint().unwrap().unwrap().dead, "e\n");
}

/// A checkpoint of rows holding nothing, for the ledger tests.
fn empty_checkpoint() -> Checkpoint {
    Checkpoint {
        format: nudge_runtime::engine::checkpoint::FORMAT,
        engine: EngineState::Rows(Box::default()),
        feeds: "{}".into(),
        dead: String::new(),
        dead_whole: false,
    }
}

fn done(key: &str) -> Mark {
    Mark::Done {
        key: key.into(),
        attempts: 1,
    }
}

fn keys(settled: Option<Vec<(Intent, Mark)>>) -> Option<Vec<String>> {
    settled.map(|s| {
        s.into_iter()
            .map(|(i, _)| i.message.idempotency_key)
            .collect()
    })
}

#[test]
fn outcomes_committed_after_a_checkpoint_are_found_by_its_number() {
    let mut s = Store::in_memory().unwrap();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        intents: ["a", "b", "c", "d"]
            .map(|k| Intent {
                message: message(k),
            })
            .into(),
        ..Batch::default()
    })
    .unwrap();
    // "a" settles with the first checkpoint (its trace line is before the
    // checkpoint's mark); "b" and "c" after it, "d" after the second.
    s.commit(&mut Batch {
        marks: vec![done("a")],
        checkpoint: Some(empty_checkpoint()),
        ..Batch::default()
    })
    .unwrap();
    let first = s.checkpoint().unwrap().unwrap().epoch.unwrap();
    s.commit(&mut Batch {
        marks: vec![done("c"), done("b")],
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(
        keys(s.settled_after(first).unwrap()),
        Some(vec!["b".into(), "c".into()]),
        "in the order the intents were committed"
    );
    s.commit(&mut Batch {
        checkpoint: Some(empty_checkpoint()),
        ..Batch::default()
    })
    .unwrap();
    let second = s.checkpoint().unwrap().unwrap().epoch.unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(keys(s.settled_after(second).unwrap()), Some(vec![]));
    s.commit(&mut Batch {
        marks: vec![done("d")],
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(
        keys(s.settled_after(second).unwrap()),
        Some(vec!["d".into()])
    );
}

#[test]
fn outcomes_settled_before_checkpoints_were_numbered_are_told_by_the_trace() {
    let mut s = Store::in_memory().unwrap();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        intents: ["a", "b"]
            .map(|k| Intent {
                message: message(k),
            })
            .into(),
        marks: vec![],
        ..Batch::default()
    })
    .unwrap();
    s.commit(&mut Batch {
        marks: vec![done("a"), done("b")],
        checkpoint: Some(empty_checkpoint()),
        ..Batch::default()
    })
    .unwrap();
    // As an earlier release left them: no stamp.
    s.conn
        .execute("UPDATE sends SET settled = NULL", [])
        .unwrap();
    let epoch = s.checkpoint().unwrap().unwrap().epoch.unwrap();
    assert_eq!(keys(s.settled_after(epoch).unwrap()), None);
    let mut recorded = Recorded::default();
    recorded.insert("a");
    assert_eq!(
        keys(Some(s.settled(&recorded).unwrap())),
        Some(vec!["b".into()])
    );
    // The next checkpoint stamps them as covered.
    s.commit(&mut Batch {
        checkpoint: Some(empty_checkpoint()),
        ..Batch::default()
    })
    .unwrap();
    let next = s.checkpoint().unwrap().unwrap().epoch.unwrap();
    assert_eq!(keys(s.settled_after(next).unwrap()), Some(vec![]));
}

/// A checkpoint of rows of `cart_recovery` after its own calls, with
/// `extra` message ids of the current generation added to them.
fn checkpoint_with_ids(extra: u128) -> Checkpoint {
    use nudge_runtime::engine::{Config, Engine, MemorySink};
    let bundle = nudge_test_support::example_bundle("cart_recovery");
    let events = nudge_test_support::example_events("cart_recovery");
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    for line in events.lines() {
        let _ = nudge_runtime::ingest::apply_line(&mut engine, line);
    }
    let mut changes = engine.take_changes().unwrap();
    let generation = changes.message_ids.last().map_or(0, |(_, g)| *g);
    changes
        .message_ids
        .extend((0..extra).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15), generation)));
    Checkpoint {
        format: nudge_runtime::engine::checkpoint::FORMAT,
        engine: EngineState::Rows(Box::new(changes)),
        ..Checkpoint::default()
    }
}

#[test]
fn message_ids_are_packed_in_chunks_and_read_back_whole() {
    let mut s = Store::in_memory().unwrap();
    let extra = ID_CHUNK as u128 + 10;
    let mut checkpoint = checkpoint_with_ids(extra);
    let EngineState::Rows(changes) = &checkpoint.engine else {
        unreachable!("made of rows")
    };
    let mut written = changes.message_ids.clone();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        checkpoint: Some(std::mem::take(&mut checkpoint)),
        ..Batch::default()
    })
    .unwrap();
    let chunks: Vec<i64> = {
        let mut st = s
            .conn
            .prepare("SELECT length(ids) FROM state_message_id_chunks ORDER BY rowid")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // More than a chunk's worth, all of one generation: two chunks, the
    // first full.
    assert!(written.iter().all(|(_, g)| *g == written[0].1));
    assert_eq!(
        chunks,
        [16 * ID_CHUNK as i64, 16 * (written.len() - ID_CHUNK) as i64]
    );
    let mut read = s.state_rows().unwrap().message_ids;
    read.sort();
    written.sort();
    assert_eq!(read.len(), written.len());
    assert_eq!(read, written);
    // The restore a restart makes reads them too.
    s.restore_state(true).unwrap();
}

#[test]
fn a_damaged_chunk_of_message_ids_is_a_damaged_store_not_a_panic() {
    let mut s = Store::in_memory().unwrap();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        checkpoint: Some(checkpoint_with_ids(3)),
        ..Batch::default()
    })
    .unwrap();
    s.conn
        .execute(
            "UPDATE state_message_id_chunks SET ids = zeroblob(17) WHERE rowid = (SELECT max(rowid) FROM state_message_id_chunks)",
            [],
        )
        .unwrap();
    let err = s
        .restore_state(true)
        .err()
        .expect("a damaged chunk is refused");
    assert!(
        err.to_string()
            .contains("a chunk of message ids of 17 bytes"),
        "{err}"
    );
    let Err(err) = s.state_rows() else {
        panic!("a damaged chunk is refused")
    };
    assert!(err.to_string().contains("17 bytes"), "{err}");
}

#[test]
fn a_store_of_schema_6_packs_its_message_ids_by_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // Rows of two generations, interleaved as checkpoints would have left
    // them, more than a chunk of one.
    let ids: Vec<(u128, u64)> = (0..(ID_CHUNK as u128 + 100))
        .map(|i| (i * 7919 + 1, if i % 50 == 0 { 3 } else { 4 }))
        .collect();
    {
        let mut conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version(version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (6);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare("INSERT INTO state_message_ids(id, generation) VALUES (?1, ?2)")
                .unwrap();
            for (id, g) in &ids {
                st.execute(params![&id.to_be_bytes()[..], *g as i64])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let longest: i64 = s
        .conn
        .query_row(
            "SELECT max(length(ids)) FROM state_message_id_chunks",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(longest <= 16 * ID_CHUNK as i64, "{longest}");
    let mut read = Vec::new();
    {
        let mut st = s
            .conn
            .prepare("SELECT ids, generation FROM state_message_id_chunks")
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let g: i64 = row.get(1).unwrap();
            let ids = row.get_ref(0).unwrap().as_blob().unwrap();
            read.extend(id_chunk(ids).unwrap().map(|id| (id, g as u64)));
        }
    }
    read.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(read, want);
}

#[test]
fn a_restart_with_a_budget_reads_only_the_timers_due_within_the_hour() {
    use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink, Pager};
    use nudge_runtime::timers::ToRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let bundle = nudge_test_support::example_bundle("cart_recovery");
    let events = nudge_test_support::example_events("cart_recovery");
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    // Up to the first moment with several carts waiting.
    for line in events.lines() {
        let _ = nudge_runtime::ingest::apply_line(&mut engine, line);
        if engine.timers_pending() >= 3 {
            break;
        }
    }
    let pending = engine.timers_pending();
    let mut s = Store::open(&path).unwrap();
    s.commit(&mut Batch {
        calls: vec![NewCall::Drain],
        checkpoint: Some(Checkpoint {
            format: nudge_runtime::engine::checkpoint::FORMAT,
            engine: EngineState::Rows(Box::new(engine.take_changes().unwrap())),
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
    let now = engine.now();
    let soon: usize = s
        .conn
        .query_row(
            "SELECT count(*) FROM state_timers WHERE due < ?1",
            [now + nudge_runtime::timers::AHEAD],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        soon < pending && pending > 1,
        "the example leaves {pending} timers, {soon} due within the hour"
    );

    // The pager gives the timers of a range of due times, up to a number.
    let mut pager = s.pager().unwrap().expect("a file store has a pager");
    let all = ToRead {
        from: i64::MIN,
        until: i64::MAX,
        through: u64::MAX,
    };
    assert_eq!(pager.timers(all).unwrap().len(), pending);
    let later = ToRead {
        from: now + nudge_runtime::timers::AHEAD,
        ..all
    };
    assert_eq!(pager.timers(later).unwrap().len(), pending - soon);
    assert!(
        pager
            .timers(ToRead { through: 0, ..all })
            .unwrap()
            .is_empty()
    );

    // A restore for an engine that reads them back holds only those due soon.
    let arena = Bundles::new();
    let mut restored = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    restored.set_pager(Box::new(pager));
    restored
        .restore_from(s.restore_state(true).unwrap(), &bundle, &arena)
        .unwrap();
    assert_eq!(restored.timers_in_memory(), soon);
    assert_eq!(restored.timers_pending(), pending);
    // Without a pager, the store's timers cannot be left behind.
    let mut bare = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let err = bare
        .restore_from(s.restore_state(true).unwrap(), &bundle, &arena)
        .expect_err("refused");
    assert!(
        err.to_string().contains("no store to read them from"),
        "{err}"
    );
    // A drain reads the others back and fires every one, as without a store.
    restored.drain();
    engine.drain();
    assert!(restored.page_fault().is_none());
    assert_eq!(restored.into_sink().outbox, engine.into_sink().outbox);
}

#[test]
fn a_take_that_forgets_the_old_set_of_sends_empties_it_in_its_commit() {
    use nudge_runtime::engine::rows::Changes;
    use nudge_runtime::engine::{Config, Engine, MemorySink};

    let bundle = nudge_test_support::example_bundle("cart_recovery");
    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut s = Store::in_memory().unwrap();
    commit_rows(&mut s, engine.take_changes().unwrap());
    // As a store of layout 6 kept them: a row per send made.
    for key in [1u128, 2, 3] {
        s.conn
            .execute(
                "INSERT INTO state_sent_keys(key) VALUES (?1)",
                [&key.to_be_bytes()[..]],
            )
            .unwrap();
    }
    assert_eq!(s.state_rows().unwrap().sent_keys, [1, 2, 3]);
    // A take that does not say so leaves them.
    commit_rows(&mut s, engine.take_changes().unwrap());
    assert_eq!(s.state_rows().unwrap().sent_keys.len(), 3);
    let changes = Changes {
        forget_sent_keys: true,
        ..engine.take_changes().unwrap()
    };
    commit_rows(&mut s, changes);
    assert!(s.state_rows().unwrap().sent_keys.is_empty());
}

#[test]
fn compaction_dates_a_part_of_a_clock_step_by_where_it_ended() {
    let mut s = Store::in_memory().unwrap();
    let lines: Vec<Vec<u8>> = [1000, 2000].map(line_at).to_vec();
    let step = ClockStep::Until(9000);
    let mut calls: Vec<NewCall<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| NewCall::Line {
            source: 1,
            line: i as u64 + 1,
            body: l,
        })
        .collect();
    calls.push(NewCall::Part {
        step,
        through: 4000,
    });
    calls.push(NewCall::Part {
        step,
        through: 7000,
    });
    calls.push(NewCall::Until(9000));
    s.commit(&mut Batch {
        calls,
        checkpoint: Some(Checkpoint {
            format: 8,
            ..Checkpoint::default()
        }),
        ..Batch::default()
    })
    .unwrap();
    let done = s
        .compact(Compaction {
            before: 5000,
            limit: u64::MAX,
        })
        .unwrap();
    // The part that ended at 7000 is after the cutoff: it stops the run.
    assert_eq!((done.removed, done.stopped), (3, CompactStop::Cutoff));
    assert_eq!(calls_left(&s), [(4, KIND_UNTIL_PART), (5, KIND_UNTIL)]);
}

#[test]
fn a_call_of_a_kind_this_release_does_not_know_is_refused_with_the_way_out() {
    let s = Store::in_memory().unwrap();
    s.conn
        .execute("INSERT INTO calls(kind, at) VALUES (9, 1000)", [])
        .unwrap();
    let err = s.for_each_call(|_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("a stored call has unknown kind 9"), "{err}");
    assert!(err.contains("a newer release of nudge"), "{err}");
}

#[test]
fn identities_are_found_by_name_and_a_store_of_schema_7_names_them_as_it_migrates() {
    use nudge_runtime::engine::{Bundles, Config, Engine, MemorySink, Pager};
    use nudge_runtime::identity::{Identity, NodeRow, stored_name};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let bundle = nudge_test_support::example_bundle("cart_recovery");
    let events = nudge_test_support::example_events("cart_recovery");
    let lines: Vec<&str> = events.lines().collect();
    let half = lines.len() / 2;
    let mut whole = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut first = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut s = Store::open(&path).unwrap();
    // Names are written for an engine that reads them back: one with a pager.
    first.set_pager(Box::new(s.pager().unwrap().unwrap()));
    for (i, line) in lines.iter().enumerate() {
        let _ = nudge_runtime::ingest::apply_line(&mut whole, line);
        if i < half {
            let _ = nudge_runtime::ingest::apply_line(&mut first, line);
        }
    }
    commit_rows(&mut s, first.take_changes().unwrap());
    let names = |s: &Store| -> Vec<(Vec<u8>, i64)> {
        let mut st = s
            .conn
            .prepare("SELECT name, node FROM state_node_names ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let nodes: i64 = s
        .conn
        .query_row("SELECT count(*) FROM state_nodes", [], |r| r.get(0))
        .unwrap();
    let written = names(&s);
    assert!(nodes > 3, "{nodes} nodes");
    assert_eq!(written.len() as i64, nodes, "a name for every node");

    // The pager finds a node by name, and its row names the same identity.
    let first_user = serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["userId"]
        .as_str()
        .expect("the example's first call has a user id")
        .to_string();
    let user = Identity::User(first_user);
    let mut pager = s.pager().unwrap().expect("a file store has a pager");
    let n = pager
        .node_named(&stored_name(&user))
        .unwrap()
        .expect("the first customer's user id is stored by name");
    let row = NodeRow::decode(&pager.node(n).unwrap().unwrap()).unwrap();
    assert_eq!(row.member, user);
    assert_eq!(
        pager
            .node_named(&stored_name(&Identity::User("nobody".into())))
            .unwrap(),
        None
    );
    drop(pager);

    // A store of schema 7 had no names: the migration names every node.
    s.conn
        .execute_batch("DROP TABLE state_node_names; UPDATE schema_version SET version = 7;")
        .unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(names(&s), written);

    // An engine restored with its identities left in the store looks the
    // second half's identities up by name, and decides what one engine did.
    let arena = Bundles::new();
    let mut second = Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
    second.set_pager(Box::new(s.pager().unwrap().unwrap()));
    second
        .restore_from(s.restore_state(true).unwrap(), &bundle, &arena)
        .unwrap();
    let p = second.paging();
    assert_eq!(p.identities, nodes as u64);
    assert_eq!(p.identities_in_memory, 0);
    for line in &lines[half..] {
        let _ = nudge_runtime::ingest::apply_line(&mut second, line);
    }
    assert!(second.page_fault().is_none(), "{:?}", second.page_fault());
    assert!(second.paging().texts_read > 0);
    assert_eq!(second.paging().identities, whole.paging().identities);
    let mut sent = first.into_sink().outbox;
    sent.extend(second.into_sink().outbox);
    assert_eq!(sent, whole.into_sink().outbox);
}
