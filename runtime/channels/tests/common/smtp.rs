//! A small SMTP server on 127.0.0.1 that records what it receives: enough
//! of RFC 5321 (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for a
//! real client to deliver real MIME to it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine as _;

/// One message as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// The `AUTH PLAIN` user and password, if the client authenticated.
    pub auth: Option<(String, String)>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
}

/// How the server answers the end of one message's DATA.
#[derive(Clone, Copy, Debug)]
pub enum DataReply {
    /// Accept it (and record it).
    Accept,
    /// Answer with this code (4xx or 5xx) and do not record it.
    Refuse(u16),
    /// Read it, then say nothing for this long.
    Stall(Duration),
}

/// The server; it answers DATA by the script, then accepts every message.
pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    pub fn start(script: Vec<DataReply>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let seen = Arc::clone(&received);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = Arc::clone(&seen);
                let script = Arc::clone(&script);
                thread::spawn(move || {
                    let _ = session(stream, &seen, &script);
                });
            }
        });
        SmtpServer { addr, received }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type Script = Mutex<std::vec::IntoIter<DataReply>>;

fn session(stream: TcpStream, seen: &Mutex<Vec<Received>>, script: &Script) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    // Each reply in one write: split in two, the second half would wait
    // for the client's delayed ACK (Nagle), 40 ms a reply.
    let mut say = |line: &str| -> std::io::Result<()> {
        out.write_all(format!("{line}\r\n").as_bytes())?;
        out.flush()
    };
    say("220 localhost ESMTP test server")?;
    let mut current = Received::default();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say("250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN")?;
        } else if let Some(encoded) = upper.strip_prefix("AUTH PLAIN ").map(|_| &line[11..]) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if parts.len() == 3 {
                auth = Some((parts[1].clone(), parts[2].clone()));
                say("235 2.7.0 Authentication successful")?;
            } else {
                say("535 5.7.8 Authentication credentials invalid")?;
            }
        } else if upper.starts_with("MAIL FROM:") {
            current = Received {
                auth: auth.clone(),
                mail_from: address(&line[10..]),
                ..Received::default()
            };
            say("250 2.1.0 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            current.rcpt_to.push(address(&line[8..]));
            say("250 2.1.5 OK")?;
        } else if upper == "DATA" {
            say("354 End data with <CR><LF>.<CR><LF>")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if reader.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let unstuffed = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(unstuffed);
            }
            current.data = data;
            let reply = script.lock().unwrap().next().unwrap_or(DataReply::Accept);
            match reply {
                DataReply::Accept => {
                    seen.lock().unwrap().push(std::mem::take(&mut current));
                    say("250 2.0.0 Ok: queued as 1234")?;
                }
                DataReply::Refuse(code) => say(&format!("{code} refused by the test script"))?,
                DataReply::Stall(d) => {
                    thread::sleep(d);
                    return Ok(());
                }
            }
        } else if upper == "QUIT" {
            say("221 2.0.0 Bye")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            say("250 2.0.0 OK")?;
        } else {
            say("502 5.5.2 Command not recognized")?;
        }
    }
}

/// `<a@b> SIZE=123` -> `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let end = arg.find('>').unwrap_or(arg.len());
    arg[..end].trim_start_matches('<').to_string()
}
