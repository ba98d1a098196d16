//! Semantic analysis of Nudge projects: loading the files, resolving names,
//! checking types, validating flows, messages and tests, and the domain lints.
//!
//! [`check`] returns an [`Analysis`]: the diagnostics plus the side tables
//! (symbols, resolved names, the type of every expression) that the language
//! server and the lowering to bytecode read.

mod analysis;
pub mod builtins;
mod check;
mod project;
mod suggest;
pub mod types;

pub use analysis::{Analysis, Symbol, SymbolId, SymbolKind};
pub use check::{check, check_with_builtins};
pub use project::{LoadError, LoadErrorReason, Project};
pub use suggest::did_you_mean;
