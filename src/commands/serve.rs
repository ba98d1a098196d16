//! `nudge serve`: Segment-compatible HTTP ingest (or JSON lines on stdin)
//! into the durable engine of `nudge run`, on the wall clock.
//!
//! The engine is single-threaded, so it lives on one thread that owns the
//! store, the engine and the plugins. HTTP handlers (on a small tokio
//! runtime) only validate bodies and turn them into JSON lines; the engine
//! thread applies each request's lines, commits them with their send intents
//! in one transaction (requests that queued meanwhile share it), answers,
//! then delivers — the same ledger path as `nudge run`, so a 200 means the
//! calls are durable.

mod body;
mod dead;
mod feedback;
mod pages;
mod retry;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nudge_host::durable::{self, Bundles, Captured, Code, LedgerSink, Report};
use nudge_host::feeds::Feeds;
use nudge_runtime::engine::Engine;
use nudge_runtime::replay::DeadLetter;
use nudge_store::{Batch, Intent, Mark, NewCall, SourcePos, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Status;
use super::run::{
    EngineArgs, engine_config, fail, merge_routes, open_store, project_config, project_root,
};
use nudge_host::alerts;
use nudge_host::config::{Config as ProjectConfig, HttpLimits};

/// Segment's limits: a request body of 512 KB and one call of 32 KB.
const MAX_BODY: usize = 512 * 1024;
const MAX_CALL: usize = 32 * 1024;
/// The store's name for calls that came through `nudge serve`.
const SOURCE: &str = "nudge serve";
/// Lines per transaction when reading stdin.
const STDIN_BATCH: usize = 1_000;
/// Requests waiting for the engine at most; past that a request is answered
/// 503 with `Retry-After` (Segment's clients retry it) instead of queueing
/// without bound while the engine falls behind.
const QUEUE: usize = 256;
/// An engine that has not come round its loop for this long is stalled:
/// `/healthz` and `/readyz` fail.
const STALLED: Duration = Duration::from_secs(30);
/// A stall this long ends the process, so that a supervisor restarts it.
/// Generous: catching up after a long downtime fires every timer that fell
/// due meanwhile in one step, and killing that would only start it again.
const WEDGED: Duration = Duration::from_secs(600);

/// Arguments of `nudge serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project to serve; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// The address to listen on (`serve.listen` in nudge.toml, else
    /// 127.0.0.1:8787); port 0 picks a free one. The bound address is printed
    /// on the first line of stdout.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The write key clients send as the Basic-auth user name; else
    /// `serve.write_keys` in nudge.toml, else `NUDGE_WRITE_KEY`.
    #[arg(long, value_name = "KEY")]
    pub write_key: Option<String>,
    /// Accept requests without credentials (for local testing only).
    #[arg(long)]
    pub no_auth: bool,
    /// Read JSON lines from stdin instead of listening; exit at its end.
    #[arg(long)]
    pub stdin: bool,
    /// What moves the engine's clock: `wall` (production: the wall clock;
    /// each call's time is corrected for its sender's clock and never later
    /// than its receipt) or `events` (the calls' own times, as `nudge run`
    /// replays them: for serving recorded traffic to a staging server).
    /// `--stdin` always runs on the events' clock.
    #[arg(long, value_enum, default_value_t = Clock::Wall)]
    pub clock: Clock,
    /// Where sends go and what the engine keeps, as in `nudge run`.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Debugging only: the engine thread stops taking work this many
    /// milliseconds after it starts, as a wedged engine would (to watch
    /// `/healthz`, `/readyz`, the full queue and the watchdog at work).
    #[arg(long, hide = true, value_name = "MS")]
    pub debug_wedge_after: Option<u64>,
    /// Debugging only: how long the engine may go without coming round its
    /// loop before `/healthz` fails, and before the process exits, in
    /// milliseconds (`30000,600000` by default).
    #[arg(long, hide = true, value_name = "STALLED,WEDGED", value_parser = stall_limits)]
    pub debug_stall_limits: Option<(u64, u64)>,
}

/// `--debug-stall-limits`: two counts of milliseconds, the second larger.
fn stall_limits(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once(',')
        .ok_or("expected STALLED,WEDGED in milliseconds, such as 1000,5000")?;
    let ms = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|e| format!("{t:?} is not a count of milliseconds: {e}"))
    };
    let (stalled, wedged) = (ms(a)?, ms(b)?);
    if stalled == 0 || wedged <= stalled {
        return Err("STALLED must be above 0 and WEDGED above STALLED".to_string());
    }
    Ok((stalled, wedged))
}

/// What moves the clock of `nudge serve`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock.
    Wall,
    /// The calls' own times.
    Events,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let groups = match super::project_groups(&args.paths) {
        Ok(g) => g,
        Err(status) => return status,
    };
    let [group] = groups.as_slice() else {
        eprintln!(
            "error: nudge serve runs one project, but these paths hold {}",
            groups.len()
        );
        return Status::Failure;
    };
    let root = project_root(group);
    let settings = match project_config(&root) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let keys: Vec<Secret> = match &args.write_key {
        Some(k) => vec![k.as_str().into()],
        None if !settings.serve.write_keys.is_empty() => settings
            .serve
            .write_keys
            .iter()
            .map(|k| k.as_str().into())
            .collect(),
        None => std::env::var("NUDGE_WRITE_KEY")
            .ok()
            .map(|k| k.as_str().into())
            .into_iter()
            .collect(),
    };
    let keys: Vec<Secret> = keys.into_iter().filter(|k| !k.is_empty()).collect();
    if keys.is_empty() && !args.no_auth && !args.stdin {
        eprintln!(
            "error: no write key: pass --write-key KEY, list `write_keys` under [serve] in nudge.toml, or set NUDGE_WRITE_KEY"
        );
        eprintln!("help: --no-auth accepts requests without credentials");
        return Status::Failure;
    }
    let bundle = match super::compile(group) {
        Ok(b) => b,
        Err(status) => return status,
    };
    let live = Setup {
        group,
        root: &root,
        args: &args,
        settings: &settings,
    };
    if args.stdin {
        return serve_stdin(&bundle, &live);
    }
    let listen = args
        .listen
        .clone()
        .or_else(|| settings.serve.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8787".to_string());
    let metrics = Arc::new(Metrics::default());
    let (stalled, wedged) = args.debug_stall_limits.map_or((STALLED, WEDGED), |(s, w)| {
        (Duration::from_millis(s), Duration::from_millis(w))
    });
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Status>>();
        let engine_metrics = metrics.clone();
        let (bundle, setup) = (&bundle, &live);
        let engine = scope.spawn(move || {
            let bundles = Bundles::new();
            let mut live = match Live::open(bundle, &bundles, setup, engine_metrics) {
                Ok(l) => l,
                Err(status) => {
                    let _ = ready_tx.send(Err(status));
                    return status;
                }
            };
            live.metrics.beat();
            let _ = ready_tx.send(Ok(()));
            let wedge_at = setup
                .args
                .debug_wedge_after
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            engine_loop(&mut live, &rx, setup.args.clock, wedge_at);
            live.finish()
        });
        if !matches!(ready_rx.recv(), Ok(Ok(()))) {
            return status_of(engine.join());
        }
        // The watchdog: a wedged engine thread ends the process (the HTTP
        // side alone would go on answering while nothing is applied).
        let watched = metrics.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep((wedged / 4).min(Duration::from_secs(5)));
                if watched.stopping.load(Ordering::Relaxed) {
                    return;
                }
                if watched.since_beat() > wedged {
                    eprintln!(
                        "error: the engine has not come round its loop for {}s; exiting so that a supervisor restarts the server",
                        watched.since_beat().as_secs()
                    );
                    std::process::exit(70);
                }
            }
        });
        let admin = settings
            .serve
            .admin_token
            .clone()
            .or_else(|| std::env::var("NUDGE_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .map(|t| Secret::from(t.as_str()));
        let metrics_token = settings
            .serve
            .metrics_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(|t| Secret::from(t.as_str()));
        let hooks = match settings.feedback_verifiers() {
            Ok(v) => Arc::new(feedback::Hooks::new(v)),
            Err(e) => {
                eprintln!("error: nudge.toml: {e}");
                return Status::Failure;
            }
        };
        let pages = Arc::new(pages::Pages {
            links: settings.unsubscribe_links(),
            topics: settings.preferences.topics.clone(),
        });
        let app = App {
            pages,
            hooks,
            metrics_token,
            tx: tx.clone(),
            keys: keys.into(),
            admin,
            metrics,
            stalled,
            receipt: args.clock == Clock::Wall,
            // Checked when nudge.toml was read.
            limits: settings.http_limits().unwrap_or_default(),
        };
        let stopping = app.metrics.clone();
        let served = serve_http(&listen, app);
        // Every request has been answered: the engine stops after what is queued.
        stopping.stopping.store(true, Ordering::Relaxed);
        let _ = tx.send(Msg::Stop);
        let status = status_of(engine.join());
        match served {
            Ok(()) => status,
            Err(e) => {
                eprintln!("error: {e}");
                Status::Failure
            }
        }
    })
}

fn status_of(joined: std::thread::Result<Status>) -> Status {
    joined.unwrap_or(Status::Failure)
}

/// Applies stdin's lines in batches, then stops.
fn serve_stdin(bundle: &nudge_bytecode::Bundle, setup: &Setup<'_>) -> Status {
    let bundles = Bundles::new();
    let mut live = match Live::open(bundle, &bundles, setup, Arc::new(Metrics::default())) {
        Ok(l) => l,
        Err(status) => return status,
    };
    let mut lines = Vec::with_capacity(STDIN_BATCH);
    let mut input = std::io::stdin().lock();
    let mut number = 0usize;
    loop {
        let mut raw = Vec::new();
        let read = match input.read_until(b'\n', &mut raw) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("error: reading stdin: {e}");
                let _ = live.finish();
                return Status::Failure;
            }
        };
        if read > 0 {
            number += 1;
        }
        match String::from_utf8(raw) {
            Ok(line) => {
                let text = line.trim_end_matches(['\n', '\r']);
                if !text.trim().is_empty() {
                    lines.push(text.to_string());
                }
            }
            // One bad line is a dead letter, as in `nudge run`: the batch
            // around it and the lines after it go on.
            Err(e) => live.write_dead(&[DeadLetter {
                line: number,
                reason: format!("not UTF-8 text: {}", e.utf8_error()),
                input: String::from_utf8_lossy(e.as_bytes())
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            }]),
        }
        if (read == 0 || lines.len() >= STDIN_BATCH)
            && !lines.is_empty()
            && let Err(e) = live.ingest(&lines)
        {
            let _ = live.finish();
            return fail(&e);
        }
        live.deliver();
        if lines.len() >= STDIN_BATCH {
            lines.clear();
        }
        if read == 0 {
            return live.finish();
        }
    }
}

