//! `nudge run`: compile a project, then replay recorded calls through it on
//! a virtual clock.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::{AudienceSync, OutboxFile, OutboxMode, PluginSpec};
use nudge_host::durable::{self, Input, LedgerSink, Router, Settings};
use nudge_runtime::engine::{Config, Engine, Sink};
use nudge_runtime::output::{AudienceSyncer, FileSink, Synced, audience_file};
use nudge_runtime::record::{DeliveryRecord, Membership, Record};
use nudge_runtime::replay::{self, DeadLetter, Horizon, Options};
use nudge_store::{Store, StoreError};

use super::breaker::Breaker;
use super::progress::{Progress, ProgressSink};
use super::{Status, compile};
use crate::config::Config as ProjectConfig;

/// Arguments of `nudge run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Projects to run; the current directory by default. Each project
    /// replays its own `events.jsonl` unless `--events` names a file.
    pub paths: Vec<PathBuf>,
    /// Where sends go and what the engine keeps.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The calls to replay: Segment JSON lines (one project only).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Where refused lines go; `.nudge/dead_letters.jsonl` by default.
    #[arg(long, value_name = "FILE")]
    pub dead_letters: Option<PathBuf>,
    /// Where the decision trace goes; `.nudge/trace.jsonl` by default.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// After the last call, run the clock to this RFC 3339 instant.
    #[arg(long, value_name = "TIME", conflicts_with = "drain")]
    pub until: Option<String>,
    /// After the last call, run the clock until nothing is pending but schedules.
    #[arg(long)]
    pub drain: bool,
    /// The summary as a table for people or JSON for tools.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Discard the store's history first and start over.
    #[arg(long, conflicts_with = "in_memory")]
    pub reset: bool,
    /// Deliver the sends the send circuit breaker held in an earlier run
    /// (`[runtime] max_sends_per_step`), then go on as usual.
    #[arg(long, conflicts_with = "in_memory")]
    pub release_sends: bool,
    /// Sort the events by time before replaying them, so that a file in
    /// any order replays as the whole file sorted (equal times keep file
    /// order), in bounded memory (see `nudge events sort`); with
    /// --in-memory only.
    #[arg(long)]
    pub sort: bool,
    /// With --sort: memory for lines held before a sorted run is written
    /// to disk: bytes, or with K, M, G (KiB, MiB, GiB); 64M by default.
    #[arg(long, value_name = "SIZE", requires = "sort", value_parser = super::events::parse_size)]
    pub sort_memory: Option<usize>,
    /// With --sort: where sorted runs are written while sorting (a
    /// directory of their own, removed at the end); the project's `.nudge`
    /// by default.
    #[arg(long, value_name = "DIR", requires = "sort")]
    pub sort_temp_dir: Option<PathBuf>,
    /// Lines applied per store transaction (tests use small batches to
    /// have many commits to crash between).
    #[arg(long, hide = true, value_name = "N", default_value_t = 10_000)]
    pub batch_lines: usize,
}

/// The options `nudge run` and `nudge serve` share: where sends go and
/// what the engine keeps.
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Where sent messages go; `.nudge/outbox.jsonl` in the project by default.
    #[arg(long, value_name = "FILE")]
    pub outbox: Option<PathBuf>,
    /// Send one channel through a plugin instead of the outbox:
    /// `sms=webhook=http://127.0.0.1:9000/sms`, `email=stdout`.
    #[arg(long, value_name = "CHANNEL=PLUGIN")]
    pub deliver: Vec<String>,
    /// Seconds over which sends held by quiet hours are spread when released.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub release_spread: i64,
    /// A suppression list: one email, phone number or customer id per line,
    /// never messaged (added to the lists the policy names).
    #[arg(long, value_name = "FILE")]
    pub suppress: Vec<PathBuf>,
    /// The durable store: what was applied and sent, so a later start goes
    /// on from there; `store.path` in nudge.toml, else `.nudge/state.db` in
    /// the project.
    #[arg(long, value_name = "PATH", conflicts_with = "in_memory")]
    pub store: Option<PathBuf>,
    /// Keep no store: start from scratch and forget everything at the end.
    #[arg(long)]
    pub in_memory: bool,
}

impl EngineArgs {
    /// The `--deliver` routes; a bad one is reported and fails the command.
    pub(super) fn routes(&self) -> Result<Vec<(Channel, PluginSpec)>, Status> {
        self.deliver
            .iter()
            .map(|d| {
                parse_route(d).map_err(|e| {
                    eprintln!("error: --deliver {d}: {e}");
                    Status::Failure
                })
            })
            .collect()
    }

