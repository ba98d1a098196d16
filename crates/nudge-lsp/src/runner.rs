//! The `test` blocks of a file, for the "Run test" code lens, and running
//! one with the runner `nudge test` uses (crate `nudge-testing`), on the
//! analysis the editor already has.

use nudge_diagnostics::{FileId, Span};
use nudge_syntax::ast::Item;

use crate::lines::LineIndex;
use crate::world::Snapshot;

/// The command the code lens runs, with the test's document URI and name.
pub const RUN_TEST: &str = "nudge.runTest";

/// A `test` block of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestBlock {
    /// The test's name.
    pub name: String,
    /// From the `test` keyword to the end of the name, where the lens goes.
    pub header: Span,
}

/// Every `test` block of a file, in source order.
pub fn test_blocks(snap: &Snapshot, file: FileId) -> Vec<TestBlock> {
    if !snap.is_user_file(file) {
        return Vec::new();
    }
    snap.parse(file)
        .file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Test(t) => Some(TestBlock {
                name: t.name.value.clone(),
                header: Span {
                    start: t.span.start,
                    end: t.name.span.end,
                },
            }),
            _ => None,
        })
        .collect()
}

/// What running one test gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every expectation held.
    pub passed: bool,
    /// One line for the editor's message: the name and the result.
    pub summary: String,
    /// The failures as `nudge test` prints them; empty when it passed.
    pub details: String,
    /// The expectations that did not hold, in source order.
    pub failures: Vec<FailedExpectation>,
}

/// One expectation of a test that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedExpectation {
    /// Its line, from 1.
    pub line: usize,
    /// The statement on that line, without the indentation, in the test's file.
    pub span: Span,
    /// What was expected and what happened instead.
    pub message: String,
}

/// A hash of a file's text, to tell whether a test result still belongs to it.
pub fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new` has fixed keys: the same text hashes alike in one process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Runs the test named `name` declared in `file`. `Err` says why it could
/// not run: the project has errors, it cannot be compiled, or there is no
/// such test.
pub fn run_test(snap: &Snapshot, file: FileId, name: &str) -> Result<Outcome, String> {
    let path = snap
        .source(file)
        .map(|s| s.path.clone())
        .ok_or_else(|| "the file is not in the project".to_string())?;
    let errors = snap
        .analysis
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .count();
    if errors > 0 {
        return Err(format!(
            "test \"{name}\" not run: the project has {errors} error{}",
            if errors == 1 { "" } else { "s" }
        ));
    }
    let bundle = nudge_compiler::lower(&snap.project, &snap.analysis).map_err(|e| {
        format!(
            "test \"{name}\" not run: {}",
            e.render(&snap.project.sources)
        )
    })?;
    // The filter is a substring: other tests may run too; only this one counts.
    let result = nudge_testing::run_tests(&snap.project, &snap.analysis, &bundle, Some(name))
        .into_iter()
        .find(|r| r.name == name && r.file == path)
        .ok_or_else(|| format!("there is no test \"{name}\" in {path}"))?;
    let ms = result.duration.as_millis();
    Ok(if result.passed() {
        Outcome {
            passed: true,
            summary: format!("test \"{name}\" passed ({ms} ms)"),
            details: String::new(),
            failures: Vec::new(),
        }
    } else {
        let first = &result.failures[0];
        Outcome {
            passed: false,
            summary: format!(
                // `expected` is the statement, which starts with `expect`.
                "test \"{name}\" failed: line {}: `{}` does not hold{}",
                first.line,
                first.expected,
                first
                    .actual
                    .first()
                    .map(|a| format!(", got {a}"))
                    .unwrap_or_default()
            ),
            details: nudge_testing::report::failure_text(&result),
            failures: result
                .failures
                .iter()
                .map(|f| FailedExpectation {
                    line: f.line,
                    span: line_span(snap.text(file), snap.lines(file), f.line),
                    message: failure_message(name, &f.expected, &f.actual),
                })
                .collect(),
        }
    })
}

/// The text of line `line` (from 1) without its indentation, as a span.
fn line_span(text: &str, lines: &LineIndex, line: usize) -> Span {
    let row = line.saturating_sub(1) as u32;
    let start = lines.offset(row, 0);
    let end = lines.offset(row, u32::MAX);
    let indent = text
        .get(start as usize..end as usize)
        .map_or(0, |l| l.len() - l.trim_start().len()) as u32;
    Span {
        start: start + indent,
        end,
    }
}

/// A failed expectation for the editor: the test, the statement, and what
/// happened instead, a fact per line.
fn failure_message(name: &str, expected: &str, actual: &[String]) -> String {
    let mut out = format!("test \"{name}\" failed: `{expected}` does not hold");
    for fact in actual {
        out.push_str("\ngot: ");
        out.push_str(fact);
    }
    out
}
