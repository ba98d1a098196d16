//! `nudge store compact`: removes old calls from a durable store's log once
//! its checkpoint covers them, so that a store served for years holds its
//! state and a bounded tail of its history.

use std::path::PathBuf;

use nudge_store::{CompactStop, Compaction, Store};

use super::Status;
use super::run::{fail, project_config};

/// Arguments of `nudge store`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the store.
    #[command(subcommand)]
    pub action: Action,
}

/// The actions of `nudge store`.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Remove calls older than the retention from the log (the checkpoint
    /// keeps the state they made).
    Compact(CompactArgs),
}

/// How `nudge store compact` reports what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One sentence.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `nudge store compact`.
#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The project; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// The store file; `store.path` in nudge.toml, else `.nudge/state.db`.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Keep calls dated within this long before the store's clock (`90d`,
    /// `12w`); older ones covered by the checkpoint are removed.
    #[arg(long, value_name = "DURATION")]
    pub keep: String,
    /// How to report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let Action::Compact(args) = args.action;
    compact(args)
}

fn compact(args: CompactArgs) -> Status {
    let Some(keep) = nudge_host::config::parse_duration(&args.keep).filter(|s| *s >= 0) else {
        eprintln!(
            "error: --keep {:?}: expected a duration such as `90d`, `12w` or `24h`",
            args.keep
        );
        return Status::Failure;
    };
    let root = match super::one_project(&args.paths, "nudge store compact works on") {
        Ok((_, root)) => root,
        Err(status) => return status,
    };
    let path = match args.store {
        Some(p) => p,
        None => match project_config(&root) {
            Ok(c) => c
                .store_path(&root)
                .unwrap_or_else(|| root.join(".nudge/state.db")),
            Err(status) => return status,
        },
    };
    if !path.is_file() {
        eprintln!("error: there is no store at {}", path.display());
        eprintln!(
            "help: a project's store is `.nudge/state.db` once `nudge run` or `nudge serve` has run"
        );
        return Status::Failure;
    }
    let mut store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // The store's own clock, not the wall clock: a replayed history is
    // kept by its own dates.
    let clock = match store.meta("clock") {
        Ok(c) => c.and_then(|v| v.parse::<i64>().ok()),
        Err(e) => return fail(&e),
    };
    let Some(clock) = clock.filter(|c| *c != i64::MIN) else {
        report_nothing(&args.format, "its clock never moved");
        return Status::Ok;
    };
    let before = clock.saturating_sub(keep.saturating_mul(1000));
    let done = match store.compact_readable(Compaction {
        before,
        limit: u64::MAX,
    }) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    match args.format {
        Format::Json => {
            let out = serde_json::json!({
                "store": path.display().to_string(),
                "removed": done.removed,
                "through": done.through,
                "stopped": done.stopped,
                "before": before,
            });
            println!("{out}");
        }
        Format::Text => {
            let why = match done.stopped {
                CompactStop::Cutoff => "the calls left are within the retention",
                CompactStop::Checkpoint => {
                    "the calls left are newer than the last checkpoint, which a restart needs"
                }
                CompactStop::Limit => "the limit of one pass was reached",
                CompactStop::NoCheckpoint => {
                    "the store has no checkpoint this nudge can start from, so every call is still needed"
                }
            };
            println!(
                "{}: removed {} call{} from the log; {why}",
                path.display(),
                done.removed,
                if done.removed == 1 { "" } else { "s" }
            );
        }
    }
    Status::Ok
}

fn report_nothing(format: &Format, why: &str) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({ "removed": 0, "stopped": "no_clock" })
        ),
        Format::Text => println!("nothing to compact: {why}"),
    }
}
