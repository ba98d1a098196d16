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
mod cluster;
mod feedback;
mod pages;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nudge_host::config::HttpLimits;
use nudge_host::durable::Bundles;
use nudge_host::live::{Answer, Live, Msg, Opening, Recompile, Reply, Task};
use nudge_host::metrics::Metrics;
use nudge_runtime::replay::DeadLetter;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Status;
use super::run::{EngineArgs, engine_config, fail, merge_routes, project_config, setup_failed};

/// Segment's limits: a request body of 512 KB and one call of 32 KB.
const MAX_BODY: usize = 512 * 1024;
const MAX_CALL: usize = 32 * 1024;
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
    /// Run as an ingest node of the cluster `[cluster]` in nudge.toml
    /// describes: calls are routed to their customer's partition in
    /// NATS JetStream instead of the local engine (see docs/cluster.md).
    #[arg(long, conflicts_with_all = ["stdin", "clock"])]
    pub cluster: bool,
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
    let (group, root) = match super::one_project(&args.paths, "nudge serve runs") {
        Ok(r) => r,
        Err(status) => return status,
    };
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
    if args.cluster {
        let cluster = match super::cluster::settings(&settings) {
            Ok(c) => c,
            Err(status) => return status,
        };
        let listen = args
            .listen
            .clone()
            .or_else(|| settings.serve.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8787".to_string());
        // Checked when nudge.toml was read.
        let limits = settings.http_limits().unwrap_or_default();
        return cluster::serve(&listen, &cluster, keys, limits);
    }
    let bundle = match super::compile(&group) {
        Ok(b) => b,
        Err(status) => return status,
    };
    if let Err(e) = check_profile_traits(&bundle, &settings.serve.profile_traits) {
        eprintln!(
            "error: {}: [serve] profile_traits: {e}",
            nudge_project::MANIFEST
        );
        return Status::Failure;
    }
    let live = Setup {
        group: &group,
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
            let mut live = match open_live(bundle, &bundles, setup, engine_metrics) {
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
            nudge_host::live::serve(&mut live, &rx, setup.args.clock == Clock::Wall, wedge_at);
            finished(live)
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
        let profiles = Arc::new(Profiles {
            keys: settings
                .serve
                .read_keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| Secret::from(k.as_str()))
                .collect(),
            traits: settings.serve.profile_traits.clone().into(),
        });
        let app = App {
            pages,
            hooks,
            metrics_token,
            profiles,
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
    let mut live = match open_live(bundle, &bundles, setup, Arc::new(Metrics::default())) {
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
            return finished(live);
        }
    }
}

/// What the engine thread needs to open the project's state.
#[derive(Clone, Copy)]
struct Setup<'a> {
    group: &'a [PathBuf],
    root: &'a Path,
    args: &'a Args,
    settings: &'a nudge_host::config::Config,
}

/// A reload's answer: an HTTP status and a JSON body.
type Reloaded = (StatusCode, Value);

/// The host's answer as an HTTP one.
fn reloaded((code, body): Answer) -> Reloaded {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

/// Opens the live host for the project `setup` describes.
fn open_live<'b>(
    bundle: &'b nudge_bytecode::Bundle,
    bundles: &'b Bundles,
    setup: &Setup<'_>,
    metrics: Arc<Metrics>,
) -> Result<Live<'b>, Status> {
    let Setup {
        group,
        root,
        args,
        settings,
    } = *setup;
    let state = root.join(".nudge");
    super::private_files(&state);
    let engine = &args.engine;
    let outbox = engine
        .delivery
        .outbox
        .clone()
        .unwrap_or_else(|| state.join("outbox.jsonl"));
    let routes = merge_routes(settings, &engine.routes()?)?;
    let mut config = engine_config(
        bundle,
        settings,
        &engine.delivery.suppress,
        engine.delivery.release_spread,
    )?;
    // On the wall clock, a jump (the server was down) fires each
    // schedule once, for its latest occurrence, not once per missed one.
    config.catch_up_schedules = args.clock != Clock::Wall;
    let store = if engine.in_memory {
        PathBuf::from(":memory:")
    } else {
        engine.store_path(settings, root)
    };
    let opening = Opening {
        root,
        settings,
        outbox,
        routes,
        config,
        store,
        // Alerts count on the wall clock only when serving HTTP on it.
        wall: args.clock == Clock::Wall && !args.stdin,
    };
    let group = group.to_vec();
    let recompile: Recompile = Box::new(move || super::compile_to_text(&group));
    Live::open(bundle, bundles, opening, metrics, recompile).map_err(setup_failed)
}

/// Ends the live host: its exit status.
fn finished(live: Live<'_>) -> Status {
    if live.finish() {
        Status::Ok
    } else {
        Status::Failure
    }
}