    /// The store file of the project at `root`.
    pub(super) fn store_path(&self, settings: &ProjectConfig, root: &Path) -> PathBuf {
        self.store
            .clone()
            .or_else(|| settings.store_path(root))
            .unwrap_or_else(|| root.join(".nudge/state.db"))
    }
}

/// How the summary is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON object per project.
    Json,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let groups = match super::project_groups(&args.paths) {
        Ok(g) => g,
        Err(status) => return status,
    };
    if groups.len() > 1
        && (args.events.is_some()
            || args.engine.outbox.is_some()
            || args.dead_letters.is_some()
            || args.trace.is_some()
            || args.engine.store.is_some())
    {
        eprintln!(
            "error: --events, --outbox, --dead-letters, --trace and --store name files of one project, but these paths hold {} projects",
            groups.len()
        );
        eprintln!("help: run each project on its own, or leave the files to their defaults");
        return Status::Failure;
    }
    if args.sort && !args.engine.in_memory {
        eprintln!(
            "error: --sort replays in memory only (add --in-memory): the store keeps how far it read the events file in file order, so it can go on after a crash or when lines are appended, and a sorted replay does not read the file in that order"
        );
        eprintln!(
            "help: for a durable run, sort the file once with `nudge events sort FILE -o SORTED`, then `nudge run --events SORTED`"
        );
        return Status::Failure;
    }
    let until = match args.until.as_deref().map(parse_until).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let routes = match args.engine.routes() {
        Ok(r) => r,
        Err(status) => return status,
    };
    let mut worst = Status::Ok;
    for group in &groups {
        let status = run_project(group, &args, until, &routes);
        // A failure outranks held sends, which outrank problems.
        if worst != Status::Failure && (status == Status::Failure || status as u8 > worst as u8) {
            worst = status;
        }
    }
    worst
}

/// How the calls are replayed: the clock after them, the horizon, the
/// reorder window.
#[derive(Clone, Copy)]
struct Replay {
    until: Option<i64>,
    horizon: Horizon,
    window: usize,
    checkpoint_every: u64,
    /// `[store] keep_calls` in milliseconds.
    keep_calls: Option<i64>,
    /// The send circuit breaker's limit.
    max_sends: usize,
}

/// The files of one project's run.
struct Paths {
    root: PathBuf,
    state: PathBuf,
    store: PathBuf,
    outbox: PathBuf,
    dead: PathBuf,
    trace: PathBuf,
}

fn run_project(
    group: &[PathBuf],
    args: &Args,
    until: Option<i64>,
    routes: &[(Channel, PluginSpec)],
) -> Status {
    let root = project_root(group);
    let bundle = match compile(group) {
        Ok(b) => b,
        Err(status) => return status,
    };
    let settings = match project_config(&root) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let routes = match merge_routes(&settings, routes) {
        Ok(r) => r,
        Err(status) => return status,
    };
    let routes = routes.as_slice();
    let audience = match audience_plugin(&settings) {
        Ok(a) => a,
        Err(status) => return status,
    };
    let state = root.join(".nudge");
    super::private_files(&state);
    let events = args
        .events
        .clone()
        .unwrap_or_else(|| root.join("events.jsonl"));
    // Opened here to report a missing file before anything else; it is
    // read as a stream, never whole.
    let input = match File::open(&events).and_then(|f| f.metadata().map(|m| (f, m.len()))) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("error: cannot read events from {}: {e}", events.display());
            if args.events.is_none() {
                eprintln!("help: name the calls to replay with --events FILE");
            }
            return Status::Failure;
        }
    };
    let paths = Paths {
        outbox: args
            .engine
            .outbox
            .clone()
            .unwrap_or_else(|| state.join("outbox.jsonl")),
        dead: args
            .dead_letters
            .clone()
            .unwrap_or_else(|| state.join("dead_letters.jsonl")),
        trace: args
            .trace
            .clone()
            .unwrap_or_else(|| state.join("trace.jsonl")),
        store: args.engine.store_path(&settings, &root),
        root,
        state,
    };
    let config = match engine_config(
        &bundle,
        &settings,
        &args.engine.suppress,
        args.engine.release_spread,
    ) {
        Ok(c) => c,
        Err(status) => return status,
    };
    // Checked when the file was read; the default stands otherwise.
    let horizon = Horizon::now(
        settings
            .max_future()
            .ok()
            .flatten()
            .unwrap_or(replay::DEFAULT_MAX_FUTURE),
    );
    // Checked when the file was read; the default stands otherwise.
    let window = settings
        .reorder_window()
        .unwrap_or(nudge_runtime::window::DEFAULT_LINES);
    // Checked when the file was read; the default stands otherwise.
    let max_sends = settings
        .max_sends_per_step()
        .unwrap_or(crate::config::DEFAULT_MAX_SENDS_PER_STEP);
    let replay = Replay {
        until,
        horizon,
        window,
        checkpoint_every: settings.checkpoint_every(),
        keep_calls: settings.keep_calls_ms(),
        max_sends,
    };
    if args.engine.in_memory {
        run_in_memory(
            &bundle, &events, input, &paths, args, replay, routes, config, audience,
        )
    } else {
        drop(input);
        run_durable(
            &bundle, &events, &paths, args, replay, routes, config, audience,
        )
    }
}

