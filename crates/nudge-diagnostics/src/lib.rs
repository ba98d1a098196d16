//! Source positions and diagnostics shared by every stage of the Nudge compiler.
//!
//! Spans are byte offsets into one file's text. Conversion to lines and
//! columns (and to UTF-16 for editors) happens only where a diagnostic is shown.

pub mod codes;
mod diagnostic;
pub mod render;
mod source;

pub use codes::{CODES, Code, lookup};
pub use diagnostic::{Diagnostic, Edit, Fix, Label, Severity};
pub use source::{FileId, FileSpan, LineCol, SourceFile, SourceMap, Span};
