//! The short format: one `path:line:col: severity[code]: title` line per
//! diagnostic, drawn by codespan-reporting.

use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel};
use codespan_reporting::files::{Error as FilesError, Files};
use codespan_reporting::term::{self, Config, DisplayStyle};

use super::{clamp_span, file};
use crate::{Diagnostic, FileId, Severity, SourceMap};

/// Renders one line per diagnostic, in the style compilers use for editors
/// and `grep`: `path:line:col: error[E0202]: title`. Columns count characters.
pub fn short(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    let files = CsFiles(sources);
    let config = Config {
        display_style: DisplayStyle::Short,
        ..Config::default()
    };
    let mut out = String::new();
    for diag in diags {
        let severity = match diag.severity {
            Severity::Error => codespan_reporting::diagnostic::Severity::Error,
            Severity::Warning => codespan_reporting::diagnostic::Severity::Warning,
            Severity::Note => codespan_reporting::diagnostic::Severity::Note,
        };
        let mut cs = CsDiagnostic::new(severity)
            .with_code(diag.code.id)
            .with_message(&diag.title);
        if let Some(f) = file(sources, diag.primary.file) {
            let range = clamp_span(&f.text, diag.primary.span).range();
            cs = cs.with_label(CsLabel::primary(diag.primary.file, range));
        }
        match term::emit_into_string(&config, &files, &cs) {
            Ok(line) => out.push_str(&line),
            // The files are checked above, so this is unreachable in
            // practice; the line is still printed, without a location.
            Err(_) => out.push_str(&format!(
                "{}[{}]: {}\n",
                diag.severity.as_str(),
                diag.code.id,
                diag.title
            )),
        }
    }
    out
}

/// The source map seen through codespan-reporting's file database trait.
struct CsFiles<'a>(&'a SourceMap);

impl<'a> Files<'a> for CsFiles<'a> {
    type FileId = FileId;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        file(self.0, id)
            .map(|f| f.path.as_str())
            .ok_or(FilesError::FileMissing)
    }

    fn source(&'a self, id: FileId) -> Result<&'a str, FilesError> {
        file(self.0, id)
            .map(|f| f.text.as_str())
            .ok_or(FilesError::FileMissing)
    }

    fn line_index(&'a self, id: FileId, byte_index: usize) -> Result<usize, FilesError> {
        let f = file(self.0, id).ok_or(FilesError::FileMissing)?;
        Ok(f.line_index(byte_index.min(f.text.len()) as u32))
    }

    fn line_range(&'a self, id: FileId, line_index: usize) -> Result<Range<usize>, FilesError> {
        let f = file(self.0, id).ok_or(FilesError::FileMissing)?;
        if line_index >= f.line_count() {
            return Err(FilesError::LineTooLarge {
                given: line_index,
                max: f.line_count() - 1,
            });
        }
        let start = f.line_start(line_index) as usize;
        let end = f.line_start(line_index + 1) as usize;
        Ok(start..end)
    }
}