/// The ad platform `[channels.audience]` names, ready to sync to.
pub(super) fn audience_plugin(
    settings: &crate::config::Config,
) -> Result<Option<Box<dyn AudienceSync>>, Status> {
    let spec = settings.audience_sync().map_err(|e| {
        eprintln!("error: {}: {e}", nudge_project::MANIFEST);
        Status::Failure
    })?;
    spec.map(|s| s.build()).transpose().map_err(|e| {
        eprintln!("error: cannot set up the audience plugin: {e}");
        Status::Failure
    })
}

/// Tells what the audience plugin did; a failure is a warning, since the
/// audience feeds still hold every change.
pub(super) fn print_synced(synced: &Synced) {
    eprintln!("audiences synced through {}:", synced.plugin);
    for line in &synced.lines {
        eprintln!("  {line}");
    }
    if let Some(e) = &synced.error {
        let unsent = match synced.unsent {
            0 => String::new(),
            n => format!("; {n} changes were not sent"),
        };
        eprintln!(
            "warning: audience sync through {} failed: {e}{unsent}; the changes stay in the audience feeds (`nudge audiences export` makes upload files of them)",
            synced.plugin
        );
    }
}

/// The engine settings: the policy's suppression lists plus `suppress`.
pub(super) fn engine_config(
    bundle: &nudge_bytecode::Bundle,
    settings: &crate::config::Config,
    suppress: &[PathBuf],
    release_spread: i64,
) -> Result<Config, Status> {
    // Checked when the file was read; the default stands otherwise.
    let max_lateness = settings
        .max_lateness()
        .ok()
        .flatten()
        .unwrap_or(nudge_runtime::engine::DEFAULT_MAX_LATENESS);
    let mut lists: Vec<PathBuf> = bundle
        .policy
        .suppress_lists
        .iter()
        .map(PathBuf::from)
        .collect();
    lists.extend(suppress.iter().cloned());
    match read_suppression(&lists) {
        Ok(suppression) => Ok(Config {
            release_spread,
            suppression,
            max_lateness,
            catch_up_schedules: true,
            forget_every: settings.forget_every(),
            // Checked when nudge.toml was read.
            dedupe_window: settings
                .dedupe_window()
                .ok()
                .flatten()
                .unwrap_or(nudge_runtime::engine::DEFAULT_DEDUPE_WINDOW),
        }),
        Err(e) => {
            eprintln!("error: {e}");
            Err(Status::Failure)
        }
    }
}

