//! An external sort of an events file by event time, in bounded memory.
//!
//! The reorder window ([`crate::window`]) puts a nearly sorted file in
//! order as it streams; a file shuffled as a whole needs every line seen
//! before the first one can go out. This sort reads the file once, keeps
//! lines until they fill a byte budget, writes each such run sorted to a
//! temporary file and merges the runs k-way (in several passes when there
//! are more than [`FAN_IN`] of them), so memory holds the budget whatever
//! the file's size, and the disk holds the file about twice.
//!
//! The order is the replay's: by the time [`replay::line_time`] reads
//! (the one reading of a line's time, corrected for the sender's clock),
//! equal times in file order. A line whose time cannot be read is kept,
//! stamped with the latest time read before it in the file, as the reorder
//! window stamps it: it stays in file order among the lines around it, and
//! the replay refuses it there with its reason. Blank lines are dropped.
//!
//! Temporary files go in a directory of their own inside the directory the
//! caller names, made at the first spill and removed with everything in it
//! when the sorted lines are dropped, also after an error.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::replay;

/// Bytes of lines held in memory by default before a run is written out.
pub const DEFAULT_BUDGET: usize = 64 << 20;

/// The most runs merged at once: more are first merged in groups of this
/// many into longer runs, so open files and read buffers stay bounded.
pub const FAN_IN: usize = 64;

/// How a sort runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Bytes of lines (with a small fixed cost per line) held before a run
    /// is written out; the merge's read buffers (one per run merged at
    /// once, at most [`FAN_IN`], a 65th of the budget each but from 8 KiB
    /// to 1 MiB) take about as much again.
    pub budget: usize,
    /// The directory the temporary directory is made in.
    pub dir: PathBuf,
}

/// One line of the sorted output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its time in milliseconds since the epoch, or for a line whose time
    /// cannot be read, the latest time read before it.
    pub time: i64,
    /// Its line number in the input, from 1.
    pub number: u64,
    /// The line as it was, without its line break.
    pub text: Vec<u8>,
}

/// What a sort met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines sorted (blank lines left out).
    pub lines: u64,
    /// Lines whose time could not be read, kept in file order.
    pub untimed: u64,
    /// Blank lines, dropped.
    pub blank: u64,
    /// Sorted runs written to temporary files (0: the input fit in memory).
    pub runs: u64,
    /// Bytes written to temporary files, every merge pass included.
    pub spilled: u64,
}

/// A line held in memory: its key and where its bytes are in the arena.
#[derive(Clone, Copy, Debug)]
struct Entry {
    time: i64,
    number: u64,
    start: usize,
    len: usize,
}

/// What a held line costs besides its bytes.
const ENTRY_COST: usize = std::mem::size_of::<Entry>();

/// The bytes before each line in a run file: time, number, length.
const HEADER: usize = 24;

/// Sorts the lines of `input` by time within `options`' budget; the sorted
/// lines are then read from the result. Fails on an error reading the
/// input or writing a temporary file (the temporary files are removed).
pub fn sort(mut input: impl BufRead, options: &Options) -> io::Result<Sorted> {
    let budget = options.budget.max(1);
    let mut run = Run::default();
    let mut spill: Option<Spill> = None;
    let mut summary = Summary::default();
    let mut last = i64::MIN;
    let mut number = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        number += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            summary.blank += 1;
            continue;
        }
        summary.lines += 1;
        let time = match replay::line_time(line) {
            Some((t, _)) => {
                last = last.max(t);
                t
            }
            None => {
                summary.untimed += 1;
                last
            }
        };
        if !run.is_empty() && run.cost() + line.len() + ENTRY_COST > budget {
            let s = match &mut spill {
                Some(s) => s,
                None => spill.insert(Spill::new(&options.dir, budget)?),
            };
            s.write_run(&mut run)?;
        }
        run.push(time, number, line, budget);
    }
    let source = match spill {
        None => {
            run.sort();
            Source::Memory { run, next: 0 }
        }
        Some(mut s) => {
            if !run.is_empty() {
                s.write_run(&mut run)?;
            }
            drop(run);
            let merge = s.merge()?;
            Source::Merge(merge)
        }
    };
    if let Source::Merge(m) = &source {
        summary.runs = m.spill.runs_written;
        summary.spilled = m.spill.bytes;
    }
    Ok(Sorted { source, summary })
}

