//! End-to-end attacks on `nudge serve` and `nudge run` through the real
//! binary: each tries one way a client or a hostile call could hang the
//! server, send early or flood, and checks that it is refused, clamped or
//! cut off, and counted.

mod common;
use common::{Server, WRITE_KEY, basic_auth, receipt_project, start_server_with};

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts a server for `project` whose nudge.toml holds `serve` under `[serve]`.
fn server_with(project: &Path, serve: &str) -> Server {
    std::fs::write(project.join("nudge.toml"), format!("[serve]\n{serve}")).unwrap();
    start_server_with(project, &["--write-key", WRITE_KEY, "--in-memory"], &[])
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent, and when it closed.
fn read_until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

fn metric_line(server: &Server, prefix: &str) -> String {
    server
        .metrics()
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .to_string()
}

#[test]
fn slow_headers_and_a_slow_body_are_cut_off_within_their_limits() {
    let (_tmp, project) = receipt_project();
    let server = server_with(
        &project,
        "header_read_timeout = \"2s\"\nbody_read_timeout = \"2s\"\nidle_timeout = \"60s\"\n",
    );

    // Slowloris: a header line every half second, never the blank line.
    let mut slow = connect(&server);
    let started = Instant::now();
    slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut closed = None;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(250));
        if slow
            .write_all(format!("X-Drip-{i}: y\r\n").as_bytes())
            .is_err()
        {
            closed = Some(Instant::now());
            break;
        }
        slow.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 64];
        let ended = matches!(slow.read(&mut probe), Ok(0))
            || matches!(slow.read(&mut probe), Err(e) if e.kind() != ErrorKind::WouldBlock);
        slow.set_nonblocking(false).unwrap();
        if ended {
            closed = Some(Instant::now());
            break;
        }
    }
    let took = closed.expect("a slow-header client is disconnected") - started;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "closed after {took:?}, the header limit is 2s"
    );

    // A body that stops half way is answered 408 once the body limit passes.
    let mut stalled = connect(&server);
    let started = Instant::now();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"userId\":",
        basic_auth()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    let (answer, at) = read_until_closed(&mut stalled);
    let took = at - started;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a stalled body is answered 408: {answer:?}"
    );
    assert!(answer.contains("took longer than 2s"), "{answer}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "answered after {took:?}, the body limit is 2s"
    );

    assert_eq!(
        metric_line(&server, "nudge_http_timeouts_total{limit=\"body\"}"),
        "nudge_http_timeouts_total{limit=\"body\"} 1"
    );
    assert_eq!(
        metric_line(&server, "nudge_http_timeouts_total{limit=\"header\"}"),
        "nudge_http_timeouts_total{limit=\"header\"} 1"
    );
    server.terminate();
}

#[test]
fn an_idle_kept_alive_connection_is_closed_within_the_idle_limit() {
    let (_tmp, project) = receipt_project();
    let server = server_with(
        &project,
        "idle_timeout = \"1s\"\nheader_read_timeout = \"60s\"\n",
    );
    let mut conn = connect(&server);
    // One request on a kept-alive connection, then silence.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answered_from = Instant::now();
    let (answer, at) = read_until_closed(&mut conn);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let idle = at - answered_from;
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle, the limit is 1s"
    );
    // A connection that never sends a byte goes the same way.
    let mut silent = connect(&server);
    let started = Instant::now();
    let (nothing, at) = read_until_closed(&mut silent);
    assert_eq!(nothing, "");
    assert!(at - started < Duration::from_secs(4), "{:?}", at - started);
    let idle = metric_line(&server, "nudge_http_timeouts_total{limit=\"idle\"}");
    assert!(
        idle.ends_with(" 2") || idle.ends_with(" 3"),
        "both idle connections are counted: {idle}"
    );
    server.terminate();
}