/// The answer to a request the engine thread's queue did not take: 503,
/// with `Retry-After` when the queue is full (Segment's clients retry it).
fn not_taken(app: &App, e: mpsc::TrySendError<Msg>) -> Response {
    match e {
        mpsc::TrySendError::Full(_) => {
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
            busy
        }
        mpsc::TrySendError::Disconnected(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None)
        }
    }
}

/// A question for the engine thread, and where its answer will come.
fn ask<T: Send + 'static>(
    f: impl for<'l, 'b> FnOnce(&'l mut Live<'b>) -> T + Send + 'static,
) -> (Msg, oneshot::Receiver<T>) {
    let (reply, answer) = oneshot::channel();
    let task: Task = Box::new(move |live| {
        let _ = reply.send(f(live));
    });
    (Msg::Ask(task), answer)
}

/// Calls for the engine thread, and where it will say whether they are durable.
fn calls(
    lines: Vec<String>,
    refused: Vec<DeadLetter>,
) -> (Msg, oneshot::Receiver<Result<(), String>>) {
    let (reply, answer) = oneshot::channel();
    let reply: Reply = Box::new(move |result| {
        let _ = reply.send(result);
    });
    (Msg::Lines(lines, refused, reply), answer)
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
    /// Who may read customers, and which traits they see.
    profiles: Arc<Profiles>,
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
            .route("/v1/profiles/{id}", get(profile))
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
    let (msg, answer) = ask(|live| reloaded(live.reload()));
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down"}),
        )
    };
    if tx.try_send(msg).is_err() {
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
    bearer(headers).is_some_and(|g| token.matches(g.as_bytes()))
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
    let (msg, answer) = ask(|live| reloaded(live.release()));
    let gone = || error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    if app.tx.try_send(msg).is_err() {
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

/// Every trait the profile API is to return is one the profile declares.
fn check_profile_traits(bundle: &nudge_bytecode::Bundle, traits: &[String]) -> Result<(), String> {
    let fields = bundle
        .schemas
        .get(bundle.profile as usize)
        .map(|s| s.fields.as_slice())
        .unwrap_or_default();
    match traits.iter().find(|t| fields.iter().all(|f| &f.name != *t)) {
        None => Ok(()),
        Some(t) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            let near = nudge_compiler::did_you_mean(t, names.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            Err(format!("`{t}` is not a profile trait{near}"))
        }
    }
}

/// Who may read customers through the profile API, and what they see.
#[derive(Default)]
struct Profiles {
    /// The read keys (`[serve] read_keys`); none turns the API off.
    keys: Vec<Secret>,
    /// The traits returned (`[serve] profile_traits`).
    traits: Arc<[String]>,
}

/// `GET /v1/profiles/{id}`: a customer's chosen traits and segments, for
/// the store's website, with a read key (never a write key: those are
/// in every visitor's browser).
async fn profile(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    let profiles = &app.profiles;
    if profiles.keys.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "the profile API is off: list read keys under [serve] read_keys in nudge.toml",
            None,
        );
    }
    // Every key is compared, as for write keys.
    let given = bearer(&headers);
    let known = profiles.keys.iter().fold(false, |ok, k| {
        k.matches(given.unwrap_or_default().as_bytes()) | ok
    });
    if given.is_none() || !known {
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong or missing read key: send `Authorization: Bearer KEY`",
            None,
        );
    }
    let recommendations = match recommendations_asked(query.as_deref()) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e, None),
    };
    let traits = profiles.traits.clone();
    let (msg, answer) =
        ask(move |live| live.engine.profile_view_with(&id, &traits, recommendations));
    if let Err(e) = app.tx.try_send(msg) {
        return not_taken(&app, e);
    }
    match answer.await {
        Ok(Some(view)) => (StatusCode::OK, axum::Json(view)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no customer has this id", None),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None),
    }
}

/// The most products `?recommendations=N` may ask for.
const MAX_RECOMMENDATIONS: usize = 50;

/// How many products the profile API's query asks for
/// (`recommendations=N`, 1 to [`MAX_RECOMMENDATIONS`]); `None` for none.
fn recommendations_asked(query: Option<&str>) -> Result<Option<usize>, String> {
    let mut asked = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "recommendations" {
            return Err(format!(
                "unknown query parameter `{key}`: the profile API takes `recommendations=N`"
            ));
        }
        match value.parse::<usize>() {
            Ok(n) if (1..=MAX_RECOMMENDATIONS).contains(&n) => asked = Some(n),
            _ => {
                return Err(format!(
                    "`recommendations={value}`: ask for 1 to {MAX_RECOMMENDATIONS} products"
                ));
            }
        }
    }
    Ok(asked)
}

