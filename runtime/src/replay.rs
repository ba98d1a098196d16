//! Replaying recorded calls on a virtual clock.
//!
//! Calls are applied in timestamp order (ties keep file order). Before a
//! call at time t, every timer due strictly before t fires; the call at t is
//! applied before timers due at t, so a purchase made at the reminder's very
//! second wins. After the last call, `until` fires timers up to a time and
//! `drain` fires them until only recurring schedules remain.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Sink};
use crate::segment::{Call, parse_line};

/// A line that could not be used: one line of the dead-letter file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The line number in the input, from 1.
    pub line: usize,
    /// Why it was refused.
    pub reason: String,
    /// The line as it was.
    pub input: String,
}

/// How far to run the clock after the last call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Fire timers due up to this instant.
    pub until: Option<i64>,
    /// Fire timers until only recurring schedules remain.
    pub drain: bool,
}

/// Reads every call of `input`, then applies them in timestamp order.
/// Bad lines go to `dead` (in line order) and the run goes on; only an I/O
/// error on the input stops it.
pub fn replay<S: Sink>(
    engine: &mut Engine<'_, S>,
    input: impl BufRead,
    options: Options,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<()> {
    let mut calls: Vec<(usize, Call, String)> = Vec::new();
    let mut rejected: Vec<DeadLetter> = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(call) => calls.push((i + 1, call, line)),
            Err(r) => rejected.push(DeadLetter {
                line: i + 1,
                reason: r.reason,
                input: line,
            }),
        }
    }
    calls.sort_by_key(|(_, c, _)| c.timestamp);
    for (line, call, text) in calls {
        engine.advance_before(call.timestamp.timestamp());
        if let Err(r) = engine.apply(&call) {
            rejected.push(DeadLetter {
                line,
                reason: r.reason,
                input: text,
            });
        }
    }
    if let Some(t) = options.until {
        engine.advance_through(t);
    }
    if options.drain {
        engine.drain();
    }
    rejected.sort_by_key(|d| d.line);
    for d in rejected {
        engine.count_dead_letter();
        dead(d);
    }
    Ok(())
}
