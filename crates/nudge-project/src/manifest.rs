//! `nudge.toml`: reading the file into a source map and checking what every
//! tool agrees on (TOML syntax, the set of sections, the toolchain's own
//! `[runtime]` settings), with each problem a diagnostic placed in the file.
//!
//! The host's settings (store, serving, channel plugins, alerts) are typed
//! by the `nudge` binary, which reports their problems through
//! [`toml_error`] and [`invalid_setting`] so that they read the same.

use std::ops::Range;
use std::path::Path;

use nudge_diagnostics::codes::{E0501, E0502, E0503, E0504};
use nudge_diagnostics::{Diagnostic, FileId, FileSpan, SourceMap, Span};
use serde::Deserialize;

use crate::discover::MANIFEST;

/// The top-level sections `nudge.toml` may have; any other is refused.
pub const SECTIONS: &[&str] = &[
    "store",
    "serve",
    "channels",
    "runtime",
    "feedback",
    "preferences",
    "alerts",
    "alerts_webhook",
    "cluster",
    "catalogue",
];

/// `[runtime]`: how the engine treats time and how often it saves its state.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// How late a trigger may arrive and still start an instance, as a
    /// duration (`30m`, `24h`, `2d`).
    pub max_lateness: Option<String>,
    /// How far past the later of the wall clock and the file's latest time
    /// so far a line of `nudge run` may be stamped (`1d`).
    pub max_future: Option<String>,
    /// `nudge serve`'s send circuit breaker: the most sends one call or one
    /// clock step may make before sending pauses.
    pub max_sends_per_step: Option<u64>,
    /// How many lines of an events file `nudge run` holds to put them in
    /// time order; lines out of order by more are applied as late calls.
    pub reorder_window: Option<u64>,
    /// Calls between two looks at what the engine may forget; 0 keeps
    /// every event and send.
    pub forget_every: Option<u32>,
    /// Calls between two checkpoints of the engine's state in the store; 0
    /// writes one only at the end of a run (and when a server stops).
    pub checkpoint_every: Option<u64>,
    /// How many customers the engine keeps in memory; the others are read
    /// from the store when a call or a timer needs them. Unset or 0: all.
    pub customers_in_memory: Option<u64>,
    /// How long a `messageId` is remembered to drop a repeat, as a
    /// duration (`7d`); `0s` remembers every id for ever.
    pub dedupe_window: Option<String>,
}

/// What the toolchain itself reads from `nudge.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// `[runtime]`.
    pub runtime: RuntimeSection,
}

/// A project's `nudge.toml` as read into a source map, and what checking it found.
#[derive(Debug)]
pub struct ManifestFile {
    /// The file in the source map it was read into.
    pub file: FileId,
    /// Its settings; the defaults where it has problems.
    pub manifest: Manifest,
    /// Its problems: syntax, unknown sections, ill-typed `[runtime]` settings.
    pub diagnostics: Vec<Diagnostic>,
}

/// The toolchain's view of the file: every other section is the host's.
#[derive(Deserialize)]
struct Toolchain {
    #[serde(default)]
    runtime: RuntimeSection,
}

/// Reads and checks the `nudge.toml` of the project `root` into `sources`;
/// `None` when the project has none. A file that cannot be read is added
/// without text, with a diagnostic saying why.
pub fn read(root: &Path, sources: &mut SourceMap) -> Option<ManifestFile> {
    // A project of one file, named by its path, has no manifest.
    if !root.is_dir() {
        return None;
    }
    let path = root.join(MANIFEST);
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file = sources.add(shown, text.clone());
            let (manifest, diagnostics) = check(file, &text);
            Some(ManifestFile {
                file,
                manifest,
                diagnostics,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let file = sources.add(shown, String::new());
            Some(ManifestFile {
                file,
                manifest: Manifest::default(),
                diagnostics: vec![invalid_setting(file, None, format!("cannot read it: {e}"))],
            })
        }
    }
}

/// Checks the text of a `nudge.toml` that is `file` in its source map:
/// the settings the toolchain reads, and every problem found on the way.
pub fn check(file: FileId, text: &str) -> (Manifest, Vec<Diagnostic>) {
    let (table, errors) = toml::de::DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let diagnostics = errors.iter().map(|e| syntax_error(file, e)).collect();
        return (Manifest::default(), diagnostics);
    }
    let mut diagnostics = Vec::new();
    for (key, _) in table.get_ref().iter() {
        let name: &str = key.get_ref();
        if SECTIONS.contains(&name) {
            continue;
        }
        let span = key.span();
        let mut d = Diagnostic::new(
            E0503,
            FileSpan::new(file, Span::new(span.start, span.end)),
            format!("unknown section `{name}`"),
        )
        .with_primary_label("`nudge.toml` has no such section");
        d = match closest(name) {
            Some(near) => d.with_help(format!("did you mean `{near}`?")),
            None => d.with_help(format!(
                "the sections are {}",
                SECTIONS
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        diagnostics.push(d);
    }
    let manifest = match toml::from_str::<Toolchain>(text) {
        Ok(t) => Manifest { runtime: t.runtime },
        Err(e) => {
            diagnostics.push(toml_error(file, text, &e));
            Manifest::default()
        }
    };
    (manifest, diagnostics)
}

/// The known section nearest to a misspelt one, if any is near enough.
fn closest(name: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .map(|s| (strsim::jaro_winkler(name, s), *s))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, s)| s)
}

/// A TOML syntax error as a diagnostic.
fn syntax_error(file: FileId, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let mut lines = e.message().trim_end().lines();
    let title = lines.next().unwrap_or("invalid TOML").to_string();
    let rest: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let d = Diagnostic::new(
        E0502,
        FileSpan::new(file, Span::new(span.start, span.end)),
        title,
    );
    let label = if rest.is_empty() {
        "the TOML goes wrong here".to_string()
    } else {
        rest.join("; ")
    };
    d.with_primary_label(label)
        .with_help("`nudge.toml` is TOML; see https://toml.io for its syntax")
}

/// An error of reading `text` (the text of `file`) into a typed section
/// with serde, as a diagnostic: a syntax error (E0502), an unknown key
/// (E0503) or a value of the wrong type or a missing setting (E0504).
pub fn toml_error(file: FileId, text: &str, e: &toml::de::Error) -> Diagnostic {
    if toml::de::DeTable::parse(text).is_err() {
        return syntax_error(file, e);
    }
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim_end();
    let (code, label) = if message.starts_with("unknown field") {
        (E0503, "`nudge.toml` has no such setting")
    } else if message.starts_with("missing field") {
        (E0504, "in this table")
    } else {
        (E0504, "this value")
    };
    Diagnostic::new(
        code,
        FileSpan::new(file, Span::new(span.start, span.end)),
        message.to_string(),
    )
    .with_primary_label(label)
}

/// A setting that TOML and its type accept but that is not usable (E0501),
/// at `span` when the setting can be found in the file.
pub fn invalid_setting(file: FileId, span: Option<Range<usize>>, message: String) -> Diagnostic {
    let span = span.map_or(Span::new(0, 0), |r| Span::new(r.start, r.end));
    Diagnostic::new(E0501, FileSpan::new(file, span), message).with_primary_label("this setting")
}
