//! Shared test fixtures: sample messages, a scripted local HTTP server and
//! a local SMTP server.

#![allow(dead_code)]

pub mod providers;
pub mod smtp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use nudge_channels::{Outgoing, Purpose};
use serde_json::json;

/// A sample message; `n` varies the customer, address and key.
pub fn message(n: u32) -> Outgoing {
    let content = json!({
        "subject": format!("Welcome, customer {n}"),
        "body": "<p>Hi &amp; welcome</p>\nLine two: \"quoted\" ünïcödé",
    });
    Outgoing {
        at: format!("2024-05-0{n}T10:00:00Z"),
        flow: "onboarding".into(),
        flow_version: "3f2a9c".into(),
        message: "welcome".into(),
        channel: "email".into(),
        customer: format!("cus_{n}"),
        to: format!("user{n}@example.com"),
        idempotency_key: format!("onboarding:cus_{n}:step-2"),
        content: content.as_object().cloned().unwrap_or_default(),
        purpose: Purpose::Marketing,
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of header `name` (case-insensitive), if sent exactly once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(first.1.as_str())
    }
}

/// What the server does with one connection.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with this status and body (and extra headers), then close.
    Status(u16, &'static str, Vec<(&'static str, &'static str)>),
    /// Read the request, then never answer (until the test ends).
    Hang,
}

/// Answers with `code`, a short body and no extra headers.
pub fn status(code: u16) -> Reply {
    Reply::Status(code, "", Vec::new())
}

/// A local HTTP server answering a fixed script, one connection per entry.
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    // Dropping this releases connections held by `Reply::Hang`.
    _release: mpsc::Sender<()>,
}

impl Server {
    /// Starts serving `script` on 127.0.0.1 at a free port; the thread ends
    /// once the script is used up (or the test process exits).
    pub fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = mpsc::channel::<()>();
        let seen = Arc::clone(&requests);
        thread::spawn(move || {
            let mut held = Vec::new();
            for reply in script {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                // Recorded before answering, so the client never sees a
                // response whose request is missing from the record.
                seen.lock().unwrap().push(request);
                match reply {
                    Reply::Status(code, body, headers) => {
                        let _ = respond(stream, code, body, &headers);
                    }
                    Reply::Hang => held.push(stream),
                }
            }
            // Keep hung connections open until the test drops the server.
            let _ = released.recv();
        });
        Server {
            addr,
            requests,
            _release: release,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn respond(
    mut stream: TcpStream,
    code: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
