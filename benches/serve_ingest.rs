//! Ingest throughput of `nudge serve` over loopback HTTP, on the durable store.
//!
//! `cargo bench --bench serve_ingest` starts the release `nudge` binary on a
//! fresh copy of `examples/cart_recovery` and posts a generated stream to it
//! with a bounded load generator: a few keep-alive connections, each with at
//! most one request in flight, taking consecutive batches of the time-sorted
//! stream from a shared queue. It reports the wall time from the first
//! request to the last 200, events and requests per second, request latency
//! (p50, p99, max), the server's commits (from `GET /metrics`) and where the
//! CPU went (per server thread, and the client, from `/proc` on Linux).
//!
//! Four runs:
//!
//! - `stub`: the same requests against a trivial in-process HTTP responder,
//!   so the client's own ceiling is on the table next to the server's;
//! - `batch`: `POST /v1/batch` with `NUDGE_BENCH_BATCH` calls per request
//!   over `NUDGE_BENCH_CONNECTIONS` connections;
//! - `single`: one call per request (`/v1/track`, `/v1/page`, ...) over one
//!   connection, to show the cost of a request on its own;
//! - `profile`: `NUDGE_BENCH_PROFILE_EVENTS` calls posted to a server whose
//!   profile API is on, then `NUDGE_BENCH_PROFILE_READS` reads of
//!   `GET /v1/profiles/{id}` over the customers they made, round-robin
//!   (`profile_recs`: the same reads with `?recommendations=4`)
//!   (only the reads are timed).
//!
//! Settings (environment variables):
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `NUDGE_BENCH_EVENTS` | 200000 | events of the `stub` and `batch` runs |
//! | `NUDGE_BENCH_CONNECTIONS` | 4 | concurrent connections of the `batch` run |
//! | `NUDGE_BENCH_BATCH` | 100 | calls per `/v1/batch` request |
//! | `NUDGE_BENCH_SINGLE_EVENTS` | 20000 | events of the `single` run |
//! | `NUDGE_BENCH_START` | 2030-01-07 | the stream's first instant (RFC 3339 or a date) |
//! | `NUDGE_BENCH_PROFILE_EVENTS` | 20000 | events posted before the `profile` run reads |
//! | `NUDGE_BENCH_PROFILE_READS` | 20000 | `GET /v1/profiles/{id}` requests of the `profile` run |
//! | `NUDGE_BENCH_CHECKPOINT_EVERY` | the project's | `[runtime] checkpoint_every` of the `batch` and `single` runs |
//!
//! A name after `--` runs only the runs whose name contains it:
//! `cargo bench --bench serve_ingest -- single`.
//!
//! The stream starts in the future so that the wall clock never overtakes
//! event time: the server's once-a-second tick then never moves the clock,
//! and every call is applied at its own timestamp, as `nudge run` would.
//! The bench asserts that every request got a 200 and that the server's
//! `nudge_events_total` equals the number of calls sent, so a fast figure
//! cannot come from refused or lost requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The write key the server is started with.
const KEY: &str = "bench-key";
/// An example project whose flows use the events `nudge gen` writes.
const PROJECT: &str = "cart_recovery";
/// The server refuses bodies over 512 KB (Segment's limit).
const MAX_BODY: usize = 512 * 1024;

/// The bench's settings, from the environment.
struct Settings {
    events: u64,
    connections: usize,
    batch: usize,
    single_events: u64,
    profile_events: u64,
    profile_reads: usize,
    start: chrono::DateTime<chrono::Utc>,
}

impl Settings {
    fn from_env() -> Settings {
        let start = std::env::var("NUDGE_BENCH_START").unwrap_or_else(|_| "2030-01-07".into());
        let start = nudge_gen::parse_start(&start).expect("NUDGE_BENCH_START: a date or RFC 3339");
        Settings {
            events: var("NUDGE_BENCH_EVENTS", 200_000),
            connections: var("NUDGE_BENCH_CONNECTIONS", 4),
            batch: var("NUDGE_BENCH_BATCH", 100),
            single_events: var("NUDGE_BENCH_SINGLE_EVENTS", 20_000),
            profile_events: var("NUDGE_BENCH_PROFILE_EVENTS", 20_000),
            profile_reads: var("NUDGE_BENCH_PROFILE_READS", 20_000),
            start,
        }
    }
}