/// The whole file from scratch on a fresh engine, nothing kept.
#[allow(clippy::too_many_arguments)]
fn run_in_memory(
    bundle: &nudge_bytecode::Bundle,
    events: &Path,
    (input, len): (File, u64),
    paths: &Paths,
    args: &Args,
    replay: Replay,
    routes: &[(Channel, PluginSpec)],
    config: Config,
    audience: Option<Box<dyn AudienceSync>>,
) -> Status {
    let mut sink = match FileSink::new(
        &paths.outbox,
        Some(&paths.trace),
        &paths.state.join("audiences"),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    for (channel, spec) in routes {
        match spec.build(&paths.outbox, OutboxMode::Append) {
            Ok(p) => sink.route(*channel, p),
            Err(e) => {
                eprintln!("error: cannot set up the {} plugin: {e}", channel.name());
                return Status::Failure;
            }
        }
    }
    if let Some(plugin) = audience {
        sink.sync_audiences(plugin);
    }
    let mut dead_file = match create_file(&paths.dead) {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let mut dead_error: Option<std::io::Error> = None;
    let mut write_dead = |d: DeadLetter| {
        let line = match serde_json::to_string(&d) {
            Ok(line) => line,
            Err(e) => {
                dead_error.get_or_insert(std::io::Error::other(e));
                return;
            }
        };
        if let Err(e) = writeln!(dead_file, "{line}") {
            dead_error.get_or_insert(e);
        }
    };
    let progress = Progress::for_file(events, len);
    let held_path = paths.state.join("held.jsonl");
    let sink = match Breaker::new(sink, replay.max_sends, &held_path) {
        Ok(b) => ProgressSink::new(b, &progress),
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let mut engine = Engine::new(bundle, sink, config, i64::MIN);
    let options = Options {
        until: replay.until,
        drain: args.drain,
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let streamed = if args.sort {
        let sort_options = nudge_runtime::sort::Options {
            budget: args
                .sort_memory
                .unwrap_or(nudge_runtime::sort::DEFAULT_BUDGET),
            dir: args
                .sort_temp_dir
                .clone()
                .unwrap_or_else(|| paths.state.clone()),
        };
        match nudge_runtime::sort::sort(input, &sort_options) {
            Ok(sorted) => replay::replay_sorted(
                &mut engine,
                sorted,
                options,
                Some(replay.horizon),
                &mut write_dead,
            ),
            Err(e) => {
                progress.finish();
                eprintln!("error: cannot sort events from {}: {e}", events.display());
                return Status::Failure;
            }
        }
    } else {
        replay::replay_stream(
            &mut engine,
            input,
            options,
            Some(replay.horizon),
            replay.window,
            &mut write_dead,
        )
    };
    progress.finish();
    let streamed = match streamed {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read events from {}: {e}", events.display());
            return Status::Failure;
        }
    };
    let stats = engine.stats();
    let mut synced = None;
    let (flushed, held) = match engine.into_sink().into_inner().finish() {
        Ok((mut sink, tripped, held)) => {
            synced = sink.finish_sync();
            (sink.finish(), tripped.map(|why| (why, held)))
        }
        Err(e) => (Err(e), None),
    };
    let dead_flushed = dead_file.flush();
    summary(args.format, paths, &stats, streamed.clamped, None);
    past_window(streamed.past_window, replay.window);
    if let Some(s) = &synced {
        print_synced(s);
    }
    if let Err(e) = flushed {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    if let Some(e) = dead_error.or(dead_flushed.err()) {
        eprintln!("error: writing {}: {e}", paths.dead.display());
        return Status::Failure;
    }
    if let Some((why, held)) = held {
        eprintln!(
            "help: the send circuit breaker tripped ({why}): {held} sends were held in {} and not delivered; a run in memory keeps no ledger to release them from, so check them, then raise [runtime] max_sends_per_step or run with the store",
            held_path.display()
        );
        return Status::Held;
    }
    Status::Ok
}

/// Rebuilds from the store, then applies only what the store has not seen.
#[allow(clippy::too_many_arguments)]
fn run_durable(
    bundle: &nudge_bytecode::Bundle,
    events: &Path,
    paths: &Paths,
    args: &Args,
    replay: Replay,
    routes: &[(Channel, PluginSpec)],
    config: Config,
    audience: Option<Box<dyn AudienceSync>>,
) -> Status {
    let store_path = paths.store.clone();
    let (mut store, mut router) =
        match open_store(&store_path, args.reset, &config, &paths.outbox, routes) {
            Ok(o) => o,
            Err(status) => return status,
        };
    // A flood an earlier run held stays held, unless this run releases it.
    if !args.release_sends {
        router.hold_resends_over(replay.max_sends);
    }
    let (mut feeds, start) = match Feeds::open(&store, &paths.trace, &paths.state.join("audiences"))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    if let Some(plugin) = audience {
        feeds.sync_audiences(plugin);
    }
    let bundles = durable::Bundles::new();
    let code = durable::Code {
        current: bundle,
        bundles: &bundles,
    };
    let initial = match code.initial(&store) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let progress = Progress::for_file(events, std::fs::metadata(events).map_or(0, |m| m.len()));
    let (sink, captured) = LedgerSink::new(ProgressSink::new(feeds, &progress));
    let mut engine = Engine::new(initial, sink, config, i64::MIN);
    let name = std::fs::canonicalize(events)
        .unwrap_or_else(|_| events.to_path_buf())
        .display()
        .to_string();
    let settings = Settings {
        until: replay.until,
        drain: args.drain,
        // 10,000 by default: the commit's fsync is paid once per many calls,
        // and a batch's sends still go out within a fraction of a second.
        batch_lines: args.batch_lines,
        horizon: Some(replay.horizon),
        window: replay.window,
        checkpoint_every: replay.checkpoint_every,
        keep_calls: replay.keep_calls,
        start,
        max_sends_per_step: Some(replay.max_sends),
    };
    let source = Input {
        name: &name,
        path: events,
    };
    let (report, dead) = match durable::run(
        &mut store,
        &mut engine,
        code,
        &captured,
        &mut router,
        source,
        settings,
    ) {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            return fail(&e);
        }
    };
    if let Some(d) = &report.deployed {
        eprintln!(
            "note: the project changed since {} was last run; deployed it:\n{d}",
            store_path.display()
        );
    }
    progress.finish();
    let stats = engine.stats();
    let mut feeds = engine.into_sink().into_feeds().into_inner();
    let synced = feeds.finish_sync();
    let feeds = feeds.finish();
    let dead_written = write_dead_letters(&paths.dead, &dead);
    summary(
        args.format,
        paths,
        &stats,
        report.clamped,
        Some((&store_path, &report)),
    );
    if report.diverged {
        eprintln!(
            "warning: rebuilding from {} gave a different number of sends than its ledger holds; the history may have been applied under other settings",
            store_path.display()
        );
    }
    past_window(report.past_window, replay.window);
    if let Some(s) = &synced {
        print_synced(s);
    }
    if let Some(f) = &report.first_failure {
        eprintln!(
            "warning: {} deliveries failed in this run; first: {f}",
            report.failed
        );
    }
    if let Err(e) = feeds.and(dead_written) {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    if let Some(reason) = &report.paused {
        eprintln!(
            "alert: delivery paused by the send circuit breaker ([runtime] max_sends_per_step = {}): {reason}",
            replay.max_sends
        );
        eprintln!(
            "help: {} sends are held, pending in {}; run again with --release-sends to deliver them",
            report.held,
            store_path.display()
        );
        return Status::Held;
    }
    Status::Ok
}

/// Opens (or with `reset`, recreates) the store, ties it to the project and
/// sets up the outbox and plugins the ledger delivers through.
pub(super) fn open_store(
    store_path: &Path,
    reset: bool,
    config: &Config,
    outbox: &Path,
    routes: &[(Channel, PluginSpec)],
) -> Result<(Store, Router), Status> {
    if reset {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = store_path.to_path_buf().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("error: cannot remove {}: {e}", Path::new(&p).display());
                    return Err(Status::Failure);
                }
            }
        }
    }
    let mut store = match Store::open(store_path) {
        Ok(s) => s,
        Err(e) => return Err(fail(&e)),
    };
    let mut listed: Vec<String> = config.suppression.iter().cloned().collect();
    listed.sort();
    let fingerprint = nudge_store::fingerprint(config.release_spread, &listed);
    if let Err(e) = store.claim(&fingerprint) {
        return Err(fail(&e));
    }
    let fresh = match store.is_fresh() {
        Ok(f) => f,
        Err(e) => return Err(fail(&e)),
    };
    // A fresh store starts a fresh outbox; otherwise the outbox holds every
    // message sent so far and only grows. A crash can leave half a line at
    // its end, of a message the ledger still has pending: cut it, the
    // message is written again whole.
    let mode = if fresh {
        OutboxMode::Truncate
    } else {
        if let Err(e) = nudge_store::outbox::repair(outbox) {
            eprintln!("error: cannot repair the outbox {}: {e}", outbox.display());
            return Err(Status::Failure);
        }
        OutboxMode::Append
    };
    let default = match OutboxFile::open(outbox, mode) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot open the outbox {}: {e}", outbox.display());
            return Err(Status::Failure);
        }
    };
    let mut router = Router::new(Box::new(default), Some(outbox.to_path_buf()));
    for (channel, spec) in routes {
        if let nudge_channels::PluginSpec::Fcm(c) = spec {
            router.watch_invalid_tokens(c.invalid_tokens.clone());
        }
        match spec.build(outbox, OutboxMode::Append) {
            Ok(p) => router.route(*channel, p),
            Err(e) => {
                eprintln!("error: cannot set up the {} plugin: {e}", channel.name());
                return Err(Status::Failure);
            }
        }
    }
    Ok((store, router))
}

