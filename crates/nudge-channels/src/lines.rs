//! Outbox lines written to stdout or any other writer.

use std::io::{self, Write};

use crate::{DeliveryError, Outgoing, Plugin, Receipt};

/// A plugin that writes each message as one outbox JSON line to a writer.
///
/// Each line goes out in a single write, so lines from one plugin never
/// interleave mid-line; buffering is left to the writer.
#[derive(Debug)]
pub struct Lines<W: Write + Send> {
    name: String,
    out: W,
}

impl Lines<io::Stdout> {
    /// A plugin named "stdout" that prints each message to standard output.
    pub fn stdout() -> Self {
        Lines::with_name("stdout", io::stdout())
    }
}

impl<W: Write + Send> Lines<W> {
    /// A plugin named "lines" that writes to `out`.
    pub fn new(out: W) -> Self {
        Lines::with_name("lines", out)
    }

    /// A plugin that writes to `out` and reports itself under `name`.
    pub fn with_name(name: impl Into<String>, out: W) -> Self {
        Lines {
            name: name.into(),
            out,
        }
    }

    /// The writer, e.g. to inspect what was written.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Gives the writer back, without flushing it.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Plugin for Lines<W> {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| {
            DeliveryError::permanent(1, format!("cannot serialize message as JSON: {e}"))
        })?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| DeliveryError::permanent(1, format!("writing to {}: {e}", self.name)))?;
        Ok(Receipt::first_try())
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        self.out
            .flush()
            .map_err(|e| DeliveryError::permanent(1, format!("flushing {}: {e}", self.name)))
    }
}
