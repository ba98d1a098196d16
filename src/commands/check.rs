//! `nudge check`: parse and type-check a project.

use std::path::PathBuf;

use nudge_diagnostics::{Severity, render};
use serde_json::Value;

use super::{Status, load_projects, use_color};

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Reports with source excerpts, for people.
    Human,
    /// One line per problem: `path:line:col: severity[code]: message`.
    Short,
    /// A JSON array, for tools.
    Json,
    /// A SARIF 2.1.0 log, for code scanning in CI.
    Sarif,
}

/// Arguments of `nudge check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories (every `.flow` file below); the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Exit with status 1 on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let projects = match load_projects(args.paths) {
        Ok(projects) => projects,
        Err(status) => return status,
    };
    let color = use_color(&std::io::stdout());
    let mut all = Vec::new();
    let mut files = 0usize;
    let mut json_entries = Vec::new();
    let mut sarif_runs = Vec::new();
    let mut sarif_log = None;
    for project in projects {
        let analysis = nudge_compiler::check(&project);
        let diags = analysis.diagnostics;
        let sources = &project.sources;
        files += project.user_files().count();
        match args.format {
            Format::Human => print!("{}", render::human(sources, &diags, color)),
            Format::Short => print!("{}", render::short(sources, &diags)),
            Format::Json => json_entries.extend(as_array(render::json(sources, &diags))),
            Format::Sarif => {
                let mut log = parse_json(&render::sarif(sources, &diags, VERSION));
                if let Some(runs) = log.get_mut("runs").and_then(Value::as_array_mut) {
                    sarif_runs.append(runs);
                }
                sarif_log.get_or_insert(log);
            }
        }
        all.extend(diags);
    }
    match args.format {
        Format::Human => {
            let plural = if files == 1 { "" } else { "s" };
            let summary = render::summary_line(&all).unwrap_or_else(|| "no problems".into());
            println!("checked {files} file{plural}: {summary}");
        }
        Format::Short => {}
        Format::Json => println!("{}", pretty(&Value::Array(json_entries))),
        Format::Sarif => {
            // Each project is its own SARIF run; the log holds them all.
            let mut log = sarif_log
                .unwrap_or_else(|| parse_json(&render::sarif(&Default::default(), &[], VERSION)));
            log["runs"] = Value::Array(sarif_runs);
            println!("{}", pretty(&log));
        }
    }
    let failing = all.iter().any(|d| {
        d.severity == Severity::Error || (args.deny_warnings && d.severity == Severity::Warning)
    });
    if failing {
        Status::Problems
    } else {
        Status::Ok
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn as_array(text: String) -> Vec<Value> {
    match parse_json(&text) {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
