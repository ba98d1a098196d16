//! A small SMTP server on 127.0.0.1 that records what it receives: enough
//! of RFC 5321 (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP,
//! QUIT) for a real client to deliver real MIME to it, in the clear, after
//! STARTTLS or over implicit TLS with a self-signed certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
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

/// How the server secures its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    Plain,
    /// Offers STARTTLS and refuses mail until the client has used it.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// The server; it answers DATA by the script, then accepts every message.
pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// The PEM of the server's self-signed certificate (for 127.0.0.1).
    pub certificate_pem: String,
}

impl SmtpServer {
    pub fn start(script: Vec<DataReply>) -> SmtpServer {
        Self::start_with(Security::Plain, script)
    }

    pub fn start_with(security: Security, script: Vec<DataReply>) -> SmtpServer {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let certificate_pem = certified.cert.pem();
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certified.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(
                    certified.signing_key.serialize_der().into(),
                ),
            )
            .unwrap(),
        );
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
                let tls = Arc::clone(&tls);
                thread::spawn(move || {
                    let _ = match security {
                        Security::Plain => session(Box::new(stream), &seen, &script, None, true),
                        Security::StartTls => {
                            session(Box::new(stream), &seen, &script, Some(tls), true)
                        }
                        Security::Implicit => match rustls::ServerConnection::new(tls) {
                            Ok(conn) => session(
                                Box::new(rustls::StreamOwned::new(conn, stream)),
                                &seen,
                                &script,
                                None,
                                true,
                            ),
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        SmtpServer {
            addr,
            received,
            certificate_pem,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type Script = Mutex<std::vec::IntoIter<DataReply>>;

/// A connection, plain or TLS.
trait Stream: Read + Write {}

impl<S: Read + Write> Stream for S {}

/// Speaks SMTP on `stream`; with `starttls`, offers STARTTLS and carries on
/// over TLS once the client takes it (and refuses mail before).
fn session(
    stream: Box<dyn Stream>,
    seen: &Mutex<Vec<Received>>,
    script: &Script,
    starttls: Option<Arc<rustls::ServerConfig>>,
    greet: bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    // Each reply in one write: split in two, the second half would wait
    // for the client's delayed ACK (Nagle), 40 ms a reply.
    fn say(reader: &mut BufReader<Box<dyn Stream>>, line: &str) -> std::io::Result<()> {
        let out = reader.get_mut();
        out.write_all(format!("{line}\r\n").as_bytes())?;
        out.flush()
    }
    if greet {
        say(&mut reader, "220 localhost ESMTP test server")?;
    }
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
            let offer = if starttls.is_some() {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            say(
                &mut reader,
                &format!("250-localhost\r\n{offer}250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN"),
            )?;
        } else if upper == "STARTTLS" && starttls.is_some() {
            say(&mut reader, "220 2.0.0 Ready to start TLS")?;
            let Some(config) = starttls else {
                return Ok(());
            };
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return Ok(());
            };
            // The client waits for the 220, so nothing is buffered yet.
            let tcp = reader.into_inner();
            let tls = rustls::StreamOwned::new(conn, tcp);
            return session(Box::new(tls), seen, script, None, false);
        } else if starttls.is_some() && upper.starts_with("MAIL FROM:") {
            say(&mut reader, "530 5.7.0 Must issue a STARTTLS command first")?;
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
                say(&mut reader, "235 2.7.0 Authentication successful")?;
            } else {
                say(&mut reader, "535 5.7.8 Authentication credentials invalid")?;
            }
        } else if upper.starts_with("MAIL FROM:") {
            current = Received {
                auth: auth.clone(),
                mail_from: address(&line[10..]),
                ..Received::default()
            };
            say(&mut reader, "250 2.1.0 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            current.rcpt_to.push(address(&line[8..]));
            say(&mut reader, "250 2.1.5 OK")?;
        } else if upper == "DATA" {
            say(&mut reader, "354 End data with <CR><LF>.<CR><LF>")?;
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
                    say(&mut reader, "250 2.0.0 Ok: queued as 1234")?;
                }
                DataReply::Refuse(code) => {
                    say(&mut reader, &format!("{code} refused by the test script"))?
                }
                DataReply::Stall(d) => {
                    thread::sleep(d);
                    return Ok(());
                }
            }
        } else if upper == "QUIT" {
            say(&mut reader, "221 2.0.0 Bye")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            say(&mut reader, "250 2.0.0 OK")?;
        } else {
            say(&mut reader, "502 5.5.2 Command not recognized")?;
        }
    }
}

/// `<a@b> SIZE=123` -> `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let end = arg.find('>').unwrap_or(arg.len());
    arg[..end].trim_start_matches('<').to_string()
}
