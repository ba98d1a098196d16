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
use crate::ingest;
use crate::segment;

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

/// Reads every call of `input`, then applies them in timestamp order.
/// Bad lines go to `dead` (in line order) and the run goes on; only an I/O
/// error on the input stops it.
pub fn replay<S: Sink>(
    engine: &mut Engine<'_, S>,
    mut input: impl BufRead,
    options: Options,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    replay_bytes(engine, &bytes, options, dead);
    Ok(())
}

/// Applies the calls in `input` (JSON lines) in timestamp order.
///
/// A first pass reads only each line's time; lines are then decoded in
/// full one at a time (in one pass, straight into typed calls: see
/// [`ingest`]), in time order (file order for equal times), and dropped
/// once applied. So memory does not grow with the stream, and a sorted
/// stream (the usual case) is applied in one sweep. Lines that are not
/// UTF-8 or whose time cannot be read are refused by the full decode with
/// its reason.
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
    // Valid as a whole (the usual case) means every line is valid: one
    // check here instead of two per line.
    let whole = std::str::from_utf8(input).ok();
    let text_of = |s: usize, e: usize| match whole.and_then(|text| text.get(s..e)) {
        Some(line) => Ok(line),
        None => std::str::from_utf8(&input[s..e]),
    };
    // (time, start, end, line number) of each non-blank line.
    let mut lines: Vec<(i64, usize, usize, usize)> = Vec::new();
    let mut rejected: Vec<DeadLetter> = Vec::new();
    let mut sorted = true;
    let mut last = i64::MIN;
    let mut start = 0;
    let breaks = memchr::memchr_iter(b'\n', input).chain([input.len()]);
    for (i, end) in breaks.enumerate() {
        let (s, e) = (start, end);
        start = end + 1;
        if input[s..e].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A line whose time cannot be read keeps its place in the file.
        let t = text_of(s, e).ok().and_then(segment::time_of);
        if let (Some(t), Some(h)) = (t, horizon)
            && let Err(reason) = h.judge(t, last)
        {
            rejected.push(DeadLetter {
                line: i + 1,
                reason,
                input: String::from_utf8_lossy(&input[s..e]).into_owned(),
            });
            continue;
        }
        let t = t.unwrap_or(last);
        if t < last {
            sorted = false;
        }
        last = last.max(t);
        lines.push((t, s, e, i + 1));
    }
    if !sorted {
        lines.sort_by_key(|l| l.0);
    }
    for (_, s, e, number) in lines {
        let text = match text_of(s, e) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(err) => {
                rejected.push(DeadLetter {
                    line: number,
                    reason: format!("not UTF-8 text: {err}"),
                    input: String::from_utf8_lossy(&input[s..e]).into_owned(),
                });
                continue;
            }
        };
        if let Err(reason) = ingest::apply_line(engine, text) {
            rejected.push(DeadLetter {
                line: number,
                reason,
                input: text.to_string(),
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
}