/// Reports a store error with its hint.
pub(super) fn fail(e: &StoreError) -> Status {
    eprintln!("error: {e}");
    if let Some(h) = e.hint() {
        eprintln!("help: {h}");
    }
    Status::Failure
}

/// Prints the run's summary; `clamped` counts this run's new lines stamped
/// later than their receipt.
fn summary(
    format: Format,
    paths: &Paths,
    stats: &nudge_runtime::stats::Stats,
    clamped: u64,
    store: Option<(&Path, &durable::Report)>,
) {
    match format {
        Format::Table => {
            println!("{}", paths.root.display());
            print!("{}", stats.table());
            if clamped > 0 {
                println!(
                    "{clamped} calls stamped later than their receipt (receivedAt), applied at it"
                );
            }
            println!(
                "outbox: {}; dead letters: {}; trace: {}",
                paths.outbox.display(),
                paths.dead.display(),
                paths.trace.display()
            );
            if let Some((path, r)) = store {
                let mut late = if r.late > 0 {
                    format!(
                        " ({} late: dated before the clock, judged by when they happened)",
                        r.late
                    )
                } else {
                    String::new()
                };
                if r.beyond_horizon > 0 {
                    late.push_str(&format!(
                        "; {} refused as stamped beyond the file's horizon (see the dead letters)",
                        r.beyond_horizon
                    ));
                }
                let loaded = if r.restored > 0 {
                    format!("state loaded from its checkpoint ({} calls), ", r.restored)
                } else {
                    String::new()
                };
                println!(
                    "store: {}; {loaded}{} calls replayed from it, {} new lines applied{late}",
                    path.display(),
                    r.rebuilt,
                    r.applied
                );
                let held = if r.held > 0 {
                    format!(", {} held by the circuit breaker", r.held)
                } else {
                    String::new()
                };
                println!(
                    "sends: {} delivered now, {} retried from an earlier run, {} failed{held}; ledger: {} done, {} pending, {} failed",
                    r.delivered,
                    r.retried,
                    r.failed,
                    r.ledger.done,
                    r.ledger.pending,
                    r.ledger.failed
                );
            }
            println!();
        }
        Format::Json => {
            let mut out = serde_json::json!({
                "project": paths.root.display().to_string(),
                "outbox": paths.outbox.display().to_string(),
                "dead_letters": paths.dead.display().to_string(),
                "trace": paths.trace.display().to_string(),
                "stats": stats,
            });
            if clamped > 0 {
                super::put(&mut out, "clamped", serde_json::json!(clamped));
            }
            if let Some((path, r)) = store {
                let mut s = serde_json::to_value(r).unwrap_or_default();
                super::put(
                    &mut s,
                    "path",
                    serde_json::Value::String(path.display().to_string()),
                );
                super::put(&mut out, "store", s);
            }
            println!("{out}");
        }
    }
}

