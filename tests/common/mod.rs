//! Helpers shared by the end-to-end tests.
// Each test binary uses its own subset of these.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

// Paths as arguments, and fresh copies of the examples, are set up as in
// every crate's tests.
pub use nudge_test_support::{copy_example, copy_project, copy_tree, path_str as s};

/// Runs `nudge serve PROJECT --stdin` with `args`, writes `lines` to its
/// standard input, and checks that it ends well once the input ends.
pub fn serve_stdin(project: &Path, args: &[&str], lines: &[String]) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", s(project), "--stdin"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("nudge serve starts");
    let mut stdin = child.stdin.take().expect("a standard input");
    for l in lines {
        writeln!(stdin, "{l}").expect("nudge serve reads its input");
    }
    drop(stdin);
    assert!(child.wait().expect("nudge serve ends").success());
}

/// Runs the `nudge` binary from the workspace root, without colour.
pub fn nudge(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nudge runs")
}

/// Appends a `[runtime]` section holding `settings` (lines of TOML) to
/// `project`'s `nudge.toml`.
pub fn add_runtime(project: &Path, settings: &str) {
    let toml = project.join("nudge.toml");
    let mut manifest = std::fs::read_to_string(&toml).unwrap_or_default();
    manifest.push_str(&format!("\n[runtime]\n{settings}\n"));
    std::fs::write(&toml, manifest).expect("the manifest can be written");
}

/// `nudge run DIR --format json EXTRA…`, which must succeed; its JSON summary.
pub fn run_json(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", s(dir), "--format", "json"];
    args.extend_from_slice(extra);
    let out = nudge(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        nudge_test_support::text(&out.stderr)
    );
    serde_json::from_str(nudge_test_support::text(&out.stdout).trim()).unwrap()
}

/// The write key the servers of these tests accept.
pub const WRITE_KEY: &str = "test-write-key";

/// A running `nudge serve` and the base URL it listens on.
pub struct Server {
    /// The server process.
    pub child: std::process::Child,
    /// `http://ADDR`, from the server's first line of output.
    pub base: String,
    /// Kept open: the server's stdout must not turn into a broken pipe.
    pub _stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// Spawns `nudge serve PROJECT` on a free port with [`WRITE_KEY`]; its
/// stdout is piped, for the address it prints first.
pub fn spawn_server(project: &Path) -> std::process::Child {
    spawn_server_with(project, &["--write-key", WRITE_KEY], &[])
}

/// Spawns `nudge serve PROJECT` on a free port (unless `args` has its own
/// `--listen`) with extra arguments and environment variables.
pub fn spawn_server_with(
    project: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    // A free port unless the test names its own address.
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", s(project)])
        .args(listen)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("nudge serve starts")
}

/// Starts `nudge serve PROJECT` as [`spawn_server`] does and waits until it
/// answers `/healthz`.
pub fn start_server(project: &Path) -> Server {
    start_server_with(project, &["--write-key", WRITE_KEY], &[])
}

/// Starts `nudge serve PROJECT` as [`spawn_server_with`] does and waits
/// until it answers `/healthz`.
pub fn start_server_with(project: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    use std::io::BufRead;
    let mut child = spawn_server_with(project, args, env);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let Some(addr) = first.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let status = child.wait();
        panic!("nudge serve printed {first:?} and ended with {status:?}");
    };
    let server = Server {
        base: format!("http://{addr}"),
        child,
        _stdout: stdout,
    };
    // The address is printed once the store is open and rebuilt; /healthz
    // confirms the HTTP side is up too. A generous deadline for slow CI.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let healthy = http_agent()
            .get(format!("{}/healthz", server.base))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if healthy {
            return server;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never became healthy"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for Server {
    /// A failing test must not leave its server running (it would hold the
    /// test harness's output open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Stops the server with SIGTERM and checks that it exits 0, as a
    /// graceful shutdown must.
    pub fn terminate(mut self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let exit = self.child.wait().unwrap();
        assert_eq!(exit.code(), Some(0), "graceful shutdown exits 0");
    }

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    /// `GET PATH`: the status and body, or status 0 when the request fails.
    pub fn get(&self, path: &str) -> (u16, String) {
        match http_agent().get(format!("{}{path}", self.base)).call() {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
            Err(_) => (0, String::new()),
        }
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics(&self) -> String {
        http_agent()
            .get(format!("{}/metrics", self.base))
            .call()
            .expect("GET /metrics")
            .body_mut()
            .read_to_string()
            .unwrap()
    }
}

/// An HTTP client that reports error statuses as responses, not errors, and
/// gives up on a request that hangs.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Basic auth for [`WRITE_KEY`]: the key as user name, an empty password.
pub fn basic_auth() -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
    format!("Basic {encoded}")
}

/// The outbox at `path` as idempotency key → every line carrying it; a
/// partial or unreadable line fails the test.
pub fn outbox_by_key(path: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a partial last line in {}",
        path.display()
    );
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad outbox line {l:?}: {e}"));
        let key = v["idempotency_key"].as_str().unwrap().to_string();
        out.entry(key).or_default().push(l.to_string());
    }
    out
}