/// The sorted lines of a [`sort`], read one at a time.
pub struct Sorted {
    source: Source,
    summary: Summary,
}

enum Source {
    /// Everything fit in the budget: the lines in memory, in order.
    Memory { run: Run, next: usize },
    /// Runs on disk, merged as they are read.
    Merge(Merge),
}

impl Sorted {
    /// What the sort met.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Writes every line, each ending with a line break, to `out`.
    pub fn write_to(self, out: &mut impl Write) -> io::Result<Summary> {
        let summary = self.summary;
        for line in self {
            let line = line?;
            out.write_all(&line.text)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(summary)
    }
}

impl Iterator for Sorted {
    type Item = io::Result<Line>;

    fn next(&mut self) -> Option<io::Result<Line>> {
        match &mut self.source {
            Source::Memory { run, next } => {
                let entry = run.entries.get(*next)?;
                *next += 1;
                let text = run.bytes(entry).to_vec();
                Some(Ok(Line {
                    time: entry.time,
                    number: entry.number,
                    text,
                }))
            }
            Source::Merge(m) => m.next().transpose(),
        }
    }
}

/// Lines held in memory: their bytes one after another, and their keys.
#[derive(Default)]
struct Run {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl Run {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the held lines cost against the budget.
    fn cost(&self) -> usize {
        self.arena.len() + self.entries.len() * ENTRY_COST
    }

    fn push(&mut self, time: i64, number: u64, line: &[u8], budget: usize) {
        // Grown by hand: doubling past the budget would hold up to twice it.
        reserve(&mut self.arena, line.len(), budget);
        reserve(&mut self.entries, 1, budget / ENTRY_COST);
        self.entries.push(Entry {
            time,
            number,
            start: self.arena.len(),
            len: line.len(),
        });
        self.arena.extend_from_slice(line);
    }

    /// Puts the lines in order: by time, then by line number (unique, so
    /// the order is total and equal times keep file order).
    fn sort(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.time, e.number));
    }

    fn bytes(&self, entry: &Entry) -> &[u8] {
        self.arena
            .get(entry.start..entry.start + entry.len)
            .unwrap_or_default()
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }
}

/// Makes room for `more` items in `v`, doubling its capacity but not past
/// `limit` items (unless one push needs more).
fn reserve<T>(v: &mut Vec<T>, more: usize, limit: usize) {
    let needed = v.len() + more;
    if needed <= v.capacity() {
        return;
    }
    let target = (v.capacity() * 2).max(1024).min(limit).max(needed);
    v.reserve_exact(target - v.len());
}

/// The temporary directory of one sort, removed with its files when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A directory of its own in `parent` (made if missing).
    fn new(parent: &Path) -> io::Result<TempDir> {
        std::fs::create_dir_all(parent).map_err(context("cannot create", parent))?;
        remove_orphans(parent);
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0u32;
        loop {
            let path = parent.join(format!("sort-{pid}-{nanos:x}-{attempt}.tmp"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(context("cannot create", &path)(e)),
            }
        }
    }
}

