//! The Nudge standard library: standard events, profile traits and types as
//! `.flow` source, plus the one table of builtin functions that the type
//! checker reads and the runtime executes.

mod builtins;

pub use builtins::{BUILTINS, Builtin, builtin};

/// One `.flow` file of the standard library.
#[derive(Clone, Copy, Debug)]
pub struct StdlibFile {
    /// The file name shown in diagnostics, such as `events.flow`.
    pub name: &'static str,
    /// The file's source text.
    pub source: &'static str,
}

/// Every standard library file; all are in scope in every project.
pub const FILES: &[StdlibFile] = &[];
