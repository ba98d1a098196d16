//! Nudge projects on disk: finding them ([`Scan`]), reading their
//! `nudge.toml` ([`manifest`]) and their `.flow` and template files
//! ([`read_sources`], [`template_path`]). The command line, the language
//! server and the test runner all find and read projects here, and every
//! problem is a [`Diagnostic`](nudge_diagnostics::Diagnostic) with a code.

mod discover;
mod load;
pub mod manifest;

pub use discover::{MANIFEST, Scan, enclosing_root, manifest_root, project_root};
pub use load::{
    LoadError, LoadErrorReason, TemplateError, read_sources, read_template, template_path,
};
