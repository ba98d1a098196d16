//! Renderers that turn diagnostics into text for people, terminals, editors
//! and code-scanning services.
//!
//! Every renderer is a pure function of the source map and the diagnostics,
//! so the same input always gives the same output. Spans that do not fit
//! their file (past the end, inside a multi-byte character, or naming a file
//! the map does not hold) are clamped rather than trusted, so a faulty
//! diagnostic still renders instead of panicking.

mod human;
mod json;
mod sarif;
mod short;

pub use human::human;
pub use json::{JSON_VERSION, json};
pub use sarif::{FINGERPRINT_KEY, SRCROOT, SarifOptions, sarif};
pub use short::short;

use crate::{Diagnostic, FileId, FileSpan, LineCol, Severity, SourceFile, SourceMap, Span};

/// Summarises diagnostics by severity, such as `2 errors, 1 warning`; `None`
/// when there are none.
pub fn summary_line(diags: &[Diagnostic]) -> Option<String> {
    let count = |severity| diags.iter().filter(|d| d.severity == severity).count();
    let parts: Vec<String> = [
        (count(Severity::Error), "error"),
        (count(Severity::Warning), "warning"),
        (count(Severity::Note), "note"),
    ]
    .into_iter()
    .filter(|&(n, _)| n > 0)
    .map(|(n, word)| format!("{n} {word}{}", if n == 1 { "" } else { "s" }))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The file with this id, or `None` when the map does not hold it.
fn file(sources: &SourceMap, id: FileId) -> Option<&SourceFile> {
    ((id.0 as usize) < sources.len()).then(|| sources.get(id))
}

/// A span resolved against its file: everything the renderers print about a
/// location.
#[derive(Clone, Debug)]
struct Resolved {
    /// The file's display path.
    path: String,
    /// The span, clamped to the text and to character boundaries.
    span: Span,
    /// Where the span starts.
    start: LineCol,
    /// Where the span ends (the position just after its last character).
    end: LineCol,
}

/// Resolves a file span; a file missing from the map gets a placeholder
/// path and position 1:1 so that output stays well-formed.
fn resolve(sources: &SourceMap, at: FileSpan) -> Resolved {
    match file(sources, at.file) {
        Some(f) => {
            let span = clamp_span(&f.text, at.span);
            Resolved {
                path: f.path.clone(),
                span,
                start: f.line_col(span.start),
                end: f.line_col(span.end),
            }
        }
        None => {
            let origin = LineCol { line: 1, col: 1 };
            Resolved {
                path: format!("<unknown file {}>", at.file.0),
                span: Span {
                    start: at.span.start,
                    end: at.span.end.max(at.span.start),
                },
                start: origin,
                end: origin,
            }
        }
    }
}

/// Fits a span inside `text`: ordered, no longer than the text, and with both
/// ends on character boundaries (the start moves back, the end forward).
fn clamp_span(text: &str, span: Span) -> Span {
    let len = text.len();
    let mut start = (span.start as usize).min(len);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    // An empty (or reversed) span stays an insertion point rather than
    // growing into the character it falls inside.
    if span.end <= span.start {
        return Span::new(start, start);
    }
    let mut end = (span.end as usize).clamp(start, len);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    Span::new(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{E0202, W0005};

    fn diag(code: crate::Code) -> Diagnostic {
        Diagnostic::new(code, FileSpan::new(FileId(0), Span::new(0, 1)), "x")
    }

    #[test]
    fn summary_counts_each_severity_with_plurals() {
        assert_eq!(summary_line(&[]), None);
        assert_eq!(summary_line(&[diag(E0202)]).as_deref(), Some("1 error"));
        let mut note = diag(W0005);
        note.severity = Severity::Note;
        let all = [diag(E0202), diag(E0202), diag(W0005), note];
        assert_eq!(
            summary_line(&all).as_deref(),
            Some("2 errors, 1 warning, 1 note")
        );
        assert_eq!(
            summary_line(&[diag(W0005), diag(W0005)]).as_deref(),
            Some("2 warnings")
        );
    }

    #[test]
    fn clamp_span_keeps_spans_inside_text_and_on_boundaries() {
        let text = "aé b";
        // 'é' occupies bytes 1..3.
        assert_eq!(clamp_span(text, Span::new(2, 2)), Span::new(1, 1));
        assert_eq!(clamp_span(text, Span::new(1, 2)), Span::new(1, 3));
        assert_eq!(clamp_span(text, Span::new(9, 20)), Span::new(5, 5));
        assert_eq!(clamp_span(text, Span { start: 4, end: 0 }), Span::new(4, 4));
    }

    #[test]
    fn unknown_file_resolves_to_a_placeholder() {
        let map = SourceMap::new();
        let r = resolve(&map, FileSpan::new(FileId(3), Span::new(5, 9)));
        assert_eq!(r.path, "<unknown file 3>");
        assert_eq!(r.start, LineCol { line: 1, col: 1 });
    }
}