/// A trace split in two: its decision lines, in order, and the last
/// delivery line of each idempotency key. Delivery lines are written when a
/// plugin answers, so their place among the decisions depends on when the
/// run delivered (and a restart may write an outcome again); the decisions
/// and each send's final outcome do not.
pub fn trace_parts(path: &Path) -> (String, std::collections::BTreeMap<String, String>) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut decisions = String::new();
    let mut deliveries = std::collections::BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad trace line {l:?}: {e}"));
        if v["kind"] == "delivery" {
            let key = v["key"].as_str().expect("a delivery line has a key");
            deliveries.insert(key.to_string(), l.to_string());
        } else {
            decisions.push_str(l);
            decisions.push('\n');
        }
    }
    (decisions, deliveries)
}

/// A project of one flow that sends a receipt showing the order's total,
/// for checking that amounts arrive with every digit.
pub fn receipt_project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("receipt");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("receipt.flow"),
        r#"message receipt(total: money) {
  channel email
  purpose transactional
  subject "Your order"
  body "You paid {total}."
}

flow receipt {
  trigger order_completed
  entry always
  send receipt(trigger.total)
}
"#,
    )
    .unwrap();
    (tmp, project)
}

/// The bodies of the receipts in an outbox, in order.
pub fn receipt_bodies(outbox: &Path) -> Vec<String> {
    std::fs::read_to_string(outbox)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["content"]["body"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A small seeded generator, so a failure can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number, in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The wall-clock instant `secs` seconds ago, as a Segment timestamp: live
/// tests stamp their calls relative to now, never with a fixed date, so they
/// pass on whatever day they run.
#[allow(dead_code)]
pub fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A fixed-offset zone in which it is early afternoon now, so that quiet
/// hours never hold a live test's message, whatever the hour it runs at.
#[allow(dead_code)]
pub fn afternoon_zone() -> String {
    use chrono::Timelike;
    let offset = (13 - chrono::Utc::now().hour() as i32 + 36) % 24 - 12;
    // POSIX-style names: `Etc/GMT-3` is three hours ahead of UTC.
    match offset {
        0 => "Etc/GMT".to_string(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Polls `/metrics` until it contains `needle` (the engine acts on overdue
/// timers at its next tick, a second at most after a request).
#[allow(dead_code)]
pub fn wait_for_metric(server: &Server, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let metrics = server.metrics();
        if metrics.contains(needle) || std::time::Instant::now() > deadline {
            return metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[allow(dead_code)]
/// Serves SMTP on `listener` until the test ends, keeping each message's DATA.
pub fn serve_smtp(
    listener: std::net::TcpListener,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let _ = session(stream, &messages);
        }
    });
}

fn session(
    stream: std::net::TcpStream,
    messages: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(stream);
    out.write_all(b"220 localhost ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("EHLO") {
            out.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if command == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(
                    l.strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(&l),
                );
            }
            messages.lock().unwrap().push(data);
            out.write_all(b"250 2.0.0 queued\r\n")?;
        } else if command == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 OK\r\n")?;
        }
    }
}

#[allow(dead_code)]
/// Serves plain HTTP on a local port until the test ends: each request's
/// body goes to `answer`, whose bytes are written back as the whole
/// response. Returns the base URL (`http://127.0.0.1:PORT`).
pub fn serve_http(mut answer: impl FnMut(Vec<u8>) -> &'static [u8] + Send + 'static) -> String {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(answer(body));
        }
    });
    base
}

