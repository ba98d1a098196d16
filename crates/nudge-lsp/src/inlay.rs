//! Inlay hints: after each `wait` of a flow, the time since the trigger,
//! counting fixed waits (`+1d 1h`). A `wait until` or `wait for` before it
//! has no fixed length, so the hint then says "at least" (`≥ +1d`).

use nudge_diagnostics::{FileId, FileSpan, Span};
use nudge_syntax::ast::{DurationArg, Item, Step, StepKind};

use crate::world::Snapshot;

/// A hint shown at the end of a step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InlayHint {
    /// Where it is shown (a byte offset).
    pub offset: u32,
    /// What it says.
    pub label: String,
}

/// Time since the trigger along one path through a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Elapsed {
    seconds: i64,
    /// A step of unknown length came before.
    at_least: bool,
}

/// The hints of a file inside `range`.
pub fn inlay_hints(snap: &Snapshot, file: FileId, range: Span) -> Vec<InlayHint> {
    let parsed = snap.parse(file);
    let mut out = Vec::new();
    for item in &parsed.file.items {
        let Item::Flow(flow) = item else { continue };
        if flow.span.end < range.start || flow.span.start > range.end {
            continue;
        }
        let steps: Vec<&Step> = flow.steps().collect();
        let start = Elapsed {
            seconds: 0,
            at_least: false,
        };
        // `on exit` runs whenever the instance ends, so it gets no hints.
        let length = |d: &DurationArg| match d {
            DurationArg::Lit(l) => Some(l.seconds),
            DurationArg::Name(n) => snap.analysis.constant_duration(FileSpan::new(file, n.span)),
        };
        walk(steps.into_iter(), start, &length, &mut out);
    }
    out.retain(|h| range.start <= h.offset && h.offset <= range.end);
    out
}

fn walk<'a>(
    steps: impl Iterator<Item = &'a Step>,
    mut now: Elapsed,
    length: &dyn Fn(&DurationArg) -> Option<i64>,
    out: &mut Vec<InlayHint>,
) -> Elapsed {
    for s in steps {
        match &s.kind {
            StepKind::Wait(d) => {
                match length(d) {
                    Some(seconds) => now.seconds += seconds,
                    None => now.at_least = true,
                }
                out.push(InlayHint {
                    offset: s.span.end,
                    label: label(now),
                });
            }
            StepKind::WaitUntil(_) | StepKind::WaitFor(_) => now.at_least = true,
            StepKind::If(i) => {
                let mut ends: Vec<Elapsed> = i
                    .branches
                    .iter()
                    .map(|(_, b)| walk(b.steps.iter(), now, length, out))
                    .collect();
                ends.push(match &i.otherwise {
                    Some(b) => walk(b.steps.iter(), now, length, out),
                    None => now,
                });
                now = join(&ends);
            }
            StepKind::Split(split) => {
                let ends: Vec<Elapsed> = split
                    .arms
                    .iter()
                    .map(|a| walk(a.body.steps.iter(), now, length, out))
                    .collect();
                if !ends.is_empty() {
                    now = join(&ends);
                }
            }
            _ => {}
        }
    }
    now
}

/// After branches: the shortest path, "at least" when the branches differ.
fn join(ends: &[Elapsed]) -> Elapsed {
    let min = ends.iter().map(|e| e.seconds).min().unwrap_or(0);
    Elapsed {
        seconds: min,
        at_least: ends.iter().any(|e| e.at_least || e.seconds != min),
    }
}

fn label(e: Elapsed) -> String {
    let prefix = if e.at_least { "≥ +" } else { "+" };
    format!("{prefix}{}", duration(e.seconds))
}

/// A duration in the language's units, largest first (`1d 1h`).
pub fn duration(mut seconds: i64) -> String {
    if seconds <= 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if seconds >= size {
            parts.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    parts.join(" ")
}
