//! Semantic analysis of Nudge projects: loading the files, resolving names,
//! checking types, validating flows, messages and tests, and the domain lints.
//!
//! [`check`] returns an [`Analysis`]: the diagnostics, the tables the
//! language server reads (symbols, resolved names, the type of every
//! expression) and, for a project without errors, the typed IR
//! ([`tir::Program`]). [`lower()`] turns that typed IR into a bytecode bundle.

mod analysis;
pub mod builtins;
mod check;
mod clock;
pub mod lower;
mod project;
mod suggest;
pub mod tir;
pub mod types;

pub use analysis::{Analysis, Symbol, SymbolId, SymbolKind};
pub use check::{check, check_reusing, check_with_builtins};
pub use project::{LoadError, LoadErrorReason, Project};
pub use suggest::did_you_mean;

pub use lower::{
    LowerError, TestCondition, TestConditions, lower, lower_program, lower_test_conditions,
};
/// The bytecode crate, so users of the compiler name one dependency.
pub use nudge_bytecode as bytecode;
