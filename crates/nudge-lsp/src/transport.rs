//! The stdio transport: reads `Content-Length` framed JSON-RPC messages
//! from a byte stream and writes the server's messages back.
//!
//! `lsp-server`'s own stdio transport stops at the first malformed frame
//! and allocates whatever length a header claims, and its rendezvous
//! channel hands over one message at a time, so the server can never see a
//! burst as a whole. This one answers a malformed frame with a JSON-RPC
//! error (`-32700` parse error, `-32600` invalid request) and goes on with
//! the next frame, refuses a body longer than [`MAX_MESSAGE`] before
//! allocating it, and queues every message read on an unbounded channel so
//! that the server can drain a burst before it analyses.

use std::io::{self, BufRead, Read, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use lsp_server::{Connection, ErrorCode, Message};
use serde_json::{Value, json};

/// The largest message body accepted, in bytes. A larger one is refused
/// (answered with a parse error) and skipped without being held in memory.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The longest header line kept; longer lines are garbage and skipped.
const MAX_HEADER_LINE: usize = 8 * 1024;

/// What one frame of input turned out to be.
#[derive(Debug)]
pub enum Frame {
    /// A well-formed message.
    Message(Message),
    /// A frame that cannot be handled, with the error to answer it with.
    Invalid(FrameError),
    /// The end of the input.
    Eof,
}

/// Why a frame was refused: the JSON-RPC error code, a message and the
/// request id when one could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// `-32700` (parse error) or `-32600` (invalid request).
    pub code: i32,
    /// What was wrong, for the client's log.
    pub message: String,
    /// The id of the request, or `null` when it could not be read.
    pub id: Value,
}

impl FrameError {
    fn parse(message: impl Into<String>) -> FrameError {
        FrameError {
            code: ErrorCode::ParseError as i32,
            message: message.into(),
            id: Value::Null,
        }
    }

    fn invalid(message: impl Into<String>, id: Value) -> FrameError {
        FrameError {
            code: ErrorCode::InvalidRequest as i32,
            message: message.into(),
            id,
        }
    }

    /// The JSON-RPC error response for this frame.
    pub fn response(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        })
    }
}

/// Reads frames from a byte stream, recovering after malformed ones.
pub struct FrameReader<R> {
    input: R,
    max_message: usize,
    /// The length of a body still to read, after garbage was reported.
    pending: Option<usize>,
    /// The length of a refused body still to drop.
    skip: Option<u64>,
}

impl<R: BufRead> FrameReader<R> {
    /// A reader that refuses bodies longer than `max_message` bytes.
    pub fn new(input: R, max_message: usize) -> FrameReader<R> {
        FrameReader {
            input,
            max_message,
            pending: None,
            skip: None,
        }
    }

