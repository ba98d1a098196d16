//! No feature panics, wherever the cursor is and however broken the file.

mod common;

use std::path::Path;

use nudge_diagnostics::Span;
use nudge_lsp::{Snapshot, actions, completion, hover, inlay, navigate, outline, semantic};

fn exercise(snap: &Snapshot, file: nudge_diagnostics::FileId, step: usize) {
    let len = snap.text(file).len();
    for offset in (0..=len + 3).step_by(step) {
        let off = offset as u32;
        completion::complete(snap, file, off);
        hover::hover(snap, file, off);
        navigate::definition(snap, file, off);
        navigate::references(snap, file, off, true);
        let _ = navigate::rename(snap, file, off, "renamed");
        actions::quick_fixes(snap, file, Span::new(offset, offset + 1));
    }
    semantic::semantic_tokens(snap, file);
    outline::document_symbols(snap, file);
    inlay::inlay_hints(snap, file, Span::new(0, len));
}

#[test]
fn every_example_at_many_offsets() {
    for dir in nudge_test_support::example_dirs() {
        let mut files = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "flow") {
                files.push((f.path(), std::fs::read_to_string(f.path()).unwrap()));
            }
        }
        let snap = Snapshot::analyse(files.clone(), Path::new(common::STDLIB));
        for (path, _) in &files {
            exercise(&snap, snap.file_id(path).unwrap(), 11);
        }
    }
}

#[test]
fn truncated_and_garbled_files() {
    let text = format!("{}\n{}", common::CART, common::MESSAGES);
    let cuts: Vec<usize> = (0..text.len())
        .step_by(37)
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    for cut in cuts {
        let broken = format!("{}{}", &text[..cut], "é😀 ?. \"{ trigger.");
        let snap = common::snapshot(&[("a.flow", &broken)]);
        exercise(&snap, common::file(&snap, "a.flow"), 5);
    }
}
