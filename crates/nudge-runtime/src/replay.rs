//! Replaying recorded calls on a virtual clock.
//!
//! Calls are applied in timestamp order (ties keep file order), within a
//! bounded reorder window when the input is streamed (see [`crate::window`]),
//! or in full after an external sort ([`crate::sort`], [`replay_sorted`]). Before a
//! call at time t, every timer due strictly before t fires; the call at t is
//! applied before timers due at t, so a purchase made at the reminder's very
//! second wins. After the last call, `until` fires timers up to a time and
//! `drain` fires them until only recurring schedules remain.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Sink, Step};
use crate::ingest;
use crate::segment;
use crate::window::{DEFAULT_LINES, Window};

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
    /// Fire timers due up to this instant (milliseconds since the epoch).
    pub until: Option<i64>,
    /// Fire timers until only recurring schedules remain.
    pub drain: bool,
}

/// How far past the wall clock and the file's own recent times a line may
/// be stamped by default: a day, as a phone clock a day ahead is a mistake
/// and a year 9999 a hostile one.
pub const DEFAULT_MAX_FUTURE: i64 = 86_400;

/// The sane horizon of a replayed file, the replay's stand-in for a receipt
/// time: a line stamped more than `max_future` after the later of the wall
/// clock (when the run began) and the latest time of the lines before it in
/// the file is refused, since applying it would move the clock there and
/// fire every pending timer at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon {
    /// The wall clock when the run began, in milliseconds since the epoch.
    pub wall: i64,
    /// How far past the horizon a line may be, in seconds.
    pub max_future: i64,
}

impl Horizon {
    /// The horizon of a run beginning now.
    pub fn now(max_future: i64) -> Horizon {
        Horizon {
            wall: chrono::Utc::now().timestamp_millis(),
            max_future,
        }
    }

