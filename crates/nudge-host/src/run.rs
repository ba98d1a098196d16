//! `nudge run` as a library: a file of calls replayed through a project on
//! a virtual clock, either in memory (nothing kept) or on the durable store
//! (rebuilt from it, then only what it has not seen). The caller reads its
//! arguments and prints; everything between is here.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::{AudienceSync, OutboxMode, PluginSpec};
use nudge_runtime::engine::{Config, Engine};
use nudge_runtime::output::{FileSink, Synced};
use nudge_runtime::replay::{self, DeadLetter, Horizon, Options};
use nudge_runtime::stats::Stats;

use crate::breaker::Breaker;
use crate::durable::{self, Input, LedgerSink, Settings};
use crate::feeds::{Feeds, create_file, write_dead_letters};
use crate::setup::{SetupError, open_store};
use crate::watch::{Watch, Watched};

/// Where a run's files are.
#[derive(Clone, Debug)]
pub struct Files {
    /// The project's state folder (`.nudge`): the held sends and the
    /// audience feeds go here, and sorted runs by default.
    pub state: PathBuf,
    /// The durable store.
    pub store: PathBuf,
    /// Where sends go when no plugin takes their channel.
    pub outbox: PathBuf,
    /// Where refused lines go.
    pub dead: PathBuf,
    /// The decision trace.
    pub trace: PathBuf,
}

/// How a run replays its calls.
#[derive(Clone, Debug)]
pub struct Plan {
    /// After the last call, run the clock to this instant (milliseconds).
    pub until: Option<i64>,
    /// After the last call, run the clock until nothing is pending but schedules.
    pub drain: bool,
    /// Calls stamped beyond this are refused.
    pub horizon: Horizon,
    /// The reorder window, in lines.
    pub window: usize,
    /// Calls between two checkpoints of the store.
    pub checkpoint_every: u64,
    /// `[runtime] customers_in_memory`: the most customers kept in memory
    /// after each checkpoint; `None` keeps every one.
    pub customers_in_memory: Option<usize>,
    /// `[store] keep_calls` in milliseconds.
    pub keep_calls: Option<i64>,
    /// The send circuit breaker's limit of sends per step.
    pub max_sends: usize,
    /// Lines applied per store transaction.
    pub batch_lines: usize,
    /// Discard the store's history first.
    pub reset: bool,
    /// Deliver the sends the breaker held in an earlier run.
    pub release_sends: bool,
    /// Sort the file by time first (in memory only), with these options.
    pub sort: Option<nudge_runtime::sort::Options>,
}

/// Sends the breaker of a run in memory held, and why.
#[derive(Debug)]
pub struct Held {
    /// Why the breaker tripped.
    pub why: String,
    /// How many sends it held.
    pub count: u64,
    /// The file they are in.
    pub path: PathBuf,
}

/// What a run came to: its counters and what the caller should tell.
#[derive(Debug)]
pub struct Ran {
    /// The engine's counters at the end.
    pub stats: Stats,
    /// Lines stamped later than their receipt, applied at it.
    pub clamped: u64,
    /// Lines more than the window out of time order, applied late.
    pub past_window: u64,
    /// What the audience plugin did, when there is one.
    pub synced: Option<Synced>,
    /// In memory: the sends the breaker held.
    pub held: Option<Held>,
    /// Durable: the store's report of the run.
    pub report: Option<durable::Report>,
    /// In memory, with `[runtime] customers_in_memory`: how the customers
    /// beyond it were frozen and decoded.
    pub memory: Option<durable::Memory>,
    /// A file that could not be written after the replay (the outputs are
    /// incomplete): the run failed, though its counters stand.
    pub error: Option<String>,
}

