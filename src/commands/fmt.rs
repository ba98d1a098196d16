//! `nudge fmt`: rewrite `.flow` files in the canonical layout.

use std::path::PathBuf;

use nudge_compiler::Project;
use nudge_diagnostics::{FileId, SourceMap, render};

use super::{Status, load_projects, use_color};

/// Arguments of `nudge fmt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories (every `.flow` file below); the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Change nothing; list the files that are not formatted and exit with status 1.
    #[arg(long)]
    pub check: bool,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let projects = match load_projects(args.paths) {
        Ok(projects) => projects,
        Err(status) => return status,
    };
    let mut status = Status::Ok;
    let mut unformatted = 0usize;
    for project in &projects {
        match format_project(project, args.check, &mut unformatted) {
            Status::Ok => {}
            Status::Problems => status = Status::Problems,
            Status::Failure => return Status::Failure,
        }
    }
    if unformatted > 0 {
        let plural = if unformatted == 1 { "" } else { "s" };
        eprintln!("{unformatted} file{plural} would be reformatted");
        status = Status::Problems;
    }
    status
}

/// Formats every file of one project, counting those that need it under `--check`.
fn format_project(project: &Project, check: bool, unformatted: &mut usize) -> Status {
    let mut status = Status::Ok;
    for id in project.user_files() {
        let file = project.sources.get(id);
        match nudge_fmt::format_source(FileId(0), &file.text) {
            Ok(formatted) if formatted == file.text => {}
            Ok(_) if check => {
                println!("would reformat {}", file.path);
                *unformatted += 1;
            }
            Ok(formatted) => {
                if let Err(err) = std::fs::write(&file.path, formatted) {
                    eprintln!("error: cannot write {}: {err}", file.path);
                    return Status::Failure;
                }
                println!("formatted {}", file.path);
            }
            Err(diags) => {
                // The formatter parsed the file on its own, so its spans refer to a
                // one-file source map rather than the project's.
                let mut single = SourceMap::new();
                single.add(file.path.clone(), file.text.clone());
                eprint!(
                    "{}",
                    render::human(&single, &diags, use_color(&std::io::stderr()))
                );
                eprintln!("not formatted: {} has syntax errors", file.path);
                status = Status::Problems;
            }
        }
    }
    status
}