/// What the engine thread needs to open the project's state.
#[derive(Clone, Copy)]
struct Setup<'a> {
    group: &'a [PathBuf],
    root: &'a Path,
    args: &'a Args,
    settings: &'a ProjectConfig,
}

/// A request to the engine thread.
enum Msg {
    /// Validated calls as JSON lines, batch items refused on arrival (for
    /// the dead letters), and where to say whether they are durable.
    Lines(
        Vec<String>,
        Vec<DeadLetter>,
        oneshot::Sender<Result<(), String>>,
    ),
    /// Find the sends (and their customers) that providers' reports are about.
    Resolve(
        Vec<nudge_channels::feedback::Subject>,
        oneshot::Sender<Vec<Option<feedback::Resolved>>>,
    ),
    /// How calls name a customer (by display id), and their consents.
    Customer(String, oneshot::Sender<Option<pages::Known>>),
    /// Compile the project again and deploy it (`SIGHUP`, `POST /admin/reload`).
    Reload(oneshot::Sender<Reloaded>),
    /// Release the sends the circuit breaker holds (`POST /admin/release-sends`).
    ReleaseSends(oneshot::Sender<Reloaded>),
    /// No more requests will come.
    Stop,
}

/// A reload's answer: an HTTP status and a JSON body.
type Reloaded = (StatusCode, Value);

/// At most this many calls share one commit: enough to take what piles up
/// while a commit runs, few enough that the first request is not kept
/// waiting long.
const GROUP_CALLS: usize = 5_000;

/// Applies requests in arrival order and moves the clock with the wall clock.
fn engine_loop(live: &mut Live, rx: &mpsc::Receiver<Msg>, clock: Clock, wedge_at: Option<Instant>) {
    const TICK: Duration = Duration::from_secs(1);
    let wall = clock == Clock::Wall;
    let mut next_tick = Instant::now();
    // A message taken off the queue while grouping, handled next.
    let mut held = None;
    loop {
        live.metrics.beat();
        if wedge_at.is_some_and(|at| Instant::now() >= at) {
            // `--debug-wedge-after`: never come round again, as a thread
            // stuck in a long step would; the watchdog ends the process.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if Instant::now() >= next_tick {
            if wall && let Err(e) = live.tick(chrono::Utc::now().timestamp_millis()) {
                live.broken(&e);
            }
            live.deliver();
            live.publish_flows();
            next_tick = Instant::now() + TICK;
        }
        let msg = match held.take() {
            Some(msg) => Ok(msg),
            None => rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())),
        };
        match msg {
            Ok(Msg::Lines(lines, refused, reply)) => {
                // Requests that queued while the last commit ran share the
                // next one: one transaction (and one sync) for all of them.
                let mut calls = lines.len();
                let mut group = vec![(lines, reply)];
                let mut refused = refused;
                while calls < GROUP_CALLS {
                    match rx.try_recv() {
                        Ok(Msg::Lines(lines, more, reply)) => {
                            calls += lines.len();
                            group.push((lines, reply));
                            refused.extend(more);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // The clock reaches the wall clock before the calls are
                // applied: every call is then at or before it (its time is
                // never later than its receipt), so none moves it, and a
                // late call's overdue timers wait for the next tick, after
                // the calls that came with it (one may be its purchase).
                if wall
                    && !live.metrics.broken.load(Ordering::Relaxed)
                    && let Err(e) = live.tick(chrono::Utc::now().timestamp_millis())
                {
                    live.broken(&e);
                }
                // Numbered after the calls applied before them.
                for d in &mut refused {
                    d.line = live.source.line as usize;
                }
                live.write_dead(&refused);
                let result = if live.metrics.broken.load(Ordering::Relaxed) {
                    Err("the store failed earlier; restart the server".to_string())
                } else {
                    live.ingest(group.iter().flat_map(|(lines, _)| lines))
                        .map_err(|e| {
                            live.broken(&e);
                            e.to_string()
                        })
                };
                // Answered once durable; the sends go out after.
                for (_, reply) in group {
                    let _ = reply.send(result.clone());
                }
                live.deliver();
            }
            Ok(Msg::Reload(reply)) => {
                let answer = if live.metrics.broken.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "the store failed earlier; restart the server"}),
                    )
                } else {
                    live.reload()
                };
                let _ = reply.send(answer);
            }
            Ok(Msg::Resolve(subjects, reply)) => {
                let found = feedback::resolve(&live.store, &mut live.engine, &subjects);
                let _ = reply.send(found);
            }
            Ok(Msg::Customer(display, reply)) => {
                let known = live
                    .engine
                    .caller_of(&display)
                    .map(|caller| pages::Known::read(&mut live.engine, caller));
                let _ = reply.send(known);
            }
            Ok(Msg::ReleaseSends(reply)) => {
                let _ = reply.send(live.release());
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The engine with its store, plugins and feeds.
struct Live<'b> {
    store: Store,
    engine: Engine<'b, LedgerSink<Feeds>>,
    /// The code served now, and where reloaded bundles are kept.
    code: Code<'b>,
    /// The project's paths, compiled again on reload.
    group: Vec<PathBuf>,
    captured: Captured,
    router: durable::Router,
    /// Device tokens the push plugins found invalid, to remove from profiles.
    invalid_tokens: Vec<nudge_channels::InvalidTokens>,
    source: SourcePos,
    /// Delivery results waiting for the next commit.
    marks: Vec<Mark>,
    /// Committed sends not yet handed to their plugins.
    to_deliver: Vec<Intent>,
    /// Sends whose delivery failed, waiting for their next round.
    retries: retry::Retries,
    /// A wall-clock advance not yet in the history: stored before the next
    /// lines, so a rebuild applies them at the same clock.
    until: Option<i64>,
    report: Report,
    dead: BufWriter<File>,
    dead_path: PathBuf,
    metrics: Arc<Metrics>,
    /// The send circuit breaker: the most sends one call or one clock step
    /// may make before sending pauses.
    max_sends: usize,
    /// Why sending is paused, while it is.
    paused: Option<String>,
    /// Committed sends held while sending is paused: pending in the ledger,
    /// delivered when the operator releases them.
    held: Vec<Intent>,
    /// The declared alerts and where they are notified; `None` without any.
    alerts: Option<alerts::Watch>,
    /// The dead letters of every stored call, for the next checkpoint.
    stored_dead: Vec<DeadLetter>,
    /// Calls stored since the last checkpoint, and how many make the next one due.
    since_checkpoint: u64,
    checkpoint_every: u64,
    /// `[store] keep_calls` in milliseconds: older calls leave the log with
    /// each checkpoint that covers them.
    keep_calls: Option<i64>,
    /// The `[alerts_webhook]` the alerts were set up with, as written, to
    /// tell on reload whether it changed.
    alerts_webhook: String,
    /// The project's root, whose nudge.toml a reload reads again.
    root: PathBuf,
}