/// Warns of lines out of order by more than the reorder window: the
/// outputs then differ from a replay of the file sorted by time.
fn past_window(count: u64, window: usize) {
    let lines = |n: u64| if n == 1 { "line was" } else { "lines were" };
    if count > 0 {
        eprintln!(
            "warning: {count} {} more than {window} lines out of time order and applied late, after later calls; sort the file by time with `nudge events sort FILE -o SORTED` (or replay it with --sort --in-memory), or raise [runtime] reorder_window in nudge.toml",
            lines(count)
        );
    }
}

/// Rewrites the dead-letter file with every refused line of the history.
pub(super) fn write_dead_letters(path: &Path, dead: &[DeadLetter]) -> Result<(), String> {
    let mut f = BufWriter::new(create_file(path)?);
    let err = |e: std::io::Error| format!("writing {}: {e}", path.display());
    for d in dead {
        let line = serde_json::to_string(d).map_err(|e| e.to_string())?;
        writeln!(f, "{line}").map_err(err)?;
    }
    f.flush().map_err(err)
}

/// The trace and audience feeds of a durable run. They are derived output:
/// a run that starts from the store's checkpoint cuts them back to where
/// they stood when it was taken and appends what the calls after it
/// produce; a run that replays the whole history rewrites them in full.
pub(super) struct Feeds {
    trace: BufWriter<File>,
    audiences_dir: PathBuf,
    audiences: HashMap<String, BufWriter<File>>,
    error: Option<String>,
    /// Keys of the delivery records the trace kept from before a restart.
    recorded: HashSet<String>,
    /// The ad platform membership changes also go to. Changes replayed
    /// after a checkpoint are sent again; the platforms take a repeated
    /// add or remove as no change.
    sync: Option<AudienceSyncer>,
}

/// Where the feeds stood at a checkpoint: their lengths in bytes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct FeedMarks {
    /// The trace's length.
    trace: u64,
    /// Each audience feed's length, by file name.
    audiences: std::collections::BTreeMap<String, u64>,
}

impl Feeds {
    /// The feeds for a run over `store`, and the checkpoint it starts from:
    /// the store's, when the feeds on disk still hold what they held when it
    /// was taken (else the history is replayed in full and they are
    /// rewritten; or, when the log was compacted and cannot be replayed,
    /// they start afresh from the checkpoint).
    pub(super) fn open(
        store: &nudge_store::Store,
        trace: &Path,
        audiences_dir: &Path,
    ) -> Result<(Feeds, Option<nudge_store::Saved>), String> {
        let with_hint = |e: nudge_store::StoreError| match e.hint() {
            Some(h) => format!("{e}\nhelp: {h}"),
            None => e.to_string(),
        };
        let saved = durable::usable_checkpoint(store).map_err(with_hint)?;
        if let Some(saved) = saved {
            if let Some(feeds) = Feeds::cut_back(trace, audiences_dir, &saved.feeds)? {
                return Ok((feeds, Some(saved)));
            }
            // Replaying the whole history would start from a partial log:
            // the state comes from the checkpoint, and only the derived
            // files lose what cannot be derived again.
            let through = store.compacted_through().map_err(with_hint)?;
            if through > 0 {
                eprintln!(
                    "warning: the trace or the audience feeds hold less than the store's checkpoint says (moved, replaced or deleted), and the calls up to {through} were compacted, so their records cannot be written again: they start afresh from the checkpoint"
                );
                return Ok((Feeds::new(trace, audiences_dir)?, Some(saved)));
            }
        }
        Ok((Feeds::new(trace, audiences_dir)?, None))
    }