/// A numeric setting; a value that does not parse is an error, not the default,
/// so that a typo cannot silently bench something else.
fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// One generated call: its time, its type and its JSON line.
struct Call {
    at: i64,
    kind: String,
    line: String,
}

/// `events` generated calls, sorted by timestamp (stable, so calls with the
/// same time keep the generator's order).
fn stream(events: u64, start: chrono::DateTime<chrono::Utc>) -> Vec<Call> {
    let mut config = nudge_gen::GenConfig::new(events);
    config.start = start;
    let mut bytes = Vec::new();
    nudge_gen::generate(&config, &mut bytes).expect("generation succeeds");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let mut calls: Vec<Call> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("generated lines parse");
            let time = v["timestamp"]
                .as_str()
                .expect("generated calls have a timestamp");
            let at = chrono::DateTime::parse_from_rfc3339(time)
                .expect("an RFC 3339 timestamp")
                .timestamp_millis();
            let kind = v["type"].as_str().expect("generated calls have a type");
            Call {
                at,
                kind: kind.to_string(),
                line: line.to_string(),
            }
        })
        .collect();
    calls.sort_by_key(|c| c.at);
    assert!(
        calls.first().map_or(i64::MAX, |c| c.at)
            > chrono::Utc::now().timestamp_millis() + 86_400_000,
        "NUDGE_BENCH_START must be at least a day in the future: the wall clock must not overtake the stream"
    );
    calls
}

/// A request ready to write: the whole HTTP/1.1 message, built before the
/// clock starts so that the client only writes bytes while timed.
struct Request {
    bytes: Vec<u8>,
    calls: usize,
    /// What a good answer's body holds.
    expect: &'static str,
}

fn request(path: &str, body: &[u8], calls: usize, auth: &str) -> Request {
    assert!(
        body.len() <= MAX_BODY,
        "a request body of {} bytes is over the server's 512 KB limit: lower NUDGE_BENCH_BATCH",
        body.len()
    );
    let mut bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Request {
        bytes,
        calls,
        expect: "\"success\":true",
    }
}

/// Consecutive runs of `batch` calls as `/v1/batch` requests.
fn batch_requests(calls: &[Call], batch: usize, auth: &str) -> Vec<Request> {
    calls
        .chunks(batch)
        .map(|chunk| {
            let mut body = String::from(r#"{"batch":["#);
            for (i, c) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&c.line);
            }
            body.push_str("]}");
            request("/v1/batch", body.as_bytes(), chunk.len(), auth)
        })
        .collect()
}

/// One request per call, on the endpoint of its type (`/v1/track`, ...).
fn single_requests(calls: &[Call], auth: &str) -> Vec<Request> {
    calls
        .iter()
        .map(|c| request(&format!("/v1/{}", c.kind), c.line.as_bytes(), 1, auth))
        .collect()
}

/// A keep-alive HTTP/1.1 connection with one request in flight at a time.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        // A request is one write, but the response must not wait for
        // delayed ACKs either way.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let writer = stream.try_clone().expect("clone the socket");
        Conn {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Writes `request` and reads the whole response: its status and body.
    fn round_trip(&mut self, request: &[u8]) -> (u16, String) {
        self.writer.write_all(request).expect("write the request");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read the status");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read a header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        // The server sends whole bodies, never chunked ones; a response
        // without a length would leave the connection unusable anyway.
        let length = length.expect("the response has a Content-Length");
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read the body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// What one load run measured.
struct Load {
    wall: Duration,
    requests: usize,
    calls: usize,
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
    /// CPU seconds of the server's threads, by role, over the run.
    server_cpu: Vec<(String, f64)>,
    /// CPU seconds of this process (the client, and the stub when there is one).
    client_cpu: Option<f64>,
}

/// Posts `requests` over `connections` connections, each taking the next
/// request from a shared queue once its previous one is answered.
fn load(addr: SocketAddr, requests: &[Request], connections: usize, server: Option<u32>) -> Load {
    let next = AtomicUsize::new(0);
    // Connections are opened before the clock starts: the figure is for
    // requests, not handshakes.
    let ready = Barrier::new(connections + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let (next, ready) = (&next, &ready);
                scope.spawn(move || {
                    let mut conn = Conn::open(addr);
                    ready.wait();
                    let mut latencies = Vec::new();
                    let mut done = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(req) = requests.get(i) else { break };
                        let sent = Instant::now();
                        let (status, body) = conn.round_trip(&req.bytes);
                        let answered = Instant::now();
                        assert_eq!(status, 200, "request {i} was refused: {body}");
                        assert!(body.contains(req.expect), "request {i}: {body}");
                        latencies.push(answered - sent);
                        done = Some(answered);
                    }
                    (latencies, done)
                })
            })
            .collect();
        let server_before = server.map(thread_cpu);
        let client_before = process_cpu();
        ready.wait();
        let started = Instant::now();
        let mut latencies = Vec::new();
        let mut last = started;
        for w in workers {
            let (l, done) = w.join().expect("a client connection failed");
            latencies.extend(l);
            last = last.max(done.unwrap_or(started));
        }
        let server_cpu = match (server, server_before) {
            (Some(pid), Some(before)) => cpu_by_role(pid, &before, &thread_cpu(pid)),
            _ => Vec::new(),
        };
        let client_cpu = process_cpu().zip(client_before).map(|(a, b)| a - b);
        latencies.sort();
        Load {
            wall: last - started,
            requests: requests.len(),
            calls: requests.iter().map(|r| r.calls).sum(),
            latencies,
            server_cpu,
            client_cpu,
        }
    })
}