/// Removes the temporary directories that sorts killed before they could
/// clean up left in `parent`: those named for a process that no longer
/// runs. Only where `/proc` tells which processes run (Linux); a directory
/// whose process may still run is left alone, and a failure to remove one
/// is no reason not to sort.
fn remove_orphans(parent: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sort-"))
            .filter(|n| n.ends_with(".tmp"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An error about `path`, keeping the kind of the error it came from.
fn context<'a>(what: &'a str, path: &'a Path) -> impl Fn(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The runs written so far, in the order written.
struct Spill {
    /// The size of each read buffer of the merge (one per run merged at
    /// once) and write buffer of a run.
    buffer: usize,
    runs: Vec<PathBuf>,
    /// The next run file's number.
    named: u64,
    runs_written: u64,
    bytes: u64,
    // Dropped last: the files are closed before their directory goes.
    dir: TempDir,
}

impl Spill {
    fn new(parent: &Path, budget: usize) -> io::Result<Spill> {
        Ok(Spill {
            buffer: (budget / (FAN_IN + 1)).clamp(8 << 10, 1 << 20),
            runs: Vec::new(),
            named: 0,
            runs_written: 0,
            bytes: 0,
            dir: TempDir::new(parent)?,
        })
    }

    fn next_path(&mut self) -> PathBuf {
        self.named += 1;
        self.dir.path.join(format!("run-{}", self.named))
    }

    /// Writes `run` sorted to a new run file and empties it.
    fn write_run(&mut self, run: &mut Run) -> io::Result<()> {
        run.sort();
        let path = self.next_path();
        let mut out = RunWriter::create(&path, self.buffer)?;
        for entry in &run.entries {
            out.write(entry.time, entry.number, run.bytes(entry))?;
        }
        self.bytes += out.finish()?;
        self.runs.push(path);
        self.runs_written += 1;
        run.clear();
        Ok(())
    }

    /// Merges runs in groups of [`FAN_IN`] (the oldest first, each group
    /// replaced by one run) until one pass can merge what is left.
    fn merge(mut self) -> io::Result<Merge> {
        while self.runs.len() > FAN_IN {
            let group: Vec<PathBuf> = self.runs.drain(..FAN_IN).collect();
            let path = self.next_path();
            let mut out = RunWriter::create(&path, self.buffer)?;
            let mut heads = Heads::open(&group, self.buffer)?;
            while let Some(line) = heads.next()? {
                out.write(line.time, line.number, &line.text)?;
            }
            self.bytes += out.finish()?;
            drop(heads);
            for done in &group {
                std::fs::remove_file(done).map_err(context("cannot remove", done))?;
            }
            self.runs.push(path);
        }
        let heads = Heads::open(&self.runs, self.buffer)?;
        Ok(Merge { heads, spill: self })
    }
}

/// The last merge pass, read as the sorted lines are taken.
struct Merge {
    heads: Heads,
    // After `heads`: its files are closed before the directory is removed.
    spill: Spill,
}

impl Merge {
    fn next(&mut self) -> io::Result<Option<Line>> {
        self.heads.next()
    }
}

/// The next line of each run being merged, the earliest on top.
struct Heads {
    readers: Vec<RunReader>,
    /// (time, number, reader) of each reader's next line.
    order: BinaryHeap<Reverse<(i64, u64, usize)>>,
    /// Each reader's next line, once read.
    next: Vec<Option<Vec<u8>>>,
}

impl Heads {
    fn open(paths: &[PathBuf], buffer: usize) -> io::Result<Heads> {
        let mut heads = Heads {
            readers: Vec::with_capacity(paths.len()),
            order: BinaryHeap::with_capacity(paths.len()),
            next: Vec::with_capacity(paths.len()),
        };
        for path in paths {
            heads.readers.push(RunReader::open(path, buffer)?);
            heads.next.push(None);
        }
        for i in 0..heads.readers.len() {
            heads.advance(i)?;
        }
        Ok(heads)
    }

    /// Reads reader `i`'s next line into its slot.
    fn advance(&mut self, i: usize) -> io::Result<()> {
        let Some(reader) = self.readers.get_mut(i) else {
            return Ok(());
        };
        if let Some(line) = reader.read()? {
            self.order.push(Reverse((line.time, line.number, i)));
            if let Some(slot) = self.next.get_mut(i) {
                *slot = Some(line.text);
            }
        }
        Ok(())
    }

    fn next(&mut self) -> io::Result<Option<Line>> {
        let Some(Reverse((time, number, i))) = self.order.pop() else {
            return Ok(None);
        };
        let text = self
            .next
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_default();
        self.advance(i)?;
        Ok(Some(Line { time, number, text }))
    }
}

/// Writes a run file: for each line its time, number and length (little
/// endian, 8 bytes each), then its bytes.
struct RunWriter {
    out: BufWriter<File>,
    path: PathBuf,
    bytes: u64,
}

impl RunWriter {
    fn create(path: &Path, buffer: usize) -> io::Result<RunWriter> {
        let file = File::create(path).map_err(context("cannot create", path))?;
        Ok(RunWriter {
            out: BufWriter::with_capacity(buffer, file),
            path: path.to_path_buf(),
            bytes: 0,
        })
    }

    fn write(&mut self, time: i64, number: u64, text: &[u8]) -> io::Result<()> {
        let mut header = [0u8; HEADER];
        let (t, rest) = header.split_at_mut(8);
        let (n, len) = rest.split_at_mut(8);
        t.copy_from_slice(&time.to_le_bytes());
        n.copy_from_slice(&number.to_le_bytes());
        len.copy_from_slice(&(text.len() as u64).to_le_bytes());
        let err = context("cannot write", &self.path);
        self.out.write_all(&header).map_err(&err)?;
        self.out.write_all(text).map_err(&err)?;
        self.bytes += (HEADER + text.len()) as u64;
        Ok(())
    }

    /// Flushes the run; the bytes it holds.
    fn finish(mut self) -> io::Result<u64> {
        self.out
            .flush()
            .map_err(context("cannot write", &self.path))?;
        Ok(self.bytes)
    }
}

/// Reads a run file back.
struct RunReader {
    input: BufReader<File>,
    path: PathBuf,
}

impl RunReader {
    fn open(path: &Path, buffer: usize) -> io::Result<RunReader> {
        let file = File::open(path).map_err(context("cannot open", path))?;
        Ok(RunReader {
            input: BufReader::with_capacity(buffer, file),
            path: path.to_path_buf(),
        })
    }

    /// The next line, or `None` at the end of the run.
    fn read(&mut self) -> io::Result<Option<Line>> {
        let err = context("cannot read", &self.path);
        if self.input.fill_buf().map_err(&err)?.is_empty() {
            return Ok(None);
        }
        let mut header = [0u8; HEADER];
        self.input.read_exact(&mut header).map_err(&err)?;
        let (t, rest) = header.split_at(8);
        let (n, len) = rest.split_at(8);
        let word = |b: &[u8]| <[u8; 8]>::try_from(b).unwrap_or_default();
        let time = i64::from_le_bytes(word(t));
        let number = u64::from_le_bytes(word(n));
        let len = u64::from_le_bytes(word(len));
        let mut text = Vec::new();
        (&mut self.input)
            .take(len)
            .read_to_end(&mut text)
            .map_err(&err)?;
        if text.len() as u64 != len {
            return Err(err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a line of {len} bytes ends after {}", text.len()),
            )));
        }
        Ok(Some(Line { time, number, text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A directory of the test's own, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "nudge-sort-test-{}-{name}-{:x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }

        fn options(&self, budget: usize) -> Options {
            Options {
                budget,
                dir: self.0.clone(),
            }
        }

        /// What is in the directory now.
        fn entries(&self) -> Vec<PathBuf> {
            std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn call(user: u32, second: u32) -> String {
        format!(
            r#"{{"type":"track","event":"Viewed","userId":"u{user}","timestamp":"2026-01-05T10:{:02}:{:02}Z"}}"#,
            second / 60 % 60,
            second % 60
        )
    }

    /// The lines of `input` sorted, as (number, text).
    fn sorted(input: &str, options: &Options) -> (Vec<(u64, String)>, Summary) {
        let s = sort(input.as_bytes(), options).unwrap();
        let summary = s.summary();
        let lines = s
            .map(|l| {
                let l = l.unwrap();
                (l.number, String::from_utf8(l.text).unwrap())
            })
            .collect();
        (lines, summary)
    }

    /// What a stable in-memory sort by the same key gives.
    fn stable(input: &str) -> Vec<(u64, String)> {
        let mut last = i64::MIN;
        let mut keyed: Vec<(i64, u64, String)> = Vec::new();
        for (i, line) in input.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let t = replay::line_time(line.as_bytes()).map_or(last, |(t, _)| t);
            last = last.max(t);
            keyed.push((t, i as u64 + 1, line.to_string()));
        }
        keyed.sort_by_key(|&(t, _, _)| t);
        keyed.into_iter().map(|(_, n, l)| (n, l)).collect()
    }

    #[test]
    fn equal_times_keep_file_order_in_memory_and_spilled() {
        let lines = [
            call(1, 30),
            call(2, 10),
            call(3, 30),
            call(4, 10),
            call(5, 20),
            call(6, 30),
            call(7, 10),
        ];
        let input = lines.join("\n") + "\n";
        let scratch = Scratch::new("equal");
        for budget in [DEFAULT_BUDGET, 1, 300] {
            let (out, summary) = sorted(&input, &scratch.options(budget));
            let numbers: Vec<u64> = out.iter().map(|(n, _)| *n).collect();
            assert_eq!(numbers, [2, 4, 7, 5, 1, 3, 6], "budget {budget}");
            assert_eq!(out, stable(&input));
            assert_eq!(summary.lines, 7);
            assert_eq!(summary.runs > 0, budget < DEFAULT_BUDGET, "{summary:?}");
        }
        assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
    }

    #[test]
    fn runs_are_spilled_and_merged_in_several_passes() {
        // 1,000 lines of about 90 bytes in runs of a few lines: more runs
        // than one pass merges.
        let input: String = (0..1000u32)
            .map(|i| call(i, (i * 7919) % 3600) + "\n")
            .collect();
        let scratch = Scratch::new("passes");
        let (out, summary) = sorted(&input, &scratch.options(600));
        assert!(summary.runs > FAN_IN as u64, "{summary:?}");
        assert!(summary.spilled > input.len() as u64, "{summary:?}");
        assert_eq!(out, stable(&input));
        assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
    }

    #[test]
    fn temporary_files_exist_while_merging_and_go_when_dropped() {
        let input: String = (0..200u32).rev().map(|i| call(i, i) + "\n").collect();
        let scratch = Scratch::new("dropped");
        let mut s = sort(input.as_bytes(), &scratch.options(1000)).unwrap();
        assert!(s.summary().runs > 1);
        let first = s.next().unwrap().unwrap();
        assert_eq!(first.number, 200);
        let dirs = scratch.entries();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        assert!(std::fs::read_dir(&dirs[0]).unwrap().count() > 1);
        // Dropped half read, as after an error of the reader.
        drop(s);
        assert!(scratch.entries().is_empty(), "{:?}", scratch.entries());
    }

    #[test]
    fn runs_left_by_a_killed_sort_are_removed_by_the_next_one_that_spills() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let scratch = Scratch::new("orphans");
        // Above any pid_max: no process has this number.
        let dead = scratch.0.join("sort-4294967295-1f-0.tmp");
        let alive = scratch
            .0
            .join(format!("sort-{}-2f-0.tmp", std::process::id()));
        let other = scratch.0.join("sort-results.jsonl");
        for dir in [&dead, &alive] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("run-0"), "a run").unwrap();
        }
        std::fs::write(&other, "not a sort's").unwrap();
        let input: String = (0..200u32).rev().map(|i| call(i, i) + "\n").collect();
        let s = sort(input.as_bytes(), &scratch.options(1000)).unwrap();
        assert!(s.summary().runs > 1);
        drop(s);
        let mut left = scratch.entries();
        left.sort();
        assert_eq!(left, [alive, other]);
    }

    #[test]
    fn a_sort_that_fits_in_memory_writes_no_file() {
        let input = format!("{}\n{}\n", call(1, 2), call(2, 1));
        let scratch = Scratch::new("memory");
        let s = sort(input.as_bytes(), &scratch.options(DEFAULT_BUDGET)).unwrap();
        assert_eq!(s.summary().runs, 0);
        assert!(scratch.entries().is_empty());
        let mut out = Vec::new();
        s.write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n{}\n", call(2, 1), call(1, 2))
        );
    }

    #[test]
    fn lines_without_a_time_are_kept_after_the_lines_before_them() {
        let input = [
            call(1, 50),
            "{broken".to_string(),
            call(2, 10),
            String::new(),
            r#"{"type":"track","userId":"u3","event":"E","timestamp":"yesterday"}"#.to_string(),
            call(4, 60),
            call(5, 50),
            "\u{ff} not JSON".to_string(),
            call(6, 5),
        ]
        .join("\n");
        let scratch = Scratch::new("untimed");
        for budget in [DEFAULT_BUDGET, 1] {
            let (out, summary) = sorted(&input, &scratch.options(budget));
            let numbers: Vec<u64> = out.iter().map(|(n, _)| *n).collect();
            // Lines 2 and 5 come after the 50 s of line 1, line 8 after the
            // 60 s of line 6; line 4 is blank.
            assert_eq!(numbers, [9, 3, 1, 2, 5, 7, 6, 8], "budget {budget}");
            assert_eq!(out, stable(&input));
            assert_eq!(summary.untimed, 3);
            assert_eq!(summary.blank, 1);
            assert_eq!(summary.lines, 8);
        }
        // Not UTF-8: kept byte for byte.
        let raw = [
            call(1, 9).as_bytes(),
            b"\n\xff\xfe\n",
            call(2, 1).as_bytes(),
        ]
        .concat();
        let s = sort(&raw[..], &scratch.options(1)).unwrap();
        let texts: Vec<Vec<u8>> = s.map(|l| l.unwrap().text).collect();
        assert_eq!(texts[2], b"\xff\xfe");
    }

    #[test]
    fn a_line_longer_than_the_budget_is_sorted_too() {
        let long = format!(
            r#"{{"type":"track","event":"E","userId":"u","timestamp":"2026-01-05T10:00:00Z","properties":{{"p":"{}"}}}}"#,
            "x".repeat(5000)
        );
        let input = format!("{}\n{long}\n{}\n", call(1, 9), call(2, 1));
        let scratch = Scratch::new("long");
        let (out, _) = sorted(&input, &scratch.options(100));
        let numbers: Vec<u64> = out.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [2, 3, 1]);
        assert_eq!(out[0].1, long);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let scratch = Scratch::new("unwritable");
        let blocker = scratch.0.join("file");
        std::fs::write(&blocker, "not a directory").unwrap();
        let input: String = (0..10u32).map(|i| call(i, 10 - i) + "\n").collect();
        let options = Options {
            budget: 1,
            dir: blocker.clone(),
        };
        let err = sort(input.as_bytes(), &options)
            .err()
            .expect("the sort fails");
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn a_broken_run_file_is_an_error_not_a_panic() {
        let scratch = Scratch::new("broken");
        // Runs longer than the merge's read buffers, so their ends are
        // read after they are cut.
        let input: String = (0..2000u32).map(|i| call(i, 3000 - i) + "\n").collect();
        let mut s = sort(input.as_bytes(), &scratch.options(50_000)).unwrap();
        assert!(s.summary().runs > 1);
        let dir = scratch.entries().remove(0);
        for run in std::fs::read_dir(&dir).unwrap() {
            let run = run.unwrap().path();
            let len = std::fs::metadata(&run).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&run)
                .unwrap()
                .set_len(len - 3)
                .unwrap();
        }
        let err = s.find_map(Result::err).expect("a read fails");
        assert!(err.to_string().contains("ends after"), "{err}");
        drop(s);
        assert!(scratch.entries().is_empty());
    }

    proptest! {
        /// Any lines, any budget: the same as a stable sort in memory, and
        /// nothing left on disk.
        #[test]
        fn the_same_as_a_stable_sort_in_memory(
            lines in proptest::collection::vec((0u32..40, 0u8..10), 0..200),
            budget in 1usize..3000,
        ) {
            // Times from a small range, so many are equal; one line in ten
            // has no readable time.
            let input: String = lines
                .iter()
                .enumerate()
                .map(|(i, &(t, kind))| match kind {
                    0 => format!("{{\"broken {i}\n"),
                    1 => "  \n".to_string(),
                    _ => call(i as u32, t) + "\n",
                })
                .collect();
            let scratch = Scratch::new("prop");
            let (out, summary) = sorted(&input, &scratch.options(budget));
            prop_assert_eq!(&out, &stable(&input));
            prop_assert_eq!(summary.lines as usize, out.len());
            prop_assert!(scratch.entries().is_empty());
        }
    }
}
