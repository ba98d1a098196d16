//! `nudge report`: per flow of the project, a funnel of customers, send
//! outcomes by reason, the orders credited to it, split arms and lift over
//! the holdout group.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use nudge_report::{FlowSpec, Report, Scope, html};

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
    /// Also write a self-contained HTML page with tables and charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Count only records at or after this time (RFC 3339, or YYYY-MM-DD for midnight UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_from)]
    pub from: Option<DateTime<Utc>>,
    /// Count only records at or before this time (RFC 3339, or YYYY-MM-DD for the whole day, UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_to)]
    pub to: Option<DateTime<Utc>>,
    /// The ISO 4217 code of amounts the trace gives no currency for (the store's currency).
    #[arg(long, value_name = "CODE", value_parser = parse_currency)]
    pub currency: Option<String>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    if let (Some(f), Some(t)) = (args.from, args.to)
        && f > t
    {
        eprintln!("error: --from is after --to: the range is empty");
        return Status::Failure;
    }
    let trace = match read_trace(args.path.as_deref(), args.trace.as_deref()) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let project = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let flows = match project_flows(&project) {
        Ok(f) => f,
        Err(status) => return status,
    };
    let scope = Scope {
        flows,
        from: args.from,
        to: args.to,
        currency: args.currency.clone(),
    };
    let report = Report::build(&trace, &scope);
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
        let title = project.display().to_string();
        if let Err(e) = std::fs::write(file, html::page(&report, &title)) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return Status::Failure;
        }
    }
    Status::Ok
}

/// The flows the project at `path` declares, with their goal windows.
fn project_flows(path: &Path) -> Result<Vec<FlowSpec>, Status> {
    let groups = super::project_groups(&[path.to_path_buf()])?;
    let [group] = groups.as_slice() else {
        eprintln!(
            "error: {} holds {} projects; report on one of them",
            path.display(),
            groups.len()
        );
        eprintln!("help: give the path of the project the trace is from: `nudge report PATH`");
        return Err(Status::Failure);
    };
    let bundle = super::compile_to_text(group).map_err(|text| {
        eprint!("{text}");
        if !text.ends_with('\n') {
            eprintln!();
        }
        eprintln!(
            "error: cannot compile the project at {}, so its flows are unknown",
            path.display()
        );
        Status::Problems
    })?;
    Ok(bundle
        .flows
        .iter()
        .map(|f| FlowSpec {
            name: f.name.clone(),
            goal_window: f.goal.as_ref().map(|g| Duration::seconds(g.within)),
        })
        .collect())
}

/// `--from`: a date is its first millisecond.
fn parse_from(text: &str) -> Result<DateTime<Utc>, String> {
    parse_date(text, false)
}

/// `--to`: a date is its last millisecond, so that the day is included.
fn parse_to(text: &str) -> Result<DateTime<Utc>, String> {
    parse_date(text, true)
}

fn parse_date(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor a date (2026-11-24)"
        )
    })?;
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    if !end_of_day {
        return Ok(start);
    }
    start
        .checked_add_signed(Duration::days(1) - Duration::milliseconds(1))
        .ok_or_else(|| format!("{text:?} is past the last date a report can cover"))
}

fn parse_currency(text: &str) -> Result<String, String> {
    if nudge_report::money::is_currency_code(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an ISO 4217 code (three capital letters, such as EUR)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_whole_days() {
        assert_eq!(
            parse_from("2026-11-24").unwrap().to_rfc3339(),
            "2026-11-24T00:00:00+00:00"
        );
        assert_eq!(
            parse_to("2026-11-24").unwrap(),
            "2026-11-24T23:59:59.999Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_to("2026-11-24T10:00:00+01:00").unwrap().to_rfc3339(),
            "2026-11-24T09:00:00+00:00"
        );
        assert!(parse_from("24/11/2026").unwrap_err().contains("neither"));
    }
}