/// Linux's `/proc` counts CPU time in clock ticks of 1/100 s (USER_HZ, the
/// same on every architecture Linux exposes to user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    // The command name is in parentheses and may hold spaces: split after it.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime); field 3 is fields[0] here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / TICKS_PER_SECOND))
}

/// This process's CPU seconds, where `/proc` exists.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_cpu(&stat).map(|(_, s)| s)
}

/// CPU seconds per thread of process `pid`: thread id to (name, seconds).
fn thread_cpu(pid: u32) -> HashMap<u32, (String, f64)> {
    let mut threads = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        if let Some(cpu) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
        {
            threads.insert(tid, cpu);
        }
    }
    threads
}

/// The server's CPU over the run, by role. `nudge serve` names no threads, so
/// roles come from what each thread is: the main thread runs the accept
/// loop, tokio's workers parse and check requests, and the one other thread
/// owns the engine and the store.
fn cpu_by_role(
    pid: u32,
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
) -> Vec<(String, f64)> {
    let mut roles: Vec<(String, f64)> = Vec::new();
    for (tid, (comm, secs)) in after {
        let spent = secs - before.get(tid).map_or(0.0, |(_, s)| *s);
        let role = if *tid == pid {
            "accept"
        } else if comm.starts_with("tokio") {
            "http"
        } else {
            "engine"
        };
        match roles.iter_mut().find(|(r, _)| r == role) {
            Some((_, s)) => *s += spent,
            None => roles.push((role.to_string(), spent)),
        }
    }
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    roles
}