impl<'b> Live<'b> {
    fn open(
        bundle: &'b nudge_bytecode::Bundle,
        bundles: &'b Bundles,
        setup: &Setup<'_>,
        metrics: Arc<Metrics>,
    ) -> Result<Live<'b>, Status> {
        let Setup {
            root,
            args,
            settings,
            ..
        } = *setup;
        let state = root.join(".nudge");
        super::private_files(&state);
        let engine = &args.engine;
        let outbox = engine
            .outbox
            .clone()
            .unwrap_or_else(|| state.join("outbox.jsonl"));
        let routes = merge_routes(settings, &engine.routes()?)?;
        let mut config = engine_config(bundle, settings, &engine.suppress, engine.release_spread)?;
        // On the wall clock, a jump (the server was down) fires each
        // schedule once, for its latest occurrence, not once per missed one.
        config.catch_up_schedules = args.clock != Clock::Wall;
        let store_path = if engine.in_memory {
            PathBuf::from(":memory:")
        } else {
            engine.store_path(settings, root)
        };
        let retry_first = match settings.retry_backoff() {
            Ok(s) => s.map_or(retry::FIRST, |s| Duration::from_secs(s.unsigned_abs())),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(Status::Failure);
            }
        };
        let (mut store, mut router) = open_store(&store_path, false, &config, &outbox, &routes)?;
        // Checked when nudge.toml was read.
        let max_sends = settings
            .max_sends_per_step()
            .unwrap_or(nudge_host::config::DEFAULT_MAX_SENDS_PER_STEP);
        router.hold_resends_over(max_sends);
        let (mut feeds, start) =
            Feeds::open(&store, &state.join("trace.jsonl"), &state.join("audiences")).map_err(
                |e| {
                    eprintln!("error: {e}");
                    Status::Failure
                },
            )?;
        if let Some(plugin) = super::run::audience_plugin(settings)? {
            feeds.sync_audiences(plugin);
        }
        let code = Code {
            current: bundle,
            bundles,
        };
        let initial = code.initial(&store).map_err(|e| fail(&e))?;
        let (sink, captured) = LedgerSink::new(feeds);
        let mut engine = Engine::new(initial, sink, config, i64::MIN);
        let source = store.source(SOURCE).map_err(|e| fail(&e))?;
        let mut report = Report::default();
        let mut history = Vec::new();
        let mut batch = Batch::default();
        let resumed = durable::resume(
            &mut store,
            &mut engine,
            code,
            durable::Resume {
                captured: &captured,
                router: &mut router,
                source: &source,
                start: start.as_ref(),
            },
            &mut report,
            &mut history,
            &mut batch,
        )
        .map_err(|e| fail(&e))?;
        if let Some(d) = &resumed.deployed {
            eprintln!(
                "note: the project changed since the store was last served; deployed it:\n{d}"
            );
        }
        // The deploy (if any) and the delivery results of pending sends are
        // stored before anything else happens.
        batch.meta.push(("clock", engine.now().to_string()));
        store.commit(&mut batch).map_err(|e| fail(&e))?;
        let marks = std::mem::take(&mut batch.marks);
        let dead_path = state.join("dead_letters.jsonl");
        let dead = nudge_host::feeds::write_dead_letters(&dead_path, &history)
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .open(&dead_path)
                    .map_err(|e| format!("cannot open {}: {e}", dead_path.display()))
            })
            .map_err(|e| {
                eprintln!("error: {e}");
                Status::Failure
            })?;
        let mut live = Live {
            store,
            engine,
            code,
            group: setup.group.to_vec(),
            captured,
            router,
            invalid_tokens: routes
                .iter()
                .filter_map(|(_, spec)| match spec {
                    nudge_channels::PluginSpec::Fcm(c) => Some(c.invalid_tokens.clone()),
                    _ => None,
                })
                .collect(),
            source,
            marks,
            to_deliver: Vec::new(),
            retries: retry::Retries::new(retry_first),
            until: None,
            report,
            dead: BufWriter::new(dead),
            dead_path,
            metrics,
            max_sends,
            paused: None,
            held: Vec::new(),
            alerts: None,
            stored_dead: history,
            since_checkpoint: 0,
            checkpoint_every: settings.checkpoint_every(),
            keep_calls: settings.keep_calls_ms(),
            alerts_webhook: String::new(),
            root: root.to_path_buf(),
        };
        live.metrics.watch_events(declared_events(bundle));
        // Checked when nudge.toml was read.
        let rules = settings.alert_rules().unwrap_or_default();
        live.set_alerts(rules, settings);
        // Counting starts now: on the wall clock, the time the server was
        // down was not observed; on the calls' clock, nothing was missed
        // beyond what the last run counted and did not keep.
        let counting_from = if args.clock == Clock::Wall && !args.stdin {
            chrono::Utc::now().timestamp_millis()
        } else {
            live.engine.now()
        };
        live.restore_alerts(counting_from);
        if !resumed.held.is_empty() {
            // A flood held before a restart stays held after it.
            live.trip(format!(
                "{} sends were pending when the server started",
                resumed.held.len()
            ));
            live.held = resumed.held;
            live.metrics
                .held
                .store(live.held.len() as u64, Ordering::Relaxed);
        }
        Ok(live)
    }

    /// Watches `rules`, notifying through the settings' `[alerts_webhook]`.
    /// Alerts watched before keep their history, and their state while
    /// their name stays (notifications queued before are posted first).
    fn set_alerts(&mut self, rules: Vec<alerts::Rule>, settings: &ProjectConfig) {
        self.metrics.watch_events(alerts::watched_events(&rules));
        self.alerts_webhook = format!("{:?}", settings.alerts_webhook);
        let now = self.engine.now();
        let empty = rules.is_empty();
        if let Some(watch) = self.alerts.as_mut() {
            // Removed alerts that were firing resolve: kept, then posted.
            if let Some(write) = watch.replace(rules, settings.alerts_webhook.as_ref(), now)
                && !self.metrics.broken.load(Ordering::Relaxed)
                && let Err(e) = self.store.commit(&mut Batch {
                    alerts: Some(write),
                    ..Batch::default()
                })
            {
                eprintln!("warning: the alerts' state could not be stored ({e})");
            }
            watch.send();
            if empty && let Some(old) = self.alerts.take() {
                self.keep_alerts(old);
            }
        } else if !empty {
            self.alerts = alerts::Watch::new(rules, settings.alerts_webhook.as_ref());
        }
        self.show_alerts(true);
    }

    /// Puts each alert's state on `/metrics`; `all` drops alerts no longer
    /// declared.
    fn show_alerts(&self, all: bool) {
        if let Ok(mut firing) = self.metrics.alerts_firing.lock() {
            if all {
                firing.clear();
            }
            for (rule, on) in self.alerts.iter().flat_map(|w| w.firing()) {
                firing.insert(rule.name.clone(), on);
            }
        }
    }

    /// Takes up the alerts' state an earlier run kept in the store; `now`
    /// is when this run's counting started. A state that cannot be read
    /// is reported and the alerts start afresh, not firing.
    fn restore_alerts(&mut self, now: i64) {
        let Some(watch) = self.alerts.as_mut() else {
            return;
        };
        let restored = self
            .store
            .alerts()
            .map_err(|e| e.to_string())
            .and_then(|read| read.map(|r| watch.restore(&r, now)).transpose());
        match restored {
            Ok(None) => {}
            Ok(Some(r)) => {
                for name in &r.firing {
                    eprintln!("note: alert {name} was firing when the server stopped; it still is");
                }
                if r.requeued > 0 {
                    eprintln!(
                        "note: {} alert notifications not known to be posted are posted again",
                        r.requeued
                    );
                }
                if r.bad_samples > 0 {
                    eprintln!(
                        "warning: {} stored samples of the alerts' counters cannot be read and are left out",
                        r.bad_samples
                    );
                }
            }
            Err(e) => eprintln!(
                "warning: the alerts' state in the store cannot be read ({e}); the alerts start again, not firing"
            ),
        }
        if let Some(watch) = self.alerts.as_mut() {
            self.metrics
                .alerts_unposted
                .store(watch.unposted() as u64, Ordering::Relaxed);
            watch.send();
        }
        self.show_alerts(true);
    }

    /// Keeps the state of `watch`, which stops, in the store.
    fn keep_alerts(&mut self, watch: alerts::Watch) {
        let write = watch.finish(self.engine.now(), &self.metrics.alert_counters());
        if let Some(write) = write
            && !self.metrics.broken.load(Ordering::Relaxed)
            && let Err(e) = self.store.commit(&mut Batch {
                alerts: Some(write),
                ..Batch::default()
            })
        {
            eprintln!(
                "warning: the alerts' state could not be stored ({e}); after a restart they may notify again"
            );
        }
    }

    /// Reads `[[alerts]]` and `[alerts_webhook]` again; alerts whose
    /// settings did not change keep their state. Says what happened, or
    /// why nothing could.
    fn reload_alerts(&mut self) -> Result<&'static str, String> {
        // The error names the file.
        let settings = ProjectConfig::load(&self.root).map_err(|e| e.to_string())?;
        let rules = settings
            .alert_rules()
            .map_err(|e| format!("nudge.toml: {e}"))?;
        let before: Vec<alerts::Rule> = self
            .alerts
            .iter()
            .flat_map(|w| w.firing().map(|(r, _)| r.clone()))
            .collect();
        if before == rules && self.alerts_webhook == format!("{:?}", settings.alerts_webhook) {
            return Ok("unchanged");
        }
        eprintln!("note: [[alerts]] read again: {} declared", rules.len());
        self.set_alerts(rules, &settings);
        Ok("reloaded")
    }

    /// Pauses sending: every send committed from now on is held until
    /// [`Live::release`].
    fn trip(&mut self, reason: String) {
        if self.paused.is_some() {
            return;
        }
        eprintln!(
            "alert: sending paused by the circuit breaker (max_sends_per_step = {}): {reason}; sends are held in the ledger until POST /admin/release-sends",
            self.max_sends
        );
        self.metrics.trips.fetch_add(1, Ordering::Relaxed);
        self.metrics.paused.store(true, Ordering::Relaxed);
        self.paused = Some(reason);
    }

    /// The operator's release: held sends go out and sending resumes.
    fn release(&mut self) -> Reloaded {
        let Some(reason) = self.paused.take() else {
            return (StatusCode::OK, json!({"paused": false, "released": 0}));
        };
        let released = self.held.len();
        self.to_deliver.append(&mut self.held);
        self.metrics.held.store(0, Ordering::Relaxed);
        self.metrics.paused.store(false, Ordering::Relaxed);
        eprintln!("note: sending resumed by the operator; {released} held sends released");
        self.deliver();
        (
            StatusCode::OK,
            json!({"paused": false, "released": released, "reason": reason}),
        )
    }

    /// Trips the breaker when one step made more sends than allowed.
    fn check_step(&mut self, made: usize, step: impl FnOnce() -> String) {
        if made > self.max_sends {
            let reason = format!("{} made {made} sends", step());
            self.trip(reason);
        }
    }

    /// Applies `lines` and commits them with their sends in one
    /// transaction; [`Live::deliver`] sends them after.
    fn ingest<'l>(
        &mut self,
        lines: impl IntoIterator<Item = &'l String>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        if let Some(t) = self.until.take() {
            batch.calls.push(NewCall::Until(t));
        }
        let mut dead = Vec::new();
        let mut count = 0;
        let applied_at = chrono::Utc::now().timestamp_millis();
        for line in lines {
            count += 1;
            self.source.line += 1;
            let before = self.captured.len();
            let refused = dead.len();
            durable::apply_line(
                &mut self.engine,
                line.as_bytes(),
                self.source.line,
                &mut dead,
            );
            if dead.len() == refused {
                self.metrics.count_event(line, applied_at);
            }
            let made = self.captured.len().saturating_sub(before);
            let at = self.source.line;
            self.check_step(made, || format!("call {at} of `nudge serve`"));
            batch.calls.push(NewCall::Line {
                source: self.source.id,
                line: self.source.line,
                body: line.as_bytes(),
            });
        }
        batch.source = Some(self.source.clone());
        self.stored_dead.extend(dead.iter().cloned());
        self.since_checkpoint += count;
        if self.checkpoint_every > 0 && self.since_checkpoint >= self.checkpoint_every {
            batch.checkpoint = Some(self.checkpoint()?);
            batch.compact = durable::compaction(self.keep_calls, self.engine.now());
        }
        self.commit(&mut batch)?;
        self.metrics.events.fetch_add(count, Ordering::Relaxed);
        self.metrics
            .last_event
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let counters = self.engine.counters();
        self.metrics
            .dropped
            .store(counters.dropped, Ordering::Relaxed);
        self.metrics
            .undeclared
            .store(counters.undeclared, Ordering::Relaxed);
        self.metrics
            .groups
            .store(counters.groups, Ordering::Relaxed);
        self.write_dead(&dead);
        Ok(())
    }

    /// Compiles the project again and deploys it: new instances start on the
    /// new code, in-flight ones stay on theirs unless carried by step label.
    /// The deploy is durable before the answer.
    fn reload(&mut self) -> Reloaded {
        let alerts = match self.reload_alerts() {
            Ok(done) => done,
            Err(e) => {
                eprintln!("reload refused: {e}");
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": e, "help": "fix nudge.toml; the alerts and code deployed before keep running"}),
                );
            }
        };
        let (status, mut body) = self.redeploy();
        super::put(&mut body, "alerts", json!(alerts));
        (status, body)
    }

    /// The code half of [`Live::reload`].
    fn redeploy(&mut self) -> Reloaded {
        let bundle = match super::compile_to_text(&self.group) {
            Ok(b) => b,
            Err(problems) => {
                eprintln!("reload refused: the project does not compile:\n{problems}");
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"error": "the project does not compile; still serving the code deployed before", "problems": problems}),
                );
            }
        };
        let bytes = nudge_store::portable(&bundle);
        if bytes == nudge_store::portable(self.code.current) {
            return (
                StatusCode::OK,
                json!({"deployed": false, "reason": "the project did not change"}),
            );
        }
        let bundle: &'b nudge_bytecode::Bundle = self.code.bundles.alloc(bundle);
        let deployed = match self.engine.deploy(bundle, self.code.bundles) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("reload refused: {e}");
                return (
                    StatusCode::CONFLICT,
                    json!({"error": e.to_string(), "help": "change the project as each problem says; the code deployed before keeps serving"}),
                );
            }
        };
        self.code.current = bundle;
        self.metrics.watch_events(declared_events(bundle));
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        batch.calls.push(NewCall::Deploy(bytes));
        if let Err(e) = self.commit(&mut batch) {
            // The engine runs code the store does not know of: stop taking calls.
            self.broken(&e);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("the deploy could not be stored: {e}")}),
            );
        }
        self.deliver();
        eprintln!("deployed release {}:\n{deployed}", deployed.release);
        (
            StatusCode::OK,
            json!({"deployed": true, "report": deployed}),
        )
    }

    /// Moves the clock to `now`, firing due timers; their sends are made
    /// durable (with the clock mark) before they are delivered.
    fn tick(&mut self, now: i64) -> Result<(), StoreError> {
        let lag = now.saturating_sub(self.engine.now()).max(0);
        self.metrics.lag.store(lag, Ordering::Relaxed);
        if now <= self.engine.now() {
            return Ok(());
        }
        let before = self.captured.len();
        self.engine.advance_through(now);
        let made = self.captured.len().saturating_sub(before);
        self.check_step(made, || {
            let to = chrono::DateTime::from_timestamp_millis(now).map_or_else(
                || now.to_string(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
            format!("the clock step to {to}")
        });
        self.until = Some(now);
        if self.captured.is_empty() && self.marks.is_empty() {
            return Ok(());
        }
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        self.commit(&mut batch)
    }

    /// Commits `batch` with the engine's new sends; they wait in
    /// `to_deliver` until [`Live::deliver`], so a request can be answered
    /// as soon as its calls are durable.
    fn commit(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        batch.meta.push(("clock", self.engine.now().to_string()));
        let started = Instant::now();
        let intents = durable::commit_captured(&mut self.store, &self.captured, batch)?;
        self.metrics.commit(started.elapsed());
        self.marks.append(&mut batch.marks);
        if self.paused.is_some() {
            self.held.extend(intents);
            self.metrics
                .held
                .store(self.held.len() as u64, Ordering::Relaxed);
        } else {
            self.to_deliver.extend(intents);
        }
        Ok(())
    }

    /// Delivers what the last commits made durable; the results ride on the
    /// next commit.
    /// Failed sends that may be retried come back in later rounds (see
    /// [`retry`]); the trace and feeds are flushed so readers see them.
    fn deliver(&mut self) {
        let now = Instant::now();
        let mut work: Vec<(Intent, u32)> = std::mem::take(&mut self.to_deliver)
            .into_iter()
            .map(|i| (i, 0))
            .collect();
        work.extend(self.retries.due(now));
        if !work.is_empty() {
            let (intents, rounds): (Vec<Intent>, Vec<u32>) = work.into_iter().unzip();
            let first = self.marks.len();
            let sent = durable::deliver(
                &mut self.router,
                &intents,
                &mut self.marks,
                &mut self.report,
            );
            if let Ok(mut sends) = self.metrics.sends.lock() {
                for (channel, outcome) in &sent {
                    *sends
                        .entry((channel.clone(), outcome.as_str()))
                        .or_default() += 1;
                }
            }
            if let Ok(mut providers) = self.metrics.providers.lock() {
                for (channel, outcome) in &sent {
                    if *outcome != nudge_channels::Delivery::Delivered {
                        let provider = self.router.provider(channel).to_string();
                        providers.entry(provider).or_default().failed += 1;
                    }
                }
            }
            let retries = &mut self.retries;
            let marks = self.marks.get_mut(first..).unwrap_or_default();
            // Every attempt's result goes to the trace: a retry's record
            // follows the failure before it, and the last one stands.
            let mut records = Vec::with_capacity(intents.len());
            for ((intent, round), mark) in intents.into_iter().zip(rounds).zip(marks) {
                records.push(durable::delivery_record(&self.router, &intent, mark));
                let Mark::Failed {
                    retryable: retryable @ true,
                    reason,
                    ..
                } = mark
                else {
                    continue;
                };
                let provider = self.router.provider(&intent.message.channel).to_string();
                match retries.failed(intent, round, now) {
                    retry::Next::RetryAt(_) => {
                        self.metrics.retried.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut providers) = self.metrics.providers.lock() {
                            providers.entry(provider).or_default().retried += 1;
                        }
                    }
                    retry::Next::GiveUp => {
                        *retryable = false;
                        *reason = format!("gave up after {} rounds: {reason}", retry::ROUNDS);
                        if let Some(r) = records.last_mut() {
                            r.reason = Some(match r.reason.take() {
                                Some(why) => {
                                    format!("gave up after {} rounds: {why}", retry::ROUNDS)
                                }
                                None => reason.clone(),
                            });
                        }
                        self.metrics.given_up.fetch_add(1, Ordering::Relaxed);
                    }
                    retry::Next::Later => {}
                }
            }
            self.metrics
                .retrying
                .store(self.retries.len() as u64, Ordering::Relaxed);
            if let Ok(mut by_message) = self.metrics.message_sends.lock() {
                for r in &records {
                    let key = (
                        r.flow.clone(),
                        r.message.clone(),
                        r.channel.clone(),
                        r.outcome.name(),
                    );
                    *by_message.entry(key).or_default() += 1;
                }
            }
            let feeds = self.engine.sink_mut().feeds_mut();
            for r in &records {
                durable::Feed::delivery(feeds, r);
            }
            self.remove_invalid_tokens();
        }
        self.engine.sink_mut().feeds_mut().flush();
        self.watch();
    }

    /// Unsets the device tokens the push provider reported invalid, as
    /// identify calls through the same path as any call.
    fn remove_invalid_tokens(&mut self) {
        let gone: Vec<_> = self.invalid_tokens.iter().flat_map(|t| t.take()).collect();
        if gone.is_empty() || self.metrics.broken.load(Ordering::Relaxed) {
            return;
        }
        let lines = durable::token_removals(
            &mut self.engine,
            gone,
            chrono::Utc::now().timestamp_millis(),
        );
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.ingest(lines.iter()) {
            self.broken(&e);
        }
    }

    /// Evaluates the alerts on the engine's clock (the wall clock, or the
    /// calls' own times with `--clock events`) and notifies their changes.
    fn watch(&mut self) {
        let Some(watch) = &mut self.alerts else {
            return;
        };
        let now = self.engine.now();
        // `i64::MIN`: nothing has set the clock yet.
        if now == i64::MIN {
            return;
        }
        let store = &mut self.store;
        let broken = self.metrics.broken.load(Ordering::Relaxed);
        let mut keep = |write| {
            if broken {
                return Err("the store failed earlier".to_string());
            }
            store
                .commit(&mut Batch {
                    alerts: Some(write),
                    ..Batch::default()
                })
                .map_err(|e| e.to_string())
        };
        // Posted notifications are kept as such, so a restart does not
        // post them again; quiet observations are kept within a second.
        if let Some(write) = watch.posted().or_else(|| watch.overdue())
            && let Err(e) = keep(write)
        {
            eprintln!("warning: the alerts' state could not be stored ({e})");
        }
        let changed = watch.due(now) && watch.observe(now, &self.metrics.alert_counters(), keep);
        self.metrics
            .alerts_unposted
            .store(watch.unposted() as u64, Ordering::Relaxed);
        watch.send();
        if changed {
            self.show_alerts(false);
        }
    }

    /// Counts the sends committed and not yet delivered, by provider:
    /// waiting for delivery, for their next round, or held by the breaker.
    fn count_pending(&self) {
        let Ok(mut providers) = self.metrics.providers.lock() else {
            return;
        };
        for p in providers.values_mut() {
            p.pending = 0;
        }
        let waiting = self.to_deliver.iter().chain(&self.held);
        let channels = waiting
            .map(|i| i.message.channel.as_str())
            .chain(self.retries.channels());
        for channel in channels {
            let provider = self.router.provider(channel).to_string();
            providers.entry(provider).or_default().pending += 1;
        }
    }

    fn write_dead(&mut self, dead: &[DeadLetter]) {
        for d in dead {
            self.metrics.dead.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut reasons) = self.metrics.dead_reasons.lock() {
                *reasons.entry(dead::code(&d.reason)).or_default() += 1;
            }
            let written = serde_json::to_string(d)
                .map_err(std::io::Error::other)
                .and_then(|l| writeln!(self.dead, "{l}"));
            if let Err(e) = written {
                eprintln!("warning: writing {}: {e}", self.dead_path.display());
            }
        }
        let _ = self.dead.flush();
    }

    /// Renders the engine's per-flow counters for `/metrics`.
    fn publish_flows(&mut self) {
        // Here rather than after each delivery: an outage can leave many
        // sends between rounds, too many to count after every request.
        self.count_pending();
        self.metrics
            .timers
            .store(self.engine.timers_pending() as u64, Ordering::Relaxed);
        let mut text = flow_metrics(&self.engine.stats(), self.engine.releases().count());
        text.push_str(&waiting_metrics(&self.engine.instances_by_step()));
        if let Ok(mut flows) = self.metrics.flows.lock() {
            *flows = text;
        }
    }

    /// The engine's state as of its last call, for the next commit.
    fn checkpoint(&mut self) -> Result<nudge_store::Checkpoint, StoreError> {
        self.since_checkpoint = 0;
        durable::checkpoint_of(self.store.path(), &mut self.engine, &self.stored_dead)
    }

    fn broken(&self, e: &StoreError) {
        eprintln!("error: {e}");
        self.metrics.broken.store(true, Ordering::Relaxed);
    }

    /// Stores the last delivery results, the clock and the counters.
    fn finish(mut self) -> Status {
        self.deliver();
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        batch.meta.push((
            "stats",
            serde_json::to_string(&self.engine.stats()).unwrap_or_default(),
        ));
        let mut status = Status::Ok;
        if !self.metrics.broken.load(Ordering::Relaxed) {
            // The next start loads this state instead of replaying the calls.
            let mut committed = self.checkpoint().map(|c| batch.checkpoint = Some(c));
            batch.compact = durable::compaction(self.keep_calls, self.engine.now());
            // Nothing new is sent here; should a commit still hand back
            // sends, deliver them and store their results too.
            if committed.is_ok() {
                committed = self.commit(&mut batch);
            }
            if committed.is_ok() && !self.to_deliver.is_empty() {
                self.deliver();
                let mut last = Batch {
                    marks: std::mem::take(&mut self.marks),
                    ..Batch::default()
                };
                committed = self.commit(&mut last);
            }
            if let Err(e) = committed {
                status = fail(&e);
            }
        }
        if !self.held.is_empty() {
            eprintln!(
                "warning: {} sends held by the circuit breaker stay pending in the store; the next start holds them again until POST /admin/release-sends",
                self.held.len()
            );
        }
        if let Some(f) = &self.report.first_failure {
            eprintln!(
                "warning: {} deliveries failed; first: {f}",
                self.report.failed
            );
        }
        if let Some(watch) = self.alerts.take() {
            self.keep_alerts(watch);
        }
        let flushed = self.dead.flush();
        let mut feeds = self.engine.into_sink().into_feeds();
        if let Some(synced) = feeds.finish_sync() {
            super::run::print_synced(&synced);
        }
        if let Err(e) = feeds.finish() {
            eprintln!("error: {e}");
            status = Status::Failure;
        }
        if let Err(e) = flushed {
            eprintln!("error: writing {}: {e}", self.dead_path.display());
            status = Status::Failure;
        }
        if self.metrics.broken.load(Ordering::Relaxed) {
            status = Status::Failure;
        }
        status
    }
}

