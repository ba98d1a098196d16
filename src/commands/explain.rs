//! `nudge explain`: the decision trace of one customer, in plain words.

use std::path::{Path, PathBuf};

use nudge_report::{Timeline, Trace, TraceError};

use super::Status;

/// How the timeline is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per record, for people.
    Human,
    /// The selected records as a JSON array, for tools.
    Json,
}

/// Arguments of `nudge explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The customer's id, as events name them (`u1`, or an anonymous id).
    pub customer: String,
    /// The project that was run; the current directory by default.
    pub path: Option<PathBuf>,
    /// Only this flow's records (joins are always shown).
    #[arg(long, value_name = "NAME")]
    pub flow: Option<String>,
    /// The trace to read; `.nudge/trace.jsonl` in the project by default.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let trace = match read_trace(args.path.as_deref(), args.trace.as_deref()) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let timeline = match Timeline::build(&trace, &args.customer, args.flow.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Problems;
        }
    };
    match args.format {
        Format::Human => print!("{}", timeline.human()),
        Format::Json => match serde_json::to_string_pretty(&timeline.json()) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write JSON: {e}");
                return Status::Failure;
            }
        },
    }
    Status::Ok
}

/// Reads the trace of the project at `path` (or the file `trace` names),
/// reporting on stderr why it cannot.
pub fn read_trace(path: Option<&Path>, trace: Option<&Path>) -> Result<Trace, Status> {
    let project = path.unwrap_or(Path::new("."));
    let file = trace.map_or_else(
        || project.join(".nudge").join("trace.jsonl"),
        Path::to_path_buf,
    );
    Trace::read(&file).map_err(|e| {
        eprintln!("error: {e}");
        if matches!(e, TraceError::Missing(_)) {
            if trace.is_some() {
                eprintln!("help: check the --trace path");
            } else {
                eprintln!(
                    "help: run `nudge run {} --drain` first to write it",
                    project.display()
                );
            }
        }
        Status::Failure
    })
}