/// A running `nudge serve`.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `nudge serve` on `project` (default durable store) and waits
    /// for its address.
    fn start(project: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .arg("serve")
            .arg(project)
            .args(["--listen", "127.0.0.1:0", "--write-key", KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nudge serve");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read nudge serve's stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("nudge serve did not start: {line:?}"));
        // Anything else it prints must not fill the pipe and block it.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Server { child, addr }
    }

    /// `GET /metrics`, as name (with labels) to value.
    fn metrics(&self) -> HashMap<String, f64> {
        let mut conn = Conn::open(self.addr);
        let (status, body) = conn.round_trip(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// SIGTERM, then waits for a clean exit; returns how long that took.
    fn stop(mut self) -> Duration {
        let t = Instant::now();
        // std can only send SIGKILL; the graceful path needs SIGTERM.
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM failed");
        let status = self.child.wait().expect("wait for nudge serve");
        assert!(status.success(), "nudge serve exited with {status}");
        t.elapsed()
    }
}

/// A trivial HTTP responder: reads each request and answers 200 at once.
/// Against it, the load generator measures only itself and loopback TCP.
fn stub() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
    let addr = listener.local_addr().expect("the stub's address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut writer = stream.try_clone().expect("clone the socket");
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                let mut body = Vec::new();
                loop {
                    let mut length = 0;
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    body.resize(length, 0);
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                  content-length: 16\r\n\r\n{\"success\":true}";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One row of the table.
struct Row {
    name: &'static str,
    connections: usize,
    batch: usize,
    load: Load,
    /// Commits and their mean time in ms, from `/metrics`.
    commits: Option<(f64, f64)>,
    dead: Option<f64>,
    shutdown: Option<Duration>,
}

/// Runs `requests` against a fresh `nudge serve` on a copy of the example,
/// checks that every call was committed, and stops it.
fn against_server(
    name: &'static str,
    requests: &[Request],
    connections: usize,
    batch: usize,
) -> Row {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = dir.path().join(PROJECT);
    nudge_test_support::copy_project(&nudge_test_support::example_dir(PROJECT), &project);
    if let Ok(every) = std::env::var("NUDGE_BENCH_CHECKPOINT_EVERY") {
        let manifest = project.join("nudge.toml");
        let mut toml = std::fs::read_to_string(&manifest).expect("the example's nudge.toml");
        toml.push_str(&format!("\n[runtime]\ncheckpoint_every = {every}\n"));
        std::fs::write(&manifest, toml).expect("write nudge.toml");
    }
    let server = Server::start(&project);
    let load = load(server.addr, requests, connections, Some(server.child.id()));
    let metrics = server.metrics();
    let events = metrics.get("nudge_events_total").copied().unwrap_or(-1.0);
    assert_eq!(
        events, load.calls as f64,
        "nudge_events_total is not the number of calls sent"
    );
    let count = metrics.get("nudge_commit_seconds_count").copied();
    let sum = metrics.get("nudge_commit_seconds_sum").copied();
    let commits = count.zip(sum).map(|(c, s)| (c, s * 1e3 / c.max(1.0)));
    let dead = metrics.get("nudge_dead_letters_total").copied();
    let shutdown = server.stop();
    Row {
        name,
        connections,
        batch,
        load,
        commits,
        dead,
        shutdown: Some(shutdown),
    }
}

/// The read key of the `profile` run.
const READ_KEY: &str = "bench-read-key";

/// Posts `posts` to a fresh `nudge serve` whose profile API is on, then
/// times `reads` profile reads of the customers they made, round-robin.
fn against_profiles(
    name: &'static str,
    query: &str,
    posts: &[Request],
    ids: &[String],
    reads: usize,
    connections: usize,
) -> Row {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let project = dir.path().join(PROJECT);
    nudge_test_support::copy_project(&nudge_test_support::example_dir(PROJECT), &project);
    let manifest = project.join("nudge.toml");
    let mut toml = std::fs::read_to_string(&manifest).expect("the example's nudge.toml");
    toml.push_str(&format!(
        "\n[serve]\nread_keys = [\"{READ_KEY}\"]\nprofile_traits = [\"email\", \"first_name\", \"total_spent\", \"orders_count\"]\n"
    ));
    std::fs::write(&manifest, toml).expect("write nudge.toml");
    let server = Server::start(&project);
    let filled = load(server.addr, posts, connections, None);
    assert_eq!(filled.requests, posts.len());
    let gets: Vec<Request> = (0..reads)
        .map(|i| Request {
            bytes: format!(
                "GET /v1/profiles/{}{query} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {READ_KEY}\r\n\r\n",
                ids[i % ids.len()]
            )
            .into_bytes(),
            calls: 0,
            expect: if query.is_empty() {
                "\"segments\""
            } else {
                "\"recommendations\""
            },
        })
        .collect();
    let load = load(server.addr, &gets, connections, Some(server.child.id()));
    let shutdown = server.stop();
    Row {
        name,
        connections,
        batch: 0,
        load,
        commits: None,
        dead: None,
        shutdown: Some(shutdown),
    }
}

/// The customer ids of `calls` (user ids, else anonymous ids), each once,
/// in order of first appearance.
fn customer_ids(calls: &[Call]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    calls
        .iter()
        .filter_map(|c| {
            let v: serde_json::Value = serde_json::from_str(&c.line).ok()?;
            let id = v["userId"].as_str().or(v["anonymousId"].as_str())?;
            seen.insert(id.to_string()).then(|| id.to_string())
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(rows: &[Row]) {
    println!(
        "\n{:<7} {:>7} {:>5} {:>5} {:>6} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>5}",
        "run",
        "events",
        "conns",
        "batch",
        "reqs",
        "wall s",
        "events/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "commits",
        "commit ms",
        "dead"
    );
    for r in rows {
        let l = &r.load;
        let pct = |p: usize| {
            let i = (l.latencies.len() * p / 100).min(l.latencies.len().saturating_sub(1));
            l.latencies.get(i).map_or(0.0, |d| ms(*d))
        };
        let secs = l.wall.as_secs_f64();
        let (commits, commit_ms) = r.commits.map_or(("-".into(), "-".into()), |(c, m)| {
            (format!("{c:.0}"), format!("{m:.3}"))
        });
        println!(
            "{:<7} {:>7} {:>5} {:>5} {:>6} {:>7.2} {:>9.0} {:>7.0} {:>7.2} {:>7.2} {:>7.2} {:>7} {:>9} {:>5}",
            r.name,
            l.calls,
            r.connections,
            r.batch,
            l.requests,
            secs,
            l.calls as f64 / secs,
            l.requests as f64 / secs,
            pct(50),
            pct(99),
            l.latencies.last().map_or(0.0, |d| ms(*d)),
            commits,
            commit_ms,
            r.dead.map_or("-".into(), |d| format!("{d:.0}")),
        );
    }
    println!(
        "\nCPU seconds over each run's wall time (2 cores give 2 s per wall second), and per call:"
    );
    for r in rows {
        let secs = r.load.wall.as_secs_f64();
        let server = if r.load.server_cpu.is_empty() {
            String::new()
        } else {
            // CPU per call holds still when other processes share the
            // cores, where wall-clock rates do not.
            // A run that only reads counts per request.
            let (n, unit) = match r.load.calls {
                0 => (r.load.requests, "request"),
                n => (n, "call"),
            };
            let per_call = |s: f64| s * 1e6 / n.max(1) as f64;
            let total: f64 = r.load.server_cpu.iter().map(|(_, s)| s).sum();
            let parts: Vec<String> = r
                .load
                .server_cpu
                .iter()
                .map(|(role, s)| format!("{role} {s:.2} = {:.1} us/{unit}", per_call(*s)))
                .collect();
            format!(
                "server {total:.2} = {:.1} us/{unit} ({}); ",
                per_call(total),
                parts.join(", ")
            )
        };
        let client = r.load.client_cpu.map_or("client ?".into(), |c| {
            let who = if r.name == "stub" {
                "client+stub"
            } else {
                "client"
            };
            format!("{who} {c:.2}")
        });
        let shutdown = r.shutdown.map_or(String::new(), |d| {
            format!("; SIGTERM to exit {:.0} ms", ms(d))
        });
        println!("  {:<7} wall {secs:.2}: {server}{client}{shutdown}", r.name);
    }
}

fn main() {
    let settings = Settings::from_env();
    // `cargo bench` passes `--bench`; any other word picks runs by name.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_ref().is_none_or(|o| name.contains(o.as_str()));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    let mut rows = Vec::new();

    if wanted("stub") || wanted("batch") {
        let calls = stream(settings.events, settings.start);
        let bytes: usize = calls.iter().map(|c| c.line.len()).sum();
        println!(
            "stream: {} events, {:.0} MB, {} .. {}",
            calls.len(),
            bytes as f64 / 1e6,
            chrono::DateTime::from_timestamp_millis(calls[0].at).unwrap_or_default(),
            chrono::DateTime::from_timestamp_millis(calls[calls.len() - 1].at).unwrap_or_default(),
        );
        let requests = batch_requests(&calls, settings.batch, &auth);
        drop(calls);
        if wanted("stub") {
            let load = load(stub(), &requests, settings.connections, None);
            rows.push(Row {
                name: "stub",
                connections: settings.connections,
                batch: settings.batch,
                load,
                commits: None,
                dead: None,
                shutdown: None,
            });
        }
        if wanted("batch") {
            rows.push(against_server(
                "batch",
                &requests,
                settings.connections,
                settings.batch,
            ));
        }
    }
    if wanted("single") {
        let calls = stream(settings.single_events, settings.start);
        let requests = single_requests(&calls, &auth);
        drop(calls);
        rows.push(against_server("single", &requests, 1, 1));
    }
    if wanted("profile") {
        let calls = stream(settings.profile_events, settings.start);
        let ids = customer_ids(&calls);
        let posts = batch_requests(&calls, settings.batch, &auth);
        drop(calls);
        rows.push(against_profiles(
            "profile",
            "",
            &posts,
            &ids,
            settings.profile_reads,
            settings.connections,
        ));
    }
    if wanted("profile_recs") {
        let calls = stream(settings.profile_events, settings.start);
        let ids = customer_ids(&calls);
        let posts = batch_requests(&calls, settings.batch, &auth);
        drop(calls);
        rows.push(against_profiles(
            "profile_recs",
            "?recommendations=4",
            &posts,
            &ids,
            settings.profile_reads,
            settings.connections,
        ));
    }
    print(&rows);
}