    /// Opens the feeds to append, cut back to the lengths in `marks`; `None`
    /// when a feed is shorter than its mark (moved, replaced or lost).
    fn cut_back(trace: &Path, audiences_dir: &Path, marks: &str) -> Result<Option<Feeds>, String> {
        let Ok(marks) = serde_json::from_str::<FeedMarks>(marks) else {
            return Ok(None);
        };
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        if len(trace) < marks.trace
            || marks
                .audiences
                .iter()
                .any(|(file, &n)| len(&audiences_dir.join(file)) < n)
        {
            return Ok(None);
        }
        let recorded = delivery_keys(trace, marks.trace)?;
        let trace = cut(trace, marks.trace)?;
        if let Ok(entries) = std::fs::read_dir(audiences_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.extension().is_none_or(|x| x != "jsonl") {
                    continue;
                }
                match marks.audiences.get(&name) {
                    Some(&n) => drop(cut(&path, n)?),
                    // Written after the checkpoint: written again.
                    None => {
                        std::fs::remove_file(&path)
                            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                    }
                }
            }
        }
        Ok(Some(Feeds {
            trace: BufWriter::new(trace),
            audiences_dir: audiences_dir.to_path_buf(),
            audiences: HashMap::new(),
            error: None,
            recorded,
            sync: None,
        }))
    }

    pub(super) fn new(trace: &Path, audiences_dir: &Path) -> Result<Feeds, String> {
        let trace = BufWriter::new(create_file(trace)?);
        // Feeds from an earlier run would be written again after them.
        if let Ok(entries) = std::fs::read_dir(audiences_dir) {
            for entry in entries.flatten() {
                if entry.path().extension().is_some_and(|x| x == "jsonl") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Feeds {
            trace,
            audiences_dir: audiences_dir.to_path_buf(),
            audiences: HashMap::new(),
            error: None,
            recorded: HashSet::new(),
            sync: None,
        })
    }

    /// Sends membership changes to an ad platform too, besides the feeds.
    pub(super) fn sync_audiences(&mut self, plugin: Box<dyn AudienceSync>) {
        self.sync = Some(AudienceSyncer::new(plugin));
    }

    /// Sends what the audience plugin holds and says what came of the run;
    /// `None` when no platform is configured.
    pub(super) fn finish_sync(&mut self) -> Option<Synced> {
        self.sync.take().map(AudienceSyncer::finish)
    }

    /// Writes out what is buffered, so that readers of the trace and the
    /// feeds (`nudge explain`, `nudge report`) see it while serving, and
    /// sends the pending audience changes (at each checkpoint of a run,
    /// after each group of requests while serving).
    pub(super) fn flush(&mut self) {
        if let Some(sync) = &mut self.sync {
            sync.flush();
        }
        if let Err(e) = self.trace.flush() {
            self.error.get_or_insert(format!("trace: {e}"));
        }
        for (name, f) in &mut self.audiences {
            if let Err(e) = f.flush() {
                self.error.get_or_insert(format!("audience {name}: {e}"));
            }
        }
    }

    pub(super) fn finish(mut self) -> Result<(), String> {
        if let Err(e) = self.trace.flush() {
            self.error.get_or_insert(format!("trace: {e}"));
        }
        for (name, f) in &mut self.audiences {
            if let Err(e) = f.flush() {
                self.error.get_or_insert(format!("audience {name}: {e}"));
            }
        }
        self.error.map_or(Ok(()), Err)
    }
}

impl durable::Feed for Feeds {
    fn mark(&mut self) -> Result<String, String> {
        self.flush();
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let len = |f: &File, what: &str| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| format!("{what}: {e}"))
        };
        let mut marks = FeedMarks {
            trace: len(self.trace.get_ref(), "trace")?,
            ..FeedMarks::default()
        };
        for (name, f) in &self.audiences {
            marks
                .audiences
                .insert(audience_file(name), len(f.get_ref(), name)?);
        }
        serde_json::to_string(&marks).map_err(|e| e.to_string())
    }

    fn delivery(&mut self, record: &DeliveryRecord) {
        let res = serde_json::to_string(record)
            .map_err(|e| e.to_string())
            .and_then(|l| writeln!(self.trace, "{l}").map_err(|e| e.to_string()));
        if let Err(e) = res {
            self.error.get_or_insert(format!("trace: {e}"));
        }
    }

    fn take_recorded(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.recorded)
    }
}

