//! `nudge run`: compile a project, then replay recorded calls through it on
//! a virtual clock.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::{AudienceSync, PluginSpec};
use nudge_host::config::Config as ProjectConfig;
use nudge_host::durable;
use nudge_host::run::{self as host, Files, Plan, Ran};
use nudge_host::setup::{self, SetupError};
use nudge_runtime::engine::Config;
use nudge_runtime::replay::{self, Horizon};
use nudge_store::StoreError;

use super::progress::Progress;
use super::{Status, compile};

/// Arguments of `nudge run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Projects to run; the current directory by default. Each project
    /// replays its own `events.jsonl` unless `--events` names a file.
    pub paths: Vec<PathBuf>,
    /// Where sends go and what the engine keeps.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The calls to replay: Segment JSON lines (one project only); `-`
    /// reads them from standard input (with --in-memory).
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

/// Where sends go: the options `nudge run`, `nudge serve` and `nudge
/// worker` share.
#[derive(clap::Args, Debug)]
pub struct DeliveryArgs {
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
}

impl DeliveryArgs {
    /// The `--deliver` routes; a bad one is reported and fails the command.
    pub(super) fn routes(&self) -> Result<Vec<(Channel, PluginSpec)>, Status> {
        self.deliver
            .iter()
            .map(|d| {
                setup::parse_route(d).map_err(|e| {
                    eprintln!("error: --deliver {d}: {e}");
                    Status::Failure
                })
            })
            .collect()
    }
}

