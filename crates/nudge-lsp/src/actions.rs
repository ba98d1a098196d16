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

/// The edits that format the lines of `range`: the whole file is formatted
/// (so the result is exactly what `nudge fmt` writes there), the old and
/// new text are compared line by line, and the changed runs of lines that
/// touch the range are returned, each as a byte span of the old text and
/// its replacement. Empty when the file does not parse or nothing changes
/// there.
pub fn format_range(text: &str, range: Span) -> Vec<(Span, String)> {
    let Some(formatted) = format(text) else {
        return Vec::new();
    };
    let old: Vec<&str> = text.split_inclusive('\n').collect();
    let new: Vec<&str> = formatted.split_inclusive('\n').collect();
    // Byte offset where each old line starts, plus the end.
    let mut starts = Vec::with_capacity(old.len() + 1);
    let mut at = 0usize;
    for l in &old {
        starts.push(at);
        at += l.len();
    }
    starts.push(at);
    let (first, last) = (range.start as usize, range.end as usize);
    line_hunks(&old, &new)
        .into_iter()
        .filter(|h| {
            let (a, b) = (starts[h.old.start], starts[h.old.end]);
            // A deletion or change touches the range when their bytes
            // overlap; an insertion when it sits inside the range.
            if h.old.is_empty() {
                first <= a && a <= last
            } else {
                a <= last && first < b.max(a + 1)
            }
        })
        .map(|h| {
            let span = Span::new(starts[h.old.start], starts[h.old.end]);
            (span, new[h.new].concat())
        })
        .collect()
}

/// A run of old lines replaced by a run of new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hunk {
    old: std::ops::Range<usize>,
    new: std::ops::Range<usize>,
}

/// Above this many cells, the middle of two texts is replaced as one hunk
/// instead of being compared line by line.
const MAX_DIFF_CELLS: usize = 4_000_000;

/// The runs of lines that differ between `old` and `new`, in order: the
/// common start and end are skipped, and the rest is compared by longest
/// common subsequence.
fn line_hunks(old: &[&str], new: &[&str]) -> Vec<Hunk> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (o, n) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    if o.is_empty() && n.is_empty() {
        return Vec::new();
    }
    if o.len().saturating_mul(n.len()) > MAX_DIFF_CELLS || o.is_empty() || n.is_empty() {
        return vec![Hunk {
            old: prefix..prefix + o.len(),
            new: prefix..prefix + n.len(),
        }];
    }
    // lcs[i][j]: the longest common subsequence of o[i..] and n[j..].
    let w = n.len() + 1;
    let mut lcs = vec![0u32; (o.len() + 1) * w];
    for i in (0..o.len()).rev() {
        for j in (0..n.len()).rev() {
            lcs[i * w + j] = if o[i] == n[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut hunks = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut open: Option<(usize, usize)> = None;
    while i < o.len() || j < n.len() {
        if i < o.len() && j < n.len() && o[i] == n[j] {
            if let Some((a, b)) = open.take() {
                hunks.push(Hunk {
                    old: prefix + a..prefix + i,
                    new: prefix + b..prefix + j,
                });
            }
            i += 1;
            j += 1;
            continue;
        }
        open.get_or_insert((i, j));
        if j < n.len() && (i == o.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            j += 1;
        } else {
            i += 1;
        }
    }
    if let Some((a, b)) = open {
        hunks.push(Hunk {
            old: prefix + a..prefix + o.len(),
            new: prefix + b..prefix + n.len(),
        });
    }
    hunks
}
