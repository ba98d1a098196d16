//! A replay reads, orders and decodes lines on a second thread while the
//! engine applies the ones before them. These tests hold it to applying each line in turn on
//! one thread: the same calls in the same order, the same line numbers for
//! every record, the same dead letters, and on a read error the same lines
//! applied before the error is returned.

use std::io::{BufReader, Read};

use nudge_bytecode::Channel;
use nudge_channels::Outgoing;
use nudge_runtime::engine::{Config, Engine, MemorySink, Sink, Step};
use nudge_runtime::ingest;
use nudge_runtime::record::{Membership, Record};
use nudge_runtime::replay::{self, DeadLetter, Options};

/// Keeps every effect and the line each step began, in order.
#[derive(Default)]
struct Steps {
    kept: MemorySink,
    steps: Vec<Step>,
}

impl Sink for Steps {
    fn deliver(&mut self, channel: Channel, message: &Outgoing) -> Result<(), String> {
        self.kept.deliver(channel, message)
    }

    fn record(&mut self, record: Record) {
        self.kept.record(record);
    }

    fn membership(&mut self, change: Membership) {
        self.kept.membership(change);
    }

    fn step(&mut self, step: Step) {
        self.steps.push(step);
    }
}

/// A purchase history in time order, with faults between its lines: bytes
/// that are not UTF-8, broken JSON, a call without a customer, blank lines
/// and a Windows line break. Long enough for many batches to cross threads.
fn stream() -> Vec<u8> {
    let mut lines = Vec::new();
    nudge_gen::generate_purchases(&nudge_gen::PurchaseConfig::new(6_000), &mut lines)
        .expect("generation succeeds");
    let mut out = Vec::new();
    for (i, line) in lines.split(|b| *b == b'\n').enumerate() {
        out.extend_from_slice(line);
        match i % 997 {
            13 => out.extend_from_slice(b"\n{\"type\":\"track\",\"event\":\xff\xfe}"),
            400 => out.extend_from_slice(b"\n{\"type\":\"track\", broken"),
            // Without a time, it keeps its place in the file.
            650 => out.extend_from_slice(b"\n{\"type\":\"track\",\"event\":\"Order Completed\"}"),
            800 => out.extend_from_slice(b"\n\n   "),
            900 => out.push(b'\r'),
            _ => {}
        }
        out.push(b'\n');
    }
    out
}

/// The lines of `input` applied one at a time on this thread, as a replay
/// of a stream already in time order applies them, then the clock drained.
fn one_by_one(
    bundle: &nudge_bytecode::Bundle,
    input: &[u8],
) -> (Steps, Vec<DeadLetter>, nudge_runtime::stats::Stats) {
    let mut engine = Engine::new(bundle, Steps::default(), Config::default(), i64::MIN);
    let mut dead = Vec::new();
    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        let number = i as u64 + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text.trim_end_matches('\r'),
            Err(err) => {
                dead.push(DeadLetter {
                    line: number as usize,
                    reason: format!("not UTF-8 text: {err}"),
                    input: String::from_utf8_lossy(raw).into_owned(),
                });
                continue;
            }
        };
        engine.sink_mut().step(Step::Line(number));
        if let Err(reason) = ingest::apply_line(&mut engine, text) {
            dead.push(DeadLetter {
                line: number as usize,
                reason,
                input: text.to_string(),
            });
        }
    }
    engine.sink_mut().step(Step::Drain);
    engine.drain();
    for _ in &dead {
        engine.count_dead_letter();
    }
    let stats = engine.stats();
    (engine.into_sink(), dead, stats)
}

#[test]
fn decoding_on_another_thread_applies_what_one_thread_applies() {
    let bundle = nudge_test_support::example_bundle("win_back");
    let input = stream();
    let (expected, expected_dead, expected_stats) = one_by_one(&bundle, &input);
    assert!(
        expected.kept.outbox.len() > 100,
        "the history sends: {}",
        expected.kept.outbox.len()
    );
    assert!(expected_dead.len() >= 18, "{expected_dead:?}");
    assert!(
        expected_dead
            .iter()
            .any(|d| d.reason.starts_with("not UTF-8 text"))
    );

    let mut engine = Engine::new(&bundle, Steps::default(), Config::default(), i64::MIN);
    let mut dead = Vec::new();
    let options = Options {
        until: None,
        drain: true,
    };
    replay::replay(&mut engine, &input[..], options, &mut |d| dead.push(d)).expect("read");
    assert_eq!(engine.stats(), expected_stats);
    let got = engine.into_sink();
    assert_eq!(dead, expected_dead);
    assert_eq!(got.steps, expected.steps);
    assert_eq!(got.kept.outbox, expected.kept.outbox);
    assert_eq!(got.kept.records, expected.kept.records);
    assert_eq!(got.kept.memberships, expected.kept.memberships);
}

/// Reads its bytes, then fails.
struct FailsAfter<'a> {
    bytes: &'a [u8],
}

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(std::io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.bytes.len()).min(4096);
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn a_read_error_returns_after_applying_every_whole_line_read_before_it() {
    let bundle = nudge_test_support::example_bundle("win_back");
    let input = stream();
    // Cut in the middle of a line, past several batches.
    let cut = input.len() * 3 / 5;
    let whole = input[..cut]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("a line break");
    let mut expected_engine = Engine::new(&bundle, MemorySink::default(), Config::default(), 0);
    replay::replay(
        &mut expected_engine,
        &input[..=whole],
        Options::default(),
        &mut |_| {},
    )
    .expect("read");

    let mut engine = Engine::new(&bundle, MemorySink::default(), Config::default(), 0);
    let mut dead = Vec::new();
    let reader = BufReader::new(FailsAfter {
        bytes: &input[..cut],
    });
    let err = replay::replay(&mut engine, reader, Options::default(), &mut |d| {
        dead.push(d)
    })
    .expect_err("the read error is returned");
    assert_eq!(err.to_string(), "the disk went away");
    // Dead letters are given only to a run that read its whole input.
    assert!(dead.is_empty(), "{dead:?}");
    let (got, want) = (engine.stats(), expected_engine.stats());
    assert!(got.events > 1000, "{}", got.events);
    assert_eq!(got.events, want.events);
    assert_eq!(
        engine.into_sink().outbox,
        expected_engine.into_sink().outbox
    );
}
