//! What one answer may cost: a long line converts right, and a file full
//! of errors publishes a bounded number of diagnostics. That the
//! conversion is linear in the line's length is measured by the
//! `long_line` benchmark (docs/benchmarks.md), not timed here.

mod common;

use nudge_lsp::semantic;
use nudge_lsp::server::{MAX_DIAGNOSTICS, capped_diagnostics, encode_tokens};

#[test]
fn a_file_with_hundreds_of_errors_publishes_a_bounded_list_and_a_summary() {
    let text: String = (0..600)
        .map(|i| format!("let c{i} = missing{i}\n"))
        .collect();
    let snap = common::snapshot(&[("a.flow", &text)]);
    let file = common::file(&snap, "a.flow");
    let path = common::path("a.flow");
    let all = snap.diagnostics_by_path().remove(&path).unwrap();
    assert!(all.len() >= 600, "{}", all.len());
    let published = capped_diagnostics(&snap, snap.lines(file), all.clone());
    assert_eq!(published.len(), MAX_DIAGNOSTICS + 1);
    let summary = published.last().unwrap();
    assert!(
        summary
            .message
            .starts_with(&format!("{} more problems", all.len() - MAX_DIAGNOSTICS)),
        "{}",
        summary.message
    );
    // Errors come before warnings when some are left out.
    assert!(
        published[..MAX_DIAGNOSTICS]
            .iter()
            .all(|d| d.severity == Some(lsp_types::DiagnosticSeverity::ERROR))
    );
}

#[test]
fn a_long_line_is_converted_with_the_right_columns() {
    // One 300 KB line: a list of a known constant and 25,000 unknown names.
    let names: Vec<String> = (0..25_000).map(|i| format!("a, x{i}")).collect();
    let text = format!("let a = 1\nlet all = [{}]\n", names.join(", "));
    let snap = common::snapshot(&[("a.flow", &text)]);
    let file = common::file(&snap, "a.flow");
    let all = snap
        .diagnostics_by_path()
        .remove(&common::path("a.flow"))
        .unwrap();
    let tokens = semantic::semantic_tokens(&snap, file);
    let published = capped_diagnostics(&snap, snap.lines(file), all);
    let encoded = encode_tokens(snap.lines(file), &tokens);
    assert!(encoded.len() > 25_000);
    assert_eq!(published.len(), MAX_DIAGNOSTICS + 1);
    // The last token's column is its offset in the line: the line is ASCII.
    let last = tokens.last().unwrap();
    let on_last_line = encoded.iter().rposition(|t| t.delta_line > 0).unwrap();
    let col: u32 = encoded[on_last_line..].iter().map(|t| t.delta_start).sum();
    assert_eq!(
        col as usize,
        last.span.start as usize - text.find("let all").unwrap()
    );
}

#[test]
fn cancelled_work_stops_before_it_starts_and_keeps_the_first_reason() {
    use nudge_lsp::cancel::{Cancel, Stop};
    let text: String = (0..2000).map(|i| format!("let c{i} = {i}\n")).collect();
    let snap = common::snapshot(&[("a.flow", &text)]);
    let file = common::file(&snap, "a.flow");
    let cancel = Cancel::new();
    assert_eq!(
        semantic::semantic_tokens_until(&snap, file, &cancel).map(|t| t.len()),
        Ok(semantic::semantic_tokens(&snap, file).len())
    );
    cancel.stop(Stop::Cancelled);
    cancel.stop(Stop::Modified);
    assert_eq!(cancel.stopped(), Some(Stop::Cancelled));
    assert_eq!(
        semantic::semantic_tokens_until(&snap, file, &cancel),
        Err(Stop::Cancelled)
    );
    let clone = Cancel::new();
    clone.clone().stop(Stop::Modified);
    assert_eq!(clone.check(), Err(Stop::Modified));
    assert_eq!(Stop::Cancelled.code(), -32800);
    assert_eq!(Stop::Modified.code(), -32801);
}