    /// Why a line at `t` is refused, when the lines before it reach
    /// `latest` (both in milliseconds since the epoch).
    pub fn judge(&self, t: i64, latest: i64) -> Result<(), String> {
        let base = self.wall.max(latest);
        if t <= base.saturating_add(crate::millis::ms(self.max_future)) {
            return Ok(());
        }
        let show = |t: i64| {
            chrono::DateTime::from_timestamp_millis(t).map_or_else(
                || t.to_string(),
                |d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
        };
        let against = if base == self.wall {
            "the wall clock"
        } else {
            "the latest time before it in the file"
        };
        Err(format!(
            "stamped {}, more than {}s after {against} ({}): refused, as applying it would move the clock there",
            show(t),
            self.max_future,
            show(base)
        ))
    }
}

/// Reads the calls of `input` and applies them in timestamp order, within
/// the default reorder window (an input shorter than the window is fully
/// sorted). Bad lines go to `dead` (in line order) and the run goes on;
/// only an I/O error on the input stops it.
pub fn replay<S: Sink>(
    engine: &mut Engine<'_, S>,
    input: impl BufRead,
    options: Options,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<()> {
    replay_stream(engine, input, options, None, DEFAULT_LINES, dead).map(drop)
}

/// Applies the calls in `input` (JSON lines) in timestamp order, within the
/// default reorder window (see [`replay`]).
///
/// Lines are decoded in full one at a time (in one pass, straight into
/// typed calls: see [`ingest`]), in time order (file order for equal
/// times), and dropped once applied. Lines that are not UTF-8 or whose time
/// cannot be read are refused by the full decode with its reason.
pub fn replay_bytes<S: Sink>(
    engine: &mut Engine<'_, S>,
    input: &[u8],
    options: Options,
    dead: &mut dyn FnMut(DeadLetter),
) {
    replay_within(engine, input, options, None, dead);
}

/// [`replay_bytes`], refusing lines beyond `horizon` (see [`Horizon`]).
pub fn replay_within<S: Sink>(
    engine: &mut Engine<'_, S>,
    input: &[u8],
    options: Options,
    horizon: Option<Horizon>,
    dead: &mut dyn FnMut(DeadLetter),
) {
    // Reading a slice cannot fail.
    let _ = replay_stream(engine, input, options, horizon, DEFAULT_LINES, dead);
}

/// What a streamed replay did besides applying calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Lines out of order by more than the reorder window: applied after
    /// later-stamped ones, as late calls.
    pub past_window: u64,
    /// Lines whose time, corrected for the sender's clock, was later than
    /// their `receivedAt`: applied at their receipt.
    pub clamped: u64,
}

/// The time a replay orders a line by, in milliseconds since the epoch,
/// and whether it was clamped to the line's `receivedAt` (see
/// [`segment::time_and_clamp_of`]); `None` when it cannot be read. The
/// reorder window and the external sort ([`crate::sort`]) both order by it.
pub fn line_time(line: &[u8]) -> Option<(i64, bool)> {
    std::str::from_utf8(line)
        .ok()
        .and_then(segment::time_and_clamp_of)
}

/// Reads `input` line by line and applies its calls in time order within a
/// reorder window of `window` lines (see [`crate::window`]): memory holds
/// the window, not the input. Lines beyond `horizon` are refused as they
/// are read. Bad lines go to `dead` in line order at the end; only an I/O
/// error on the input stops the run (after applying what was read).
pub fn replay_stream<S: Sink>(
    engine: &mut Engine<'_, S>,
    input: impl BufRead,
    options: Options,
    horizon: Option<Horizon>,
    window: usize,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<Streamed> {
    let lines = Numbered {
        input,
        number: 0,
        buf: Vec::new(),
        failed: false,
    };
    replay_lines(engine, lines, options, horizon, Some(window), dead)
}

/// Applies lines already in time order, each with its line number in the
/// file they came from (the output of [`crate::sort::sort`]): the same
/// replay as [`replay_stream`] over a file holding them in this order,
/// dead letters keeping the original line numbers. An error reading them
/// stops the run as an error reading the input would.
pub fn replay_sorted<S: Sink>(
    engine: &mut Engine<'_, S>,
    lines: impl Iterator<Item = std::io::Result<crate::sort::Line>>,
    options: Options,
    horizon: Option<Horizon>,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<Streamed> {
    // In order already: no window (their numbers do not grow).
    let lines = lines.map(|l| l.map(|l| (l.number, l.text)));
    replay_lines(engine, lines, options, horizon, None, dead)
}

/// The non-blank lines of a file with their numbers (blank lines counted).
struct Numbered<R> {
    input: R,
    number: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> Iterator for Numbered<R> {
    type Item = std::io::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            self.number += 1;
            let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            if !line.iter().all(u8::is_ascii_whitespace) {
                // Copied at its length: the buffer keeps its capacity.
                return Some(Ok((self.number, line.to_vec())));
            }
        }
        None
    }
}

/// Applies numbered lines in time order within a reorder window of
/// `window` lines (see [`replay_stream`]), or as they come without one.
fn replay_lines<S: Sink>(
    engine: &mut Engine<'_, S>,
    lines: impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>>,
    options: Options,
    horizon: Option<Horizon>,
    window: Option<usize>,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<Streamed> {
    let mut held: Option<Window<Vec<u8>>> = window.map(Window::new);
    let mut rejected: Vec<DeadLetter> = Vec::new();
    let mut apply = |number: u64, raw: Vec<u8>, rejected: &mut Vec<DeadLetter>| {
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(err) => {
                rejected.push(DeadLetter {
                    line: number as usize,
                    reason: format!("not UTF-8 text: {err}"),
                    input: String::from_utf8_lossy(&raw).into_owned(),
                });
                return;
            }
        };
        engine.sink_mut().step(Step::Line(number));
        if let Err(reason) = ingest::apply_line(engine, text) {
            rejected.push(DeadLetter {
                line: number as usize,
                reason,
                input: text.to_string(),
            });
        }
    };
    let mut last = i64::MIN;
    let mut clamped = 0u64;
    let mut read = Ok(());
    for line in lines {
        let (number, line) = match line {
            Ok(l) => l,
            Err(e) => {
                read = Err(e);
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A line whose time cannot be read keeps its place in the file.
        let timed = line_time(&line);
        let t = timed.map(|(t, _)| t);
        if let (Some(t), Some(h)) = (t, horizon)
            && let Err(reason) = h.judge(t, last)
        {
            rejected.push(DeadLetter {
                line: number as usize,
                reason,
                input: String::from_utf8_lossy(&line).into_owned(),
            });
            continue;
        }
        if timed.is_some_and(|(_, c)| c) {
            clamped += 1;
        }
        let t = t.unwrap_or(last);
        last = last.max(t);
        let Some(held) = &mut held else {
            apply(number, line, &mut rejected);
            continue;
        };
        held.push(t, number, line);
        while let Some((_, n, raw)) = held.next_due() {
            apply(n, raw, &mut rejected);
        }
    }
    if let Some(held) = &mut held {
        while let Some((_, n, raw)) = held.pop() {
            apply(n, raw, &mut rejected);
        }
    }
    read?;
    if let Some(t) = options.until {
        engine.sink_mut().step(Step::Until);
        engine.advance_through(t);
    }
    if options.drain {
        engine.sink_mut().step(Step::Drain);
        engine.drain();
    }
    rejected.sort_by_key(|d| d.line);
    for d in rejected {
        engine.count_dead_letter();
        dead(d);
    }
    Ok(Streamed {
        past_window: held.map_or(0, |h| h.late()),
        clamped,
    })
}
