//! The result of checking a project: diagnostics, the tables editors read
//! (symbols, resolved names, expression types by span) and the typed IR
//! that lowering reads.

use std::collections::HashMap;
use std::sync::Arc;

use nudge_diagnostics::{Diagnostic, FileId, FileSpan};
use nudge_syntax::Parsed;

use crate::tir::Program;
use crate::types::{Ty, TypeTable};

/// Index of a [`Symbol`] in an [`Analysis`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

/// What a symbol declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    /// A top-level `let`.
    Let,
    /// An event.
    Event,
    /// A record type.
    Type,
    /// A string enum type.
    Enum,
    /// A field of an event, a record type or the profile.
    Field,
    /// A segment.
    Segment,
    /// A message.
    Message,
    /// A message parameter.
    Param,
    /// A flow.
    Flow,
    /// A local variable of a flow (`let`, `let x = wait for`) or a lambda parameter.
    Local,
}

impl SymbolKind {
    /// The word used for this kind in messages ("segment").
    pub fn describe(self) -> &'static str {
        match self {
            SymbolKind::Let => "constant",
            SymbolKind::Event => "event",
            SymbolKind::Type => "type",
            SymbolKind::Enum => "enum",
            SymbolKind::Field => "field",
            SymbolKind::Segment => "segment",
            SymbolKind::Message => "message",
            SymbolKind::Param => "parameter",
            SymbolKind::Flow => "flow",
            SymbolKind::Local => "variable",
        }
    }
}

/// A declaration, as an editor shows it.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// What it declares.
    pub kind: SymbolKind,
    /// Its name.
    pub name: String,
    /// The span of its name.
    pub at: FileSpan,
    /// A display type or signature (`list<Product>`, `cart_sms(url: string)`).
    pub detail: String,
    /// The `//` comments directly above the declaration, without the slashes.
    pub doc: Option<String>,
    /// The symbol this one belongs to (a field's event, a parameter's message).
    pub parent: Option<SymbolId>,
}

/// Diagnostics and the resolved program.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Every diagnostic, sorted by file then position.
    pub diagnostics: Vec<Diagnostic>,
    /// Every declaration.
    pub symbols: Vec<Symbol>,
    /// Every resolved use of a name: where, and what it refers to.
    pub uses: Vec<(FileSpan, SymbolId)>,
    /// The record and enum types the types below refer to.
    pub types: TypeTable,
    pub(crate) expr_types: HashMap<FileSpan, Ty>,
    pub(crate) resolved: HashMap<FileSpan, SymbolId>,
    pub(crate) refs: HashMap<SymbolId, Vec<FileSpan>>,
    /// The length in seconds of each constant named where a flow needs a
    /// duration (`wait grace`), by where the name is written.
    pub(crate) durations: HashMap<FileSpan, i64>,
    /// The typed program, when the project has no errors.
    pub(crate) program: Option<Program>,
    /// The syntax tree of every `.flow` file checked (user files, then the stdlib).
    pub(crate) trees: Vec<(FileId, Arc<Parsed>)>,
}

impl Analysis {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The length in seconds of the constant named where a flow needs a
    /// duration (`wait grace`), by where the name is written; none when the
    /// name is not a constant duration.
    pub fn constant_duration(&self, at: FileSpan) -> Option<i64> {
        self.durations.get(&at).copied()
    }

    /// The typed program lowering reads: present exactly when the checker
    /// found no errors.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_ref()
    }

    /// The syntax tree the checker read for a `.flow` file (not for a
    /// template), shared so a later analysis of the same text can reuse it.
    pub fn tree(&self, file: FileId) -> Option<&Arc<Parsed>> {
        self.trees
            .iter()
            .find(|(id, _)| *id == file)
            .map(|(_, t)| t)
    }

    /// The symbol with this id.
    pub fn symbol(&self, id: SymbolId) -> Option<&Symbol> {
        self.symbols.get(id.0 as usize)
    }

    /// The symbol declared or used at a byte offset of a file.
    pub fn symbol_at(&self, file: FileId, offset: u32) -> Option<SymbolId> {
        let mut best: Option<(u32, SymbolId)> = None;
        let mut consider = |at: &FileSpan, id: SymbolId| {
            if at.file == file && at.span.contains(offset) {
                let len = at.span.end - at.span.start;
                if best.is_none_or(|(l, _)| len < l) {
                    best = Some((len, id));
                }
            }
        };
        for (at, id) in &self.uses {
            consider(at, *id);
        }
        for (i, s) in self.symbols.iter().enumerate() {
            consider(&s.at, SymbolId(i as u32));
        }
        best.map(|(_, id)| id)
    }

    /// Where a symbol is declared.
    pub fn definition(&self, symbol: SymbolId) -> Option<FileSpan> {
        self.symbol(symbol).map(|s| s.at)
    }

    /// Every use of a symbol, in source order (the declaration not included).
    pub fn references(&self, symbol: SymbolId) -> Vec<FileSpan> {
        let mut out = self.refs.get(&symbol).cloned().unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    /// The symbol a name written at `at` resolves to.
    pub fn resolution(&self, at: FileSpan) -> Option<SymbolId> {
        self.resolved.get(&at).copied()
    }

    /// The type of the expression spanning exactly `at`.
    pub fn expr_type(&self, at: FileSpan) -> Option<&Ty> {
        self.expr_types.get(&at)
    }

    /// The type of the innermost expression at a byte offset, for hovers;
    /// on a declaration's name, the declared type or signature.
    pub fn type_at(&self, file: FileId, offset: u32) -> Option<String> {
        let mut best: Option<(u32, &Ty)> = None;
        for (at, ty) in &self.expr_types {
            if at.file == file && at.span.contains(offset) {
                let len = at.span.end - at.span.start;
                if best.is_none_or(|(l, _)| len < l) {
                    best = Some((len, ty));
                }
            }
        }
        if let Some((_, ty)) = best {
            return Some(self.types.display(ty));
        }
        self.symbols
            .iter()
            .find(|s| s.at.file == file && s.at.span.contains(offset))
            .map(|s| s.detail.clone())
    }

    /// The symbols declared in a file, in source order.
    pub fn symbols_in(&self, file: FileId) -> Vec<(SymbolId, &Symbol)> {
        let mut out: Vec<_> = self
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| s.at.file == file)
            .map(|(i, s)| (SymbolId(i as u32), s))
            .collect();
        out.sort_by_key(|(_, s)| s.at.span.start);
        out
    }
}