/// Replays `input` (the calls of `events`, named in messages) from
/// scratch on a fresh engine; nothing is kept.
#[allow(clippy::too_many_arguments)]
pub fn in_memory(
    bundle: &Bundle,
    events: &Path,
    input: impl Read + Send,
    files: &Files,
    plan: &Plan,
    routes: &[(Channel, PluginSpec)],
    config: Config,
    audience: Option<Box<dyn AudienceSync>>,
    watch: &dyn Watch,
) -> Result<Ran, SetupError> {
    let mut sink = FileSink::new(
        &files.outbox,
        Some(&files.trace),
        &files.state.join("audiences"),
    )
    .map_err(SetupError::new)?;
    for (channel, spec) in routes {
        let plugin = spec.build(&files.outbox, OutboxMode::Append).map_err(|e| {
            SetupError::new(format!("cannot set up the {} plugin: {e}", channel.name()))
        })?;
        sink.route(*channel, plugin);
    }
    if let Some(plugin) = audience {
        sink.sync_audiences(plugin);
    }
    let mut dead_file = BufWriter::new(create_file(&files.dead).map_err(SetupError::new)?);
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
    let held_path = files.state.join("held.jsonl");
    let sink = Breaker::new(sink, plan.max_sends, &held_path).map_err(SetupError::new)?;
    let budget = config.customers_in_memory;
    let mut engine = Engine::new(bundle, Watched::new(sink, watch), config, i64::MIN);
    let options = Options {
        until: plan.until,
        drain: plan.drain,
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let streamed = match &plan.sort {
        Some(sort) => {
            let sorted = nudge_runtime::sort::sort(input, sort).map_err(|e| {
                SetupError::new(format!("cannot sort events from {}: {e}", events.display()))
            })?;
            replay::replay_sorted(
                &mut engine,
                sorted,
                options,
                Some(plan.horizon),
                &mut write_dead,
            )
        }
        None => replay::replay_stream(
            &mut engine,
            input,
            options,
            Some(plan.horizon),
            plan.window,
            &mut write_dead,
        ),
    }
    .map_err(|e| SetupError::new(format!("cannot read events from {}: {e}", events.display())))?;
    let stats = engine.stats();
    let memory = durable::Memory::of(&engine, budget);
    // A frozen customer that could not be decoded: the run's decisions
    // since are not to be trusted.
    let fault = engine
        .page_fault()
        .map(|reason| format!("a customer held frozen in memory could not be decoded ({reason})"));
    let mut synced = None;
    let (flushed, held) = match engine.into_sink().into_inner().finish() {
        Ok((mut sink, tripped, count)) => {
            synced = sink.finish_sync();
            (
                sink.finish(),
                tripped.map(|why| Held {
                    why,
                    count,
                    path: held_path.clone(),
                }),
            )
        }
        Err(e) => (Err(e), None),
    };
    let dead_flushed = dead_file.flush();
    let error = match (flushed, dead_error.or(dead_flushed.err())) {
        _ if fault.is_some() => fault,
        (Err(e), _) => Some(e),
        (Ok(()), Some(e)) => Some(format!("writing {}: {e}", files.dead.display())),
        (Ok(()), None) => None,
    };
    Ok(Ran {
        stats,
        clamped: streamed.clamped,
        past_window: streamed.past_window,
        synced,
        held,
        report: None,
        memory,
        error,
    })
}

/// Rebuilds the engine from the store, then applies only what the store
/// has not seen of `events`, committing before delivering.
#[allow(clippy::too_many_arguments)]
pub fn durable(
    bundle: &Bundle,
    events: &Path,
    files: &Files,
    plan: &Plan,
    routes: &[(Channel, PluginSpec)],
    config: Config,
    audience: Option<Box<dyn AudienceSync>>,
    watch: &dyn Watch,
) -> Result<Ran, SetupError> {
    let (mut store, mut router) =
        open_store(&files.store, plan.reset, &config, &files.outbox, routes)?;
    // A flood an earlier run held stays held, unless this run releases it.
    if !plan.release_sends {
        router.hold_resends_over(plan.max_sends);
    }
    let (mut feeds, start) = Feeds::open(&store, &files.trace, &files.state.join("audiences"))
        .map_err(SetupError::new)?;
    if let Some(plugin) = audience {
        feeds.sync_audiences(plugin);
    }
    let bundles = durable::Bundles::new();
    let code = durable::Code {
        current: bundle,
        bundles: &bundles,
    };
    let initial = code.initial(&store)?;
    let (sink, captured) = LedgerSink::new(Watched::new(feeds, watch));
    let mut engine = Engine::new(initial, sink, config, i64::MIN);
    durable::bound_memory(&store, &mut engine, plan.customers_in_memory)?;
    let name = std::fs::canonicalize(events)
        .unwrap_or_else(|_| events.to_path_buf())
        .display()
        .to_string();
    let settings = Settings {
        until: plan.until,
        drain: plan.drain,
        batch_lines: plan.batch_lines,
        horizon: Some(plan.horizon),
        window: plan.window,
        checkpoint_every: plan.checkpoint_every,
        keep_calls: plan.keep_calls,
        start,
        max_sends_per_step: Some(plan.max_sends),
        customers_in_memory: plan.customers_in_memory,
    };
    let source = Input {
        name: &name,
        path: events,
    };
    let (report, dead) = durable::run(
        &mut store,
        &mut engine,
        code,
        &captured,
        &mut router,
        source,
        settings,
    )?;
    let stats = engine.stats();
    let mut feeds = engine.into_sink().into_feeds().into_inner();
    let synced = feeds.finish_sync();
    let error = feeds
        .finish()
        .and(write_dead_letters(&files.dead, &dead))
        .err();
    Ok(Ran {
        stats,
        clamped: report.clamped,
        past_window: report.past_window,
        synced,
        held: None,
        report: Some(report),
        memory: None,
        error,
    })
}

/// Tells what the audience plugin did; a failure is a warning, since the
/// audience feeds still hold every change.
pub fn print_synced(synced: &Synced) {
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
