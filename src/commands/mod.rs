//! One module per subcommand.

pub mod build;
pub mod check;
pub mod disasm;
pub mod explain;
pub mod fmt;
pub mod r#gen;
pub mod lsp;
pub mod report;
pub mod run;
pub mod serve;
pub mod test;

use std::io::IsTerminal;
use std::path::PathBuf;

/// How a command ended, as the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing to report.
    Ok = 0,
    /// The input has problems (errors, or warnings when denied).
    Problems = 1,
    /// The command could not do its job (bad usage, unreadable files).
    Failure = 2,
}

/// Loads the projects named by `paths` (the current directory when none),
/// reporting on stderr and returning `Failure` when any cannot be read.
pub fn load_projects(paths: Vec<PathBuf>) -> Result<Vec<nudge_compiler::Project>, Status> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths
    };
    let groups = crate::workspace::projects(&paths).map_err(|err| {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!("error: cannot read {}: {err}", shown.join(", "));
        Status::Failure
    })?;
    groups
        .iter()
        .map(|group| {
            nudge_compiler::Project::load(group).map_err(|err| {
                eprintln!("error: {err}");
                Status::Failure
            })
        })
        .collect()
}

/// Whether to colour terminal output: only on a terminal, and never with NO_COLOR set.
pub fn use_color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Groups `paths` (the current directory when none) into projects, reporting
/// on stderr and returning `Failure` when they cannot be read.
pub fn project_groups(paths: &[PathBuf]) -> Result<Vec<Vec<PathBuf>>, Status> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    crate::workspace::projects(&paths).map_err(|e| {
        eprintln!("error: cannot read the project: {e}");
        Status::Failure
    })
}

/// Loads, checks and lowers one project, reporting problems on stderr.
/// Warnings are shown but do not stop it; errors do (`Problems`).
pub fn compile(group: &[PathBuf]) -> Result<nudge_compiler::bytecode::Bundle, Status> {
    compile_project(group).map(|(_, bundle)| bundle)
}

/// Compiles a project without printing: the bundle, or what is wrong as
/// plain text (for a reload's answer).
pub fn compile_to_text(group: &[PathBuf]) -> Result<nudge_compiler::bytecode::Bundle, String> {
    let project = nudge_compiler::Project::load(group).map_err(|e| e.to_string())?;
    let analysis = nudge_compiler::check(&project);
    if analysis.has_errors() {
        let mut text =
            nudge_diagnostics::render::human(&project.sources, &analysis.diagnostics, false);
        if let Some(summary) = nudge_diagnostics::render::summary_line(&analysis.diagnostics) {
            text.push_str(&summary);
        }
        return Err(text);
    }
    nudge_compiler::lower(&project, &analysis).map_err(|e| e.render(&project.sources))
}

/// Like [`compile`], also giving back the checked project.
pub fn compile_project(
    group: &[PathBuf],
) -> Result<(nudge_compiler::Project, nudge_compiler::bytecode::Bundle), Status> {
    let project = nudge_compiler::Project::load(group).map_err(|err| {
        eprintln!("error: {err}");
        Status::Failure
    })?;
    let analysis = nudge_compiler::check(&project);
    if analysis.has_errors() {
        let color = use_color(&std::io::stderr());
        eprint!(
            "{}",
            nudge_diagnostics::render::human(&project.sources, &analysis.diagnostics, color)
        );
        if let Some(summary) = nudge_diagnostics::render::summary_line(&analysis.diagnostics) {
            eprintln!("not run: {summary}");
        }
        return Err(Status::Problems);
    }
    let bundle = nudge_compiler::lower(&project, &analysis).map_err(|e| {
        eprintln!("error: {}", e.render(&project.sources));
        Status::Problems
    })?;
    Ok((project, bundle))
}