/// The options `nudge run` and `nudge serve` share: where sends go and
/// what the engine keeps.
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Where sends go.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
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
        self.delivery.routes()
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
            || args.engine.delivery.outbox.is_some()
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
    if args.events.as_deref().is_some_and(is_stdin) && !args.engine.in_memory {
        eprintln!(
            "error: --events - (standard input) replays in memory only (add --in-memory): the store keeps how far it read the events file, to go on from there after a crash or when lines are appended, and standard input cannot be read again"
        );
        eprintln!(
            "help: for a durable run, save the calls to a file, then `nudge run --events FILE`"
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

/// The files of one project's run, and the project they belong to.
struct Paths {
    root: PathBuf,
    files: Files,
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
    let opened = if is_stdin(&events) {
        // Not locked: the replay reads it on its own thread.
        Ok((Box::new(std::io::stdin()) as Box<dyn Read + Send>, 0))
    } else {
        File::open(&events).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((Box::new(f) as Box<dyn Read + Send>, len))
        })
    };
    let input = match opened {
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
        files: Files {
            outbox: args
                .engine
                .delivery
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
            state,
        },
        root,
    };
    let config = match engine_config(
        &bundle,
        &settings,
        &args.engine.delivery.suppress,
        args.engine.delivery.release_spread,
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
        .unwrap_or(nudge_host::config::DEFAULT_MAX_SENDS_PER_STEP);
    let plan = Plan {
        until,
        drain: args.drain,
        horizon,
        window,
        checkpoint_every: settings.checkpoint_every(),
        customers_in_memory: settings.customers_in_memory(),
        keep_calls: settings.keep_calls_ms(),
        max_sends,
        // 10,000 by default: the commit's fsync is paid once per many calls,
        // and a batch's sends still go out within a fraction of a second.
        batch_lines: args.batch_lines,
        reset: args.reset,
        release_sends: args.release_sends,
        sort: args.sort.then(|| nudge_runtime::sort::Options {
            budget: args
                .sort_memory
                .unwrap_or(nudge_runtime::sort::DEFAULT_BUDGET),
            dir: args
                .sort_temp_dir
                .clone()
                .unwrap_or_else(|| paths.files.state.clone()),
        }),
    };
    let (input, len) = input;
    let progress = Progress::for_file(&events, len);
    let ran = if args.engine.in_memory {
        host::in_memory(
            &bundle,
            &events,
            input,
            &paths.files,
            &plan,
            routes,
            config,
            audience,
            &progress,
        )
    } else {
        drop(input);
        host::durable(
            &bundle,
            &events,
            &paths.files,
            &plan,
            routes,
            config,
            audience,
            &progress,
        )
    };
    progress.finish();
    match ran {
        Ok(ran) => tell(args.format, &paths, &plan, &ran),
        Err(e) => setup_failed(e),
    }
}

/// Prints what a run came to, and its exit status.
fn tell(format: Format, paths: &Paths, plan: &Plan, ran: &Ran) -> Status {
    let store = &paths.files.store;
    if let Some(d) = ran.report.as_ref().and_then(|r| r.deployed.as_ref()) {
        eprintln!(
            "note: the project changed since {} was last run; deployed it:\n{d}",
            store.display()
        );
    }
    if let Some(parts) = ran
        .report
        .as_ref()
        .map(|r| r.deploy_parts)
        .filter(|&p| p > 0)
    {
        eprintln!(
            "note: the deploy armed its new triggers for every customer in {parts} parts, each committed with a checkpoint (customers_in_memory)"
        );
    }
    summary(
        format,
        paths,
        &ran.stats,
        ran.clamped,
        ran.report.as_ref().map(|r| (store.as_path(), r)),
        ran.memory.as_ref(),
    );
    if ran.report.as_ref().is_some_and(|r| r.diverged) {
        eprintln!(
            "warning: rebuilding from {} gave a different number of sends than its ledger holds; the history may have been applied under other settings",
            store.display()
        );
    }
    past_window(ran.past_window, plan.window);
    if let Some(s) = &ran.synced {
        nudge_host::run::print_synced(s);
    }
    if let Some(r) = &ran.report
        && let Some(f) = &r.first_failure
    {
        eprintln!(
            "warning: {} deliveries failed in this run; first: {f}",
            r.failed
        );
    }
    if let Some(e) = &ran.error {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    if let Some(held) = &ran.held {
        eprintln!(
            "help: the send circuit breaker tripped ({}): {} sends were held in {} and not delivered; a run in memory keeps no ledger to release them from, so check them, then raise [runtime] max_sends_per_step or run with the store",
            held.why,
            held.count,
            held.path.display()
        );
        return Status::Held;
    }
    if let Some(r) = &ran.report
        && let Some(reason) = &r.paused
    {
        eprintln!(
            "alert: delivery paused by the send circuit breaker ([runtime] max_sends_per_step = {}): {reason}",
            plan.max_sends
        );
        eprintln!(
            "help: {} sends are held, pending in {}; run again with --release-sends to deliver them",
            r.held,
            store.display()
        );
        return Status::Held;
    }
    Status::Ok
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
    frozen: Option<&durable::Memory>,
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
                paths.files.outbox.display(),
                paths.files.dead.display(),
                paths.files.trace.display()
            );
            if let Some(m) = frozen {
                println!(
                    "memory: {} of {} customers held as records (budget {}), the others encoded; {} decoded, {} encoded",
                    m.in_memory, m.customers, m.budget, m.read_back, m.let_go
                );
            }
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
                if let Some(m) = &r.memory {
                    println!(
                        "memory: {} of {} customers in memory (budget {}); {} read back from the store, {} let go; {} of {} timers in memory; {} of {} identities' texts in memory, {} read back",
                        m.in_memory,
                        m.customers,
                        m.budget,
                        m.read_back,
                        m.let_go,
                        m.timers_in_memory,
                        m.timers,
                        m.identities_in_memory,
                        m.identities,
                        m.identities_read
                    );
                }
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
                "outbox": paths.files.outbox.display().to_string(),
                "dead_letters": paths.files.dead.display().to_string(),
                "trace": paths.files.trace.display().to_string(),
                "stats": stats,
            });
            if clamped > 0 {
                super::put(&mut out, "clamped", serde_json::json!(clamped));
            }
            if let Some(m) = frozen {
                super::put(&mut out, "memory", serde_json::json!(m));
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

/// Whether an events path names standard input.
fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

pub(super) fn parse_until(text: &str) -> Result<i64, String> {
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

/// Reports a failure to set the host up, with its hint.
pub(super) fn setup_failed(e: SetupError) -> Status {
    eprintln!("error: {}", e.message);
    if let Some(h) = &e.help {
        eprintln!("help: {h}");
    }
    Status::Failure
}

/// The ad platform `[channels.audience]` names, ready to sync to.
pub(super) fn audience_plugin(
    settings: &ProjectConfig,
) -> Result<Option<Box<dyn AudienceSync>>, Status> {
    setup::audience_plugin(settings).map_err(setup_failed)
}

/// The engine settings: `nudge.toml`'s, with the policy's suppression lists plus `suppress`.
pub(super) fn engine_config(
    bundle: &nudge_bytecode::Bundle,
    settings: &ProjectConfig,
    suppress: &[PathBuf],
    release_spread: i64,
) -> Result<Config, Status> {
    setup::engine_config(bundle, settings, suppress, release_spread).map_err(setup_failed)
}

/// The channel plugins of `nudge.toml`, each replaced by a `--deliver` for
/// the same channel.
pub(super) fn merge_routes(
    settings: &ProjectConfig,
    cli: &[(Channel, PluginSpec)],
) -> Result<Vec<(Channel, PluginSpec)>, Status> {
    setup::merge_routes(settings, cli).map_err(setup_failed)
}