/// The lines of a project's outbox, parsed.
#[allow(dead_code)]
pub fn outbox_json(project: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(project.join(".nudge/outbox.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the outbox has `n` lines (sends go out after the answer),
/// for 30 seconds at most; returns what it holds then.
#[allow(dead_code)]
pub fn wait_for_outbox(project: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let lines = outbox_json(project);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `nudge explain WHO PROJECT --format json`, which must succeed.
#[allow(dead_code)]
pub fn explain_json(project: &Path, who: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["explain", who, s(project), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The release of Segment's Python library the client tests are written against.
pub const SEGMENT_PY_VERSION: &str = "2.4.0";

/// Whether `python3` imports the pinned release of the library from `dir`;
/// a cache left by a test pinned to another release does not count.
fn segment_importable(dir: &Path) -> bool {
    let check = format!(
        "import sys, segment.analytics as a; sys.exit(a.__version__ != {SEGMENT_PY_VERSION:?})"
    );
    std::process::Command::new("python3")
        .args(["-c", &check])
        .env("PYTHONPATH", dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A directory from which `python3` imports Segment's Python library
/// (segment-analytics-python), installed there
/// with pip on first use. A failed install fails the test with pip's
/// output: a missing client must not pass as a skipped test.
pub fn segment_library() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("segment-py");
    if segment_importable(&dir) {
        return dir;
    }
    // Installed next to the cache and renamed into place, so an interrupted
    // install never leaves a half-filled cache that later runs would trust
    // (pip --target does not replace what is already there).
    let staging = dir.with_file_name(format!("segment-py.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let pip = std::process::Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-input"])
        .args(["--disable-pip-version-check", "--target", s(&staging)])
        .arg(format!("segment-analytics-python=={SEGMENT_PY_VERSION}"))
        .output()
        .expect("python3 runs");
    if !pip.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        pip.status.success(),
        "installing segment-analytics-python {SEGMENT_PY_VERSION} failed:\n{}",
        command_text(&pip)
    );
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&staging, &dir).is_err() {
        // Another test process got there first; its copy is as good.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        segment_importable(&dir),
        "segment-analytics-python {SEGMENT_PY_VERSION} was installed in {} but does not import",
        dir.display()
    );
    dir
}

/// A finished command's status and output, for failure messages.
pub fn command_text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Why the local PostgreSQL and NATS the cluster tests need cannot be
/// reached, if they cannot.
pub fn cluster_services_unreachable() -> Option<String> {
    for (port, name) in [(5432, "PostgreSQL"), (4222, "NATS")] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_err() {
            return Some(format!("{name} does not answer on 127.0.0.1:{port}"));
        }
    }
    None
}

/// Cluster settings of a test's own: the local services, a schema and a
/// stream prefix named `unique`, and `partitions`.
pub fn trial_cluster(unique: &str, partitions: u32) -> nudge_cluster::Settings {
    let mut settings = nudge_cluster::Settings::new(
        "nats://127.0.0.1:4222",
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
    );
    settings.schema = unique.to_string();
    settings.prefix = unique.to_string();
    settings.partitions = partitions;
    settings
}

/// Appends (or rewrites) `[cluster]` in the project's nudge.toml.
pub fn write_cluster(dir: &Path, c: &nudge_cluster::Settings) {
    let manifest = dir.join("nudge.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let kept = text.split("\n[cluster]").next().unwrap_or_default();
    let section = format!(
        "\n[cluster]\nnats = \"{}\"\npostgres = \"{}\"\nschema = \"{}\"\nprefix = \"{}\"\npartitions = {}\n",
        c.nats, c.postgres, c.schema, c.prefix, c.partitions
    );
    std::fs::write(&manifest, format!("{}{section}", kept.trim_end())).unwrap();
}

/// Makes `dir` the win-back benchmark project (`benches/winback`: one
/// email 90 days after a customer's last order) with `runtime` added to
/// its `[runtime]` table.
#[allow(dead_code)]
pub fn win_back_project(dir: &Path, runtime: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/winback");
    std::fs::copy(bench.join("winback.flow"), dir.join("winback.flow")).unwrap();
    // The manifest ends in its `[runtime]` table.
    let manifest = std::fs::read_to_string(bench.join("nudge.toml")).unwrap();
    std::fs::write(dir.join("nudge.toml"), format!("{manifest}{runtime}\n")).unwrap();
}