/// The token of `Authorization: Bearer TOKEN`, if the request has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn ingest(
    State(app): State<App>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let gate = Gate {
        keys: &app.keys,
        limits: app.limits,
        metrics: &app.metrics,
        receipt: app.receipt,
    };
    let Taken {
        lines,
        refused,
        clamped,
    } = match gate.take(&kind, &headers, body).await {
        Ok(t) => t,
        Err(response) => return *response,
    };
    if lines.is_empty() && refused.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response();
    }
    let (msg, answer) = calls(lines, refused);
    if let Err(e) = app.tx.try_send(msg) {
        return not_taken(&app, e);
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

/// What the Segment endpoints check before calls go anywhere: the write
/// key, the endpoint, the body's size, time and encoding, and each call.
/// The same for the local engine and for a cluster's ingest node.
struct Gate<'a> {
    /// Accepted write keys; empty with `--no-auth`.
    keys: &'a [Secret],
    limits: HttpLimits,
    metrics: &'a Metrics,
    /// Stamp calls with their receipt.
    receipt: bool,
}

/// A request's calls, once the gate let them through.
struct Taken {
    /// The calls as JSON lines, in order.
    lines: Vec<String>,
    /// Batch items refused on their own (too large), for the dead letters.
    refused: Vec<DeadLetter>,
    /// How many calls had their time clamped to their receipt.
    clamped: u64,
}

impl Gate<'_> {
    /// The calls of a request to `/v1/{kind}`, or the answer refusing it.
    async fn take(
        &self,
        kind: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Taken, Box<Response>> {
        if !self.keys.is_empty() && !authorized(headers, self.keys) {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "wrong or missing write key: send it as the Basic-auth user name",
                None,
            )));
        }
        let single = match kind {
            "track" | "identify" | "alias" | "page" | "screen" | "group" => true,
            "batch" | "import" => false,
            _ => {
                return Err(Box::new(error(
                    StatusCode::NOT_FOUND,
                    "no such endpoint",
                    None,
                )));
            }
        };
        let too_large = || {
            Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than 512 KB",
                None,
            ))
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let read =
            tokio::time::timeout(self.limits.body_read, axum::body::to_bytes(body, MAX_BODY));
        let bytes = match read.await {
            Err(_) => {
                self.metrics.timeout("body");
                let message = format!(
                    "the request body took longer than {}s to arrive",
                    self.limits.body_read.as_secs()
                );
                let mut slow = error(StatusCode::REQUEST_TIMEOUT, &message, None);
                // The rest of the body may still be on its way: the connection
                // cannot carry another request.
                slow.headers_mut().insert(
                    header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return Err(Box::new(slow));
            }
            Ok(Ok(b)) => b,
            Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
            Ok(Err(e)) => {
                let msg = format!("cannot read the request body: {e}");
                return Err(Box::new(error(StatusCode::BAD_REQUEST, &msg, None)));
            }
        };
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let bytes = match encoding.as_deref() {
            None | Some("identity") => bytes.to_vec(),
            Some("gzip") => gunzip(&bytes)?,
            Some(other) => {
                let msg = format!("unsupported Content-Encoding `{other}`: send gzip or nothing");
                return Err(Box::new(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &msg,
                    None,
                )));
            }
        };
        let lines = to_lines(single.then_some(kind), &bytes, self.receipt)?;
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
        let clamped = if self.receipt {
            lines
                .iter()
                .filter(|l| nudge_runtime::segment::time_and_clamp_of(l).is_some_and(|(_, c)| c))
                .count() as u64
        } else {
            0
        };
        Ok(Taken {
            lines,
            refused,
            clamped,
        })
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
            profiles: Arc::default(),
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
            profiles: Arc::new(Profiles {
                keys: vec![Secret::from("rk-1"), Secret::from("rk-2")],
                traits: Arc::from(Vec::new()),
            }),
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
        // Read keys, through the profile handler: every key, right or wrong
        // (a wrong one is refused before anything is asked of the engine).
        let n = comparisons(|| {
            let read = profile(
                State(app.clone()),
                UrlPath("ann".into()),
                axum::extract::RawQuery(None),
                bearer("rk-3"),
            );
            assert_eq!(block_on(Box::pin(read)), StatusCode::UNAUTHORIZED);
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn the_profile_api_takes_a_count_of_recommendations_and_nothing_else() {
        assert_eq!(recommendations_asked(None), Ok(None));
        assert_eq!(recommendations_asked(Some("")), Ok(None));
        assert_eq!(
            recommendations_asked(Some("recommendations=4")),
            Ok(Some(4))
        );
        assert_eq!(
            recommendations_asked(Some("recommendations=50")),
            Ok(Some(50))
        );
        for bad in [
            "recommendations=0",
            "recommendations=51",
            "recommendations=x",
            "recommendations",
        ] {
            let e = recommendations_asked(Some(bad)).unwrap_err();
            assert!(e.contains("ask for 1 to 50 products"), "{bad}: {e}");
        }
        let e = recommendations_asked(Some("traits=email")).unwrap_err();
        assert!(e.contains("unknown query parameter `traits`"), "{e}");
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
