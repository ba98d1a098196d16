//! Code actions (the fixes that diagnostics carry) and formatting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nudge_diagnostics::{Diagnostic, FileId, Span};

use crate::world::Snapshot;

/// A quick fix: what it does, the diagnostic it fixes, and its edits by file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QuickFix {
    /// The title shown ("replace with `order_completed`").
    pub title: String,
    /// The diagnostic it repairs.
    #[serde(skip)]
    pub diagnostic: Diagnostic,
    /// Edits by file: byte span and replacement.
    pub edits: BTreeMap<PathBuf, Vec<(Span, String)>>,
    /// Whether it is the obvious choice (a single did-you-mean).
    pub preferred: bool,
}

/// The fixes of the diagnostics in a file whose span touches `range`.
pub fn quick_fixes(snap: &Snapshot, file: FileId, range: Span) -> Vec<QuickFix> {
    let mut out = Vec::new();
    for d in &snap.analysis.diagnostics {
        if d.primary.file != file {
            continue;
        }
        let s = d.primary.span;
        if s.end < range.start || s.start > range.end {
            continue;
        }
        let Some(fix) = &d.fix else { continue };
        let mut edits: BTreeMap<PathBuf, Vec<(Span, String)>> = BTreeMap::new();
        for e in &fix.edits {
            if let Some(p) = snap.path(e.at.file) {
                edits
                    .entry(p.to_path_buf())
                    .or_default()
                    .push((e.at.span, e.replacement.clone()));
            }
        }
        out.push(QuickFix {
            title: fix.message.clone(),
            diagnostic: d.clone(),
            edits,
            preferred: true,
        });
    }
    out
}

/// The whole file in the canonical layout (as `nudge fmt` writes it), or
/// `None` when it is already formatted or does not parse.
pub fn format(text: &str) -> Option<String> {
    match nudge_fmt::format_source(FileId(0), text) {
        Ok(out) if out != text => Some(out),
        _ => None,
    }
}

/// Every fix of a file's diagnostics at once, for the "fix all" source
/// action: how many fixes were taken and their edits by file. A fix whose
/// edits overlap those of a fix already taken is left for a second run.
pub fn fix_all(snap: &Snapshot, file: FileId) -> (usize, BTreeMap<PathBuf, Vec<(Span, String)>>) {
    let text_len = snap.text(file).len();
    let mut taken: BTreeMap<PathBuf, Vec<(Span, String)>> = BTreeMap::new();
    let mut count = 0;
    for fix in quick_fixes(snap, file, Span::new(0, text_len)) {
        let overlaps = fix.edits.iter().any(|(path, edits)| {
            taken.get(path).is_some_and(|done| {
                edits.iter().any(|(s, _)| {
                    done.iter()
                        .any(|(d, _)| (s.start < d.end && d.start < s.end) || s.start == d.start)
                })
            })
        });
        if overlaps {
            continue;
        }
        for (path, edits) in fix.edits {
            taken.entry(path).or_default().extend(edits);
        }
        count += 1;
    }
    for edits in taken.values_mut() {
        edits.sort_by_key(|(s, _)| (s.start, s.end));
    }
    (count, taken)
}
