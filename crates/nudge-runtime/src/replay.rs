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

use crate::engine::{Engine, LetGo, Sink, Step};
use crate::ingest::{self, Decoded, Decoder};
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
    input: impl BufRead + Send,
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
    input: impl BufRead + Send,
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
    lines: impl Iterator<Item = std::io::Result<crate::sort::Line>> + Send,
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

/// Lines decoded as one batch on the reading thread: enough that handing
/// batches between the threads costs little beside decoding them.
const BATCH: usize = 256;

/// Decoded batches waiting for the engine: what bounds the lines held
/// besides the reorder window (`BATCH * (IN_FLIGHT + 2)`).
const IN_FLIGHT: usize = 4;

self_cell::self_cell!(
    /// A line's text with the call decoded from it, which borrows the text:
    /// what the reading thread hands to the engine's.
    struct DecodedLine {
        owner: String,
        #[covariant]
        dependent: Decoded,
    }
);

/// A line made ready for the engine on the reading thread.
enum Ready {
    /// Decoded (a call, or why it is not one).
    Line(DecodedLine),
    /// Refused before decoding.
    NotUtf8(DeadLetter),
}

/// Checks that line `number` is text and decodes it.
fn prepare(decoder: Decoder<'_>, number: u64, raw: Vec<u8>) -> Ready {
    match String::from_utf8(raw) {
        Ok(text) => Ready::Line(DecodedLine::new(text, |text| {
            decoder.decode(text.trim_end_matches('\r'))
        })),
        Err(err) => Ready::NotUtf8(DeadLetter {
            line: number as usize,
            reason: format!("not UTF-8 text: {}", err.utf8_error()),
            input: String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }),
    }
}

/// Applies line `number` made ready by [`prepare`]; a line the engine
/// refuses goes to `rejected` with why. Gives the line back, to be dropped
/// where it was made.
fn apply_ready<S: Sink>(
    engine: &mut Engine<'_, S>,
    number: u64,
    ready: Ready,
    rejected: &mut Vec<DeadLetter>,
) -> Option<DecodedLine> {
    let mut line = match ready {
        Ready::Line(line) => line,
        Ready::NotUtf8(dead) => {
            rejected.push(dead);
            return None;
        }
    };
    engine.sink_mut().step(Step::Line(number));
    let applied = line.with_dependent_mut(|_, decoded| ingest::apply_decoded(engine, decoded));
    if let Err(reason) = applied {
        rejected.push(DeadLetter {
            line: number as usize,
            reason,
            input: line.borrow_owner().trim_end_matches('\r').to_string(),
        });
    }
    Some(line)
}

/// What the engine is done with, sent back to the reading thread to be
/// dropped there: it made the lines and the values decoded from them, so
/// their memory is freed where it was allocated, and the engine's thread
/// does not wait on cache misses into history stored long ago.
struct Spent {
    /// Lines applied.
    _lines: Vec<DecodedLine>,
    /// Events the engine let go of meanwhile; their room goes back.
    history: LetGo,
}

/// Lines in time order on their way to the engine's thread, decoded a
/// batch at a time.
struct Batches<'d> {
    decoder: Decoder<'d>,
    batch: Vec<(u64, Ready)>,
    out: std::sync::mpsc::SyncSender<Vec<(u64, Ready)>>,
    /// What the engine's thread is done with, to drop.
    spent: std::sync::mpsc::Receiver<Spent>,
    /// The room of the history dropped, back to the engine's thread.
    rooms: std::sync::mpsc::Sender<LetGo>,
    /// The engine's thread stopped taking batches (it panicked).
    closed: bool,
}

