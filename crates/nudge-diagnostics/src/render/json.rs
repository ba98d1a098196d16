//! The JSON format: every field of every diagnostic, with byte spans and
//! one-based line and character columns, for scripts and tools. The shape
//! is documented in `docs/diagnostics.md` and versioned by [`JSON_VERSION`].

use serde::Serialize;

use super::{Resolved, resolve};
use crate::{Diagnostic, LineCol, Severity, SourceMap, Span};

/// The version of the JSON document's shape. It grows when a field is
/// removed or changes meaning; added fields keep it.
pub const JSON_VERSION: u32 = 1;

/// Renders the diagnostics of every project given (a source map and its
/// diagnostics) as one pretty-printed JSON document with a trailing
/// newline: `{"version": 1, "diagnostics": [...]}`.
pub fn json(projects: &[(&SourceMap, &[Diagnostic])]) -> String {
    let document = Document {
        version: JSON_VERSION,
        diagnostics: projects
            .iter()
            .flat_map(|(sources, diags)| diags.iter().map(|d| Entry::new(sources, d)))
            .collect(),
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// The whole output.
#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    diagnostics: Vec<Entry<'a>>,
}

/// One diagnostic as it appears in the JSON output.
#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    name: &'static str,
    severity: Severity,
    title: &'a str,
    file: String,
    span: Span,
    start: LineCol,
    end: LineCol,
    primary_label: Option<&'a str>,
    labels: Vec<LabelEntry<'a>>,
    help: Option<&'a str>,
    fix: Option<FixEntry<'a>>,
}

#[derive(Serialize)]
struct LabelEntry<'a> {
    file: String,
    span: Span,
    start: LineCol,
    end: LineCol,
    message: &'a str,
}

#[derive(Serialize)]
struct FixEntry<'a> {
    message: &'a str,
    edits: Vec<EditEntry<'a>>,
}

#[derive(Serialize)]
struct EditEntry<'a> {
    file: String,
    span: Span,
    replacement: &'a str,
}

impl<'a> Entry<'a> {
    fn new(sources: &SourceMap, d: &'a Diagnostic) -> Self {
        let Resolved {
            path,
            span,
            start,
            end,
        } = resolve(sources, d.primary);
        Entry {
            code: d.code.id,
            name: d.code.name,
            severity: d.severity,
            title: &d.title,
            file: path,
            span,
            start,
            end,
            primary_label: d.primary_label.as_deref(),
            labels: d
                .labels
                .iter()
                .map(|l| {
                    let r = resolve(sources, l.at);
                    LabelEntry {
                        file: r.path,
                        span: r.span,
                        start: r.start,
                        end: r.end,
                        message: &l.message,
                    }
                })
                .collect(),
            help: d.help.as_deref(),
            fix: d.fix.as_ref().map(|f| FixEntry {
                message: &f.message,
                edits: f
                    .edits
                    .iter()
                    .map(|e| {
                        let r = resolve(sources, e.at);
                        EditEntry {
                            file: r.path,
                            span: r.span,
                            replacement: &e.replacement,
                        }
                    })
                    .collect(),
            }),
        }
    }
}
