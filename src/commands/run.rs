//! `nudge run`: compile a project, then replay recorded calls through it on
//! a virtual clock.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nudge_bytecode::Channel;
use nudge_channels::{OutboxMode, PluginSpec};
use nudge_runtime::engine::{Config, Engine};
use nudge_runtime::output::FileSink;
use nudge_runtime::replay::{self, DeadLetter, Options};

use super::{Status, compile};

/// Arguments of `nudge run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Projects to run; the current directory by default. Each project
    /// replays its own `events.jsonl` unless `--events` names a file.
    pub paths: Vec<PathBuf>,
    /// The calls to replay: Segment JSON lines (one project only).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Where sent messages go; `.nudge/outbox.jsonl` in the project by default.
    #[arg(long, value_name = "FILE")]
    pub outbox: Option<PathBuf>,
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
    /// The summary as a table for people or JSON for tools.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
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
            || args.outbox.is_some()
            || args.dead_letters.is_some()
            || args.trace.is_some())
    {
        eprintln!(
            "error: --events, --outbox, --dead-letters and --trace name files of one project, but these paths hold {} projects",
            groups.len()
        );
        eprintln!("help: run each project on its own, or leave the files to their defaults");
        return Status::Failure;
    }
    let until = match args.until.as_deref().map(parse_until).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let mut routes = Vec::new();
    for d in &args.deliver {
        match parse_route(d) {
            Ok(r) => routes.push(r),
            Err(e) => {
                eprintln!("error: --deliver {d}: {e}");
                return Status::Failure;
            }
        }
    }
    let mut worst = Status::Ok;
    for group in &groups {
        let status = run_project(group, &args, until, &routes);
        if status as u8 > worst as u8 {
            worst = status;
        }
    }
    worst
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
    let state = root.join(".nudge");
    let events = args
        .events
        .clone()
        .unwrap_or_else(|| root.join("events.jsonl"));
    let input = match std::fs::read(&events) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read events from {}: {e}", events.display());
            if args.events.is_none() {
                eprintln!("help: name the calls to replay with --events FILE");
            }
            return Status::Failure;
        }
    };
    let outbox = args
        .outbox
        .clone()
        .unwrap_or_else(|| state.join("outbox.jsonl"));
    let dead_path = args
        .dead_letters
        .clone()
        .unwrap_or_else(|| state.join("dead_letters.jsonl"));
    let trace = args
        .trace
        .clone()
        .unwrap_or_else(|| state.join("trace.jsonl"));
    let mut sink = match FileSink::new(&outbox, Some(&trace), &state.join("audiences")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    for (channel, spec) in routes {
        match spec.build(&outbox, OutboxMode::Append) {
            Ok(p) => sink.route(*channel, p),
            Err(e) => {
                eprintln!("error: cannot set up the {} plugin: {e}", channel.name());
                return Status::Failure;
            }
        }
    }
    let mut dead_file = match create_file(&dead_path) {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let mut dead_error: Option<std::io::Error> = None;
    let mut write_dead = |d: DeadLetter| {
        let line = serde_json::to_string(&d).expect("a dead letter serializes");
        if let Err(e) = writeln!(dead_file, "{line}") {
            dead_error.get_or_insert(e);
        }
    };
    let mut lists: Vec<PathBuf> = bundle
        .policy
        .suppress_lists
        .iter()
        .map(PathBuf::from)
        .collect();
    lists.extend(args.suppress.iter().cloned());
    let suppression = match read_suppression(&lists) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    let config = Config {
        release_spread: args.release_spread,
        suppression,
    };
    let mut engine = Engine::new(&bundle, sink, config, i64::MIN);
    let options = Options {
        until,
        drain: args.drain,
    };
    replay::replay_bytes(&mut engine, &input, options, &mut write_dead);
    drop(input);
    let stats = engine.stats();
    let flushed = engine.into_sink().finish();
    let dead_flushed = dead_file.flush();
    match args.format {
        Format::Table => {
            println!("{}", root.display());
            print!("{}", stats.table());
            println!(
                "outbox: {}; dead letters: {}; trace: {}",
                outbox.display(),
                dead_path.display(),
                trace.display()
            );
            println!();
        }
        Format::Json => {
            let out = serde_json::json!({
                "project": root.display().to_string(),
                "outbox": outbox.display().to_string(),
                "dead_letters": dead_path.display().to_string(),
                "trace": trace.display().to_string(),
                "stats": stats,
            });
            println!("{out}");
        }
    }
    if let Err(e) = flushed {
        eprintln!("error: {e}");
        return Status::Failure;
    }
    if let Some(e) = dead_error.or(dead_flushed.err()) {
        eprintln!("error: writing {}: {e}", dead_path.display());
        return Status::Failure;
    }
    Status::Ok
}

/// The directory a project's state goes in: its root, or the directory of its first path.
fn project_root(group: &[PathBuf]) -> PathBuf {
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

fn create_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn parse_until(text: &str) -> Result<i64, String> {
    nudge_runtime::decode::parse_time(text).ok_or_else(|| {
        format!("--until {text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
    })
}

fn parse_route(text: &str) -> Result<(Channel, PluginSpec), String> {
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
