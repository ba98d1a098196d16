//! The outbox: one JSON line per delivered message, appended to a file.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{DeliveryError, Outgoing, Plugin, Receipt};

/// Whether opening an outbox keeps what the file already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutboxMode {
    /// Start an empty outbox, discarding any earlier lines.
    Truncate,
    /// Add to the end of the outbox, keeping earlier lines.
    #[default]
    Append,
}

/// A plugin that appends each message as one JSON line to a file.
///
/// Writes are buffered; call [`Plugin::flush`] to make them durable. Lines
/// still buffered when the value is dropped are written on a best-effort
/// basis, with any error lost, so callers should flush before dropping.
#[derive(Debug)]
pub struct OutboxFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// A message's line as it is written: kept between messages, so that
    /// a run of many sends allocates none.
    line: Vec<u8>,
}

impl OutboxFile {
    /// Opens `path` as an empty outbox (creating parent directories), discarding old lines.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, OutboxError> {
        Self::open(path, OutboxMode::Truncate)
    }

    /// Opens `path` as an outbox that keeps its old lines (creating it and its parents if needed).
    pub fn append(path: impl AsRef<Path>) -> Result<Self, OutboxError> {
        Self::open(path, OutboxMode::Append)
    }

    /// Opens `path` in the given mode; [`create`](Self::create) and [`append`](Self::append) are shorthands.
    pub fn open(path: impl AsRef<Path>, mode: OutboxMode) -> Result<Self, OutboxError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        let mut options = OpenOptions::new();
        match mode {
            OutboxMode::Truncate => options.write(true).create(true).truncate(true),
            // Read access is only to look at the last byte (see below).
            OutboxMode::Append => options.read(true).append(true).create(true),
        };
        let mut file = options.open(&path).map_err(io_err)?;
        if mode == OutboxMode::Append && !ends_with_newline(&mut file).map_err(io_err)? {
            // A crash mid-write can leave a partial last line; starting on a
            // fresh line keeps that damage to one line instead of two.
            file.write_all(b"\n").map_err(io_err)?;
        }
        Ok(OutboxFile {
            path,
            out: BufWriter::new(file),
            line: Vec::new(),
        })
    }

    /// The file this outbox writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_failure(&self, what: &str, e: io::Error) -> DeliveryError {
        DeliveryError::permanent(1, format!("{what} {}: {e}", self.path.display()))
    }
}

/// True for an empty file or one whose last byte is a newline.
fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

impl Plugin for OutboxFile {
    fn name(&self) -> &str {
        "outbox"
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        // Made whole before any of it is written: a message that cannot be
        // serialized leaves no part of itself in the outbox.
        self.line.clear();
        serde_json::to_writer(&mut self.line, msg).map_err(|e| {
            DeliveryError::permanent(1, format!("cannot serialize message as JSON: {e}"))
        })?;
        self.line.push(b'\n');
        if let Err(e) = self.out.write_all(&self.line) {
            return Err(self.io_failure("writing outbox", e));
        }
        Ok(Receipt::first_try())
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        self.out
            .flush()
            .map_err(|e| self.io_failure("flushing outbox", e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| self.io_failure("syncing outbox", e))
    }
}

/// Reads every message of an outbox file, in order; blank lines are skipped.
pub fn read_outbox(path: impl AsRef<Path>) -> Result<Vec<Outgoing>, OutboxError> {
    let path = path.as_ref();
    let io_err = |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut messages = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let msg = serde_json::from_str(&line).map_err(|source| OutboxError::Parse {
            path: path.to_path_buf(),
            line: index + 1,
            source,
        })?;
        messages.push(msg);
    }
    Ok(messages)
}

/// Why an outbox could not be opened or read.
#[derive(Debug)]
pub enum OutboxError {
    /// The file could not be created, opened, read or written.
    Io {
        /// The outbox file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line is not a valid outbox message.
    Parse {
        /// The outbox file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What was wrong with it.
        source: serde_json::Error,
    },
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::Io { path, source } => {
                write!(f, "outbox {}: {source}", path.display())
            }
            OutboxError::Parse { path, line, source } => {
                write!(
                    f,
                    "outbox {}:{line}: not a valid message: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for OutboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutboxError::Io { source, .. } => Some(source),
            OutboxError::Parse { source, .. } => Some(source),
        }
    }
}