    /// The next frame. I/O errors other than the end of input are returned.
    pub fn next_frame(&mut self) -> io::Result<Frame> {
        if let Some(n) = self.skip.take() {
            // Read and dropped in small pieces, so the next frame is found again.
            io::copy(&mut (&mut self.input).take(n), &mut io::sink())?;
        }
        if let Some(n) = self.pending.take() {
            return self.body(n);
        }
        let mut length: Option<Result<usize, String>> = None;
        let mut garbage = false;
        let mut saw_header = false;
        loop {
            let Some(line) = self.header_line()? else {
                return Ok(Frame::Eof);
            };
            let line = match line {
                Line::TooLong => {
                    garbage = true;
                    continue;
                }
                Line::Text(l) => l,
            };
            let trimmed = trim_line_end(&line);
            if trimmed.is_empty() {
                if !saw_header && !garbage {
                    // Blank lines between frames are harmless.
                    continue;
                }
                break;
            }
            // A header may follow garbage on the same line (a body without
            // a header runs into the next frame's `Content-Length`).
            let lower = trimmed.to_ascii_lowercase();
            let rest = match find_bytes(&lower, b"content-length:") {
                Some(i) if i > 0 => {
                    garbage = true;
                    &trimmed[i..]
                }
                _ => trimmed,
            };
            match parse_header(rest) {
                Some((name, value)) if name.eq_ignore_ascii_case("content-length") => {
                    saw_header = true;
                    length = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| format!("bad Content-Length `{}`", value.trim())),
                    );
                }
                Some(_) => saw_header = true,
                None => garbage = true,
            }
        }
        if garbage {
            // Text that is not a header came first. When a valid header
            // followed, its body is the next frame: answer the garbage now
            // and read that body on the next call.
            if let Some(Ok(n)) = length {
                self.pending = Some(n);
                return Ok(Frame::Invalid(FrameError::parse(
                    "malformed input before a Content-Length header",
                )));
            }
            return Ok(Frame::Invalid(FrameError::parse(
                "malformed header: expected `Content-Length: N` and a blank line",
            )));
        }
        match length {
            None => Ok(Frame::Invalid(FrameError::parse(
                "a message without a Content-Length header",
            ))),
            Some(Err(e)) => Ok(Frame::Invalid(FrameError::parse(e))),
            Some(Ok(n)) => self.body(n),
        }
    }

    fn body(&mut self, n: usize) -> io::Result<Frame> {
        if n > self.max_message {
            // Refused before allocating, and answered before the body is
            // dropped: a bogus length may swallow the rest of the input.
            self.skip = Some(n as u64);
            return Ok(Frame::Invalid(FrameError::parse(format!(
                "a message of {n} bytes is longer than the limit of {} bytes",
                self.max_message
            ))));
        }
        let mut body = vec![0; n];
        match self.input.read_exact(&mut body) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Frame::Eof),
            Err(e) => return Err(e),
        }
        Ok(decode(&body))
    }

    /// One header line, without allocating more than [`MAX_HEADER_LINE`].
    fn header_line(&mut self) -> io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if line.is_empty() && !too_long {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !too_long {
                if line.len() + take > MAX_HEADER_LINE {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&buf[..take]);
                }
            }
            self.input.consume(take);
            if done {
                break;
            }
        }
        Ok(Some(if too_long {
            Line::TooLong
        } else {
            Line::Text(line)
        }))
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &line[..end]
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Name: value`, with an ASCII token as the name.
fn parse_header(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    token.then_some((name, value))
}

/// Decodes one message body: JSON, an object, and the shape of a request,
/// a response or a notification.
pub fn decode(body: &[u8]) -> Frame {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Frame::Invalid(FrameError::parse(format!(
                "the message is not valid UTF-8: {e}"
            )));
        }
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Frame::Invalid(FrameError::parse(format!(
                "the message is not valid JSON: {e}"
            )));
        }
    };
    let Value::Object(obj) = &value else {
        let what = if value.is_array() {
            "a batch (JSON array); the Language Server Protocol sends one message per frame"
        } else {
            "not a JSON object"
        };
        return Frame::Invalid(FrameError::invalid(
            format!("the message is {what}"),
            Value::Null,
        ));
    };
    // The id is echoed only when it is one JSON-RPC allows.
    let id = obj
        .get("id")
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64())
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(method) = obj.get("method")
        && !method.is_string()
    {
        return Frame::Invalid(FrameError::invalid("`method` must be a string", id));
    }
    if obj.get("method").is_none() && !(obj.contains_key("result") || obj.contains_key("error")) {
        return Frame::Invalid(FrameError::invalid(
            "neither a request, a notification nor a response",
            id,
        ));
    }
    match serde_json::from_value::<Message>(value.clone()) {
        Ok(msg) => Frame::Message(msg),
        Err(e) => Frame::Invalid(FrameError::invalid(format!("not a valid message: {e}"), id)),
    }
}

/// The threads of a stdio transport; join them after the server returned.
pub struct IoThreads {
    reader: JoinHandle<io::Result<()>>,
    writer: JoinHandle<io::Result<()>>,
}

impl IoThreads {
    /// Waits for the writer to flush every message and the reader to stop.
    ///
    /// The reader stops after `exit` or at the end of the input; a client
    /// that keeps stdin open after `exit` leaves it blocked, so it is only
    /// joined when it has finished.
    pub fn join(self) -> io::Result<()> {
        let written = self
            .writer
            .join()
            .map_err(|_| io::Error::other("the writer thread panicked"))?;
        if self.reader.is_finished() {
            self.reader
                .join()
                .map_err(|_| io::Error::other("the reader thread panicked"))??;
        }
        written
    }
}

/// A connection over a byte stream pair: a reader thread that turns frames
/// into messages (answering malformed ones itself) and a writer thread.
pub fn connect<R, W>(input: R, output: W, max_message: usize) -> (Connection, IoThreads)
where
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    let (in_tx, in_rx) = unbounded::<Message>();
    let (out_tx, out_rx) = unbounded::<Message>();
    let (raw_tx, raw_rx) = unbounded::<Value>();
    let reader = std::thread::Builder::new()
        .name("nudge-lsp-reader".into())
        .spawn(move || read_loop(FrameReader::new(input, max_message), in_tx, raw_tx))
        .map_err(io::Error::other);
    let writer = std::thread::Builder::new()
        .name("nudge-lsp-writer".into())
        .spawn(move || write_loop(output, out_rx, raw_rx))
        .map_err(io::Error::other);
    let (reader, writer) = match (reader, writer) {
        (Ok(r), Ok(w)) => (r, w),
        // Without threads there is no server; report it when joining.
        (r, w) => {
            let failed = |e: io::Error| std::thread::spawn(move || Err(e));
            (r.unwrap_or_else(failed), w.unwrap_or_else(failed))
        }
    };
    (
        Connection {
            sender: out_tx,
            receiver: in_rx,
        },
        IoThreads { reader, writer },
    )
}

/// A connection on this process's stdin and stdout.
pub fn stdio() -> (Connection, IoThreads) {
    connect(io::BufReader::new(io::stdin()), io::stdout(), MAX_MESSAGE)
}

fn read_loop<R: BufRead>(
    mut frames: FrameReader<R>,
    messages: Sender<Message>,
    errors: Sender<Value>,
) -> io::Result<()> {
    loop {
        match frames.next_frame()? {
            Frame::Eof => return Ok(()),
            Frame::Invalid(e) => {
                // The writer is gone only when the server has stopped.
                if errors.send(e.response()).is_err() {
                    return Ok(());
                }
            }
            Frame::Message(msg) => {
                let exit = matches!(&msg, Message::Notification(n) if n.method == "exit");
                if messages.send(msg).is_err() || exit {
                    return Ok(());
                }
            }
        }
    }
}

fn write_loop<W: Write>(
    mut out: W,
    messages: Receiver<Message>,
    errors: Receiver<Value>,
) -> io::Result<()> {
    let mut errors_open = true;
    loop {
        if errors_open {
            select! {
                recv(messages) -> msg => match msg {
                    Ok(msg) => msg.write(&mut out)?,
                    Err(_) => break,
                },
                recv(errors) -> err => match err {
                    Ok(v) => write_raw(&mut out, &v)?,
                    Err(_) => errors_open = false,
                },
            }
        } else {
            match messages.recv() {
                Ok(msg) => msg.write(&mut out)?,
                Err(_) => break,
            }
        }
    }
    // Errors for frames read just before the server stopped still go out.
    while let Ok(v) = errors.try_recv() {
        write_raw(&mut out, &v)?;
    }
    out.flush()
}

fn write_raw<W: Write>(out: &mut W, value: &Value) -> io::Result<()> {
    let body = serde_json::to_string(value)?;
    write!(out, "Content-Length: {}\r\n\r\n{body}", body.len())?;
    out.flush()
}