/// The idempotency keys of the delivery records in the first `len` bytes
/// of the trace at `path`.
fn delivery_keys(path: &Path, len: u64) -> Result<HashSet<String>, String> {
    /// The part of a trace line that tells a delivery record and its send.
    #[derive(serde::Deserialize)]
    struct Line {
        kind: String,
        key: Option<String>,
    }
    let err = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(err)?;
    let mut keys = HashSet::new();
    for line in std::io::BufRead::lines(BufReader::new(file.take(len))) {
        let line = line.map_err(err)?;
        // Only delivery lines are parsed: the trace is mostly decisions.
        if !line.contains(r#""kind":"delivery""#) {
            continue;
        }
        if let Ok(Line {
            kind,
            key: Some(key),
        }) = serde_json::from_str::<Line>(&line)
            && kind == "delivery"
        {
            keys.insert(key);
        }
    }
    Ok(keys)
}

/// Opens `path` to append, cut back to `len` bytes.
fn cut(path: &Path, len: u64) -> Result<File, String> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.set_len(len)
        .map_err(|e| format!("cannot cut {} back: {e}", path.display()))?;
    Ok(f)
}

impl Sink for Feeds {
    /// Never called: the ledger sink in front keeps sends for the ledger.
    fn deliver(&mut self, _: Channel, _: &nudge_channels::Outgoing) -> Result<(), String> {
        Ok(())
    }

    fn record(&mut self, record: Record) {
        let res = serde_json::to_string(&record)
            .map_err(|e| e.to_string())
            .and_then(|l| writeln!(self.trace, "{l}").map_err(|e| e.to_string()));
        if let Err(e) = res {
            self.error.get_or_insert(format!("trace: {e}"));
        }
    }

    fn membership(&mut self, change: Membership) {
        let res = (|| -> Result<(), String> {
            let f = match self.audiences.entry(change.audience.clone()) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    // Appended to: a feed cut back to a checkpoint goes on from there.
                    let path = self.audiences_dir.join(audience_file(&change.audience));
                    slot.insert(BufWriter::new(append_file(&path)?))
                }
            };
            let line = serde_json::to_string(&change).map_err(|e| e.to_string())?;
            writeln!(f, "{line}").map_err(|e| e.to_string())
        })();
        if let Err(e) = res {
            self.error
                .get_or_insert(format!("audience {}: {e}", change.audience));
        }
        if let Some(sync) = &mut self.sync {
            sync.change(&change);
        }
    }
}

/// The directory a project's state goes in: its root, or the directory of its first path.
pub(super) fn project_root(group: &[PathBuf]) -> PathBuf {
    let first = group.first().cloned().unwrap_or_else(|| PathBuf::from("."));
    if first.is_dir() {
        first
    } else {
        first
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

pub(super) fn create_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Opens `path` to append, creating it (and its folder) when missing.
fn append_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn parse_until(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!("--until {text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
        })
}

/// The project's `nudge.toml`, or the exit status after saying what is wrong.
pub(super) fn project_config(root: &Path) -> Result<ProjectConfig, Status> {
    ProjectConfig::load(root).map_err(|e| {
        eprint!("{}", e.render(super::use_color(&std::io::stderr())));
        Status::Failure
    })
}

/// The channel plugins of `nudge.toml`, each replaced by a `--deliver` for
/// the same channel.
pub(super) fn merge_routes(
    config: &ProjectConfig,
    cli: &[(Channel, PluginSpec)],
) -> Result<Vec<(Channel, PluginSpec)>, Status> {
    let mut routes = config.routes().map_err(|e| {
        eprintln!("error: {}: {e}", nudge_project::MANIFEST);
        Status::Failure
    })?;
    routes.retain(|(channel, _)| cli.iter().all(|(c, _)| c != channel));
    routes.extend(cli.iter().cloned());
    Ok(routes)
}

pub(super) fn parse_route(text: &str) -> Result<(Channel, PluginSpec), String> {
    let (channel, spec) = text
        .split_once('=')
        .ok_or("expected CHANNEL=PLUGIN, such as sms=stdout")?;
    let channel = Channel::from_name(channel.trim()).ok_or_else(|| {
        format!("unknown channel {channel:?}; channels are email, sms, push, webhook and audience")
    })?;
    let spec: PluginSpec = spec.parse().map_err(|e| format!("{e}"))?;
    Ok((channel, spec))
}

/// Reads suppression lists: one entry per line; blank lines and `#` comments
/// are skipped; entries are compared lower-cased.
fn read_suppression(paths: &[PathBuf]) -> Result<std::collections::HashSet<String>, String> {
    let mut out = std::collections::HashSet::new();
    for p in paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the suppression list {}: {e}", p.display()))?;
        for line in text.lines() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() {
                out.insert(entry.to_lowercase());
            }
        }
    }
    Ok(out)
}
