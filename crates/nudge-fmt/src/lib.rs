//! The canonical formatter of `.flow` files, behind `nudge fmt`.
//!
//! A file is formatted only when it parses without errors; otherwise the
//! parser's error diagnostics are returned and nothing is rewritten.
//!
//! # Canonical layout
//!
//! - Indentation is 2 spaces; `{` stays on the line that opens the block and
//!   `}` gets a line of its own (`} else {` joins the next branch).
//! - One item, clause, step, field, content line, policy rule or test
//!   statement per line. Expressions are never broken across lines.
//! - Top-level items are separated by one blank line, except that a run of
//!   single-line items of the same kind (`let`, `segment`, enum `type`) stays
//!   together unless the source had a blank line between two of them.
//! - Inside blocks, one or more blank lines between two statements in the
//!   source become exactly one; a block never starts or ends with a blank
//!   line. An empty block is written `{}`.
//! - Single spaces around binary operators and `=>`, after commas, and after
//!   `:` in fields, parameters, props, labels and named arguments; no space
//!   inside parentheses or brackets. Type arguments are written `list<T>`.
//! - Field declarations are one per line without commas.
//! - Test props blocks are written `{ a: 1, b: 2 }` when the whole line fits
//!   in 100 columns including indentation, and otherwise one `key: value`
//!   per line without commas.
//! - Literals (numbers, money, percentages, dates, times, instants, strings,
//!   customer ids) are copied from the source text, so `12.50` stays `12.50`
//!   and escapes stay as written. Durations keep their parts as written,
//!   separated by single spaces (`1h 30m`).
//! - Expressions are printed from the syntax tree with the fewest parentheses
//!   that make them parse back to the same tree, following the precedence
//!   table of `docs/grammar.md`.
//!
//! # Comments
//!
//! No comment is ever dropped, and comments keep their order. A comment on a
//! line of its own is attached to the next item, clause, step, split arm,
//! field, content line, policy rule or test statement and printed on its own
//! line before it at its indentation; a comment before a closing `}` is
//! printed at the indentation of the block's contents. A comment after code
//! on the same line stays at the end of that node's line, two spaces after
//! it; one right after a block's `{` stays on the `{` line. A comment inside
//! a statement (for instance within a multi-line expression, a parameter
//! list or a props block) is moved before the statement; one between a `}`
//! and the `else` that follows it moves to the start of the `else` block.
//! Blank lines around comments follow the source, like those between
//! statements. Comments after the last item end the file.

mod expr;
mod printer;
mod source;

use nudge_diagnostics::{Diagnostic, FileId};

/// Parses `src` and returns its canonical text, or the parse errors when the file does not parse.
pub fn format_source(file: FileId, src: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = nudge_syntax::parse(file, src);
    let errors: Vec<Diagnostic> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(printer::format_parsed(file, src, &parsed))
}

/// Whether `src` is already in canonical form (parse errors are returned as for [`format_source`]).
pub fn is_formatted(file: FileId, src: &str) -> Result<bool, Vec<Diagnostic>> {
    format_source(file, src).map(|out| out == src)
}
