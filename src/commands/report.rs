//! `nudge report`: per-flow funnel, send outcomes by reason, conversions,
//! revenue and lift over the holdout group.

use std::path::PathBuf;

use nudge_report::{Report, html};

use super::Status;
use super::explain::read_trace;

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A summary and a step table per flow, for people.
    Table,
    /// One JSON object, for tools.
    Json,
    /// One row per flow, step and metric, for spreadsheets.
    Csv,
}

/// Arguments of `nudge report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project that was run; the current directory by default.
    pub path: Option<PathBuf>,
    /// The trace to read; `.nudge/trace.jsonl` in the project by default.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write a self-contained HTML page with a funnel chart per flow.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let trace = match read_trace(args.path.as_deref(), args.trace.as_deref()) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let report = Report::build(&trace);
    match args.format {
        Format::Table => print!("{}", report.table()),
        Format::Json => match serde_json::to_string_pretty(&report.json()) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write JSON: {e}");
                return Status::Failure;
            }
        },
        Format::Csv => print!("{}", report.csv()),
    }
    if let Some(file) = &args.html {
        let title = args
            .path
            .as_ref()
            .map_or_else(|| ".".to_string(), |p| p.display().to_string());
        if let Err(e) = std::fs::write(file, html::page(&report, &title)) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return Status::Failure;
        }
    }
    Status::Ok
}
