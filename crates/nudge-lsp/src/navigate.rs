//! Go to definition, find references and rename, across the project's files
//! and into the stdlib's declarations.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nudge_compiler::SymbolKind;
use nudge_diagnostics::{FileId, FileSpan, Span};

use crate::world::Snapshot;

/// A location in a file: its path and byte span.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// The file (a stdlib copy for stdlib declarations).
    pub path: PathBuf,
    /// The bytes.
    pub span: Span,
}

fn location(snap: &Snapshot, at: FileSpan) -> Option<Location> {
    Some(Location {
        path: snap.path(at.file)?.to_path_buf(),
        span: at.span,
    })
}

/// Where the symbol at a byte offset is declared.
pub fn definition(snap: &Snapshot, file: FileId, offset: u32) -> Option<Location> {
    let an = &snap.analysis;
    let id = an.symbol_at(file, offset)?;
    location(snap, an.definition(id)?)
}

/// Every use of the symbol at a byte offset, with its declaration first when asked.
pub fn references(
    snap: &Snapshot,
    file: FileId,
    offset: u32,
    include_declaration: bool,
) -> Vec<Location> {
    let an = &snap.analysis;
    let Some(id) = an.symbol_at(file, offset) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if include_declaration && let Some(at) = an.definition(id) {
        out.extend(location(snap, at));
    }
    out.extend(
        an.references(id)
            .into_iter()
            .filter_map(|at| location(snap, at)),
    );
    out
}

/// Why a rename is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenameError {
    /// Nothing renameable at the cursor.
    NoSymbol,
    /// The symbol is declared by the standard library.
    Stdlib(String),
    /// The new name is not an identifier.
    NotIdentifier(String),
    /// The new name is a reserved word.
    Keyword(String),
    /// Another declaration already has the name.
    Taken(String),
}

impl std::fmt::Display for RenameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenameError::NoSymbol => write!(f, "there is no symbol to rename here"),
            RenameError::Stdlib(n) => {
                write!(
                    f,
                    "`{n}` is declared by the standard library and cannot be renamed"
                )
            }
            RenameError::NotIdentifier(n) => write!(
                f,
                "`{n}` is not a valid name: use letters, digits and `_`, not starting with a digit"
            ),
            RenameError::Keyword(n) => write!(f, "`{n}` is a reserved word"),
            RenameError::Taken(n) => write!(f, "`{n}` is already declared"),
        }
    }
}

/// The span of the name a rename at this offset would change.
pub fn prepare_rename(snap: &Snapshot, file: FileId, offset: u32) -> Result<Span, RenameError> {
    let an = &snap.analysis;
    let id = an.symbol_at(file, offset).ok_or(RenameError::NoSymbol)?;
    let sym = an.symbol(id).ok_or(RenameError::NoSymbol)?;
    if snap.project.is_stdlib(sym.at.file) {
        return Err(RenameError::Stdlib(sym.name.clone()));
    }
    if sym.at.file == file && sym.at.span.contains(offset) {
        return Ok(sym.at.span);
    }
    an.uses
        .iter()
        .filter(|(at, s)| *s == id && at.file == file && at.span.contains(offset))
        .map(|(at, _)| at.span)
        .min_by_key(|s| s.len())
        .ok_or(RenameError::NoSymbol)
}

/// The edits that rename the symbol at a byte offset, grouped by file.
pub fn rename(
    snap: &Snapshot,
    file: FileId,
    offset: u32,
    new_name: &str,
) -> Result<BTreeMap<PathBuf, Vec<(Span, String)>>, RenameError> {
    prepare_rename(snap, file, offset)?;
    let an = &snap.analysis;
    let id = an.symbol_at(file, offset).ok_or(RenameError::NoSymbol)?;
    let sym = an.symbol(id).ok_or(RenameError::NoSymbol)?;
    let valid = new_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(RenameError::NotIdentifier(new_name.to_string()));
    }
    // Fields may be named by keywords (`event.type`); nothing else may.
    if sym.kind != SymbolKind::Field && nudge_syntax::is_keyword(new_name) {
        return Err(RenameError::Keyword(new_name.to_string()));
    }
    if new_name != sym.name && is_taken(snap, id, new_name) {
        return Err(RenameError::Taken(new_name.to_string()));
    }
    let mut spans: Vec<FileSpan> = vec![sym.at];
    spans.extend(an.references(id));
    let mut out: BTreeMap<PathBuf, Vec<(Span, String)>> = BTreeMap::new();
    for at in spans {
        // A use written differently (a wire name) is not the name itself.
        let written = snap.text(at.file).get(at.span.range()).unwrap_or("");
        if written != sym.name {
            continue;
        }
        if let Some(path) = snap.path(at.file) {
            out.entry(path.to_path_buf())
                .or_default()
                .push((at.span, new_name.to_string()));
        }
    }
    for edits in out.values_mut() {
        edits.sort();
        edits.dedup();
    }
    Ok(out)
}

/// Whether a declaration that shares the symbol's namespace already has `name`.
fn is_taken(snap: &Snapshot, id: nudge_compiler::SymbolId, name: &str) -> bool {
    let an = &snap.analysis;
    let Some(sym) = an.symbol(id) else {
        return false;
    };
    let group = |k: SymbolKind| match k {
        SymbolKind::Let | SymbolKind::Segment => 0,
        SymbolKind::Event | SymbolKind::Type | SymbolKind::Enum => 1,
        SymbolKind::Message => 2,
        SymbolKind::Flow => 3,
        SymbolKind::Field | SymbolKind::Param => 4,
        SymbolKind::Local => 5,
    };
    an.symbols.iter().any(|s| {
        s.name == name
            && group(s.kind) == group(sym.kind)
            && match sym.kind {
                // Members clash only within their own parent.
                SymbolKind::Field | SymbolKind::Param => s.parent == sym.parent,
                // Locals clash only within the same file (their flow).
                SymbolKind::Local => s.at.file == sym.at.file,
                _ => true,
            }
    })
}
