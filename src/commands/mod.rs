//! One module per subcommand.

pub mod alerts;
pub mod audiences;
pub mod build;
pub mod check;
pub mod cluster;
pub mod disasm;
pub mod docs;
pub mod events;
pub mod explain;
pub mod fmt;
pub mod r#gen;
pub mod lsp;
pub mod progress;
pub mod report;
pub mod run;
pub mod serve;
pub mod store;
pub mod test;
pub mod worker;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;

/// How a command ended, as the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing to report.
    Ok = 0,
    /// The input has problems (errors, or warnings when denied).
    Problems = 1,
    /// The command could not do its job (bad usage, unreadable files).
    Failure = 2,
    /// `nudge run` paused delivery: the send circuit breaker holds sends
    /// pending in the store until a run with `--release-sends`.
    Held = 3,
}

/// Loads the projects named by `paths` (the current directory when none),
/// reporting on stderr and returning `Failure` when any cannot be read.
pub fn load_projects(paths: Vec<PathBuf>) -> Result<Vec<nudge_compiler::Project>, Status> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths
    };
    let groups = nudge_project::Scan::unlimited().projects(&paths);
    groups
        .iter()
        .map(|group| nudge_compiler::Project::load(group).map_err(load_failed))
        .collect()
}

/// Shows why a project's files could not be read, as a diagnostic on
/// stderr, and gives the status that ends the command.
pub fn load_failed(err: nudge_compiler::LoadError) -> Status {
    eprint!("{}", err.render(use_color(&std::io::stderr())));
    Status::Failure
}

/// The values of the global `--color` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour on a terminal, unless `NO_COLOR` is set to a non-empty value.
    #[default]
    Auto,
    /// Always colour, even when piped or with `NO_COLOR` set.
    Always,
    /// Never colour.
    Never,
}

impl ColorWhen {
    /// The same choice for clap's own help and error output.
    pub fn clap_choice(self) -> clap::ColorChoice {
        match self {
            ColorWhen::Auto => clap::ColorChoice::Auto,
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
        }
    }
}

static COLOR: OnceLock<ColorWhen> = OnceLock::new();

/// Records the `--color` choice for every renderer; the first call wins.
pub fn set_color(when: ColorWhen) {
    let _ = COLOR.set(when);
}

/// Whether to colour output written to `stream`, following `--color`: in
/// `auto`, only on a terminal and never with `NO_COLOR` set.
pub fn use_color(stream: &impl IsTerminal) -> bool {
    match COLOR.get().copied().unwrap_or_default() {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The value of `--color` in raw arguments (`--color WHEN` or
/// `--color=WHEN`, the last one wins), before clap has parsed them; `None`
/// when absent or not a known value (clap then reports it).
pub fn color_flag(args: &[OsString]) -> Option<ColorWhen> {
    use clap::ValueEnum;
    let mut found = None;
    let mut it = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
    while let Some(arg) = it.next() {
        if arg == "--" {
            break;
        }
        let value = match arg.strip_prefix("--color") {
            Some("") => it.next(),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(v) = value.and_then(|v| ColorWhen::from_str(v, false).ok()) {
            found = Some(v);
        }
    }
    found
}

/// Gives SIGPIPE back its default action (end the process quietly), which
/// the Rust runtime ignores; writes to a closed pipe would otherwise fail
/// and `print!` would panic.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned;
    // setting a signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The paths and the root of the one project `paths` name (the current
/// directory when none); `doing` says what the command does with it, for
/// the error when they name another number of projects.
pub fn one_project(paths: &[PathBuf], doing: &str) -> Result<(Vec<PathBuf>, PathBuf), Status> {
    let mut groups = project_groups(paths)?;
    let count = groups.len();
    let (Some(group), 1) = (groups.pop(), count) else {
        eprintln!("error: {doing} one project, but these paths hold {count}");
        return Err(Status::Failure);
    };
    let root = run::project_root(&group);
    Ok((group, root))
}

/// Groups `paths` (the current directory when none) into projects; what
/// cannot be read is reported when the project is loaded.
pub fn project_groups(paths: &[PathBuf]) -> Result<Vec<Vec<PathBuf>>, Status> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    Ok(nudge_project::Scan::unlimited().projects(&paths))
}

/// Loads, checks and lowers one project, reporting problems on stderr.
/// Warnings are shown but do not stop it; errors do (`Problems`).
pub fn compile(group: &[PathBuf]) -> Result<nudge_compiler::bytecode::Bundle, Status> {
    compile_project(group).map(|(_, bundle)| bundle)
}

/// Compiles a project without printing: the bundle, or what is wrong as
/// plain text (for a reload's answer).
pub fn compile_to_text(group: &[PathBuf]) -> Result<nudge_compiler::bytecode::Bundle, String> {
    let project = nudge_compiler::Project::load(group).map_err(|e| e.render(false))?;
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
    let project = nudge_compiler::Project::load(group).map_err(load_failed)?;
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

/// Makes every file and folder this process creates from now on private to
/// its user (files 0600, folders 0700), whatever the umask: the store, the
/// outbox, the trace and the dead letters hold customers' emails and
/// phone numbers. A state folder made earlier is made private too.
pub(crate) fn private_files(state: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // SAFETY: umask only swaps the process's file-mode mask; it cannot
        // fail and touches no memory.
        unsafe {
            libc::umask(0o077);
        }
        if state.is_dir() {
            let _ = std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700));
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// Sets `key` of a JSON object (a value of another kind is left as it is):
/// indexing a `Value` panics on an array or a scalar.
pub(crate) fn put(object: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(fields) = object.as_object_mut() {
        fields.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn color_flag_is_read_in_both_spellings_and_the_last_wins() {
        assert_eq!(color_flag(&args(&["nudge", "check"])), None);
        assert_eq!(
            color_flag(&args(&["nudge", "--color", "never", "check"])),
            Some(ColorWhen::Never)
        );
        assert_eq!(
            color_flag(&args(&["nudge", "check", "--color=always"])),
            Some(ColorWhen::Always)
        );
        assert_eq!(
            color_flag(&args(&["nudge", "--color=never", "--color", "auto"])),
            Some(ColorWhen::Auto)
        );
        // After `--` it is a path, not the flag.
        assert_eq!(
            color_flag(&args(&["nudge", "check", "--", "--color=never"])),
            None
        );
        assert_eq!(color_flag(&args(&["nudge", "--color", "pink"])), None);
    }
}
