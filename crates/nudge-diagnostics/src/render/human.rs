//! The human-readable format: source snippets with underlined spans, drawn
//! by ariadne.

use std::collections::HashMap;
use std::fmt;

use ariadne::{Color, Config, Fmt, IndexType, Label, Report, ReportKind, Source};

use super::{clamp_span, file};
use crate::{Diagnostic, FileId, Severity, SourceMap};

/// Renders diagnostics as annotated source snippets, one report per
/// diagnostic, separated by blank lines. With `color` false the output holds
/// no ANSI escape codes.
pub fn human(sources: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    let mut cache = SourceCache {
        map: sources,
        loaded: HashMap::new(),
    };
    let mut out = String::new();
    for (i, diag) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut cache, diag, color, &mut out);
    }
    out
}

/// The span type handed to ariadne: a file and a byte range in it.
type AriadneSpan = (FileId, std::ops::Range<usize>);

fn render_one(cache: &mut SourceCache<'_>, diag: &Diagnostic, color: bool, out: &mut String) {
    let (word, kind, severity_color) = match diag.severity {
        Severity::Error => ("error", ReportKind::Error, Color::Red),
        Severity::Warning => ("warning", ReportKind::Warning, Color::Yellow),
        Severity::Note => ("note", ReportKind::Advice, Color::Cyan),
    };
    // ariadne prints `[E0202] Error: title`; the compiler's own header reads
    // `error[E0202]: title` in every format, so it is written here and
    // ariadne's header line is dropped below.
    let tag = format!("{word}[{}]", diag.code.id);
    if color {
        out.push_str(&format!("{}: {}\n", tag.fg(severity_color), diag.title));
    } else {
        out.push_str(&format!("{tag}: {}\n", diag.title));
    }

    let mut labels = Vec::new();
    let primary = std::iter::once((diag.primary, diag.primary_label.as_deref(), severity_color));
    let secondary = diag
        .labels
        .iter()
        .map(|l| (l.at, Some(l.message.as_str()), Color::Blue));
    for (at, message, color) in primary.chain(secondary) {
        // ariadne reports unreadable sources on stderr, so labels in files
        // the map does not hold are left out instead.
        if let Some(f) = file(cache.map, at.file) {
            labels.push(Pending {
                file: at.file,
                range: display_range(&f.text, at.span),
                message,
                color,
            });
        }
    }

    if labels.is_empty() {
        // ariadne prints help only beneath a source snippet.
        if let Some(help) = &diag.help {
            for line in help.lines() {
                out.push_str(&format!("  = help: {line}\n"));
            }
        }
        return;
    }

    // ariadne draws a file once only when its labels arrive grouped and in
    // line order, so labels are ordered by file (the primary's first) and
    // then by position.
    let mut file_rank: Vec<FileId> = Vec::new();
    for label in &labels {
        if !file_rank.contains(&label.file) {
            file_rank.push(label.file);
        }
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| {
        let l = &labels[i];
        let rank = file_rank.iter().position(|&f| f == l.file);
        (rank, l.range.start, l.range.end)
    });

    let config = Config::default()
        .with_index_type(IndexType::Byte)
        .with_color(color);
    let anchor = (labels[0].file, labels[0].range.clone());
    let mut builder = Report::<AriadneSpan>::build(kind, anchor).with_config(config);
    for (position, &i) in order.iter().enumerate() {
        let pending = &labels[i];
        let mut label = Label::new((pending.file, pending.range.clone()))
            .with_order(position as i32)
            .with_color(pending.color);
        if let Some(message) = pending.message {
            label = label.with_message(message);
        }
        builder.add_label(label);
    }
    if let Some(help) = &diag.help {
        builder.add_help(help);
    }

    let mut buffer = Vec::new();
    // Writing into a Vec cannot fail, and the cache serves every file used.
    let _ = builder.finish().write(&mut *cache, &mut buffer);
    let text = String::from_utf8_lossy(&buffer);
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    // ariadne pads some lines with spaces; they only add noise to diffs.
    for line in body.lines() {
        out.push_str(line.trim_end_matches(' '));
        out.push('\n');
    }
}

/// The byte range ariadne underlines for a span.
///
/// ariadne draws an empty span at the start of a line at the end of the line
/// before, so an empty span is widened to the character it precedes (a
/// line break shows as a blank cell). At the very end of a file that ends in
/// a newline, that character is the space [`SourceCache`] appends.
fn display_range(text: &str, span: crate::Span) -> std::ops::Range<usize> {
    let range = clamp_span(text, span).range();
    if !range.is_empty() {
        return range;
    }
    let start = range.start;
    match text[start..].chars().next() {
        Some(c) => start..start + c.len_utf8(),
        None if text.ends_with('\n') => start..start + 1,
        None => range,
    }
}

/// A label waiting to be handed to ariadne.
struct Pending<'a> {
    file: FileId,
    range: std::ops::Range<usize>,
    message: Option<&'a str>,
    color: Color,
}

/// Serves the source map's files to ariadne, indexing each file's lines the
/// first time a report needs it.
struct SourceCache<'a> {
    map: &'a SourceMap,
    loaded: HashMap<FileId, Source<String>>,
}

impl ariadne::Cache<FileId> for SourceCache<'_> {
    type Storage = String;

    fn fetch(&mut self, id: &FileId) -> Result<&Source<String>, impl fmt::Debug> {
        let Some(f) = file(self.map, *id) else {
            return Err(format!("no file with id {}", id.0));
        };
        Ok(self.loaded.entry(*id).or_insert_with(|| {
            // ariadne has no line after a final newline, so a position at the
            // very end of such a file would show on the line before, past its
            // end. A trailing space gives that last, empty line a cell to
            // point at; it is invisible in the output.
            let mut text = f.text.clone();
            if text.ends_with('\n') {
                text.push(' ');
            }
            Source::from(text)
        }))
    }

    fn display<'b>(&self, id: &'b FileId) -> Option<impl fmt::Display + 'b> {
        file(self.map, *id).map(|f| f.path.clone())
    }
}
