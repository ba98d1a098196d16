//! One module per subcommand.

pub mod check;
pub mod fmt;

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

/// The paths to work on: those given, or the current directory.
pub fn paths_or_cwd(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths
    }
}

/// Whether to colour terminal output: only on a terminal, and never with NO_COLOR set.
pub fn use_color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