/// Counters for `GET /metrics`, written by the engine thread.
#[derive(Default)]
struct Metrics {
    events: AtomicU64,
    dead: AtomicU64,
    /// Properties or traits dropped from calls that were applied.
    dropped: AtomicU64,
    /// Track calls for events the project does not declare.
    undeclared: AtomicU64,
    /// Segment `group` calls.
    groups: AtomicU64,
    sends: Mutex<BTreeMap<(String, &'static str), u64>>,
    lag: AtomicI64,
    commit_micros: AtomicU64,
    commits: AtomicU64,
    /// A commit failed: the engine is ahead of the store, so nothing more is accepted.
    broken: AtomicBool,
    /// Requests answered 503 because the engine's queue was full.
    busy: AtomicU64,
    /// Failed deliveries scheduled for another round.
    retried: AtomicU64,
    /// Sends given up after their last round.
    given_up: AtomicU64,
    /// Sends waiting for their next round now.
    retrying: AtomicU64,
    /// Connections closed and requests cut short by the HTTP limits, by limit.
    timeouts: Mutex<BTreeMap<&'static str, u64>>,
    /// The send circuit breaker is open: sending is paused.
    paused: AtomicBool,
    /// Times the breaker opened.
    trips: AtomicU64,
    /// Sends held while it is open.
    held: AtomicU64,
    /// When the engine thread last came round its loop, in milliseconds
    /// since the epoch.
    heartbeat: AtomicI64,
    /// The server is shutting down: the engine may be finishing its queue.
    stopping: AtomicBool,
    /// Applied track calls by event name, for the events alerts watch (a
    /// fixed set, so the label's values stay few).
    track_events: Mutex<BTreeMap<String, u64>>,
    /// When a track call of each of those events was last applied, in
    /// milliseconds since the epoch (wall clock).
    track_last: Mutex<BTreeMap<String, i64>>,
    /// Delivery attempts by flow, message, channel and outcome.
    message_sends: Mutex<BTreeMap<MessageOutcome, u64>>,
    /// Whether each alert is firing, by name.
    alerts_firing: Mutex<BTreeMap<String, bool>>,
    /// Alert notifications decided and not yet known to be posted.
    alerts_unposted: AtomicU64,
    /// The per-flow families, rendered from the engine's counters by the
    /// engine thread once a second (the counters live on that thread).
    flows: Mutex<String>,
    /// Requests answered, by route (its pattern, so values stay few) and status.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// When the last call was committed, in milliseconds since the epoch (0: none yet).
    last_event: AtomicI64,
    /// Timers set and not yet due, after the last tick.
    timers: AtomicU64,
    /// Calls whose time was later than their receipt, applied at it.
    clamped: AtomicU64,
    /// Commits by the histogram's buckets (see [`COMMIT_BUCKETS`]); the last
    /// counts those slower than every bound.
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    /// Dead letters by reason code (see [`dead::code`]).
    dead_reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// Deliveries by provider (the plugin's name).
    providers: Mutex<BTreeMap<String, ProviderCounts>>,
}

/// A delivery's flow, message, channel and outcome: the labels of
/// `nudge_message_sends_total`.
type MessageOutcome = (String, String, String, &'static str);

/// The upper bounds, in seconds, of the commit latency histogram's buckets:
/// from a commit that only appends to the WAL to one stuck behind a slow disk.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What became of one provider's deliveries.
#[derive(Default)]
struct ProviderCounts {
    /// Committed sends waiting for delivery, for their next round, or held.
    pending: u64,
    /// Failed deliveries scheduled for another round.
    retried: u64,
    /// Deliveries that failed, or whose outcome is unknown.
    failed: u64,
}

impl Metrics {
    /// Notes that the engine thread is alive and taking work.
    fn beat(&self) {
        self.heartbeat
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// How long since the engine thread last came round its loop.
    fn since_beat(&self) -> Duration {
        let last = self.heartbeat.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        Duration::from_millis(now.saturating_sub(last).max(0) as u64)
    }

    /// Starts counting track calls of `events` by name (and of any other
    /// event as `other`).
    fn watch_events(&self, events: impl IntoIterator<Item = String>) {
        if let Ok(mut counts) = self.track_events.lock() {
            counts.entry(OTHER_EVENTS.to_string()).or_default();
            for e in events {
                counts.entry(e).or_default();
            }
        }
    }

    /// Counts `line` by its event if it is a track call applied at `now`
    /// (milliseconds, wall clock).
    fn count_event(&self, line: &str, now: i64) {
        let Some(name) = track_event(line) else {
            return;
        };
        let Ok(mut counts) = self.track_events.lock() else {
            return;
        };
        // Only names counted from the start are labels, so their values
        // stay few whatever clients send.
        let key = if counts.contains_key(name.as_ref()) {
            name.as_ref()
        } else {
            OTHER_EVENTS
        };
        if let Some(n) = counts.get_mut(key) {
            *n += 1;
        }
        if let Ok(mut last) = self.track_last.lock() {
            last.insert(key.to_string(), now);
        }
    }

    /// The counters alerts are evaluated over.
    fn alert_counters(&self) -> alerts::Counters {
        let (mut delivered, mut failed) = (0, 0);
        if let Ok(sends) = self.sends.lock() {
            for ((_, outcome), n) in sends.iter() {
                match *outcome {
                    "delivered" => delivered += n,
                    _ => failed += n,
                }
            }
        }
        alerts::Counters {
            calls: self.events.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            delivered,
            failed,
            events: self
                .track_events
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }

    /// Counts a connection or request cut short by the `limit` timeout.
    fn timeout(&self, limit: &'static str) {
        if let Ok(mut counts) = self.timeouts.lock() {
            *counts.entry(limit).or_default() += 1;
        }
    }

    fn commit(&self, took: Duration) {
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(COMMIT_BUCKETS.len());
        // Past the last bound is the `+Inf` slot, one past the bounds.
        if let Some(b) = self.commit_buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition format.
    fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        let events = self.events.load(Ordering::Relaxed);
        metric(
            "nudge_events_total",
            "counter",
            "Calls accepted and committed since the server started.",
            vec![format!("nudge_events_total {events}")],
        );
        let dead = self.dead.load(Ordering::Relaxed);
        metric(
            "nudge_dead_letters_total",
            "counter",
            "Accepted calls the engine refused (they are in the dead-letter file).",
            vec![format!("nudge_dead_letters_total {dead}")],
        );
        let reasons = self
            .dead_reasons
            .lock()
            .map(|r| {
                dead::CODES
                    .iter()
                    .map(|code| {
                        let n = r.get(code).copied().unwrap_or(0);
                        format!("nudge_dead_letters_by_reason_total{{reason=\"{code}\"}} {n}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_dead_letters_by_reason_total",
            "counter",
            "Dead letters by reason code (the dead-letter file keeps the full reason).",
            reasons,
        );
        let clamped = self.clamped.load(Ordering::Relaxed);
        metric(
            "nudge_calls_clamped_total",
            "counter",
            "Calls stamped later than their receipt (after correcting for the sender's clock): applied at their receipt.",
            vec![format!("nudge_calls_clamped_total {clamped}")],
        );
        let mut pending = Vec::new();
        let mut retried = Vec::new();
        let mut failed = Vec::new();
        if let Ok(providers) = self.providers.lock() {
            for (provider, c) in providers.iter() {
                let p = label_value(provider);
                pending.push(format!(
                    "nudge_provider_deliveries_pending{{provider={p}}} {}",
                    c.pending
                ));
                retried.push(format!(
                    "nudge_provider_retries_total{{provider={p}}} {}",
                    c.retried
                ));
                failed.push(format!(
                    "nudge_provider_failures_total{{provider={p}}} {}",
                    c.failed
                ));
            }
        }
        metric(
            "nudge_provider_deliveries_pending",
            "gauge",
            "Committed sends not yet delivered, by provider (the plugin): waiting, between retry rounds, or held by the breaker.",
            pending,
        );
        metric(
            "nudge_provider_retries_total",
            "counter",
            "Failed deliveries scheduled for another round, by provider.",
            retried,
        );
        metric(
            "nudge_provider_failures_total",
            "counter",
            "Delivery attempts that failed or whose outcome is unknown, by provider.",
            failed,
        );
        // Counted since the store began (the engine's counters are rebuilt
        // with its history), unlike the counters above.
        for (name, help, value) in [
            (
                "nudge_dropped_properties_total",
                "Properties and traits dropped from calls that were applied (the trace says which).",
                &self.dropped,
            ),
            (
                "nudge_undeclared_events_total",
                "Track calls for events the project does not declare: accepted and counted.",
                &self.undeclared,
            ),
            (
                "nudge_group_calls_total",
                "Segment group calls accepted.",
                &self.groups,
            ),
        ] {
            let n = value.load(Ordering::Relaxed);
            metric(name, "counter", help, vec![format!("{name} {n}")]);
        }
        let busy = self.busy.load(Ordering::Relaxed);
        metric(
            "nudge_http_busy_total",
            "counter",
            "Requests answered 503 with Retry-After because the engine's queue was full.",
            vec![format!("nudge_http_busy_total {busy}")],
        );
        for (name, kind, help, value) in [
            (
                "nudge_delivery_retries_total",
                "counter",
                "Failed deliveries scheduled for another round while serving.",
                &self.retried,
            ),
            (
                "nudge_delivery_given_up_total",
                "counter",
                "Sends given up after their last round of delivery.",
                &self.given_up,
            ),
            (
                "nudge_delivery_retrying",
                "gauge",
                "Sends waiting for their next round of delivery.",
                &self.retrying,
            ),
        ] {
            let n = value.load(Ordering::Relaxed);
            metric(name, kind, help, vec![format!("{name} {n}")]);
        }
        let timeouts = self
            .timeouts
            .lock()
            .map(|t| {
                ["header", "body", "idle", "request"]
                    .iter()
                    .map(|limit| {
                        let n = t.get(limit).copied().unwrap_or(0);
                        format!("nudge_http_timeouts_total{{limit=\"{limit}\"}} {n}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_http_timeouts_total",
            "counter",
            "Connections closed or requests answered early by the [serve] timeouts, by limit.",
            timeouts,
        );
        for (name, kind, help, value) in [
            (
                "nudge_send_breaker_open",
                "gauge",
                "1 while the send circuit breaker holds every send (POST /admin/release-sends resumes).",
                u64::from(self.paused.load(Ordering::Relaxed)),
            ),
            (
                "nudge_send_breaker_trips_total",
                "counter",
                "Times one call or clock step made more sends than [runtime] max_sends_per_step.",
                self.trips.load(Ordering::Relaxed),
            ),
            (
                "nudge_sends_held",
                "gauge",
                "Committed sends the open breaker holds.",
                self.held.load(Ordering::Relaxed),
            ),
        ] {
            metric(name, kind, help, vec![format!("{name} {value}")]);
        }
        let sends = self
            .sends
            .lock()
            .map(|s| {
                s.iter()
                    .map(|((channel, outcome), n)| {
                        format!(
                            "nudge_sends_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} {n}"
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_sends_total",
            "counter",
            "Messages handed to plugins, by channel and outcome.",
            sends,
        );
        let by_name = |map: &Mutex<BTreeMap<String, u64>>, name: &str, label: &str| {
            map.lock()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| format!("{name}{{{label}={}}} {n}", label_value(k)))
                        .collect()
                })
                .unwrap_or_default()
        };
        metric(
            "nudge_track_events_total",
            "counter",
            "Applied track calls since the server started, by event: the project's declared events, and `other`.",
            by_name(&self.track_events, "nudge_track_events_total", "event"),
        );
        let firing = self
            .alerts_firing
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, on)| (k.clone(), u64::from(*on)))
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_alerts_firing",
            "gauge",
            "1 while the alert declared in [[alerts]] is firing.",
            by_name(&Mutex::new(firing), "nudge_alerts_firing", "alert"),
        );
        let unposted = self.alerts_unposted.load(Ordering::Relaxed);
        metric(
            "nudge_alert_notifications_unposted",
            "gauge",
            "Alert notifications decided and not yet known to be posted (kept in the store: a restart posts them).",
            vec![format!("nudge_alert_notifications_unposted {unposted}")],
        );
        let lag = self.lag.load(Ordering::Relaxed);
        metric(
            "nudge_timer_lag_seconds",
            "gauge",
            "How far the engine clock was behind the wall clock at the last tick.",
            vec![format!("nudge_timer_lag_seconds {}", lag as f64 / 1000.0)],
        );
        let sum = self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let count = self.commits.load(Ordering::Relaxed);
        let mut lines = Vec::new();
        let mut below = 0;
        for (le, n) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            below += n.load(Ordering::Relaxed);
            lines.push(format!(
                "nudge_commit_seconds_bucket{{le=\"{le}\"}} {below}"
            ));
        }
        lines.push(format!(
            "nudge_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        ));
        lines.push(format!("nudge_commit_seconds_sum {sum}"));
        lines.push(format!("nudge_commit_seconds_count {count}"));
        metric(
            "nudge_commit_seconds",
            "histogram",
            "Time to commit a batch of calls with its send intents.",
            lines,
        );
        let requests: Vec<String> = self
            .requests
            .lock()
            .map(|r| {
                r.iter()
                    .map(|((route, status), n)| {
                        format!(
                            "nudge_http_requests_total{{route={},status=\"{status}\"}} {n}",
                            label_value(route)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_http_requests_total",
            "counter",
            "HTTP requests answered, by route pattern and status.",
            requests,
        );
        let last_by_event = self
            .track_last
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(event, ms)| {
                        format!(
                            "nudge_track_event_last_timestamp_seconds{{event={}}} {}",
                            label_value(event),
                            *ms as f64 / 1000.0
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_track_event_last_timestamp_seconds",
            "gauge",
            "When a track call of the event was last applied, by event (as nudge_track_events_total names them); absent before the first.",
            last_by_event,
        );
        let by_message = self
            .message_sends
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((flow, message, channel, outcome), n)| {
                        format!(
                            "nudge_message_sends_total{{flow={},message={},channel={},outcome=\"{outcome}\"}} {n}",
                            label_value(flow),
                            label_value(message),
                            label_value(channel)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_message_sends_total",
            "counter",
            "Messages handed to plugins, by flow, message, channel and outcome (every round of a retried send counts).",
            by_message,
        );
        let last = self.last_event.load(Ordering::Relaxed);
        metric(
            "nudge_last_event_timestamp_seconds",
            "gauge",
            "When the last call was committed (0 before the first).",
            vec![format!(
                "nudge_last_event_timestamp_seconds {}",
                last as f64 / 1000.0
            )],
        );
        let timers = self.timers.load(Ordering::Relaxed);
        metric(
            "nudge_timers_pending",
            "gauge",
            "Timers set and not yet due (waits, deadlines, deferred sends, schedules; a timer a later change made stale counts until its time).",
            vec![format!("nudge_timers_pending {timers}")],
        );
        if let Ok(flows) = self.flows.lock() {
            out.push_str(&flows);
        }
        out
    }
}

/// The engine's counters as Prometheus families: per flow, since the store
/// began (the engine rebuilds them with its history). Reasons are stable
/// codes, so label values stay few.
fn flow_metrics(stats: &nudge_runtime::stats::Stats, releases: usize) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    let per_flow = |name: &str, value: &dyn Fn(&nudge_runtime::stats::FlowStats) -> String| {
        stats
            .flows
            .iter()
            .map(|(flow, f)| format!("{name}{{flow={}}} {}", label_value(flow), value(f)))
            .collect::<Vec<_>>()
    };
    family(
        "nudge_build_info",
        "gauge",
        "The running nudge's version.",
        vec![format!(
            "nudge_build_info{{version={}}} 1",
            label_value(env!("CARGO_PKG_VERSION"))
        )],
    );
    family(
        "nudge_releases",
        "gauge",
        "Releases the engine runs: the first bundle, then one per deploy.",
        vec![format!("nudge_releases {releases}")],
    );
    family(
        "nudge_deploys_total",
        "counter",
        "Deploys applied to the store since it began (each adds a release).",
        vec![format!(
            "nudge_deploys_total {}",
            releases.saturating_sub(1)
        )],
    );
    family(
        "nudge_flow_entered_total",
        "counter",
        "Instances started, per flow.",
        per_flow("nudge_flow_entered_total", &|f| f.entered.to_string()),
    );
    family(
        "nudge_flow_not_entered_total",
        "counter",
        "Triggers the entry rule refused, per flow.",
        per_flow("nudge_flow_not_entered_total", &|f| {
            f.not_entered.to_string()
        }),
    );
    family(
        "nudge_flow_instances_active",
        "gauge",
        "Instances live now (waiting or running), per flow.",
        per_flow("nudge_flow_instances_active", &|f| f.active.to_string()),
    );
    family(
        "nudge_flow_completed_total",
        "counter",
        "Instances that ran their last step, per flow.",
        per_flow("nudge_flow_completed_total", &|f| f.completed.to_string()),
    );
    let mut exits = Vec::new();
    for (flow, f) in &stats.flows {
        for (code, n) in &f.exits {
            exits.push(format!(
                "nudge_flow_exited_total{{flow={},reason={}}} {n}",
                label_value(flow),
                label_value(code.code())
            ));
        }
    }
    family(
        "nudge_flow_exited_total",
        "counter",
        "Instances that ended before their last step, per flow and reason code (exit_on, exit_if, exit, merged).",
        exits,
    );
    let mut decisions = Vec::new();
    for (flow, f) in &stats.flows {
        for ((outcome, code), n) in &f.by_code {
            let reason = if code.is_empty() {
                String::new()
            } else {
                format!(",reason={}", label_value(code))
            };
            decisions.push(format!(
                "nudge_flow_decisions_total{{flow={},outcome={}{reason}}} {n}",
                label_value(flow),
                label_value(outcome)
            ));
        }
    }
    family(
        "nudge_flow_decisions_total",
        "counter",
        "Send decisions per flow, by outcome and reason code (see docs/runtime.md, Files out).",
        decisions,
    );
    let mut sends = Vec::new();
    for (flow, f) in &stats.flows {
        for (channel, n) in &f.sends {
            sends.push(format!(
                "nudge_flow_sends_total{{flow={},channel={}}} {n}",
                label_value(flow),
                label_value(channel)
            ));
        }
    }
    family(
        "nudge_flow_sends_total",
        "counter",
        "Messages handed to a channel, per flow and channel.",
        sends,
    );
    let mut conversions = Vec::new();
    for (flow, f) in &stats.flows {
        for (group, n) in [
            ("treated", f.conversions),
            ("holdout", f.holdout_conversions),
        ] {
            conversions.push(format!(
                "nudge_flow_conversions_total{{flow={},group=\"{group}\"}} {n}",
                label_value(flow)
            ));
        }
    }
    family(
        "nudge_flow_conversions_total",
        "counter",
        "Goals reached, per flow, by treated and held-out instances.",
        conversions,
    );
    let feedback = stats
        .feedback
        .iter()
        .map(|((kind, flow), n)| {
            format!(
                "nudge_feedback_total{{kind=\"{kind}\",flow={}}} {n}",
                label_value(flow)
            )
        })
        .collect();
    family(
        "nudge_feedback_total",
        "counter",
        "Feedback by kind (bounce, spam, unsubscribe, stop, click) and the flow its event names (empty: none of the project's).",
        feedback,
    );
    let mut revenue = Vec::new();
    for (flow, f) in &stats.flows {
        for (currency, amount) in &f.revenue_by_currency {
            revenue.push(format!(
                "nudge_flow_revenue_total{{flow={},currency={}}} {}",
                label_value(flow),
                label_value(currency),
                amount.normalize()
            ));
        }
    }
    family(
        "nudge_flow_revenue_total",
        "counter",
        "Revenue of treated conversions, per flow and the goal event's currency (empty: the event gave none); currencies are never added together.",
        revenue,
    );
    out
}

/// Live instances by flow and step as a Prometheus family.
fn waiting_metrics(by_step: &BTreeMap<(String, String), u64>) -> String {
    let mut out = String::from(
        "# HELP nudge_flow_instances_waiting Live instances by flow and the step they wait at (its label, or `step N (what)`).\n# TYPE nudge_flow_instances_waiting gauge\n",
    );
    for ((flow, step), n) in by_step {
        out.push_str(&format!(
            "nudge_flow_instances_waiting{{flow={},step={}}} {n}\n",
            label_value(flow),
            label_value(step)
        ));
    }
    out
}

/// The event of a track call line (empty when it names none); `None` for
/// other calls. This runs on the engine thread for every call, so the usual
/// line (compact, as the HTTP side writes it, with `"type"` and `"event"`
/// keys once each and no escapes) is read without a JSON parser; anything
/// else is parsed.
fn track_event(line: &str) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        event: Option<std::borrow::Cow<'a, str>>,
    }
    if !line.contains("track") {
        return None;
    }
    let once = |key: &str| line.matches(key).count() == 1;
    if !line.contains('\\') && once("\"type\":") && once("\"event\":\"") {
        // A key's quotes cannot occur inside a string without escapes, so
        // each key found once is the envelope's own or a nested object's;
        // a nested one would make the call's own missing, and such a call
        // is refused before it is counted.
        if !line.contains("\"type\":\"track\"") {
            return None;
        }
        let rest = &line[line.find("\"event\":\"")? + "\"event\":\"".len()..];
        return Some(std::borrow::Cow::Borrowed(&rest[..rest.find('"')?]));
    }
    let head = serde_json::from_str::<Head<'_>>(line).ok()?;
    if head.kind.as_deref() != Some("track") {
        return None;
    }
    Some(head.event.unwrap_or_default())
}

/// The label of track calls for events the project does not declare.
const OTHER_EVENTS: &str = "other";

/// The wire names of the events `bundle` declares.
fn declared_events(bundle: &nudge_bytecode::Bundle) -> Vec<String> {
    bundle
        .schemas
        .iter()
        .filter(|s| s.kind == nudge_bytecode::SchemaKind::Event)
        .filter_map(|s| s.wire.clone())
        .collect()
}

/// A Prometheus label value, quoted and escaped.
fn label_value(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// What every handler shares.
#[derive(Clone)]
struct App {
    tx: mpsc::SyncSender<Msg>,
    /// Accepted write keys; empty with `--no-auth`.
    keys: Arc<[Secret]>,
    /// The bearer token of `POST /admin/reload`; without one it is off.
    admin: Option<Secret>,
    /// The bearer token `GET /metrics` wants, if any.
    metrics_token: Option<Secret>,
    metrics: Arc<Metrics>,
    /// How long the engine may go without coming round its loop before
    /// `/healthz` and `/readyz` fail.
    stalled: Duration,
    /// The providers' webhooks.
    hooks: Arc<feedback::Hooks>,
    /// The unsubscribe and preference pages.
    pages: Arc<pages::Pages>,
    /// Stamp calls with their receipt (on the wall clock only: on the
    /// events' clock, calls keep the times they carry).
    receipt: bool,
    /// How long clients and requests may take (`[serve]` timeouts).
    limits: HttpLimits,
}

/// Serves until SIGTERM or SIGINT, then lets in-flight requests finish.
fn serve_http(listen: &str, app: App) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
        let router = Router::new()
            .route("/v1/{kind}", post(ingest))
            .route("/healthz", get(healthz))
            .route("/readyz", get(healthz))
            .route("/admin/reload", post(reload))
            .route("/admin/release-sends", post(release_sends))
            .route("/metrics", get(metrics))
            .merge(feedback::routes())
            .merge(pages::routes())
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint", None) })
            .method_not_allowed_fallback(|| async {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed here",
                    None,
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                app.clone(),
                count_request,
            ))
            .with_state(app.clone());
        #[cfg(unix)]
        tokio::spawn(reload_on_sighup(app.tx.clone()));
        accept(listener, router, app.limits, app.metrics.clone()).await;
        Ok(())
    })
}

/// Counts a request by its route's pattern and its answer's status.
async fn count_request(
    State(app): State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(req).await;
    if let Ok(mut requests) = app.metrics.requests.lock() {
        *requests
            .entry((route, response.status().as_u16()))
            .or_insert(0) += 1;
    }
    response
}

/// Accepts connections until SIGTERM or SIGINT, each served under the
/// header-read, idle and request limits; then lets the open ones finish the
/// request they are in and waits for them.
///
/// Served by hand rather than with `axum::serve`, which hides hyper's
/// connection builder and so its header-read timeout.
async fn accept(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender: once all are dropped, every
    // connection has ended.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let signal = shutdown();
    tokio::pin!(signal);
    loop {
        let stream = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close
                    // rather than spin on the error.
                    eprintln!("warning: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            metrics.clone(),
            stopped.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

/// When a connection last had a request in progress, and how many it has now.
struct Activity {
    /// Milliseconds since `start` at the last request's start or end.
    last: AtomicU64,
    in_flight: AtomicU64,
    start: Instant,
}

impl Activity {
    fn touch(&self) {
        let at = self.start.elapsed().as_millis() as u64;
        self.last.store(at, Ordering::Relaxed);
    }

    /// How long the connection has had no request in progress (zero while it has one).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let at = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(at.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Serves one connection: hyper closes it when a request's headers take
/// longer than the header-read limit (its timer also runs while a kept-alive
/// connection waits for the next request), a request is answered 503 when it
/// takes longer than the request limit, and a connection with no request in
/// progress for the idle limit is closed.
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _open: tokio::sync::mpsc::Sender<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let activity = Arc::new(Activity {
        last: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        start: Instant::now(),
    });
    let routes = hyper_util::service::TowerToHyperService::new(router);
    let seen = activity.clone();
    let timed_out = metrics.clone();
    let service = hyper::service::service_fn(move |request: axum::http::Request<_>| {
        let answer = hyper::service::Service::call(&routes, request);
        let (activity, metrics) = (seen.clone(), timed_out.clone());
        async move {
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            activity.touch();
            let answer = tokio::time::timeout(limits.request, answer).await;
            activity.in_flight.fetch_sub(1, Ordering::Relaxed);
            activity.touch();
            Ok::<_, std::convert::Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    metrics.timeout("request");
                    // The calls may yet be committed: Segment's clients
                    // retry with the same messageId, which is deduplicated.
                    let message = format!(
                        "the request took longer than {}s: retry shortly",
                        limits.request.as_secs()
                    );
                    let mut late = error(StatusCode::SERVICE_UNAVAILABLE, &message, None);
                    late.headers_mut().insert(
                        header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static("1"),
                    );
                    late
                }
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let mut closing = false;
    loop {
        let idle = activity.idle_for();
        let wait = limits
            .idle
            .saturating_sub(idle)
            .max(Duration::from_millis(50));
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result
                    && e.is_timeout()
                {
                    metrics.timeout("header");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wait), if !closing => {
                if activity.idle_for() >= limits.idle {
                    closing = true;
                    metrics.timeout("idle");
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn error(status: StatusCode, message: &str, index: Option<usize>) -> Response {
    // `code` and `message` are the fields Segment's own libraries log.
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(' ', "_");
    let mut body = json!({ "error": message, "code": code, "message": message });
    if let Some(i) = index {
        super::put(&mut body, "index", json!(i));
    }
    (status, axum::Json(body)).into_response()
}

/// Asks the engine thread to reload and waits for its answer.
async fn ask_reload(tx: &mpsc::SyncSender<Msg>) -> Reloaded {
    let (reply, answer) = oneshot::channel();
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down"}),
        )
    };
    if tx.try_send(Msg::Reload(reply)).is_err() {
        return gone();
    }
    answer.await.unwrap_or_else(|_| gone())
}

/// `SIGHUP` reloads, as `POST /admin/reload` does; the engine thread logs
/// the outcome.
#[cfg(unix)]
async fn reload_on_sighup(tx: mpsc::SyncSender<Msg>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        eprintln!("warning: cannot listen for SIGHUP; reload with POST /admin/reload");
        return;
    };
    while hup.recv().await.is_some() {
        ask_reload(&tx).await;
    }
}

/// Whether the request carries `Authorization: Bearer TOKEN` with this token.
fn bearer_is(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|g| token.matches(g.trim().as_bytes()))
}

async fn reload(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(denied) = admin_denied(
        &app,
        &headers,
        "reloading over HTTP is off: set `admin_token` under [serve] in nudge.toml or NUDGE_ADMIN_TOKEN (SIGHUP also reloads)",
    ) {
        return denied;
    }
    let (status, body) = ask_reload(&app.tx).await;
    (status, axum::Json(body)).into_response()
}

/// The answer to an admin request without the admin token, if it is one.
fn admin_denied(app: &App, headers: &HeaderMap, off: &str) -> Option<Response> {
    let Some(token) = &app.admin else {
        return Some(error(StatusCode::FORBIDDEN, off, None));
    };
    (!bearer_is(headers, token)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "wrong or missing admin token: send `Authorization: Bearer TOKEN`",
            None,
        )
    })
}

/// `POST /admin/release-sends`: the operator's word that the sends the
/// circuit breaker holds may go out.
async fn release_sends(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(denied) = admin_denied(
        &app,
        &headers,
        "admin requests are off: set `admin_token` under [serve] in nudge.toml or NUDGE_ADMIN_TOKEN",
    ) {
        return denied;
    }
    let (reply, answer) = oneshot::channel();
    let gone = || error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    if app.tx.try_send(Msg::ReleaseSends(reply)).is_err() {
        return gone();
    }
    match answer.await {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(_) => gone(),
    }
}

/// `/healthz` and `/readyz`: ok only while the store works and the engine
/// thread comes round its loop (it does at least once a second when idle).
async fn healthz(State(app): State<App>) -> Response {
    if app.metrics.broken.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "store failed\n").into_response()
    } else if app.metrics.since_beat() > app.stalled {
        (StatusCode::SERVICE_UNAVAILABLE, "engine stalled\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.metrics_token
        && !bearer_is(&headers, token)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong or missing metrics token: send `Authorization: Bearer TOKEN`",
            None,
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render() + &app.hooks.render(),
    )
        .into_response()
}

async fn ingest(
    State(app): State<App>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !app.keys.is_empty() && !authorized(&headers, &app.keys) {
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong or missing write key: send it as the Basic-auth user name",
            None,
        );
    }
    let single = match kind.as_str() {
        "track" | "identify" | "alias" | "page" | "screen" | "group" => true,
        "batch" | "import" => false,
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint", None),
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than 512 KB",
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(app.limits.body_read, axum::body::to_bytes(body, MAX_BODY));
    let bytes = match read.await {
        Err(_) => {
            app.metrics.timeout("body");
            let message = format!(
                "the request body took longer than {}s to arrive",
                app.limits.body_read.as_secs()
            );
            let mut slow = error(StatusCode::REQUEST_TIMEOUT, &message, None);
            // The rest of the body may still be on its way: the connection
            // cannot carry another request.
            slow.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return slow;
        }
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_length_limit(&e) => return too_large(),
        Ok(Err(e)) => {
            let msg = format!("cannot read the request body: {e}");
            return error(StatusCode::BAD_REQUEST, &msg, None);
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let bytes = match encoding.as_deref() {
        None | Some("identity") => bytes.to_vec(),
        Some("gzip") => match gunzip(&bytes) {
            Ok(b) => b,
            Err(response) => return *response,
        },
        Some(other) => {
            let msg = format!("unsupported Content-Encoding `{other}`: send gzip or nothing");
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg, None);
        }
    };
    let lines = match to_lines(single.then_some(kind.as_str()), &bytes, app.receipt) {
        Ok(l) => l,
        Err(response) => return *response,
    };
    let refused: Vec<DeadLetter> = lines
        .too_large
        .into_iter()
        .map(|(i, input)| DeadLetter {
            line: 0,
            reason: format!(
                "item {i} of the batch is {} bytes, over the limit of {} KB for one call",
                input.len(),
                MAX_CALL / 1024
            ),
            input,
        })
        .collect();
    let lines = lines.calls;
    // Only a receipt can clamp: on the events' clock calls keep their times.
    let clamped = if app.receipt {
        lines
            .iter()
            .filter(|l| nudge_runtime::segment::time_and_clamp_of(l).is_some_and(|(_, c)| c))
            .count() as u64
    } else {
        0
    };
    if lines.is_empty() && refused.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response();
    }
    let (reply, answer) = oneshot::channel();
    match app.tx.try_send(Msg::Lines(lines, refused, reply)) {
        Ok(()) => {}
        Err(mpsc::TrySendError::Full(_)) => {
            app.metrics.busy.fetch_add(1, Ordering::Relaxed);
            let mut busy = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine is busy: retry shortly",
                None,
            );
            busy.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            return busy;
        }
        Err(mpsc::TrySendError::Disconnected(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
        }
    }
    match answer.await {
        Ok(Ok(())) => {
            app.metrics.clamped.fetch_add(clamped, Ordering::Relaxed);
            (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e, None),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Inflates a gzipped body, holding the inflated size to the body limit so a
/// small bomb cannot take the server's memory.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, Box<Response>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let limit = MAX_BODY as u64 + 1;
    match flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
    {
        Ok(_) if out.len() > MAX_BODY => Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than 512 KB once inflated",
            None,
        ))),
        Ok(_) => Ok(out),
        Err(e) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid gzip: {e}"),
            None,
        ))),
    }
}

/// Segment's convention: the write key is the user name, the password empty.
fn authorized(headers: &HeaderMap, keys: &[Secret]) -> bool {
    use base64::Engine as _;
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
    // Every key is compared, and each in constant time, so the answer's
    // timing tells nothing about how much of a key was right.
    keys.iter().fold(false, |found, k| k.matches(user) | found)
}

/// A credential (a write key, the admin or the metrics token). It has no
/// `==`: the only comparison is [`Secret::matches`], in constant time.
#[derive(Clone)]
struct Secret(Arc<str>);

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.into())
    }
}

impl Secret {
    /// Whether `given` is this secret, in time that depends on the lengths only.
    fn matches(&self, given: &[u8]) -> bool {
        same_secret(given, self.0.as_bytes())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
thread_local! {
    /// Comparisons made by [`same_secret`] on this thread, for tests to
    /// see that every credential goes through it.
    static COMPARED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether two secrets are equal, in time that depends on their lengths only.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    #[cfg(test)]
    COMPARED.with(|c| c.set(c.get() + 1));
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// The calls of a body as JSON lines, or the error response.
fn to_lines(kind: Option<&str>, body: &[u8], receipt: bool) -> Result<body::Lines, Box<Response>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let msg = format!("not UTF-8: {e}");
        Box::new(error(StatusCode::BAD_REQUEST, &msg, None))
    })?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    body::to_lines(kind, text, &now, receipt, MAX_CALL).map_err(|refusal| {
        Box::new(match refusal {
            body::Refusal::Bad(msg, index) => error(StatusCode::BAD_REQUEST, &msg, index),
            body::Refusal::TooLarge(i) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a call is larger than 32 KB",
                Some(i),
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_counters_are_labelled_by_code_and_currency() {
        use nudge_runtime::record::ExitReason;
        let mut stats = nudge_runtime::stats::Stats::default();
        let cart = stats.flow_mut("cart");
        cart.exits.insert(ExitReason::ExitOn, 3);
        cart.exits.insert(ExitReason::Merged, 1);
        cart.revenue_by_currency
            .insert("EUR".into(), "12.50".parse().unwrap());
        cart.revenue_by_currency
            .insert("USD".into(), "7".parse().unwrap());
        let text = flow_metrics(&stats, 3);
        assert!(text.contains("\nnudge_deploys_total 2\n"), "{text}");
        for line in [
            "nudge_flow_revenue_total{flow=\"cart\",currency=\"EUR\"} 12.5",
            "nudge_flow_revenue_total{flow=\"cart\",currency=\"USD\"} 7",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} in {text}");
        }
        assert!(
            text.contains("# TYPE nudge_flow_exited_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nnudge_flow_exited_total{flow=\"cart\",reason=\"exit_on\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nnudge_flow_exited_total{flow=\"cart\",reason=\"merged\"} 1\n"),
            "{text}"
        );
    }

    fn basic(user: &str) -> HeaderMap {
        use base64::Engine as _;
        let mut h = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn health_fails_when_the_engine_stalls_or_the_store_broke() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let app = App {
            tx,
            keys: Arc::from(Vec::new()),
            admin: None,
            metrics_token: None,
            metrics: Arc::new(Metrics::default()),
            stalled: STALLED,
            hooks: Arc::default(),
            pages: Arc::default(),
            receipt: true,
            limits: HttpLimits::default(),
        };
        let status = |app: &App| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(healthz(State(app.clone())))
                .status()
        };
        // Never beaten: as stalled as it gets.
        assert_eq!(status(&app), StatusCode::SERVICE_UNAVAILABLE);
        app.metrics.beat();
        assert_eq!(status(&app), StatusCode::OK);
        let long_ago = chrono::Utc::now().timestamp_millis() - 31_000;
        app.metrics.heartbeat.store(long_ago, Ordering::Relaxed);
        assert_eq!(status(&app), StatusCode::SERVICE_UNAVAILABLE);
        app.metrics.beat();
        app.metrics.broken.store(true, Ordering::Relaxed);
        assert_eq!(status(&app), StatusCode::SERVICE_UNAVAILABLE);
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    /// Comparisons [`same_secret`] made on this thread while `f` ran.
    fn comparisons(f: impl FnOnce()) -> u32 {
        let before = COMPARED.with(std::cell::Cell::get);
        f();
        COMPARED.with(std::cell::Cell::get) - before
    }

    #[test]
    fn every_credential_is_compared_in_constant_time() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let app = App {
            tx,
            keys: Arc::from(vec![Secret::from("wk-1"), Secret::from("wk-2")]),
            admin: Some(Secret::from("adm")),
            metrics_token: Some(Secret::from("met")),
            metrics: Arc::new(Metrics::default()),
            stalled: STALLED,
            hooks: Arc::default(),
            pages: Arc::default(),
            receipt: true,
            limits: HttpLimits::default(),
        };
        let block_on = |f: std::pin::Pin<Box<dyn std::future::Future<Output = Response>>>| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(f)
                .status()
        };
        // The write key: every key is compared, right or wrong.
        assert_eq!(
            comparisons(|| assert!(authorized(&basic("wk-2"), &app.keys))),
            2
        );
        assert_eq!(
            comparisons(|| assert!(!authorized(&basic("wk-3"), &app.keys))),
            2
        );
        // The admin token, through the handler's own check.
        assert_eq!(
            comparisons(|| assert!(admin_denied(&app, &bearer("adm"), "off").is_none())),
            1
        );
        assert_eq!(
            comparisons(|| assert!(admin_denied(&app, &bearer("adx"), "off").is_some())),
            1
        );
        // The metrics token, through the handler.
        let n = comparisons(|| {
            let status = block_on(Box::pin(metrics(State(app.clone()), bearer("met"))));
            assert_eq!(status, StatusCode::OK);
            let status = block_on(Box::pin(metrics(State(app.clone()), bearer("mex"))));
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn dead_letter_reasons_have_stable_codes() {
        for (reason, code) in [
            ("not UTF-8 text: invalid utf-8 sequence", "not_utf8"),
            ("malformed JSON at column 2", "malformed_json"),
            ("expected a JSON object, found an array", "malformed_json"),
            (
                "`timestamp` is given twice: a call's envelope keys must each appear once",
                "duplicate_key",
            ),
            (
                "item 3 of the batch is 40000 bytes, over the limit of 32 KB for one call",
                "too_large",
            ),
            ("missing `timestamp`", "invalid_envelope"),
            (
                "the call names no customer: give `userId` or `anonymousId`",
                "invalid_envelope",
            ),
            (
                "unsupported call type `nope`: expected track",
                "invalid_envelope",
            ),
        ] {
            assert_eq!(dead::code(reason), code, "{reason}");
            assert!(dead::CODES.contains(&code));
        }
    }

    #[test]
    fn the_commit_histogram_counts_each_commit_in_its_bucket_and_above() {
        let m = Metrics::default();
        m.commit(Duration::from_micros(300));
        m.commit(Duration::from_millis(7));
        m.commit(Duration::from_secs(9));
        let text = m.render();
        for line in [
            "nudge_commit_seconds_bucket{le=\"0.0005\"} 1",
            "nudge_commit_seconds_bucket{le=\"0.005\"} 1",
            "nudge_commit_seconds_bucket{le=\"0.01\"} 2",
            "nudge_commit_seconds_bucket{le=\"5\"} 2",
            "nudge_commit_seconds_bucket{le=\"+Inf\"} 3",
            "nudge_commit_seconds_count 3",
            "# TYPE nudge_commit_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_track_call_is_read_for_its_event_with_or_without_a_parse() {
        for (line, event) in [
            (
                r#"{"type":"track","event":"Order Completed","userId":"u"}"#,
                Some("Order Completed"),
            ),
            (
                r#"{"event":"A","type":"track","properties":{"x":1}}"#,
                Some("A"),
            ),
            // Spaced, escaped or nested: parsed, with the same answers.
            (r#"{"type": "track", "event": "A"}"#, Some("A")),
            (
                r#"{"type":"track","event":"Say \"hi\""}"#,
                Some("Say \"hi\""),
            ),
            (
                r#"{"type":"track","event":"A","properties":{"type":"b"}}"#,
                Some("A"),
            ),
            (
                r#"{"type":"track","event":"A","properties":{"event":"B"}}"#,
                Some("A"),
            ),
            (r#"{"type":"identify","traits":{"event":"track"}}"#, None),
            (r#"{"type":"page","name":"track"}"#, None),
            (r#"{"type":"identify"}"#, None),
        ] {
            assert_eq!(track_event(line).as_deref(), event, "{line}");
        }
    }

    #[test]
    fn write_keys_match_whole_and_exactly() {
        let keys: Vec<Secret> = vec!["first-key".into(), "second-key".into()];
        assert!(authorized(&basic("second-key"), &keys));
        assert!(authorized(&basic("first-key"), &keys));
        for wrong in ["second-ke", "second-key2", "", "SECOND-KEY"] {
            assert!(!authorized(&basic(wrong), &keys), "{wrong:?}");
        }
        assert!(!authorized(&HeaderMap::new(), &keys));
        assert!(same_secret(b"t0k", b"t0k"));
        assert!(!same_secret(b"t0k", b"t0K"));
        assert!(!same_secret(b"t0", b"t0k"));
    }
}
