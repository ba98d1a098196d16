//! `nudge fmt`: rewrite `.flow` files in the canonical layout.

use std::path::{Path, PathBuf};

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
    // A path inside a project loads the whole project (its files are found
    // that way), but only the files named, or below the folders named, are
    // formatted: `nudge fmt --check a.flow` is about `a.flow`.
    let targets = selected_paths(&args.paths);
    let projects = match load_projects(args.paths) {
        Ok(projects) => projects,
        Err(status) => return status,
    };
    let mut status = Status::Ok;
    let mut unformatted = 0usize;
    for project in &projects {
        match format_project(project, &targets, args.check, &mut unformatted) {
            Status::Ok => {}
            Status::Problems | Status::Held => status = Status::Problems,
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

/// The paths given on the command line (the current directory by
/// default), absolute, to pick the files to format.
fn selected_paths(paths: &[PathBuf]) -> Vec<PathBuf> {
    let given = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    given
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect()
}

/// Whether a file is one of `targets` or below one of them.
fn is_selected(path: &str, targets: &[PathBuf]) -> bool {
    let path = Path::new(path);
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    targets.iter().any(|t| path.starts_with(t))
}

/// Formats the selected files of one project, counting those that need it under `--check`.
fn format_project(
    project: &Project,
    targets: &[PathBuf],
    check: bool,
    unformatted: &mut usize,
) -> Status {
    let mut status = Status::Ok;
    for id in project.user_files() {
        let file = project.sources.get(id);
        if !is_selected(&file.path, targets) {
            continue;
        }
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
