//! Ingest throughput and acknowledgement latency of a cluster ingest node
//! (`nudge serve --cluster`) over loopback HTTP, with NATS JetStream and
//! PostgreSQL on the same machine.
//!
//! `cargo bench --bench cluster_ingest` creates a cluster of its own (a
//! fresh PostgreSQL schema and stream), starts the release `nudge` binary
//! as an ingest node, and posts a generated stream (`nudge gen`'s library)
//! as `POST /v1/batch` requests over a few keep-alive connections, each
//! with one request in flight. A request's latency is from its first byte
//! sent to its 200, which the node gives only once JetStream has
//! acknowledged every call in it. It reports events and requests per
//! second and latency (p50, p99, max), checks that the stream holds one
//! message per call sent and one merge record per merge, and removes the
//! cluster.
//!
//! Settings (environment variables):
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `NUDGE_BENCH_EVENTS` | 200000 | events posted |
//! | `NUDGE_BENCH_CONNECTIONS` | 8 | concurrent connections |
//! | `NUDGE_BENCH_BATCH` | 100 | calls per `/v1/batch` request |
//! | `NUDGE_BENCH_PARTITIONS` | 256 | the cluster's partitions |
//! | `NUDGE_BENCH_NATS` | `nats://127.0.0.1:4222` | NATS |
//! | `NUDGE_BENCH_POSTGRES` | `host=127.0.0.1 user=postgres dbname=test` | PostgreSQL |
//!
//! Without the services it says why and ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nudge_cluster::Settings;

const KEY: &str = "bench-key";

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        Err(_) => default,
    }
}

/// The generated stream as `/v1/batch` requests, whole HTTP messages.
fn requests(events: u64, batch: usize) -> Vec<(Vec<u8>, usize)> {
    let config = nudge_gen::GenConfig::new(events);
    let mut bytes = Vec::new();
    nudge_gen::generate(&config, &mut bytes).expect("generation succeeds");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    lines
        .chunks(batch)
        .map(|chunk| {
            let body = format!(r#"{{"batch":[{}]}}"#, chunk.join(","));
            let mut req = format!(
                "POST /v1/batch HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(body.as_bytes());
            (req, chunk.len())
        })
        .collect()
}

/// Writes a request and reads its response's status and body.
fn round_trip(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    req: &[u8],
) -> (u16, String) {
    writer.write_all(req).expect("write the request");
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// User plus system CPU seconds of a process, from its `/proc` stat line
/// (Linux; none elsewhere).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on every architecture Linux exposes to user space.
    Some(ticks / 100.0)
}

/// CPU seconds of every process named `name` (user and system, with its
/// reaped children's: PostgreSQL's connection processes end into their
/// parent's count).
fn service_cpu(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some(close) = text.rfind(')') else {
            continue;
        };
        let fields: Vec<f64> = text[close + 1..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        // utime, stime, cutime, cstime: fields 14 to 17 of stat(5).
        total += fields.get(11..15).map_or(0.0, |f| f.iter().sum::<f64>()) / 100.0;
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let events: u64 = var("NUDGE_BENCH_EVENTS", 200_000);
    let connections: usize = var("NUDGE_BENCH_CONNECTIONS", 8);
    let batch: usize = var("NUDGE_BENCH_BATCH", 100);
    let mut settings = Settings::new(
        &var("NUDGE_BENCH_NATS", "nats://127.0.0.1:4222".to_string()),
        &var(
            "NUDGE_BENCH_POSTGRES",
            "host=127.0.0.1 user=postgres dbname=test".to_string(),
        ),
    );
    settings.partitions = var("NUDGE_BENCH_PARTITIONS", 256);
    let unique = format!("bench_{}", std::process::id());
    settings.schema = unique.clone();
    settings.prefix = unique;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = rt.block_on(nudge_cluster::init(&settings)) {
        eprintln!("cluster_ingest: skipped: {e}");
        return;
    }
    let (_tmp, project) = nudge_test_support::copy_example("cart_recovery");
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[cluster]\nnats = \"{}\"\npostgres = \"{}\"\nschema = \"{}\"\nprefix = \"{}\"\npartitions = {}\n",
            settings.nats, settings.postgres, settings.schema, settings.prefix, settings.partitions
        ),
    )
    .unwrap();
    let requests = requests(events, batch);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", project.to_str().unwrap(), "--cluster"])
        .args(["--listen", "127.0.0.1:0", "--write-key", KEY])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nudge serve --cluster");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the ingest node did not start: {line:?}"));

    let services = || (service_cpu("nats-server"), service_cpu("postgres"));
    let services_before = services();
    let next = AtomicUsize::new(0);
    let ready = Barrier::new(connections + 1);
    let (wall, mut latencies) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let (next, ready, requests) = (&next, &ready, &requests);
                scope.spawn(move || {
                    let stream = TcpStream::connect(addr).unwrap();
                    stream.set_nodelay(true).unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    ready.wait();
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((req, _)) = requests.get(i) else {
                            break;
                        };
                        let sent = Instant::now();
                        let (status, body) = round_trip(&mut reader, &mut writer, req);
                        latencies.push(sent.elapsed());
                        assert_eq!(status, 200, "request {i}: {body}");
                    }
                    latencies
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let latencies: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("a connection failed"))
            .collect();
        (started.elapsed(), latencies)
    });
    let node_cpu = cpu_seconds(&format!("/proc/{}/stat", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let client_cpu = cpu_seconds("/proc/self/stat");
    // PostgreSQL's connection processes have ended and been counted.
    std::thread::sleep(Duration::from_millis(200));
    let services_after = services();
    latencies.sort();
    let calls: usize = requests.iter().map(|(_, n)| n).sum();
    let stored = rt.block_on(async {
        let log = nudge_cluster::log::Log::connect(&settings).await.unwrap();
        let mut stream = log.jetstream().get_stream(settings.stream()).await.unwrap();
        stream.info().await.unwrap().state.messages
    });
    let (customers, merges) = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&settings.postgres, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = db
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM \"{0}\".customers),
                            (SELECT count(*) FROM \"{0}\".merges)",
                    settings.schema
                ),
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    });
    let _ = rt.block_on(nudge_cluster::init::destroy(&settings));
    assert_eq!(
        stored,
        calls as u64 + merges as u64,
        "the stream holds one message per call, and a merge record per merge"
    );
    let secs = wall.as_secs_f64();
    println!(
        "cluster_ingest: {calls} events in {} requests of {batch} over {connections} connections, {} partitions",
        requests.len(),
        settings.partitions
    );
    println!(
        "  {:.2} s, {:.0} events/s, {:.0} requests/s; {customers} customers made, {merges} merged",
        secs,
        calls as f64 / secs,
        requests.len() as f64 / secs
    );
    println!(
        "  acknowledged request latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    if let (Some(node), Some(client)) = (node_cpu, client_cpu) {
        let nats = services_after.0 - services_before.0;
        let pg = services_after.1 - services_before.1;
        println!(
            "  CPU: ingest node {node:.1} s, NATS {nats:.1} s, PostgreSQL {pg:.1} s, load generator {client:.1} s (with generating the stream); {:.1} µs of CPU per event",
            (node + nats + pg + client) / calls as f64 * 1e6
        );
    }
}
