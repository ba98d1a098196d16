//! The progress bar of `nudge run`: how far the replay's virtual clock has
//! come between the first and the last call of the input, drawn on stderr
//! when it is a terminal.
//!
//! The engine reports nothing while it replays, but every decision it
//! records carries the virtual time; the host's `Watched` sink reads those
//! times and moves the bar, so the bar needs no help from the engine.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this replay in well under a second: no bar, so
/// short runs do not flicker.
const MIN_BYTES: usize = 1 << 20;

/// A bar over the input's time range, or nothing.
pub struct Progress {
    bar: Option<Bar>,
}

struct Bar {
    bar: ProgressBar,
    first: i64,
    last: i64,
}

impl Progress {
    /// A bar for replaying `input` (Segment JSON lines), shown only when
    /// stderr is a terminal and the input is large enough to take a while.
    #[cfg(test)]
    pub fn for_replay(input: &[u8]) -> Progress {
        if !std::io::stderr().is_terminal() || input.len() < MIN_BYTES {
            return Progress { bar: None };
        }
        Progress {
            bar: Bar::new(input, ProgressDrawTarget::stderr()),
        }
    }

    /// A bar for replaying the file at `path` of `len` bytes, shown only
    /// when stderr is a terminal and the file is large enough to take a
    /// while. Only its first and last lines are read: the file is streamed.
    pub fn for_file(path: &std::path::Path, len: u64) -> Progress {
        if !std::io::stderr().is_terminal() || len < MIN_BYTES as u64 {
            return Progress { bar: None };
        }
        Progress {
            bar: ends(path, len).and_then(|ends| Bar::new(&ends, ProgressDrawTarget::stderr())),
        }
    }

    /// Moves the bar to the virtual time `at` (milliseconds since the epoch).
    pub fn at(&self, at: i64) {
        if let Some(b) = &self.bar {
            let pos = at.clamp(b.first, b.last) - b.first;
            b.bar.set_position(u64::try_from(pos).unwrap_or(0));
        }
    }

    /// Removes the bar, before the summary is printed.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.bar.finish_and_clear();
        }
    }
}

impl Bar {
    fn new(input: &[u8], target: ProgressDrawTarget) -> Option<Bar> {
        let (first, last) = time_range(input)?;
        let bar = ProgressBar::with_draw_target(Some(span(first, last)), target);
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {percent:>3}% {msg}",
        )
        .ok()?;
        bar.set_style(style);
        bar.set_message("replaying calls");
        // Redrawn from its own thread, so the elapsed time moves even while
        // the engine records nothing.
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(Bar { bar, first, last })
    }
}

/// The first and last [`ENDS`] bytes of the file, a line apart: enough for
/// [`time_range`] to find its first and last lines.
fn ends(path: &std::path::Path, len: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut out = vec![0; ENDS.min(len as usize)];
    f.read_exact(&mut out).ok()?;
    out.push(b'\n');
    let tail_start = len.saturating_sub(ENDS as u64);
    f.seek(SeekFrom::Start(tail_start)).ok()?;
    let mut tail = Vec::new();
    f.take(ENDS as u64).read_to_end(&mut tail).ok()?;
    // The tail's first line is cut short: leave it out.
    match tail.iter().position(|&b| b == b'\n') {
        Some(i) if tail_start > 0 => out.extend_from_slice(tail.get(i + 1..).unwrap_or_default()),
        _ => out.extend_from_slice(&tail),
    }
    Some(out)
}

/// How much of each end of a streamed file the bar reads.
const ENDS: usize = 256 * 1024;

/// The bar's length in milliseconds: at least one, so an input of one instant still
/// has a bar that can fill.
fn span(first: i64, last: i64) -> u64 {
    u64::try_from(last - first).unwrap_or(0).max(1)
}

/// The earliest and latest time of the first and last lines: streams are
/// recorded in time order, and reading two lines costs nothing.
fn time_range(input: &[u8]) -> Option<(i64, i64)> {
    fn text(line: &[u8]) -> Option<&str> {
        std::str::from_utf8(line).ok().map(str::trim)
    }
    let mut lines = input
        .split(|&b| b == b'\n')
        .filter_map(text)
        .filter(|l| !l.is_empty());
    let first = nudge_runtime::segment::time_of(lines.next()?)?;
    let last = input
        .rsplit(|&b| b == b'\n')
        .filter_map(text)
        .find(|l| !l.is_empty())
        .and_then(nudge_runtime::segment::time_of)
        .unwrap_or(first);
    Some((first.min(last), first.max(last)))
}

impl nudge_host::watch::Watch for Progress {
    fn wants(&self) -> bool {
        self.bar.is_some()
    }

    fn at(&self, at: i64) {
        Progress::at(self, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLS: &str = r#"{"type":"track","userId":"u1","event":"Order Completed","timestamp":"2026-01-05T10:00:00Z"}

{"type":"track","userId":"u2","event":"Order Completed","timestamp":"2026-01-05T11:00:00Z"}
"#;

    #[test]
    fn the_range_runs_from_the_first_call_to_the_last() {
        let (first, last) = time_range(CALLS.as_bytes()).expect("a range");
        assert_eq!(last - first, 3_600_000);
        assert_eq!(time_range(b"\n\n"), None);
    }

    #[test]
    fn the_bar_follows_the_virtual_clock_and_stays_inside_its_range() {
        let bar = Bar::new(CALLS.as_bytes(), ProgressDrawTarget::hidden()).expect("a bar");
        let first = bar.first;
        let progress = Progress { bar: Some(bar) };
        progress.at(first + 900_000);
        let position = |p: &Progress| p.bar.as_ref().map(|b| b.bar.position());
        assert_eq!(position(&progress), Some(900_000));
        progress.at(first - 50);
        assert_eq!(position(&progress), Some(0));
        progress.at(first + 99_999_999);
        assert_eq!(position(&progress), Some(3_600_000));
    }

    #[test]
    fn no_bar_when_stderr_is_not_a_terminal_or_the_input_is_small() {
        // Under `cargo test` stderr is captured, not a terminal.
        assert!(Progress::for_replay(CALLS.as_bytes()).bar.is_none());
    }
}
