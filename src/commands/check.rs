//! `nudge check`: parse and type-check a project, and check its `nudge.toml`.

use std::path::{Path, PathBuf};

use nudge_diagnostics::render::{self, SarifOptions};
use nudge_diagnostics::{Diagnostic, Severity, SourceMap};

use super::{Status, use_color};

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Reports with source excerpts, for people.
    Human,
    /// One line per problem: `path:line:col: severity[code]: message`.
    Short,
    /// A versioned JSON document, for tools (see docs/diagnostics.md).
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
    /// SARIF: the directory artifact URIs are relative to (`%SRCROOT%`);
    /// the enclosing Git repository's root by default, else the current directory.
    #[arg(long, value_name = "DIR")]
    pub source_root: Option<PathBuf>,
    /// SARIF: the category of `automationDetails.id`, which keeps this
    /// analysis apart from others uploaded for the same commit.
    #[arg(long, value_name = "NAME", default_value = "nudge")]
    pub sarif_category: String,
    /// SARIF: the address of the diagnostics reference (docs/diagnostics.md
    /// as published); each rule's `helpUri` is this plus the code's anchor.
    #[arg(long, value_name = "URL")]
    pub help_url: Option<String>,
}

/// One project's (or one manifest's) diagnostics with the files they point into.
struct Checked {
    sources: SourceMap,
    diagnostics: Vec<Diagnostic>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let groups = match super::project_groups(&args.paths) {
        Ok(g) => g,
        Err(status) => return status,
    };
    let mut checked = Vec::new();
    let mut files = 0usize;
    for group in &groups {
        let project = match nudge_compiler::Project::load(group) {
            Ok(p) => p,
            Err(err) => return super::load_failed(err),
        };
        files += project.user_files().count();
        let analysis = nudge_compiler::check(&project);
        checked.push(Checked {
            sources: project.sources,
            diagnostics: analysis.diagnostics,
        });
        if let Some(manifest) = manifest_diagnostics(group) {
            files += 1;
            checked.push(manifest);
        }
    }
    let inputs: Vec<(&SourceMap, &[Diagnostic])> = checked
        .iter()
        .map(|c| (&c.sources, c.diagnostics.as_slice()))
        .collect();
    let all: Vec<&Diagnostic> = checked.iter().flat_map(|c| &c.diagnostics).collect();
    let text = match args.format {
        Format::Human => {
            let color = use_color(&std::io::stdout());
            let mut text: String = inputs
                .iter()
                .map(|(sources, diags)| render::human(sources, diags, color))
                .collect();
            let plural = if files == 1 { "" } else { "s" };
            let owned: Vec<Diagnostic> = all.iter().map(|d| (*d).clone()).collect();
            let summary = render::summary_line(&owned).unwrap_or_else(|| "no problems".into());
            text.push_str(&format!("checked {files} file{plural}: {summary}\n"));
            text
        }
        Format::Short => inputs
            .iter()
            .map(|(sources, diags)| render::short(sources, diags))
            .collect(),
        Format::Json => render::json(&inputs),
        Format::Sarif => {
            let working_dir = std::env::current_dir().ok();
            let root = match &args.source_root {
                Some(dir) => Some(absolute(dir, working_dir.as_deref())),
                None => working_dir.as_deref().map(repository_root),
            };
            let options = SarifOptions {
                tool_version: env!("CARGO_PKG_VERSION"),
                source_root: root.as_deref(),
                working_dir: working_dir.as_deref(),
                category: &args.sarif_category,
                help_base: args.help_url.as_deref(),
            };
            render::sarif(&inputs, &options)
        }
    };
    print!("{text}");
    let failing = all.iter().any(|d| {
        d.severity == Severity::Error || (args.deny_warnings && d.severity == Severity::Warning)
    });
    if failing {
        Status::Problems
    } else {
        Status::Ok
    }
}

/// The problems of a project root's `nudge.toml`, read exactly as `nudge
/// run` and `nudge serve` read it, in a source map of their own; `None`
/// for loose files or a usable manifest.
fn manifest_diagnostics(group: &[PathBuf]) -> Option<Checked> {
    let [root] = group else { return None };
    if !root.is_dir() {
        return None;
    }
    let err = nudge_host::config::Config::load(root).err()?;
    Some(Checked {
        sources: err.sources,
        diagnostics: err.diagnostics,
    })
}

/// `path` made absolute against the working directory, without resolving links.
fn absolute(path: &Path, working_dir: Option<&Path>) -> PathBuf {
    match working_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// The root of the Git repository holding `dir` (a `.git` directory, or
/// file for worktrees and submodules), else `dir` itself.
fn repository_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_root_is_the_nearest_directory_with_git() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo");
        let deep = repo.join("a/b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        assert_eq!(repository_root(&deep), deep);
        std::fs::write(repo.join(".git"), "gitdir: elsewhere\n").expect("write");
        assert_eq!(repository_root(&deep), repo);
    }
}
