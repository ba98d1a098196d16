//! Semantic tokens: every token of a file classified, names by what they
//! resolve to (an event, a field, a message), so that editors colour them
//! by meaning rather than by spelling.

use std::collections::HashMap;

use nudge_compiler::SymbolKind;
use nudge_diagnostics::{FileId, Span};
use nudge_syntax::{Token, TokenClass};

use crate::cancel::{Cancel, Stop};
use crate::world::Snapshot;

/// The token types, in the order of the legend the server announces.
pub const TOKEN_TYPES: &[&str] = &[
    "keyword",    // 0
    "string",     // 1
    "number",     // 2
    "comment",    // 3
    "operator",   // 4
    "event",      // 5
    "type",       // 6
    "property",   // 7
    "variable",   // 8
    "function",   // 9
    "parameter",  // 10
    "namespace",  // 11
    "enumMember", // 12
];

/// The token modifiers, as bits in the order of the legend.
pub const TOKEN_MODIFIERS: &[&str] = &["declaration", "readonly", "defaultLibrary"];

const DECLARATION: u32 = 1;
const READONLY: u32 = 2;
const DEFAULT_LIBRARY: u32 = 4;

/// One classified token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SemToken {
    /// Its bytes (never spanning a line break).
    pub span: Span,
    /// Index into [`TOKEN_TYPES`].
    pub kind: u32,
    /// Bits of [`TOKEN_MODIFIERS`].
    pub modifiers: u32,
}

fn kind_of(k: SymbolKind) -> (u32, u32) {
    match k {
        SymbolKind::Let => (8, READONLY),
        SymbolKind::Event => (5, 0),
        SymbolKind::Type | SymbolKind::Enum => (6, 0),
        SymbolKind::Field => (7, 0),
        SymbolKind::Segment => (8, READONLY),
        SymbolKind::Message => (9, 0),
        SymbolKind::Param => (10, 0),
        SymbolKind::Flow => (11, 0),
        SymbolKind::Local => (8, 0),
    }
}

/// Every token of a file worth colouring, in source order.
pub fn semantic_tokens(snap: &Snapshot, file: FileId) -> Vec<SemToken> {
    // A flag nobody sets: never stopped.
    semantic_tokens_until(snap, file, &Cancel::new()).unwrap_or_default()
}

/// How many tokens are classified between two looks at the cancel flag.
const CHECK_EVERY: usize = 4096;

/// [`semantic_tokens`], stopping early when `cancel` is set: a long file's
/// tokens are not worth finishing once the editor has moved on.
pub fn semantic_tokens_until(
    snap: &Snapshot,
    file: FileId,
    cancel: &Cancel,
) -> Result<Vec<SemToken>, Stop> {
    cancel.check()?;
    let an = &snap.analysis;
    let text = snap.text(file);
    let lexed = nudge_syntax::lex(file, text);
    let mut names: HashMap<Span, (u32, u32)> = HashMap::new();
    for s in &an.symbols {
        if s.at.file == file {
            let (k, m) = kind_of(s.kind);
            names.insert(s.at.span, (k, m | DECLARATION));
        }
    }
    for (at, id) in &an.uses {
        if at.file != file {
            continue;
        }
        if let Some(s) = an.symbol(*id) {
            let (k, mut m) = kind_of(s.kind);
            if snap.project.is_stdlib(s.at.file) {
                m |= DEFAULT_LIBRARY;
            }
            names.entry(at.span).or_insert((k, m));
        }
    }
    let mut out: Vec<SemToken> = Vec::new();
    let toks = &lexed.tokens;
    cancel.check()?;
    for (i, &(tok, span)) in toks.iter().enumerate() {
        if i % CHECK_EVERY == 0 {
            cancel.check()?;
        }
        let class = match tok.class() {
            // A keyword can name a field (`event.type`): the field wins.
            TokenClass::Keyword => Some(names.get(&span).copied().unwrap_or((0, 0))),
            // Quotes are coloured with the string; the text between them
            // arrives as separate tokens.
            TokenClass::String => Some((1, 0)),
            TokenClass::Number => Some((2, 0)),
            TokenClass::Comment => Some((3, 0)),
            TokenClass::Operator => Some((4, 0)),
            TokenClass::Name => names.get(&span).copied().or_else(|| {
                let Token::Ident(w) = tok else { return None };
                let called = matches!(toks.get(i + 1), Some((Token::LParen, _)));
                (called && nudge_stdlib::builtin(w).is_some()).then_some((9, DEFAULT_LIBRARY))
            }),
            TokenClass::Punctuation | TokenClass::Invalid => None,
        };
        if let Some((kind, modifiers)) = class {
            out.push(SemToken {
                span,
                kind,
                modifiers,
            });
        }
    }
    for c in &lexed.comments {
        out.push(SemToken {
            span: c.span,
            kind: 3,
            modifiers: 0,
        });
    }
    out.sort_by_key(|t| t.span.start);
    // Adjacent string pieces become one token so the quotes and text read as one.
    let mut merged: Vec<SemToken> = Vec::with_capacity(out.len());
    for t in out {
        if let Some(last) = merged.last_mut()
            && last.kind == 1
            && t.kind == 1
            && last.span.end == t.span.start
        {
            last.span.end = t.span.end;
            continue;
        }
        merged.push(t);
    }
    // Editors want tokens on one line; strings and comments never span lines here.
    merged
        .retain(|t| !text.get(t.span.range()).unwrap_or("\n").contains('\n') && !t.span.is_empty());
    Ok(merged)
}
