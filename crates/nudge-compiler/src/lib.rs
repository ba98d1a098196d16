//! Semantic analysis of Nudge projects: loading the files, resolving names,
//! checking types, validating flows, messages and tests, and the domain lints.
//!
//! [`check`] returns an [`Analysis`]: the diagnostics plus the side tables
//! (symbols, resolved names, the type of every expression) that the language
//! server and the lowering to bytecode read. [`lower()`] turns a checked
//! project into a bytecode bundle.

mod analysis;
pub mod builtins;
mod check;
pub mod lower;
mod project;
mod suggest;
pub mod types;

pub use analysis::{Analysis, Symbol, SymbolId, SymbolKind};
pub use check::{check, check_with_builtins};
pub use project::{LoadError, LoadErrorReason, Project};
pub use suggest::did_you_mean;

pub use lower::{LowerError, TestCondition, TestConditions, lower, lower_test_conditions};
/// The bytecode crate, so users of the compiler name one dependency.
pub use nudge_bytecode as bytecode;
