//! `nudge alerts export`: the project's `[[alerts]]` as a Prometheus
//! alerting-rules file over the metrics of `nudge serve`, for teams that
//! alert from Prometheus rather than from the server itself.

use std::path::PathBuf;

use super::Status;
use super::run::project_config;
use nudge_host::alerts;

/// Arguments of `nudge alerts`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the alerts.
    #[command(subcommand)]
    pub action: Action,
}

/// The actions of `nudge alerts`.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Write the alerts as a Prometheus alerting-rules file (YAML).
    Export(ExportArgs),
}

/// Arguments of `nudge alerts export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The project; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// The file to write; stdout by default.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let Action::Export(args) = args.action;
    let root = match super::one_project(&args.paths, "nudge alerts export reads") {
        Ok((_, root)) => root,
        Err(status) => return status,
    };
    let settings = match project_config(&root) {
        Ok(c) => c,
        Err(status) => return status,
    };
    // Checked when nudge.toml was read.
    let rules = settings.alert_rules().unwrap_or_default();
    let yaml = alerts::prometheus_rules(&rules);
    match &args.output {
        None => {
            print!("{yaml}");
            Status::Ok
        }
        Some(path) => match std::fs::write(path, yaml) {
            Ok(()) => Status::Ok,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                Status::Failure
            }
        },
    }
}