impl Batches<'_> {
    /// Decodes line `number` into the batch, and hands the batch over once
    /// full, waiting while [`IN_FLIGHT`] others wait for the engine.
    fn push(&mut self, number: u64, raw: Vec<u8>) {
        self.batch
            .push((number, prepare(self.decoder, number, raw)));
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    /// Hands the batch being filled over, after dropping what the engine's
    /// thread is done with.
    fn send(&mut self) {
        while let Ok(mut spent) = self.spent.try_recv() {
            spent.history.empty();
            // A closed channel means the engine's thread is done.
            drop(self.rooms.send(spent.history));
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if !batch.is_empty() && self.out.send(batch).is_err() {
            self.closed = true;
        }
    }
}

/// Applies numbered lines in time order within a reorder window of
/// `window` lines (see [`replay_stream`]), or as they come without one.
///
/// A second thread reads the lines, refuses those beyond `horizon`, puts
/// the rest in time order and decodes them; this one applies them. The
/// engine sees exactly the calls, in exactly the order, it would see
/// decoding each line itself: the reading thread sees no engine state.
fn replay_lines<S: Sink>(
    engine: &mut Engine<'_, S>,
    lines: impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>> + Send,
    options: Options,
    horizon: Option<Horizon>,
    window: Option<usize>,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<Streamed> {
    let schemas = engine.schemas();
    let (out, decoded) = std::sync::mpsc::sync_channel(IN_FLIGHT);
    let (spent_out, spent) = std::sync::mpsc::channel();
    let (rooms, rooms_back) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut batches = Batches {
                decoder: schemas.decoder(),
                batch: Vec::with_capacity(BATCH),
                out,
                spent,
                rooms,
                closed: false,
            };
            read_in_order(lines, horizon, window, &mut batches)
        });
        let mut rejected = Vec::new();
        // Ends once the reading thread has handed over its last batch.
        for batch in decoded {
            let mut applied = Vec::with_capacity(batch.len());
            for (number, ready) in batch {
                applied.extend(apply_ready(engine, number, ready, &mut rejected));
            }
            while let Ok(room) = rooms_back.try_recv() {
                engine.reuse_let_go(room);
            }
            let spent = Spent {
                _lines: applied,
                history: engine.take_let_go(),
            };
            // Once the reading thread is done, dropped here.
            drop(spent_out.send(spent));
        }
        let (streamed, refused) = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        rejected.extend(refused);
        finish_replay(engine, streamed, rejected, options, dead)
    })
}

/// Reads `lines`, refuses those beyond `horizon` and hands the rest to
/// `batches` in time order within the reorder window; says what the
/// stream did, with the lines refused on the way.
fn read_in_order(
    lines: impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>>,
    horizon: Option<Horizon>,
    window: Option<usize>,
    batches: &mut Batches<'_>,
) -> (std::io::Result<Streamed>, Vec<DeadLetter>) {
    let mut held: Option<Window<Vec<u8>>> = window.map(Window::new);
    let mut rejected: Vec<DeadLetter> = Vec::new();
    let mut last = i64::MIN;
    let mut clamped = 0u64;
    let mut read = Ok(());
    for line in lines {
        if batches.closed {
            break;
        }
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
            batches.push(number, line);
            continue;
        };
        held.push(t, number, line);
        while let Some((_, n, raw)) = held.next_due() {
            batches.push(n, raw);
        }
    }
    if let Some(held) = &mut held {
        while let Some((_, n, raw)) = held.pop() {
            batches.push(n, raw);
        }
    }
    batches.send();
    let streamed = read.map(|()| Streamed {
        past_window: held.map_or(0, |h| h.late()),
        clamped,
    });
    (streamed, rejected)
}

/// Runs the clock on as `options` say once every line is applied, and
/// hands the refused lines to `dead` in line order; an error reading the
/// input stops the run before the clock moves on.
fn finish_replay<S: Sink>(
    engine: &mut Engine<'_, S>,
    streamed: std::io::Result<Streamed>,
    mut rejected: Vec<DeadLetter>,
    options: Options,
    dead: &mut dyn FnMut(DeadLetter),
) -> std::io::Result<Streamed> {
    let streamed = streamed?;
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
    Ok(streamed)
}
